//! `--max-connections`: how many connections may be open at once, counted
//! exactly across every thread that accepts, and `--max-connections-per-ip`:
//! how many from one address. A connection holds a [`Slot`] from before it
//! starts until it stops; dropping the slot gives both back, so no path can
//! forget to. Per-address counts are kept only for addresses with a
//! connection open, so their memory is bounded by the connections. The drain awaits the last slot instead
//! of polling, and learns which connections only wait for their client to
//! close (everything written, the write side shut).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::Notify;

/// Open-connection slots.
#[derive(Debug)]
pub struct Admission {
    open: AtomicUsize,
    /// Slots whose connection has written everything, its last frame
    /// included, and only waits for the client to close.
    flushed: AtomicUsize,
    max: usize,
    /// Notified when the last slot is given back.
    none_open: Notify,
    /// Open connections by client address, when they are limited.
    per_ip: Option<PerIp>,
}

/// `--max-connections-per-ip`.
#[derive(Debug)]
struct PerIp {
    max: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// Why a client was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `--max-connections` are open.
    Full,
    /// `--max-connections-per-ip` are open from its address.
    PerIp,
}

impl Admission {
    /// At most `max` connections at once.
    pub fn new(max: usize) -> Self {
        Self {
            open: AtomicUsize::new(0),
            flushed: AtomicUsize::new(0),
            max,
            none_open: Notify::new(),
            per_ip: None,
        }
    }

    /// At most `max` connections from one address as well (0: no limit).
    /// IPv4-mapped IPv6 addresses count as their IPv4 address.
    pub fn with_per_ip(mut self, max: usize) -> Self {
        self.per_ip = (max > 0).then(|| PerIp {
            max,
            open: Mutex::new(HashMap::new()),
        });
        self
    }

    /// Takes a slot for a client from `ip`: its address's place first,
    /// then one of all.
    pub fn try_admit_from(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Refusal> {
        let ip = ip.to_canonical();
        if let Some(per_ip) = &self.per_ip {
            let mut open = per_ip.open.lock().unwrap_or_else(PoisonError::into_inner);
            let count = open.entry(ip).or_insert(0);
            if *count >= per_ip.max {
                return Err(Refusal::PerIp);
            }
            *count += 1;
        }
        // Built before the global check, so a refusal gives the address's
        // place back as it drops.
        let mut slot = Slot {
            admission: self.clone(),
            flushed: false,
            ip: self.per_ip.is_some().then_some(ip),
            counted: false,
        };
        let admitted = self
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < self.max).then_some(open + 1)
            })
            .is_ok();
        if !admitted {
            return Err(Refusal::Full);
        }
        slot.counted = true;
        Ok(slot)
    }

    /// Connections open now from `ip` (0 where they are not limited).
    pub fn open_from(&self, ip: IpAddr) -> usize {
        self.per_ip.as_ref().map_or(0, |per_ip| {
            let open = per_ip.open.lock().unwrap_or_else(PoisonError::into_inner);
            open.get(&ip.to_canonical()).copied().unwrap_or(0)
        })
    }

    /// Takes a slot; `None` when all are taken.
    pub fn try_admit(self: &Arc<Self>) -> Option<Slot> {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < self.max).then_some(open + 1)
            })
            .ok()
            .map(|_| Slot {
                admission: self.clone(),
                flushed: false,
                ip: None,
                counted: true,
            })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Open connections that have written everything, their last frame
    /// included, and only wait for their client to close.
    pub fn flushed(&self) -> usize {
        self.flushed.load(Ordering::Acquire)
    }

    /// Returns once no connection is open.
    pub async fn none_open(&self) {
        loop {
            let released = self.none_open.notified();
            tokio::pin!(released);
            // Registered before the check, so a release in between wakes it.
            released.as_mut().enable();
            if self.open() == 0 {
                return;
            }
            released.await;
        }
    }
}

/// One connection's place under `--max-connections`, given back on drop.
#[derive(Debug)]
pub struct Slot {
    admission: Arc<Admission>,
    flushed: bool,
    /// The address whose place it holds under `--max-connections-per-ip`.
    ip: Option<IpAddr>,
    /// Whether it holds a place under `--max-connections`.
    counted: bool,
}

impl Slot {
    /// Notes that the connection wrote everything, its last frame
    /// included, and now only waits for the client to close.
    pub fn mark_flushed(&mut self) {
        if !self.flushed {
            self.flushed = true;
            self.admission.flushed.fetch_add(1, Ordering::AcqRel);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let admission = &self.admission;
        if let (Some(ip), Some(per_ip)) = (self.ip, &admission.per_ip) {
            let mut open = per_ip.open.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(count) = open.get_mut(&ip) {
                *count -= 1;
                if *count == 0 {
                    open.remove(&ip);
                }
            }
        }
        if !self.counted {
            return;
        }
        if self.flushed {
            admission.flushed.fetch_sub(1, Ordering::AcqRel);
        }
        if admission.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            admission.none_open.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_up_to_max_and_again_after_release() {
        let slots = Arc::new(Admission::new(2));
        let first = slots.try_admit();
        assert!(first.is_some());
        let second = slots.try_admit();
        assert!(second.is_some());
        assert!(slots.try_admit().is_none());
        drop(first);
        let third = slots.try_admit();
        assert!(third.is_some());
        assert!(slots.try_admit().is_none());
        assert_eq!(slots.open(), 2);
    }

    #[test]
    fn limits_each_address_apart() {
        let slots = Arc::new(Admission::new(10).with_per_ip(2));
        let a: IpAddr = "127.0.0.1".parse().expect("ip");
        let b: IpAddr = "127.0.0.2".parse().expect("ip");
        let a_mapped: IpAddr = "::ffff:127.0.0.1".parse().expect("ip");
        let first = slots.try_admit_from(a).expect("first");
        let _second = slots.try_admit_from(a_mapped).expect("second");
        assert_eq!(slots.try_admit_from(a).err(), Some(Refusal::PerIp));
        let _other = slots.try_admit_from(b).expect("another address");
        assert_eq!((slots.open(), slots.open_from(a)), (3, 2));
        drop(first);
        assert_eq!((slots.open(), slots.open_from(a)), (2, 1));
        let _again = slots.try_admit_from(a).expect("after a release");
    }

    #[test]
    fn a_full_gateway_gives_the_address_its_place_back() {
        let slots = Arc::new(Admission::new(1).with_per_ip(5));
        let a: IpAddr = "10.0.0.1".parse().expect("ip");
        let b: IpAddr = "10.0.0.2".parse().expect("ip");
        let held = slots.try_admit_from(a).expect("first");
        assert_eq!(slots.try_admit_from(b).err(), Some(Refusal::Full));
        assert_eq!((slots.open(), slots.open_from(b)), (1, 0));
        drop(held);
        assert_eq!((slots.open(), slots.open_from(a)), (0, 0));
        let unlimited = Arc::new(Admission::new(3).with_per_ip(0));
        let _x = unlimited.try_admit_from(a).expect("x");
        let _y = unlimited.try_admit_from(a).expect("y");
        let _z = unlimited.try_admit_from(a).expect("z");
        assert_eq!(unlimited.try_admit_from(a).err(), Some(Refusal::Full));
    }

    #[test]
    fn flushed_slots_are_counted_until_released() {
        let slots = Arc::new(Admission::new(3));
        let mut a = slots.try_admit().expect("slot");
        let b = slots.try_admit().expect("slot");
        a.mark_flushed();
        a.mark_flushed();
        assert_eq!((slots.open(), slots.flushed()), (2, 1));
        drop(a);
        assert_eq!((slots.open(), slots.flushed()), (1, 0));
        drop(b);
        assert_eq!((slots.open(), slots.flushed()), (0, 0));
    }

    #[actix_rt::test]
    async fn none_open_waits_for_the_last_release() {
        let slots = Arc::new(Admission::new(2));
        slots.none_open().await;
        let a = slots.try_admit().expect("slot");
        let b = slots.try_admit().expect("slot");
        let waiter = {
            let slots = slots.clone();
            actix_rt::spawn(async move { slots.none_open().await })
        };
        drop(a);
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "returned with a slot still taken");
        drop(b);
        let done = actix_rt::time::timeout(std::time::Duration::from_secs(5), waiter).await;
        assert!(matches!(done, Ok(Ok(()))), "not woken by the last release");
    }
}
