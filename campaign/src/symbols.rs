//! Naming a call site: an object file and an offset in it (as the shim
//! records them) become `function+0xOFFSET` from the file's symbol tables,
//! with Rust and C++ names demangled where possible, and, where the file
//! (or its separate debug file, found by build id) has DWARF, the function
//! and `file:line` of the call itself, inlined frames included, through
//! `addr2line` (gimli's line-table and inline-frame reader: a hand-written
//! DWARF parser would be thousands of lines to get wrong).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use object::{Object, ObjectSection, ObjectSegment, ObjectSymbol, SymbolKind};

/// One function's address range and name.
#[derive(Debug, Clone)]
struct Function {
    start: u64,
    end: u64,
    name: String,
}

type Reader = gimli::EndianArcSlice<gimli::RunTimeEndian>;

/// An object file's functions and loaded segments.
struct Table {
    /// (file offset, size, virtual address) of each loaded segment.
    segments: Vec<(u64, u64, u64)>,
    /// Sorted by start.
    functions: Vec<Function>,
    /// Its DWARF, where it has some.
    dwarf: Option<addr2line::Context<Reader>>,
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table")
            .field("functions", &self.functions.len())
            .field("dwarf", &self.dwarf.is_some())
            .finish()
    }
}

/// Reads each object file once and names sites in it.
#[derive(Debug, Default)]
pub struct Symbolizer {
    tables: HashMap<PathBuf, Option<Table>>,
}

impl Symbolizer {
    pub fn new() -> Symbolizer {
        Symbolizer::default()
    }

    /// The function holding the call whose return address lies at
    /// `offset` in `object`, as `name+0xDELTA`; `None` without symbols.
    pub fn name(&mut self, object: &Path, offset: u64) -> Option<String> {
        let (table, address) = self.address(object, offset)?;
        symbol(table, address)
    }

    /// The call at return address `offset` in `object` as a person reads
    /// it: `function (file:line)` where DWARF says (the innermost inlined
    /// function outside Rust's standard library), else `function+0xDELTA`
    /// from the symbol tables.
    pub fn locate(&mut self, object: &Path, offset: u64) -> Option<String> {
        let (table, address) = self.address(object, offset)?;
        let from_dwarf = table.dwarf.as_ref().and_then(|dwarf| {
            // The innermost inlined frame outside the Rust standard
            // library (whose sources sit under /rustc/), else the innermost.
            let mut frames = dwarf.find_frames(address).skip_all_loads().ok()?;
            let innermost = frames.next().ok()??;
            let in_std = |frame: &addr2line::Frame<'_, Reader>| {
                frame
                    .location
                    .as_ref()
                    .and_then(|l| l.file)
                    .is_some_and(|file| file.starts_with("/rustc/"))
            };
            let mut frame = innermost;
            while in_std(&frame) {
                match frames.next() {
                    Ok(Some(outer)) => frame = outer,
                    _ => break,
                }
            }
            let function = frame
                .function
                .as_ref()
                .and_then(|f| f.raw_name().ok())
                .map(|name| demangle(name.as_ref()));
            let line = frame.location.as_ref().and_then(|l| {
                let file = short_path(l.file?);
                Some(format!("{file}:{}", l.line?))
            });
            match (function, line) {
                (Some(function), Some(line)) => Some(format!("{function} ({line})")),
                (None, Some(line)) => symbol(table, address)
                    .map(|s| format!("{s} ({line})"))
                    .or(Some(line)),
                (Some(function), None) => Some(function),
                (None, None) => None,
            }
        });
        from_dwarf.or_else(|| symbol(table, address))
    }

    /// The table of `object` and the virtual address of the call whose
    /// return address is at file offset `offset`.
    fn address(&mut self, object: &Path, offset: u64) -> Option<(&Table, u64)> {
        let table = self
            .tables
            .entry(object.to_owned())
            .or_insert_with(|| read_table(object))
            .as_ref()?;
        // The return address follows the call: look up the call itself.
        let offset = offset.checked_sub(1)?;
        let address = table
            .segments
            .iter()
            .find(|(start, size, _)| (*start..start + size).contains(&offset))
            .map(|(start, _, address)| address + (offset - start))?;
        Some((table, address))
    }
}

/// `name+0xDELTA` of the function holding `address` (a call's own address).
fn symbol(table: &Table, address: u64) -> Option<String> {
    let at = table.functions.partition_point(|f| f.start <= address);
    let function = table.functions.get(at.checked_sub(1)?)?;
    (address < function.end)
        .then(|| format!("{}+{:#x}", function.name, address + 1 - function.start))
}

/// The last two components of a source path: enough to find it, short
/// enough for a timeline's cell.
fn short_path(path: &str) -> &str {
    let mut slashes = path.rmatch_indices('/').map(|(at, _)| at);
    match (slashes.next(), slashes.next()) {
        (Some(_), Some(at)) => &path[at + 1..],
        _ => path,
    }
}

/// The DWARF of `file`, or of its separate debug file under
/// /usr/lib/debug/.build-id (Debian's -dbgsym packages put it there).
fn read_dwarf(file: &object::File<'_>) -> Option<addr2line::Context<Reader>> {
    if file.section_by_name(".debug_info").is_some() {
        return dwarf_of(file);
    }
    let id = file.build_id().ok()??;
    let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
    let (head, tail) = hex.split_at_checked(2)?;
    let path = format!("/usr/lib/debug/.build-id/{head}/{tail}.debug");
    let bytes = std::fs::read(path).ok()?;
    let debug = object::File::parse(&*bytes).ok()?;
    dwarf_of(&debug)
}

fn dwarf_of(file: &object::File<'_>) -> Option<addr2line::Context<Reader>> {
    let endian = if file.is_little_endian() {
        gimli::RunTimeEndian::Little
    } else {
        gimli::RunTimeEndian::Big
    };
    let load = |id: gimli::SectionId| -> Result<Reader, gimli::Error> {
        let data = file
            .section_by_name(id.name())
            .and_then(|section| section.uncompressed_data().ok())
            .unwrap_or_default();
        Ok(Reader::new(Arc::from(&*data), endian))
    };
    let dwarf = gimli::Dwarf::load(load).ok()?;
    addr2line::Context::from_dwarf(dwarf).ok()
}

fn read_table(path: &Path) -> Option<Table> {
    let bytes = std::fs::read(path).ok()?;
    let file = object::File::parse(&*bytes).ok()?;
    let segments = file
        .segments()
        .map(|segment| {
            let (offset, size) = segment.file_range();
            (offset, size, segment.address())
        })
        .collect();
    let mut functions: Vec<Function> = file
        .symbols()
        .chain(file.dynamic_symbols())
        .filter(|symbol| symbol.kind() == SymbolKind::Text && symbol.size() > 0)
        .filter_map(|symbol| {
            let name = symbol.name().ok()?;
            Some(Function {
                start: symbol.address(),
                end: symbol.address() + symbol.size(),
                name: demangle(name),
            })
        })
        .collect();
    functions.sort_by_key(|f| (f.start, std::cmp::Reverse(f.end)));
    functions.dedup_by_key(|f| f.start);
    Some(Table {
        segments,
        functions,
        dwarf: read_dwarf(&file),
    })
}

/// A Rust name without its hash; other names as they are.
fn demangle(name: &str) -> String {
    match rustc_demangle::try_demangle(name) {
        Ok(demangled) => format!("{demangled:#}"),
        Err(_) => name.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[inline(never)]
    fn marker() -> usize {
        marker as *const () as usize
    }

    /// This test binary's own function, found from a maps-style offset.
    #[test]
    fn names_a_function_of_this_binary() {
        let address = marker() as u64;
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        let (start, offset) = maps
            .lines()
            .filter(|line| line.ends_with(exe.to_str().unwrap()))
            .find_map(|line| {
                let mut fields = line.split_whitespace();
                let (start, end) = fields.next()?.split_once('-')?;
                let start = u64::from_str_radix(start, 16).ok()?;
                let end = u64::from_str_radix(end, 16).ok()?;
                let offset = u64::from_str_radix(fields.nth(1)?, 16).ok()?;
                (start..end).contains(&address).then_some((start, offset))
            })
            .expect("mapped");
        let file_offset = address - start + offset + 1;
        let name = Symbolizer::new().name(&exe, file_offset).expect("symbols");
        assert!(name.contains("symbols::tests::marker+0x"), "{name}");
        // Test builds carry DWARF: the function and this file's line.
        let located = Symbolizer::new().locate(&exe, file_offset).expect("DWARF");
        assert!(
            located.contains("symbols::tests::marker (src/symbols.rs:"),
            "{located}"
        );
        assert_eq!(Symbolizer::new().locate(Path::new("/nonexistent"), 1), None);
        assert_eq!(Symbolizer::new().name(Path::new("/nonexistent"), 1), None);
    }
}
