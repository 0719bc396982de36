use super::*;
use proptest::prelude::*;
use ztai_core::{AuditRecord, Decision, StageTimings};

fn record(reason: &str, principal: &str) -> AuditRecord {
    AuditRecord {
        id: "req-9".into(),
        time: "2026-11-22T05:00:00.000001Z".into(),
        instance: "gw 1".into(),
        principal: principal.into(),
        chain: vec![principal.into()],
        action: "invoke".into(),
        resource: "Model::\"m\"".into(),
        decision: Decision::Deny,
        policies: vec!["p1".into()],
        reason: reason.into(),
        obligations: vec![],
        findings: vec![],
        status: 403,
        request_digest: "00".into(),
        response_digest: String::new(),
        timings: StageTimings::default(),
        content: None,
        client: "10.0.0.7:5555".into(),
        credential: None,
    }
}

fn json_of(r: &AuditRecord) -> String {
    serde_json::to_string(r).unwrap()
}

/// Splits a CEF line into its seven header fields and its extension, undoing the escapes.
fn parse_cef(line: &str) -> (Vec<String>, Vec<(String, String)>) {
    let mut header = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars();
    while header.len() < 7 {
        match chars.next().unwrap() {
            '\\' => cur.push(chars.next().unwrap()),
            '|' => header.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    let rest: String = chars.collect();
    // Extension: key=value pairs; a new key starts at a space followed by `word=`.
    let mut ext = Vec::new();
    let bytes: Vec<char> = rest.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        let key_start = i;
        while bytes[i] != '=' {
            i += 1;
        }
        let key: String = bytes[key_start..i].iter().collect();
        i += 1;
        let mut value = String::new();
        while i < bytes.len() {
            match bytes[i] {
                '\\' => {
                    i += 1;
                    value.push(match bytes[i] {
                        'n' => '\n',
                        'r' => '\r',
                        c => c,
                    });
                }
                ' ' if {
                    let mut j = i + 1;
                    while j < bytes.len() && bytes[j].is_ascii_alphanumeric() {
                        j += 1;
                    }
                    j > i + 1 && j < bytes.len() && bytes[j] == '='
                } =>
                {
                    i += 1;
                    break;
                }
                c => value.push(c),
            }
            i += 1;
        }
        ext.push((key, value));
    }
    (header, ext)
}

#[test]
fn cef_escapes_header_and_extension_and_round_trips() {
    let r = record("bad = worse \\ a|b\nnext line", "user:al|ice");
    let e = render(ExportFormat::Cef, 42, &json_of(&r)).unwrap();
    assert!(!e.text.contains('\n'));
    let (header, ext) = parse_cef(&e.text);
    assert_eq!(header[0], "CEF:0");
    assert_eq!(header[1], "ZTAI");
    assert_eq!(header[4], "invoke:deny");
    assert_eq!(header[6], "5", "a denial without findings is severity 5");
    let get = |k: &str| ext.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    assert_eq!(
        get("reason").as_deref(),
        Some("bad = worse \\ a|b\nnext line")
    );
    assert_eq!(get("suser").as_deref(), Some("user:al|ice"));
    assert_eq!(get("cn1").as_deref(), Some("42"));
    assert_eq!(get("src").as_deref(), Some("10.0.0.7"));
    assert_eq!(get("spt").as_deref(), Some("5555"));
    assert_eq!(get("rt").as_deref(), Some("1795323600000"));
    assert_eq!(get("cs5"), None, "an empty field is left out");
    assert_eq!(get("cs5Label"), None, "…with its label");
}

#[test]
fn json_format_keeps_the_stored_record_verbatim() {
    let stored = json_of(&record("r", "user:a"));
    let e = render(ExportFormat::Json, 3, &stored).unwrap();
    let v: serde_json::Value = serde_json::from_str(&e.text).unwrap();
    assert_eq!(v["seq"], 3);
    assert_eq!(v["record"]["id"], "req-9");
    // Byte for byte what the Merkle leaf commits to, so a receiver can check inclusion proofs.
    assert_eq!(e.text, format!("{{\"seq\":3,\"record\":{stored}}}"));
}

#[test]
fn unrenderable_records_are_named() {
    let err = render(ExportFormat::Ocsf, 5, "{not json").unwrap_err();
    assert_eq!(err.seq, 5);
    let mut r = record("r", "user:a");
    r.time = "yesterday".into();
    let err = render(ExportFormat::Cef, 6, &json_of(&r)).unwrap_err();
    assert!(err.reason.contains("yesterday"), "{err}");
}

#[test]
fn syslog_messages_follow_rfc_5424() {
    let mut r = record("why", "user:a");
    r.instance = "gw\"1]".into();
    let e = render(ExportFormat::Cef, 9, &json_of(&r)).unwrap();
    let m = format::syslog_message(&e, 13, "host name", ExportFormat::Cef);
    // facility 13 (log audit) * 8 + warning (4) for a denial
    assert!(
        m.starts_with("<108>1 2026-11-22T05:00:00.000001Z hostname ztai "),
        "{m}"
    );
    assert!(
        m.contains(&format!(
            " audit [{} seq=\"9\" instance=\"gw\\\"1\\]\" format=\"cef\"] CEF:0|",
            format::SD_ID
        )),
        "{m}"
    );
    let mut framed = Vec::new();
    format::frame_octet_counted(&m, &mut framed);
    let text = String::from_utf8(framed).unwrap();
    let (len, rest) = text.split_once(' ').unwrap();
    assert_eq!(len.parse::<usize>().unwrap(), rest.len());
    let empty_host = format::syslog_message(&e, 13, "", ExportFormat::Cef);
    assert!(
        empty_host.contains("Z - ztai "),
        "a missing HOSTNAME is the NILVALUE"
    );
}

#[test]
fn hec_envelopes_are_json_with_the_event_inside() {
    let r = record("why", "user:a");
    for format in [ExportFormat::Ocsf, ExportFormat::Cef, ExportFormat::Json] {
        let e = render(format, 11, &json_of(&r)).unwrap();
        let env: serde_json::Value =
            serde_json::from_str(&format::hec_event(&e, format, "gw-1", Some("ai"))).unwrap();
        assert_eq!(env["host"], "gw-1");
        assert_eq!(env["index"], "ai");
        assert_eq!(env["fields"]["seq"], 11);
        assert_eq!(env["time"].as_f64().unwrap(), 1_795_323_600.0);
        match format {
            ExportFormat::Ocsf => {
                assert_eq!(env["sourcetype"], "ocsf:api_activity");
                assert_eq!(env["event"]["class_uid"], 6003);
            }
            ExportFormat::Cef => assert!(env["event"].as_str().unwrap().starts_with("CEF:0|")),
            ExportFormat::Json => assert_eq!(env["event"]["record"]["id"], "req-9"),
        }
    }
}

#[test]
fn files_rotate_and_keep_only_what_is_asked() {
    let dir = tempfile::tempdir().unwrap();
    let target = FileTarget {
        path: dir.path().join("out/audit.jsonl"),
        rotate_bytes: 100,
        keep: 2,
    };
    for i in 0..10 {
        sink::append_rotating(
            &target,
            format!("{{\"n\":{i},\"pad\":\"{:030}\"}}\n", 0).as_bytes(),
        )
        .unwrap();
    }
    let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap_or_default();
    let current = read(&target.path);
    let one = read(&dir.path().join("out/audit.jsonl.1"));
    let two = read(&dir.path().join("out/audit.jsonl.2"));
    assert!(!dir.path().join("out/audit.jsonl.3").exists(), "keep = 2");
    for f in [&current, &one, &two] {
        assert!(f.len() <= 100 && !f.is_empty(), "{f:?}");
    }
    // Newest last: .2 < .1 < current, and nothing interleaved.
    let nums = |s: &str| -> Vec<u64> {
        s.lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["n"]
                    .as_u64()
                    .unwrap()
            })
            .collect()
    };
    let all: Vec<u64> = [nums(&two), nums(&one), nums(&current)].concat();
    assert_eq!(all, (4..10).collect::<Vec<_>>());
}

proptest! {
    #[test]
    fn cef_fields_round_trip_whatever_they_hold(reason in "\\PC{0,40}", id in "[a-z|=\\\\ ]{1,12}") {
        let r = record(&reason, &format!("user:{id}"));
        let e = render(ExportFormat::Cef, 1, &json_of(&r)).unwrap();
        prop_assert!(!e.text.contains('\n') && !e.text.contains('\r'));
        let (_, ext) = parse_cef(&e.text);
        let get = |k: &str| ext.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
        let expected_reason = if reason.is_empty() { None } else { Some(reason.clone()) };
        prop_assert_eq!(get("reason"), expected_reason);
        prop_assert_eq!(get("suser"), Some(format!("user:{id}")));
    }

    #[test]
    fn ocsf_events_are_single_json_lines(reason in "\\PC{0,60}") {
        let r = record(&reason, "user:a");
        let e = render(ExportFormat::Ocsf, 1, &json_of(&r)).unwrap();
        prop_assert!(!e.text.contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&e.text).unwrap();
        let expected = if reason.is_empty() { serde_json::Value::Null } else { serde_json::Value::String(reason.clone()) };
        prop_assert_eq!(v.get("status_detail").cloned().unwrap_or(serde_json::Value::Null), expected);
    }
}

#[test]
fn checkpoints_render_in_every_format_with_the_note_intact() {
    let note = "ztai-audit/gw-1\n42\nq6mZ/base64root=\ntime 2026-11-22T05:00:00Z\n\n\u{2014} ztai-audit/gw-1 AAAAsig=\n";
    let row = ztai_store::CheckpointRow {
        tree_size: 42,
        root: vec![7; 32],
        time: "2026-11-22T05:00:00Z".into(),
        note: note.into(),
        frontier: vec![],
    };
    let cef = format::render_checkpoint(ExportFormat::Cef, &row).unwrap();
    assert_eq!(cef.kind, EventKind::Checkpoint);
    assert!(!cef.text.contains('\n'));
    let (header, ext) = parse_cef(&cef.text);
    assert_eq!(header[4], "audit_checkpoint");
    let get = |k: &str| ext.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    assert_eq!(
        get("cs2").as_deref(),
        Some(note),
        "the signed note survives CEF escaping"
    );
    assert_eq!(get("cn3").as_deref(), Some("42"));
    assert_eq!(get("dvchost").as_deref(), Some("gw-1"));
    let json = format::render_checkpoint(ExportFormat::Json, &row).unwrap();
    let v: serde_json::Value = serde_json::from_str(&json.text).unwrap();
    assert_eq!(v["checkpoint"]["note"], note);
    let m = format::syslog_message(&cef, 13, "h", ExportFormat::Cef);
    assert!(
        m.contains(" checkpoint [ztai@32473 checkpoint=\"42\""),
        "{m}"
    );
    let hec: serde_json::Value =
        serde_json::from_str(&format::hec_event(&json, ExportFormat::Json, "h", None)).unwrap();
    assert_eq!(hec["fields"]["checkpoint"], 42);
    assert!(
        hec["fields"].get("seq").is_none(),
        "never mistaken for record 42"
    );
}

#[test]
fn a_stored_record_spanning_lines_is_refused_rather_than_split() {
    let pretty = serde_json::to_string_pretty(&record("r", "user:a")).unwrap();
    assert!(pretty.contains('\n'));
    let err = render(ExportFormat::Json, 1, &pretty).unwrap_err();
    assert!(err.reason.contains("compact"), "{err}");
    // The other formats re-encode, so they are one line whatever the row looked like.
    assert!(
        !render(ExportFormat::Ocsf, 1, &pretty)
            .unwrap()
            .text
            .contains('\n')
    );
}
