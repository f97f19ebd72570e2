//! The node's topic subscriptions. A node subscribes to a topic's subject
//! only while it has local subscribers. The first local `SUB` starts the
//! subscription; it and the `SUB`s that come meanwhile wait until the
//! server has it (a barrier request behind the `SUB`, docs/cluster.md
//! "Subscriptions"); later ones are answered at once. The last local
//! subscriber leaving drops it, or, while it is being made, marks it to be
//! dropped when it is made (unless a subscriber came back meanwhile).
//!
//! [`Topics`] is the state of each topic, plain data; [`subscribe`] is the
//! task that makes one subscription.
//!
//! Not here: reading the subscriptions (`inbox.rs`), the set of live
//! topics the connections' hub reads (`Shared::live_topics`, kept by the
//! engine).

use std::collections::HashMap;
use std::sync::Arc;

use async_nats::Client;
use bytes::Bytes;
use conn_actor::Name;
use tokio::sync::{mpsc, oneshot};

use crate::shared::Shared;

/// Where a subscription try ends: the topic and, when it was made, the
/// subscription.
pub type Made<S> = mpsc::UnboundedSender<(Name, Option<S>)>;

enum State {
    /// Subscribing; these `SUB`s wait for it.
    Pending {
        waiters: Vec<oneshot::Sender<()>>,
        /// The last local subscriber left meanwhile.
        cancel: bool,
    },
    Live,
}

/// Each topic the node subscribes to, or is subscribing to.
#[derive(Default)]
pub struct Topics {
    states: HashMap<Name, State>,
}

impl Topics {
    /// A local `SUB` to `topic`, answered on `done` once the subscription
    /// is live. True when the subscription is to be started.
    pub fn interest(&mut self, topic: &Name, done: oneshot::Sender<()>) -> bool {
        match self.states.get_mut(topic) {
            Some(State::Live) => {
                let _ = done.send(());
                false
            }
            Some(State::Pending { waiters, cancel }) => {
                waiters.push(done);
                *cancel = false;
                false
            }
            None => {
                let state = State::Pending {
                    waiters: vec![done],
                    cancel: false,
                };
                self.states.insert(topic.clone(), state);
                true
            }
        }
    }

    /// The node has no local subscriber to `topic` any more. True when a
    /// live subscription is to be dropped now (it is forgotten here).
    pub fn unwanted(&mut self, topic: &Name) -> bool {
        match self.states.get_mut(topic) {
            Some(State::Live) => {
                self.states.remove(topic);
                true
            }
            Some(State::Pending { cancel, .. }) => {
                *cancel = true;
                false
            }
            None => false,
        }
    }

    /// A subscription try of `topic` ended, with `sub` when it was made.
    /// `wanted` says whether a local subscriber is there now (asked only
    /// where the last one left meanwhile). Returns the subscription to
    /// keep, if any, and the `SUB`s to answer once it is read.
    pub fn made<S>(
        &mut self,
        topic: &Name,
        sub: Option<S>,
        wanted: impl FnOnce() -> bool,
    ) -> (Option<S>, Vec<oneshot::Sender<()>>) {
        let Some(State::Pending { waiters, cancel }) = self.states.remove(topic) else {
            return (None, Vec::new());
        };
        let keep = sub.filter(|_| !cancel || wanted());
        if keep.is_some() {
            self.states.insert(topic.clone(), State::Live);
        }
        (keep, waiters)
    }
}

/// Subscribes to a topic's subject; once the server has it (a round trip
/// behind the `SUB`), hands it to `made`. A failed try hands `None`: the
/// waiting `SUB`s are answered all the same (local publishes reach them).
pub fn subscribe(
    shared: Arc<Shared>,
    client: Client,
    topic: Name,
    made: Made<async_nats::Subscriber>,
) {
    tokio::spawn(async move {
        let subject = shared.subjects.topic(&topic);
        let bound = shared.settings.timeout;
        let sub = match tokio::time::timeout(bound, client.subscribe(subject.clone())).await {
            Ok(Ok(sub)) => Some(sub),
            Ok(Err(err)) => {
                tracing::warn!(%subject, error = %err, "cannot subscribe");
                None
            }
            Err(_) => None,
        };
        if sub.is_some() && shared.is_connected() {
            let barrier = shared.subjects.barrier(shared.node(), &shared.run);
            let _ = tokio::time::timeout(bound, client.request(barrier, Bytes::new())).await;
        }
        let _ = made.send((topic, sub));
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiter() -> (oneshot::Sender<()>, oneshot::Receiver<()>) {
        oneshot::channel()
    }

    #[test]
    fn the_first_sub_subscribes_and_those_meanwhile_wait_with_it() {
        let mut topics = Topics::default();
        let t = Name::from("t");
        let (a, mut a_rx) = waiter();
        let (b, _b_rx) = waiter();
        assert!(topics.interest(&t, a));
        assert!(!topics.interest(&t, b));
        assert!(a_rx.try_recv().is_err(), "answered before it is live");
        let (kept, waiters) = topics.made(&t, Some("sub"), || unreachable!());
        assert_eq!((kept, waiters.len()), (Some("sub"), 2));
        // Live: a later SUB is answered at once, nothing is started.
        let (c, mut c_rx) = waiter();
        assert!(!topics.interest(&t, c));
        assert!(c_rx.try_recv().is_ok());
        // The last subscriber leaves: dropped now, and a new SUB starts over.
        assert!(topics.unwanted(&t));
        assert!(!topics.unwanted(&t));
        assert!(topics.interest(&t, waiter().0));
    }

    #[test]
    fn a_subscription_made_after_its_last_subscriber_left_is_dropped() {
        let mut topics = Topics::default();
        let t = Name::from("t");
        assert!(topics.interest(&t, waiter().0));
        assert!(!topics.unwanted(&t));
        let (kept, waiters) = topics.made(&t, Some(()), || false);
        assert_eq!((kept, waiters.len()), (None, 1));
        assert!(topics.interest(&t, waiter().0), "forgotten");
        // Left, then a subscriber came back before the subscription was
        // made: kept.
        assert!(!topics.unwanted(&t));
        assert!(!topics.interest(&t, waiter().0));
        assert_eq!(topics.made(&t, Some(()), || false).0, Some(()));
        // Left, but the registry has a subscriber again by the time it is
        // made: kept too.
        let u = Name::from("u");
        assert!(topics.interest(&u, waiter().0));
        assert!(!topics.unwanted(&u));
        assert_eq!(topics.made(&u, Some(()), || true).0, Some(()));
    }

    #[test]
    fn a_failed_subscription_answers_its_subs_and_is_tried_again_later() {
        let mut topics = Topics::default();
        let t = Name::from("t");
        assert!(topics.interest(&t, waiter().0));
        let (kept, waiters) = topics.made::<()>(&t, None, || true);
        assert_eq!((kept, waiters.len()), (None, 1));
        assert!(topics.interest(&t, waiter().0));
        // A try that ends for a topic not being subscribed changes nothing.
        let v = Name::from("v");
        assert_eq!(topics.made(&v, Some(()), || true).0, None);
        assert!(topics.interest(&v, waiter().0));
    }
}
