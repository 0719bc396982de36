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

use std::cell::RefCell;
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

/// A string on the stack. Most are spans of the input, decoded only when an import needs them,
/// so plain data costs no allocation.
#[derive(Debug, Clone)]
enum Text {
    Utf8(usize, usize),
    Latin1(usize, usize),
    Owned(Rc<str>),
}

/// Imports whose results the machine follows further: joblib writes array bytes inline after
/// a `NumpyArrayWrapper` is built, sized by the wrapper's shape and `numpy.dtype`, so those two
/// must be understood to find where the pickle resumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Callable {
    Other,
    NumpyDtype,
    JoblibArray,
}

/// What a numpy dtype built in the pickle holds, as far as it is known.
#[derive(Debug, Clone, Copy, Default)]
struct Dtype {
    itemsize: Option<u64>,
    object: Option<bool>,
}

#[derive(Debug, Clone)]
enum Made {
    Other,
    Dtype(Rc<RefCell<Dtype>>),
    JoblibArray,
}

/// Dictionaries keep their first entries so a joblib wrapper's state can be read; Python
/// dictionaries are shared and mutated in place, hence the shared cell.
const DICT_TRACKED: usize = 32;
const TUPLE_TRACKED: usize = 32;

#[derive(Debug, Clone)]
enum Value {
    Str(Text),
    Int(i64),
    Tuple(Rc<[Value]>),
    Dict(Rc<RefCell<Vec<(Text, Value)>>>),
    /// An imported object: a class, function or module (resolved or not).
    Global(Callable),
    /// What a call (`REDUCE`, `NEWOBJ`, `OBJ`, `INST`) returned.
    Called(Made),
    /// Any other data: numbers, bytes, containers, persistent references.
    Data,
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
    /// Memo entries by index: dense indices in a vector, scattered ones in a map.
    memo: Vec<Option<Value>>,
    sparse_memo: HashMap<u64, Value>,
    memo_len: usize,
    allow: &'a Allowlist,
    out: PickleOutcome,
    reported: HashMap<(FindingKind, String), ()>,
    /// How many pickles deep this one is (joblib object arrays nest pickles).
    depth: usize,
}

/// Pickles nested inside joblib object arrays, at most.
const MAX_NESTED: usize = 16;

enum Step {
    Continue,
    Stop,
}

/// Runs one pickle from the start of `data`.
pub(crate) fn run(data: &[u8], allow: &Allowlist) -> PickleOutcome {
    run_nested(data, allow, 0)
}

fn run_nested(data: &[u8], allow: &Allowlist, depth: usize) -> PickleOutcome {
    let mut machine = Machine {
        depth,
        data,
        pos: 0,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: Vec::new(),
        sparse_memo: HashMap::new(),
        memo_len: 0,
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
    /// Pops everything above the last mark, and the mark, discarding the values.
    fn drop_mark(&mut self) -> Res<()> {
        let mark = self
            .marks
            .pop()
            .map_or_else(|| invalid("could not find MARK"), Ok)?;
        self.stack.truncate(mark);
        Ok(())
    }

    fn pop_mark(&mut self) -> Res<Vec<Value>> {
        let mark = self
            .marks
            .pop()
            .map_or_else(|| invalid("could not find MARK"), Ok)?;
        Ok(self.stack.split_off(mark.min(self.stack.len())))
    }

    fn memo_put(&mut self, index: u64) -> Res<()> {
        let value = self.top()?.clone();
        let dense = usize::try_from(index)
            .ok()
            .filter(|i| *i <= self.memo.len() + 1024);
        let fresh = match dense {
            Some(i) => {
                if i >= self.memo.len() {
                    self.memo.resize(i + 1, None);
                }
                self.memo
                    .get_mut(i)
                    .and_then(|slot| slot.replace(value))
                    .is_none()
            }
            None => self.sparse_memo.insert(index, value).is_none(),
        };
        if fresh {
            self.memo_len += 1;
            if self.memo_len > MAX_MEMO {
                return Err(PickleEnd::Limit(format!(
                    "the memo grew past {MAX_MEMO} entries"
                )));
            }
        }
        Ok(())
    }

    fn memo_get(&mut self, index: u64) -> Res<()> {
        let found = match usize::try_from(index).ok().and_then(|i| self.memo.get(i)) {
            Some(slot) => slot.clone(),
            None => self.sparse_memo.get(&index).cloned(),
        };
        let value = found.map_or_else(
            || invalid(format!("memo value not found at index {index}")),
            Ok,
        )?;
        self.push(value)
    }

    fn string(&self, text: &Text) -> String {
        match text {
            Text::Utf8(start, len) => {
                String::from_utf8_lossy(self.data.get(*start..start + len).unwrap_or_default())
                    .into_owned()
            }
            Text::Latin1(start, len) => self
                .data
                .get(*start..start + len)
                .unwrap_or_default()
                .iter()
                .map(|b| char::from(*b))
                .collect(),
            Text::Owned(s) => s.to_string(),
        }
    }

    /// Takes `n` bytes and pushes them as a string of the given encoding.
    fn push_text(&mut self, n: u64, latin1: bool) -> Res<()> {
        let start = self.pos;
        let len = self.take(n)?.len();
        self.push(Value::Str(if latin1 {
            Text::Latin1(start, len)
        } else {
            Text::Utf8(start, len)
        }))
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
        let callable = match (resolved.module.as_str(), resolved.name.as_str()) {
            ("numpy", "dtype") => Callable::NumpyDtype,
            ("joblib.numpy_pickle", "NumpyArrayWrapper") => Callable::JoblibArray,
            _ => Callable::Other,
        };
        if !self.out.imports.contains(&resolved) && self.out.imports.len() < MAX_REPORTED {
            self.out.imports.push(resolved);
        }
        Value::Global(callable)
    }

    /// What calling `callee` with `args` makes, as far as the machine follows it.
    fn made(&self, callee: &Value, args: &Value) -> Made {
        match callee {
            Value::Global(Callable::JoblibArray) => Made::JoblibArray,
            Value::Global(Callable::NumpyDtype) => {
                let descr = match args {
                    Value::Tuple(items) => match items.first() {
                        Some(Value::Str(t)) => Some(self.string(t)),
                        _ => None,
                    },
                    _ => None,
                };
                Made::Dtype(Rc::new(RefCell::new(
                    descr.as_deref().map(dtype_of).unwrap_or_default(),
                )))
            }
            _ => Made::Other,
        }
    }

    /// `BUILD` on a joblib array wrapper: the array's bytes follow in the stream (after an
    /// optional alignment pad), or, for object arrays, a whole pickle of their own.
    fn joblib_array(&mut self, at: usize, state: &Value) -> Res<()> {
        let unknown = |what: &str| {
            Err(PickleEnd::Limit(format!(
                "joblib array at offset {at} has {what}; its inline data cannot be skipped, so the rest of the pickle was not examined"
            )))
        };
        let Value::Dict(entries) = state else {
            return unknown("a state that is not a dictionary");
        };
        let entries = entries.borrow().clone();
        let get = |key: &str| {
            entries
                .iter()
                .find(|(k, _)| self.string(k) == key)
                .map(|(_, v)| v.clone())
        };
        let count = match get("shape") {
            Some(Value::Tuple(dims)) => dims.iter().try_fold(1u64, |acc, d| match d {
                Value::Int(n) => u64::try_from(*n).ok().and_then(|n| acc.checked_mul(n)),
                _ => None,
            }),
            Some(Value::Int(n)) => u64::try_from(n).ok(),
            _ => None,
        };
        let Some(count) = count else {
            return unknown("a shape that is not a tuple of sizes");
        };
        let dtype = match get("dtype") {
            Some(Value::Called(Made::Dtype(d))) => *d.borrow(),
            _ => return unknown("no numpy dtype"),
        };
        match dtype.object {
            Some(true) => {
                if self.depth >= MAX_NESTED {
                    return Err(PickleEnd::Limit(format!(
                        "pickles nested more than {MAX_NESTED} deep"
                    )));
                }
                let rest = self.data.get(self.pos..).unwrap_or_default();
                let inner = run_nested(rest, self.allow, self.depth + 1);
                let base = self.pos;
                for f in inner.findings {
                    self.report(base + f.offset, f.kind, f.severity, f.detail);
                }
                for import in inner.imports {
                    if !self.out.imports.contains(&import) && self.out.imports.len() < MAX_REPORTED
                    {
                        self.out.imports.push(import);
                    }
                }
                self.pos = base + inner.consumed;
                if inner.end != PickleEnd::Stop {
                    return Err(inner.end);
                }
            }
            Some(false) => {
                let Some(bytes) = dtype.itemsize.and_then(|size| size.checked_mul(count)) else {
                    return unknown("a dtype of unknown size");
                };
                if get("numpy_array_alignment_bytes").is_some() {
                    let pad = self.byte()?;
                    self.take(u64::from(pad))?;
                }
                self.take(bytes)?;
            }
            None => return unknown("a dtype that may hold objects"),
        }
        Ok(())
    }

    /// Checks what a call opcode is about to call.
    fn call(&mut self, offset: usize, callee: &Value, opcode: &str) -> Res<()> {
        match callee {
            Value::Global(_) => Ok(()),
            Value::Called(_) => {
                self.report(
                    offset,
                    FindingKind::DynamicCall,
                    Severity::High,
                    format!("{opcode} calls an object that another call returned"),
                );
                Ok(())
            }
            Value::Str(_) | Value::Int(_) | Value::Tuple(_) | Value::Dict(_) | Value::Data => {
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
                self.drop_mark()?;
            }
            b'2' => {
                let top = self.top()?.clone();
                self.push(top)?;
            }
            // Numbers and constants: text, fixed width, or length-prefixed.
            b'I' | b'L' => {
                let line = self.line()?;
                let text = std::str::from_utf8(line)
                    .unwrap_or_default()
                    .trim_end_matches('L');
                let value = text.parse::<i64>().map_or(Value::Data, Value::Int);
                self.push(value)?;
            }
            b'F' => {
                self.line()?;
                self.push(Value::Data)?;
            }
            b'J' => {
                let n = self.le(4)?;
                self.push(Value::Int(i64::from(n as u32 as i32)))?;
            }
            b'K' => {
                let n = self.le(1)?;
                self.push(Value::Int(n as i64))?;
            }
            b'M' => {
                let n = self.le(2)?;
                self.push(Value::Int(n as i64))?;
            }
            b'G' => {
                self.take(8)?;
                self.push(Value::Data)?;
            }
            0x8a => {
                let n = self.le(1)?;
                let bytes = self.take(n)?;
                let value = long1(bytes).map_or(Value::Data, Value::Int);
                self.push(value)?;
            }
            0x8b => {
                let n = self.le(4)?;
                if n > i32::MAX as u64 {
                    return invalid("LONG pickle has negative byte count");
                }
                self.take(n)?;
                self.push(Value::Data)?;
            }
            b')' => self.push(Value::Tuple(Rc::from(Vec::new())))?,
            b'}' => self.push(Value::Dict(Rc::new(RefCell::new(Vec::new()))))?,
            b'N' | 0x88 | 0x89 | b']' | 0x8f => self.push(Value::Data)?,
            // Strings become str on load: these can name a STACK_GLOBAL import.
            b'S' => {
                let line = self.line()?.to_vec();
                let value = python_quoted(&line)
                    .map_or_else(|| invalid("the STRING opcode argument must be quoted"), Ok)?;
                self.push(Value::Str(Text::Owned(Rc::from(value.as_str()))))?;
            }
            b'T' => {
                let n = self.le(4)?;
                if n > i32::MAX as u64 {
                    return invalid("BINSTRING pickle has negative byte count");
                }
                self.push_text(n, true)?;
            }
            b'U' => {
                let n = self.le(1)?;
                self.push_text(n, true)?;
            }
            b'V' => {
                let start = self.pos;
                let line = self.line()?;
                let value = if line.contains(&b'\\') {
                    let decoded = raw_unicode_escape(line)
                        .map_or_else(|| invalid("truncated \\uXXXX escape in UNICODE"), Ok)?;
                    Text::Owned(Rc::from(decoded.as_str()))
                } else {
                    Text::Latin1(start, line.len())
                };
                self.push(Value::Str(value))?;
            }
            b'X' => {
                let n = self.le(4)?;
                self.push_text(n, false)?;
            }
            0x8c => {
                let n = self.le(1)?;
                self.push_text(n, false)?;
            }
            0x8d => {
                let n = self.le(8)?;
                self.push_text(n, false)?;
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
            0x85..=0x87 => {
                let n = usize::from(op - 0x84);
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.pop()?);
                }
                items.reverse();
                self.push(Value::Tuple(Rc::from(items)))?;
            }
            b't' => {
                let items = self.pop_mark()?;
                let value = if items.len() <= TUPLE_TRACKED {
                    Value::Tuple(Rc::from(items))
                } else {
                    Value::Data
                };
                self.push(value)?;
            }
            b'l' | b'd' | 0x91 => {
                self.drop_mark()?;
                self.push(Value::Data)?;
            }
            b'a' => {
                self.pop()?;
                self.top()?;
            }
            b's' => {
                let value = self.pop()?;
                let key = self.pop()?;
                if let (Value::Dict(entries), Value::Str(key)) = (self.top()?, key) {
                    let mut entries = entries.borrow_mut();
                    if entries.len() < DICT_TRACKED {
                        entries.push((key, value));
                    }
                }
            }
            b'u' => {
                let mark = self.marks.last().copied();
                let items = self.pop_mark()?;
                if mark == Some(0) || self.stack.is_empty() {
                    return invalid("unpickling stack underflow");
                }
                if let Value::Dict(entries) = self.top()? {
                    let mut entries = entries.borrow_mut();
                    for pair in items.chunks_exact(2) {
                        if entries.len() >= DICT_TRACKED {
                            break;
                        }
                        if let [Value::Str(key), value] = pair {
                            entries.push((key.clone(), value.clone()));
                        }
                    }
                }
            }
            b'e' | 0x90 => {
                let mark = self.marks.last().copied();
                self.drop_mark()?;
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
                let index = self.memo_len as u64;
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
                        let (m, n) = (self.string(m), self.string(n));
                        self.import(at, &m, &n)
                    }
                    (
                        Value::Str(_) | Value::Called(_) | Value::Global(_),
                        Value::Str(_) | Value::Called(_) | Value::Global(_),
                    ) => {
                        self.report(
                            at,
                            FindingKind::DynamicImport,
                            Severity::Critical,
                            "STACK_GLOBAL imports a name computed at load time".into(),
                        );
                        Value::Global(Callable::Other)
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
                self.push(Value::Global(Callable::Other))?;
            }
            // Calls.
            b'R' => {
                let args = self.pop()?;
                let callee = self.pop()?;
                self.call(at, &callee, "REDUCE")?;
                let made = self.made(&callee, &args);
                self.push(Value::Called(made))?;
            }
            0x81 => {
                let args = self.pop()?;
                let class = self.pop()?;
                self.call(at, &class, "NEWOBJ")?;
                let made = self.made(&class, &args);
                self.push(Value::Called(made))?;
            }
            0x92 => {
                self.pop()?;
                self.pop()?;
                let class = self.pop()?;
                self.call(at, &class, "NEWOBJ_EX")?;
                self.push(Value::Called(Made::Other))?;
            }
            b'o' => {
                let items = self.pop_mark()?;
                let class = items
                    .first()
                    .cloned()
                    .map_or_else(|| invalid("unpickling stack underflow"), Ok)?;
                self.call(at, &class, "OBJ")?;
                self.push(Value::Called(Made::Other))?;
            }
            b'i' => {
                let module = utf8_name(self.line()?)?;
                let name = utf8_name(self.line()?)?;
                self.import(at, &module, &name);
                self.drop_mark()?;
                self.push(Value::Called(Made::Other))?;
            }
            b'b' => {
                let state = self.pop()?;
                match self.top()?.clone() {
                    Value::Global(_) => self.report(
                        at,
                        FindingKind::AttributeOverwrite,
                        Severity::Critical,
                        "BUILD sets attributes on an imported class or module".into(),
                    ),
                    Value::Called(Made::JoblibArray) => {
                        self.joblib_array(at, &state)?;
                        self.pop()?;
                        self.push(Value::Data)?;
                    }
                    Value::Called(Made::Dtype(dtype)) => {
                        // numpy's dtype state: (version, byteorder, subarray, names, fields,
                        // elsize, alignment, flags); flag 1 is "holds objects".
                        if let Value::Tuple(items) = &state {
                            let mut d = dtype.borrow_mut();
                            if let Some(Value::Int(size)) =
                                items.get(5).filter(|_| items.len() >= 8)
                                && *size > 0
                            {
                                d.itemsize = u64::try_from(*size).ok();
                            }
                            d.object = match items.get(7) {
                                Some(Value::Int(flags)) => Some(flags & 1 == 1),
                                _ => None,
                            };
                        }
                    }
                    _ => {}
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

/// A `LONG1` integer (little-endian two's complement), when it fits in 64 bits.
fn long1(bytes: &[u8]) -> Option<i64> {
    if bytes.len() > 8 {
        return None;
    }
    let negative = bytes.last().is_some_and(|b| b & 0x80 != 0);
    let mut buf = [if negative { 0xff } else { 0 }; 8];
    buf.get_mut(..bytes.len())?.copy_from_slice(bytes);
    Some(i64::from_le_bytes(buf))
}

/// Item size and whether it holds objects, from a dtype string as `numpy.dtype` pickles it
/// (`f4`, `<i8`, `U3`, `O8`, `V16`, `M8`). Flexible types without a size get theirs from the
/// `BUILD` that follows.
fn dtype_of(descr: &str) -> Dtype {
    let d = descr.trim_start_matches(['<', '>', '|', '=']);
    let split = d.find(|c: char| c.is_ascii_digit()).unwrap_or(d.len());
    let (kind, digits) = d.split_at(split);
    let n = digits.parse::<u64>().ok();
    let (itemsize, object) = match kind {
        "O" => (Some(8), Some(true)),
        "b" | "i" | "u" | "f" | "c" | "S" | "a" | "V" => (n, Some(false)),
        "U" => (n.and_then(|n| n.checked_mul(4)), Some(false)),
        "M" | "m" => (Some(8), Some(false)),
        "?" => (Some(1), Some(false)),
        _ => (None, None),
    };
    Dtype { itemsize, object }
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
