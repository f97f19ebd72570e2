//! The outbox task: sends every queued message in queue order, waiting
//! while NATS is away, and stamps each with this node's origin, run and
//! sequence numbers (one per subject, one over everything it sends), by
//! which receivers drop duplicates, count gaps (`sequence.rs`) and put one
//! origin's messages back in order across subjects (`inbox.rs`).
//!
//! Not here: what may enter the queue and its byte budget (`shared.rs`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::connection::State;
use async_nats::{Client, HeaderMap};
use gateway_metrics::cluster::{ClusterDrop, Direction};
use tokio::sync::mpsc;

use crate::shared::{Outgoing, Shared};
use crate::wire::{HEADER, Meta};

/// This node's run's sequence numbers.
pub struct Stamps {
    node: String,
    run: String,
    /// The last number sent on each subject (one entry per subject this
    /// run has sent on).
    per_subject: HashMap<String, u64>,
    /// The last number over everything sent.
    global: u64,
}

impl Stamps {
    pub fn new(node: &str, run: &str) -> Self {
        Self {
            node: node.to_owned(),
            run: run.to_owned(),
            per_subject: HashMap::new(),
            global: 0,
        }
    }

    /// Fills in the origin and the next numbers of a message on `subject`.
    pub fn stamp(&mut self, subject: &str, meta: &mut Meta) {
        self.global += 1;
        let seq = match self.per_subject.get_mut(subject) {
            Some(seq) => {
                *seq += 1;
                *seq
            }
            None => {
                self.per_subject.insert(subject.to_owned(), 1);
                1
            }
        };
        meta.o.clone_from(&self.node);
        meta.r.clone_from(&self.run);
        meta.s = seq;
        meta.g = self.global;
    }
}

/// Sends queued messages in queue order, waiting while NATS is away.
pub async fn send(
    shared: Arc<Shared>,
    client: Client,
    mut outbox: mpsc::UnboundedReceiver<Outgoing>,
) {
    let mut stamps = Stamps::new(shared.node(), &shared.run);
    while let Some(mut out) = outbox.recv().await {
        while client.connection_state() != State::Connected {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stamps.stamp(&out.subject, &mut out.meta);
        let mut headers = HeaderMap::new();
        headers.insert(HEADER, out.meta.encode().as_str());
        let published = match out.reply {
            Some(reply) => {
                client
                    .publish_with_reply_and_headers(out.subject, reply, headers, out.body)
                    .await
            }
            None => {
                client
                    .publish_with_headers(out.subject, headers, out.body)
                    .await
            }
        };
        match published {
            Ok(()) => shared.metrics.message(Direction::Sent, out.route),
            Err(err) => {
                tracing::warn!(error = %err, "a cross-node message was not sent");
                shared.metrics.dropped(ClusterDrop::Unreachable);
            }
        }
        shared.sent(out.size);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Kind;

    #[test]
    fn numbers_run_per_subject_and_over_everything() {
        let mut stamps = Stamps::new("a", "r1");
        let mut check = |subject: &str, s: u64, g: u64| {
            let mut meta = Meta::new(Kind::Publish);
            stamps.stamp(subject, &mut meta);
            assert_eq!((meta.o.as_str(), meta.r.as_str()), ("a", "r1"));
            assert_eq!((meta.s, meta.g), (s, g), "{subject}");
            // What is stamped is what a receiver reads.
            assert_eq!(Meta::decode(&meta.encode()), Some(meta));
        };
        check("gw.t.x", 1, 1);
        check("gw.all", 1, 2);
        check("gw.t.x", 2, 3);
        check("gw.n.b", 1, 4);
        check("gw.t.x", 3, 5);
    }
}
