//! The names a connection is known by: its id, user and topic names, and
//! the list of topics it follows. Plain data, shared by every layer.

use std::sync::Arc;

/// A connection id: unique for the life of the process, never reused.
pub type ConnId = u64;

/// A validated user or topic name.
pub type Name = Arc<str>;

/// The topics one connection follows. Most clients follow one: it is held
/// inline, in the 24 bytes a `Vec` takes anyway, instead of in a 64-byte
/// allocation of its own (twice per connection: its state and its
/// registry entry).
pub type TopicList = smallvec::SmallVec<[Name; 1]>;
