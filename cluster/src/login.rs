//! Login claims between nodes (docs/cluster.md, "Login protocol"). A claim
//! is `(t, node, run, conn)`; the newer claim keeps the user, and every
//! node compares the same two claims, so exactly one holder remains.
//!
//! - Asking: this node's claim goes to each node as one request ([`ask`]);
//!   an answer `holds` means it lost ([`lost`]), and its connection is
//!   kicked ([`kick_if_still_held`]).
//! - Answering: another node's claim is judged against this node's holder
//!   ([`judge`], plain data) and acted on ([`received`]): an older holder
//!   here is kicked, a newer one makes the answer `holds`.
//!
//! Not here: when a login asks and whom (`ClusterHub::login`), and the
//! rounds that settle logins after nodes could not hear each other
//! (`settle.rs`).

use std::sync::Arc;

use bytes::Bytes;
use conn_actor::{CloseReason, ConnId, Name, command};
use gateway_metrics::cluster::Route;
use gateway_registry::Address;
use gateway_registry::query::Target;

use crate::shared::{Collected, Request, Shared, lock};
use crate::wire::{Claim, Kind, Meta, Status};

/// Sends `user`'s claim to each of `nodes` as one request; its answers
/// arrive on the request returned.
pub fn ask(shared: &Arc<Shared>, nodes: &[String], user: &Name, claim: &Claim) -> Request {
    let request = shared.open_request();
    let meta = Meta {
        q: Some(request.id),
        user: Some(user.to_string()),
        claim: Some(claim.clone()),
        ..Meta::new(Kind::Login)
    };
    for node in nodes {
        // Not sent: counted where it was refused; the node is missing from
        // the answers.
        let _ = shared.ask(node, meta.clone(), Bytes::new(), Route::Login);
    }
    request
}

/// Whether a node answered that it holds the user with a newer claim.
pub fn lost(got: &Collected) -> bool {
    got.answers
        .iter()
        .any(|answer| answer.meta.st == Some(Status::Holds))
}

/// This node's login of `user` by `conn` with `claim` lost to a newer one
/// elsewhere: its connection gets `KICK replaced`, unless it has since been
/// replaced here.
pub fn kick_if_still_held(shared: &Shared, user: &Name, claim: &Claim, conn: ConnId) {
    {
        let mut claims = lock(&shared.claims);
        match claims.get(user) {
            Some((held, holder)) if held == claim && *holder == conn => {
                claims.remove(user);
            }
            _ => return,
        }
    }
    let me = Address::Conn(shared.registry.conn_name(conn));
    let _ = shared
        .registry
        .close_local(&me, CloseReason::Replaced, None);
}

/// What another node's claim on a user means here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Judgement {
    /// This node does not hold the user.
    Free,
    /// This node's holder, this connection, has the older claim: it goes.
    Replace(ConnId),
    /// This node holds the user with this newer claim.
    Holds(Claim),
}

/// Judges `claim` against this node's holder of the user, if any.
pub fn judge(held: Option<(Claim, ConnId)>, claim: &Claim) -> Judgement {
    match held {
        None => Judgement::Free,
        Some((mine, conn)) if mine < *claim => Judgement::Replace(conn),
        Some((mine, _)) => Judgement::Holds(mine),
    }
}

/// Another node's login claim: answers it (when it is a request) after
/// acting on it. `Err` says why it is malformed.
pub fn received(shared: &Shared, meta: &Meta) -> Result<(), &'static str> {
    let (Some(user), Some(claim)) = (meta.user.as_deref(), &meta.claim) else {
        return Err("login without user or claim");
    };
    if command::user(user.as_bytes()).is_err() {
        return Err("login with a bad user");
    }
    shared.observe(claim);
    let user = Name::from(user);
    // A claim is this node's only while its connection still holds the
    // user here (it may have logged out, or been replaced locally).
    let held = lock(&shared.claims).get(&user).cloned();
    let holder = held.filter(|(_, conn)| {
        shared
            .registry
            .find(&Target::User(user.clone()))
            .is_ok_and(|h| h.id() == *conn)
    });
    let status = match judge(holder, claim) {
        Judgement::Free => Status::Ok,
        Judgement::Replace(conn) => {
            let me = Address::Conn(shared.registry.conn_name(conn));
            let _ = shared
                .registry
                .close_local(&me, CloseReason::Replaced, None);
            lock(&shared.claims).retain(|_, (_, holder)| *holder != conn);
            Status::Ok
        }
        Judgement::Holds(mine) => {
            if meta.q.is_none() {
                // An older claim without a request: a reminder, or an
                // assertion from a node of an earlier version (which
                // asserted without requests). Remind its node who holds
                // the user.
                remind(shared, &user, mine);
            }
            Status::Holds
        }
    };
    if let Some(q) = meta.q {
        shared.reply(&meta.o, Meta::answer(q, status), Bytes::new());
    }
    Ok(())
}

/// Tells every node that this node holds `user` with `claim`.
fn remind(shared: &Shared, user: &str, claim: Claim) {
    let meta = Meta {
        user: Some(user.to_owned()),
        claim: Some(claim),
        ..Meta::new(Kind::Login)
    };
    let _ = shared.tell_all(meta, Route::Login);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::{Answer, for_tests};

    fn claim(t: u64, node: &str) -> Claim {
        Claim {
            t,
            node: node.into(),
            run: "r".into(),
            conn: 1,
        }
    }

    #[test]
    fn the_newer_claim_keeps_the_user() {
        let old = claim(1, "a");
        let new = claim(2, "b");
        assert_eq!(judge(None, &new), Judgement::Free);
        assert_eq!(judge(Some((old.clone(), 7)), &new), Judgement::Replace(7));
        assert_eq!(judge(Some((new.clone(), 7)), &old), Judgement::Holds(new));
        // Same time: the node id decides, the same way on every node.
        assert_eq!(
            judge(Some((claim(5, "a"), 7)), &claim(5, "b")),
            Judgement::Replace(7)
        );
    }

    #[test]
    fn a_login_lost_when_a_node_holds_the_user() {
        let answer = |status| Answer {
            meta: Meta::answer(1, status),
            body: Bytes::new(),
            absent: false,
        };
        let got = |statuses: &[Status]| Collected {
            answers: statuses.iter().map(|s| answer(*s)).collect(),
            ..Collected::default()
        };
        assert!(!lost(&got(&[])));
        assert!(!lost(&got(&[Status::Ok, Status::Ok])));
        assert!(lost(&got(&[Status::Ok, Status::Holds])));
    }

    #[test]
    fn a_claim_received_is_answered_on_its_nodes_subject() {
        let (shared, mut outbox) = for_tests(100, 1 << 20);
        let mut meta = Meta {
            o: "b".into(),
            q: Some(4),
            user: Some("u".into()),
            claim: Some(claim(3, "b")),
            ..Meta::new(Kind::Login)
        };
        assert_eq!(received(&shared, &meta), Ok(()));
        let out = outbox.try_recv().expect("an answer");
        assert_eq!(out.subject, "gw.n.b");
        assert_eq!((out.meta.k, out.meta.q), (Kind::Answer, Some(4)));
        assert_eq!(out.meta.st, Some(Status::Ok));
        // A claim of a user whose connection is gone here is free: its
        // stale entry does not answer `holds`.
        lock(&shared.claims).insert(Name::from("u"), (claim(9, "me"), 5));
        assert_eq!(received(&shared, &meta), Ok(()));
        assert_eq!(
            outbox.try_recv().map(|o| o.meta.st).ok(),
            Some(Some(Status::Ok))
        );
        // An assertion (no request) is not answered.
        meta.q = None;
        assert_eq!(received(&shared, &meta), Ok(()));
        assert!(outbox.try_recv().is_err());
        // Malformed claims.
        meta.user = Some("bad user".into());
        assert_eq!(received(&shared, &meta), Err("login with a bad user"));
        meta.user = None;
        assert_eq!(received(&shared, &meta), Err("login without user or claim"));
    }
}
