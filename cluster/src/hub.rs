//! The connections' side: the registry's `Hub`, plus what the other nodes
//! must hear. A `PUB` crosses NATS once (on its topic's subject) whatever
//! the number of remote subscribers; a `SUB` that gives this node a new
//! topic holds its `OK SUB` until the node's subscription is live; a
//! `HELLO` holds its `OK HELLO` until every other node has answered the
//! login claim (the previous holder is then closing), or the cluster
//! timeout ran out.

use std::sync::Arc;

use bytes::Bytes;
use conn_actor::{CloseReason, ConnHandle, ConnId, Hub, Name, Settled};
use gateway_metrics::cluster::Route;
use gateway_registry::Address;

use crate::shared::{Cmd, Shared, lock};
use crate::wire::{Kind, Meta, Status};

pub struct ClusterHub {
    shared: Arc<Shared>,
}

impl ClusterHub {
    pub fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    fn hub(&self) -> &dyn Hub {
        &self.shared.registry
    }

    fn maybe_unsubscribe(&self, topic: Name) {
        let _ = self.shared.cmds.send(Cmd::MaybeUnsub { topic });
    }
}

impl Hub for ClusterHub {
    fn opened(&self, conn: ConnHandle) {
        self.hub().opened(conn);
    }

    fn login(&self, user: Name, conn: ConnId) -> Option<Settled> {
        let shared = &self.shared;
        self.hub().login(user.clone(), conn);
        let claim = shared.claim(conn);
        lock(&shared.claims).insert(user.clone(), (claim.clone(), conn));
        let expected = shared.others();
        if !shared.is_connected() || expected == 0 {
            // Nobody to ask now; the claim is asserted once NATS (or a
            // node) comes back.
            return None;
        }
        let mut request = shared.open_request();
        let meta = Meta {
            q: Some(request.id),
            user: Some(user.to_string()),
            claim: Some(claim),
            ..Meta::new(Kind::Login)
        };
        let subject = shared.subjects.all();
        shared
            .send(subject, meta, Bytes::new(), Route::Login, false)
            .ok()?;
        let shared = shared.clone();
        Some(Box::pin(async move {
            let answers = request.collect(expected, |_| false).await;
            if answers.iter().any(|a| a.meta.st == Some(Status::Holds)) {
                // A newer claim holds the user elsewhere: this login lost.
                let me = Address::Conn(shared.registry.conn_name(conn));
                let _ = shared
                    .registry
                    .close_local(&me, CloseReason::Replaced, None);
            }
        }))
    }

    fn subscribe(&self, topic: Name, conn: ConnId) -> Option<Settled> {
        let shared = &self.shared;
        {
            let live = lock(&shared.live_topics);
            self.hub().subscribe(topic.clone(), conn);
            if live.contains(&topic) {
                return None;
            }
        }
        let (done, settled) = tokio::sync::oneshot::channel();
        shared.cmds.send(Cmd::Interest { topic, done }).ok()?;
        Some(Box::pin(async move {
            let _ = settled.await;
        }))
    }

    fn unsubscribe(&self, topic: Name, conn: ConnId) {
        self.hub().unsubscribe(topic.clone(), conn);
        self.maybe_unsubscribe(topic);
    }

    fn publish(&self, topic: &str, payload: &[u8], frame: Bytes, from: ConnId) {
        let shared = &self.shared;
        shared.registry.publish_frame(topic, &frame, Some(from));
        let meta = Meta::new(Kind::Publish);
        // Refusals are counted where they happen; the local delivery stands.
        let _ = shared.send(
            shared.subjects.topic(topic),
            meta,
            Bytes::copy_from_slice(payload),
            Route::Publish,
            true,
        );
    }

    fn closing(&self, conn: ConnId) {
        let topics = self.shared.registry.topics_of(conn);
        self.hub().closing(conn);
        for topic in topics {
            self.maybe_unsubscribe(topic);
        }
    }

    fn closed(&self, conn: ConnId) {
        self.hub().closed(conn);
        lock(&self.shared.claims).retain(|_, (_, holder)| *holder != conn);
    }

    fn conn_name(&self, conn: ConnId) -> String {
        self.shared.registry.conn_name(conn)
    }
}
