//! `delayshim check PROGRAM`: whether the shim can work beneath a program
//! and what it will touch. `run` and `fuzz` make the same check first.

use std::ffi::OsStr;
use std::fmt::Write as _;

use delayshim_campaign::backend::{choose, Backend, Choice};
use delayshim_campaign::inspect::{Inspection, Linking};
use delayshim_campaign::{inspect, resolve, FuncSelection};

/// Tells whether the shim can work beneath a program, and what it will touch.
///
/// Static or dynamic, set-user-ID or file capabilities, a Go program or one
/// that makes raw system calls, and which interposed functions the program
/// and the libraries it loads import, by family, marking those the current
/// settings (--funcs, else DELAYSHIM_FUNCS) would delay. Libraries opened
/// later with dlopen (Python's extension modules) are not seen. Then the
/// backend `--backend auto` picks (seccomp for static, Go and programs the
/// shim would see nothing of) and why.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A program name (looked up in PATH) or path; a #! script is followed
    /// to its interpreter.
    program: String,
    /// DELAYSHIM_FUNCS to check against (default: the environment's, else
    /// the shim's default families).
    #[arg(long, value_name = "LIST")]
    funcs: Option<String>,
}

/// Why a program cannot be fuzzed.
#[derive(Debug)]
pub enum Unfit {
    /// Not found in PATH, or no such file.
    NotFound(String),
    /// Not a program: not executable, not ELF, another processor.
    NotAProgram(String),
    /// The loader would not preload the shim into it.
    Refused(String),
}

/// Resolves and inspects `program` for `run` and `fuzz` and chooses the
/// backend, printing any warning (or auto's choice of seccomp) to
/// standard error with `prefix`.
pub fn check_before_running(
    program: &OsStr,
    funcs: Option<&str>,
    prefix: &str,
    choice: Choice,
) -> Result<(Inspection, Backend), Unfit> {
    let name = program.to_string_lossy();
    let path = resolve(&name).map_err(Unfit::NotFound)?;
    if !path.exists() {
        return Err(Unfit::NotFound(format!("{name}: no such file")));
    }
    let found = inspect(&path).map_err(Unfit::NotAProgram)?;
    let selection = selection(funcs);
    let (backend, why) = choose(choice, &found, &selection).map_err(|r| Unfit::Refused(r.0))?;
    match backend {
        Backend::Preload => {
            for warning in found.warnings(&selection) {
                eprintln!("{prefix}: {warning}");
            }
        }
        Backend::Seccomp if choice == Choice::Auto => {
            eprintln!("{prefix}: backend seccomp: {why}");
        }
        Backend::Seccomp => {}
    }
    Ok((found, backend))
}

/// The functions `funcs` selects, else the environment's DELAYSHIM_FUNCS.
pub fn selection(funcs: Option<&str>) -> FuncSelection {
    let inherited = std::env::var("DELAYSHIM_FUNCS").ok();
    FuncSelection::new(funcs.or(inherited.as_deref()))
}

pub fn main(args: Args) -> u8 {
    let path = match resolve(&args.program) {
        Ok(path) if path.exists() => path,
        Ok(path) => {
            eprintln!("delayshim check: {}: no such file", path.display());
            return 2;
        }
        Err(error) => {
            eprintln!("delayshim check: {error}");
            return 2;
        }
    };
    let found = match inspect(&path) {
        Ok(found) => found,
        Err(error) => {
            eprintln!("delayshim check: {error}");
            return 2;
        }
    };
    let selection = selection(args.funcs.as_deref());
    let (text, works) = describe(&found, &selection);
    delayshim_campaign::output::print(&text);
    if works {
        0
    } else {
        1
    }
}

/// The report, and whether the shim works beneath the program and would
/// delay some of its calls.
pub fn describe(found: &Inspection, selection: &FuncSelection) -> (String, bool) {
    let mut text = String::new();
    let _ = writeln!(text, "program: {}", found.program.display());
    if found.executable != found.program {
        let _ = writeln!(
            text,
            "runs as: {} (its #! interpreter)",
            found.executable.display()
        );
    }
    match &found.linking {
        Linking::Dynamic { interpreter } => {
            let _ = writeln!(text, "linking: dynamic (loader {})", interpreter.display());
        }
        Linking::Static => text.push_str("linking: static\n"),
    }
    let _ = writeln!(
        text,
        "secure mode: {}",
        match found.secure_mode {
            Some(why) => format!("yes: {} {why}", file_name(&found.executable)),
            None => "no".to_owned(),
        }
    );
    let _ = writeln!(
        text,
        "go: {}",
        if found.go {
            "yes (Go build information found)"
        } else {
            "no"
        }
    );
    let raw: Vec<String> = found
        .raw_syscall_users()
        .iter()
        .map(|p| file_name(p))
        .collect();
    let _ = writeln!(
        text,
        "raw system calls: {}",
        if raw.is_empty() {
            "none imported (no syscall())".to_owned()
        } else {
            format!(
                "syscall() imported by {}; calls made that way bypass the shim",
                raw.join(", ")
            )
        }
    );
    let libraries: Vec<String> = found
        .objects
        .iter()
        .skip(1)
        .map(|o| file_name(&o.path))
        .collect();
    let _ = writeln!(
        text,
        "libraries: {} loaded at start{}{}",
        libraries.len(),
        if libraries.is_empty() {
            String::new()
        } else {
            format!(" ({})", libraries.join(", "))
        },
        if found.missing_libraries.is_empty() {
            String::new()
        } else {
            format!("; not found: {}", found.missing_libraries.join(", "))
        }
    );
    let families = found.imports_by_family();
    let _ = writeln!(
        text,
        "imports by family ({}; * = delayed by --funcs {}):",
        if families.is_empty() {
            "none"
        } else {
            "function: importing files"
        },
        selection.spec
    );
    for family in delayshim_settings::FAMILIES {
        let Some(functions) = families.get(family.name) else {
            continue;
        };
        let delayed = functions.keys().any(|f| selection.selects(f));
        let list: Vec<String> = functions
            .iter()
            .map(|(function, files)| {
                let mark = if selection.selects(function) { "*" } else { "" };
                format!("{mark}{function}: {}", files.join(", "))
            })
            .collect();
        let _ = writeln!(
            text,
            "  {} {:<9} {}",
            if delayed { "*" } else { " " },
            family.name,
            list.join("; ")
        );
    }
    let delayable = found.delayable(selection);
    let chosen = choose(Choice::Auto, found, selection);
    let _ = writeln!(
        text,
        "backend (auto): {}",
        match &chosen {
            Ok((backend, why)) => format!("{}: {why}", backend.name()),
            Err(_) => "none".to_owned(),
        }
    );
    let (verdict, works) = if let (Ok((Backend::Seccomp, _)), false) =
        (&chosen, found.secure_mode.is_some())
    {
        (
            format!(
                "works under the seccomp backend: its system calls of the selected families are held and delayed{}",
                match found.refusal() {
                    Some(refusal) => format!(" (the preload shim is refused: {refusal})"),
                    None if delayable.is_empty() => format!(
                        " (the preload shim would delay nothing: {})",
                        found.warnings(selection).join("; ").trim_start_matches("warning: ")
                    ),
                    None => String::new(),
                }
            ),
            true,
        )
    } else if let Some(refusal) = found.refusal() {
        (format!("refused: {refusal}"), false)
    } else if delayable.is_empty() {
        let why = found.warnings(selection).join("; ");
        (
            format!("nothing to delay: {}", why.trim_start_matches("warning: ")),
            false,
        )
    } else if found.go {
        (
            format!(
                "works, with a warning: {} imported functions would be delayed, but a Go program makes most of its system calls directly",
                delayable.len()
            ),
            true,
        )
    } else {
        (
            format!(
                "works: {} imported functions would be delayed ({})",
                delayable.len(),
                delayable.into_iter().collect::<Vec<_>>().join(", ")
            ),
            true,
        )
    };
    let _ = writeln!(text, "verdict: {verdict}");
    (text, works)
}

fn file_name(path: &std::path::Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}
