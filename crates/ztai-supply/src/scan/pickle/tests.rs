use super::*;

fn scan(bytes: &[u8]) -> PickleOutcome {
    run(bytes, &Allowlist::default())
}

fn kinds(outcome: &PickleOutcome) -> Vec<(FindingKind, String)> {
    outcome
        .findings
        .iter()
        .map(|f| (f.kind, f.detail.clone()))
        .collect()
}

#[test]
fn plain_data_in_every_protocol_is_clean() {
    // [1, 'a', {'k': (2.5, None)}] as protocols 0, 2 and 4 write it.
    let samples: &[&[u8]] = &[
        b"(lp0\nI1\naVa\np1\na(dp2\nVk\np3\n(F2.5\nNtp4\nsa.",
        b"\x80\x02]q\x00(K\x01X\x01\x00\x00\x00aq\x01}q\x02X\x01\x00\x00\x00kq\x03G@\x04\x00\x00\x00\x00\x00\x00N\x86q\x04se.",
        b"\x80\x04\x95\x1d\x00\x00\x00\x00\x00\x00\x00]\x94(K\x01\x8c\x01a\x94}\x94\x8c\x01k\x94G@\x04\x00\x00\x00\x00\x00\x00N\x86\x94se.",
    ];
    for sample in samples {
        let out = scan(sample);
        assert_eq!(out.end, PickleEnd::Stop, "{sample:?}");
        assert!(out.findings.is_empty(), "{:?}", out.findings);
        assert_eq!(out.consumed, sample.len());
    }
}

#[test]
fn allowlisted_imports_pass_and_are_listed() {
    let out = scan(b"\x80\x02ccollections\nOrderedDict\nq\x00)Rq\x01.");
    assert_eq!(out.end, PickleEnd::Stop);
    assert!(out.findings.is_empty());
    assert_eq!(
        out.imports,
        vec![ImportName::resolve("collections", "OrderedDict")]
    );
}

#[test]
fn global_of_a_code_primitive_is_critical() {
    let out = scan(b"cos\nsystem\n(Vid\ntR.");
    assert_eq!(
        kinds(&out),
        vec![(FindingKind::DangerousImport, "os.system".to_string())]
    );
    assert_eq!(
        out.findings.first().map(|f| (f.offset, f.severity)),
        Some((0, Severity::Critical))
    );
}

#[test]
fn unknown_import_is_a_finding_not_a_pass() {
    let out = scan(b"cmypkg.model\nNet\n)R.");
    assert_eq!(
        kinds(&out),
        vec![(FindingKind::UnknownImport, "mypkg.model.Net".to_string())]
    );
    assert_eq!(
        out.findings.first().map(|f| f.severity),
        Some(Severity::High)
    );
}

#[test]
fn stack_global_names_from_the_memo_are_resolved() {
    // 'os' and 'system' are memoised first, then fetched back for STACK_GLOBAL.
    let out = scan(b"\x80\x04\x8c\x02os\x94\x8c\x06system\x940h\x00h\x01\x93\x8c\x02id\x85R.");
    assert_eq!(
        kinds(&out),
        vec![(FindingKind::DangerousImport, "os.system".to_string())]
    );
    assert_eq!(out.findings.first().map(|f| f.offset), Some(21));
}

#[test]
fn escaped_and_aliased_names_resolve_before_matching() {
    // UNICODE with raw-unicode-escapes spells `os`.
    let out = scan(b"\x80\x04V\\u006fs\nVsystem\n\x93.");
    assert_eq!(
        kinds(&out),
        vec![(FindingKind::DangerousImport, "os.system".to_string())]
    );
    // STRING with backslash escapes.
    let out = scan(b"\x80\x04S'\\x6fs'\nS'sys\\164em'\n\x93.");
    assert_eq!(
        kinds(&out),
        vec![(FindingKind::DangerousImport, "os.system".to_string())]
    );
    // Python 2 names: `commands.getoutput` is `subprocess.getoutput` when unpickled.
    let out = scan(b"ccommands\ngetoutput\n.");
    assert_eq!(
        kinds(&out),
        vec![(
            FindingKind::DangerousImport,
            "commands.getoutput (imports subprocess.getoutput)".to_string()
        )]
    );
    // An even number of backslashes leaves `\u` literal: no escape, so no `os`.
    let out = scan(b"\x80\x04V\\\\u006fs\nVsystem\n\x93.");
    assert_eq!(
        out.findings.first().map(|f| f.kind),
        Some(FindingKind::UnknownImport)
    );
}

#[test]
fn computed_imports_calls_of_results_and_patching_are_reported() {
    // STACK_GLOBAL whose module name is what a call returned.
    let out = scan(b"\x80\x04c_codecs\nencode\n\x8c\x02os\x85R\x8c\x06system\x93.");
    assert!(
        kinds(&out)
            .iter()
            .any(|(k, _)| *k == FindingKind::DynamicImport),
        "{:?}",
        out.findings
    );
    // REDUCE of what REDUCE returned.
    let out = scan(b"\x80\x02ccollections\nOrderedDict\n)R)R.");
    assert_eq!(
        kinds(&out).first().map(|(k, _)| *k),
        Some(FindingKind::DynamicCall)
    );
    // BUILD on an imported module object overwrites its attributes.
    let out = scan(b"\x80\x04ctorch\n_utils\n}Vx\nVy\nsb.");
    let found: Vec<FindingKind> = out.findings.iter().map(|f| f.kind).collect();
    assert_eq!(
        found,
        vec![FindingKind::UnknownImport, FindingKind::AttributeOverwrite]
    );
    // BUILD on an instance is how objects get their state: not a finding.
    let out = scan(b"\x80\x02ccollections\nOrderedDict\n)R}b.");
    assert!(out.findings.is_empty());
}

#[test]
fn inst_obj_and_ext_imports_are_seen() {
    let out = scan(b"(S'id'\nios\nsystem\n.");
    assert_eq!(
        kinds(&out),
        vec![(FindingKind::DangerousImport, "os.system".to_string())]
    );
    let out = scan(b"\x80\x02(cbuiltins\neval\nS'1'\no.");
    assert_eq!(
        kinds(&out),
        vec![(FindingKind::DangerousImport, "builtins.eval".to_string())]
    );
    let out = scan(b"\x80\x02\x82\x07)R.");
    assert_eq!(
        kinds(&out).first().map(|(k, _)| *k),
        Some(FindingKind::ExtensionImport)
    );
}

#[test]
fn findings_before_a_failure_are_kept() {
    // Truncated right after the import: the import would already have run.
    let out = scan(b"cbuiltins\nexec\n(X\xff\xff\xff\x00abc");
    assert_eq!(out.end, PickleEnd::Truncated);
    assert_eq!(
        kinds(&out),
        vec![(FindingKind::DangerousImport, "builtins.exec".to_string())]
    );
    let out = scan(b"cposix\nsystem\n\xfe\xfe");
    assert!(matches!(out.end, PickleEnd::Invalid(_)));
    assert_eq!(out.findings.len(), 1);
}

#[test]
fn stops_where_cpython_raises() {
    for (bytes, why) in [
        (&b"\xff"[..], "invalid load key"),
        (b"(R.", "unpickling stack underflow"),
        (b"N(0R.", "unpickling stack underflow"),
        (b"g7\n.", "memo value not found"),
        (b"\x80\x06.", "unsupported pickle protocol"),
        (b"S'abc\n.", "must be quoted"),
        (b"NNR.", "not callable"),
        (b"\x80\x04K\x01K\x02\x93.", "STACK_GLOBAL requires str"),
        (b"\x82\x00.", "EXT specifies code"),
    ] {
        let out = scan(bytes);
        match out.end {
            PickleEnd::Invalid(reason) => assert!(reason.contains(why), "{bytes:?}: {reason}"),
            other => panic!("{bytes:?} ended {other:?}"),
        }
        assert!(out.findings.is_empty(), "{bytes:?}");
    }
    // A mark on top of the stack is what POP removes.
    assert_eq!(scan(b"N(0.").end, PickleEnd::Stop);
}

#[test]
fn hostile_lengths_are_truncation_not_allocation() {
    for bytes in [
        &b"X\xff\xff\xff\xff"[..],
        b"\x8d\xff\xff\xff\xff\xff\xff\xff\xff",
        b"\x8b\xff\xff\xff\x7f",
        b"\x95\x01",
    ] {
        assert_eq!(scan(bytes).end, PickleEnd::Truncated, "{bytes:?}");
    }
    assert!(matches!(
        scan(b"\x8b\xff\xff\xff\xff").end,
        PickleEnd::Invalid(_)
    ));
}

#[test]
fn resource_limits_end_the_scan_as_incomplete() {
    let marks = vec![b'('; MAX_MARKS + 1];
    assert!(matches!(scan(&marks).end, PickleEnd::Limit(_)));
    let mut memo = vec![b'N'];
    for i in 0..=MAX_MEMO as u32 {
        memo.push(b'r');
        memo.extend_from_slice(&i.to_le_bytes());
    }
    assert!(matches!(scan(&memo).end, PickleEnd::Limit(_)));
}

proptest::proptest! {
    #[test]
    fn any_bytes_end_without_panic_inside_the_input(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
        let out = scan(&bytes);
        proptest::prop_assert!(out.consumed <= bytes.len());
        for f in &out.findings {
            proptest::prop_assert!(f.offset < bytes.len());
        }
    }

    #[test]
    fn a_hidden_global_is_found_after_any_data_prefix(prefix in proptest::collection::vec(0u8..=255, 0..8)) {
        // Whatever plain values precede it, an os.system import behind them is reported.
        let mut bytes = b"\x80\x04".to_vec();
        for b in prefix {
            bytes.extend_from_slice(&[b'K', b]);
        }
        bytes.extend_from_slice(b"\x8c\x02os\x8c\x06system\x93.");
        let out = scan(&bytes);
        proptest::prop_assert_eq!(out.findings.len(), 1);
    }
}

#[test]
fn dtype_strings_give_item_sizes() {
    let size = |d: &str| dtype_of(d).itemsize;
    assert_eq!(size("f4"), Some(4));
    assert_eq!(size("<i8"), Some(8));
    assert_eq!(size("U3"), Some(12));
    assert_eq!(size("c16"), Some(16));
    assert_eq!(size("M8"), Some(8));
    assert_eq!(size("V"), None);
    assert_eq!(dtype_of("O8").object, Some(true));
    assert_eq!(dtype_of("zz").object, None);
    assert_eq!(long1(&[0xff]), Some(-1));
    assert_eq!(long1(&[0x00, 0x01]), Some(256));
    assert_eq!(long1(&[1; 9]), None);
}

/// A joblib wrapper for an array of `shape` and `descr`, then `tail` after its BUILD.
fn joblib(shape: &[u8], descr: &str, data: &[u8], tail: &[u8]) -> Vec<u8> {
    let mut p =
        b"\x80\x04\x8c\x13joblib.numpy_pickle\x8c\x11NumpyArrayWrapper\x93)\x81}(\x8c\x05shape("
            .to_vec();
    for d in shape {
        p.extend_from_slice(&[b'K', *d]);
    }
    p.extend_from_slice(b"t\x8c\x05dtype\x8c\x05numpy\x8c\x05dtype\x93");
    p.push(0x8c);
    p.push(descr.len() as u8);
    p.extend_from_slice(descr.as_bytes());
    p.extend_from_slice(
        b"\x89\x88\x87R(K\x03\x8c\x01<NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb",
    );
    p.extend_from_slice(b"\x8c\x1bnumpy_array_alignment_bytesK\x10ub");
    p.extend_from_slice(data);
    p.extend_from_slice(tail);
    p
}

#[test]
fn joblib_inline_arrays_are_skipped_exactly() {
    // 2x3 float32 = 24 bytes, after a pad-length byte of 3 and 3 pad bytes.
    let mut data = vec![3, 0, 0, 0];
    data.extend_from_slice(&[0x2e; 24]);
    let clean = joblib(&[2, 3], "f4", &data, b".");
    let out = scan(&clean);
    assert_eq!(out.end, PickleEnd::Stop, "{:?}", out.findings);
    assert!(out.findings.is_empty());
    assert_eq!(out.consumed, clean.len());
    // What follows the array bytes is scanned: here an os.system import.
    let evil = joblib(&[2, 3], "f4", &data, b"0\x8c\x02os\x8c\x06system\x93.");
    assert_eq!(
        kinds(&scan(&evil)),
        vec![(FindingKind::DangerousImport, "os.system".to_string())]
    );
    // Array bytes that run past the end, and a dtype whose size is unknown.
    assert_eq!(
        scan(&joblib(&[200, 200], "f8", &data, b".")).end,
        PickleEnd::Truncated
    );
    assert!(matches!(
        scan(&joblib(&[2], "zz", &data, b".")).end,
        PickleEnd::Limit(_)
    ));
}
