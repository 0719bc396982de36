//! Header checks for formats that carry data, not code, and the NumPy format that may carry a
//! pickle.
//!
//! safetensors, GGUF and ONNX cannot run code by design, but their parsers have been attacked
//! through headers that lie: sizes past the end of the file, counts that overflow, overlapping
//! tensors, a GGUF chat template that escapes its Jinja sandbox, an ONNX tensor whose external
//! data lives at `../../etc/passwd`. Each check below reads only the header (never the tensor
//! bytes), through a small buffered cursor over the blob.

use ztai_core::Severity;

use super::{Blob, FindingKind, Scan, Window};

/// The largest safetensors header its reference parser accepts.
const SAFETENSORS_MAX_HEADER: u64 = 100_000_000;
/// GGML allows at most this many dimensions per tensor.
const GGUF_MAX_DIMS: u32 = 4;
/// GGML tensor type codes in use (0..=41, some retired but still recognised).
const GGUF_MAX_TYPE: u32 = 41;

/// Reads a blob front to back through a 64 KiB window.
struct Cursor<'a> {
    blob: &'a dyn Blob,
    pos: u64,
    buf: Vec<u8>,
    buf_start: u64,
}

impl<'a> Cursor<'a> {
    fn new(blob: &'a dyn Blob, pos: u64) -> Self {
        Self {
            blob,
            pos,
            buf: Vec::new(),
            buf_start: 0,
        }
    }

    fn remaining(&self) -> u64 {
        self.blob.len().saturating_sub(self.pos)
    }

    fn bytes(&mut self, n: u64) -> Option<Vec<u8>> {
        if n > self.remaining() {
            return None;
        }
        let n_usize = usize::try_from(n).ok()?;
        let in_buf =
            self.pos >= self.buf_start && self.pos + n <= self.buf_start + self.buf.len() as u64;
        if !in_buf {
            if n > 64 * 1024 {
                let mut out = vec![0; n_usize];
                self.blob.read_at(self.pos, &mut out).ok()?;
                self.pos += n;
                return Some(out);
            }
            let len = (64 * 1024u64).min(self.remaining());
            let mut buf = vec![0; usize::try_from(len).ok()?];
            self.blob.read_at(self.pos, &mut buf).ok()?;
            self.buf = buf;
            self.buf_start = self.pos;
        }
        let at = usize::try_from(self.pos - self.buf_start).ok()?;
        let out = self.buf.get(at..at + n_usize)?.to_vec();
        self.pos += n;
        Some(out)
    }

    fn skip(&mut self, n: u64) -> Option<()> {
        if n > self.remaining() {
            return None;
        }
        self.pos += n;
        Some(())
    }

    fn u8(&mut self) -> Option<u8> {
        self.bytes(1)?.first().copied()
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.bytes(4)?.try_into().ok()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.bytes(8)?.try_into().ok()?))
    }

    fn varint(&mut self) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }
}

fn malformed(scan: &mut Scan<'_>, location: &str, offset: u64, detail: String) {
    scan.finding(
        location,
        offset,
        FindingKind::MalformedHeader,
        Severity::High,
        detail,
    );
}

/// NumPy `.npy`: the header names the dtype; an object dtype means the data is a pickle.
pub(super) fn npy(scan: &mut Scan<'_>, location: &str, blob: &dyn Blob, head: &[u8]) {
    let major = head.get(6).copied();
    let (len, start) = match major {
        Some(1) => (
            head.get(8..10)
                .and_then(|b| <[u8; 2]>::try_from(b).ok())
                .map(|b| u64::from(u16::from_le_bytes(b))),
            10u64,
        ),
        Some(2 | 3) => (
            head.get(8..12)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map(|b| u64::from(u32::from_le_bytes(b))),
            12u64,
        ),
        _ => {
            malformed(
                scan,
                location,
                6,
                format!("unknown .npy format version {major:?}"),
            );
            return;
        }
    };
    let Some(len) = len.filter(|l| start + l <= blob.len()) else {
        malformed(
            scan,
            location,
            8,
            "the .npy header length runs past the end of the file".into(),
        );
        return;
    };
    let mut header = vec![0; usize::try_from(len).unwrap_or(0)];
    if blob.read_at(start, &mut header).is_err() {
        scan.incomplete(location, "the .npy header could not be read");
        return;
    }
    let header = String::from_utf8_lossy(&header);
    if !header.trim_start().starts_with('{') || !header.contains("descr") {
        malformed(
            scan,
            location,
            start,
            "the .npy header is not a dtype description".into(),
        );
        return;
    }
    // Any quoted type string of kind `O` (alone or inside a structured dtype) is an object field.
    let object = header.split(['\'', '"']).skip(1).step_by(2).any(|s| {
        let s = s.trim_start_matches(['<', '>', '|', '=']);
        s.starts_with('O')
            && s.get(1..)
                .is_some_and(|d| d.chars().all(|c| c.is_ascii_digit()))
    });
    if object {
        scan.note(
            location,
            "object array: its data is a pickle (numpy.load needs allow_pickle=True)",
        );
        let data = Window {
            inner: blob,
            start: start + len,
            len: blob.len() - start - len,
        };
        let inner = format!("{location}!data");
        let Some(head) = scan.head(&inner, &data) else {
            return;
        };
        scan.pickles(&inner, &data, &head, 1);
    }
}

/// safetensors: an 8-byte header length, a JSON header, then tensors back to back.
pub(super) fn safetensors(scan: &mut Scan<'_>, location: &str, blob: &dyn Blob, head: &[u8]) {
    let Some(n) = head
        .get(..8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_le_bytes)
    else {
        return;
    };
    if n > SAFETENSORS_MAX_HEADER {
        malformed(
            scan,
            location,
            0,
            format!("header of {n} bytes is over the {SAFETENSORS_MAX_HEADER}-byte limit"),
        );
        return;
    }
    let mut header = vec![0; usize::try_from(n).unwrap_or(0)];
    if blob.read_at(8, &mut header).is_err() {
        malformed(
            scan,
            location,
            0,
            "header runs past the end of the file".into(),
        );
        return;
    }
    let json: serde_json::Value = match serde_json::from_slice(&header) {
        Ok(v) => v,
        Err(e) => {
            malformed(scan, location, 8, format!("header is not JSON: {e}"));
            return;
        }
    };
    let Some(map) = json.as_object() else {
        malformed(scan, location, 8, "header is not a JSON object".into());
        return;
    };
    let data_len = blob.len() - 8 - n;
    let mut spans: Vec<(u64, u64, String)> = Vec::new();
    for (name, info) in map {
        if name == "__metadata__" {
            let strings = info
                .as_object()
                .is_some_and(|m| m.values().all(serde_json::Value::is_string));
            if !strings {
                malformed(
                    scan,
                    location,
                    8,
                    "`__metadata__` is not a map of strings".into(),
                );
            }
            continue;
        }
        let dtype = info
            .get("dtype")
            .and_then(|d| d.as_str())
            .unwrap_or_default();
        let Some(bits) = safetensors_bits(dtype) else {
            malformed(
                scan,
                location,
                8,
                format!("tensor `{name}` has unknown dtype `{dtype}`"),
            );
            continue;
        };
        let shape: Option<Vec<u64>> = info
            .get("shape")
            .and_then(|s| s.as_array())
            .and_then(|a| a.iter().map(serde_json::Value::as_u64).collect());
        let offsets: Option<Vec<u64>> = info
            .get("data_offsets")
            .and_then(|s| s.as_array())
            .and_then(|a| a.iter().map(serde_json::Value::as_u64).collect());
        let (Some(shape), Some([begin, end])) = (
            shape,
            offsets
                .as_deref()
                .and_then(|o| <[u64; 2]>::try_from(o).ok()),
        ) else {
            malformed(
                scan,
                location,
                8,
                format!("tensor `{name}` lacks a valid shape or data_offsets"),
            );
            continue;
        };
        let bytes = shape
            .iter()
            .try_fold(1u64, |acc, d| acc.checked_mul(*d))
            .and_then(|n| n.checked_mul(bits))
            .map(|b| b.div_ceil(8));
        if begin > end || end > data_len {
            malformed(
                scan,
                location,
                8,
                format!(
                    "tensor `{name}` spans bytes {begin}..{end}, outside the {data_len}-byte data section"
                ),
            );
            continue;
        }
        if bytes != Some(end - begin) {
            malformed(
                scan,
                location,
                8,
                format!(
                    "tensor `{name}` of shape {shape:?} and dtype {dtype} does not fill its {} bytes",
                    end - begin
                ),
            );
        }
        spans.push((begin, end, name.clone()));
    }
    spans.sort();
    let mut cursor = 0u64;
    for (begin, end, name) in &spans {
        if *begin < cursor {
            malformed(
                scan,
                location,
                8,
                format!("tensor `{name}` overlaps the tensor before it"),
            );
        } else if *begin > cursor {
            malformed(
                scan,
                location,
                8,
                format!(
                    "{} unaccounted bytes before tensor `{name}`",
                    begin - cursor
                ),
            );
        }
        cursor = cursor.max(*end);
    }
    if cursor < data_len && !spans.is_empty() {
        scan.note(
            location,
            format!("{} bytes after the last tensor", data_len - cursor),
        );
    }
}

fn safetensors_bits(dtype: &str) -> Option<u64> {
    Some(match dtype {
        "BOOL" | "U8" | "I8" | "F8_E5M2" | "F8_E4M3" | "F8_E8M0" => 8,
        "I16" | "U16" | "F16" | "BF16" => 16,
        "I32" | "U32" | "F32" => 32,
        "I64" | "U64" | "F64" | "C64" => 64,
        "F4" => 4,
        "F6_E2M3" | "F6_E3M2" => 6,
        _ => return None,
    })
}

/// Jinja constructs that reach Python internals from a chat template.
const TEMPLATE_ESCAPES: &[&str] = &[
    "__class__",
    "__globals__",
    "__builtins__",
    "__import__",
    "__subclasses__",
    "__mro__",
    "__base__",
    "__init__",
    "__getattribute__",
    "__dict__",
    "popen",
    "os.system",
    "subprocess",
    "eval(",
    "exec(",
];

/// GGUF: magic, version, counts, key-value metadata, tensor descriptions.
pub(super) fn gguf(scan: &mut Scan<'_>, location: &str, blob: &dyn Blob) {
    let mut c = Cursor::new(blob, 4);
    let Some(version) = c.u32() else {
        malformed(scan, location, 4, "truncated GGUF header".into());
        return;
    };
    if !(1..=3).contains(&version) {
        malformed(scan, location, 4, format!("unknown GGUF version {version}"));
        return;
    }
    let count = |c: &mut Cursor<'_>| {
        if version == 1 {
            c.u32().map(u64::from)
        } else {
            c.u64()
        }
    };
    let (Some(tensors), Some(kvs)) = (count(&mut c), count(&mut c)) else {
        malformed(scan, location, 8, "truncated GGUF header".into());
        return;
    };
    // Each entry takes at least 12 bytes, so a count beyond the file size is a lie.
    let bound = blob.len() / 12;
    if tensors > bound || kvs > bound {
        malformed(
            scan,
            location,
            8,
            format!(
                "GGUF claims {tensors} tensors and {kvs} metadata entries, more than the file can hold"
            ),
        );
        return;
    }
    let mut alignment = 32u64;
    for _ in 0..kvs {
        let at = c.pos;
        let Some(key) = gguf_string(&mut c, version) else {
            malformed(
                scan,
                location,
                at,
                "metadata key runs past the end of the file".into(),
            );
            return;
        };
        let Some(ty) = c.u32() else {
            malformed(scan, location, at, format!("metadata `{key}` is truncated"));
            return;
        };
        if key.starts_with("tokenizer.chat_template") && ty == 8 {
            let Some(template) = gguf_string(&mut c, version) else {
                malformed(
                    scan,
                    location,
                    at,
                    format!("metadata `{key}` runs past the end of the file"),
                );
                return;
            };
            let lower = template.to_ascii_lowercase();
            for escape in TEMPLATE_ESCAPES {
                if lower.contains(escape) {
                    scan.finding(
                        location,
                        at,
                        FindingKind::TemplateInjection,
                        Severity::Critical,
                        format!(
                            "chat template `{key}` uses `{escape}`, which reaches Python internals"
                        ),
                    );
                }
            }
            continue;
        }
        if key == "general.alignment" && ty == 4 {
            match c.u32() {
                Some(a) if a > 0 && a.is_power_of_two() => alignment = u64::from(a),
                _ => {
                    malformed(
                        scan,
                        location,
                        at,
                        "general.alignment is not a power of two".into(),
                    );
                    return;
                }
            }
            continue;
        }
        if gguf_skip_value(&mut c, ty, version, 0).is_none() {
            malformed(
                scan,
                location,
                at,
                format!("metadata `{key}` has an invalid type or runs past the end of the file"),
            );
            return;
        }
    }
    let mut infos = Vec::new();
    for _ in 0..tensors {
        let at = c.pos;
        let Some(name) = gguf_string(&mut c, version) else {
            malformed(
                scan,
                location,
                at,
                "tensor name runs past the end of the file".into(),
            );
            return;
        };
        let Some(dims) = c.u32() else {
            malformed(scan, location, at, format!("tensor `{name}` is truncated"));
            return;
        };
        if dims > GGUF_MAX_DIMS {
            malformed(
                scan,
                location,
                at,
                format!("tensor `{name}` has {dims} dimensions; GGML allows {GGUF_MAX_DIMS}"),
            );
            return;
        }
        for _ in 0..dims {
            if count(&mut c).is_none() {
                malformed(scan, location, at, format!("tensor `{name}` is truncated"));
                return;
            }
        }
        let (Some(ty), Some(offset)) = (c.u32(), c.u64()) else {
            malformed(scan, location, at, format!("tensor `{name}` is truncated"));
            return;
        };
        if ty > GGUF_MAX_TYPE {
            malformed(
                scan,
                location,
                at,
                format!("tensor `{name}` has unknown GGML type {ty}"),
            );
        }
        if offset % alignment != 0 {
            malformed(
                scan,
                location,
                at,
                format!("tensor `{name}` data offset {offset} is not aligned to {alignment}"),
            );
        }
        infos.push((name, offset));
    }
    let data_start = c.pos.div_ceil(alignment) * alignment;
    let data_len = blob.len().saturating_sub(data_start);
    for (name, offset) in infos {
        if offset >= data_len && data_len > 0 {
            malformed(
                scan,
                location,
                data_start,
                format!(
                    "tensor `{name}` starts at {offset}, past the {data_len}-byte data section"
                ),
            );
        }
    }
}

fn gguf_string(c: &mut Cursor<'_>, version: u32) -> Option<String> {
    let len = if version == 1 {
        u64::from(c.u32()?)
    } else {
        c.u64()?
    };
    Some(String::from_utf8_lossy(&c.bytes(len)?).into_owned())
}

fn gguf_skip_value(c: &mut Cursor<'_>, ty: u32, version: u32, depth: usize) -> Option<()> {
    let fixed = |ty: u32| -> Option<u64> {
        Some(match ty {
            0 | 1 | 7 => 1,
            2 | 3 => 2,
            4..=6 => 4,
            10..=12 => 8,
            _ => return None,
        })
    };
    match ty {
        8 => {
            let len = if version == 1 {
                u64::from(c.u32()?)
            } else {
                c.u64()?
            };
            c.skip(len)
        }
        9 if depth < 4 => {
            let elem = c.u32()?;
            let n = if version == 1 {
                u64::from(c.u32()?)
            } else {
                c.u64()?
            };
            if let Some(size) = fixed(elem) {
                return c.skip(n.checked_mul(size)?);
            }
            if n > c.remaining() / 8 {
                return None;
            }
            for _ in 0..n {
                gguf_skip_value(c, elem, version, depth + 1)?;
            }
            Some(())
        }
        other => c.skip(fixed(other)?),
    }
}

/// ONNX: a protobuf `ModelProto`. Walks the graph (and subgraphs) for tensors whose external
/// data points outside the model directory, and checks that the message is well formed.
pub(super) fn onnx(scan: &mut Scan<'_>, location: &str, blob: &dyn Blob) {
    let mut c = Cursor::new(blob, 0);
    let mut found = Vec::new();
    let mut custom = Vec::new();
    match walk_message(
        &mut c,
        blob.len(),
        Message::Model,
        0,
        &mut found,
        &mut custom,
    ) {
        Some(()) => {}
        None => {
            malformed(
                scan,
                location,
                c.pos,
                "not a well-formed ONNX protobuf".into(),
            );
            return;
        }
    }
    for (offset, path) in found {
        scan.finding(
            location,
            offset,
            FindingKind::PathTraversal,
            Severity::Critical,
            format!("tensor external data at `{path}` is outside the model directory"),
        );
    }
    custom.sort();
    custom.dedup();
    if !custom.is_empty() {
        scan.note(
            location,
            format!("custom operator domains {custom:?} need native libraries from elsewhere"),
        );
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Message {
    Model,
    Graph,
    Node,
    Attribute,
    Tensor,
    StringEntry,
    Function,
    Other,
}

/// Which fields of which message hold which submessage (field numbers from onnx.proto).
fn child(message: Message, field: u64) -> Message {
    match (message, field) {
        (Message::Model, 7) => Message::Graph,
        (Message::Model, 25) => Message::Function,
        (Message::Graph, 1) | (Message::Function, 7) => Message::Node,
        (Message::Graph, 5) => Message::Tensor,
        (Message::Node, 5) => Message::Attribute,
        (Message::Attribute, 6 | 11) => Message::Graph,
        (Message::Attribute, 5 | 10) => Message::Tensor,
        (Message::Tensor, 13) => Message::StringEntry,
        _ => Message::Other,
    }
}

const STANDARD_DOMAINS: &[&str] = &[
    "",
    "ai.onnx",
    "ai.onnx.ml",
    "ai.onnx.training",
    "ai.onnx.preview.training",
    "com.microsoft",
];

fn walk_message(
    c: &mut Cursor<'_>,
    end: u64,
    message: Message,
    depth: usize,
    found: &mut Vec<(u64, String)>,
    custom: &mut Vec<String>,
) -> Option<()> {
    if depth > 64 {
        return None;
    }
    let mut entry: (Option<String>, Option<String>) = (None, None);
    while c.pos < end {
        let tag = c.varint()?;
        let (field, wire) = (tag >> 3, tag & 7);
        if field == 0 {
            return None;
        }
        match wire {
            0 => {
                c.varint()?;
            }
            1 => c.skip(8)?,
            5 => c.skip(4)?,
            2 => {
                let len = c.varint()?;
                let start = c.pos;
                let stop = start.checked_add(len).filter(|s| *s <= end)?;
                let sub = child(message, field);
                match (message, field) {
                    (Message::StringEntry, 1 | 2) | (Message::Node, 7) => {
                        let text = String::from_utf8_lossy(&c.bytes(len)?).into_owned();
                        match (message, field) {
                            (Message::StringEntry, 1) => entry.0 = Some(text),
                            (Message::StringEntry, _) => entry.1 = Some(text),
                            _ if !STANDARD_DOMAINS.contains(&text.as_str()) => custom.push(text),
                            _ => {}
                        }
                    }
                    _ if sub != Message::Other => {
                        walk_message(c, stop, sub, depth + 1, found, custom)?
                    }
                    _ => c.skip(len)?,
                }
                if c.pos != stop {
                    return None;
                }
            }
            _ => return None,
        }
    }
    if c.pos != end {
        return None;
    }
    if let (Some(key), Some(value)) = entry
        && key == "location"
        && escapes_directory(&value)
    {
        found.push((end, value));
    }
    Some(())
}

fn escapes_directory(path: &str) -> bool {
    let p = path.replace('\\', "/");
    p.starts_with('/') || p.split('/').any(|part| part == "..") || p.get(1..2) == Some(":")
}
