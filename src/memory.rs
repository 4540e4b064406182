//! A budget of memory shared by parallel work: decoding images in a build.
//!
//! Each image's decoded size is known from its header before any pixel is
//! allocated ([`lookalike_vision::preprocess::open`]). Decodes reserve what they
//! will take and wait while the budget is spent, so peak memory depends on
//! the budget, not on the number of cores times the largest image a
//! stranger's catalog names.

use std::sync::{Condvar, Mutex};

pub struct MemoryBudget {
    total: u64,
    used: Mutex<u64>,
    freed: Condvar,
}

/// Memory held from a [`MemoryBudget`] until dropped.
pub struct Reservation<'a> {
    budget: &'a MemoryBudget,
    bytes: u64,
}

impl MemoryBudget {
    pub const fn new(total: u64) -> Self {
        Self { total, used: Mutex::new(0), freed: Condvar::new() }
    }

    /// Waits until `bytes` fit beside what others hold, and holds them. A
    /// request over the whole budget waits for the budget to be free and
    /// then runs alone.
    pub fn reserve(&self, bytes: u64) -> Reservation<'_> {
        let bytes = bytes.min(self.total);
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        while *used + bytes > self.total {
            used = self.freed.wait(used).unwrap_or_else(|e| e.into_inner());
        }
        *used += bytes;
        Reservation { budget: self, bytes }
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        let mut used = self.budget.used.lock().unwrap_or_else(|e| e.into_inner());
        *used -= self.bytes;
        self.budget.freed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[test]
    fn parallel_holders_never_exceed_the_budget() {
        let budget = MemoryBudget::new(100);
        let held = AtomicU64::new(0);
        let peak = AtomicU64::new(0);
        std::thread::scope(|scope| {
            for i in 0..8u64 {
                let (budget, held, peak) = (&budget, &held, &peak);
                scope.spawn(move || {
                    for _ in 0..20 {
                        let want = 10 + (i * 17) % 60;
                        let _r = budget.reserve(want);
                        let now = held.fetch_add(want, Ordering::SeqCst) + want;
                        peak.fetch_max(now, Ordering::SeqCst);
                        std::thread::yield_now();
                        held.fetch_sub(want, Ordering::SeqCst);
                    }
                });
            }
        });
        assert!(peak.load(Ordering::SeqCst) <= 100);
        // A request over the whole budget still runs (alone).
        let _all = budget.reserve(1_000);
    }
}
