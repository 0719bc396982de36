//! ZIP archives as every reader might see them.
//!
//! Readers disagree about ZIP files: Python's `zipfile` trusts the central directory, stream
//! readers walk local headers from the start, PyTorch's miniz ignores the "encrypted" flag. An
//! attacker uses exactly those differences to show a scanner one thing and the loader another.
//! So this walker reads both views — every central-directory record and every local header in
//! sequence — scans the union of entries, reports where the two views disagree, and reads an
//! entry flagged as encrypted anyway when it is stored in the clear. Archive crates normalise or
//! refuse such files, which is why this small reader exists.

use std::collections::BTreeMap;

use ztai_core::Severity;

use super::{Blob, FindingKind, Scan, Window};

const LOCAL: u32 = 0x0403_4b50;
const CENTRAL: u32 = 0x0201_4b50;
const END: u32 = 0x0605_4b50;
const END64: u32 = 0x0606_4b50;
const END64_LOCATOR: u32 = 0x0706_4b50;
/// The end record is within the last 22 + 65,535 bytes (its comment is at most that long).
const END_SEARCH: u64 = 22 + 65_535;
/// Central-directory records read before the rest are refused.
const MAX_ENTRIES: usize = 1 << 20;

#[derive(Debug, Clone, Default)]
struct Entry {
    /// Name in the central directory, if listed there.
    central_name: Option<String>,
    /// Name in the local header, if one was found at the offset.
    local_name: Option<String>,
    flags: u16,
    method: u16,
    compressed: u64,
    data_start: Option<u64>,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    b.get(at..at + 2)
        .and_then(|s| <[u8; 2]>::try_from(s).ok())
        .map(u16::from_le_bytes)
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)
        .and_then(|s| <[u8; 4]>::try_from(s).ok())
        .map(u32::from_le_bytes)
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    b.get(at..at + 8)
        .and_then(|s| <[u8; 8]>::try_from(s).ok())
        .map(u64::from_le_bytes)
}

fn read(blob: &dyn Blob, offset: u64, len: usize) -> Option<Vec<u8>> {
    let mut buf = vec![0; len];
    blob.read_at(offset, &mut buf).ok()?;
    Some(buf)
}

/// Values from a ZIP64 extra field, replacing the 32-bit fields that are all ones.
fn zip64(extra: &[u8], sizes: &mut [&mut u64]) {
    let mut at = 0;
    while let (Some(id), Some(len)) = (u16_at(extra, at), u16_at(extra, at + 2)) {
        let body = extra
            .get(at + 4..at + 4 + usize::from(len))
            .unwrap_or_default();
        if id == 1 {
            let mut k = 0;
            for size in sizes.iter_mut() {
                if **size == u64::from(u32::MAX) {
                    if let Some(v) = u64_at(body, k) {
                        **size = v;
                    }
                    k += 8;
                }
            }
            return;
        }
        at += 4 + usize::from(len);
    }
}

struct Local {
    name: String,
    flags: u16,
    method: u16,
    compressed: u64,
    data_start: u64,
}

fn local_header(blob: &dyn Blob, offset: u64) -> Option<Local> {
    let fixed = read(blob, offset, 30)?;
    if u32_at(&fixed, 0)? != LOCAL {
        return None;
    }
    let flags = u16_at(&fixed, 6)?;
    let method = u16_at(&fixed, 8)?;
    let mut compressed = u64::from(u32_at(&fixed, 18)?);
    let mut uncompressed = u64::from(u32_at(&fixed, 22)?);
    let name_len = usize::from(u16_at(&fixed, 26)?);
    let extra_len = usize::from(u16_at(&fixed, 28)?);
    let var = read(blob, offset + 30, name_len + extra_len)?;
    let name = String::from_utf8_lossy(var.get(..name_len)?).into_owned();
    zip64(
        var.get(name_len..)?,
        &mut [&mut uncompressed, &mut compressed],
    );
    let data_start = offset + 30 + (name_len + extra_len) as u64;
    Some(Local {
        name,
        flags,
        method,
        compressed,
        data_start,
    })
}

/// Central directory records: (local header offset, name, compressed size, flags, method).
fn central_directory(
    scan: &mut Scan<'_>,
    location: &str,
    blob: &dyn Blob,
) -> Vec<(u64, String, u64, u16, u16)> {
    let len = blob.len();
    let tail_start = len.saturating_sub(END_SEARCH);
    let Some(tail) = read(
        blob,
        tail_start,
        usize::try_from(len - tail_start).unwrap_or(0),
    ) else {
        return Vec::new();
    };
    let Some(end_at) = (0..tail.len().saturating_sub(21))
        .rev()
        .find(|&i| u32_at(&tail, i) == Some(END))
    else {
        scan.incomplete(
            location,
            "no ZIP end-of-central-directory record; only local headers were read",
        );
        return Vec::new();
    };
    let field = |at: usize| u32_at(&tail, end_at + at).map(u64::from);
    let (Some(mut count), Some(mut cd_size), Some(mut cd_offset)) = (
        u16_at(&tail, end_at + 10).map(u64::from),
        field(12),
        field(16),
    ) else {
        return Vec::new();
    };
    // ZIP64: a locator just before the end record points at the 64-bit end record.
    if end_at >= 20
        && u32_at(&tail, end_at - 20) == Some(END64_LOCATOR)
        && let Some(rec) = u64_at(&tail, end_at - 12).and_then(|at| read(blob, at, 56))
        && u32_at(&rec, 0) == Some(END64)
    {
        count = u64_at(&rec, 32).unwrap_or(count);
        cd_size = u64_at(&rec, 40).unwrap_or(cd_size);
        cd_offset = u64_at(&rec, 48).unwrap_or(cd_offset);
    }
    let cd_size = usize::try_from(cd_size).unwrap_or(usize::MAX);
    let Some(cd) = (cd_size <= 256 << 20)
        .then(|| read(blob, cd_offset, cd_size))
        .flatten()
    else {
        scan.incomplete(
            location,
            "the ZIP central directory is out of bounds; only local headers were read",
        );
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut at = 0usize;
    while u32_at(&cd, at) == Some(CENTRAL) && out.len() < MAX_ENTRIES {
        let (
            Some(flags),
            Some(method),
            Some(csize),
            Some(usize_),
            Some(name_len),
            Some(extra_len),
            Some(comment_len),
            Some(offset),
        ) = (
            u16_at(&cd, at + 8),
            u16_at(&cd, at + 10),
            u32_at(&cd, at + 20),
            u32_at(&cd, at + 24),
            u16_at(&cd, at + 28),
            u16_at(&cd, at + 30),
            u16_at(&cd, at + 32),
            u32_at(&cd, at + 42),
        )
        else {
            break;
        };
        let name_end = at + 46 + usize::from(name_len);
        let name =
            String::from_utf8_lossy(cd.get(at + 46..name_end).unwrap_or_default()).into_owned();
        let extra = cd
            .get(name_end..name_end + usize::from(extra_len))
            .unwrap_or_default();
        let (mut csize, mut usize_, mut offset) =
            (u64::from(csize), u64::from(usize_), u64::from(offset));
        zip64(extra, &mut [&mut usize_, &mut csize, &mut offset]);
        out.push((offset, name, csize, flags, method));
        at = name_end + usize::from(extra_len) + usize::from(comment_len);
    }
    if (out.len() as u64) < count.min(MAX_ENTRIES as u64) {
        scan.note(
            location,
            format!(
                "the ZIP end record counts {count} entries but the central directory holds {}",
                out.len()
            ),
        );
    }
    out
}

pub(super) fn scan(scan: &mut Scan<'_>, location: &str, blob: &dyn Blob, depth: usize) {
    let mut entries: BTreeMap<u64, Entry> = BTreeMap::new();
    for (offset, name, compressed, flags, method) in central_directory(scan, location, blob) {
        let entry = entries.entry(offset).or_default();
        entry.central_name = Some(name);
        entry.compressed = compressed;
        entry.flags = flags;
        entry.method = method;
    }
    // Local headers, walked from the start the way a streaming reader would.
    let mut offset = 0u64;
    while entries.len() < MAX_ENTRIES {
        let Some(local) = local_header(blob, offset) else {
            break;
        };
        let listed = entries.get(&offset).map(|e| e.compressed);
        let entry = entries.entry(offset).or_default();
        entry.local_name = Some(local.name);
        entry.data_start = Some(local.data_start);
        entry.flags |= local.flags;
        entry.method = local.method;
        // A data descriptor leaves the local sizes zero; the central directory knows them.
        let compressed = if local.flags & 0x8 != 0 && local.compressed == 0 {
            match listed {
                Some(c) => c,
                None => break,
            }
        } else {
            local.compressed
        };
        if entry.compressed == 0 {
            entry.compressed = compressed;
        }
        let descriptor = if local.flags & 0x8 != 0 { 12 } else { 0 };
        let next = local.data_start.saturating_add(compressed);
        offset = if local_header(blob, next).is_some() {
            next
        } else {
            next + descriptor
        };
        if offset >= blob.len() {
            break;
        }
    }
    // Central records whose local header was not on the walk.
    let missing: Vec<u64> = entries
        .iter()
        .filter(|(_, e)| e.data_start.is_none())
        .map(|(o, _)| *o)
        .collect();
    for offset in missing {
        if let Some(local) = local_header(blob, offset)
            && let Some(entry) = entries.get_mut(&offset)
        {
            entry.local_name = Some(local.name);
            entry.data_start = Some(local.data_start);
            entry.method = local.method;
            entry.flags |= local.flags;
        }
    }

    for (offset, entry) in entries {
        let name = entry
            .central_name
            .clone()
            .or_else(|| entry.local_name.clone())
            .unwrap_or_default();
        let member = format!("{location}!{name}");
        match (&entry.central_name, &entry.local_name) {
            (Some(c), Some(l)) if c != l => scan.finding(
                location,
                offset,
                FindingKind::ArchiveMismatch,
                Severity::Medium,
                format!("entry is `{c}` in the central directory but `{l}` in its local header"),
            ),
            (Some(c), None) => {
                scan.incomplete(&member, format!("the central directory lists `{c}` at offset {offset} but no local header is there"));
                continue;
            }
            (None, Some(l)) => scan.finding(
                location,
                offset,
                FindingKind::ArchiveMismatch,
                Severity::Medium,
                format!("entry `{l}` has a local header but is not in the central directory"),
            ),
            _ => {}
        }
        if name.ends_with('/') && entry.compressed == 0 {
            continue;
        }
        let Some(start) = entry.data_start else {
            continue;
        };
        if start.saturating_add(entry.compressed) > blob.len() {
            scan.incomplete(&member, "entry data runs past the end of the archive");
            continue;
        }
        let window = Window {
            inner: blob,
            start,
            len: entry.compressed,
        };
        let encrypted = entry.flags & 0x1 != 0;
        match entry.method {
            0 => {
                let before = (scan.report.findings.len(), scan.report.pickles);
                let format = scan.blob(&member, &window, depth + 1);
                let recognised = format != "data"
                    || scan.report.findings.len() > before.0
                    || scan.report.pickles > before.1;
                if encrypted && !recognised {
                    scan.incomplete(
                        &member,
                        "entry is encrypted; its contents cannot be examined",
                    );
                } else if encrypted {
                    scan.note(&member, "entry is flagged as encrypted but stored in the clear; loaders that ignore the flag read it, so it was scanned");
                }
            }
            8 if !encrypted => {
                let mut reader = super::BlobReader {
                    blob: &window,
                    pos: 0,
                };
                let mut inflater = flate2::read::DeflateDecoder::new(&mut reader);
                if let Some(bytes) = scan.inflate(&member, &mut inflater, false) {
                    scan.blob(&member, &bytes, depth + 1);
                }
            }
            8 => scan.incomplete(
                &member,
                "entry is encrypted; its contents cannot be examined",
            ),
            other => scan.incomplete(
                &member,
                format!("compression method {other} is not supported; entry not examined"),
            ),
        }
    }
}
