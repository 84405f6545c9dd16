//! Which backend puts delays beneath a program: the preload shim, or the
//! seccomp supervisor ([`crate::seccomp`]), and why. `--backend auto`
//! takes the shim wherever it sees the program's calls (it is cheaper and
//! knows each call's site), and the supervisor where it cannot.

use crate::inspect::{FuncSelection, Inspection, Linking, Refusal};

/// What the user asked for with `--backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    Preload,
    Seccomp,
    Auto,
}

impl std::str::FromStr for Choice {
    type Err = String;

    fn from_str(s: &str) -> Result<Choice, String> {
        match s {
            "preload" => Ok(Choice::Preload),
            "seccomp" => Ok(Choice::Seccomp),
            "auto" => Ok(Choice::Auto),
            _ => Err(format!("expected preload, seccomp or auto; got {s:?}")),
        }
    }
}

/// The backend a run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Preload,
    Seccomp,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Preload => "preload",
            Backend::Seccomp => "seccomp",
        }
    }
}

/// The backend for `found` under `choice`, with the reason in words, or
/// why neither can run it.
pub fn choose(
    choice: Choice,
    found: &Inspection,
    selection: &FuncSelection,
) -> Result<(Backend, String), Refusal> {
    if let Some(why) = found.secure_mode {
        return Err(Refusal(format!(
            "{} {why}: the loader would ignore LD_PRELOAD, and beneath a seccomp filter (no_new_privs) it would run without its privileges",
            found.executable.display()
        )));
    }
    let shown = found.program.display();
    match choice {
        Choice::Preload => match found.refusal() {
            Some(refusal) => Err(refusal),
            None => Ok((Backend::Preload, "asked for with --backend preload".into())),
        },
        Choice::Seccomp => Ok((Backend::Seccomp, "asked for with --backend seccomp".into())),
        Choice::Auto if found.linking == Linking::Static => Ok((
            Backend::Seccomp,
            format!("{shown} is statically linked: no loader runs to preload the shim, so its system calls are held instead"),
        )),
        Choice::Auto if found.go => Ok((
            Backend::Seccomp,
            format!("{shown} is a Go program: Go makes its system calls directly, not through libc"),
        )),
        Choice::Auto if found.delayable(selection).is_empty() => Ok((
            Backend::Seccomp,
            format!(
                "{shown} and its libraries import none of the functions that --funcs {} selects: its writes go through libc's internal calls (stdio) or raw system calls, which only the system-call boundary sees{}",
                selection.spec,
                if found.raw_syscall_users().is_empty() { "" } else { " (it imports syscall())" }
            ),
        )),
        Choice::Auto => Ok((
            Backend::Preload,
            format!("{shown} is dynamically linked and imports functions the shim delays"),
        )),
    }
}
