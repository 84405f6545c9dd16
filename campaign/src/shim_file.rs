//! Where the `delayshim` command keeps the shim it carries: written once
//! per content hash into a private per-user cache directory, so the command
//! is the only file an install needs.

use std::fs::{self, DirBuilder, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// The shim's file name, beside an installed command or in the cache.
pub const SHIM_NAME: &str = "libdelayshim.so";

/// `$XDG_CACHE_HOME/delayshim`, else `~/.cache/delayshim`.
pub fn cache_dir() -> Result<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| {
            std::env::var_os("HOME")
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
                .map(|home| home.join(".cache"))
        })
        .context("neither XDG_CACHE_HOME nor HOME is set to an absolute path: no cache directory for the shim")?;
    Ok(base.join("delayshim"))
}

/// 64-bit FNV-1a: a content key for cache file names, not a defence (the
/// directory's permissions are).
pub fn content_key(bytes: &[u8]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// The shim's path: `beside` if that file holds exactly `bytes` (an
/// installed copy next to the command), else the copy in `cache`, written
/// there first if it is missing.
pub fn locate(bytes: &[u8], beside: Option<&Path>, cache: &Path) -> Result<PathBuf> {
    if let Some(path) = beside {
        if fs::read(path).is_ok_and(|found| found == bytes) {
            return Ok(path.to_owned());
        }
    }
    install(bytes, cache)
}

/// Writes `bytes` as `DIR/libdelayshim-KEY.so`, unless a copy is there
/// already. The directory is created private (0700) and must be a real
/// directory owned by this user; the file is written under a unique name
/// and renamed into place, so processes doing this at once never see a
/// partial file.
pub fn install(bytes: &[u8], dir: &Path) -> Result<PathBuf> {
    private_dir(dir)?;
    let path = dir.join(format!("libdelayshim-{}.so", content_key(bytes)));
    match fs::symlink_metadata(&path) {
        Ok(meta) if meta.is_file() && meta.len() == bytes.len() as u64 && owned(&meta) => {
            return Ok(path)
        }
        // A wrong file, a link or a short one is replaced by the rename below.
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("checking {}", path.display())),
    }
    let temporary = dir.join(format!(
        ".libdelayshim-{}.{}.{:?}",
        content_key(bytes),
        std::process::id(),
        std::thread::current().id()
    ));
    let written = (|| -> std::io::Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o755)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temporary, &path)
    })();
    if let Err(error) = written {
        let _ = fs::remove_file(&temporary);
        return Err(error).with_context(|| format!("writing the shim to {}", path.display()));
    }
    Ok(path)
}

/// Creates `dir` (and missing parents) and checks it: a directory, not a
/// symbolic link, owned by this user, with no access for anyone else.
fn private_dir(dir: &Path) -> Result<()> {
    if let Some(parent) = dir.parent() {
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    match DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e).with_context(|| format!("creating {}", dir.display())),
    }
    let meta = fs::symlink_metadata(dir).with_context(|| format!("checking {}", dir.display()))?;
    if !meta.is_dir() {
        bail!(
            "{} is not a directory (a symbolic link?): refusing to keep the shim there",
            dir.display()
        );
    }
    if !owned(&meta) {
        bail!(
            "{} belongs to another user: refusing to load a shim from it",
            dir.display()
        );
    }
    if meta.permissions().mode() & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .with_context(|| format!("making {} private", dir.display()))?;
    }
    Ok(())
}

fn owned(meta: &fs::Metadata) -> bool {
    // SAFETY: geteuid cannot fail.
    meta.uid() == unsafe { libc::geteuid() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("shim-file-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn many_installers_at_once_leave_one_whole_private_copy() {
        let root = scratch("race");
        let dir = root.join("cache/delayshim");
        let bytes: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let paths: Vec<PathBuf> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|_| scope.spawn(|| install(&bytes, &dir).unwrap()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(paths.windows(2).all(|w| w[0] == w[1]));
        assert_eq!(fs::read(&paths[0]).unwrap(), bytes);
        let mode = fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "no temporary file is left: {names:?}");
        // A copy beside the command is used only when it is the same shim.
        let beside = root.join(SHIM_NAME);
        fs::write(&beside, b"another build").unwrap();
        assert_eq!(locate(&bytes, Some(&beside), &dir).unwrap(), paths[0]);
        fs::write(&beside, &bytes).unwrap();
        assert_eq!(locate(&bytes, Some(&beside), &dir).unwrap(), beside);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_symlinked_cache_directory_is_refused() {
        let root = scratch("link");
        let elsewhere = root.join("elsewhere");
        fs::create_dir_all(&elsewhere).unwrap();
        let link = root.join("delayshim");
        std::os::unix::fs::symlink(&elsewhere, &link).unwrap();
        let error = install(b"x", &link).unwrap_err().to_string();
        assert!(error.contains("not a directory"), "{error}");
        assert_eq!(fs::read_dir(&elsewhere).unwrap().count(), 0);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn keys_follow_content() {
        assert_eq!(content_key(b""), "cbf29ce484222325");
        assert_ne!(content_key(b"a"), content_key(b"b"));
    }
}
