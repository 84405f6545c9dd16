//! The interposed functions as data: the [`Func`] index, the [`FUNCS`]
//! table and the [`Family`] each belongs to, built from the list in
//! [`crate::families`].

use std::ffi::CStr;

/// A group of functions that a user selects together by one name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Write,
    Pwrite,
    Fcntl,
    Flock,
    Fsync,
    Open,
    Close,
    Rename,
    Unlink,
    Link,
    Mkdir,
    Truncate,
    Read,
    Pread,
}

impl Family {
    pub const ALL: [Family; 14] = [
        Family::Write,
        Family::Pwrite,
        Family::Fcntl,
        Family::Flock,
        Family::Fsync,
        Family::Open,
        Family::Close,
        Family::Rename,
        Family::Unlink,
        Family::Link,
        Family::Mkdir,
        Family::Truncate,
        Family::Read,
        Family::Pread,
    ];

    /// The name a user selects the family by in `DELAYSHIM_FUNCS`.
    pub fn name(self) -> &'static str {
        self.info().name
    }

    /// The shared description of this family.
    pub fn info(self) -> &'static delayshim_settings::FamilyInfo {
        &delayshim_settings::FAMILIES[self as usize]
    }
}

/// How a function reports an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Errors {
    /// Returns -1 and sets errno.
    Errno,
    /// Returns the error number (posix_fallocate).
    Value,
}

/// One interposed function.
#[derive(Debug)]
pub struct FuncInfo {
    pub name: &'static str,
    pub cname: &'static CStr,
    pub family: Family,
    /// A fault may make it transfer only part of its count.
    pub can_short: bool,
    pub errors: Errors,
}

/// A set of functions, one bit per [`Func`].
pub type FuncSet = u128;

macro_rules! define_table {
    ($(
        $family:ident {
            $(fn $name:ident($($arg:ident: $ty:ty),* $(; variadic $va:ident: $vty:ty)?) -> $ret:ty
                => $call:expr $(, short($count:ident))? $(, nonblocking($nb:ident => $nbexpr:expr))? $(, errors: $errors:ident)?;)+
        }
    )+) => {
        /// Index of each interposed function in [`FUNCS`].
        #[allow(non_camel_case_types)]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
        #[repr(u8)]
        pub enum Func { $($($name,)+)+ }

        /// Every interposed function, in [`Func`] order.
        pub const FUNCS: &[FuncInfo] = &[$($(
            FuncInfo {
                name: stringify!($name),
                cname: match CStr::from_bytes_with_nul(concat!(stringify!($name), "\0").as_bytes()) {
                    Ok(name) => name,
                    Err(_) => panic!("function names have no NUL"),
                },
                family: Family::$family,
                can_short: false $(|| { let _ = stringify!($count); true })?,
                errors: errors_of!($($errors)?),
            },
        )+)+];
    };
}

macro_rules! errors_of {
    () => {
        Errors::Errno
    };
    (value) => {
        Errors::Value
    };
}

crate::families::with_families!(define_table);

const _: () = assert!(FUNCS.len() <= FuncSet::BITS as usize);

impl Func {
    pub fn info(self) -> &'static FuncInfo {
        &FUNCS[self as usize]
    }

    pub fn family(self) -> Family {
        self.info().family
    }

    pub fn bit(self) -> FuncSet {
        1 << self as usize
    }
}

/// The functions of `family`, as a set.
pub fn family_set(family: Family) -> FuncSet {
    FUNCS
        .iter()
        .enumerate()
        .filter(|(_, info)| info.family == family)
        .fold(0, |set, (index, _)| set | 1 << index)
}

/// The index of the function called `name`.
pub fn func_named(name: &str) -> Option<usize> {
    FUNCS.iter().position(|info| info.name == name)
}

/// Every function, as a set.
pub const ALL_FUNCS: FuncSet = if FUNCS.len() == 128 {
    u128::MAX
} else {
    (1 << FUNCS.len()) - 1
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_matches_enum_order() {
        assert_eq!(Func::pwrite64.info().name, "pwrite64");
        assert_eq!(Func::fdatasync.family(), Family::Fsync);
        assert_eq!(Func::preadv64v2.info().cname.to_bytes(), b"preadv64v2");
        assert!(Func::write.info().can_short && !Func::writev.info().can_short);
        assert_eq!(Func::posix_fallocate.info().errors, Errors::Value);
    }

    #[test]
    fn families_match_the_shared_settings_table() {
        for family in Family::ALL {
            let names: Vec<&str> = FUNCS
                .iter()
                .filter(|f| f.family == family)
                .map(|f| f.name)
                .collect();
            assert_eq!(names, family.info().functions, "{}", family.name());
        }
        assert_eq!(Family::ALL.len(), delayshim_settings::FAMILIES.len());
    }

    #[test]
    fn families_partition_the_functions() {
        let all = Family::ALL.iter().fold(0, |set, &f| {
            assert_eq!(set & family_set(f), 0, "{f:?} overlaps another family");
            set | family_set(f)
        });
        assert_eq!(all, ALL_FUNCS);
    }
}
