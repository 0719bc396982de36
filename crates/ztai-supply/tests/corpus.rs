//! The labelled pickle corpus: every malicious file is flagged, no benign file is.
#![allow(
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use std::path::Path;

use ztai_supply::scan::{ScanOptions, Verdict, scan_blob};

fn check(corpus: &str) -> [usize; 3] {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(corpus);
    let labels = std::fs::read_to_string(dir.join("labels.csv")).unwrap_or_default();
    let options = ScanOptions::default();
    let mut counts = [0usize; 3];
    for line in labels.lines().skip(1) {
        let mut fields = line.splitn(3, ',');
        let (Some(path), Some(label)) = (fields.next(), fields.next()) else {
            continue;
        };
        let file = std::fs::File::open(dir.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
        let report = scan_blob(path, &file, &options);
        match label {
            "malicious" => {
                assert_eq!(
                    report.verdict,
                    Verdict::Unsafe,
                    "{path} not flagged: {report:?}"
                );
                assert!(report.findings.iter().all(|f| !f.detail.is_empty()));
                counts[0] += 1;
            }
            "benign" => {
                assert_eq!(report.verdict, Verdict::Clean, "{path} flagged: {report:?}");
                counts[1] += 1;
            }
            "benign_edge" => {
                assert_ne!(
                    report.verdict,
                    Verdict::Unsafe,
                    "{path} flagged: {report:?}"
                );
                counts[2] += 1;
            }
            other => panic!("unknown label {other}"),
        }
    }
    counts
}

#[test]
fn every_malicious_file_is_flagged_and_no_benign_one() {
    // The corpus as shipped: 38 malicious, 5 benign, 3 edge cases.
    assert_eq!(check("pickles"), [38, 5, 3]);
}

#[test]
fn joblib_arrays_are_stepped_over_and_what_follows_them_is_scanned() {
    assert_eq!(check("joblib"), [3, 3, 0]);
}
