//! Putting the shim beneath a program: the `LD_PRELOAD` value, and the
//! shim's own check of the settings before anything runs.

use std::ffi::OsString;
use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::inspect::resolve;
use crate::plan::PER_RUN_VARS;

/// `LD_PRELOAD` with the shim first, keeping what the environment already
/// preloads.
pub fn ld_preload(shim: &Path) -> OsString {
    let mut value = shim.as_os_str().to_owned();
    if let Some(existing) = std::env::var_os("LD_PRELOAD").filter(|v| !v.is_empty()) {
        value.push(":");
        value.push(existing);
    }
    value
}

/// Loads the shim with `settings` (and any `DELAYSHIM_*` inherited) into
/// `true`: the shim stops a program whose settings it refuses with one
/// line saying why, returned here.
pub fn preflight(ld_preload: &OsString, settings: &[(String, String)]) -> Result<Option<String>> {
    let true_program = resolve("true").map_err(anyhow::Error::msg)?;
    let mut command = std::process::Command::new(true_program);
    command
        .env("LD_PRELOAD", ld_preload)
        .envs(settings.iter().map(|(k, v)| (k, v)))
        .stdin(std::process::Stdio::null());
    // The files the shim writes are the program's, not the check's: `true`
    // would add its own statistics line to them.
    for name in PER_RUN_VARS.iter().filter(|n| **n != "DELAYSHIM_SEED") {
        command.env_remove(name);
    }
    let out = command.output().context("checking the settings")?;
    if out.status.success() {
        return Ok(None);
    }
    let message = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    if message.is_empty() {
        bail!("the shim's settings check exited with {}", out.status);
    }
    Ok(Some(message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shim_goes_first() {
        let value = ld_preload(Path::new("/x/libdelayshim.so"));
        let text = value.to_string_lossy();
        assert!(text.starts_with("/x/libdelayshim.so"), "{text}");
        match std::env::var("LD_PRELOAD") {
            Ok(existing) if !existing.is_empty() => assert!(text.ends_with(&existing)),
            _ => assert_eq!(text, "/x/libdelayshim.so"),
        }
    }
}
