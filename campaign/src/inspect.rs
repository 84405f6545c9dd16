//! What the shim can do beneath a program, read from its ELF file and the
//! shared libraries it loads: static or dynamic, secure mode (set-user-ID,
//! set-group-ID, file capabilities), Go or raw system calls, and which of
//! the interposed functions each object imports.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use delayshim_settings::{family_of, FAMILIES};
use object::elf::{FileHeader64, DT_NEEDED, DT_RPATH, DT_RUNPATH, SHT_DYNSYM};
use object::read::elf::{Dyn as _, FileHeader as _, ProgramHeader as _, Sym as _};
use object::Endianness;

/// Go's build-information marker: Go programs make their system calls
/// directly, not through libc.
const GO_BUILDINFO: &[u8] = b"\xff Go buildinf:";

#[cfg(target_arch = "x86_64")]
const HOST_MACHINE: (u16, &str, &str) = (object::elf::EM_X86_64, "x86-64", "x86_64-linux-gnu");
#[cfg(target_arch = "aarch64")]
const HOST_MACHINE: (u16, &str, &str) = (object::elf::EM_AARCH64, "aarch64", "aarch64-linux-gnu");

/// Whether the dynamic loader runs for the program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Linking {
    /// Dynamically linked, with this loader.
    Dynamic { interpreter: PathBuf },
    /// No loader runs: `LD_PRELOAD` has no effect.
    Static,
}

/// The interposed functions one ELF object imports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectImports {
    /// The file, or for a library its resolved path.
    pub path: PathBuf,
    /// Interposed functions it imports, sorted.
    pub functions: BTreeSet<String>,
    /// It imports `syscall`: some of its system calls bypass libc's wrappers.
    pub raw_syscalls: bool,
}

/// Everything `delayshim check` reports about one program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspection {
    /// The program as given (a script, for a `#!` file).
    pub program: PathBuf,
    /// The ELF file the loader runs: the program, or a script's interpreter.
    pub executable: PathBuf,
    pub linking: Linking,
    /// Why the loader would run the executable in secure mode and ignore
    /// `LD_PRELOAD`: "is set-user-ID", "is set-group-ID" or "has file
    /// capabilities".
    pub secure_mode: Option<&'static str>,
    /// It carries Go's build-information marker.
    pub go: bool,
    /// The executable, then each shared library it loads, breadth first.
    pub objects: Vec<ObjectImports>,
    /// `DT_NEEDED` names that were not found on the library path.
    pub missing_libraries: Vec<String>,
}

/// A program the shim cannot enter, with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal(pub String);

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Finds `program` as `execvp` would: a name with a slash is a path,
/// anything else is looked up in `PATH`.
pub fn resolve(program: &str) -> Result<PathBuf, String> {
    if program.contains('/') {
        return Ok(PathBuf::from(program));
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable_file(candidate))
        .ok_or_else(|| format!("{program}: not found in PATH"))
}

fn is_executable_file(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Inspects `program` (resolved already), following a `#!` script to its
/// interpreter. An error is a file that is no program at all.
pub fn inspect(program: &Path) -> Result<Inspection, String> {
    inspect_depth(program, program, 0)
}

fn inspect_depth(given: &Path, program: &Path, depth: u32) -> Result<Inspection, String> {
    let shown = program.display();
    let metadata = fs::metadata(program).map_err(|e| format!("{shown}: {e}"))?;
    if !metadata.is_file() {
        return Err(format!("{shown}: not a regular file"));
    }
    let mode = metadata.permissions().mode();
    if mode & 0o111 == 0 {
        return Err(format!("{shown}: not executable"));
    }
    let secure_mode = if mode & 0o4000 != 0 {
        Some("is set-user-ID")
    } else if mode & 0o2000 != 0 {
        Some("is set-group-ID")
    } else if has_file_capabilities(program) {
        Some("has file capabilities")
    } else {
        None
    };
    let bytes = fs::read(program).map_err(|e| format!("{shown}: {e}"))?;
    if let Some(line) = bytes.strip_prefix(b"#!") {
        if depth > 0 {
            return Err(format!(
                "{shown}: a script's interpreter is itself a script"
            ));
        }
        let interpreter = script_interpreter(line)
            .ok_or_else(|| format!("{shown}: cannot read the interpreter from its #! line"))?;
        let mut found = inspect_depth(given, &interpreter, depth + 1)
            .map_err(|e| format!("{shown} is a script run by {}: {e}", interpreter.display()))?;
        // The kernel ignores set-user-ID bits on scripts, but the
        // interpreter's own still count.
        found.program = given.to_owned();
        return Ok(found);
    }
    let elf = read_elf(program, &bytes)?;
    let linking = match elf.interpreter {
        Some(interpreter) => Linking::Dynamic { interpreter },
        None => Linking::Static,
    };
    let mut objects = vec![ObjectImports {
        path: program.to_owned(),
        functions: elf.functions,
        raw_syscalls: elf.raw_syscalls,
    }];
    let mut missing_libraries = Vec::new();
    if matches!(linking, Linking::Dynamic { .. }) {
        load_libraries(
            program,
            elf.needed,
            elf.search,
            &mut objects,
            &mut missing_libraries,
        );
    }
    Ok(Inspection {
        program: given.to_owned(),
        executable: program.to_owned(),
        linking,
        secure_mode,
        go: contains(&bytes, GO_BUILDINFO),
        objects,
        missing_libraries,
    })
}

impl Inspection {
    /// Why the loader will not preload the shim, if it will not.
    pub fn refusal(&self) -> Option<Refusal> {
        if let Some(why) = self.secure_mode {
            return Some(Refusal(format!(
                "{} {why}: the loader runs it in secure mode and ignores LD_PRELOAD, so nothing would be fuzzed",
                self.executable.display()
            )));
        }
        (self.linking == Linking::Static).then(|| {
            Refusal(format!(
                "{} is statically linked: no dynamic loader runs, so LD_PRELOAD cannot load the shim into it",
                self.executable.display()
            ))
        })
    }

    /// Interposed functions imported anywhere, by family name, each with
    /// the file names of the objects that import it.
    pub fn imports_by_family(&self) -> BTreeMap<&'static str, BTreeMap<String, Vec<String>>> {
        let mut families: BTreeMap<&'static str, BTreeMap<String, Vec<String>>> = BTreeMap::new();
        for object in &self.objects {
            let name = object.path.file_name().map_or_else(
                || object.path.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            );
            for function in &object.functions {
                let family = family_of(function).map_or("?", |f| f.name);
                families
                    .entry(family)
                    .or_default()
                    .entry(function.clone())
                    .or_default()
                    .push(name.clone());
            }
        }
        families
    }

    /// Imported interposed functions that `selection` would delay.
    pub fn delayable(&self, selection: &FuncSelection) -> BTreeSet<String> {
        self.objects
            .iter()
            .flat_map(|o| &o.functions)
            .filter(|f| selection.selects(f))
            .cloned()
            .collect()
    }

    /// Objects that import `syscall`.
    pub fn raw_syscall_users(&self) -> Vec<&Path> {
        self.objects
            .iter()
            .filter(|o| o.raw_syscalls)
            .map(|o| o.path.as_path())
            .collect()
    }

    /// Warnings to show before running the program under `selection`: it
    /// will likely bypass the shim, or import nothing it would delay.
    pub fn warnings(&self, selection: &FuncSelection) -> Vec<String> {
        let shown = self.program.display();
        let mut warnings = Vec::new();
        if self.go {
            warnings.push(format!(
                "warning: {shown} is a Go program: Go makes its system calls directly, not through libc, \
                 so the shim sees only the calls its C code makes (cgo, SQLite); expect NO INJECTION runs"
            ));
        }
        if self.refusal().is_none() && !self.go && self.delayable(selection).is_empty() {
            let imported = self.objects.iter().any(|o| !o.functions.is_empty());
            warnings.push(if imported {
                format!(
                    "warning: {shown} and its libraries import none of the functions that --funcs {} selects: \
                     the shim will delay nothing, NO INJECTION in a campaign (libraries opened with dlopen are not seen here)",
                    selection.spec
                )
            } else {
                format!(
                    "warning: {shown} and its libraries import no function the shim interposes: \
                     the shim will delay nothing, NO INJECTION in a campaign (libraries opened with dlopen are not seen here)"
                )
            });
        }
        warnings
    }
}

/// Which functions a `DELAYSHIM_FUNCS` value selects, as the shim reads it:
/// family names, function names, or `all`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FuncSelection {
    /// The value as written (the default families when unset).
    pub spec: String,
    all: bool,
    functions: BTreeSet<&'static str>,
}

impl FuncSelection {
    /// `value` is `DELAYSHIM_FUNCS`, or `None` for the shim's default.
    pub fn new(value: Option<&str>) -> FuncSelection {
        let spec = value.map_or_else(
            || {
                FAMILIES
                    .iter()
                    .filter(|f| f.default_on)
                    .map(|f| f.name)
                    .collect::<Vec<_>>()
                    .join(",")
            },
            str::to_owned,
        );
        let mut selection = FuncSelection {
            all: false,
            functions: BTreeSet::new(),
            spec: spec.clone(),
        };
        for word in spec.split(',').map(str::trim) {
            if word == "all" {
                selection.all = true;
            } else if let Some(family) = FAMILIES.iter().find(|f| f.name == word) {
                selection.functions.extend(family.functions);
            } else if let Some(family) = family_of(word) {
                let name = family.functions.iter().find(|f| **f == word);
                selection.functions.extend(name);
            }
        }
        selection
    }

    pub fn selects(&self, function: &str) -> bool {
        self.all || self.functions.contains(function)
    }
}

/// What one ELF file says about itself.
struct ElfFacts {
    interpreter: Option<PathBuf>,
    needed: Vec<String>,
    /// `DT_RUNPATH`/`DT_RPATH` directories, `$ORIGIN` expanded.
    search: Vec<PathBuf>,
    functions: BTreeSet<String>,
    raw_syscalls: bool,
}

fn read_elf(path: &Path, bytes: &[u8]) -> Result<ElfFacts, String> {
    let shown = path.display();
    if !bytes.starts_with(b"\x7fELF") {
        return Err(format!(
            "{shown}: neither an ELF executable nor a #! script"
        ));
    }
    let header = FileHeader64::<Endianness>::parse(bytes).map_err(|_| {
        format!(
            "{shown} is not a 64-bit program; the shim is built for {}",
            HOST_MACHINE.1
        )
    })?;
    let bad = |e: object::Error| format!("{shown}: unreadable ELF file: {e}");
    let endian = header.endian().map_err(bad)?;
    let machine = header.e_machine(endian);
    if machine != HOST_MACHINE.0 || !header.is_little_endian() {
        return Err(format!(
            "{shown} is built for another processor (ELF machine {machine}); the shim is built for {}",
            HOST_MACHINE.1
        ));
    }
    let mut interpreter = None;
    for segment in header.program_headers(endian, bytes).map_err(bad)? {
        if let Some(path) = segment.interpreter(endian, bytes).map_err(bad)? {
            interpreter = Some(PathBuf::from(std::ffi::OsStr::from_bytes(path)));
        }
    }
    let sections = header.sections(endian, bytes).map_err(bad)?;
    let mut needed = Vec::new();
    let mut search = Vec::new();
    if let Some((entries, strings_index)) = sections.dynamic(endian, bytes).map_err(bad)? {
        let strings = sections
            .strings(endian, bytes, strings_index)
            .map_err(bad)?;
        let origin = path.parent().unwrap_or(Path::new("/"));
        for entry in entries {
            let text = || {
                entry
                    .string(endian, strings)
                    .map(|s| String::from_utf8_lossy(s).into_owned())
            };
            match entry.tag32(endian) {
                Some(DT_NEEDED) => needed.extend(text()),
                Some(DT_RUNPATH | DT_RPATH) => {
                    for dir in text()
                        .unwrap_or_default()
                        .split(':')
                        .filter(|d| !d.is_empty())
                    {
                        let dir = dir
                            .replace("${ORIGIN}", &origin.to_string_lossy())
                            .replace("$ORIGIN", &origin.to_string_lossy());
                        search.push(PathBuf::from(dir));
                    }
                }
                _ => {}
            }
        }
    }
    let symbols = sections.symbols(endian, bytes, SHT_DYNSYM).map_err(bad)?;
    let mut functions = BTreeSet::new();
    let mut raw_syscalls = false;
    for symbol in symbols.iter().filter(|s| s.is_undefined(endian)) {
        let Ok(name) = symbol.name(endian, symbols.strings()) else {
            continue;
        };
        let name = String::from_utf8_lossy(name);
        if name == "syscall" {
            raw_syscalls = true;
        }
        if family_of(&name).is_some() {
            functions.insert(name.into_owned());
        }
    }
    Ok(ElfFacts {
        interpreter,
        needed,
        search,
        functions,
        raw_syscalls,
    })
}

/// Follows `DT_NEEDED` breadth first, as the loader does, adding each
/// library found once.
fn load_libraries(
    program: &Path,
    needed: Vec<String>,
    search: Vec<PathBuf>,
    objects: &mut Vec<ObjectImports>,
    missing: &mut Vec<String>,
) {
    let system = system_library_dirs();
    let mut queue: std::collections::VecDeque<(String, Vec<PathBuf>)> =
        needed.into_iter().map(|n| (n, search.clone())).collect();
    let mut seen = BTreeSet::new();
    while let Some((name, search)) = queue.pop_front() {
        if !seen.insert(name.clone()) {
            continue;
        }
        let candidates: Vec<PathBuf> = if name.contains('/') {
            vec![PathBuf::from(&name)]
        } else {
            search
                .iter()
                .chain(&system)
                .map(|dir| dir.join(&name))
                .collect()
        };
        let found = candidates.into_iter().find_map(|path| {
            let bytes = fs::read(&path).ok()?;
            let facts = read_elf(&path, &bytes).ok()?;
            Some((path, facts))
        });
        let Some((path, facts)) = found else {
            missing.push(name);
            continue;
        };
        if path == program {
            continue;
        }
        queue.extend(facts.needed.into_iter().map(|n| (n, facts.search.clone())));
        objects.push(ObjectImports {
            path,
            functions: facts.functions,
            raw_syscalls: facts.raw_syscalls,
        });
    }
}

/// `LD_LIBRARY_PATH`, the directories of /etc/ld.so.conf.d, and the
/// loader's built-in ones.
fn system_library_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("LD_LIBRARY_PATH")
        .map(|v| std::env::split_paths(&v).collect())
        .unwrap_or_default();
    let mut conf_files = vec![PathBuf::from("/etc/ld.so.conf")];
    if let Ok(entries) = fs::read_dir("/etc/ld.so.conf.d") {
        let mut more: Vec<PathBuf> = entries.filter_map(|e| Some(e.ok()?.path())).collect();
        more.sort();
        conf_files.extend(more);
    }
    for file in conf_files {
        let text = fs::read_to_string(file).unwrap_or_default();
        dirs.extend(
            text.lines()
                .map(|l| l.split('#').next().unwrap_or("").trim())
                .filter(|l| l.starts_with('/'))
                .map(PathBuf::from),
        );
    }
    let triple = HOST_MACHINE.2;
    for dir in ["/lib/", "/usr/lib/"] {
        dirs.push(PathBuf::from(format!("{dir}{triple}")));
    }
    dirs.extend(["/lib64", "/usr/lib64", "/lib", "/usr/lib"].map(PathBuf::from));
    dirs
}

/// The program a `#!` line runs: its interpreter, or for `#!/usr/bin/env
/// NAME`, NAME looked up in `PATH`.
fn script_interpreter(line: &[u8]) -> Option<PathBuf> {
    let line = line.split(|&b| b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut words = line.split_whitespace();
    let interpreter = words.next()?;
    if Path::new(interpreter).file_name()? == "env" {
        let name = words.find(|word| !word.starts_with('-'))?;
        return resolve(name).ok();
    }
    Some(PathBuf::from(interpreter))
}

fn has_file_capabilities(program: &Path) -> bool {
    let Ok(path) = CString::new(program.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: NUL-terminated strings; a null buffer of size 0 asks for the size.
    let size = unsafe {
        libc::getxattr(
            path.as_ptr(),
            c"security.capability".as_ptr(),
            std::ptr::null_mut(),
            0,
        )
    };
    size > 0
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("inspect-{name}-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_dynamic_program_imports_through_its_libraries() {
        let sh = resolve("sh").unwrap();
        let found = inspect(&sh).unwrap();
        assert!(matches!(found.linking, Linking::Dynamic { .. }));
        assert_eq!(found.refusal(), None);
        assert!(!found.go);
        let libc = found.objects.iter().find(|o| {
            o.path
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("libc.so")
        });
        assert!(
            libc.is_some(),
            "libc is among the loaded libraries: {found:?}"
        );
        // The shell writes its output with write().
        assert!(found.imports_by_family().contains_key("write"), "{found:?}");
    }

    #[test]
    fn env_scripts_follow_their_interpreter() {
        let dir = scratch("script");
        let script = dir.join("script");
        fs::write(&script, "#!/usr/bin/env -S sh -e\necho hi\n").unwrap();
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
        let found = inspect(&script).unwrap();
        assert_eq!(found.executable, resolve("sh").unwrap());
        assert_eq!(found.program, script);
        fs::write(&script, "#!\n").unwrap();
        assert!(inspect(&script).unwrap_err().contains("#! line"));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn other_files_are_refused_with_the_reason() {
        let dir = scratch("refuse");
        let text = dir.join("text");
        fs::write(
            &text,
            "plain text, long enough to read as a header if it were one....",
        )
        .unwrap();
        fs::set_permissions(&text, fs::Permissions::from_mode(0o755)).unwrap();
        assert!(inspect(&text).unwrap_err().contains("neither an ELF"));
        fs::set_permissions(&text, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(inspect(&text).unwrap_err().contains("not executable"));
        assert!(resolve("no-such-program-here")
            .unwrap_err()
            .contains("not found in PATH"));
        let setuid = dir.join("setuid");
        fs::copy(resolve("true").unwrap(), &setuid).unwrap();
        fs::set_permissions(&setuid, fs::Permissions::from_mode(0o4755)).unwrap();
        let refusal = inspect(&setuid).unwrap().refusal().unwrap();
        assert!(refusal.0.contains("set-user-ID"), "{refusal}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn selections_read_families_functions_and_all() {
        let default = FuncSelection::new(None);
        assert!(default.selects("pwrite64") && default.selects("fcntl64"));
        assert!(!default.selects("pread64"), "pread is off by default");
        let some = FuncSelection::new(Some("pread,fsync"));
        assert!(some.selects("__pread64_chk") && some.selects("fsync"));
        assert!(some.selects("fdatasync"), "the fsync family");
        assert!(!some.selects("write"));
        let one = FuncSelection::new(Some("fdatasync"));
        assert!(one.selects("fdatasync") && !one.selects("fsync"));
        assert!(FuncSelection::new(Some("all")).selects("pread"));
    }

    #[test]
    fn go_marker_is_found_anywhere() {
        assert!(contains(b"abc\xff Go buildinf:xyz", GO_BUILDINFO));
        assert!(!contains(b"Go buildinf", GO_BUILDINFO));
    }
}
