//! Which imports a pickle may make.
//!
//! Denylist scanners keep being bypassed: every release of torch, numpy or the standard library
//! adds another callable that runs code, and attackers find them first. So a pickle import is
//! safe only when it is on an allowlist of (module, name) pairs known to rebuild data and nothing
//! else; anything off the list is a finding. The denylist below exists only to rank findings
//! (a known code-execution primitive is critical, an unknown import high), never to clear one.
//!
//! Names are resolved the way Python resolves them before matching: Python 2 module and name
//! aliases (`__builtin__`, `copy_reg`, `commands.getoutput` …) are mapped to their Python 3
//! targets first, since the unpickler does the same for old protocols.

use std::collections::HashSet;

use ztai_core::Severity;

/// A module and a name as the unpickler would import them, after Python 2 aliases are mapped.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImportName {
    pub module: String,
    pub name: String,
}

impl ImportName {
    /// Resolves `module`/`name` as written in a pickle to the names Python 3 imports.
    pub fn resolve(module: &str, name: &str) -> Self {
        if let Some((m, n)) = NAME_ALIASES
            .iter()
            .find(|(m, n, _, _)| *m == module && *n == name)
            .map(|(_, _, m, n)| (*m, *n))
        {
            return Self {
                module: m.to_string(),
                name: n.to_string(),
            };
        }
        let module = MODULE_ALIASES
            .iter()
            .find(|(old, _)| *old == module)
            .map_or(module, |(_, new)| *new);
        Self {
            module: module.to_string(),
            name: name.to_string(),
        }
    }

    /// `module.name`, the way users write it in allowlists and read it in findings.
    pub fn dotted(&self) -> String {
        format!("{}.{}", self.module, self.name)
    }
}

/// The imports a pickle may make without a finding.
#[derive(Debug, Clone)]
pub struct Allowlist {
    exact: HashSet<(String, String)>,
    /// Modules every name of which is allowed (`numpy.dtypes.*`).
    whole_modules: HashSet<String>,
}

/// Why an allowlist entry was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllowlistError {
    #[error(
        "allowlist entry `{0}` is not `module.name` or `module.*`; write the import as Python names it, e.g. `collections.OrderedDict`"
    )]
    Malformed(String),
    #[error(
        "allowlist entry `{0}` allows a known code-execution primitive; ztai refuses to allowlist it"
    )]
    Dangerous(String),
}

impl Default for Allowlist {
    fn default() -> Self {
        let mut list = Self {
            exact: HashSet::new(),
            whole_modules: HashSet::new(),
        };
        for (module, names) in DEFAULT_ALLOWED {
            for name in *names {
                list.exact
                    .insert(((*module).to_string(), (*name).to_string()));
            }
        }
        for module in DEFAULT_ALLOWED_MODULES {
            list.whole_modules.insert((*module).to_string());
        }
        list
    }
}

impl Allowlist {
    /// An allowlist that allows nothing: every import is a finding.
    pub fn empty() -> Self {
        Self {
            exact: HashSet::new(),
            whole_modules: HashSet::new(),
        }
    }

    /// Adds `module.name` or `module.*`. The last dot separates module from name, so a nested
    /// name (`module.Class.method`) cannot be allowed this way: Python resolves those through
    /// attribute access, which is exactly how allowlists get bypassed.
    pub fn allow(&mut self, entry: &str) -> Result<(), AllowlistError> {
        let entry = entry.trim();
        let (module, name) = entry
            .rsplit_once('.')
            .ok_or_else(|| AllowlistError::Malformed(entry.to_string()))?;
        let valid_part = |s: &str| {
            !s.is_empty()
                && s.split('.')
                    .all(|p| !p.is_empty() && p.chars().all(|c| c.is_alphanumeric() || c == '_'))
        };
        if !valid_part(module) || !(name == "*" || valid_part(name)) {
            return Err(AllowlistError::Malformed(entry.to_string()));
        }
        let resolved = ImportName::resolve(module, name);
        if name == "*" {
            if dangerous_module(&resolved.module) {
                return Err(AllowlistError::Dangerous(entry.to_string()));
            }
            self.whole_modules.insert(resolved.module);
        } else {
            if is_dangerous(&resolved) {
                return Err(AllowlistError::Dangerous(entry.to_string()));
            }
            self.exact.insert((resolved.module, resolved.name));
        }
        Ok(())
    }

    /// Adds every entry of an allowlist file: one `module.name` per line, `#` comments.
    pub fn extend_from_text(&mut self, text: &str) -> Result<usize, AllowlistError> {
        let mut added = 0;
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or_default().trim();
            if line.is_empty() {
                continue;
            }
            self.allow(line)?;
            added += 1;
        }
        Ok(added)
    }

    pub fn allows(&self, import: &ImportName) -> bool {
        self.exact
            .contains(&(import.module.clone(), import.name.clone()))
            || (self.whole_modules.contains(&import.module) && !import.name.contains('.'))
    }
}

/// How bad an import off the allowlist is: critical for known code-execution primitives,
/// high for anything else (unknown is not safe).
pub fn severity_of(import: &ImportName) -> Severity {
    if is_dangerous(import) {
        Severity::Critical
    } else {
        Severity::High
    }
}

fn is_dangerous(import: &ImportName) -> bool {
    if dangerous_module(&import.module) {
        return true;
    }
    let first = import.name.split('.').next().unwrap_or_default();
    DANGEROUS_NAMES
        .iter()
        .any(|(module, names)| *module == import.module && names.contains(&first))
}

fn dangerous_module(module: &str) -> bool {
    let top = module.split('.').next().unwrap_or_default();
    DANGEROUS_MODULES.contains(&top) || DANGEROUS_MODULES.contains(&module)
}

/// Python 2 module names the unpickler maps to Python 3 ones (from `_compat_pickle`).
const MODULE_ALIASES: &[(&str, &str)] = &[
    ("__builtin__", "builtins"),
    ("copy_reg", "copyreg"),
    ("Queue", "queue"),
    ("SocketServer", "socketserver"),
    ("ConfigParser", "configparser"),
    ("repr", "reprlib"),
    ("tkFileDialog", "tkinter.filedialog"),
    ("Tkinter", "tkinter"),
    ("markupbase", "_markupbase"),
    ("_winreg", "winreg"),
    ("thread", "_thread"),
    ("dummy_thread", "_dummy_thread"),
    ("dbhash", "dbm.bsd"),
    ("dumbdbm", "dbm.dumb"),
    ("dbm", "dbm.ndbm"),
    ("gdbm", "dbm.gnu"),
    ("xmlrpclib", "xmlrpc.client"),
    ("SimpleXMLRPCServer", "xmlrpc.server"),
    ("httplib", "http.client"),
    ("htmlentitydefs", "html.entities"),
    ("HTMLParser", "html.parser"),
    ("Cookie", "http.cookies"),
    ("cookielib", "http.cookiejar"),
    ("BaseHTTPServer", "http.server"),
    ("SimpleHTTPServer", "http.server"),
    ("CGIHTTPServer", "http.server"),
    ("test.test_support", "test.support"),
    ("commands", "subprocess"),
    ("urlparse", "urllib.parse"),
    ("robotparser", "urllib.robotparser"),
    ("urllib2", "urllib.request"),
    ("anydbm", "dbm"),
    ("cPickle", "pickle"),
    ("_elementtree", "xml.etree.ElementTree"),
    ("cStringIO", "io"),
    ("StringIO", "io"),
    ("UserDict", "collections"),
    ("UserList", "collections"),
    ("UserString", "collections"),
    ("whichdb", "dbm"),
    ("exceptions", "builtins"),
    ("multiprocessing.forking", "multiprocessing.popen_fork"),
];

/// Python 2 (module, name) pairs the unpickler maps to a different Python 3 pair.
const NAME_ALIASES: &[(&str, &str, &str, &str)] = &[
    ("__builtin__", "xrange", "builtins", "range"),
    ("__builtin__", "reduce", "functools", "reduce"),
    ("__builtin__", "intern", "sys", "intern"),
    ("__builtin__", "unichr", "builtins", "chr"),
    ("__builtin__", "unicode", "builtins", "str"),
    ("__builtin__", "long", "builtins", "int"),
    ("__builtin__", "basestring", "builtins", "str"),
    ("__builtin__", "raw_input", "builtins", "input"),
    ("itertools", "izip", "builtins", "zip"),
    ("itertools", "imap", "builtins", "map"),
    ("itertools", "ifilter", "builtins", "filter"),
    ("UserDict", "UserDict", "collections", "UserDict"),
    ("UserList", "UserList", "collections", "UserList"),
    ("UserString", "UserString", "collections", "UserString"),
    ("whichdb", "whichdb", "dbm", "whichdb"),
    ("_socket", "fromfd", "socket", "fromfd"),
    ("urllib", "urlopen", "urllib.request", "urlopen"),
    ("urllib", "urlretrieve", "urllib.request", "urlretrieve"),
    ("urllib", "quote", "urllib.parse", "quote"),
    ("urllib", "unquote", "urllib.parse", "unquote"),
    ("urllib", "urlencode", "urllib.parse", "urlencode"),
];

/// Imports that rebuild plain data: containers, numbers, dates, and the tensor and array
/// constructors that `torch.save`, `numpy.save` and `joblib.dump` emit.
const DEFAULT_ALLOWED: &[(&str, &[&str])] = &[
    (
        "builtins",
        &[
            "set",
            "frozenset",
            "bytearray",
            "bytes",
            "slice",
            "complex",
            "range",
            "dict",
            "list",
            "tuple",
            "int",
            "float",
            "str",
            "bool",
            "object",
        ],
    ),
    (
        "collections",
        &["OrderedDict", "defaultdict", "Counter", "deque"],
    ),
    ("copyreg", &["_reconstructor", "__newobj__"]),
    ("_codecs", &["encode"]),
    (
        "datetime",
        &["datetime", "date", "time", "timedelta", "timezone"],
    ),
    ("decimal", &["Decimal"]),
    ("fractions", &["Fraction"]),
    ("uuid", &["UUID"]),
    ("numpy", &["ndarray", "dtype"]),
    ("numpy.core.multiarray", &["_reconstruct", "scalar"]),
    ("numpy._core.multiarray", &["_reconstruct", "scalar"]),
    (
        "numpy.random._pickle",
        &[
            "__randomstate_ctor",
            "__generator_ctor",
            "__bit_generator_ctor",
        ],
    ),
    (
        "torch._utils",
        &[
            "_rebuild_tensor",
            "_rebuild_tensor_v2",
            "_rebuild_tensor_v3",
            "_rebuild_parameter",
            "_rebuild_parameter_with_state",
            "_rebuild_qtensor",
            "_rebuild_sparse_tensor",
            "_rebuild_nested_tensor",
            "_rebuild_device_tensor_from_numpy",
            "_rebuild_meta_tensor_no_storage",
            "_rebuild_wrapper_subclass",
        ],
    ),
    ("torch._tensor", &["_rebuild_from_type_v2"]),
    (
        "torch.storage",
        &["UntypedStorage", "TypedStorage", "_TypedStorage"],
    ),
    ("torch.nn.parameter", &["Parameter"]),
    (
        "torch",
        &[
            "DoubleStorage",
            "FloatStorage",
            "HalfStorage",
            "LongStorage",
            "IntStorage",
            "ShortStorage",
            "CharStorage",
            "ByteStorage",
            "BoolStorage",
            "BFloat16Storage",
            "ComplexDoubleStorage",
            "ComplexFloatStorage",
            "QUInt8Storage",
            "QInt8Storage",
            "QInt32Storage",
            "QUInt4x2Storage",
            "QUInt2x4Storage",
            "Size",
            "device",
            "float16",
            "float32",
            "float64",
            "bfloat16",
            "half",
            "float",
            "double",
            "complex64",
            "complex128",
            "int8",
            "int16",
            "int32",
            "int64",
            "uint8",
            "uint16",
            "uint32",
            "uint64",
            "bool",
            "float8_e4m3fn",
            "float8_e5m2",
            "strided",
            "sparse_coo",
            "sparse_csr",
            "contiguous_format",
            "channels_last",
            "per_tensor_affine",
            "per_channel_affine",
            "per_channel_affine_float_qparams",
        ],
    ),
    ("joblib.numpy_pickle", &["NumpyArrayWrapper"]),
];

/// Modules all of whose names only describe data.
const DEFAULT_ALLOWED_MODULES: &[&str] = &["numpy.dtypes"];

/// Modules whose imports run code, touch the system or load further pickles.
const DANGEROUS_MODULES: &[&str] = &[
    "os",
    "posix",
    "nt",
    "posixpath",
    "ntpath",
    "subprocess",
    "_posixsubprocess",
    "sys",
    "socket",
    "_socket",
    "ssl",
    "shutil",
    "pty",
    "runpy",
    "importlib",
    "imp",
    "zipimport",
    "pickle",
    "_pickle",
    "pickletools",
    "shelve",
    "dill",
    "cloudpickle",
    "marshal",
    "code",
    "codeop",
    "bdb",
    "pdb",
    "webbrowser",
    "asyncio",
    "multiprocessing",
    "threading",
    "_thread",
    "signal",
    "ctypes",
    "_ctypes",
    "cffi",
    "types",
    "operator",
    "functools",
    "itertools",
    "inspect",
    "pip",
    "venv",
    "ensurepip",
    "setuptools",
    "distutils",
    "pkg_resources",
    "urllib",
    "requests",
    "http",
    "ftplib",
    "smtplib",
    "telnetlib",
    "xmlrpc",
    "platform",
    "popen2",
    "timeit",
    "cProfile",
    "profile",
    "trace",
    "doctest",
    "pydoc",
    "idlelib",
    "lib2to3",
    "tempfile",
    "glob",
    "io",
    "_io",
    "fileinput",
    "site",
    "sysconfig",
    "torch.hub",
    "torch._inductor",
    "torch._dynamo",
    "torch.distributed",
    "torch.utils.data.datapipes",
    "aiohttp",
    "httpx",
    "urllib3",
    "paramiko",
    "torch.jit",
    "torch.serialization",
    "torch.package",
    "torch.utils.cpp_extension",
    "numpy.testing",
    "numpy.f2py",
    "numpy.distutils",
    "numpy.ctypeslib",
    "joblib",
    "keras",
    "tensorflow",
];

/// Names in otherwise unremarkable modules that run code or read files.
const DANGEROUS_NAMES: &[(&str, &[&str])] = &[
    (
        "builtins",
        &[
            "eval",
            "exec",
            "execfile",
            "compile",
            "open",
            "file",
            "getattr",
            "setattr",
            "delattr",
            "hasattr",
            "__import__",
            "globals",
            "locals",
            "vars",
            "breakpoint",
            "input",
            "help",
            "exit",
            "quit",
            "reload",
            "apply",
            "type",
            "super",
            "classmethod",
            "staticmethod",
            "property",
            "memoryview",
            "print",
            "map",
            "filter",
        ],
    ),
    (
        "torch",
        &[
            "load", "hub", "jit", "_C", "ops", "classes", "_dynamo", "compile",
        ],
    ),
    (
        "numpy",
        &[
            "load",
            "loadtxt",
            "genfromtxt",
            "fromfile",
            "memmap",
            "save",
            "savetxt",
        ],
    ),
    ("collections", &["namedtuple"]),
    ("copyreg", &["add_extension", "pickle", "constructor"]),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python2_aliases_resolve_to_what_python3_imports() {
        assert_eq!(
            ImportName::resolve("__builtin__", "eval").dotted(),
            "builtins.eval"
        );
        assert_eq!(
            ImportName::resolve("commands", "getoutput").dotted(),
            "subprocess.getoutput"
        );
        assert_eq!(
            ImportName::resolve("__builtin__", "reduce").dotted(),
            "functools.reduce"
        );
        assert_eq!(
            ImportName::resolve("copy_reg", "_reconstructor").dotted(),
            "copyreg._reconstructor"
        );
    }

    #[test]
    fn default_list_allows_data_and_refuses_code() {
        let list = Allowlist::default();
        assert!(list.allows(&ImportName::resolve("collections", "OrderedDict")));
        assert!(list.allows(&ImportName::resolve("torch._utils", "_rebuild_tensor_v2")));
        assert!(list.allows(&ImportName::resolve("__builtin__", "set")));
        assert!(list.allows(&ImportName::resolve("numpy.dtypes", "Float32DType")));
        assert!(!list.allows(&ImportName::resolve("numpy.dtypes", "x.__class__")));
        assert!(!list.allows(&ImportName::resolve("builtins", "eval")));
        assert!(!list.allows(&ImportName::resolve("collections", "OrderedDict.fromkeys")));
        assert!(!list.allows(&ImportName::resolve("torch", "_utils")));
        assert!(!list.allows(&ImportName::resolve(
            "sklearn.linear_model",
            "LogisticRegression"
        )));
    }

    #[test]
    fn severity_ranks_known_primitives_above_unknown_imports() {
        assert_eq!(
            severity_of(&ImportName::resolve("os", "system")),
            Severity::Critical
        );
        assert_eq!(
            severity_of(&ImportName::resolve("posix", "system")),
            Severity::Critical
        );
        assert_eq!(
            severity_of(&ImportName::resolve("__builtin__", "getattr")),
            Severity::Critical
        );
        assert_eq!(
            severity_of(&ImportName::resolve("torch.serialization", "load")),
            Severity::Critical
        );
        assert_eq!(
            severity_of(&ImportName::resolve("commands", "getoutput")),
            Severity::Critical
        );
        assert_eq!(
            severity_of(&ImportName::resolve("mypkg.model", "Net")),
            Severity::High
        );
    }

    #[test]
    fn user_entries_extend_the_list_but_never_with_code_execution() {
        let mut list = Allowlist::default();
        assert!(
            list.allow("sklearn.linear_model._logistic.LogisticRegression")
                .is_ok()
        );
        assert!(list.allows(&ImportName::resolve(
            "sklearn.linear_model._logistic",
            "LogisticRegression"
        )));
        assert!(matches!(
            list.allow("os.system"),
            Err(AllowlistError::Dangerous(_))
        ));
        assert!(matches!(
            list.allow("builtins.eval"),
            Err(AllowlistError::Dangerous(_))
        ));
        assert!(matches!(
            list.allow("subprocess.*"),
            Err(AllowlistError::Dangerous(_))
        ));
        assert!(matches!(
            list.allow("nodot"),
            Err(AllowlistError::Malformed(_))
        ));
        assert!(matches!(
            list.allow("a..b"),
            Err(AllowlistError::Malformed(_))
        ));
        assert!(matches!(
            list.allow("a.b c"),
            Err(AllowlistError::Malformed(_))
        ));
        let added = list.extend_from_text("# mine\nmypkg.Net\n\nmypkg.layers.*  # all layers\n");
        assert_eq!(added, Ok(2));
        assert!(list.allows(&ImportName::resolve("mypkg.layers", "Dense")));
    }
}
