//! Membership by heartbeat: the nodes heard from lately. Plain data with
//! the clock passed in, tested on its own.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How often a node says it is alive.
pub const HEARTBEAT: Duration = Duration::from_millis(1000);
/// Silence after which a node is gone (the contract allows 5 s).
pub const EXPIRY: Duration = Duration::from_millis(3500);
/// Silence after which a node has missed a heartbeat: a login no longer
/// waits on it (contract section 10), though it stays listed until
/// [`EXPIRY`].
pub const STALE: Duration = Duration::from_millis(1500);

/// One other node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub run: String,
    pub connections: u64,
    pub last_seen: Instant,
}

/// What a heartbeat changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Already known.
    Same,
    /// A node not known before (or a new run of one).
    Joined,
    /// A known node heard again after it had missed a heartbeat: logins
    /// may have skipped it meanwhile.
    Returned,
}

/// The other live nodes, by id.
#[derive(Debug, Default)]
pub struct Members {
    nodes: BTreeMap<String, Member>,
}

impl Members {
    /// A heartbeat from `node`.
    pub fn heard(&mut self, node: &str, run: &str, connections: u64, now: Instant) -> Change {
        let member = Member {
            run: run.to_owned(),
            connections,
            last_seen: now,
        };
        match self.nodes.insert(node.to_owned(), member) {
            Some(old) if old.run == run && now.duration_since(old.last_seen) > STALE => {
                Change::Returned
            }
            Some(old) if old.run == run => Change::Same,
            _ => Change::Joined,
        }
    }

    /// `node` said goodbye.
    pub fn left(&mut self, node: &str, run: &str) -> bool {
        match self.nodes.get(node) {
            Some(member) if member.run == run => self.nodes.remove(node).is_some(),
            _ => false,
        }
    }

    /// Drops nodes silent for longer than [`EXPIRY`]; returns them.
    pub fn expire(&mut self, now: Instant) -> Vec<String> {
        let gone: Vec<String> = self
            .nodes
            .iter()
            .filter(|(_, m)| now.duration_since(m.last_seen) > EXPIRY)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &gone {
            self.nodes.remove(id);
        }
        gone
    }

    /// Counts every node as just heard (NATS is back: give them a beat
    /// before judging their silence).
    pub fn touch_all(&mut self, now: Instant) {
        for member in self.nodes.values_mut() {
            member.last_seen = now;
        }
    }

    /// Whether `node` is live.
    pub fn contains(&self, node: &str) -> bool {
        self.nodes.contains_key(node)
    }

    /// Whether `node` is listed and has not missed a heartbeat.
    pub fn is_fresh(&self, node: &str, now: Instant) -> bool {
        self.nodes
            .get(node)
            .is_some_and(|m| now.duration_since(m.last_seen) <= STALE)
    }

    /// The listed nodes that have not missed a heartbeat.
    pub fn fresh(&self, now: Instant) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|(_, m)| now.duration_since(m.last_seen) <= STALE)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Every listed node.
    pub fn ids(&self) -> Vec<String> {
        self.nodes.keys().cloned().collect()
    }

    /// How many other nodes are live.
    pub fn count(&self) -> usize {
        self.nodes.len()
    }

    /// The other live nodes.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Member)> {
        self.nodes.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_expire_leave() {
        let t0 = Instant::now();
        let mut m = Members::default();
        assert_eq!(m.heard("b", "r1", 3, t0), Change::Joined);
        assert_eq!(m.heard("b", "r1", 4, t0 + HEARTBEAT), Change::Same);
        assert_eq!(m.heard("c", "r1", 0, t0), Change::Joined);
        assert_eq!(m.count(), 2);
        assert_eq!(m.expire(t0 + EXPIRY + Duration::from_millis(1)), vec!["c"]);
        assert!(m.contains("b"));
        // A restarted node (new run) joins again.
        assert_eq!(m.heard("b", "r2", 0, t0 + HEARTBEAT), Change::Joined);
        assert!(!m.left("b", "r1"));
        assert!(m.left("b", "r2"));
        assert_eq!(m.count(), 0);
    }

    #[test]
    fn a_silent_node_is_stale_before_it_is_gone_and_returns() {
        let t0 = Instant::now();
        let mut m = Members::default();
        m.heard("b", "r1", 0, t0);
        m.heard("c", "r1", 0, t0 + STALE);
        let later = t0 + STALE + Duration::from_millis(1);
        assert!(!m.is_fresh("b", later));
        assert!(m.is_fresh("c", later));
        assert_eq!(m.fresh(later), vec!["c"]);
        assert_eq!(m.ids(), vec!["b", "c"]);
        assert!(m.expire(later).is_empty());
        assert_eq!(m.heard("b", "r1", 0, later), Change::Returned);
        assert_eq!(m.heard("b", "r1", 0, later), Change::Same);
    }
}
