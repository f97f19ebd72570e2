//! The registry's data: connections by id, users, and topic subscribers.
//! Plain data with no actor in it, generic over how a connection is
//! reached, so its rules are tested on their own.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use conn_actor::{CloseReason, ConnHandle, ConnId, Name, TopicList};

use crate::query::{List, Page, Target, TargetError};

/// How the directory reaches a connection.
pub trait Endpoint: Clone {
    fn id(&self) -> ConnId;
    /// Queues a frame; `false` when the connection is gone.
    fn deliver(&self, frame: Bytes) -> bool;
    fn close(&self, reason: CloseReason, message: Option<Bytes>);
    /// Members with the same key are reached together by
    /// [`Endpoint::deliver_all`]; a topic's list is ordered by it.
    fn group(&self) -> usize {
        0
    }
    /// Queues `frame` for every member but `skip`; returns how many the
    /// publish reached, `skip` included.
    fn deliver_all(members: &Arc<[Self]>, frame: &Bytes, skip: Option<ConnId>) -> usize
    where
        Self: Sized,
    {
        members
            .iter()
            .filter(|h| Some(h.id()) == skip || h.deliver(frame.clone()))
            .count()
    }
}

impl Endpoint for ConnHandle {
    fn id(&self) -> ConnId {
        ConnHandle::id(self)
    }
    fn deliver(&self, frame: Bytes) -> bool {
        ConnHandle::deliver(self, frame)
    }
    fn close(&self, reason: CloseReason, message: Option<Bytes>) {
        ConnHandle::close(self, reason, message)
    }
    fn group(&self) -> usize {
        self.worker()
    }
    /// One job per worker thread rather than one message per subscriber.
    fn deliver_all(members: &Arc<[Self]>, frame: &Bytes, skip: Option<ConnId>) -> usize {
        conn_actor::fan_out(members, frame, skip)
    }
}

struct Entry<H> {
    handle: H,
    user: Option<Name>,
    topics: TopicList,
    closing: bool,
}

/// One topic's subscribers.
struct Topic<H> {
    /// Each member, and whether it is positioned (`SUB <topic> <position>`:
    /// its messages carry their offset).
    members: HashMap<ConnId, (H, bool)>,
    /// The members as immutable lists ordered by [`Endpoint::group`], plain
    /// and positioned apart: built by the first publish after a change,
    /// shared by every publish until the next change, so a publish walks a
    /// flat list and holds the directory only to take it.
    snapshot: OnceLock<Snapshot<H>>,
}

struct Snapshot<H> {
    plain: Arc<[H]>,
    positioned: Arc<[H]>,
}

impl<H> Default for Topic<H> {
    fn default() -> Self {
        Self {
            members: HashMap::new(),
            snapshot: OnceLock::new(),
        }
    }
}

impl<H: Endpoint> Topic<H> {
    fn snapshot(&self) -> &Snapshot<H> {
        self.snapshot.get_or_init(|| {
            let list = |positioned: bool| -> Arc<[H]> {
                let mut members: Vec<H> = self
                    .members
                    .values()
                    .filter(|(_, p)| *p == positioned)
                    .map(|(h, _)| h.clone())
                    .collect();
                members.sort_by_key(|h| (h.group(), h.id()));
                members.into()
            };
            Snapshot {
                plain: list(false),
                positioned: list(true),
            }
        })
    }
}

/// Connections, users and topics.
pub struct Directory<H = ConnHandle> {
    /// Ordered by id, so pages walk it with a stable cursor.
    conns: BTreeMap<ConnId, Entry<H>>,
    users: HashMap<Name, ConnId>,
    topics: HashMap<Name, Topic<H>>,
    subscriptions: usize,
}

impl<H> Default for Directory<H> {
    fn default() -> Self {
        Self {
            conns: BTreeMap::new(),
            users: HashMap::new(),
            topics: HashMap::new(),
            subscriptions: 0,
        }
    }
}

impl<H: Endpoint> Directory<H> {
    pub fn open(&mut self, handle: H) {
        let entry = Entry {
            handle,
            user: None,
            topics: TopicList::new(),
            closing: false,
        };
        self.conns.insert(entry.handle.id(), entry);
    }

    /// Binds `user` to `conn`, closing (`KICK replaced`) the open
    /// connection that held it.
    pub fn login(&mut self, user: Name, conn: ConnId) {
        let Some(entry) = self.conns.get_mut(&conn).filter(|e| !e.closing) else {
            return;
        };
        entry.user = Some(user.clone());
        if let Some(previous) = self.users.insert(user, conn)
            && previous != conn
        {
            self.close(previous, CloseReason::Replaced, None);
        }
    }

    /// Asks an open connection to close; from now on it is `closing`.
    pub fn close(&mut self, conn: ConnId, reason: CloseReason, message: Option<Bytes>) {
        if let Some(entry) = self.conns.get(&conn).filter(|e| !e.closing) {
            entry.handle.close(reason, message);
            self.closing(conn);
        }
    }

    pub fn subscribe(&mut self, topic: Name, conn: ConnId) {
        self.subscribe_as(topic, conn, false);
    }

    /// A positioned subscription: the topic's messages reach `conn` with
    /// their offset (`publish_split`'s positioned frame).
    pub fn subscribe_positioned(&mut self, topic: Name, conn: ConnId) {
        self.subscribe_as(topic, conn, true);
    }

    fn subscribe_as(&mut self, topic: Name, conn: ConnId, positioned: bool) {
        let Some(entry) = self.conns.get_mut(&conn).filter(|e| !e.closing) else {
            return;
        };
        let subscribers = self.topics.entry(topic.clone()).or_default();
        if subscribers
            .members
            .insert(conn, (entry.handle.clone(), positioned))
            .is_none()
        {
            entry.topics.push(topic);
            self.subscriptions += 1;
        }
        subscribers.snapshot.take();
    }

    pub fn unsubscribe(&mut self, topic: &Name, conn: ConnId) {
        if let Some(subscribers) = self.topics.get_mut(topic) {
            if subscribers.members.remove(&conn).is_some() {
                subscribers.snapshot.take();
                self.subscriptions -= 1;
                if let Some(entry) = self.conns.get_mut(&conn) {
                    entry.topics.retain(|t| t != topic);
                }
            }
            if subscribers.members.is_empty() {
                self.topics.remove(topic);
            }
        }
    }

    /// Queues `frame` for every subscriber of `topic` but `skip`; returns
    /// how many subscribers the publish reached, `skip` included.
    pub fn publish(&self, topic: &str, frame: &Bytes, skip: Option<ConnId>) -> usize {
        self.publish_split(topic, frame, frame, skip)
    }

    /// Queues `plain` for the topic's plain subscribers and `positioned`
    /// (the same message with its offset) for its positioned ones, but
    /// `skip`; returns how many the publish reached, `skip` included.
    pub fn publish_split(
        &self,
        topic: &str,
        plain: &Bytes,
        positioned: &Bytes,
        skip: Option<ConnId>,
    ) -> usize {
        self.topics.get(topic).map_or(0, |subscribers| {
            let snapshot = subscribers.snapshot();
            H::deliver_all(&snapshot.plain, plain, skip)
                + H::deliver_all(&snapshot.positioned, positioned, skip)
        })
    }

    /// Queues `frame` for the topic's positioned subscribers only (a
    /// `LOST`); returns how many.
    pub fn publish_positioned(&self, topic: &str, frame: &Bytes) -> usize {
        self.topics.get(topic).map_or(0, |subscribers| {
            H::deliver_all(&subscribers.snapshot().positioned, frame, None)
        })
    }

    /// Queues `frame` for every open connection; returns how many.
    pub fn broadcast(&self, frame: &Bytes) -> usize {
        self.conns
            .values()
            .filter(|e| !e.closing && e.handle.deliver(frame.clone()))
            .count()
    }

    /// Stops routing to `conn`; it stays listed until [`Self::closed`].
    pub fn closing(&mut self, conn: ConnId) {
        let topics = match self.conns.get_mut(&conn) {
            Some(entry) => {
                entry.closing = true;
                std::mem::take(&mut entry.topics)
            }
            None => return,
        };
        for topic in topics {
            self.unsubscribe(&topic, conn);
        }
    }

    pub fn closed(&mut self, conn: ConnId) {
        self.closing(conn);
        if let Some(entry) = self.conns.remove(&conn)
            && let Some(user) = entry.user
            && self.users.get(&user) == Some(&conn)
        {
            self.users.remove(&user);
        }
    }

    pub fn find(&self, target: &Target) -> Result<H, TargetError> {
        let id = match target {
            Target::Conn(id) => *id,
            Target::User(user) => *self.users.get(user).ok_or(TargetError::NotFound)?,
        };
        match self.conns.get(&id) {
            None => Err(TargetError::NotFound),
            Some(entry) if entry.closing => Err(TargetError::Closing),
            Some(entry) => Ok(entry.handle.clone()),
        }
    }

    pub fn get(&self, conn: ConnId) -> Option<H> {
        self.conns.get(&conn).map(|e| e.handle.clone())
    }

    pub fn close_all(&mut self, reason: CloseReason) {
        let open: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, e)| !e.closing)
            .map(|(&id, _)| id)
            .collect();
        for conn in open {
            self.close(conn, reason, None);
        }
    }

    pub fn list(&self, query: &List) -> Page<H> {
        let start = query.after.map_or(0, |id| id.saturating_add(1));
        let mut matching = self.conns.range(start..).filter(|(_, e)| {
            query
                .user
                .as_deref()
                .is_none_or(|u| e.user.as_deref() == Some(u))
                && query
                    .topic
                    .as_deref()
                    .is_none_or(|t| e.topics.iter().any(|x| &**x == t))
        });
        let conns: Vec<H> = matching
            .by_ref()
            .take(query.limit)
            .map(|(_, e)| e.handle.clone())
            .collect();
        let more = matching.next().is_some();
        Page { conns, more }
    }

    pub fn topics(&self) -> Vec<(Name, usize)> {
        let mut topics: Vec<_> = self
            .topics
            .iter()
            .map(|(name, subs)| (name.clone(), subs.members.len()))
            .collect();
        topics.sort();
        topics
    }

    /// Subscribers of one topic.
    pub fn subscribers(&self, topic: &str) -> usize {
        self.topics.get(topic).map_or(0, |t| t.members.len())
    }

    /// Whether `conn` subscribes to `topic`.
    pub fn is_subscribed(&self, topic: &str, conn: ConnId) -> bool {
        self.topics
            .get(topic)
            .is_some_and(|t| t.members.contains_key(&conn))
    }

    /// The topics a connection follows.
    pub fn topics_of(&self, conn: ConnId) -> Vec<Name> {
        self.conns
            .get(&conn)
            .map_or_else(Vec::new, |e| e.topics.to_vec())
    }

    /// Users bound to open connections.
    pub fn users(&self) -> Vec<(Name, ConnId)> {
        self.users
            .iter()
            .filter(|&(_, id)| self.conns.get(id).is_some_and(|e| !e.closing))
            .map(|(user, &id)| (user.clone(), id))
            .collect()
    }

    /// Connections not closing.
    pub fn open_count(&self) -> usize {
        self.conns.values().filter(|e| !e.closing).count()
    }

    pub fn topic_count(&self) -> usize {
        self.topics.len()
    }

    pub fn subscription_count(&self) -> usize {
        self.subscriptions
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use super::*;

    /// Records what the directory asked of each connection.
    #[derive(Clone)]
    struct Probe {
        id: ConnId,
        log: Rc<RefCell<Vec<String>>>,
    }

    impl Endpoint for Probe {
        fn id(&self) -> ConnId {
            self.id
        }
        fn deliver(&self, frame: Bytes) -> bool {
            let text = String::from_utf8_lossy(&frame).into_owned();
            self.log.borrow_mut().push(format!("{} <- {text}", self.id));
            true
        }
        fn close(&self, reason: CloseReason, _: Option<Bytes>) {
            self.log
                .borrow_mut()
                .push(format!("{} closed {}", self.id, reason.as_str()));
        }
    }

    fn setup(ids: &[ConnId]) -> (Directory<Probe>, Rc<RefCell<Vec<String>>>) {
        let log = Rc::new(RefCell::new(Vec::new()));
        let mut dir = Directory::default();
        for &id in ids {
            dir.open(Probe {
                id,
                log: log.clone(),
            });
        }
        (dir, log)
    }

    fn name(s: &str) -> Name {
        Name::from(s)
    }

    #[test]
    fn second_login_replaces_the_first() {
        let (mut dir, log) = setup(&[1, 2]);
        dir.login(name("u"), 1);
        assert!(log.borrow().is_empty());
        dir.login(name("u"), 2);
        assert_eq!(*log.borrow(), ["1 closed replaced"]);
        assert_eq!(
            dir.find(&Target::Conn(1)).map(|h| h.id),
            Err(TargetError::Closing)
        );
        assert_eq!(dir.find(&Target::User(name("u"))).map(|h| h.id), Ok(2));
        // The replaced connection leaving does not unbind the new holder.
        dir.closed(1);
        assert_eq!(dir.find(&Target::User(name("u"))).map(|h| h.id), Ok(2));
    }

    #[test]
    fn positioned_subscribers_get_the_positioned_frame_and_plain_ones_the_plain() {
        let (mut dir, log) = setup(&[1, 2, 3]);
        dir.subscribe(name("t"), 1);
        dir.subscribe_positioned(name("t"), 2);
        assert_eq!(dir.subscription_count(), 2);
        let plain = Bytes::from_static(b"MSG t m");
        let positioned = Bytes::from_static(b"MSG t@7 m");
        assert_eq!(dir.publish_split("t", &plain, &positioned, Some(3)), 2);
        dir.unsubscribe(&name("t"), 2);
        assert_eq!(dir.publish_split("t", &plain, &positioned, None), 1);
        let mut log = log.borrow().clone();
        log.sort();
        assert_eq!(log, ["1 <- MSG t m", "1 <- MSG t m", "2 <- MSG t@7 m"]);
    }

    #[test]
    fn publish_reaches_subscribers_only_while_open() {
        let (mut dir, log) = setup(&[1, 2, 3]);
        dir.subscribe(name("t"), 1);
        dir.subscribe(name("t"), 2);
        dir.subscribe(name("t"), 2);
        assert_eq!(dir.subscription_count(), 2);
        assert_eq!(dir.publish("t", &Bytes::from_static(b"m1"), None), 2);
        dir.closing(2);
        assert_eq!(
            dir.find(&Target::Conn(2)).map(|h| h.id),
            Err(TargetError::Closing)
        );
        assert_eq!(dir.publish("t", &Bytes::from_static(b"m2"), Some(3)), 1);
        dir.closed(2);
        assert_eq!(
            dir.find(&Target::Conn(2)).map(|h| h.id),
            Err(TargetError::NotFound)
        );
        // The publisher queues its own copy; it still counts as reached.
        assert_eq!(dir.publish("t", &Bytes::from_static(b"m3"), Some(1)), 1);
        let mut log = log.borrow().clone();
        log.sort();
        assert_eq!(log, ["1 <- m1", "1 <- m2", "2 <- m1"]);
    }

    #[test]
    fn a_publish_sees_the_subscribers_of_its_time() {
        let (mut dir, log) = setup(&[1, 2, 3]);
        dir.subscribe(name("t"), 1);
        assert_eq!(dir.publish("t", &Bytes::from_static(b"m1"), None), 1);
        dir.subscribe(name("t"), 2);
        dir.subscribe(name("t"), 3);
        assert_eq!(dir.publish("t", &Bytes::from_static(b"m2"), None), 3);
        dir.unsubscribe(&name("t"), 1);
        assert_eq!(dir.publish("t", &Bytes::from_static(b"m3"), Some(2)), 2);
        assert_eq!(
            *log.borrow(),
            ["1 <- m1", "1 <- m2", "2 <- m2", "3 <- m2", "3 <- m3"]
        );
    }

    #[test]
    fn topics_without_subscribers_vanish() {
        let (mut dir, _log) = setup(&[1]);
        dir.subscribe(name("a"), 1);
        dir.subscribe(name("b"), 1);
        dir.unsubscribe(&name("a"), 1);
        assert_eq!(dir.topics(), vec![(name("b"), 1)]);
        dir.closed(1);
        assert!(dir.topics().is_empty());
        assert_eq!(dir.subscription_count(), 0);
        assert_eq!(dir.publish("b", &Bytes::new(), None), 0);
    }

    #[test]
    fn pages_walk_every_connection_once() {
        let ids: Vec<ConnId> = (1..=25).collect();
        let (mut dir, _log) = setup(&ids);
        for id in (1..=25).step_by(2) {
            dir.subscribe(name("odd"), id);
        }
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = dir.list(&List {
                user: None,
                topic: Some("odd".into()),
                after,
                limit: 5,
            });
            seen.extend(page.conns.iter().map(|h| h.id));
            after = seen.last().copied();
            if !page.more {
                break;
            }
        }
        assert_eq!(seen, (1..=25).step_by(2).collect::<Vec<_>>());
    }

    #[test]
    fn drain_closes_open_connections() {
        let (mut dir, log) = setup(&[1, 2]);
        dir.closing(2);
        dir.close_all(CloseReason::Shutdown);
        assert_eq!(*log.borrow(), ["1 closed shutdown"]);
        assert_eq!(
            dir.find(&Target::Conn(1)).map(|h| h.id),
            Err(TargetError::Closing)
        );
    }
}
