//! What crosses NATS: subjects and the envelope of every message.
//!
//! Subjects, under the prefix `P`:
//! - `P.t.<topic>`: a topic's messages; a node subscribes only while it has
//!   local subscribers. The topic is one subject token: `.` is written
//!   `%2E` (topics never hold `%`).
//! - `P.all`: what every node hears: heartbeats, broadcasts, user routes,
//!   login claims, publish counts.
//! - `P.n.<node-id>`: what one node hears: requests to it (connection and
//!   user routes, login claims) and answers.
//! - `P.r.<node-id>.<run>.<req>.<to>`: the reply subject of a request sent
//!   to node `to`; nobody answers on it, but when `to` has no subscriber
//!   NATS says so there ("no responders"), telling a node that is gone
//!   from one that is silent.
//!
//! Every message carries a `Gw` header, one JSON object ([`Meta`]): the
//! version, origin node and run, a sequence number per subject and one per
//! origin, the kind, and the kind's fields. The body is the payload (a
//! message's bytes, a close message) or, for answers to look-ups, JSON.

use serde::{Deserialize, Serialize};

/// The envelope's version; messages of another version are dropped.
pub const VERSION: u32 = 1;

/// The header holding [`Meta`].
pub const HEADER: &str = "Gw";

/// Bytes kept free in `max_payload` for the header and its numbers.
pub const HEADER_ALLOWANCE: usize = 512;

/// The subjects of one prefix and node.
#[derive(Debug, Clone)]
pub struct Subjects {
    prefix: String,
}

impl Subjects {
    /// Subjects under `prefix`.
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    /// A topic's subject.
    pub fn topic(&self, topic: &str) -> String {
        format!("{}.t.{}", self.prefix, topic.replace('.', "%2E"))
    }

    /// The topic a subject names, if it is a topic subject of this prefix.
    pub fn topic_of(&self, subject: &str) -> Option<String> {
        let token = subject
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix(".t.")?;
        (!token.is_empty() && !token.contains('.')).then(|| token.replace("%2E", "."))
    }

    /// What every node hears.
    pub fn all(&self) -> String {
        format!("{}.all", self.prefix)
    }

    /// What one node hears.
    pub fn node(&self, node: &str) -> String {
        format!("{}.n.{node}", self.prefix)
    }

    /// The reply subject of request `req` of this node's run `run` to node
    /// `to`.
    pub fn reply(&self, node: &str, run: &str, req: u64, to: &str) -> String {
        format!("{}.r.{node}.{run}.{req}.{to}", self.prefix)
    }

    /// Every reply subject of this node's run `run`.
    pub fn replies(&self, node: &str, run: &str) -> String {
        format!("{}.r.{node}.{run}.>", self.prefix)
    }

    /// The request and the node a reply subject of this node's run names.
    pub fn reply_of(&self, node: &str, run: &str, subject: &str) -> Option<(u64, String)> {
        let rest = subject
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix(".r.")?
            .strip_prefix(node)?
            .strip_prefix('.')?
            .strip_prefix(run)?
            .strip_prefix('.')?;
        let (req, to) = rest.split_once('.')?;
        Some((req.parse().ok()?, to.to_owned()))
    }

    /// A subject nobody subscribes to: a request to it is a round trip
    /// through the server, proving what this client sent before arrived.
    pub fn barrier(&self, node: &str, run: &str) -> String {
        format!("{}.barrier.{node}.{run}", self.prefix)
    }
}

/// What a message is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A topic message; the body is the payload.
    Publish,
    /// How many local receivers got the admin publish or broadcast `req`.
    Count,
    /// An admin broadcast; the body is the payload.
    Broadcast,
    /// An admin send or close to a user.
    User,
    /// An admin send, close or look-up to a connection id.
    Conn,
    /// A login claim (with `req`: answer it; without: an assertion).
    Login,
    /// I am alive, with this many connections.
    Heartbeat,
    /// I am leaving.
    Bye,
    /// Is a live node using this id? (answered on the NATS reply subject)
    Probe,
    /// The answer to request `req`.
    Answer,
}

/// What to do to a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// Queue `PUSH <body>`.
    Send,
    /// Queue a close; `reason` is set, the body is the message if `msg`.
    Close,
    /// Answer the connection's CONN.
    Get,
}

/// How a request went on the node that answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Done (queued, delivered, released).
    Ok,
    /// Not here.
    NotFound,
    /// Here, but closing.
    Closing,
    /// The login's user is held here by a newer claim.
    Holds,
    /// Refused as malformed for this node (e.g. a payload its framing
    /// cannot carry).
    Refused,
}

/// A login claim. The newer claim wins; the order is total, so every node
/// picks the same winner.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Claim {
    /// Hybrid logical clock: milliseconds, never behind what was seen.
    pub t: u64,
    pub node: String,
    pub run: String,
    pub conn: u64,
}

/// The `Gw` header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    pub v: u32,
    /// Origin node.
    pub o: String,
    /// Origin run.
    pub r: String,
    /// Sequence number on this subject, from 1.
    pub s: u64,
    /// Sequence number over everything the origin sent, from 1.
    pub g: u64,
    pub k: Kind,
    /// Request id, where an answer is wanted (or answered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub q: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op: Option<Op>,
    /// A user (user routes, logins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// A connection id (connection routes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conn: Option<String>,
    /// A close's reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// A close carries a message (the body).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub msg: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<Claim>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub st: Option<Status>,
    /// A count (delivered, connections).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u64>,
}

impl Meta {
    /// A message of `kind`; origin and sequence numbers are filled in when
    /// it is sent.
    pub fn new(kind: Kind) -> Self {
        Self {
            v: VERSION,
            o: String::new(),
            r: String::new(),
            s: 0,
            g: 0,
            k: kind,
            q: None,
            op: None,
            user: None,
            conn: None,
            reason: None,
            msg: false,
            claim: None,
            st: None,
            n: None,
        }
    }

    /// An answer to request `req`.
    pub fn answer(req: u64, status: Status) -> Self {
        Self {
            q: Some(req),
            st: Some(status),
            ..Self::new(Kind::Answer)
        }
    }

    /// The header's text.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Parses a header; `None` for anything this version does not read.
    pub fn decode(text: &str) -> Option<Self> {
        let meta: Self = serde_json::from_str(text).ok()?;
        (meta.v == VERSION && !meta.o.is_empty() && meta.s > 0 && meta.g > 0).then_some(meta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_are_one_token() {
        let s = Subjects::new("gw.a");
        assert_eq!(s.topic("a.b/c:d"), "gw.a.t.a%2Eb/c:d");
        assert_eq!(s.topic_of(&s.topic("..x.")).as_deref(), Some("..x."));
        assert_eq!(s.topic_of("gw.a.t.x.y"), None);
        assert_eq!(s.topic_of("gw.b.t.x"), None);
        assert_eq!(s.topic_of("gw.a.all"), None);
    }

    #[test]
    fn reply_subjects_name_their_request_and_node() {
        let s = Subjects::new("gw");
        let subject = s.reply("a", "r1", 42, "b-2");
        assert_eq!(subject, "gw.r.a.r1.42.b-2");
        assert_eq!(s.reply_of("a", "r1", &subject), Some((42, "b-2".into())));
        assert_eq!(s.reply_of("a", "r2", &subject), None);
        assert_eq!(s.reply_of("ab", "r1", "gw.r.a.r1.42.b"), None);
        assert_eq!(s.reply_of("a", "r1", "gw.r.a.r1.x.b"), None);
    }

    #[test]
    fn meta_round_trips_and_refuses_strangers() {
        let mut meta = Meta::new(Kind::Login);
        meta.o = "n1".into();
        meta.r = "abc".into();
        meta.s = 3;
        meta.g = 9;
        meta.q = Some(7);
        meta.claim = Some(Claim {
            t: 5,
            node: "n1".into(),
            run: "abc".into(),
            conn: 2,
        });
        let text = meta.encode();
        assert_eq!(Meta::decode(&text), Some(meta.clone()));
        assert_eq!(Meta::decode(&text.replace("\"v\":1", "\"v\":2")), None);
        assert_eq!(Meta::decode("garbage"), None);
        assert_eq!(Meta::decode("{}"), None);
        assert_eq!(
            Meta::decode(r#"{"v":1,"o":"n","r":"r","s":1,"g":1,"k":"what"}"#),
            None
        );
        assert!(Meta::decode(r#"{"v":1,"o":"n","r":"r","s":1,"g":1,"k":"bye"}"#).is_some());
    }

    #[test]
    fn newer_claims_win_in_one_order() {
        let claim = |t, node: &str, conn| Claim {
            t,
            node: node.into(),
            run: "r".into(),
            conn,
        };
        assert!(claim(2, "a", 1) > claim(1, "b", 9));
        assert!(claim(1, "b", 1) > claim(1, "a", 9));
        assert!(claim(1, "a", 2) > claim(1, "a", 1));
    }
}
