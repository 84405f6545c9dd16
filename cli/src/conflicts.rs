//! `delayshim run --conflicts`: the program runs as a child with a shared
//! region of its own, and the conflicts found in it are printed when it
//! ends. The exit status is still the program's.

use std::os::unix::process::ExitStatusExt as _;
use std::process::Command;

use anyhow::{Context, Result};
use delayshim_campaign::conflicts::{analyse, render};
use delayshim_campaign::region::Region;
use delayshim_campaign::symbols::Symbolizer;

/// Events a region holds when it serves `pct` only, not a report.
const PCT_ONLY_EVENTS: u64 = 1;

/// Runs `command` with a new region, prints the conflicts report to
/// stderr when `report` names its events' room, and returns the program's
/// exit status (128 + signal when killed by one).
pub fn run_in_region(mut command: Command, report: Option<u64>) -> Result<u8> {
    let region = Region::create(report.unwrap_or(PCT_ONLY_EVENTS))?;
    let (var, path) = region.env();
    // Interrupting the run stops the program, not the report: a handler
    // that does nothing (not SIG_IGN, which the child would inherit; a
    // handler is reset to the default at exec).
    extern "C" fn nothing(_: libc::c_int) {}
    let handler = nothing as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: installs an async-signal-safe handler that does nothing.
    let old = unsafe {
        (
            libc::signal(libc::SIGINT, handler),
            libc::signal(libc::SIGQUIT, handler),
        )
    };
    let status = command.env(var, path).status();
    // SAFETY: restores what was there.
    unsafe {
        libc::signal(libc::SIGINT, old.0);
        libc::signal(libc::SIGQUIT, old.1);
    }
    let status = status.context("cannot run the program")?;
    if report.is_some() {
        let events = region.read()?;
        let mut analysis = analyse(&events);
        analysis.name_sites(&events.events, &mut Symbolizer::new());
        eprint!("{}", render::text(&analysis));
    }
    drop(region);
    Ok(match (status.code(), status.signal()) {
        (Some(code), _) => code as u8,
        (None, Some(signal)) => 128u8.wrapping_add(signal as u8),
        _ => 1,
    })
}
