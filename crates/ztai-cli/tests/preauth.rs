//! The pre-authentication limit against the real binary: one address sending bad credentials
//! is limited and summed up in a bounded number of records, while other addresses are served.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;
use common::*;
use std::net::IpAddr;

fn audit(s: &Served, from: IpAddr) -> Vec<serde_json::Value> {
    let r = request_from(
        from,
        s.admin,
        "GET",
        "/api/v1/audit?limit=10000",
        Some(&s.admin_token),
        "",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["records"].as_array().unwrap().clone()
}

#[test]
fn five_thousand_bad_credentials_from_one_address_add_bounded_records_and_get_429() {
    let dir = tempfile::tempdir().unwrap();
    // The fixture allows loopback clients many failures; this zone gives 127.0.0.1 alone the
    // default limit (50 at once, 30 a minute) back.
    let s = Served::start(
        dir.path(),
        "[[network_zones]]\nname = \"attacker\"\ncidrs = [\"127.0.0.1/32\"]\nfailed_auth_per_minute = 30\nfailed_auth_burst = 50\n",
    );
    let other: IpAddr = "127.0.0.2".parse().unwrap();
    let before = audit(&s, other).len();

    let bad = "ztai_nosuchkey_0000000000000000000000000000";
    let mut statuses = std::collections::BTreeMap::<u16, u32>::new();
    for i in 0..5000 {
        let r = chat(s.gw, bad, "echo-small", &format!("attempt {i}"), false);
        *statuses.entry(r.status).or_default() += 1;
        if r.status == 429 {
            assert!(r.header("retry-after").is_some());
        }
    }
    // The burst (50) and a little refill (30 a minute) are heard; the rest are refused
    // before their credential is even looked at.
    let heard = statuses.get(&401).copied().unwrap_or(0);
    let limited = statuses.get(&429).copied().unwrap_or(0);
    assert!((50..200).contains(&heard), "{statuses:?}");
    assert_eq!(heard + limited, 5000, "{statuses:?}");

    // A good key from another address is unaffected, on the data plane and the admin API.
    assert_eq!(
        request_from(
            other,
            s.gw,
            "POST",
            "/v1/chat/completions",
            Some(&s.key),
            r#"{"model":"echo-small","messages":[{"role":"user","content":"hello"}]}"#
        )
        .status,
        200
    );
    // The limited address is refused whatever it presents, until its bucket refills.
    assert_eq!(chat(s.gw, &s.key, "echo-small", "hello", false).status, 429);

    // The refusals are summed up (one record a second here), so the log grew by the 401s heard,
    // a few summaries and this test's own calls, not by 5,000.
    let mut summarised = 0u64;
    wait_until("the summaries to cover every refusal", || {
        let records = audit(&s, other);
        summarised = records
            .iter()
            .filter(|r| r["action"] == "preauth_limit")
            .map(|r| {
                assert_eq!(r["client"], "127.0.0.1");
                assert_eq!(r["status"], 429);
                let reason = r["reason"].as_str().unwrap();
                reason
                    .split(' ')
                    .next()
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or_else(|| panic!("{reason}"))
            })
            .sum();
        summarised > u64::from(limited)
    });
    // Every 429 (and the refused good key) is counted in a summary.
    assert_eq!(summarised, u64::from(limited) + 1);
    let records = audit(&s, other);
    let added = records.len() - before;
    assert!(
        added < usize::try_from(heard).unwrap() + 40,
        "{added} records for {heard} heard failures"
    );
    let failures = records
        .iter()
        .filter(|r| r["status"] == 401 && r["client"].as_str().unwrap().starts_with("127.0.0.1:"))
        .count();
    assert_eq!(failures, usize::try_from(heard).unwrap());
}
