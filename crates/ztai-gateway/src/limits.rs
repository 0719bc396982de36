//! Token-bucket rate limits per principal (requests) and per principal and model (requests and
//! tokens).
//!
//! Buckets live in a sharded map so concurrent requests from different principals rarely contend.
//! A request takes its tokens before it is forwarded (estimated from the prompt and `max_tokens`)
//! and settles the difference when the upstream reports real usage, so a burst of large prompts
//! cannot overshoot the budget by more than one request.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Mutex;
use std::time::Instant;

const SHARDS: usize = 16;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Capacity and refill of one bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub per_minute: f64,
    pub burst: f64,
}

impl Rate {
    pub fn per_minute(per_minute: u32, burst: u32) -> Self {
        Rate {
            per_minute: f64::from(per_minute),
            burst: f64::from(burst.max(1)),
        }
    }
}

/// Which limit refused a request, and when to retry.
#[derive(Debug, Clone, PartialEq)]
pub struct Exceeded {
    pub what: &'static str,
    pub retry_after_secs: u64,
}

#[derive(Debug)]
pub struct RateLimiter {
    shards: Vec<Mutex<HashMap<String, Bucket>>>,
    hasher: std::collections::hash_map::RandomState,
}

impl Default for RateLimiter {
    fn default() -> Self {
        Self::new()
    }
}

impl RateLimiter {
    pub fn new() -> Self {
        RateLimiter {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }

    fn shard(&self, key: &str) -> Option<&Mutex<HashMap<String, Bucket>>> {
        self.shards
            .get((self.hasher.hash_one(key) as usize) % SHARDS)
    }

    /// Takes `cost` from the bucket `key` if it holds that much; otherwise says when it will.
    /// A cost above the burst is admitted once the bucket is full, leaving it in debt, so a single
    /// large request is never refused forever.
    pub fn take(
        &self,
        key: &str,
        rate: Rate,
        cost: f64,
        what: &'static str,
        now: Instant,
    ) -> Result<(), Exceeded> {
        let Some(shard) = self.shard(key) else {
            return Ok(());
        };
        let mut map = shard.lock().unwrap_or_else(|p| p.into_inner());
        let b = map.entry(key.to_string()).or_insert(Bucket {
            tokens: rate.burst,
            updated: now,
        });
        let elapsed = now.saturating_duration_since(b.updated).as_secs_f64();
        b.tokens = (b.tokens + elapsed * rate.per_minute / 60.0).min(rate.burst);
        b.updated = now;
        let need = cost.min(rate.burst);
        if b.tokens >= need {
            b.tokens -= cost;
            Ok(())
        } else {
            let missing = need - b.tokens;
            let secs = (missing * 60.0 / rate.per_minute).ceil().max(1.0);
            Err(Exceeded {
                what,
                retry_after_secs: secs as u64,
            })
        }
    }

    /// Adjusts a bucket after the fact (positive `delta` charges more, negative refunds).
    pub fn settle(&self, key: &str, rate: Rate, delta: f64) {
        if let Some(shard) = self.shard(key) {
            let mut map = shard.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(b) = map.get_mut(key) {
                b.tokens = (b.tokens - delta).min(rate.burst);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_bucket_allows_its_burst_then_refuses_with_a_retry_time() {
        let l = RateLimiter::new();
        let t0 = Instant::now();
        let rate = Rate::per_minute(60, 3);
        for _ in 0..3 {
            l.take("alice", rate, 1.0, "requests", t0).unwrap();
        }
        let e = l.take("alice", rate, 1.0, "requests", t0).unwrap_err();
        assert_eq!(e.retry_after_secs, 1);
        // Other principals have their own bucket.
        l.take("bob", rate, 1.0, "requests", t0).unwrap();
        // One second later one request's worth has refilled.
        l.take("alice", rate, 1.0, "requests", t0 + Duration::from_secs(1))
            .unwrap();
        assert!(
            l.take("alice", rate, 1.0, "requests", t0 + Duration::from_secs(1))
                .is_err()
        );
    }

    #[test]
    fn oversized_costs_are_admitted_from_a_full_bucket_and_leave_debt() {
        let l = RateLimiter::new();
        let t0 = Instant::now();
        let rate = Rate::per_minute(600, 100);
        l.take("k", rate, 500.0, "tokens", t0).unwrap();
        let e = l.take("k", rate, 1.0, "tokens", t0).unwrap_err();
        assert!(e.retry_after_secs >= 40, "{e:?}");
    }

    #[test]
    fn settling_refunds_and_charges() {
        let l = RateLimiter::new();
        let t0 = Instant::now();
        let rate = Rate::per_minute(60, 10);
        l.take("k", rate, 10.0, "tokens", t0).unwrap();
        assert!(l.take("k", rate, 1.0, "tokens", t0).is_err());
        l.settle("k", rate, -5.0);
        l.take("k", rate, 5.0, "tokens", t0).unwrap();
    }
}
