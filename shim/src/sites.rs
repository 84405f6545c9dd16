//! Call sites: the caller's address as an object file and an offset in
//! it, which address-space randomisation does not change between runs.
//!
//! Found by reading `/proc/self/maps` with raw system calls into a
//! workspace's buffers (no allocation, no loader lock: `dladdr` takes one,
//! and a signal handler may interrupt a thread holding it), and kept in the
//! workspace's small cache, so a site costs a read of the maps only the
//! first time a workspace meets an object.

use crate::output::{raw_close, raw_open, raw_read};
use delayshim_decide::hash::hash_bytes;

const NAME: usize = 192;
const ENTRIES: usize = 8;

#[derive(Debug, Clone, Copy)]
struct Mapping {
    start: u64,
    end: u64,
    /// The mapping's offset in its file.
    offset: u64,
    name: [u8; NAME],
    name_len: usize,
    name_hash: u64,
}

const EMPTY: Mapping = Mapping {
    start: 0,
    end: 0,
    offset: 0,
    name: [0; NAME],
    name_len: 0,
    name_hash: 0,
};

/// The mappings a workspace has met, and its buffers for reading maps.
#[derive(Debug)]
pub(crate) struct SiteCache {
    entries: [Mapping; ENTRIES],
    next: usize,
    chunk: [u8; 4096],
    line: [u8; 512],
}

impl SiteCache {
    pub(crate) const EMPTY: SiteCache = SiteCache {
        entries: [EMPTY; ENTRIES],
        next: 0,
        chunk: [0; 4096],
        line: [0; 512],
    };
}

/// A call site, resolved.
#[derive(Debug, Clone, Copy)]
pub struct Site<'a> {
    /// The object file's path.
    pub object: &'a [u8],
    /// The caller's offset in it.
    pub offset: u64,
    object_hash: u64,
}

impl Site<'_> {
    /// A key that names this site in every run and process.
    pub fn key(&self) -> u64 {
        delayshim_decide::hash::combine(self.object_hash, self.offset)
    }
}

/// The site of the caller at `address`, or `None` if no file mapping
/// holds it.
pub(crate) fn site(cache: &mut SiteCache, address: usize) -> Option<Site<'_>> {
    let address = address as u64;
    let at = match cache
        .entries
        .iter()
        .position(|m| m.start <= address && address < m.end)
    {
        Some(at) => at,
        None => cache.load(address)?,
    };
    let m = &cache.entries[at];
    Some(Site {
        object: &m.name[..m.name_len],
        offset: address - m.start + m.offset,
        object_hash: m.name_hash,
    })
}

impl SiteCache {
    /// Reads the maps for the mapping that holds `address` and caches it.
    fn load(&mut self, address: u64) -> Option<usize> {
        let fd = raw_open(c"/proc/self/maps", libc::O_RDONLY | libc::O_CLOEXEC, 0);
        if fd < 0 {
            return None;
        }
        let mut found = None;
        let mut line_len = 0;
        'read: loop {
            let n = raw_read(fd, &mut self.chunk);
            if n <= 0 {
                break;
            }
            for i in 0..n as usize {
                let b = self.chunk[i];
                if b != b'\n' {
                    if line_len < self.line.len() {
                        self.line[line_len] = b;
                        line_len += 1;
                    }
                    continue;
                }
                if let Some(mapping) = parse_line(&self.line[..line_len], address) {
                    found = Some(mapping);
                    break 'read;
                }
                line_len = 0;
            }
        }
        raw_close(fd);
        let mapping = found?;
        let at = self.next;
        self.entries[at] = mapping;
        self.next = (self.next + 1) % ENTRIES;
        Some(at)
    }
}

fn parse_hex(field: &[u8]) -> Option<u64> {
    if field.is_empty() || field.len() > 16 {
        return None;
    }
    field.iter().try_fold(0u64, |value, &b| {
        let digit = (b as char).to_digit(16)?;
        Some(value << 4 | u64::from(digit))
    })
}

/// The mapping a maps line describes, if it holds `address` and is a file's.
fn parse_line(line: &[u8], address: u64) -> Option<Mapping> {
    let mut fields = line.splitn(6, |&b| b == b' ');
    let range = fields.next()?;
    let dash = range.iter().position(|&b| b == b'-')?;
    let start = parse_hex(&range[..dash])?;
    let end = parse_hex(&range[dash + 1..])?;
    if !(start <= address && address < end) {
        return None;
    }
    let _perms = fields.next()?;
    let offset = parse_hex(fields.next()?)?;
    let _dev = fields.next()?;
    let _inode = fields.next()?;
    let path = fields.next()?;
    let path = &path[path.iter().position(|&b| b != b' ')?..];
    if path.first() != Some(&b'/') {
        return None;
    }
    let mut mapping = EMPTY;
    mapping.start = start;
    mapping.end = end;
    mapping.offset = offset;
    mapping.name_len = path.len().min(NAME);
    mapping.name[..mapping.name_len].copy_from_slice(&path[..mapping.name_len]);
    mapping.name_hash = hash_bytes(path);
    Some(mapping)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[inline(never)]
    fn here() -> usize {
        here as *const () as usize
    }

    #[test]
    fn a_function_of_this_binary_is_found_in_it() {
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        let address = here();
        let mut cache = Box::new(SiteCache::EMPTY);
        let found = site(&mut cache, address).expect("mapped");
        let (object, offset, key) = (found.object.to_vec(), found.offset, found.key());
        assert_eq!(object, exe.to_str().unwrap().as_bytes());
        // Cached the second time, with the same answer.
        assert_eq!(site(&mut cache, address).unwrap().key(), key);
        assert!(offset > 0);
        assert!(site(&mut cache, 8).is_none());
    }

    #[test]
    fn maps_lines_parse() {
        let line = b"7f00-7f80 r-xp 00001000 08:01 123                /usr/lib/libx.so";
        let m = parse_line(line, 0x7f10).unwrap();
        assert_eq!((m.start, m.end, m.offset), (0x7f00, 0x7f80, 0x1000));
        assert_eq!(&m.name[..m.name_len], b"/usr/lib/libx.so");
        assert!(parse_line(line, 0x7f80).is_none());
        assert!(parse_line(b"1000-2000 rw-p 00000000 00:00 0   [heap]", 0x1500).is_none());
    }
}
