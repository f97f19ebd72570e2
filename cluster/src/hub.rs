//! The connections' side: the registry's `Hub`, plus what the other nodes
//! must hear. A `PUB` crosses NATS once (on its topic's subject) whatever
//! the number of remote subscribers; a `SUB` that gives this node a new
//! topic holds its `OK SUB` until the node's subscription is live; a
//! `HELLO` holds its `OK HELLO` until every other node has answered the
//! login claim (the previous holder is then closing), was found gone by
//! NATS, or missed a heartbeat, or the cluster timeout ran out; a node
//! that is just starting first waits to know the cluster.

use std::sync::Arc;

use bytes::Bytes;
use conn_actor::{
    ConnHandle, ConnId, HistoryRefusal, Hub, Name, Published, Resume, Settled, Subscribing,
};
use gateway_metrics::cluster::Route;

use crate::login;
use crate::shared::{Cmd, Shared, lock};
use crate::stored::FeedCmd;
use crate::wire::{Kind, Meta};

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
        match self.shared.history_of(&topic) {
            Some(history) => {
                let _ = history.feed.send(FeedCmd::MaybeUnwanted { topic });
            }
            None => {
                let _ = self.shared.cmds.send(Cmd::MaybeUnsub { topic });
            }
        }
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
        if !shared.is_connected() || (shared.knows_cluster() && shared.others() == 0) {
            // Nobody to ask now; the claim is asserted once NATS (or a
            // node) comes back.
            return None;
        }
        let shared = shared.clone();
        Some(Box::pin(async move {
            shared.wait_known().await;
            // A node that has missed a heartbeat is not waited on; if it
            // holds the user too, the round that runs when it is heard
            // again settles it (`settle.rs`).
            let nodes = shared.fresh();
            if nodes.is_empty() {
                return;
            }
            let mut request = login::ask(&shared, &nodes, &user, &claim);
            let got = request.collect(nodes, |_| false, true).await;
            if login::lost(&got) {
                // A newer claim holds the user elsewhere: this login lost.
                login::kick_if_still_held(&shared, &user, &claim, conn);
            }
        }))
    }

    fn subscribe(&self, topic: Name, conn: ConnId) -> Option<Settled> {
        let shared = &self.shared;
        if shared.history_of(&topic).is_some() {
            // Its messages come from the stream's feed (`feed.rs`).
            self.hub().subscribe(topic.clone(), conn);
            let shared = shared.clone();
            return Some(Box::pin(async move {
                if let Some(history) = shared.history_of(&topic) {
                    history.hear(topic).await;
                }
            }));
        }
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

    fn publish(&self, topic: &str, payload: &[u8], frame: Bytes, from: ConnId) -> Published {
        let shared = &self.shared;
        if shared.history_of(topic).is_some() {
            // Stored first; every node, this one included, delivers it from
            // the stream's feed, in offset order.
            let shared = shared.clone();
            let topic = Name::from(topic);
            let payload = Bytes::copy_from_slice(payload);
            return Published::Storing(Box::pin(async move {
                let Some(history) = shared.history_of(&topic) else {
                    return Err(HistoryRefusal::Unavailable);
                };
                let (appended, _) = history
                    .append(shared.is_connected(), &topic, payload, None)
                    .await
                    .map_err(|_| HistoryRefusal::Unavailable)?;
                if shared.registry.is_subscribed(&topic, from) {
                    // The publisher's own copy is in its mailbox before its
                    // next command is acted on.
                    history.delivered_here(topic, appended.offset()).await;
                }
                Ok(())
            }));
        }
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
        Published::Live
    }

    fn subscribe_at(&self, topic: Name, conn: ConnId, from: Resume) -> Subscribing {
        let shared = self.shared.clone();
        if shared.history_of(&topic).is_none() {
            return Subscribing::Now(Err(HistoryRefusal::NoHistory));
        }
        Subscribing::Later(Box::pin(async move {
            let Some(history) = shared.history_of(&topic) else {
                return Err(HistoryRefusal::NoHistory);
            };
            history
                .subscribe_at(&shared.registry, topic, conn, from)
                .await
        }))
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
