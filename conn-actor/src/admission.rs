//! `--max-connections`: how many connections may be open at once, counted
//! exactly across every thread that accepts. A connection holds a [`Slot`]
//! from before it starts until it stops; dropping the slot gives it back,
//! so no path can forget to. The drain awaits the last slot instead
//! of polling, and learns which connections only wait for their client to
//! close (everything written, the write side shut).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

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
}

impl Admission {
    /// At most `max` connections at once.
    pub fn new(max: usize) -> Self {
        Self {
            open: AtomicUsize::new(0),
            flushed: AtomicUsize::new(0),
            max,
            none_open: Notify::new(),
        }
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
