//! Label values as types: one enum per label, each variant written once
//! with the string it is exported as. [`ByLabel`] holds one child metric
//! per variant, created (and so exported at 0) when the family is
//! registered: a new variant is one line in its enum, exported from
//! start-up, and a call site can only name a value that exists.
//!
//! This module knows the label values of the contract, not what a
//! connection does: what starts a close, or which frame a close ends with,
//! is decided by the crates that count.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use prometheus::{IntCounter, IntGauge};

/// The values one label takes: a field-less enum declared with
/// `label_values!`.
pub trait LabelValue: Copy + Eq + fmt::Debug + Send + Sync + 'static {
    /// The label's name in the exposition.
    const NAME: &'static str;
    /// Every value, in declaration order.
    const ALL: &'static [Self];
    /// The value as exported.
    fn as_str(self) -> &'static str;
    /// This value's position in [`Self::ALL`].
    fn index(self) -> usize;
}

/// Declares a label's values: the enum, its `as_str`, `ALL` and
/// [`LabelValue`], from one line per variant.
macro_rules! label_values {
    (
        $(#[$meta:meta])*
        pub enum $name:ident in $label:literal {
            $( $(#[$vmeta:meta])* $variant:ident = $value:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            /// The value as exported.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $( Self::$variant => $value, )+
                }
            }
        }

        impl LabelValue for $name {
            const NAME: &'static str = $label;
            const ALL: &'static [Self] = Self::ALL;

            fn as_str(self) -> &'static str {
                Self::as_str(self)
            }

            fn index(self) -> usize {
                self as usize
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

label_values! {
    /// What started a close; `reason` of `gateway_connections_closed_total`.
    pub enum CloseReason in "reason" {
        /// The client's EOF or reset came first.
        Client = "client",
        /// The client sent `QUIT`.
        Quit = "quit",
        /// Another connection said `HELLO` with the same user.
        Replaced = "replaced",
        /// The admin API asked.
        Admin = "admin",
        /// No frame for `--idle-timeout`.
        Idle = "idle",
        /// Queued output passed `--max-pending-bytes`.
        Slow = "slow",
        /// The gateway is draining.
        Shutdown = "shutdown",
        /// A frame over `--max-frame-bytes`.
        FrameTooLarge = "frame_too_large",
        /// The socket failed.
        Error = "error",
        /// `HELLO` without a valid token, where tokens are required.
        Unauthorized = "unauthorized",
        /// The client token's `exp` passed.
        Expired = "expired",
    }
}

label_values! {
    /// Why a client was refused; `reason` of
    /// `gateway_connections_rejected_total`.
    pub enum RejectReason in "reason" {
        /// `--max-connections` are open.
        Full = "full",
        /// The gateway is draining.
        Draining = "draining",
        /// `--max-connections-per-ip` are open from the client's address.
        PerIp = "per_ip",
    }
}

label_values! {
    /// Why queued frames were not written; `reason` of
    /// `gateway_writes_dropped_total`.
    pub enum DropReason in "reason" {
        /// Frames that came after a close, or that the close could not
        /// write (a reset, the close timeout).
        Closed = "closed",
        /// A slow consumer's queue.
        Slow = "slow",
    }
}

label_values! {
    /// What carries a client connection; `transport` of
    /// `gateway_connections_by_transport`.
    pub enum Transport in "transport" {
        /// TCP (or TLS), lines or length frames.
        Tcp = "tcp",
        /// WebSocket (or secure WebSocket).
        Ws = "ws",
    }
}

/// One child metric per value of the label `L`, looked up by variant
/// without hashing.
pub struct ByLabel<L, M> {
    each: Arc<[M]>,
    label: PhantomData<fn(L)>,
}

/// A counter with one labelled child per value of `L`.
pub type CounterBy<L> = ByLabel<L, IntCounter>;
/// A gauge with one labelled child per value of `L`.
pub type GaugeBy<L> = ByLabel<L, IntGauge>;

impl<L: LabelValue, M> ByLabel<L, M> {
    /// Creates the child of every value of `L` with `child`, in order.
    pub(crate) fn new(child: impl Fn(&str) -> M) -> Self {
        Self {
            each: L::ALL.iter().map(|value| child(value.as_str())).collect(),
            label: PhantomData,
        }
    }

    /// The child metric of `value`.
    pub fn get(&self, value: L) -> &M {
        &self.each[value.index()]
    }
}

impl<L: LabelValue> CounterBy<L> {
    /// Adds one under `value`.
    pub fn inc(&self, value: L) {
        self.get(value).inc();
    }

    /// Adds `n` under `value`.
    pub fn inc_by(&self, value: L, n: u64) {
        self.get(value).inc_by(n);
    }

    /// The sum over every value.
    pub fn total(&self) -> u64 {
        self.each.iter().map(IntCounter::get).sum()
    }
}

impl<L: LabelValue> GaugeBy<L> {
    /// Adds one under `value`.
    pub fn inc(&self, value: L) {
        self.get(value).inc();
    }

    /// Takes one away under `value`.
    pub fn dec(&self, value: L) {
        self.get(value).dec();
    }
}

impl<L, M> Clone for ByLabel<L, M> {
    fn clone(&self) -> Self {
        Self {
            each: self.each.clone(),
            label: PhantomData,
        }
    }
}

impl<L: LabelValue, M> fmt::Debug for ByLabel<L, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ByLabel").field("label", &L::NAME).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check<L: LabelValue>(expected: &[&str]) {
        let values: Vec<&str> = L::ALL.iter().map(|v| v.as_str()).collect();
        assert_eq!(values, expected, "{}", std::any::type_name::<L>());
        for (at, value) in L::ALL.iter().enumerate() {
            assert_eq!(value.index(), at, "{value:?}");
        }
    }

    #[test]
    fn values_are_the_contracts_in_order() {
        check::<CloseReason>(&[
            "client",
            "quit",
            "replaced",
            "admin",
            "idle",
            "slow",
            "shutdown",
            "frame_too_large",
            "error",
            "unauthorized",
            "expired",
        ]);
        check::<RejectReason>(&["full", "draining", "per_ip"]);
        check::<DropReason>(&["closed", "slow"]);
        check::<Transport>(&["tcp", "ws"]);
        assert_eq!(CloseReason::FrameTooLarge.to_string(), "frame_too_large");
    }
}

label_values! {
    /// What became of a message given to history; `result` of
    /// `gateway_history_appends_total`.
    pub enum AppendResult in "result" {
        /// Stored at a new offset.
        Stored = "stored",
        /// Its idempotency key was seen within the window: not stored again.
        Duplicate = "duplicate",
        /// History could not store it; it was delivered nowhere.
        Failed = "failed",
    }
}

label_values! {
    /// Why messages left history; `reason` of
    /// `gateway_history_evicted_total`.
    pub enum EvictReason in "reason" {
        /// Past `--history-size` on their topic.
        Size = "size",
        /// Older than `--history-ttl`.
        Ttl = "ttl",
        /// Past `--history-max-bytes` in all.
        Bytes = "bytes",
        /// Their topic's history was deleted.
        Deleted = "deleted",
    }
}

label_values! {
    /// How a positioned `SUB` was answered; `result` of
    /// `gateway_recoveries_total`.
    pub enum RecoveryResult in "result" {
        /// `SUB <topic> LATEST`.
        Latest = "latest",
        /// Every message after the position was replayed.
        Recovered = "recovered",
        /// History could not replay them: `LOST`.
        Lost = "lost",
    }
}

label_values! {
    /// What became of an offset gap seen in a cluster; `result` of
    /// `gateway_history_gaps_total`.
    pub enum GapResult in "result" {
        /// The missing messages were fetched back and delivered in order.
        Repaired = "repaired",
        /// They could not be: positioned subscribers got `LOST`.
        Lost = "lost",
    }
}
