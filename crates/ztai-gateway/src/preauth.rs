//! The pre-authentication limit: failed credentials counted per client address, before any
//! handler runs.
//!
//! Every failed authentication and every refused TLS handshake is a durable audit record, and
//! anyone who can reach the listener can cause one. Unlimited, a single address could grow the
//! log (and the SIEM's bill) without end. So each address has a bucket of failures (`[limits]
//! failed_auth_per_minute` and `failed_auth_burst`, or its network zone's own); an address whose
//! bucket is empty is refused with 429 before its request is read or its handshake run, and
//! those refusals are summed up in one record per address and interval (count, first and last
//! time) instead of one record each. Addresses that authenticate are never charged.
//!
//! The core here is pure bookkeeping (buckets and tallies, given the time); the pipeline layer
//! and the TLS listener call it, and `flush` turns tallies into records.

use crate::config::{Config, FailedAuthLimit};
use crate::limits::{Exceeded, Rate, RateLimiter};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Instant, SystemTime};

/// Limited addresses tallied at most between two summaries; past this, refusals from further
/// addresses are summed under one "other addresses" tally so memory stays bounded.
const MAX_TALLIED_ADDRESSES: usize = 10_000;

/// What one limited address was refused since the last summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tally {
    pub count: u64,
    pub first: SystemTime,
    pub last: SystemTime,
}

/// Whose refusals a summary covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Tallied {
    Address(IpAddr),
    /// Addresses beyond `MAX_TALLIED_ADDRESSES` in one interval.
    Others,
}

#[derive(Debug, Default)]
pub(crate) struct PreAuth {
    failures: RateLimiter,
    tallies: Mutex<HashMap<Tallied, Tally>>,
}

fn rate(limit: FailedAuthLimit) -> Rate {
    Rate::per_minute(limit.per_minute, limit.burst)
}

fn key(ip: IpAddr) -> String {
    format!("fail|{}", ip.to_canonical())
}

impl PreAuth {
    /// Whether `ip` may be heard now; when not, the refusal is tallied and the answer says when
    /// to retry.
    pub(crate) fn admit(&self, config: &Config, ip: IpAddr, now: Instant) -> Result<(), Exceeded> {
        let limit = config.failed_auth_limit(ip);
        self.failures
            .check(&key(ip), rate(limit), 1.0, "failed authentications", now)
            .inspect_err(|_| self.tally(ip, SystemTime::now()))
    }

    /// Charges one failed authentication (or refused handshake) to `ip`.
    pub(crate) fn failed(&self, config: &Config, ip: IpAddr, now: Instant) {
        let limit = config.failed_auth_limit(ip);
        // A bucket already empty stays empty; the refusal that follows is tallied by `admit`.
        let _ = self
            .failures
            .take(&key(ip), rate(limit), 1.0, "failed authentications", now);
    }

    fn tally(&self, ip: IpAddr, at: SystemTime) {
        let mut tallies = self.tallies.lock().unwrap_or_else(|p| p.into_inner());
        let who = Tallied::Address(ip.to_canonical());
        let who = if tallies.contains_key(&who) || tallies.len() < MAX_TALLIED_ADDRESSES {
            who
        } else {
            Tallied::Others
        };
        let t = tallies.entry(who).or_insert(Tally {
            count: 0,
            first: at,
            last: at,
        });
        t.count = t.count.saturating_add(1);
        t.last = at;
    }

    /// Takes every tally since the last call, for the summary records.
    pub(crate) fn drain(&self) -> Vec<(Tallied, Tally)> {
        let mut tallies = self.tallies.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<(Tallied, Tally)> = tallies.drain().collect();
        out.sort_by_key(|(_, t)| t.first);
        out
    }
}

/// Writes one record per limited address (and one for the overflow) summing up its refusals;
/// a tally whose record cannot be written is put back for the next attempt.
pub(crate) async fn flush(gw: &crate::state::Gateway) {
    for (who, tally) in gw.preauth.drain() {
        let client = match who {
            Tallied::Address(ip) => ip.to_string(),
            Tallied::Others => "(other addresses)".to_string(),
        };
        let mut record = crate::record::system_record(
            &gw.config.instance,
            "preauth_limit",
            "Api::\"gateway\"",
            ztai_core::Decision::Deny,
            format!(
                "{} request(s) or handshake(s) from {client} refused by the pre-authentication limit (too many failed authentications) between {} and {}",
                tally.count,
                crate::record::rfc3339(tally.first),
                crate::record::rfc3339(tally.last)
            ),
        );
        record.time = crate::record::rfc3339(tally.last);
        record.principal = "anonymous".into();
        record.chain = Vec::new();
        record.client = client;
        record.status = 429;
        if let Err(e) = gw.record(record).await {
            tracing::error!(error = %e, "could not record a pre-authentication limit summary; kept for the next attempt");
            let mut tallies = gw.preauth.tallies.lock().unwrap_or_else(|p| p.into_inner());
            match tallies.entry(who) {
                std::collections::hash_map::Entry::Occupied(mut e) => {
                    let t = e.get_mut();
                    t.count = t.count.saturating_add(tally.count);
                    t.first = t.first.min(tally.first);
                }
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(tally);
                }
            }
        }
    }
}

/// Sums up limited addresses every `[limits] failed_auth_summary_secs` until shutdown, and once
/// more at shutdown so nothing tallied is lost.
pub(crate) async fn summarise(
    gw: std::sync::Arc<crate::state::Gateway>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut every = tokio::time::interval(gw.config.limits.failed_auth_summary);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => flush(&gw).await,
            _ = shutdown.changed() => break,
        }
    }
    flush(&gw).await;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use std::time::Duration;

    /// An upstream and a model, which every configuration needs.
    const MODEL: &str = "[[upstreams]]\nname = \"u\"\nbase_url = \"http://127.0.0.1:9/v1\"\n[[models]]\nname = \"m\"\nupstream = \"u\"\ngroups = [\"g\"]\n";

    fn config(extra: &str) -> Config {
        Config::parse(
            &format!(
                "{MODEL}[limits]\nfailed_auth_per_minute = 60\nfailed_auth_burst = 3\n{extra}"
            ),
            std::path::Path::new("/tmp"),
        )
        .unwrap()
    }

    #[test]
    fn an_address_is_limited_after_its_burst_of_failures_and_recovers() {
        let c = config("");
        let p = PreAuth::default();
        let (bad, good): (IpAddr, IpAddr) =
            ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let t0 = Instant::now();
        for _ in 0..3 {
            p.admit(&c, bad, t0).unwrap();
            p.failed(&c, bad, t0);
        }
        let e = p.admit(&c, bad, t0).unwrap_err();
        assert_eq!(e.retry_after_secs, 1);
        p.admit(&c, bad, t0).unwrap_err();
        // Another address is not affected.
        p.admit(&c, good, t0).unwrap();
        // A second later one failure's worth has refilled.
        p.admit(&c, bad, t0 + Duration::from_secs(1)).unwrap();
        // The two refusals are one tally.
        let tallies = p.drain();
        assert_eq!(tallies.len(), 1);
        assert_eq!(tallies[0].0, Tallied::Address(bad));
        assert_eq!(tallies[0].1.count, 2);
        assert!(p.drain().is_empty(), "drained");
    }

    #[test]
    fn a_zone_can_allow_its_addresses_more() {
        let c = config(
            "[[network_zones]]\nname = \"office\"\ncidrs = [\"10.0.0.0/8\"]\nfailed_auth_burst = 10\n",
        );
        let p = PreAuth::default();
        let office: IpAddr = "10.1.2.3".parse().unwrap();
        let mapped: IpAddr = "::ffff:10.1.2.4".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..10 {
            p.admit(&c, office, t0).unwrap();
            p.failed(&c, office, t0);
            p.failed(&c, mapped, t0);
        }
        assert!(p.admit(&c, office, t0).is_err());
        assert!(p.admit(&c, mapped, t0).is_err());
    }

    #[test]
    fn tallies_stay_bounded_under_many_addresses() {
        let c = config("");
        let p = PreAuth::default();
        let t0 = Instant::now();
        for i in 0..(MAX_TALLIED_ADDRESSES as u32 + 500) {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            for _ in 0..3 {
                p.failed(&c, ip, t0);
            }
            assert!(p.admit(&c, ip, t0).is_err());
        }
        let tallies = p.drain();
        assert_eq!(tallies.len(), MAX_TALLIED_ADDRESSES + 1);
        let others = tallies.iter().find(|(w, _)| *w == Tallied::Others).unwrap();
        assert_eq!(others.1.count, 500);
    }

    #[test]
    fn the_defaults_apply_where_nothing_is_set() {
        let c = Config::parse(MODEL, std::path::Path::new("/tmp")).unwrap();
        assert_eq!(
            c.limits.failed_auth,
            FailedAuthLimit {
                per_minute: crate::config::DEFAULT_FAILED_AUTH_PER_MINUTE,
                burst: crate::config::DEFAULT_FAILED_AUTH_BURST,
            }
        );
        assert_eq!(
            c.limits.failed_auth_summary,
            crate::config::DEFAULT_FAILED_AUTH_SUMMARY
        );
        let ip: IpAddr = "203.0.113.9".parse().unwrap();
        assert_eq!(c.failed_auth_limit(ip), c.limits.failed_auth);
    }

    #[test]
    fn zero_limits_are_refused_naming_the_key() {
        for (text, key) in [
            (
                "[limits]\nfailed_auth_per_minute = 0",
                "limits.failed_auth_per_minute",
            ),
            (
                "[limits]\nfailed_auth_burst = 0",
                "limits.failed_auth_burst",
            ),
            (
                "[limits]\nfailed_auth_summary_secs = 0",
                "limits.failed_auth_summary_secs",
            ),
            (
                "[[network_zones]]\nname = \"z\"\ncidrs = [\"10.0.0.0/8\"]\nfailed_auth_burst = 0",
                "network_zones[0].failed_auth_burst",
            ),
        ] {
            let e =
                Config::parse(&format!("{MODEL}{text}"), std::path::Path::new("/tmp")).unwrap_err();
            assert_eq!(e.key, key, "{text}");
        }
    }
}
