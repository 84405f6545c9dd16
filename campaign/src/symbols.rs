//! Naming a call site: an object file and an offset in it (as the shim
//! records them) become `function+0xOFFSET` from the file's symbol tables,
//! with Rust and C++ names demangled where possible.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use object::{Object, ObjectSegment, ObjectSymbol, SymbolKind};

/// One function's address range and name.
#[derive(Debug, Clone)]
struct Function {
    start: u64,
    end: u64,
    name: String,
}

/// An object file's functions and loaded segments.
#[derive(Debug, Default)]
struct Table {
    /// (file offset, size, virtual address) of each loaded segment.
    segments: Vec<(u64, u64, u64)>,
    /// Sorted by start.
    functions: Vec<Function>,
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
        let at = table.functions.partition_point(|f| f.start <= address);
        let function = table.functions.get(at.checked_sub(1)?)?;
        (address < function.end)
            .then(|| format!("{}+{:#x}", function.name, address + 1 - function.start))
    }
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
        assert_eq!(Symbolizer::new().name(Path::new("/nonexistent"), 1), None);
    }
}
