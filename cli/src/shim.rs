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
    locate(SHIM, Some(&beside), &cache_dir()?)
}
