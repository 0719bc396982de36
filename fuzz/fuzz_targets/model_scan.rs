//! `ztai model scan` reads files an attacker wrote: pickles, archives and model headers, nested.
//! Whatever the bytes, the scan ends with a report, never a panic; a report is unsafe exactly
//! when it has findings; and a stricter allowlist never turns an unsafe file clean.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ztai_supply::scan::{Allowlist, ScanOptions, Verdict, scan_bytes};

fuzz_target!(|data: &[u8]| {
    let options = ScanOptions { max_member_bytes: 16 << 20, max_total_bytes: 64 << 20, ..ScanOptions::default() };
    for name in ["model.bin", "model.onnx"] {
        let report = scan_bytes(name, data, &options);
        assert_eq!(report.verdict == Verdict::Unsafe, !report.findings.is_empty());
        if report.verdict == Verdict::Clean {
            assert!(report.incomplete.is_empty());
        }
        let strict = ScanOptions { allowlist: Allowlist::empty(), ..options.clone() };
        let strict_report = scan_bytes(name, data, &strict);
        if report.verdict == Verdict::Unsafe {
            assert_eq!(strict_report.verdict, Verdict::Unsafe);
        }
        assert!(strict_report.findings.len() >= report.findings.len());
    }
});
