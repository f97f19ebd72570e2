//! The topic and user registry: which connections exist, which user each
//! holds and which topics each follows.
//!
//! It is one actor, so its view is consistent and the order of one
//! sender's requests is the order they take effect: a `SUB` then a `PUB`
//! from the same connection always sees the subscription. Connections reach
//! it through [`RegistryHub`] (the `conn_actor::Hub` seam); the admin API
//! through the queries in [`messages`]. Fanning out to other gateway nodes
//! belongs behind the same two seams.

pub mod messages;
mod state;

use std::sync::Arc;

use actix::{Actor, Addr, Context, Handler, MessageResult};
use bytes::Bytes;
use conn_actor::{CloseReason, ConnHandle, ConnId, Hub, Name};
use gateway_metrics::GatewayMetrics;

use messages::*;
use state::Directory;

/// The registry actor.
pub struct Registry {
    dir: Directory,
    metrics: GatewayMetrics,
    draining: bool,
}

impl Registry {
    /// An empty registry counting into `metrics`.
    pub fn new(metrics: GatewayMetrics) -> Self {
        Self {
            dir: Directory::default(),
            metrics,
            draining: false,
        }
    }

    fn update_gauges(&self) {
        self.metrics.topics.set(self.dir.topic_count() as i64);
        self.metrics
            .subscriptions
            .set(self.dir.subscription_count() as i64);
    }
}

impl Actor for Registry {
    type Context = Context<Self>;
}

/// Connections notify the registry through its mailbox.
pub struct RegistryHub(pub Addr<Registry>);

impl Hub for RegistryHub {
    fn opened(&self, conn: ConnHandle) {
        self.0.do_send(Opened(conn));
    }
    fn login(&self, user: Name, conn: ConnId) {
        self.0.do_send(Login { user, conn });
    }
    fn subscribe(&self, topic: Name, conn: ConnId) {
        self.0.do_send(Subscribe { topic, conn });
    }
    fn unsubscribe(&self, topic: Name, conn: ConnId) {
        self.0.do_send(Unsubscribe { topic, conn });
    }
    fn publish(&self, topic: Name, frame: Bytes, from: ConnId) {
        self.0.do_send(Publish {
            topic,
            frame,
            from: Some(from),
        });
    }
    fn closing(&self, conn: ConnId) {
        self.0.do_send(Closing(conn));
    }
    fn closed(&self, conn: ConnId) {
        self.0.do_send(Closed(conn));
    }
}

impl Handler<Opened> for Registry {
    type Result = ();
    fn handle(&mut self, msg: Opened, _: &mut Context<Self>) {
        if self.draining {
            // Accepted just before the drain began: drain it too.
            msg.0.close(CloseReason::Shutdown, None);
        }
        self.dir.open(msg.0);
    }
}

impl Handler<Login> for Registry {
    type Result = ();
    fn handle(&mut self, msg: Login, _: &mut Context<Self>) {
        if let Some(previous) = self.dir.login(msg.user, msg.conn) {
            previous.close(CloseReason::Replaced, None);
        }
    }
}

impl Handler<Subscribe> for Registry {
    type Result = ();
    fn handle(&mut self, msg: Subscribe, _: &mut Context<Self>) {
        self.dir.subscribe(msg.topic, msg.conn);
        self.update_gauges();
    }
}

impl Handler<Unsubscribe> for Registry {
    type Result = ();
    fn handle(&mut self, msg: Unsubscribe, _: &mut Context<Self>) {
        self.dir.unsubscribe(&msg.topic, msg.conn);
        self.update_gauges();
    }
}

impl Handler<Publish> for Registry {
    type Result = usize;
    fn handle(&mut self, msg: Publish, _: &mut Context<Self>) -> usize {
        self.dir.publish(&msg.topic, &msg.frame, msg.from)
    }
}

impl Handler<Closing> for Registry {
    type Result = ();
    fn handle(&mut self, msg: Closing, _: &mut Context<Self>) {
        self.dir.closing(msg.0);
        self.update_gauges();
    }
}

impl Handler<Closed> for Registry {
    type Result = ();
    fn handle(&mut self, msg: Closed, _: &mut Context<Self>) {
        self.dir.closed(msg.0);
    }
}

impl Handler<Find> for Registry {
    type Result = MessageResult<Find>;
    fn handle(&mut self, msg: Find, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.dir.find(&msg.0))
    }
}

impl Handler<SendTo> for Registry {
    type Result = MessageResult<SendTo>;
    fn handle(&mut self, msg: SendTo, _: &mut Context<Self>) -> Self::Result {
        let result = self
            .dir
            .find(&msg.target)
            .and_then(|conn| match msg.action {
                Action::Deliver(frame) => match conn.deliver(frame) {
                    true => Ok(None),
                    false => Err(TargetError::NotFound),
                },
                Action::Close { reason, message } => {
                    conn.close(reason, message);
                    Ok(Some(conn.id()))
                }
            });
        // A close answered 202 makes the connection `closing` at once
        // (contract section 5): a send or close right behind it gets 409,
        // even before the connection reports its own close.
        if let Ok(Some(closed)) = result {
            self.dir.closing(closed);
            self.update_gauges();
        }
        MessageResult(result.map(drop))
    }
}

impl Handler<Broadcast> for Registry {
    type Result = usize;
    fn handle(&mut self, msg: Broadcast, _: &mut Context<Self>) -> usize {
        self.dir.broadcast(&msg.0)
    }
}

impl Handler<List> for Registry {
    type Result = MessageResult<List>;
    fn handle(&mut self, msg: List, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.dir.list(&msg))
    }
}

impl Handler<Topics> for Registry {
    type Result = MessageResult<Topics>;
    fn handle(&mut self, _: Topics, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.dir.topics())
    }
}

impl Handler<Counts> for Registry {
    type Result = MessageResult<Counts>;
    fn handle(&mut self, _: Counts, _: &mut Context<Self>) -> Self::Result {
        MessageResult(RegistryCounts {
            topics: self.dir.topic_count(),
            subscriptions: self.dir.subscription_count(),
        })
    }
}

impl Handler<DrainAll> for Registry {
    type Result = ();
    fn handle(&mut self, _: DrainAll, _: &mut Context<Self>) {
        self.draining = true;
        self.dir.close_all(CloseReason::Shutdown);
    }
}

/// Shared by the parts that talk to the registry.
pub type RegistryAddr = Arc<Addr<Registry>>;
