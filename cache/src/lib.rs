//! A SQLite-backed key-value cache modeled on python-diskcache.
//!
//! [`Cache`] stores integer, string and byte keys and values in one SQLite
//! database (`cache.db`, WAL journal) inside a directory; [`FanoutCache`]
//! spreads keys over several such caches by a hash that is the same in every
//! process. Every write is one `BEGIN IMMEDIATE` transaction, so
//! [`Cache::incr`] is atomic across threads and processes. Lock contention is
//! retried until a deadline and then reported as [`Error::Timeout`], never
//! swallowed; SQLite's other errors (an I/O error, a full disk) are
//! returned as they are. After either, the process's connections to that
//! database are reopened before their next use: SQLite keeps some
//! failures with them.
//!
//! Connections are never shared across `fork()`: open the cache in the
//! process that uses it.
//!
//! ```
//! let dir = tempfile::tempdir()?;
//! let cache = cache::FanoutCache::open(dir.path(), 4)?;
//! assert_eq!(cache.incr(7, 1, Some(0))?, 1);
//! assert_eq!(cache.incr(7, 1, Some(0))?, 2);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod cache;
mod error;
mod fanout;
mod key;
mod retry;

pub use crate::cache::{Cache, CacheOptions, Synchronous};
pub use crate::error::{Error, Result};
pub use crate::fanout::FanoutCache;
pub use crate::key::{Key, Value};
