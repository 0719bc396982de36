//! A pickle machine that reads but never runs.
//!
//! It follows CPython's `_pickle.c` unpickler opcode by opcode — the same stack, mark stack,
//! fence and memo — but pushes abstract values in place of objects, so it knows at every point
//! which strings are on the stack and which entries are imports or results of calls. That is what
//! defeats the usual bypasses of pattern-matching scanners: a `STACK_GLOBAL` whose module and name
//! come from the memo, an escaped `UNICODE` name, a Python 2 alias, an import of a module object
//! whose attributes are then overwritten with `BUILD`, a call of what another call returned.
//!
//! It stops where CPython would raise (unknown opcode, truncated argument, stack underflow,
//! missing memo entry), so everything the real unpickler would have executed before failing has
//! been checked, and it reports whatever it found up to there. Resource limits bound the stack,
//! the marks and the memo; hitting one is reported as an incomplete scan, never as clean.

use std::collections::HashMap;
use std::rc::Rc;

use ztai_core::Severity;

use super::FindingKind;
use super::allowlist::{Allowlist, ImportName, severity_of};

/// The most values the stack may hold, and the most marks and memo entries.
const MAX_STACK: usize = 1 << 22;
const MAX_MARKS: usize = 1 << 20;
const MAX_MEMO: usize = 1 << 22;
/// Distinct imports reported per pickle before the rest are counted only.
const MAX_REPORTED: usize = 256;

/// What one run of the machine saw.
#[derive(Debug, Default)]
pub(crate) struct PickleOutcome {
    pub findings: Vec<PickleFinding>,
    /// Every import made, allowed or not, in order (deduplicated).
    pub imports: Vec<ImportName>,
    pub end: PickleEnd,
    /// Offset just past the last opcode read (past `STOP` for a complete pickle).
    pub consumed: usize,
    /// Opcodes executed; zero means the bytes were not a pickle at all.
    pub opcodes: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PickleFinding {
    pub offset: usize,
    pub kind: FindingKind,
    pub severity: Severity,
    pub detail: String,
}

/// How the run ended.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) enum PickleEnd {
    /// `STOP` reached.
    #[default]
    Stop,
    /// The bytes ran out inside an opcode or before `STOP`.
    Truncated,
    /// CPython would have raised here; nothing after this point would run.
    Invalid(String),
    /// A resource limit of ours was hit; the rest was not examined.
    Limit(String),
}

#[derive(Debug, Clone)]
enum Value {
    Str(Rc<str>),
    /// An imported object: a class, function or module (resolved or not).
    Global,
    /// What a call (`REDUCE`, `NEWOBJ`, `OBJ`, `INST`) returned.
    Called,
    /// Any other data: numbers, bytes, containers, persistent references.
    Data,
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u64, Value>,
    allow: &'a Allowlist,
    out: PickleOutcome,
    reported: HashMap<(FindingKind, String), ()>,
}

enum Step {
    Continue,
    Stop,
}

/// Runs one pickle from the start of `data`.
pub(crate) fn run(data: &[u8], allow: &Allowlist) -> PickleOutcome {
    let mut machine = Machine {
        data,
        pos: 0,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        allow,
        out: PickleOutcome::default(),
        reported: HashMap::new(),
    };
    machine.out.end = loop {
        let at = machine.pos;
        match machine.step() {
            Ok(Step::Continue) => machine.out.opcodes += 1,
            Ok(Step::Stop) => {
                machine.out.opcodes += 1;
                break PickleEnd::Stop;
            }
            Err(end) => {
                machine.pos = at;
                break end;
            }
        }
    };
    machine.out.consumed = machine.pos;
    machine.out
}

type Res<T> = Result<T, PickleEnd>;

fn invalid<T>(why: impl Into<String>) -> Res<T> {
    Err(PickleEnd::Invalid(why.into()))
}

impl Machine<'_> {
    fn byte(&mut self) -> Res<u8> {
        let b = *self.data.get(self.pos).ok_or(PickleEnd::Truncated)?;
        self.pos += 1;
        Ok(b)
    }

    fn take(&mut self, n: u64) -> Res<&[u8]> {
        let n = usize::try_from(n).map_err(|_| PickleEnd::Truncated)?;
        let end = self.pos.checked_add(n).ok_or(PickleEnd::Truncated)?;
        let bytes = self.data.get(self.pos..end).ok_or(PickleEnd::Truncated)?;
        self.pos = end;
        Ok(bytes)
    }

    fn le(&mut self, n: usize) -> Res<u64> {
        let bytes = self.take(n as u64)?;
        Ok(bytes
            .iter()
            .rev()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
    }

    /// A line without its `\n`; CPython raises when the data ends before the newline.
    fn line(&mut self) -> Res<&[u8]> {
        let rest = self.data.get(self.pos..).unwrap_or_default();
        let len = rest
            .iter()
            .position(|b| *b == b'\n')
            .ok_or(PickleEnd::Truncated)?;
        let line = rest.get(..len).unwrap_or_default();
        self.pos += len + 1;
        Ok(line)
    }

    fn push(&mut self, value: Value) -> Res<()> {
        if self.stack.len() >= MAX_STACK {
            return Err(PickleEnd::Limit(format!(
                "the stack grew past {MAX_STACK} values"
            )));
        }
        self.stack.push(value);
        Ok(())
    }

    /// The lowest stack index an opcode may pop: the last mark, as in CPython.
    fn fence(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    fn pop(&mut self) -> Res<Value> {
        if self.stack.len() <= self.fence() {
            return invalid("unpickling stack underflow");
        }
        self.stack
            .pop()
            .map_or_else(|| invalid("unpickling stack underflow"), Ok)
    }

    fn top(&self) -> Res<&Value> {
        if self.stack.len() <= self.fence() {
            return invalid("unpickling stack underflow");
        }
        self.stack
            .last()
            .map_or_else(|| invalid("unpickling stack underflow"), Ok)
    }

    /// Pops everything above the last mark, and the mark.
    fn pop_mark(&mut self) -> Res<Vec<Value>> {
        let mark = self
            .marks
            .pop()
            .map_or_else(|| invalid("could not find MARK"), Ok)?;
        Ok(self.stack.split_off(mark.min(self.stack.len())))
    }

    fn memo_put(&mut self, index: u64) -> Res<()> {
        let value = self.top()?.clone();
        if self.memo.len() >= MAX_MEMO && !self.memo.contains_key(&index) {
            return Err(PickleEnd::Limit(format!(
                "the memo grew past {MAX_MEMO} entries"
            )));
        }
        self.memo.insert(index, value);
        Ok(())
    }

    fn memo_get(&mut self, index: u64) -> Res<()> {
        let value = self.memo.get(&index).cloned().map_or_else(
            || invalid(format!("memo value not found at index {index}")),
            Ok,
        )?;
        self.push(value)
    }

    fn report(&mut self, offset: usize, kind: FindingKind, severity: Severity, detail: String) {
        if self.reported.len() >= MAX_REPORTED {
            return;
        }
        if self.reported.insert((kind, detail.clone()), ()).is_none() {
            self.out.findings.push(PickleFinding {
                offset,
                kind,
                severity,
                detail,
            });
        }
    }

    fn import(&mut self, offset: usize, module: &str, name: &str) -> Value {
        let resolved = ImportName::resolve(module, name);
        if !self.allow.allows(&resolved) {
            let (kind, severity) = match severity_of(&resolved) {
                Severity::Critical => (FindingKind::DangerousImport, Severity::Critical),
                other => (FindingKind::UnknownImport, other),
            };
            let written = format!("{module}.{name}");
            let detail = if written == resolved.dotted() {
                written
            } else {
                format!("{written} (imports {})", resolved.dotted())
            };
            self.report(offset, kind, severity, detail);
        }
        if !self.out.imports.contains(&resolved) && self.out.imports.len() < MAX_REPORTED {
            self.out.imports.push(resolved);
        }
        Value::Global
    }

    /// Checks what a call opcode is about to call.
    fn call(&mut self, offset: usize, callee: &Value, opcode: &str) -> Res<()> {
        match callee {
            Value::Global => Ok(()),
            Value::Called => {
                self.report(
                    offset,
                    FindingKind::DynamicCall,
                    Severity::High,
                    format!("{opcode} calls an object that another call returned"),
                );
                Ok(())
            }
            Value::Str(_) | Value::Data => {
                invalid(format!("{opcode} of an object that is not callable"))
            }
        }
    }

    fn step(&mut self) -> Res<Step> {
        let at = self.pos;
        let op = self.byte()?;
        match op {
            b'.' => return Ok(Step::Stop),
            b'(' => {
                if self.marks.len() >= MAX_MARKS {
                    return Err(PickleEnd::Limit(format!(
                        "more than {MAX_MARKS} open marks"
                    )));
                }
                self.marks.push(self.stack.len());
            }
            b'0' => {
                // POP removes a mark when the mark is on top of the stack.
                if self.marks.last() == Some(&self.stack.len()) {
                    self.marks.pop();
                } else {
                    self.pop()?;
                }
            }
            b'1' => {
                self.pop_mark()?;
            }
            b'2' => {
                let top = self.top()?.clone();
                self.push(top)?;
            }
            // Numbers and constants: text, fixed width, or length-prefixed.
            b'F' | b'I' | b'L' => {
                self.line()?;
                self.push(Value::Data)?;
            }
            b'J' => {
                self.take(4)?;
                self.push(Value::Data)?;
            }
            b'K' => {
                self.take(1)?;
                self.push(Value::Data)?;
            }
            b'M' => {
                self.take(2)?;
                self.push(Value::Data)?;
            }
            b'G' => {
                self.take(8)?;
                self.push(Value::Data)?;
            }
            0x8a => {
                let n = self.le(1)?;
                self.take(n)?;
                self.push(Value::Data)?;
            }
            0x8b => {
                let n = self.le(4)?;
                if n > i32::MAX as u64 {
                    return invalid("LONG pickle has negative byte count");
                }
                self.take(n)?;
                self.push(Value::Data)?;
            }
            b'N' | 0x88 | 0x89 | b')' | b']' | b'}' | 0x8f => self.push(Value::Data)?,
            // Strings become str on load: these can name a STACK_GLOBAL import.
            b'S' => {
                let line = self.line()?.to_vec();
                let value = python_quoted(&line)
                    .map_or_else(|| invalid("the STRING opcode argument must be quoted"), Ok)?;
                self.push(Value::Str(Rc::from(value.as_str())))?;
            }
            b'T' => {
                let n = self.le(4)?;
                if n > i32::MAX as u64 {
                    return invalid("BINSTRING pickle has negative byte count");
                }
                let bytes = self.take(n)?;
                let value = latin1(bytes);
                self.push(value)?;
            }
            b'U' => {
                let n = self.le(1)?;
                let bytes = self.take(n)?;
                let value = latin1(bytes);
                self.push(value)?;
            }
            b'V' => {
                let line = self.line()?.to_vec();
                let value = raw_unicode_escape(&line)
                    .map_or_else(|| invalid("truncated \\uXXXX escape in UNICODE"), Ok)?;
                self.push(Value::Str(Rc::from(value.as_str())))?;
            }
            b'X' => {
                let n = self.le(4)?;
                let bytes = self.take(n)?;
                let value = text(bytes);
                self.push(value)?;
            }
            0x8c => {
                let n = self.le(1)?;
                let bytes = self.take(n)?;
                let value = text(bytes);
                self.push(value)?;
            }
            0x8d => {
                let n = self.le(8)?;
                let bytes = self.take(n)?;
                let value = text(bytes);
                self.push(value)?;
            }
            b'B' => {
                let n = self.le(4)?;
                self.take(n)?;
                self.push(Value::Data)?;
            }
            b'C' => {
                let n = self.le(1)?;
                self.take(n)?;
                self.push(Value::Data)?;
            }
            0x8e | 0x96 => {
                let n = self.le(8)?;
                self.take(n)?;
                self.push(Value::Data)?;
            }
            0x97 => self.push(Value::Data)?,
            0x98 => {
                self.top()?;
            }
            // Containers.
            0x85 => {
                self.pop()?;
                self.push(Value::Data)?;
            }
            0x86 => {
                self.pop()?;
                self.pop()?;
                self.push(Value::Data)?;
            }
            0x87 => {
                self.pop()?;
                self.pop()?;
                self.pop()?;
                self.push(Value::Data)?;
            }
            b't' | b'l' | b'd' | 0x91 => {
                self.pop_mark()?;
                self.push(Value::Data)?;
            }
            b'a' => {
                self.pop()?;
                self.top()?;
            }
            b's' => {
                self.pop()?;
                self.pop()?;
                self.top()?;
            }
            b'e' | b'u' | 0x90 => {
                let mark = self.marks.last().copied();
                self.pop_mark()?;
                if mark == Some(0) || self.stack.is_empty() {
                    return invalid("unpickling stack underflow");
                }
            }
            // Memo.
            b'p' => {
                let index = decimal(self.line()?)?;
                self.memo_put(index)?;
            }
            b'q' => {
                let index = self.le(1)?;
                self.memo_put(index)?;
            }
            b'r' => {
                let index = self.le(4)?;
                self.memo_put(index)?;
            }
            0x94 => {
                let index = self.memo.len() as u64;
                self.memo_put(index)?;
            }
            b'g' => {
                let index = decimal(self.line()?)?;
                self.memo_get(index)?;
            }
            b'h' => {
                let index = self.le(1)?;
                self.memo_get(index)?;
            }
            b'j' => {
                let index = self.le(4)?;
                self.memo_get(index)?;
            }
            // Imports.
            b'c' => {
                let module = utf8_name(self.line()?)?;
                let name = utf8_name(self.line()?)?;
                let value = self.import(at, &module, &name);
                self.push(value)?;
            }
            0x93 => {
                let name = self.pop()?;
                let module = self.pop()?;
                let value = match (&module, &name) {
                    (Value::Str(m), Value::Str(n)) => {
                        let (m, n) = (m.clone(), n.clone());
                        self.import(at, &m, &n)
                    }
                    (
                        Value::Str(_) | Value::Called | Value::Global,
                        Value::Str(_) | Value::Called | Value::Global,
                    ) => {
                        self.report(
                            at,
                            FindingKind::DynamicImport,
                            Severity::Critical,
                            "STACK_GLOBAL imports a name computed at load time".into(),
                        );
                        Value::Global
                    }
                    _ => return invalid("STACK_GLOBAL requires str"),
                };
                self.push(value)?;
            }
            0x82..=0x84 => {
                let width = match op {
                    0x82 => 1,
                    0x83 => 2,
                    _ => 4,
                };
                let code = self.le(width)?;
                if code == 0 {
                    return invalid("EXT specifies code <= 0");
                }
                self.report(
                    at,
                    FindingKind::ExtensionImport,
                    Severity::High,
                    format!("EXT imports extension code {code} from the copyreg registry"),
                );
                self.push(Value::Global)?;
            }
            // Calls.
            b'R' => {
                self.pop()?;
                let callee = self.pop()?;
                self.call(at, &callee, "REDUCE")?;
                self.push(Value::Called)?;
            }
            0x81 => {
                self.pop()?;
                let class = self.pop()?;
                self.call(at, &class, "NEWOBJ")?;
                self.push(Value::Called)?;
            }
            0x92 => {
                self.pop()?;
                self.pop()?;
                let class = self.pop()?;
                self.call(at, &class, "NEWOBJ_EX")?;
                self.push(Value::Called)?;
            }
            b'o' => {
                let items = self.pop_mark()?;
                let class = items
                    .first()
                    .cloned()
                    .map_or_else(|| invalid("unpickling stack underflow"), Ok)?;
                self.call(at, &class, "OBJ")?;
                self.push(Value::Called)?;
            }
            b'i' => {
                let module = utf8_name(self.line()?)?;
                let name = utf8_name(self.line()?)?;
                self.import(at, &module, &name);
                self.pop_mark()?;
                self.push(Value::Called)?;
            }
            b'b' => {
                self.pop()?;
                if let Value::Global = self.top()? {
                    self.report(
                        at,
                        FindingKind::AttributeOverwrite,
                        Severity::Critical,
                        "BUILD sets attributes on an imported class or module".into(),
                    );
                }
            }
            // Persistent references resolve through the loader (torch storages); data here.
            b'P' => {
                self.line()?;
                self.push(Value::Data)?;
            }
            b'Q' => {
                self.pop()?;
                self.push(Value::Data)?;
            }
            // Protocol and framing.
            0x80 => {
                let proto = self.byte()?;
                if proto > 5 {
                    return invalid(format!("unsupported pickle protocol: {proto}"));
                }
            }
            0x95 => {
                self.take(8)?;
            }
            other => return invalid(format!("invalid load key, '\\x{other:02x}'")),
        }
        Ok(Step::Continue)
    }
}

fn decimal(line: &[u8]) -> Res<u64> {
    std::str::from_utf8(line)
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map_or_else(|| invalid("memo index is not a number"), Ok)
}

/// Module and class names of `GLOBAL` and `INST`: CPython decodes them as strict UTF-8.
fn utf8_name(line: &[u8]) -> Res<String> {
    match std::str::from_utf8(line) {
        Ok(s) => Ok(s.to_string()),
        Err(_) => invalid("GLOBAL names are not UTF-8"),
    }
}

fn text(bytes: &[u8]) -> Value {
    Value::Str(Rc::from(String::from_utf8_lossy(bytes).as_ref()))
}

fn latin1(bytes: &[u8]) -> Value {
    let s: String = bytes.iter().map(|b| char::from(*b)).collect();
    Value::Str(Rc::from(s.as_str()))
}

/// The argument of `STRING`: a Python quoted literal with backslash escapes.
fn python_quoted(line: &[u8]) -> Option<String> {
    let (first, rest) = line.split_first()?;
    let (last, body) = rest.split_last()?;
    if first != last || !(*first == b'\'' || *first == b'"') {
        return None;
    }
    let mut out = String::new();
    let mut i = 0;
    while let Some(&b) = body.get(i) {
        i += 1;
        if b != b'\\' {
            out.push(char::from(b));
            continue;
        }
        let &e = body.get(i)?;
        i += 1;
        match e {
            b'n' => out.push('\n'),
            b't' => out.push('\t'),
            b'r' => out.push('\r'),
            b'a' => out.push('\u{7}'),
            b'b' => out.push('\u{8}'),
            b'f' => out.push('\u{c}'),
            b'v' => out.push('\u{b}'),
            b'\n' => {}
            b'\\' | b'\'' | b'"' => out.push(char::from(e)),
            b'x' => {
                let hex = body.get(i..i + 2)?;
                let v = u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
                out.push(char::from(v));
                i += 2;
            }
            b'0'..=b'7' => {
                let mut v = u32::from(e - b'0');
                for _ in 0..2 {
                    match body.get(i) {
                        Some(d @ b'0'..=b'7') => {
                            v = v * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push(char::from(u8::try_from(v & 0xff).unwrap_or(0)));
            }
            other => {
                out.push('\\');
                out.push(char::from(other));
            }
        }
    }
    Some(out)
}

/// The argument of `UNICODE`: raw-unicode-escape, where `\uXXXX` and `\UXXXXXXXX` are code
/// points when an odd number of backslashes precedes them, and every other byte is Latin-1.
fn raw_unicode_escape(line: &[u8]) -> Option<String> {
    let mut out = String::new();
    let mut i = 0;
    while let Some(&b) = line.get(i) {
        if b != b'\\' {
            out.push(char::from(b));
            i += 1;
            continue;
        }
        let start = i;
        while line.get(i) == Some(&b'\\') {
            out.push('\\');
            i += 1;
        }
        let odd = (i - start) % 2 == 1;
        let width = match line.get(i) {
            Some(b'u') if odd => 4,
            Some(b'U') if odd => 8,
            _ => continue,
        };
        out.pop();
        let hex = line.get(i + 1..i + 1 + width)?;
        let code = u32::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
        out.push(char::from_u32(code).unwrap_or('\u{fffd}'));
        i += 1 + width;
    }
    Some(out)
}

#[cfg(test)]
mod tests;
