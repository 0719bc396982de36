//! Token-bucket rate limits per principal (requests) and per principal and model (requests and
//! tokens).
//!
//! Buckets live in a sharded map so concurrent requests from different principals rarely contend.
//! A request takes its tokens before it is forwarded (estimated from the prompt and `max_tokens`)
//! and settles the difference when the upstream reports real usage, so a burst of large prompts
//! cannot overshoot the budget by more than one request.
//!
//! Buckets are forgotten once idle: a bucket that has refilled to its burst is the same as no
//! bucket, so each shard sweeps out full buckets whenever it has doubled since its last sweep
//! (amortised O(1) per request, memory at most twice the buckets still refilling). A hard cap
//! bounds memory against a flood of distinct principals all refilling at once; past it a new
//! key is refused (fail closed) rather than an existing limit forgotten.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const SHARDS: usize = 16;

/// Buckets one limiter keeps at most (over all shards) before refusing new keys.
pub const DEFAULT_MAX_BUCKETS: usize = 1_000_000;

/// A shard sweeps no sooner than at this many buckets, so small maps never pay for sweeping.
const MIN_SWEEP_AT: usize = 1024;

/// How often a shard at its cap may sweep.
const FULL_SWEEP_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
    /// When the bucket will hold its whole burst again, and so may be forgotten.
    full_at: Instant,
}

#[derive(Debug)]
struct Shard {
    buckets: HashMap<String, Bucket>,
    /// The size at which the next sweep runs.
    sweep_at: usize,
    /// When the last sweep ran.
    swept: Option<Instant>,
}

impl Shard {
    /// Drops every bucket that is full by `now`, and sets when to sweep next.
    fn sweep(&mut self, now: Instant) {
        self.buckets.retain(|_, b| b.full_at > now);
        self.sweep_at = (self.buckets.len() * 2).max(MIN_SWEEP_AT);
        self.swept = Some(now);
    }
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

    /// How long `missing` tokens take to refill (saturating; a zero rate never refills).
    fn refill_time(self, missing: f64) -> Duration {
        if missing <= 0.0 {
            return Duration::ZERO;
        }
        Duration::try_from_secs_f64(missing * 60.0 / self.per_minute).unwrap_or(Duration::MAX)
    }
}

/// Which limit refused a request, and when to retry.
#[derive(Debug, Clone, PartialEq)]
pub struct Exceeded {
    pub what: &'static str,
    pub retry_after_secs: u64,
}

impl Exceeded {
    /// A refusal to retry in a second (a limiter that cannot decide, or is full).
    fn soon(what: &'static str) -> Self {
        Exceeded {
            what,
            retry_after_secs: 1,
        }
    }
}

impl Bucket {
    /// The tokens held at `now`: refilled since the last update, capped at the burst.
    fn tokens_at(&self, rate: Rate, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        (self.tokens + elapsed * rate.per_minute / 60.0).min(rate.burst)
    }
}

/// Whether `tokens` pay for `cost` (a cost above the burst needs only a full bucket), and if not,
/// when they will.
fn affordable(tokens: f64, rate: Rate, cost: f64, what: &'static str) -> Result<(), Exceeded> {
    let need = cost.min(rate.burst);
    if tokens >= need {
        return Ok(());
    }
    let secs = ((need - tokens) * 60.0 / rate.per_minute).ceil().max(1.0);
    Err(Exceeded {
        what,
        retry_after_secs: secs as u64,
    })
}

#[derive(Debug)]
pub struct RateLimiter {
    shards: [Mutex<Shard>; SHARDS],
    max_per_shard: usize,
    hasher: std::collections::hash_map::RandomState,
}

impl Default for RateLimiter {
    fn default() -> Self {
        Self::new()
    }
}

impl RateLimiter {
    pub fn new() -> Self {
        Self::with_max_buckets(DEFAULT_MAX_BUCKETS)
    }

    /// A limiter that keeps at most about `max` buckets (rounded up to whole shards).
    pub fn with_max_buckets(max: usize) -> Self {
        RateLimiter {
            shards: std::array::from_fn(|_| {
                Mutex::new(Shard {
                    buckets: HashMap::new(),
                    sweep_at: MIN_SWEEP_AT,
                    swept: None,
                })
            }),
            max_per_shard: max.div_ceil(SHARDS).max(1),
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }

    fn shard(&self, key: &str) -> Option<&Mutex<Shard>> {
        self.shards
            .get((self.hasher.hash_one(key) as usize) % SHARDS)
    }

    /// How many buckets are held now (idle ones not yet swept included).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).buckets.len())
            .sum()
    }

    /// Whether no bucket is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
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
        // Fail closed: a limiter that cannot find a key's shard refuses rather than waves through.
        let Some(shard) = self.shard(key) else {
            return Err(Exceeded::soon(what));
        };
        let mut shard = shard.lock().unwrap_or_else(|p| p.into_inner());
        if !shard.buckets.contains_key(key) {
            let len = shard.buckets.len();
            // At the cap a sweep is tried at most once a second, so a flood of new keys cannot
            // make every refusal walk the whole shard.
            let at_cap = len >= self.max_per_shard
                && shard
                    .swept
                    .is_none_or(|t| now.saturating_duration_since(t) >= FULL_SWEEP_EVERY);
            if len >= shard.sweep_at || at_cap {
                shard.sweep(now);
            }
            if shard.buckets.len() >= self.max_per_shard {
                // Every held bucket is still refilling: forgetting one would lift its limit.
                tracing::warn!(
                    buckets = shard.buckets.len(),
                    "rate limiter full; refusing a new key until buckets refill"
                );
                return Err(Exceeded::soon(what));
            }
        }
        let b = shard.buckets.entry(key.to_string()).or_insert(Bucket {
            tokens: rate.burst,
            updated: now,
            full_at: now,
        });
        b.tokens = b.tokens_at(rate, now);
        b.updated = now;
        let result = affordable(b.tokens, rate, cost, what);
        if result.is_ok() {
            b.tokens -= cost;
        }
        b.full_at = now
            .checked_add(rate.refill_time(rate.burst - b.tokens))
            .unwrap_or(now + Duration::from_secs(86_400 * 365));
        result
    }

    /// Whether `cost` could be taken from `key` now, without taking it (a key with no bucket
    /// has its whole burst).
    pub fn check(
        &self,
        key: &str,
        rate: Rate,
        cost: f64,
        what: &'static str,
        now: Instant,
    ) -> Result<(), Exceeded> {
        let Some(shard) = self.shard(key) else {
            return Err(Exceeded::soon(what));
        };
        let shard = shard.lock().unwrap_or_else(|p| p.into_inner());
        let Some(b) = shard.buckets.get(key) else {
            return Ok(());
        };
        affordable(b.tokens_at(rate, now), rate, cost, what)
    }

    /// Adjusts a bucket after the fact (positive `delta` charges more, negative refunds).
    pub fn settle(&self, key: &str, rate: Rate, delta: f64) {
        if let Some(shard) = self.shard(key) {
            let mut shard = shard.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(b) = shard.buckets.get_mut(key) {
                b.tokens = (b.tokens - delta).min(rate.burst);
                b.full_at = b
                    .updated
                    .checked_add(rate.refill_time(rate.burst - b.tokens))
                    .unwrap_or(b.updated + Duration::from_secs(86_400 * 365));
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

    #[test]
    fn idle_buckets_are_forgotten_so_a_million_principals_stay_bounded() {
        let l = RateLimiter::new();
        let t0 = Instant::now();
        let rate = Rate::per_minute(60, 60);
        let mut most = 0;
        // A million principals, one request each, one every millisecond: each bucket is full
        // again a second after its request, so about a thousand are ever refilling at once.
        for i in 0..1_000_000u64 {
            let now = t0 + Duration::from_millis(i);
            l.take(&format!("req|user:{i}"), rate, 1.0, "requests", now)
                .unwrap();
            if i % 10_000 == 0 {
                most = most.max(l.len());
            }
        }
        most = most.max(l.len());
        assert!(most <= 64 * 1024, "held {most} buckets at most");
        // The limits themselves still hold: a principal in the middle of its refill is limited.
        let now = t0 + Duration::from_millis(1_000_000);
        let key = "req|user:999999";
        for _ in 0..59 {
            l.take(key, rate, 1.0, "requests", now).unwrap();
        }
        assert!(l.take(key, rate, 1.0, "requests", now).is_err());
    }

    #[test]
    fn a_full_limiter_refuses_new_keys_rather_than_forget_a_limit() {
        let l = RateLimiter::with_max_buckets(SHARDS * 4);
        let t0 = Instant::now();
        let rate = Rate::per_minute(1, 1);
        let mut refused = 0;
        for i in 0..10_000 {
            if l.take(&format!("k{i}"), rate, 1.0, "requests", t0).is_err() {
                refused += 1;
            }
        }
        assert!(l.len() <= SHARDS * 4, "{}", l.len());
        assert!(refused >= 10_000 - SHARDS * 4, "{refused}");
        // Every bucket admitted is still limited: none was forgotten to make room.
        let admitted: Vec<String> = (0..10_000)
            .map(|i| format!("k{i}"))
            .filter(|k| l.shard(k).unwrap().lock().unwrap().buckets.contains_key(k))
            .collect();
        assert!(!admitted.is_empty());
        for k in &admitted {
            assert!(l.take(k, rate, 1.0, "requests", t0).is_err());
        }
        // Once they have refilled (a minute later), they are swept and new keys fit again.
        let later = t0 + Duration::from_secs(61);
        assert!(l.take("fresh", rate, 1.0, "requests", later).is_ok());
    }
}
