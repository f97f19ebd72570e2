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
use conn_actor::{ConnHandle, ConnId, Hub, Name, Published, Settled};
use gateway_metrics::cluster::Route;

use crate::login;
use crate::shared::{Cmd, Shared, lock};
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

    // History in a cluster (a JetStream stream) is not built yet: a node
    // with `--nats-url` is refused `--history-size` at start, so every
    // publish here is live and `subscribe_at` keeps the trait's refusal.
    fn publish(&self, topic: &str, payload: &[u8], frame: Bytes, from: ConnId) -> Published {
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
        Published::Live
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
