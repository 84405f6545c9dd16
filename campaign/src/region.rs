//! The per-run shared region's file (layout in
//! [`delayshim_settings::region`]): created for one run, mode 0600 and
//! `O_EXCL`, in `/dev/shm` (or `$TMPDIR` where there is none), named in
//! `DELAYSHIM_REGION` for the run's processes, read after the run and
//! removed. Its name carries the creating process's pid, so the next
//! campaign or run removes the regions of creators that died (SIGKILL
//! included) without touching anyone else's.

use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{FileExt as _, MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result};
use delayshim_settings::region::{events, Event, Layout, EVENT_SIZE, REGION_VAR};

/// Events a run's region holds unless told otherwise: 40 MiB of
/// `/dev/shm` at most, touched only as far as the run writes.
pub const DEFAULT_EVENTS: u64 = 256 * 1024;
/// Most events a region may be asked to hold (1.6 GB).
pub const MAX_EVENTS: u64 = 10_000_000;

const PREFIX: &str = "delayshim-";
const SUFFIX: &str = ".region";

static NEXT: AtomicU64 = AtomicU64::new(0);

/// One run's region; removed when dropped.
#[derive(Debug)]
pub struct Region {
    path: PathBuf,
}

/// The events a run's processes left in its region.
#[derive(Debug, Default)]
pub struct Events {
    pub events: Vec<Event>,
    /// Some event found no room: the analysis saw only part of the run.
    pub full: bool,
    pub capacity: u64,
}

/// Where regions are made: `/dev/shm` when it is a writable directory,
/// else the temporary directory.
pub fn directory() -> PathBuf {
    let shm = Path::new("/dev/shm");
    let writable = |dir: &Path| {
        let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).unwrap_or_default();
        // SAFETY: a NUL-terminated path.
        dir.is_dir() && unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) } == 0
    };
    if writable(shm) {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

impl Region {
    /// Creates a region with room for `capacity` events, after removing
    /// the stale regions of dead creators.
    pub fn create(capacity: u64) -> Result<Region> {
        let dir = directory();
        remove_stale(&dir);
        let layout = Layout::new(capacity.clamp(1, MAX_EVENTS));
        let name = format!(
            "{PREFIX}{}-{}-{:x}{SUFFIX}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            random()
        );
        let path = dir.join(name);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
            .with_context(|| format!("creating the run's region {}", path.display()))?;
        let region = Region { path };
        file.set_len(layout.total)
            .and_then(|()| file.write_all(&layout.initial_bytes()))
            .with_context(|| format!("sizing the run's region {}", region.path.display()))?;
        Ok(region)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The variable that hands the region to the run's processes.
    pub fn env(&self) -> (String, std::ffi::OsString) {
        (REGION_VAR.to_owned(), self.path.clone().into_os_string())
    }

    /// Reads every committed event, in the order their slots were claimed.
    ///
    /// Only the header and the claimed slots are read: a region is sized
    /// for the busiest runs (40 MiB by default), and reading all of it
    /// after every run cost a fast program's campaign more than the run.
    pub fn read(&self) -> Result<Events> {
        let context = || format!("reading the run's region {}", self.path.display());
        let file = File::open(&self.path).with_context(context)?;
        let size = file.metadata().with_context(context)?.len();
        let mut prefix = vec![0u8; size.min(256) as usize];
        file.read_exact_at(&mut prefix, 0).with_context(context)?;
        let layout = Layout::validate(&prefix, size)
            .map_err(|why| anyhow::anyhow!("the run's region is {}", why.reason()))?;
        let mut cursor = [0u8; 8];
        file.read_exact_at(&mut cursor, layout.events + events::CURSOR as u64)
            .with_context(context)?;
        let claimed = u64::from_le_bytes(cursor).min(layout.capacity);
        let mut bytes = vec![0u8; layout.slot(claimed) as usize];
        file.read_exact_at(&mut bytes, 0).with_context(context)?;
        Ok(parse_events(&bytes, &layout))
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Parses a region's bytes into its events.
pub fn read_events(bytes: &[u8]) -> Result<Events> {
    let prefix = &bytes[..bytes.len().min(256)];
    let layout = Layout::validate(prefix, bytes.len() as u64)
        .map_err(|why| anyhow::anyhow!("the run's region is {}", why.reason()))?;
    Ok(parse_events(bytes, &layout))
}

/// The events of a validated region's first bytes: those of the slots
/// claimed that `bytes` holds whole.
fn parse_events(bytes: &[u8], layout: &Layout) -> Events {
    let section = layout.events as usize;
    let word = |at: usize, n: usize| {
        let mut buf = [0u8; 8];
        buf[..n].copy_from_slice(&bytes[section + at..section + at + n]);
        u64::from_le_bytes(buf)
    };
    let claimed = word(events::CURSOR, 8).min(layout.capacity);
    let full = word(events::FULL, 4) != 0;
    let events = (0..claimed)
        .map(|index| layout.slot(index) as usize)
        .take_while(|&at| at + EVENT_SIZE <= bytes.len())
        .filter_map(|at| Event::decode(&bytes[at..at + EVENT_SIZE]))
        .collect();
    Events {
        events,
        full,
        capacity: layout.capacity,
    }
}

/// Removes the regions in `dir` whose creator (the pid in the name) is
/// gone, if the current user owns them.
pub fn remove_stale(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    // SAFETY: getuid cannot fail.
    let uid = unsafe { libc::getuid() };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(PREFIX))
            .filter(|n| n.ends_with(SUFFIX))
            .and_then(|n| n.split('-').next())
            .and_then(|pid| pid.parse::<i32>().ok())
            .filter(|&pid| pid > 0)
        else {
            continue;
        };
        let owned = entry
            .path()
            .symlink_metadata()
            .is_ok_and(|m| m.is_file() && m.uid() == uid);
        if owned && !alive(pid) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only asks whether the process exists.
    unsafe { libc::kill(pid, 0) == 0 || *libc::__errno_location() == libc::EPERM }
}

fn random() -> u64 {
    let mut seed = 0u64;
    // SAFETY: writes at most 8 bytes into `seed`.
    let _ = unsafe { libc::getrandom((&mut seed as *mut u64).cast(), 8, 0) };
    seed ^ u64::from(std::process::id()).rotate_left(32)
}

/// An open handle, for tests that corrupt a region on purpose.
pub fn open_for_writing(path: &Path) -> Result<File> {
    OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_region_is_private_validates_and_goes_away() {
        let region = Region::create(16).unwrap();
        let path = region.path().to_path_buf();
        let meta = fs::metadata(&path).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o600);
        let events = region.read().unwrap();
        assert!(events.events.is_empty() && !events.full);
        assert_eq!(events.capacity, 16);
        drop(region);
        assert!(!path.exists());
    }

    #[test]
    fn stale_regions_of_dead_creators_are_removed_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        // A pid above the kernel's maximum (4194304) belongs to no process.
        let dead = dir.path().join(format!("{PREFIX}99999999-0-1{SUFFIX}"));
        let live = dir
            .path()
            .join(format!("{PREFIX}{}-0-2{SUFFIX}", std::process::id()));
        let other = dir.path().join("delayshim-notapid.region");
        for path in [&dead, &live, &other] {
            fs::write(path, b"x").unwrap();
        }
        remove_stale(dir.path());
        assert!(!dead.exists());
        assert!(live.exists() && other.exists());
    }

    #[test]
    fn garbage_is_refused_with_a_reason() {
        let error = read_events(&[0u8; 300]).unwrap_err().to_string();
        assert!(error.contains("not a delayshim region"), "{error}");
    }

    #[test]
    fn a_region_is_read_as_far_as_its_events_were_claimed() {
        use delayshim_settings::region::{EventKind, COMMITTED};
        use std::os::unix::fs::FileExt as _;
        let region = Region::create(DEFAULT_EVENTS).unwrap();
        let layout = Layout::new(DEFAULT_EVENTS);
        let file = open_for_writing(region.path()).unwrap();
        // Two committed events and one claimed slot left uncommitted (a
        // process killed while writing it), as the shim leaves them.
        for index in 0..2u64 {
            let mut event = Event::new(EventKind::Write);
            event.pid = 10 + index as u32;
            let mut slot = [0u8; EVENT_SIZE];
            let mut body = [0u8; EVENT_SIZE - 4];
            event.encode(&mut body);
            slot[4..].copy_from_slice(&body);
            slot[..4].copy_from_slice(&COMMITTED.to_le_bytes());
            file.write_all_at(&slot, layout.slot(index)).unwrap();
        }
        let cursor = layout.events + events::CURSOR as u64;
        file.write_all_at(&3u64.to_le_bytes(), cursor).unwrap();
        let events = region.read().unwrap();
        let pids: Vec<u32> = events.events.iter().map(|e| e.pid).collect();
        assert_eq!(pids, [10, 11]);
        assert!(!events.full);
        // The same as parsing the whole file.
        let whole = read_events(&fs::read(region.path()).unwrap()).unwrap();
        assert_eq!(whole.events, events.events);
        // A cursor past the capacity (a hostile writer) reads no further
        // than the section.
        file.write_all_at(&u64::MAX.to_le_bytes(), cursor).unwrap();
        assert_eq!(region.read().unwrap().events.len(), 2);
    }
}
