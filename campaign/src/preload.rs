//! Will the dynamic loader preload the shim into a program? Static and
//! set-user-ID programs ignore `LD_PRELOAD`; a campaign over them would
//! report clean runs that were never fuzzed.

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

const PT_INTERP: u32 = 3;
/// Go's build-information marker: Go programs make their system calls
/// directly, not through libc.
const GO_BUILDINFO: &[u8] = b"\xff Go buildinf:";

#[cfg(target_arch = "x86_64")]
const HOST_MACHINE: (u16, &str) = (62, "x86-64");
#[cfg(target_arch = "aarch64")]
const HOST_MACHINE: (u16, &str) = (183, "aarch64");

/// What the check found about a program that can be fuzzed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preloadable {
    /// The executable file the loader runs (the interpreter, for a script).
    pub executable: PathBuf,
    /// A warning to show before the campaign, if the program is likely to
    /// bypass the shim all the same.
    pub warning: Option<String>,
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

/// Checks that the loader will preload into `program` (resolved already),
/// following a `#!` script to its interpreter.
pub fn check(program: &Path) -> Result<Preloadable, String> {
    check_depth(program, 0)
}

fn check_depth(program: &Path, depth: u32) -> Result<Preloadable, String> {
    let shown = program.display();
    let metadata = fs::metadata(program).map_err(|e| format!("{shown}: {e}"))?;
    if !metadata.is_file() {
        return Err(format!("{shown}: not a regular file"));
    }
    let mode = metadata.permissions().mode();
    if mode & 0o111 == 0 {
        return Err(format!("{shown}: not executable"));
    }
    if mode & 0o4000 != 0 {
        return Err(format!(
            "{shown} is set-user-ID: the loader runs it in secure mode and ignores LD_PRELOAD, so nothing would be fuzzed"
        ));
    }
    if mode & 0o2000 != 0 {
        return Err(format!(
            "{shown} is set-group-ID: the loader runs it in secure mode and ignores LD_PRELOAD, so nothing would be fuzzed"
        ));
    }
    if has_file_capabilities(program) {
        return Err(format!(
            "{shown} has file capabilities: the loader runs it in secure mode and ignores LD_PRELOAD, so nothing would be fuzzed"
        ));
    }
    let bytes = fs::read(program).map_err(|e| format!("{shown}: {e}"))?;
    if let Some(line) = bytes.strip_prefix(b"#!") {
        if depth > 0 {
            return Err(format!(
                "{shown}: a script's interpreter is itself a script"
            ));
        }
        let interpreter = script_interpreter(line)
            .ok_or_else(|| format!("{shown}: cannot read the interpreter from its #! line"))?;
        return check_depth(&interpreter, depth + 1)
            .map_err(|e| format!("{shown} is a script run by {}: {e}", interpreter.display()));
    }
    check_elf(program, &bytes)?;
    let warning = contains(&bytes, GO_BUILDINFO).then(|| {
        format!(
            "warning: {shown} is a Go program: Go makes its system calls directly, not through libc, \
             so the shim sees only the calls its C code makes (cgo, SQLite); expect NO INJECTION runs"
        )
    });
    Ok(Preloadable {
        executable: program.to_owned(),
        warning,
    })
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

fn check_elf(program: &Path, bytes: &[u8]) -> Result<(), String> {
    let shown = program.display();
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" {
        return Err(format!(
            "{shown}: neither an ELF executable nor a #! script"
        ));
    }
    if bytes[4] != 2 || bytes[5] != 1 {
        return Err(format!(
            "{shown} is not a 64-bit little-endian program; the shim is built for {}",
            HOST_MACHINE.1
        ));
    }
    let u16_at = |at: usize| u16::from_le_bytes([bytes[at], bytes[at + 1]]);
    let machine = u16_at(18);
    if machine != HOST_MACHINE.0 {
        return Err(format!(
            "{shown} is built for another processor (ELF machine {machine}); the shim is built for {}",
            HOST_MACHINE.1
        ));
    }
    let phoff = u64::from_le_bytes(bytes[32..40].try_into().expect("8 bytes")) as usize;
    let (phentsize, phnum) = (usize::from(u16_at(54)), usize::from(u16_at(56)));
    let has_interpreter = (0..phnum).any(|i| {
        let at = phoff + i * phentsize;
        bytes
            .get(at..at + 4)
            .is_some_and(|t| u32::from_le_bytes(t.try_into().expect("4 bytes")) == PT_INTERP)
    });
    if !has_interpreter {
        return Err(format!(
            "{shown} is statically linked: no dynamic loader runs, so LD_PRELOAD cannot load the shim into it"
        ));
    }
    Ok(())
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

    #[test]
    fn dynamic_programs_pass() {
        let sh = resolve("sh").unwrap();
        let found = check(&sh).unwrap();
        assert_eq!(found.warning, None);
    }

    #[test]
    fn env_scripts_follow_their_interpreter() {
        let dir = std::env::temp_dir().join(format!("preload-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let script = dir.join("script");
        fs::write(&script, "#!/usr/bin/env -S sh -e\necho hi\n").unwrap();
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(check(&script).unwrap().executable, resolve("sh").unwrap());
        fs::write(&script, "#!\n").unwrap();
        assert!(check(&script).unwrap_err().contains("#! line"));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn other_files_are_refused_with_the_reason() {
        let dir = std::env::temp_dir().join(format!("preload-refuse-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let text = dir.join("text");
        fs::write(
            &text,
            "plain text, long enough to read as a header if it were one....",
        )
        .unwrap();
        fs::set_permissions(&text, fs::Permissions::from_mode(0o755)).unwrap();
        assert!(check(&text).unwrap_err().contains("neither an ELF"));
        fs::set_permissions(&text, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(check(&text).unwrap_err().contains("not executable"));
        assert!(resolve("no-such-program-here")
            .unwrap_err()
            .contains("not found in PATH"));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn go_marker_is_found_anywhere() {
        assert!(contains(b"abc\xff Go buildinf:xyz", GO_BUILDINFO));
        assert!(!contains(b"Go buildinf", GO_BUILDINFO));
    }
}
