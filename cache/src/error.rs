use std::path::PathBuf;
use std::time::Duration;

use crate::key::Key;

/// Everything that can go wrong in a cache operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The database stayed locked by other connections past the deadline.
    #[error("timed out after {waited:.1?} waiting for the lock on {}", path.display())]
    Timeout { path: PathBuf, waited: Duration },
    /// `incr`/`decr` found no item and no default was given.
    #[error("key not found: {0}")]
    KeyNotFound(Key),
    /// `incr`/`decr` found an item whose value is not an integer.
    #[error("value of key {0} is not an integer")]
    NotAnInteger(Key),
    /// `incr`/`decr` would overflow an `i64`.
    #[error("integer overflow incrementing key {0}")]
    Overflow(Key),
    /// SQLite reported an error on this database.
    #[error("SQLite error on {}: {source}", path.display())]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    /// The cache directory could not be created or read.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The result of every cache operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;
