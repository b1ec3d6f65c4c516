//! The request budget of one pass.
//!
//! Owns: how many more requests to Hydra the pass may send. Every request the
//! pass sends is taken from it first (evals pages, eval build lists, single
//! builds, rechecks), so a pass costs Hydra at most `ingest.requests_per_pass`
//! requests however far behind we are: a trunk-sized first eval or a mass
//! rebuild is learned over many passes, each resuming where the last stopped,
//! and the daemon plans and acts between them.
//!
//! Must never: hand out more than it was given.

use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(Debug, Default)]
pub struct RequestBudget {
    left: AtomicUsize,
    spent: AtomicUsize,
}

impl RequestBudget {
    /// Start a pass with `requests` to spend.
    pub fn refill(&self, requests: usize) {
        self.left.store(requests, Ordering::SeqCst);
        self.spent.store(0, Ordering::SeqCst);
    }

    /// Take one request; false once the budget is spent.
    pub fn take(&self) -> bool {
        self.take_up_to(1) == 1
    }

    /// Take up to `wanted` requests; returns how many were granted.
    pub fn take_up_to(&self, wanted: usize) -> usize {
        let mut granted = 0;
        let _ = self
            .left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                granted = left.min(wanted);
                Some(left - granted)
            });
        self.spent.fetch_add(granted, Ordering::SeqCst);
        granted
    }

    pub fn left(&self) -> usize {
        self.left.load(Ordering::SeqCst)
    }

    pub fn spent(&self) -> usize {
        self.spent.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_grants_more_than_it_was_given() {
        let budget = RequestBudget::default();
        budget.refill(5);
        assert_eq!(budget.take_up_to(3), 3);
        assert_eq!(budget.take_up_to(3), 2);
        assert!(!budget.take());
        assert_eq!((budget.left(), budget.spent()), (0, 5));
    }

    #[test]
    fn a_refill_starts_a_new_count() {
        let budget = RequestBudget::default();
        budget.refill(2);
        assert_eq!(budget.take_up_to(2), 2);
        budget.refill(3);
        assert_eq!((budget.spent(), budget.take_up_to(9)), (0, 3));
    }
}
