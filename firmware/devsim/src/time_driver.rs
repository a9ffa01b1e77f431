//! The embassy-time driver for the host: minimq reads time and arms its keepalive timers
//! through embassy-time.
//!
//! embassy-time's own `std` driver keeps timers in a fixed queue of at most 128 entries; with
//! more simulated devices than that, each new timer evicts (and wakes) another task, which
//! re-arms and evicts the next: a busy loop. This driver keeps one entry per task (keyed by
//! the waker's data and vtable pointers, which is what `Waker::will_wake` compares) in
//! ordered maps, so it scales with the device count. One thread fires due timers.

use embassy_time_driver::{Driver, TICK_HZ};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::task::Waker;
use std::time::{Duration, Instant};

/// Identity of a task's waker.
type Key = (usize, usize);

#[derive(Default)]
struct Queue {
    by_key: HashMap<Key, (u64, Waker)>,
    by_time: BTreeSet<(u64, Key)>,
}

struct HostDriver {
    zero: OnceLock<Instant>,
    queue: OnceLock<Mutex<Queue>>,
    changed: Condvar,
    thread: OnceLock<()>,
}

embassy_time_driver::time_driver_impl!(static DRIVER: HostDriver = HostDriver {
    zero: OnceLock::new(),
    queue: OnceLock::new(),
    changed: Condvar::new(),
    thread: OnceLock::new(),
});

fn ticks(elapsed: Duration) -> u64 {
    u64::try_from(elapsed.as_nanos() * u128::from(TICK_HZ) / 1_000_000_000).unwrap_or(u64::MAX)
}

fn duration(ticks: u64) -> Duration {
    Duration::from_nanos(
        u64::try_from(u128::from(ticks) * 1_000_000_000 / u128::from(TICK_HZ)).unwrap_or(u64::MAX),
    )
}

impl HostDriver {
    fn zero(&self) -> Instant {
        *self.zero.get_or_init(Instant::now)
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A panic while holding the lock leaves the maps consistent (no partial updates matter
        // for wake-ups), so a poisoned lock is still usable.
        self.queue
            .get_or_init(Mutex::default)
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn alarm_thread(&'static self) {
        let mut queue = self.lock();
        loop {
            let now = self.now();
            let mut due = Vec::new();
            while let Some(&(at, key)) = queue.by_time.first() {
                if at > now {
                    break;
                }
                queue.by_time.pop_first();
                if let Some((_, waker)) = queue.by_key.remove(&key) {
                    due.push(waker);
                }
            }
            let next = queue.by_time.first().map(|&(at, _)| at);
            drop(queue);
            due.into_iter().for_each(Waker::wake);
            queue = self.lock();
            if queue.by_time.first().map(|&(at, _)| at) != next {
                continue; // changed while we woke tasks
            }
            queue = match next {
                Some(at) => {
                    let wait = duration(at.saturating_sub(self.now()));
                    self.changed
                        .wait_timeout(queue, wait)
                        .map(|(q, _)| q)
                        .unwrap_or_else(|e| e.into_inner().0)
                }
                None => self.changed.wait(queue).unwrap_or_else(|e| e.into_inner()),
            };
        }
    }
}

impl Driver for HostDriver {
    fn now(&self) -> u64 {
        ticks(self.zero().elapsed())
    }

    fn schedule_wake(&self, at: u64, waker: &Waker) {
        self.thread.get_or_init(|| {
            std::thread::Builder::new()
                .name("embassy-time".into())
                .spawn(|| DRIVER.alarm_thread())
                .map(drop)
                .unwrap_or_else(|e| eprintln!("devsim: cannot start the timer thread: {e}"));
        });
        let key = (
            waker.data() as usize,
            std::ptr::from_ref(waker.vtable()) as usize,
        );
        let mut queue = self.lock();
        let earliest_before = queue.by_time.first().map(|&(t, _)| t);
        match queue.by_key.get(&key).map(|(t, _)| *t) {
            Some(old) if old <= at => return,
            Some(old) => {
                queue.by_time.remove(&(old, key));
            }
            None => {}
        }
        queue.by_key.insert(key, (at, waker.clone()));
        queue.by_time.insert((at, key));
        if earliest_before.is_none_or(|t| at < t) {
            self.changed.notify_one();
        }
    }
}
