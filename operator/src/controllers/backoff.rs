//! Retry delays per object (HostedCluster, NodePool, Worker; kept apart by kind): a cluster
//! that does not become ready is looked at again
//! after 5 s, then 10 s, 20 s, … up to 5 min, instead of every 5 s forever. The watches on owned
//! objects wake the controller as soon as something changes, so the timer is only a safety net.
//! The sequence starts over when the cluster settles or its generation changes.
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use kube::Resource;
use kube::api::DynamicObject;
use kube::runtime::reflector::ObjectRef;

use crate::api::HostedCluster;

pub const FIRST_DELAY: Duration = Duration::from_secs(5);
pub const MAX_DELAY: Duration = Duration::from_secs(300);

/// The delay before retry number `attempt` (0 for the first): doubling from [`FIRST_DELAY`],
/// capped at [`MAX_DELAY`].
pub fn delay(attempt: u32) -> Duration {
    // 2^7 × 5 s already exceeds the cap; a bounded shift cannot overflow.
    FIRST_DELAY.saturating_mul(1 << attempt.min(7)).min(MAX_DELAY)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Attempts {
    generation: Option<i64>,
    count: u32,
}

/// How many retries in a row each object has had, by object reference (its kind included).
#[derive(Debug, Default)]
pub struct Backoff {
    attempts: Mutex<HashMap<ObjectRef<DynamicObject>, Attempts>>,
}

fn key<K: Resource<DynamicType = ()>>(object: &K) -> ObjectRef<DynamicObject> {
    ObjectRef::from_obj(object).erase()
}

impl Backoff {
    /// The delay before the next look at a cluster that is not settled, counting this retry.
    pub fn next(&self, hc: &HostedCluster) -> Duration {
        self.next_for(hc)
    }

    /// The cluster settled: its next problem starts again at the first delay.
    pub fn reset(&self, hc: &HostedCluster) {
        self.forget_for(hc);
    }

    /// The cluster is gone: drop its entry.
    pub fn forget(&self, hc: &HostedCluster) {
        self.forget_for(hc);
    }

    /// [`Backoff::next`] for an object of any kind (NodePool, Worker).
    pub fn next_for<K: Resource<DynamicType = ()>>(&self, hc: &K) -> Duration {
        let generation = hc.meta().generation;
        let mut attempts = self.attempts.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = attempts
            .entry(key(hc))
            .or_insert(Attempts { generation, count: 0 });
        // A changed spec deserves a prompt first look, however long the old one failed.
        if entry.generation != generation {
            *entry = Attempts { generation, count: 0 };
        }
        let wait = delay(entry.count);
        entry.count = entry.count.saturating_add(1);
        wait
    }

    /// The object is gone, or settled: its next problem starts again at the first delay.
    pub fn forget_for<K: Resource<DynamicType = ()>>(&self, hc: &K) {
        self.attempts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&key(hc));
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.attempts.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builders::testing::hosted_cluster;

    fn secs(values: &[u64]) -> Vec<Duration> {
        values.iter().copied().map(Duration::from_secs).collect()
    }

    #[test]
    fn delays_double_from_five_seconds_up_to_five_minutes() {
        let delays: Vec<_> = (0..9).map(delay).collect();
        assert_eq!(delays, secs(&[5, 10, 20, 40, 80, 160, 300, 300, 300]));
        assert_eq!(delay(u32::MAX), MAX_DELAY);
    }

    #[test]
    fn a_cluster_that_stays_unready_waits_longer_each_time() {
        let backoff = Backoff::default();
        let hc = hosted_cluster();
        let delays: Vec<_> = (0..4).map(|_| backoff.next(&hc)).collect();
        assert_eq!(delays, secs(&[5, 10, 20, 40]));
    }

    #[test]
    fn settling_starts_the_sequence_over() {
        let backoff = Backoff::default();
        let hc = hosted_cluster();
        backoff.next(&hc);
        backoff.next(&hc);
        backoff.reset(&hc);
        assert_eq!(backoff.next(&hc), FIRST_DELAY);
    }

    #[test]
    fn a_new_generation_starts_the_sequence_over() {
        let backoff = Backoff::default();
        let mut hc = hosted_cluster();
        hc.metadata.generation = Some(1);
        for _ in 0..5 {
            backoff.next(&hc);
        }
        hc.metadata.generation = Some(2);
        assert_eq!(backoff.next(&hc), FIRST_DELAY);
        assert_eq!(backoff.next(&hc), Duration::from_secs(10));
    }

    #[test]
    fn clusters_back_off_independently_and_are_forgotten_when_deleted() {
        let backoff = Backoff::default();
        let first = hosted_cluster();
        let mut second = hosted_cluster();
        second.metadata.name = Some("other".into());
        backoff.next(&first);
        backoff.next(&first);
        assert_eq!(backoff.next(&second), FIRST_DELAY);
        backoff.forget(&first);
        backoff.forget(&second);
        assert_eq!(backoff.tracked(), 0);
    }
}
