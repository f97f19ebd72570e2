//! The pool manager: an actor that hands a reset per-connection state to each
//! new connection and takes it back when the connection closes.
//!
//! It is generic over the state ([`Recyclable`]) and knows nothing of sockets
//! or framing: the state type decides what "reset" means and whether a state
//! grew too large to keep. The manager enforces the two pool-wide rules: a
//! state is reset before anyone can take it again, and at most `max_idle`
//! states wait. Several managers (one per thread) may share the metrics:
//! `gateway_pool_idle` moves by deltas, so it is their sum.

#![warn(missing_docs)]

use actix::{Actor, Context, Handler, Message, MessageResult};
use gateway_metrics::GatewayMetrics;

/// State that can be handed from one connection to the next.
pub trait Recyclable: Default + Send + 'static {
    /// Forgets everything of the previous owner: bytes, names, counters.
    /// Buffers that grew large are shrunk or dropped. Returns `false` when
    /// the state is not worth keeping at all.
    fn reset(&mut self) -> bool;

    /// Whether the state holds nothing of a previous owner; checked before
    /// every hand-out.
    fn is_pristine(&self) -> bool;
}

/// A state handed out by [`CheckoutOf`].
pub struct Lease<S> {
    /// The state, reset.
    pub state: Box<S>,
    /// Whether it came from the pool rather than a new allocation; the
    /// manager counts it, so no one else needs to know.
    reused: bool,
}

/// Asks for a state for a new connection, typed by the state it returns.
pub struct CheckoutOf<S>(std::marker::PhantomData<S>);

impl<S> Default for CheckoutOf<S> {
    fn default() -> Self {
        Self(std::marker::PhantomData)
    }
}

impl<S: Recyclable> Message for CheckoutOf<S> {
    type Result = Lease<S>;
}

/// Gives a closed connection's state back.
pub struct Checkin<S>(pub Box<S>);

impl<S: Recyclable> Message for Checkin<S> {
    type Result = ();
}

/// The pool-manager actor.
pub struct PoolManager<S> {
    idle: Vec<Box<S>>,
    max_idle: usize,
    metrics: GatewayMetrics,
}

impl<S: Recyclable> PoolManager<S> {
    /// A pool keeping at most `max_idle` reset states.
    pub fn new(max_idle: usize, metrics: GatewayMetrics) -> Self {
        Self {
            idle: Vec::with_capacity(max_idle.min(1024)),
            max_idle,
            metrics,
        }
    }

    /// Hands out a reset state, recycled when one waits.
    pub fn take(&mut self) -> Lease<S> {
        let lease = match self.idle.pop() {
            Some(state) => {
                self.metrics.pool_reused.inc();
                Lease {
                    state,
                    reused: true,
                }
            }
            None => {
                self.metrics.pool_allocated.inc();
                Lease {
                    state: Box::default(),
                    reused: false,
                }
            }
        };
        debug_assert!(lease.state.is_pristine());
        if lease.reused {
            self.metrics.pool_idle.dec();
        }
        lease
    }

    /// Resets a returned state and keeps it, or drops it when the pool is
    /// full or the state asks to be dropped.
    pub fn give_back(&mut self, mut state: Box<S>) {
        let keep = state.reset() && self.idle.len() < self.max_idle;
        // A state that does not come out clean is a bug in its reset; never
        // let it reach another connection.
        if keep && state.is_pristine() {
            self.idle.push(state);
            self.metrics.pool_idle.inc();
        } else {
            self.metrics.pool_discarded.inc();
        }
    }

    /// States waiting to be handed out.
    pub fn idle(&self) -> usize {
        self.idle.len()
    }
}

impl<S: Recyclable> Actor for PoolManager<S> {
    type Context = Context<Self>;
}

impl<S: Recyclable> Handler<CheckoutOf<S>> for PoolManager<S> {
    type Result = MessageResult<CheckoutOf<S>>;

    fn handle(&mut self, _: CheckoutOf<S>, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.take())
    }
}

impl<S: Recyclable> Handler<Checkin<S>> for PoolManager<S> {
    type Result = ();

    fn handle(&mut self, msg: Checkin<S>, _: &mut Context<Self>) {
        self.give_back(msg.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A state with a buffer that may grow, like a connection's.
    #[derive(Default)]
    struct Buf {
        bytes: Vec<u8>,
        owner: Option<String>,
    }

    impl Recyclable for Buf {
        fn reset(&mut self) -> bool {
            self.bytes.clear();
            if self.bytes.capacity() > 64 {
                self.bytes = Vec::new();
            }
            self.owner = None;
            true
        }
        fn is_pristine(&self) -> bool {
            self.bytes.is_empty() && self.owner.is_none()
        }
    }

    fn pool(max_idle: usize) -> (PoolManager<Buf>, prometheus::Registry) {
        let (registry, metrics) = gateway_metrics::new_registry().expect("registry");
        (PoolManager::new(max_idle, metrics), registry)
    }

    fn metric(registry: &prometheus::Registry, name: &str) -> f64 {
        registry
            .gather()
            .iter()
            .find(|f| f.name() == name)
            .and_then(|f| f.get_metric().first().cloned())
            .map(|m| {
                if m.get_counter().is_some() {
                    m.get_counter().value()
                } else {
                    m.get_gauge().value()
                }
            })
            .unwrap_or(f64::NAN)
    }

    #[test]
    fn returned_state_is_reset_before_reuse() {
        let (mut pool, registry) = pool(4);
        let mut lease = pool.take();
        assert!(!lease.reused);
        lease.state.bytes.extend_from_slice(b"half a fra");
        lease.state.owner = Some("alice".into());
        pool.give_back(lease.state);

        let again = pool.take();
        assert!(again.reused);
        assert!(again.state.bytes.is_empty());
        assert!(again.state.owner.is_none());
        assert_eq!(metric(&registry, "gateway_pool_reused_total"), 1.0);
        assert_eq!(metric(&registry, "gateway_pool_allocated_total"), 1.0);
    }

    #[test]
    fn large_buffers_are_dropped_not_kept() {
        let (mut pool, _registry) = pool(4);
        let mut lease = pool.take();
        lease.state.bytes.resize(1 << 20, 7);
        pool.give_back(lease.state);
        let again = pool.take();
        assert!(again.reused);
        assert!(again.state.bytes.capacity() <= 64);
    }

    #[test]
    fn keeps_at_most_max_idle() {
        let (mut pool, registry) = pool(2);
        let leases: Vec<_> = (0..5).map(|_| pool.take()).collect();
        for lease in leases {
            pool.give_back(lease.state);
        }
        assert_eq!(pool.idle(), 2);
        assert_eq!(metric(&registry, "gateway_pool_discarded_total"), 3.0);
        assert_eq!(metric(&registry, "gateway_pool_idle"), 2.0);
    }

    #[test]
    fn zero_max_idle_never_reuses() {
        let (mut pool, _registry) = pool(0);
        let lease = pool.take();
        pool.give_back(lease.state);
        assert!(!pool.take().reused);
    }

    #[actix_rt::test]
    async fn works_as_an_actor() {
        let (pool, _registry) = pool(1);
        let addr = pool.start();
        let lease = addr
            .send(CheckoutOf::<Buf>::default())
            .await
            .expect("mailbox");
        addr.do_send(Checkin(lease.state));
        let again = addr
            .send(CheckoutOf::<Buf>::default())
            .await
            .expect("mailbox");
        assert!(again.reused);
    }
}
