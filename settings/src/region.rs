//! The per-run shared region: one file in `/dev/shm` (or `$TMPDIR`) that
//! the campaign or `delayshim run` creates for one run, names in
//! [`REGION_VAR`], and every shimmed process of the run maps at load.
//!
//! This module is its one layout, read by the shim (which appends events)
//! and by the command (which creates the file and reads the events after
//! the run). Everything is little-endian at fixed offsets: a header with a
//! magic, a version word, the total size and a table of sections (offset
//! and size each), then the sections. [`Layout::validate`] checks a header
//! against the length actually mapped before anyone uses an offset from
//! it, so a region of garbage, a truncated one or one of another version
//! is refused rather than trusted.

/// The variable that names the region's file. The shim reads it and never
/// rewrites it, so exec'd descendants map the same region.
pub const REGION_VAR: &str = "DELAYSHIM_REGION";

/// The first eight bytes of every region.
pub const MAGIC: [u8; 8] = *b"DSREGION";
/// Bumped whenever anything below changes meaning.
pub const VERSION: u32 = 1;
/// Bytes of the header: magic, version, header size, total size, sections.
pub const HEADER_SIZE: usize = 64;
/// Every section starts on this boundary (atomics need their alignment).
pub const ALIGN: u64 = 64;

/// The sections, by their index in the header's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// Access events appended by the shim for conflict analysis.
    Events = 0,
    /// Reserved for per-task scheduling state (the `pct` strategy).
    Tasks = 1,
}

/// Sections in the table.
pub const SECTIONS: usize = 2;
/// Offset of the section table in the header: (offset u64, size u64) each.
const TABLE_AT: usize = 24;

/// The events section starts with this header, then `capacity` slots.
/// Offsets inside the section:
pub mod events {
    /// u64, atomic: the next slot to claim (may exceed the capacity).
    pub const CURSOR: usize = 0;
    /// u32, atomic: set to 1 once a slot was refused for want of room.
    pub const FULL: usize = 8;
    /// u32: bytes per slot, [`super::EVENT_SIZE`].
    pub const SLOT_SIZE: usize = 12;
    /// u64: slots in the section.
    pub const CAPACITY: usize = 16;
    /// Bytes of the section's header; slots follow.
    pub const HEADER: usize = 64;
}

/// Bytes of the tasks section: the `pct` strategy's scheduling state.
pub const TASKS_SIZE: u64 = 64 * 1024;

/// The tasks section: a header, then one slot per task (thread of a
/// process) that reached a scheduling point. Offsets inside the section:
pub mod tasks {
    /// u64, atomic: scheduling points passed by all tasks of the run.
    pub const STEP: usize = 0;
    /// u64, atomic: one past the highest slot ever claimed.
    pub const USED: usize = 8;
    /// Bytes of the section's header; slots follow.
    pub const HEADER: usize = 64;
    /// Bytes per slot.
    pub const SLOT_SIZE: usize = 64;
    /// Offsets inside a slot, each an atomic u64:
    /// the task (pid << 32 | tid, plus one), 0 while the slot is free;
    pub const ID: usize = 0;
    /// its priority (higher runs first);
    pub const PRIORITY: usize = 8;
    /// [`WAITING`] at a scheduling point, or [`RUNNING`] past it;
    pub const STATE: usize = 16;
    /// the monotonic time, in ns, it last reached or left a point.
    pub const SEEN: usize = 24;
    pub const RUNNING: u64 = 0;
    pub const WAITING: u64 = 1;
    /// Slots in a section of `size` bytes.
    pub const fn slots(size: u64) -> usize {
        (size as usize).saturating_sub(HEADER) / SLOT_SIZE
    }
}

/// Bytes of one event slot.
pub const EVENT_SIZE: usize = 160;
/// A slot's first word once all of its other bytes are written.
pub const COMMITTED: u32 = 0x4556_5431;
/// Bytes of an event's name field: the tail of a path or a command line.
pub const NAME_BYTES: usize = 56;
/// Bytes of an event's object field: the file name of the caller's object.
pub const OBJECT_BYTES: usize = 24;

/// Where a validated region keeps its events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub total: u64,
    /// Offset of the events section's header.
    pub events: u64,
    /// Slots in the events section.
    pub capacity: u64,
    /// Offset of the tasks section, and its size.
    pub tasks: u64,
    pub tasks_size: u64,
}

/// Why a region was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    TooShort,
    Magic,
    Version,
    Size,
    Section,
}

impl Invalid {
    pub fn reason(self) -> &'static str {
        match self {
            Invalid::TooShort => "shorter than its header",
            Invalid::Magic => "not a delayshim region",
            Invalid::Version => "of another version",
            Invalid::Size => "of another size than its header says",
            Invalid::Section => "with a section outside it or misaligned",
        }
    }
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("four bytes"))
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("eight bytes"))
}

impl Layout {
    /// The layout of a new region with room for `capacity` events.
    pub fn new(capacity: u64) -> Layout {
        let events = HEADER_SIZE as u64;
        let events_size = events::HEADER as u64 + capacity * EVENT_SIZE as u64;
        let tasks = (events + events_size).div_ceil(ALIGN) * ALIGN;
        Layout {
            total: tasks + TASKS_SIZE,
            events,
            capacity,
            tasks,
            tasks_size: TASKS_SIZE,
        }
    }

    /// The first bytes of a new region: its header and the events
    /// section's header (the rest is zero).
    pub fn initial_bytes(&self) -> Vec<u8> {
        let mut bytes = vec![0u8; HEADER_SIZE + events::HEADER];
        bytes[0..8].copy_from_slice(&MAGIC);
        bytes[8..12].copy_from_slice(&VERSION.to_le_bytes());
        bytes[12..16].copy_from_slice(&(HEADER_SIZE as u32).to_le_bytes());
        bytes[16..24].copy_from_slice(&self.total.to_le_bytes());
        let events_size = events::HEADER as u64 + self.capacity * EVENT_SIZE as u64;
        let tasks = (self.events + events_size).div_ceil(ALIGN) * ALIGN;
        for (index, (offset, size)) in [(self.events, events_size), (tasks, TASKS_SIZE)]
            .into_iter()
            .enumerate()
        {
            let at = TABLE_AT + index * 16;
            bytes[at..at + 8].copy_from_slice(&offset.to_le_bytes());
            bytes[at + 8..at + 16].copy_from_slice(&size.to_le_bytes());
        }
        let section = HEADER_SIZE;
        bytes[section + events::SLOT_SIZE..section + events::SLOT_SIZE + 4]
            .copy_from_slice(&(EVENT_SIZE as u32).to_le_bytes());
        bytes[section + events::CAPACITY..section + events::CAPACITY + 8]
            .copy_from_slice(&self.capacity.to_le_bytes());
        bytes
    }

    /// Checks the first bytes of a region (a copy: a writer may change the
    /// shared ones at any time) against the `mapped` length, and every
    /// offset and size against both. Nothing is read outside `prefix`.
    pub fn validate(prefix: &[u8], mapped: u64) -> Result<Layout, Invalid> {
        if prefix.len() < HEADER_SIZE + events::HEADER || mapped < prefix.len() as u64 {
            return Err(Invalid::TooShort);
        }
        if prefix[0..8] != MAGIC {
            return Err(Invalid::Magic);
        }
        if u32_at(prefix, 8) != VERSION || u32_at(prefix, 12) != HEADER_SIZE as u32 {
            return Err(Invalid::Version);
        }
        let total = u64_at(prefix, 16);
        if total != mapped {
            return Err(Invalid::Size);
        }
        let mut sections = [(0u64, 0u64); SECTIONS];
        for (index, section) in sections.iter_mut().enumerate() {
            let at = TABLE_AT + index * 16;
            let (offset, size) = (u64_at(prefix, at), u64_at(prefix, at + 8));
            let end = offset.checked_add(size).ok_or(Invalid::Section)?;
            if offset < HEADER_SIZE as u64 || offset % ALIGN != 0 || end > total {
                return Err(Invalid::Section);
            }
            *section = (offset, size);
        }
        let (events, events_size) = sections[Section::Events as usize];
        // The events section's header is read from the prefix too.
        if events != HEADER_SIZE as u64 || events_size < events::HEADER as u64 {
            return Err(Invalid::Section);
        }
        let section = &prefix[HEADER_SIZE..];
        if u32_at(section, events::SLOT_SIZE) != EVENT_SIZE as u32 {
            return Err(Invalid::Version);
        }
        let capacity = u64_at(section, events::CAPACITY);
        let slots = (events_size - events::HEADER as u64) / EVENT_SIZE as u64;
        if capacity > slots {
            return Err(Invalid::Section);
        }
        let (tasks, tasks_size) = sections[Section::Tasks as usize];
        if (tasks < events + events_size && events < tasks + tasks_size)
            || tasks_size < tasks::HEADER as u64
        {
            return Err(Invalid::Section);
        }
        Ok(Layout {
            total,
            events,
            capacity,
            tasks,
            tasks_size,
        })
    }

    /// Byte offset of slot `index` in the region.
    pub fn slot(&self, index: u64) -> u64 {
        self.events + events::HEADER as u64 + index * EVENT_SIZE as u64
    }
}

/// What an event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum EventKind {
    /// Bytes `start..start+len` of the inode read.
    Read = 1,
    /// Bytes written (also truncation and allocation).
    Write = 2,
    /// A lock taken: `start..start+len` (len u64::MAX: to the end), `aux`
    /// [`LOCK_SHARED`] or [`LOCK_EXCLUSIVE`] | one of the lock families.
    Acquire = 3,
    /// A lock released (the same fields as Acquire).
    Release = 4,
    /// Every lock this process holds on the inode released (close).
    ReleaseAll = 5,
    /// fsync, fdatasync, sync_file_range.
    Sync = 6,
    /// A name looked up and opened: `aux` the path's hash, `start` its
    /// directory's hash (in every name event and Map), the inode found.
    Open = 7,
    /// A name made with O_EXCL (or link, or mkdir): it did not exist.
    Create = 8,
    /// A name removed (unlink, rmdir, or the old name of a rename).
    Unlink = 9,
    /// A name made to point at an inode (the new name of a rename).
    RenameTo = 10,
    /// The process started (at load): `aux` the parent pid, name its command line.
    Start = 11,
    /// A fork: the parent's event before it, `aux` 0.
    Fork = 12,
    /// The process ends.
    Exit = 13,
    /// A child was reaped: `aux` its pid.
    Wait = 14,
    /// A file mapped shared and writable: ordering through it is not visible.
    Map = 15,
    /// Written at load, after Start: a piece of a text about the process
    /// that a Start's name cannot hold. `aux` says which text
    /// ([`DETAIL_EXECUTABLE`], [`DETAIL_ARGV`], [`DETAIL_OBJECT`]), `site`
    /// numbers the texts of one process (pieces of one text share it),
    /// `start` is the piece's offset in its text and `len` the text's
    /// length; `name` holds the piece ([`NAME_BYTES`] at most).
    Detail = 16,
}

impl EventKind {
    pub fn from_u16(value: u16) -> Option<EventKind> {
        use EventKind::*;
        Some(match value {
            1 => Read,
            2 => Write,
            3 => Acquire,
            4 => Release,
            5 => ReleaseAll,
            6 => Sync,
            7 => Open,
            8 => Create,
            9 => Unlink,
            10 => RenameTo,
            11 => Start,
            12 => Fork,
            13 => Exit,
            14 => Wait,
            15 => Map,
            16 => Detail,
            _ => return None,
        })
    }
}

/// `aux` bits of lock events.
pub const LOCK_SHARED: u64 = 1;
pub const LOCK_EXCLUSIVE: u64 = 2;
/// Process-associated fcntl record locks (and lockf).
pub const LOCK_POSIX: u64 = 0x10;
/// Open-file-description fcntl locks.
pub const LOCK_OFD: u64 = 0x20;
/// flock locks: whole file, per open file description.
pub const LOCK_FLOCK: u64 = 0x40;

/// `aux` of a Detail event: the executable's path (/proc/self/exe).
pub const DETAIL_EXECUTABLE: u64 = 1;
/// `aux` of a Detail event: the command line, arguments NUL-separated.
pub const DETAIL_ARGV: u64 = 2;
/// `aux` of a Detail event: the path of an object mapped executable at
/// load, so that call sites (which carry only the tail of the object's
/// file name) can be symbolized after the process is gone.
pub const DETAIL_OBJECT: u64 = 3;
/// Most bytes of one detail text the shim writes (longer ones are cut).
pub const DETAIL_MAX_TEXT: usize = 1024;
/// Most object paths the shim writes per process.
pub const DETAIL_MAX_OBJECTS: usize = 128;

/// `flags` bit: the shim delayed this call.
pub const FLAG_DELAYED: u16 = 1;
/// `flags` bit: the descriptor was opened with O_APPEND.
pub const FLAG_APPEND: u16 = 2;

/// One event, as the shim writes it and the command reads it. The slot's
/// first four bytes are the commit word, written last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    pub flags: u16,
    pub pid: u32,
    pub tid: u32,
    /// The interposed function's index in the shim's table.
    pub func: u16,
    /// Monotonic clock, nanoseconds.
    pub time: u64,
    pub dev: u64,
    pub ino: u64,
    pub start: u64,
    pub len: u64,
    pub aux: u64,
    /// The caller's offset in its object.
    pub site: u64,
    /// The tail of the caller's object's file name, NUL-padded.
    pub object: [u8; OBJECT_BYTES],
    /// The tail of a path (or of a command line), NUL-padded.
    pub name: [u8; NAME_BYTES],
}

impl Event {
    pub fn new(kind: EventKind) -> Event {
        Event {
            kind,
            flags: 0,
            pid: 0,
            tid: 0,
            func: u16::MAX,
            time: 0,
            dev: 0,
            ino: 0,
            start: 0,
            len: 0,
            aux: 0,
            site: 0,
            object: [0; OBJECT_BYTES],
            name: [0; NAME_BYTES],
        }
    }

    /// The slot's bytes after the commit word (bytes 4..EVENT_SIZE).
    pub fn encode(&self, out: &mut [u8; EVENT_SIZE - 4]) {
        // Offsets below are of the whole slot; `out` starts at 4.
        let mut put =
            |at: usize, bytes: &[u8]| out[at - 4..at - 4 + bytes.len()].copy_from_slice(bytes);
        put(4, &(self.kind as u16).to_le_bytes());
        put(6, &self.flags.to_le_bytes());
        put(8, &self.pid.to_le_bytes());
        put(12, &self.tid.to_le_bytes());
        put(16, &self.time.to_le_bytes());
        put(24, &self.dev.to_le_bytes());
        put(32, &self.ino.to_le_bytes());
        put(40, &self.start.to_le_bytes());
        put(48, &self.len.to_le_bytes());
        put(56, &self.aux.to_le_bytes());
        put(64, &self.site.to_le_bytes());
        put(72, &self.func.to_le_bytes());
        put(74, &[0; 6]);
        put(80, &self.object);
        put(80 + OBJECT_BYTES, &self.name);
    }

    /// Reads one whole slot; `None` if it was never committed or holds no
    /// event this version knows.
    pub fn decode(slot: &[u8]) -> Option<Event> {
        if slot.len() < EVENT_SIZE || u32_at(slot, 0) != COMMITTED {
            return None;
        }
        let kind = EventKind::from_u16(u16::from_le_bytes([slot[4], slot[5]]))?;
        let mut object = [0; OBJECT_BYTES];
        object.copy_from_slice(&slot[80..80 + OBJECT_BYTES]);
        let mut name = [0; NAME_BYTES];
        name.copy_from_slice(&slot[80 + OBJECT_BYTES..80 + OBJECT_BYTES + NAME_BYTES]);
        Some(Event {
            kind,
            flags: u16::from_le_bytes([slot[6], slot[7]]),
            pid: u32_at(slot, 8),
            tid: u32_at(slot, 12),
            time: u64_at(slot, 16),
            dev: u64_at(slot, 24),
            ino: u64_at(slot, 32),
            start: u64_at(slot, 40),
            len: u64_at(slot, 48),
            aux: u64_at(slot, 56),
            site: u64_at(slot, 64),
            func: u16::from_le_bytes([slot[72], slot[73]]),
            object,
            name,
        })
    }

    /// The name field up to its first NUL.
    pub fn name_bytes(&self) -> &[u8] {
        let end = self.name.iter().position(|&b| b == 0).unwrap_or(NAME_BYTES);
        &self.name[..end]
    }

    /// The object field up to its first NUL.
    pub fn object_bytes(&self) -> &[u8] {
        let end = self
            .object
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(OBJECT_BYTES);
        &self.object[..end]
    }
}

/// Copies the last bytes of `text` that fit into `field`, NUL-padded.
pub fn tail_into(field: &mut [u8], text: &[u8]) {
    let take = text.len().min(field.len());
    let (head, rest) = field.split_at_mut(take);
    head.copy_from_slice(&text[text.len() - take..]);
    rest.fill(0);
}

/// FNV-1a of a path: the name events' `aux`, stable across processes.
pub fn path_hash(path: &[u8]) -> u64 {
    path.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

const _: () = assert!(80 + OBJECT_BYTES + NAME_BYTES == EVENT_SIZE);
const _: () = assert!(HEADER_SIZE >= TABLE_AT + SECTIONS * 16);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_layout_validates_and_its_slots_fit() {
        let layout = Layout::new(100);
        let mut region = layout.initial_bytes();
        region.resize(layout.total as usize, 0);
        assert_eq!(Layout::validate(&region[..128], layout.total), Ok(layout));
        assert!(layout.slot(99) + EVENT_SIZE as u64 <= layout.total);
        assert_eq!(layout.total % ALIGN, 0);
    }

    #[test]
    fn hostile_headers_are_refused() {
        let layout = Layout::new(10);
        let good = layout.initial_bytes();
        let check = |bytes: &[u8], mapped: u64| Layout::validate(bytes, mapped);
        assert_eq!(check(&good[..40], layout.total), Err(Invalid::TooShort));
        assert_eq!(check(&good, layout.total - 1), Err(Invalid::Size));
        assert_eq!(check(&[0xff; 128], layout.total), Err(Invalid::Magic));
        let mut version = good.clone();
        version[8] = 2;
        assert_eq!(check(&version, layout.total), Err(Invalid::Version));
        let mut capacity = good.clone();
        capacity[HEADER_SIZE + events::CAPACITY..][..8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(check(&capacity, layout.total), Err(Invalid::Section));
        let mut offset = good.clone();
        offset[TABLE_AT + 8..TABLE_AT + 16].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(check(&offset, layout.total), Err(Invalid::Section));
        let mut overlap = good.clone();
        overlap[TABLE_AT + 16..TABLE_AT + 24].copy_from_slice(&(HEADER_SIZE as u64).to_le_bytes());
        assert_eq!(check(&overlap, layout.total), Err(Invalid::Section));
        let mut unaligned = good;
        unaligned[TABLE_AT + 16] += 8;
        assert_eq!(check(&unaligned, layout.total), Err(Invalid::Section));
    }

    #[test]
    fn events_round_trip() {
        let mut event = Event::new(EventKind::Acquire);
        event.pid = 7;
        event.tid = 8;
        event.time = 123;
        event.dev = 1;
        event.ino = 2;
        event.start = 3;
        event.len = u64::MAX;
        event.aux = LOCK_EXCLUSIVE | LOCK_FLOCK;
        event.site = 0x1234;
        event.func = 5;
        event.flags = FLAG_DELAYED;
        tail_into(&mut event.object, b"/usr/lib/libsqlite3.so.0.8.6-long-name");
        tail_into(&mut event.name, b"/tmp/x");
        let mut slot = [0u8; EVENT_SIZE];
        let mut body = [0u8; EVENT_SIZE - 4];
        event.encode(&mut body);
        slot[4..].copy_from_slice(&body);
        assert_eq!(Event::decode(&slot), None, "not committed yet");
        slot[..4].copy_from_slice(&COMMITTED.to_le_bytes());
        let back = Event::decode(&slot).unwrap();
        assert_eq!(back, event);
        assert_eq!(back.name_bytes(), b"/tmp/x");
        assert_eq!(back.object_bytes().len(), OBJECT_BYTES);
        assert!(b"/usr/lib/libsqlite3.so.0.8.6-long-name".ends_with(back.object_bytes()));
    }
}
