//! Settling logins after the nodes could not hear each other: after a NATS
//! outage, when a node joins, and when a node that had missed a heartbeat
//! (and so was skipped by logins) is heard again. This node asks every
//! listed node, one request per user it holds, whether it holds the user
//! with a newer claim; a node holding it with an older one kicks its holder
//! (`KICK replaced`) as for a login, and an answer `holds` makes this node
//! kick its own. Users that some node did not answer for are asked again,
//! with a growing pause, until every listed node answered for each (a node
//! that is really gone stops being listed within the expiry), or until NATS
//! is lost again (the reconnect starts a new round).
//!
//! The requests are control traffic: they never count against
//! `--nats-pending-bytes`, so a full outbox cannot drop them.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use conn_actor::{ConnId, Name};

use crate::login;
use crate::shared::{Collected, Shared, lock};
use crate::wire::Claim;

/// The first pause before users are asked again; it doubles up to
/// [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(100);
const MAX_PAUSE: Duration = Duration::from_secs(1);

/// Settles every user this node holds with `only` (every listed node when
/// `None`).
pub async fn settle(shared: Arc<Shared>, only: Option<String>) {
    let mut users: Option<HashSet<Name>> = None;
    let mut pause = FIRST_PAUSE;
    loop {
        if !shared.is_connected() {
            return;
        }
        let nodes: Vec<String> = match &only {
            Some(node) => shared.listed().into_iter().filter(|n| n == node).collect(),
            None => shared.listed(),
        };
        if nodes.is_empty() {
            return;
        }
        let claims: Vec<(Name, Claim, ConnId)> = lock(&shared.claims)
            .iter()
            .filter(|(user, _)| users.as_ref().is_none_or(|u| u.contains(*user)))
            .map(|(user, (claim, conn))| (user.clone(), claim.clone(), *conn))
            .collect();
        if claims.is_empty() {
            return;
        }
        // Every request is sent before the first answer is awaited: the
        // round takes one `--cluster-timeout` at most, whatever the number
        // of users.
        let mut asked = Vec::with_capacity(claims.len());
        for (user, claim, conn) in claims {
            let mut request = login::ask(&shared, &nodes, &user, &claim);
            let targets = nodes.clone();
            let answers = async move { request.collect(targets, |_| false, false).await };
            asked.push((user, claim, conn, answers));
        }
        let mut unsettled = HashSet::new();
        for (user, claim, conn, answers) in asked {
            let got: Collected = answers.await;
            if login::lost(&got) {
                login::kick_if_still_held(&shared, &user, &claim, conn);
            } else if !got.missing.is_empty() || !got.absent.is_empty() {
                // A node that NATS says is not there may be one whose
                // subscription is not back yet after the reconnect: ask
                // again while it is listed.
                unsettled.insert(user);
            }
        }
        if unsettled.is_empty() {
            return;
        }
        tracing::debug!(
            users = unsettled.len(),
            "logins not settled yet; asking again"
        );
        users = Some(unsettled);
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(MAX_PAUSE);
    }
}
