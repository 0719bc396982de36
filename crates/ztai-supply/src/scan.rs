//! Malicious model file scanning.
//!
//! A model file is untrusted input that a loader will execute: a pickle is a program, and the
//! formats around it (PyTorch zips, NumPy object arrays, joblib dumps, archives) only wrap
//! pickles. The scanner identifies a file by its bytes, never by its name, opens every container
//! recursively, and runs each pickle through [`pickle`]'s machine, which reads without executing.
//! Formats that hold no code (safetensors, GGUF, ONNX) get header sanity checks instead, since a
//! malformed header is how their parsers get attacked.
//!
//! The engine takes a [`Blob`] (bytes or a file read at offsets), so large tensors are never read
//! unless their first bytes look like something that can run. Anything it could not examine — an
//! encrypted entry, an unsupported compression, a resource limit — makes the verdict
//! [`Verdict::Incomplete`], never clean.

mod allowlist;
mod formats;
mod pickle;
mod zip;

#[cfg(test)]
mod tests;

use std::io::{Read, Seek, SeekFrom};

use serde::Serialize;
use ztai_core::Severity;

pub use allowlist::{Allowlist, AllowlistError, ImportName};

/// How many bytes of a member are read to tell what it is.
const SNIFF_BYTES: usize = 64 * 1024;

/// Random-access bytes: an in-memory buffer, a file, or a stored archive member.
pub trait Blob {
    fn len(&self) -> u64;
    /// Fills `buf` from `offset`; fails when the range is past the end.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()>;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Blob for &[u8] {
    fn len(&self) -> u64 {
        <[u8]>::len(self) as u64
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        let start = usize::try_from(offset).map_err(|_| eof())?;
        let end = start.checked_add(buf.len()).ok_or_else(eof)?;
        let src = self.get(start..end).ok_or_else(eof)?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

impl Blob for Vec<u8> {
    fn len(&self) -> u64 {
        self.as_slice().len() as u64
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        self.as_slice().read_at(offset, buf)
    }
}

impl Blob for std::fs::File {
    fn len(&self) -> u64 {
        self.metadata().map(|m| m.len()).unwrap_or(0)
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(self, buf, offset)
    }
}

fn eof() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::UnexpectedEof,
        "read past the end of the data",
    )
}

/// A window onto part of another blob (a stored archive member), read without copying.
struct Window<'a> {
    inner: &'a dyn Blob,
    start: u64,
    len: u64,
}

impl Blob for Window<'_> {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        let end = offset.checked_add(buf.len() as u64).ok_or_else(eof)?;
        if end > self.len {
            return Err(eof());
        }
        self.inner.read_at(self.start + offset, buf)
    }
}

/// `Read + Seek` over a blob, for decoders that want a reader.
struct BlobReader<'a> {
    blob: &'a dyn Blob,
    pos: u64,
}

impl Read for BlobReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.blob.len().saturating_sub(self.pos);
        let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
        let dst = buf.get_mut(..n).unwrap_or_default();
        self.blob.read_at(self.pos, dst)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for BlobReader<'_> {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        let target = match pos {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.blob.len().checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = target.ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "seek before the start")
        })?;
        Ok(self.pos)
    }
}

/// Limits that keep a hostile file from exhausting the scanner.
#[derive(Debug, Clone)]
pub struct ScanOptions {
    pub allowlist: Allowlist,
    /// Containers nested deeper than this are not opened (reported as incomplete).
    pub max_depth: usize,
    /// The most bytes one compressed member or pickle may expand to in memory.
    pub max_member_bytes: u64,
    /// The most bytes decompressed across one scanned file.
    pub max_total_bytes: u64,
}

impl Default for ScanOptions {
    fn default() -> Self {
        Self {
            allowlist: Allowlist::default(),
            max_depth: 8,
            max_member_bytes: 2 << 30,
            max_total_bytes: 16 << 30,
        }
    }
}

/// What kind of unsafe thing a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// An import of a known code-execution primitive (`os.system`, `builtins.eval` …).
    DangerousImport,
    /// An import that is not on the allowlist.
    UnknownImport,
    /// An import whose module or name is computed while loading.
    DynamicImport,
    /// An import through the copyreg extension registry, which names nothing in the file.
    ExtensionImport,
    /// A call of what another call returned: how gadget chains reach code.
    DynamicCall,
    /// `BUILD` on an imported class or module: monkey-patching the loader's environment.
    AttributeOverwrite,
    /// An archive whose directory and entries disagree, which hides members from some readers.
    ArchiveMismatch,
    /// A header that its loader would misread: sizes or offsets out of bounds, overlapping data.
    MalformedHeader,
    /// A chat template that reaches Python internals (server-side template injection).
    TemplateInjection,
    /// A reference to a file outside the model (absolute path or `..`).
    PathTraversal,
}

impl FindingKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DangerousImport => "dangerous_import",
            Self::UnknownImport => "unknown_import",
            Self::DynamicImport => "dynamic_import",
            Self::ExtensionImport => "extension_import",
            Self::DynamicCall => "dynamic_call",
            Self::AttributeOverwrite => "attribute_overwrite",
            Self::ArchiveMismatch => "archive_mismatch",
            Self::MalformedHeader => "malformed_header",
            Self::TemplateInjection => "template_injection",
            Self::PathTraversal => "path_traversal",
        }
    }
}

/// One unsafe thing, where it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The file, and inside it the archive members joined by `!` (`model.zip!archive/data.pkl`).
    pub location: String,
    /// Byte offset inside the innermost member (inside the decompressed bytes, if compressed).
    pub offset: u64,
    pub kind: FindingKind,
    pub severity: Severity,
    /// The import or construct, e.g. `posix.system`.
    pub detail: String,
}

/// The outcome for one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Everything was examined and nothing unsafe was found.
    Clean,
    /// At least one finding.
    Unsafe,
    /// No finding, but something could not be examined; not safe to load.
    Incomplete,
}

/// What was found in one file and its members.
#[derive(Debug, Clone, Serialize)]
pub struct FileReport {
    pub path: String,
    /// The outermost format, as recognised from the bytes.
    pub format: &'static str,
    pub verdict: Verdict,
    pub findings: Vec<Finding>,
    /// What could not be examined, each naming the member; any of these makes the verdict
    /// incomplete unless there are findings.
    pub incomplete: Vec<String>,
    /// Informational remarks (members skipped as plain data, trailing bytes).
    pub notes: Vec<String>,
    /// Pickles examined, and imports they make, allowed or not (`module.name`).
    pub pickles: usize,
    pub imports: Vec<String>,
}

impl FileReport {
    fn new(path: &str) -> Self {
        Self {
            path: path.to_string(),
            format: "unknown",
            verdict: Verdict::Clean,
            findings: Vec::new(),
            incomplete: Vec::new(),
            notes: Vec::new(),
            pickles: 0,
            imports: Vec::new(),
        }
    }
}

/// Scans one file's bytes. `path` is only used to name locations in the report.
pub fn scan_blob(path: &str, blob: &dyn Blob, options: &ScanOptions) -> FileReport {
    let mut scan = Scan {
        options,
        report: FileReport::new(path),
        decompressed: 0,
    };
    scan.report.format = scan.blob(path, blob, 0);
    let r = &mut scan.report;
    r.verdict = if !r.findings.is_empty() {
        Verdict::Unsafe
    } else if !r.incomplete.is_empty() {
        Verdict::Incomplete
    } else {
        Verdict::Clean
    };
    scan.report
}

/// Scans bytes held in memory.
pub fn scan_bytes(path: &str, bytes: &[u8], options: &ScanOptions) -> FileReport {
    scan_blob(path, &bytes, options)
}

struct Scan<'o> {
    options: &'o ScanOptions,
    report: FileReport,
    decompressed: u64,
}

/// The formats recognised from leading bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Zip,
    SevenZip,
    Gzip,
    Zlib,
    Bzip2,
    Tar,
    Npy,
    Gguf,
    Safetensors,
    Onnx,
    Pickle,
    Unknown,
}

impl Scan<'_> {
    fn finding(
        &mut self,
        location: &str,
        offset: u64,
        kind: FindingKind,
        severity: Severity,
        detail: String,
    ) {
        self.report.findings.push(Finding {
            location: location.to_string(),
            offset,
            kind,
            severity,
            detail,
        });
    }

    fn incomplete(&mut self, location: &str, why: impl std::fmt::Display) {
        self.report.incomplete.push(format!("{location}: {why}"));
    }

    fn note(&mut self, location: &str, what: impl std::fmt::Display) {
        self.report.notes.push(format!("{location}: {what}"));
    }

    /// Reads the first bytes of a blob.
    fn head(&mut self, location: &str, blob: &dyn Blob) -> Option<Vec<u8>> {
        let n = usize::try_from(blob.len())
            .unwrap_or(usize::MAX)
            .min(SNIFF_BYTES);
        let mut head = vec![0; n];
        match blob.read_at(0, &mut head) {
            Ok(()) => Some(head),
            Err(e) => {
                self.incomplete(location, format!("could not be read: {e}"));
                None
            }
        }
    }

    /// Decompresses a stream within the member and total limits.
    ///
    /// A stream that breaks part-way is reported incomplete, and what came out before the break
    /// is still scanned: a loader reading through the decompressor would have run it. With
    /// `quiet_if_nothing`, a stream that yields nothing at all is not reported (the bytes only
    /// looked like a compressed stream).
    fn inflate(
        &mut self,
        location: &str,
        reader: &mut dyn Read,
        quiet_if_nothing: bool,
    ) -> Option<Vec<u8>> {
        let room = self.options.max_member_bytes.min(
            self.options
                .max_total_bytes
                .saturating_sub(self.decompressed),
        );
        let mut out = Vec::new();
        match reader.take(room.saturating_add(1)).read_to_end(&mut out) {
            Ok(_) if out.len() as u64 > room => {
                self.incomplete(
                    location,
                    format!(
                        "decompresses to more than {room} bytes (decompression limit); not examined"
                    ),
                );
                None
            }
            Ok(_) => {
                self.decompressed += out.len() as u64;
                Some(out)
            }
            Err(_) if out.is_empty() && quiet_if_nothing => None,
            Err(e) => {
                self.incomplete(
                    location,
                    format!("could not be decompressed past byte {}: {e}", out.len()),
                );
                self.decompressed += out.len() as u64;
                (!out.is_empty()).then_some(out)
            }
        }
    }

    /// Scans a blob of any format; returns the format's name.
    fn blob(&mut self, location: &str, blob: &dyn Blob, depth: usize) -> &'static str {
        let Some(head) = self.head(location, blob) else {
            return "unreadable";
        };
        let kind = sniff(&head, blob.len(), location);
        if depth > self.options.max_depth && !matches!(kind, Kind::Pickle | Kind::Unknown) {
            self.incomplete(
                location,
                format!(
                    "nested more than {} containers deep; not opened",
                    self.options.max_depth
                ),
            );
            return "nested";
        }
        match kind {
            Kind::Zip => {
                zip::scan(self, location, blob, depth);
                "zip"
            }
            Kind::SevenZip => {
                self.seven_zip(location, blob, depth);
                "7z"
            }
            Kind::Tar => {
                self.tar(location, &mut BlobReader { blob, pos: 0 }, depth);
                "tar"
            }
            Kind::Gzip | Kind::Zlib | Kind::Bzip2 => {
                let mut reader = BlobReader { blob, pos: 0 };
                let (inner, name): (Option<Vec<u8>>, &str) = match kind {
                    Kind::Gzip => (
                        self.inflate(
                            location,
                            &mut flate2::read::MultiGzDecoder::new(&mut reader),
                            false,
                        ),
                        "gzip",
                    ),
                    Kind::Zlib => (
                        self.inflate(
                            location,
                            &mut flate2::read::ZlibDecoder::new(&mut reader),
                            true,
                        ),
                        "zlib",
                    ),
                    _ => (
                        self.inflate(location, &mut bzip2_reader(&mut reader), false),
                        "bzip2",
                    ),
                };
                match inner {
                    Some(inner) => {
                        let inner_location = format!("{location}!{name}");
                        self.blob(&inner_location, &inner, depth + 1);
                        name
                    }
                    // Two bytes that look like a zlib header are not enough to call it one.
                    None if kind == Kind::Zlib => self.pickles(location, blob, &head, depth),
                    None => name,
                }
            }
            Kind::Npy => {
                formats::npy(self, location, blob, &head);
                "npy"
            }
            Kind::Gguf => {
                formats::gguf(self, location, blob);
                "gguf"
            }
            Kind::Safetensors => {
                formats::safetensors(self, location, blob, &head);
                "safetensors"
            }
            Kind::Onnx => {
                formats::onnx(self, location, blob);
                "onnx"
            }
            Kind::Pickle | Kind::Unknown => self.pickles(location, blob, &head, depth),
        }
    }

    /// Runs the pickle machine over a blob, pickle after pickle (legacy `torch.save` files hold
    /// several in a row). Returns "pickle", or "data" when the bytes are not a pickle at all.
    fn pickles(
        &mut self,
        location: &str,
        blob: &dyn Blob,
        head: &[u8],
        depth: usize,
    ) -> &'static str {
        // The bytes are read in a window that grows only while a pickle runs past its end, so
        // a legacy checkpoint's gigabytes of tensor data after its pickles are never read.
        let mut window: Vec<u8> = head.to_vec();
        let mut offset = 0usize;
        let mut runs = 0usize;
        loop {
            let rest = window.get(offset..).unwrap_or_default();
            let outcome = pickle::run(rest, &self.options.allowlist);
            let more = (window.len() as u64) < blob.len();
            // A first pickle is followed wherever it goes; later ones only when they start like
            // a pickle, so tensor bytes that happen to parse for a while are not chased.
            let candidate = if runs == 0 {
                outcome.opcodes > 0 || looks_like_pickle(rest, &outcome)
            } else {
                matches!(rest, [0x80, 0..=5, ..])
            };
            let wants_more = rest.len() < 2
                || (outcome.end == pickle::PickleEnd::Truncated && candidate)
                || (outcome.end == pickle::PickleEnd::Stop
                    && offset + outcome.consumed == window.len());
            if more && wants_more {
                let target = (window.len() as u64)
                    .saturating_mul(4)
                    .max(1 << 20)
                    .min(blob.len());
                if target > self.options.max_member_bytes {
                    self.incomplete(
                        location,
                        format!(
                            "a pickle runs past {} bytes, the limit for a member read into memory",
                            self.options.max_member_bytes
                        ),
                    );
                    return "pickle";
                }
                let start = window.len();
                window.resize(usize::try_from(target).unwrap_or(start), 0);
                if let Err(e) =
                    blob.read_at(start as u64, window.get_mut(start..).unwrap_or_default())
                {
                    self.incomplete(location, format!("could not be read: {e}"));
                    return "pickle";
                }
                continue;
            }
            let is_pickle = !outcome.findings.is_empty()
                || outcome.end == pickle::PickleEnd::Stop
                || (runs == 0 && looks_like_pickle(rest, &outcome));
            if !is_pickle {
                if runs == 0 {
                    if depth == 0 {
                        self.note(
                            location,
                            "not a format that can carry code; nothing to examine",
                        );
                    }
                    return "data";
                }
                let trailing = blob.len().saturating_sub(offset as u64);
                if trailing > 0 {
                    self.note(
                        location,
                        format!(
                            "{trailing} bytes after the last pickle are not a pickle (tensor data)"
                        ),
                    );
                }
                return "pickle";
            }
            runs += 1;
            self.report.pickles += 1;
            for f in outcome.findings {
                self.finding(
                    location,
                    (offset + f.offset) as u64,
                    f.kind,
                    f.severity,
                    f.detail,
                );
            }
            for import in outcome.imports {
                let dotted = import.dotted();
                if !self.report.imports.contains(&dotted) {
                    self.report.imports.push(dotted);
                }
            }
            match outcome.end {
                pickle::PickleEnd::Stop => {}
                pickle::PickleEnd::Truncated => {
                    self.note(
                        location,
                        format!(
                            "pickle at offset {offset} is truncated; a loader would fail there"
                        ),
                    );
                    return "pickle";
                }
                pickle::PickleEnd::Invalid(why) => {
                    self.note(
                        location,
                        format!(
                            "pickle at offset {} is invalid ({why}); a loader would fail there",
                            offset + outcome.consumed
                        ),
                    );
                    return "pickle";
                }
                pickle::PickleEnd::Limit(why) => {
                    self.incomplete(
                        location,
                        format!("pickle at offset {offset} not examined to the end: {why}"),
                    );
                    return "pickle";
                }
            }
            offset += outcome.consumed;
            if offset as u64 >= blob.len() {
                return "pickle";
            }
        }
    }

    fn seven_zip(&mut self, location: &str, blob: &dyn Blob, depth: usize) {
        let reader = BlobReader { blob, pos: 0 };
        let mut archive =
            match sevenz_rust2::ArchiveReader::new(reader, sevenz_rust2::Password::empty()) {
                Ok(a) => a,
                Err(e) => {
                    self.incomplete(location, format!("7z archive could not be opened: {e}"));
                    return;
                }
            };
        let mut members: Vec<(String, Vec<u8>)> = Vec::new();
        let mut failures: Vec<String> = Vec::new();
        let room = self.options.max_member_bytes;
        let result = archive.for_each_entries(|entry, reader| {
            if entry.is_directory || !entry.has_stream {
                return Ok(true);
            }
            let mut out = Vec::new();
            match reader.take(room.saturating_add(1)).read_to_end(&mut out) {
                Ok(_) if out.len() as u64 > room => {
                    failures.push(format!("{}: larger than {room} bytes", entry.name))
                }
                Ok(_) => members.push((entry.name.clone(), out)),
                Err(e) => failures.push(format!("{}: {e}", entry.name)),
            }
            Ok(true)
        });
        if let Err(e) = result {
            self.incomplete(
                location,
                format!("7z archive could not be read to the end: {e}"),
            );
        }
        for failure in failures {
            self.incomplete(location, failure);
        }
        for (name, bytes) in members {
            self.decompressed += bytes.len() as u64;
            let inner = format!("{location}!{name}");
            self.blob(&inner, &bytes, depth + 1);
        }
    }

    fn tar(&mut self, location: &str, reader: &mut dyn Read, depth: usize) {
        let mut archive = tar::Archive::new(reader);
        let entries = match archive.entries() {
            Ok(e) => e,
            Err(e) => {
                self.incomplete(location, format!("tar archive could not be read: {e}"));
                return;
            }
        };
        for entry in entries {
            let mut entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    self.incomplete(
                        location,
                        format!("tar archive could not be read to the end: {e}"),
                    );
                    return;
                }
            };
            if !entry.header().entry_type().is_file() {
                continue;
            }
            let name = entry
                .path()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_else(|_| "?".into());
            let inner = format!("{location}!{name}");
            if let Some(bytes) = self.inflate(&inner, &mut entry, false) {
                self.blob(&inner, &bytes, depth + 1);
            }
        }
    }
}

fn bzip2_reader<'a>(reader: &'a mut dyn Read) -> impl Read + 'a {
    bzip2::read::MultiBzDecoder::new(reader)
}

/// Whether a run that ended early still looked like a pickle: it started with a protocol
/// header, or got through several opcodes before the data ran out.
fn looks_like_pickle(bytes: &[u8], outcome: &pickle::PickleOutcome) -> bool {
    let proto_header = matches!(bytes, [0x80, 0..=5, ..]);
    proto_header || (outcome.end == pickle::PickleEnd::Truncated && outcome.opcodes >= 4)
}

fn sniff(head: &[u8], len: u64, location: &str) -> Kind {
    let starts = |magic: &[u8]| head.starts_with(magic);
    if starts(b"PK\x03\x04") || starts(b"PK\x05\x06") {
        return Kind::Zip;
    }
    if starts(b"7z\xbc\xaf\x27\x1c") {
        return Kind::SevenZip;
    }
    if starts(b"\x1f\x8b") {
        return Kind::Gzip;
    }
    if starts(b"BZh") && head.get(3).is_some_and(|d| (b'1'..=b'9').contains(d)) {
        return Kind::Bzip2;
    }
    // A zlib header: deflate with a 32 KiB window, a valid check value, no preset dictionary.
    if let [0x78, flag, ..] = head
        && (u16::from(0x78u8) << 8 | u16::from(*flag)) % 31 == 0
        && *flag & 0x20 == 0
    {
        return Kind::Zlib;
    }
    if head.get(257..262) == Some(b"ustar") {
        return Kind::Tar;
    }
    if starts(b"\x93NUMPY") {
        return Kind::Npy;
    }
    if starts(b"GGUF") {
        return Kind::Gguf;
    }
    if let Some(n) = head
        .get(..8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_le_bytes)
        && n >= 2
        && n.saturating_add(8) <= len
        && head.get(8) == Some(&b'{')
    {
        return Kind::Safetensors;
    }
    let lower = location.to_ascii_lowercase();
    if lower.ends_with(".onnx") {
        return Kind::Onnx;
    }
    if matches!(head, [0x80, 0..=5, ..]) {
        return Kind::Pickle;
    }
    Kind::Unknown
}
