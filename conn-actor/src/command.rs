//! The client commands of contract section 3, parsed from a frame's bytes.
//!
//! Parsing borrows from the frame and allocates nothing; it also validates
//! user and topic names, so a [`Command`] holds only well-formed names.
//!
//! ```
//! use conn_actor::command::{self, Command, CommandError};
//!
//! assert_eq!(command::parse(b"SUB news/eu"), Ok(Command::Sub("news/eu")));
//! assert_eq!(
//!     command::parse(b"PUB news hello world"),
//!     Ok(Command::Pub { topic: "news", payload: b"hello world" })
//! );
//! // A frame that is not a command names the `ERR` the client gets.
//! let err = command::parse(b"SUB a b").unwrap_err();
//! assert_eq!(err, CommandError::BadTopic);
//! assert_eq!(err.reply(), b"ERR bad-topic");
//! ```

/// A client command, borrowed from its frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Command<'a> {
    /// `HELLO <user>`
    Hello(&'a str),
    /// `SUB <topic>`
    Sub(&'a str),
    /// `UNSUB <topic>`
    Unsub(&'a str),
    /// `PUB <topic> <payload>`
    Pub {
        /// The topic, validated.
        topic: &'a str,
        /// Everything after the space that follows the topic.
        payload: &'a [u8],
    },
    /// `PING` (`None`) or `PING <payload>` (`Some`, possibly empty).
    Ping(Option<&'a [u8]>),
    /// `QUIT`
    Quit,
}

/// Why a frame is not a command; each maps to one `ERR` code.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum CommandError {
    /// `ERR unknown-command`
    UnknownCommand,
    /// `ERR bad-user`
    BadUser,
    /// `ERR bad-topic`
    BadTopic,
}

impl CommandError {
    /// The frame the server answers with.
    pub fn reply(self) -> &'static [u8] {
        match self {
            Self::UnknownCommand => b"ERR unknown-command",
            Self::BadUser => b"ERR bad-user",
            Self::BadTopic => b"ERR bad-topic",
        }
    }
}

/// The longest user name.
pub const MAX_USER: usize = 128;
/// The longest topic name.
pub const MAX_TOPIC: usize = 256;

/// Parses one frame: a verb, then at most one space and its argument.
///
/// Verbs are case-sensitive and a `PING` payload or a `PUB` payload is
/// everything after its space, bytes included:
///
/// ```
/// use conn_actor::command::{parse, Command, CommandError};
///
/// assert_eq!(parse(b"HELLO alice"), Ok(Command::Hello("alice")));
/// assert_eq!(parse(b"PING"), Ok(Command::Ping(None)));
/// assert_eq!(parse(b"PING  a b"), Ok(Command::Ping(Some(&b" a b"[..]))));
/// assert_eq!(
///     parse(b"PUB t \x00\xff"),
///     Ok(Command::Pub { topic: "t", payload: b"\x00\xff" })
/// );
/// assert_eq!(parse(b"QUIT"), Ok(Command::Quit));
/// assert_eq!(parse(b"quit"), Err(CommandError::UnknownCommand));
/// assert_eq!(parse(b"QUIT now"), Err(CommandError::UnknownCommand));
/// assert_eq!(parse(b"HELLO a/b"), Err(CommandError::BadUser));
/// ```
pub fn parse(frame: &[u8]) -> Result<Command<'_>, CommandError> {
    let (verb, rest) = match frame.iter().position(|&b| b == b' ') {
        Some(space) => (&frame[..space], Some(&frame[space + 1..])),
        None => (frame, None),
    };
    match verb {
        b"HELLO" => user(rest.unwrap_or_default()).map(Command::Hello),
        b"SUB" => topic(rest.unwrap_or_default()).map(Command::Sub),
        b"UNSUB" => topic(rest.unwrap_or_default()).map(Command::Unsub),
        b"PUB" => {
            let rest = rest.unwrap_or_default();
            let (name, payload) = match rest.iter().position(|&b| b == b' ') {
                Some(space) => (&rest[..space], &rest[space + 1..]),
                None => (rest, &b""[..]),
            };
            Ok(Command::Pub {
                topic: topic(name)?,
                payload,
            })
        }
        b"PING" => Ok(Command::Ping(rest)),
        b"QUIT" if rest.is_none() => Ok(Command::Quit),
        _ => Err(CommandError::UnknownCommand),
    }
}

/// `SUB <topic> <argument>` with history on (section 13): `None` when
/// `frame` is not a `SUB` with a space after its topic, else the validated
/// topic and everything after that space (a position or `LATEST`, checked
/// by the caller).
///
/// ```
/// use conn_actor::command::{positioned_sub, CommandError};
///
/// assert_eq!(positioned_sub(b"SUB orders e1:42"), Some(Ok(("orders", "e1:42"))));
/// assert_eq!(positioned_sub(b"SUB orders LATEST"), Some(Ok(("orders", "LATEST"))));
/// assert_eq!(positioned_sub(b"SUB orders"), None);
/// assert_eq!(positioned_sub(b"SUB a$ LATEST"), Some(Err(CommandError::BadTopic)));
/// ```
pub fn positioned_sub(frame: &[u8]) -> Option<Result<(&str, &str), CommandError>> {
    let rest = frame.strip_prefix(b"SUB ")?;
    let space = rest.iter().position(|&b| b == b' ')?;
    let (name, argument) = (&rest[..space], &rest[space + 1..]);
    Some(topic(name).map(|topic| (topic, std::str::from_utf8(argument).unwrap_or("\u{fffd}"))))
}

/// A `HELLO` where tokens are required: the user and the token, if any.
pub type HelloToken<'a> = (&'a str, Option<&'a [u8]>);

/// `HELLO <user> <token>`, for when client tokens are required: `None`
/// when `frame` is not a `HELLO`, else the validated user and the token,
/// everything after the space that follows the user (`None` when there is
/// no such space).
///
/// ```
/// use conn_actor::command::{hello_with_token, CommandError};
///
/// assert_eq!(hello_with_token(b"HELLO alice xyz"), Some(Ok(("alice", Some(&b"xyz"[..])))));
/// assert_eq!(hello_with_token(b"HELLO alice"), Some(Ok(("alice", None))));
/// assert_eq!(hello_with_token(b"HELLO a/b xyz"), Some(Err(CommandError::BadUser)));
/// assert_eq!(hello_with_token(b"PING"), None);
/// ```
pub fn hello_with_token(frame: &[u8]) -> Option<Result<HelloToken<'_>, CommandError>> {
    let rest = match frame.strip_prefix(b"HELLO") {
        Some([]) => &b""[..],
        Some([b' ', rest @ ..]) => rest,
        _ => return None,
    };
    let (name, token) = match rest.iter().position(|&b| b == b' ') {
        Some(space) => (&rest[..space], Some(&rest[space + 1..])),
        None => (rest, None),
    };
    Some(user(name).map(|user| (user, token)))
}

/// A valid user name: 1 to 128 bytes of `A-Z a-z 0-9 _ . : @ -`.
///
/// ```
/// use conn_actor::command::{user, CommandError};
///
/// assert_eq!(user(b"alice@example.org"), Ok("alice@example.org"));
/// assert_eq!(user(b""), Err(CommandError::BadUser));
/// assert_eq!(user(b"news/eu"), Err(CommandError::BadUser));
/// ```
pub fn user(name: &[u8]) -> Result<&str, CommandError> {
    valid(name, MAX_USER, |b| b"_.:@-".contains(&b)).ok_or(CommandError::BadUser)
}

/// A valid topic name: 1 to 256 bytes of `A-Z a-z 0-9 _ . : / -`.
///
/// ```
/// use conn_actor::command::{topic, CommandError};
///
/// assert_eq!(topic(b"news/eu:1"), Ok("news/eu:1"));
/// assert_eq!(topic(b"a@b"), Err(CommandError::BadTopic));
/// assert_eq!(topic("t".repeat(257).as_bytes()), Err(CommandError::BadTopic));
/// ```
pub fn topic(name: &[u8]) -> Result<&str, CommandError> {
    valid(name, MAX_TOPIC, |b| b"_.:/-".contains(&b)).ok_or(CommandError::BadTopic)
}

fn valid(name: &[u8], max: usize, extra: impl Fn(u8) -> bool) -> Option<&str> {
    let ok = (1..=max).contains(&name.len())
        && name.iter().all(|&b| b.is_ascii_alphanumeric() || extra(b));
    // Only ASCII passed the check, so this never fails.
    ok.then(|| std::str::from_utf8(name).ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use Command::*;
    use CommandError::*;

    fn check(frame: &[u8], expected: Result<Command<'_>, CommandError>) {
        assert_eq!(
            parse(frame),
            expected,
            "frame {:?}",
            String::from_utf8_lossy(frame)
        );
    }

    #[test]
    fn commands() {
        check(b"HELLO alice", Ok(Hello("alice")));
        check(b"SUB news/eu:1", Ok(Sub("news/eu:1")));
        check(b"UNSUB news", Ok(Unsub("news")));
        check(b"PING", Ok(Ping(None)));
        check(b"PING ", Ok(Ping(Some(b""))));
        check(b"PING a b", Ok(Ping(Some(b"a b"))));
        check(b"QUIT", Ok(Quit));
    }

    #[test]
    fn pub_payload_is_everything_after_the_topic_space() {
        check(
            b"PUB t hello world",
            Ok(Pub {
                topic: "t",
                payload: b"hello world",
            }),
        );
        check(
            b"PUB t ",
            Ok(Pub {
                topic: "t",
                payload: b"",
            }),
        );
        check(
            b"PUB t",
            Ok(Pub {
                topic: "t",
                payload: b"",
            }),
        );
        check(
            b"PUB t  x\x00\xff",
            Ok(Pub {
                topic: "t",
                payload: b" x\x00\xff",
            }),
        );
        check(b"PUB", Err(BadTopic));
        check(b"PUB ", Err(BadTopic));
        check(b"PUB  x", Err(BadTopic));
    }

    #[test]
    fn unknown_verbs() {
        for frame in [
            &b""[..],
            b"hello alice",
            b"PONG",
            b"QUIT now",
            b"HELLOalice",
            b" PING",
        ] {
            check(frame, Err(UnknownCommand));
        }
    }

    #[test]
    fn user_names() {
        check(b"HELLO", Err(BadUser));
        check(b"HELLO ", Err(BadUser));
        check(b"HELLO a b", Err(BadUser));
        check(b"HELLO a\xff", Err(BadUser));
        check(b"HELLO a/b", Err(BadUser));
        check(b"HELLO A-z_0.9:x@y", Ok(Hello("A-z_0.9:x@y")));
        let longest = "u".repeat(MAX_USER);
        check(format!("HELLO {longest}").as_bytes(), Ok(Hello(&longest)));
        check(format!("HELLO {longest}u").as_bytes(), Err(BadUser));
    }

    #[test]
    fn topic_names() {
        check(b"SUB", Err(BadTopic));
        check(b"SUB a b", Err(BadTopic));
        check(b"SUB a@b", Err(BadTopic));
        check(b"UNSUB ", Err(BadTopic));
        let longest = "t".repeat(MAX_TOPIC);
        check(format!("SUB {longest}").as_bytes(), Ok(Sub(&longest)));
        check(format!("SUB {longest}t").as_bytes(), Err(BadTopic));
    }
}
