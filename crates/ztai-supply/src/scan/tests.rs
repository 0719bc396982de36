//! Format-level tests: every container is built here byte by byte, so each test shows exactly
//! which structure is under test.

use std::io::Write;

use super::*;

const EVIL: &[u8] = b"\x80\x04\x8c\x05posix\x8c\x06system\x93\x8c\x02id\x85R.";
const BENIGN: &[u8] = b"\x80\x02ccollections\nOrderedDict\n)R.";

fn scan(name: &str, bytes: &[u8]) -> FileReport {
    scan_bytes(name, bytes, &ScanOptions::default())
}

fn details(report: &FileReport) -> Vec<String> {
    report
        .findings
        .iter()
        .map(|f| format!("{}|{}|{}", f.location, f.kind.as_str(), f.detail))
        .collect()
}

struct ZipMember<'a> {
    name: &'a str,
    local_name: Option<&'a str>,
    data: &'a [u8],
    deflate: bool,
    flags: u16,
    in_central: bool,
}

fn member<'a>(name: &'a str, data: &'a [u8]) -> ZipMember<'a> {
    ZipMember {
        name,
        local_name: None,
        data,
        deflate: false,
        flags: 0,
        in_central: true,
    }
}

fn zip(members: &[ZipMember<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    let mut count = 0u16;
    for m in members {
        let stored = if m.deflate {
            let mut enc =
                flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
            enc.write_all(m.data).unwrap_or_default();
            enc.finish().unwrap_or_default()
        } else {
            m.data.to_vec()
        };
        let crc = crc32fast::hash(m.data);
        let method: u16 = if m.deflate { 8 } else { 0 };
        let offset = out.len() as u32;
        let local_name = m.local_name.unwrap_or(m.name);
        out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        out.extend_from_slice(&20u16.to_le_bytes());
        out.extend_from_slice(&m.flags.to_le_bytes());
        out.extend_from_slice(&method.to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&(stored.len() as u32).to_le_bytes());
        out.extend_from_slice(&(m.data.len() as u32).to_le_bytes());
        out.extend_from_slice(&(local_name.len() as u16).to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(local_name.as_bytes());
        out.extend_from_slice(&stored);
        if m.in_central {
            count += 1;
            central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
            central.extend_from_slice(&20u16.to_le_bytes());
            central.extend_from_slice(&20u16.to_le_bytes());
            central.extend_from_slice(&m.flags.to_le_bytes());
            central.extend_from_slice(&method.to_le_bytes());
            central.extend_from_slice(&[0; 4]);
            central.extend_from_slice(&crc.to_le_bytes());
            central.extend_from_slice(&(stored.len() as u32).to_le_bytes());
            central.extend_from_slice(&(m.data.len() as u32).to_le_bytes());
            central.extend_from_slice(&(m.name.len() as u16).to_le_bytes());
            central.extend_from_slice(&[0; 12]);
            central.extend_from_slice(&offset.to_le_bytes());
            central.extend_from_slice(m.name.as_bytes());
        }
    }
    let cd_offset = out.len() as u32;
    out.extend_from_slice(&central);
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&(central.len() as u32).to_le_bytes());
    out.extend_from_slice(&cd_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

#[test]
fn torch_style_zip_is_clean_and_a_planted_pickle_is_found_by_content() {
    let tensor = [0u8, 0, 128, 63, 0, 0, 0, 64];
    let clean = zip(&[
        member("archive/data.pkl", BENIGN),
        member("archive/data/0", &tensor),
        member("archive/version", b"3\n"),
    ]);
    let report = scan("model.pt", &clean);
    assert_eq!((report.verdict, report.format), (Verdict::Clean, "zip"));
    assert_eq!(report.pickles, 1);
    // The pickle hides under a name that says tensor data; the bytes decide.
    let planted = zip(&[
        member("archive/data.pkl", BENIGN),
        member("archive/data/0", EVIL),
    ]);
    let report = scan("model.pt", &planted);
    assert_eq!(report.verdict, Verdict::Unsafe);
    assert_eq!(
        details(&report),
        vec!["model.pt!archive/data/0|dangerous_import|posix.system"]
    );
    assert_eq!(report.findings.first().map(|f| f.offset), Some(17));
}

#[test]
fn zip_views_that_disagree_are_both_scanned_and_reported() {
    // The central directory says `weights.bin`, the local header `data.pkl`.
    let renamed = zip(&[ZipMember {
        local_name: Some("data.pkl"),
        ..member("weights.bin", EVIL)
    }]);
    let found = details(&scan("m.zip", &renamed));
    assert!(
        found
            .iter()
            .any(|d| d.contains("archive_mismatch") && d.contains("`weights.bin`")),
        "{found:?}"
    );
    assert!(
        found.iter().any(|d| d.contains("posix.system")),
        "{found:?}"
    );
    // An entry missing from the central directory is invisible to zipfile but not to us.
    let hidden = zip(&[
        member("a.pkl", BENIGN),
        ZipMember {
            in_central: false,
            ..member("b.pkl", EVIL)
        },
    ]);
    let hidden_report = scan("m.zip", &hidden);
    let found = details(&hidden_report);
    assert!(
        found
            .iter()
            .any(|d| d.contains("not in the central directory")),
        "{found:?}"
    );
    assert!(
        found
            .iter()
            .any(|d| d.starts_with("m.zip!b.pkl|dangerous_import")),
        "{found:?}"
    );
}

#[test]
fn encryption_flag_on_clear_data_does_not_hide_it_and_real_ciphertext_is_incomplete() {
    let clear = zip(&[ZipMember {
        flags: 1,
        ..member("config.pkl", EVIL)
    }]);
    assert_eq!(scan("m.zip", &clear).verdict, Verdict::Unsafe);
    let ciphertext = [0x9au8, 0x13, 0xf7, 0x02, 0x55, 0xe1, 0x0c, 0x7d, 0x31, 0xa8];
    let sealed = zip(&[ZipMember {
        flags: 1,
        ..member("secret.pkl", &ciphertext)
    }]);
    let report = scan("m.zip", &sealed);
    assert_eq!(report.verdict, Verdict::Incomplete);
    assert!(
        report.incomplete.iter().any(|i| i.contains("encrypted")),
        "{:?}",
        report.incomplete
    );
}

#[test]
fn compressed_and_nested_containers_are_opened() {
    let inner = zip(&[ZipMember {
        deflate: true,
        ..member("nested/model.pkl", EVIL)
    }]);
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(inner.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, "bundle/model.zip", inner.as_slice())
        .unwrap_or_default();
    let tarball = tar.into_inner().unwrap_or_default();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tarball).unwrap_or_default();
    let targz = gz.finish().unwrap_or_default();
    let report = scan("bundle.tar.gz", &targz);
    assert_eq!((report.verdict, report.format), (Verdict::Unsafe, "gzip"));
    assert_eq!(
        details(&report),
        vec!["bundle.tar.gz!gzip!bundle/model.zip!nested/model.pkl|dangerous_import|posix.system"]
    );
    // A joblib-style zlib stream around a pickle.
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(EVIL).unwrap_or_default();
    let report = scan("model.joblib", &z.finish().unwrap_or_default());
    assert_eq!(report.verdict, Verdict::Unsafe);
}

#[test]
fn limits_make_a_scan_incomplete_not_clean() {
    let bomb = zip(&[ZipMember {
        deflate: true,
        ..member("zeros.bin", &[0u8; 1 << 20])
    }]);
    let options = ScanOptions {
        max_member_bytes: 64 << 10,
        ..ScanOptions::default()
    };
    let report = scan_bytes("bomb.zip", &bomb, &options);
    assert_eq!(report.verdict, Verdict::Incomplete);
    let mut nested = zip(&[member("x.pkl", EVIL)]);
    for i in 0..4 {
        let name = format!("level{i}.zip");
        nested = zip(&[member(&name, &nested)]);
    }
    let shallow = ScanOptions {
        max_depth: 2,
        ..ScanOptions::default()
    };
    let report = scan_bytes("deep.zip", &nested, &shallow);
    assert_eq!(report.verdict, Verdict::Incomplete, "{:?}", report.findings);
    assert!(report.incomplete.iter().any(|i| i.contains("nested")));
}

fn npy(descr: &str, data: &[u8]) -> Vec<u8> {
    let header = format!("{{'descr': {descr}, 'fortran_order': False, 'shape': (1,), }}\n");
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

#[test]
fn numpy_object_arrays_carry_a_scanned_pickle() {
    let plain = npy("'<f4'", &[0, 0, 128, 63]);
    assert_eq!(scan("a.npy", &plain).verdict, Verdict::Clean);
    let object = npy("'|O'", EVIL);
    let report = scan("a.npy", &object);
    assert_eq!(
        details(&report),
        vec!["a.npy!data|dangerous_import|posix.system"]
    );
    // An object field inside a structured dtype counts too.
    let structured = npy("[('a', '<i4'), ('b', 'O')]", EVIL);
    assert_eq!(scan("s.npy", &structured).verdict, Verdict::Unsafe);
    let npz = zip(&[member("arr_0.npy", &object)]);
    assert_eq!(scan("a.npz", &npz).verdict, Verdict::Unsafe);
}

fn safetensors(header: &str, data_len: usize) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend(std::iter::repeat_n(0u8, data_len));
    out
}

#[test]
fn safetensors_headers_that_lie_are_findings() {
    let good = safetensors(
        r#"{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"b":{"dtype":"BF16","shape":[4],"data_offsets":[16,24]}}"#,
        24,
    );
    let report = scan("m.safetensors", &good);
    assert_eq!(
        (report.verdict, report.format),
        (Verdict::Clean, "safetensors"),
        "{:?}",
        report.findings
    );
    for (header, len, why) in [
        (
            r#"{"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,64]}}"#,
            16,
            "outside",
        ),
        (
            r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,8]}}"#,
            8,
            "does not fill",
        ),
        (
            r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#,
            12,
            "overlaps",
        ),
        (
            r#"{"a":{"dtype":"Q9","shape":[2],"data_offsets":[0,8]}}"#,
            8,
            "unknown dtype",
        ),
        (
            r#"{"a":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,8]}}"#,
            8,
            "does not fill",
        ),
        (r#"{"a":[1,2"#, 8, "not JSON"),
        (r#"{"__metadata__":{"n":1}}"#, 0, "map of strings"),
    ] {
        let report = scan("m.safetensors", &safetensors(header, len));
        assert_eq!(report.verdict, Verdict::Unsafe, "{header}");
        assert!(
            report
                .findings
                .iter()
                .any(|f| f.kind == FindingKind::MalformedHeader && f.detail.contains(why)),
            "{header}: {:?}",
            report.findings
        );
    }
}

fn gguf(kvs: &[(&str, &str)], tensors: &[(&str, u32, u64)]) -> Vec<u8> {
    let mut out = b"GGUF".to_vec();
    out.extend_from_slice(&3u32.to_le_bytes());
    out.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    out.extend_from_slice(&(kvs.len() as u64).to_le_bytes());
    let string = |out: &mut Vec<u8>, s: &str| {
        out.extend_from_slice(&(s.len() as u64).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    };
    for (k, v) in kvs {
        string(&mut out, k);
        out.extend_from_slice(&8u32.to_le_bytes());
        string(&mut out, v);
    }
    for (name, dims, offset) in tensors {
        string(&mut out, name);
        out.extend_from_slice(&dims.to_le_bytes());
        for _ in 0..*dims {
            out.extend_from_slice(&4u64.to_le_bytes());
        }
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&offset.to_le_bytes());
    }
    while !out.len().is_multiple_of(32) {
        out.push(0);
    }
    out.extend_from_slice(&[0; 64]);
    out
}

#[test]
fn gguf_template_injection_and_bad_tensor_tables_are_found() {
    let template = "{% for m in messages %}{{ m['content'] | trim }}{% endfor %}";
    let good = gguf(
        &[
            ("general.name", "tiny"),
            ("tokenizer.chat_template", template),
        ],
        &[("w", 2, 0), ("b", 1, 32)],
    );
    let report = scan("m.gguf", &good);
    assert_eq!(
        (report.verdict, report.format),
        (Verdict::Clean, "gguf"),
        "{:?}",
        report.findings
    );
    let ssti = "{{ self.__init__.__globals__.__builtins__.__import__('os').popen('id').read() }}";
    let report = scan("m.gguf", &gguf(&[("tokenizer.chat_template", ssti)], &[]));
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.kind == FindingKind::TemplateInjection && f.detail.contains("__globals__"))
    );
    let report = scan("m.gguf", &gguf(&[], &[("w", 9, 0)]));
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.detail.contains("9 dimensions"))
    );
    let report = scan("m.gguf", &gguf(&[], &[("w", 1, 7)]));
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.detail.contains("not aligned"))
    );
    // Counts the file cannot hold, and a string length past the end.
    let mut lying = good.clone();
    lying.splice(8..16, u64::MAX.to_le_bytes());
    assert_eq!(scan("m.gguf", &lying).verdict, Verdict::Unsafe);
    let mut long = good;
    long.splice(24..32, (1u64 << 40).to_le_bytes());
    assert_eq!(scan("m.gguf", &long).verdict, Verdict::Unsafe);
}

fn pb_len(field: u64, body: &[u8]) -> Vec<u8> {
    let mut out = vec![(field << 3 | 2) as u8, body.len() as u8];
    out.extend_from_slice(body);
    out
}

#[test]
fn onnx_external_data_outside_the_model_is_path_traversal() {
    let tensor = |location: &str| {
        let entry = [pb_len(1, b"location"), pb_len(2, location.as_bytes())].concat();
        [pb_len(8, b"w"), pb_len(13, &entry)].concat()
    };
    let model = |location: &str| {
        let graph = [pb_len(1, &pb_len(4, b"Relu")), pb_len(5, &tensor(location))].concat();
        [vec![0x08, 0x08], pb_len(7, &graph)].concat()
    };
    assert_eq!(
        scan("m.onnx", &model("weights.bin")).verdict,
        Verdict::Clean
    );
    for bad in [
        "../../etc/passwd",
        "/etc/shadow",
        "..\\..\\x",
        "C:/Windows/x",
    ] {
        let report = scan("m.onnx", &model(bad));
        assert_eq!(
            report.findings.iter().map(|f| f.kind).collect::<Vec<_>>(),
            vec![FindingKind::PathTraversal],
            "{bad}"
        );
    }
    let report = scan("m.onnx", &[0x3a, 0x40, 0x01]);
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.kind == FindingKind::MalformedHeader)
    );
}

#[test]
fn legacy_torch_files_hold_several_pickles_and_each_is_scanned() {
    let mut legacy = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19.".to_vec();
    legacy.extend_from_slice(b"\x80\x02M\xe9\x03.");
    legacy.extend_from_slice(EVIL);
    legacy.extend_from_slice(&[0x11, 0x22, 0x33]);
    let report = scan("old.pt", &legacy);
    assert_eq!(report.pickles, 3);
    assert_eq!(
        details(&report),
        vec!["old.pt|dangerous_import|posix.system"]
    );
    assert_eq!(report.findings.first().map(|f| f.offset), Some(21 + 17));
}

#[test]
fn a_user_allowlist_clears_only_what_it_names() {
    let custom = b"\x80\x02cmypkg.model\nNet\n)R.";
    assert_eq!(scan("m.pkl", custom).verdict, Verdict::Unsafe);
    let mut options = ScanOptions::default();
    assert!(options.allowlist.allow("mypkg.model.Net").is_ok());
    assert_eq!(
        scan_bytes("m.pkl", custom, &options).verdict,
        Verdict::Clean
    );
    assert_eq!(scan_bytes("m.pkl", EVIL, &options).verdict, Verdict::Unsafe);
}

#[test]
fn files_that_are_not_models_are_skipped_with_a_note() {
    for bytes in [
        &b""[..],
        b"hello world\n",
        b"\x89PNG\r\n\x1a\n",
        b"cmod\n\xf8\n",
    ] {
        let report = scan("x.bin", bytes);
        assert_eq!(
            (report.verdict, report.format),
            (Verdict::Clean, "data"),
            "{bytes:?}"
        );
    }
}

proptest::proptest! {
    #[test]
    fn any_bytes_scan_without_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..2048)) {
        let _ = scan("fuzz.bin", &bytes);
        let mut zipped = b"PK\x03\x04".to_vec();
        zipped.extend_from_slice(&bytes);
        let _ = scan("fuzz.zip", &zipped);
        let mut gguf = b"GGUF\x03\x00\x00\x00".to_vec();
        gguf.extend_from_slice(&bytes);
        let _ = scan("fuzz.gguf", &gguf);
        let _ = scan("fuzz.onnx", &bytes);
    }
}

#[test]
fn a_legacy_checkpoint_reads_its_pickles_not_its_tensor_bytes() {
    /// Counts the bytes read, to show the tensor data is never touched.
    struct Counting<'a>(&'a [u8], std::cell::Cell<u64>);
    impl Blob for Counting<'_> {
        fn len(&self) -> u64 {
            self.0.len() as u64
        }
        fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
            self.1.set(self.1.get() + buf.len() as u64);
            (&self.0).read_at(offset, buf)
        }
    }
    let mut legacy = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19.".to_vec();
    legacy.extend_from_slice(BENIGN);
    // 64 MiB of "tensor data" that starts with bytes no pickle starts with.
    legacy.extend(std::iter::repeat_n(0u8, 64 << 20));
    let blob = Counting(&legacy, std::cell::Cell::new(0));
    let report = scan_blob("old.bin", &blob, &ScanOptions::default());
    assert_eq!((report.verdict, report.pickles), (Verdict::Clean, 2));
    assert!(blob.1.get() < 8 << 20, "read {} bytes", blob.1.get());
    // A payload in a later pickle deep in the file is still reached.
    let mut late = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19.".to_vec();
    late.extend_from_slice(b"\x80\x02B\x00\x00\x10\x00");
    late.extend(std::iter::repeat_n(7u8, 1 << 20));
    late.extend_from_slice(b"0.");
    late.extend_from_slice(EVIL);
    let report = scan("late.bin", &late);
    assert_eq!(report.verdict, Verdict::Unsafe, "{report:?}");
}

#[test]
fn a_broken_stream_is_incomplete_but_what_came_out_is_scanned() {
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(EVIL).unwrap_or_default();
    z.write_all(&[0u8; 4096]).unwrap_or_default();
    let mut stream = z.finish().unwrap_or_default();
    let cut = stream.len() - 6;
    stream.truncate(cut);
    stream.extend_from_slice(&[0xff; 6]);
    let report = scan("model.joblib", &stream);
    assert_eq!(report.verdict, Verdict::Unsafe, "{report:?}");
    assert!(
        report
            .incomplete
            .iter()
            .any(|i| i.contains("could not be decompressed")),
        "{report:?}"
    );
    // Text that merely starts like a zlib header ("x^") is data, not a broken stream.
    let report = scan("notes.txt", b"x^2 + y^2 = r^2\n");
    assert_eq!(
        (report.verdict, report.format),
        (Verdict::Clean, "data"),
        "{report:?}"
    );
}
