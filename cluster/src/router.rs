//! The admin API's side: local targets are served by the registry at once;
//! a target on another node gets a request on NATS and the answer waits
//! for that node to have queued it (bounded by `--cluster-timeout`).
//! Publish and broadcast serve local receivers first, then add what every
//! other node answered, and say how many answered in `nodes`.
//!
//! A request to a node that may hold the target goes to that node's own
//! subject with a reply subject, so NATS says at once when nobody is there
//! ("no responders": the node is gone and holds nothing). A node that is
//! there but does not answer within `--cluster-timeout` (frozen, or
//! overloaded) makes the answer 504: the request may still be carried out
//! when it wakes. 404 only when every node that could hold the target
//! answered that it does not. Until this node knows the cluster (just
//! started), these answers wait for it.

use std::sync::Arc;

use bytes::Bytes;
use conn_actor::{CloseReason, Name};
use gateway_history::Appended;
use gateway_metrics::cluster::Route;
use gateway_registry::{
    Address, ConnView, Delivered, NodeCount, RouteError, Routed, Router, StoredAt,
};

use crate::shared::{Answer, Collected, NotSent, Shared, lock};
use crate::wire::{Kind, Meta, Op, Status};

pub struct ClusterRouter {
    shared: Arc<Shared>,
}

/// A send or a close, as it travels.
#[derive(Clone)]
enum Action {
    Send(Bytes),
    Close(CloseReason, Option<Bytes>),
}

impl Action {
    fn apply(&self, meta: &mut Meta) -> Bytes {
        match self {
            Action::Send(payload) => {
                meta.op = Some(Op::Send);
                payload.clone()
            }
            Action::Close(reason, message) => {
                meta.op = Some(Op::Close);
                meta.reason = Some(reason.as_str().to_owned());
                meta.msg = message.is_some();
                message.clone().unwrap_or_default()
            }
        }
    }

    fn local(&self, shared: &Shared, to: &Address) -> Result<(), RouteError> {
        match self {
            Action::Send(payload) => shared.registry.send_local(to, payload),
            Action::Close(reason, message) => {
                shared.registry.close_local(to, *reason, message.clone())
            }
        }
    }
}

fn status_error(status: Option<Status>) -> Result<(), RouteError> {
    match status {
        Some(Status::Ok) => Ok(()),
        Some(Status::Closing) => Err(RouteError::Closing),
        Some(Status::Refused) => Err(RouteError::TooLarge),
        _ => Err(RouteError::NotFound),
    }
}

/// The answer of a user route from what the nodes said.
fn user_outcome(got: &Collected, here: Result<(), RouteError>) -> Result<(), RouteError> {
    let statuses: Vec<Option<Status>> = got.answers.iter().map(|a| a.meta.st).collect();
    if statuses.contains(&Some(Status::Ok)) {
        Ok(())
    } else if statuses.contains(&Some(Status::Refused)) {
        Err(RouteError::TooLarge)
    } else if statuses.contains(&Some(Status::Closing)) || here == Err(RouteError::Closing) {
        Err(RouteError::Closing)
    } else if !got.missing.is_empty() {
        Err(RouteError::Timeout)
    } else {
        Err(RouteError::NotFound)
    }
}

fn refused(err: NotSent) -> RouteError {
    match err {
        NotSent::TooLarge => RouteError::TooLarge,
        NotSent::Overflow | NotSent::Unreachable => RouteError::Unavailable,
    }
}

impl ClusterRouter {
    pub fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// The node a connection id names, and whether it is this one.
    fn node_of<'a>(&self, id: &'a str) -> Option<&'a str> {
        id.split_once('.').map(|(node, _)| node)
    }

    /// One request to the node holding connection `id`, one answer.
    async fn ask_node(
        &self,
        node: &str,
        mut meta: Meta,
        body: Bytes,
    ) -> Result<Answer, RouteError> {
        let shared = &self.shared;
        if !shared.is_connected() {
            shared.unreachable();
            return Err(RouteError::Unavailable);
        }
        shared.wait_known().await;
        if !lock(&shared.members).contains(node) {
            return Err(RouteError::NotFound);
        }
        let mut request = shared.open_request();
        meta.q = Some(request.id);
        shared
            .ask(node, meta, body, Route::Connection)
            .map_err(refused)?;
        let mut got = request
            .collect(vec![node.to_owned()], |_| true, false)
            .await;
        if !got.absent.is_empty() {
            // Nobody subscribes to the node's subject: it is gone, and its
            // connections with it.
            return Err(RouteError::NotFound);
        }
        got.answers.pop().ok_or(RouteError::Timeout)
    }

    async fn act(&self, to: Address, action: Action) -> Result<(), RouteError> {
        let shared = &self.shared;
        match &to {
            Address::Conn(id) => {
                let node = self.node_of(id).ok_or(RouteError::NotFound)?;
                if node == shared.node() {
                    return action.local(shared, &to);
                }
                let mut meta = Meta {
                    conn: Some(id.clone()),
                    ..Meta::new(Kind::Conn)
                };
                let body = action.apply(&mut meta);
                let answer = self.ask_node(node, meta, body).await?;
                status_error(answer.meta.st)
            }
            Address::User(user) => {
                let here = action.local(shared, &to);
                if here.is_ok() {
                    return here;
                }
                if !shared.is_connected() {
                    return match here {
                        Err(RouteError::NotFound) => {
                            shared.unreachable();
                            Err(RouteError::Unavailable)
                        }
                        other => other,
                    };
                }
                shared.wait_known().await;
                // Every listed node, those that missed a heartbeat too: any
                // of them may hold the user.
                let nodes = shared.listed();
                if nodes.is_empty() {
                    return here;
                }
                let mut request = shared.open_request();
                let mut meta = Meta {
                    q: Some(request.id),
                    user: Some(user.to_string()),
                    ..Meta::new(Kind::User)
                };
                let body = action.apply(&mut meta);
                let mut asked = Vec::with_capacity(nodes.len());
                let mut not_sent = None;
                for node in nodes {
                    match shared.ask(&node, meta.clone(), body.clone(), Route::User) {
                        Ok(()) => asked.push(node),
                        Err(err) => {
                            not_sent.get_or_insert(err);
                        }
                    }
                }
                if asked.is_empty() {
                    return Err(refused(not_sent.unwrap_or(NotSent::Unreachable)));
                }
                let got = request
                    .collect(asked, |a| a.meta.st == Some(Status::Ok), false)
                    .await;
                match (user_outcome(&got, here), not_sent) {
                    // A node that was never asked may hold the user: not
                    // carried, rather than not found.
                    (Err(RouteError::NotFound), Some(err)) => Err(refused(err)),
                    (outcome, _) => outcome,
                }
            }
        }
    }

    async fn get_conn(&self, id: String) -> Result<ConnView, RouteError> {
        let shared = &self.shared;
        let node = self.node_of(&id).ok_or(RouteError::NotFound)?.to_owned();
        if node == shared.node() {
            return shared.registry.get_view(&id).await;
        }
        let meta = Meta {
            conn: Some(id),
            op: Some(Op::Get),
            ..Meta::new(Kind::Conn)
        };
        let answer = self.ask_node(&node, meta, Bytes::new()).await?;
        status_error(answer.meta.st)?;
        serde_json::from_slice(&answer.body).map_err(|_| RouteError::NotFound)
    }

    /// A publish on a topic with history: stored in the stream, from where
    /// every node delivers it. `delivered_to` counts this node's
    /// subscribers (the other nodes deliver from the stream on their own,
    /// and are not asked), so `nodes` says that only this node answered.
    async fn publish_stored(
        &self,
        history: &crate::stored::ClusterHistory,
        topic: Name,
        payload: Bytes,
        idempotency_key: Option<String>,
    ) -> Result<Delivered, RouteError> {
        let (appended, epoch) = history
            .append(
                self.shared.is_connected(),
                &topic,
                payload,
                idempotency_key.as_deref(),
            )
            .await
            .map_err(|_| RouteError::HistoryUnavailable)?;
        let count = match appended {
            Appended::Stored(offset) => history.delivered_here(topic, offset).await,
            Appended::Duplicate(_) => 0,
        };
        Ok(Delivered {
            count,
            nodes: Some(NodeCount {
                answered: 1,
                expected: 1 + self.shared.others(),
            }),
            stored: Some(StoredAt {
                offset: appended.offset(),
                epoch: epoch.to_string(),
            }),
        })
    }

    /// Sends a message every node acts on (with request id `q`), then asks
    /// each listed node, on its own subject, how many it delivered it to.
    /// The question follows the message from the same connection, so a
    /// node has acted on the message before it answers. A node that NATS
    /// says is gone, or that misses a heartbeat meanwhile, is not waited on.
    async fn fan_out(&self, local: usize, message: (String, Meta, Bytes, Route)) -> Delivered {
        let shared = &self.shared;
        if !shared.is_connected() {
            // The remote part is skipped: counted, and told in `nodes`.
            shared.unreachable();
            return Delivered {
                count: local,
                nodes: Some(NodeCount {
                    answered: 1,
                    expected: 1 + shared.others(),
                }),
                stored: None,
            };
        }
        shared.wait_known().await;
        let listed = shared.listed();
        let mut nodes = NodeCount {
            answered: 1,
            expected: 1 + listed.len(),
        };
        let mut request = shared.open_request();
        let (subject, mut meta, body, route) = message;
        meta.q = Some(request.id);
        // Not sent: counted where it was refused; only local receivers.
        let sent = shared.send(subject, meta, body, route, false).is_ok();
        let mut count = local;
        if sent && !listed.is_empty() {
            let question = Meta {
                q: Some(request.id),
                ..Meta::new(Kind::Count)
            };
            let asked: Vec<String> = listed
                .into_iter()
                .filter(|node| {
                    shared
                        .ask(node, question.clone(), Bytes::new(), Route::Control)
                        .is_ok()
                })
                .collect();
            let got = request.collect(asked, |_| false, true).await;
            nodes.answered += got.answers.len();
            count += got
                .answers
                .iter()
                .map(|a| a.meta.n.unwrap_or(0) as usize)
                .sum::<usize>();
        }
        Delivered {
            count,
            nodes: Some(nodes),
            stored: None,
        }
    }

    /// Whether a payload must cross and cannot.
    fn too_large(&self, kind: Kind, body: &[u8]) -> bool {
        let shared = &self.shared;
        let crossing = shared.is_connected() && shared.others() > 0;
        crossing && !shared.fits(&Meta::new(kind), body)
    }
}

impl Router for ClusterRouter {
    fn send(&self, to: Address, payload: Bytes) -> Routed<'_, ()> {
        Box::pin(self.act(to, Action::Send(payload)))
    }

    fn close(&self, to: Address, reason: CloseReason, message: Option<Bytes>) -> Routed<'_, ()> {
        Box::pin(self.act(to, Action::Close(reason, message)))
    }

    fn get(&self, id: String) -> Routed<'_, ConnView> {
        Box::pin(self.get_conn(id))
    }

    // History in a cluster is not built yet (a node with `--nats-url`
    // refuses `--history-size`): nothing is stored, so a key has nothing
    // to name.
    fn publish(
        &self,
        topic: Name,
        payload: Bytes,
        idempotency_key: Option<String>,
    ) -> Routed<'_, Delivered> {
        Box::pin(async move {
            if self.too_large(Kind::Publish, &payload) {
                self.shared
                    .metrics
                    .dropped(gateway_metrics::cluster::ClusterDrop::TooLarge);
                return Err(RouteError::TooLarge);
            }
            let shared = &self.shared;
            if let Some(history) = shared.history_of(&topic) {
                return self
                    .publish_stored(history, topic, payload, idempotency_key)
                    .await;
            }
            let frame = shared.registry.msg_frame(&topic, &payload);
            let local = shared.registry.publish_frame(&topic, &frame, None);
            let message = (
                shared.subjects.topic(&topic),
                Meta::new(Kind::Publish),
                payload,
                Route::Publish,
            );
            Ok(self.fan_out(local, message).await)
        })
    }

    fn broadcast(&self, payload: Bytes) -> Routed<'_, Delivered> {
        Box::pin(async move {
            if self.too_large(Kind::Broadcast, &payload) {
                self.shared
                    .metrics
                    .dropped(gateway_metrics::cluster::ClusterDrop::TooLarge);
                return Err(RouteError::TooLarge);
            }
            let shared = &self.shared;
            let local = shared
                .registry
                .broadcast_frame(&shared.registry.push_frame(&payload));
            let message = (
                shared.subjects.all(),
                Meta::new(Kind::Broadcast),
                payload,
                Route::Broadcast,
            );
            Ok(self.fan_out(local, message).await)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(node: &str, status: Status) -> Answer {
        Answer {
            meta: Meta {
                o: node.into(),
                ..Meta::answer(1, status)
            },
            body: Bytes::new(),
            absent: false,
        }
    }

    fn check(
        answers: &[(&str, Status)],
        absent: &[&str],
        missing: &[&str],
        here: Result<(), RouteError>,
        expected: Result<(), RouteError>,
    ) {
        let got = Collected {
            answers: answers.iter().map(|(n, s)| answer(n, *s)).collect(),
            absent: absent.iter().map(|n| n.to_string()).collect(),
            missing: missing.iter().map(|n| n.to_string()).collect(),
        };
        assert_eq!(
            user_outcome(&got, here),
            expected,
            "{answers:?} absent {absent:?} missing {missing:?}"
        );
    }

    #[test]
    fn a_user_route_is_404_only_when_every_node_said_so() {
        use RouteError::*;
        use Status as S;
        let nf = Err(NotFound);
        check(&[("b", S::NotFound), ("c", S::Ok)], &[], &[], nf, Ok(()));
        // The holder answered: a silent node does not matter.
        check(&[("b", S::Ok)], &[], &["c"], nf, Ok(()));
        check(&[("b", S::NotFound)], &[], &[], nf, Err(NotFound));
        // A node NATS says is gone holds nothing.
        check(&[("b", S::NotFound)], &["c"], &[], nf, Err(NotFound));
        check(&[], &["b", "c"], &[], nf, Err(NotFound));
        // A node that may hold it did not answer: unknown.
        check(&[("b", S::NotFound)], &[], &["c"], nf, Err(Timeout));
        check(&[], &[], &["b"], nf, Err(Timeout));
        // Closing here or there is known, and wins over a silent node.
        check(&[("b", S::Closing)], &[], &["c"], nf, Err(Closing));
        check(&[], &[], &["b"], Err(Closing), Err(Closing));
        check(&[("b", S::Refused)], &[], &[], nf, Err(TooLarge));
    }
}
