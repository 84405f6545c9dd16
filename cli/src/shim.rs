//! The shim this command carries, and the file it is loaded from.

use std::path::PathBuf;

use anyhow::{Context, Result};
use delayshim_campaign::shim_file::{cache_dir, locate, SHIM_NAME};

/// libdelayshim.so, built by build.rs from this workspace's shim/.
static SHIM: &[u8] = include_bytes!(env!("DELAYSHIM_EMBEDDED_SHIM"));

/// The shim's file: an identical copy installed beside this command, or
/// the one in the per-user cache, written there on first use.
pub fn path() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("finding delayshim's own path")?;
    let beside = exe.with_file_name(SHIM_NAME);
    let error = match cache_dir().and_then(|cache| locate(SHIM, Some(&beside), &cache)) {
        Ok(path) => return Ok(path),
        Err(error) => error,
    };
    // An unwritable or unset HOME (a service account, a read-only
    // container) need not stop the command: a private directory of this
    // user's in the temporary directory does as well.
    // SAFETY: geteuid cannot fail.
    let fallback = std::env::temp_dir().join(format!("delayshim-{}", unsafe { libc::geteuid() }));
    match locate(SHIM, Some(&beside), &fallback) {
        Ok(path) => {
            eprintln!(
                "delayshim: warning: no cache directory for the shim ({error:#}); using {}",
                fallback.display()
            );
            Ok(path)
        }
        Err(second) => Err(error.context(format!("and in {}: {second:#}", fallback.display()))),
    }
}
