//! One SQLite database holding a key-value table.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};

use crate::error::{Error, Result};
use crate::key::{Key, Value};
use crate::retry::{retry_busy, AttemptError};

/// Name of the database file inside a cache directory.
const DB_FILE: &str = "cache.db";

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS cache (
    key PRIMARY KEY NOT NULL,
    value NOT NULL,
    expire_time REAL
)";

/// Statements that see only rows without an expiry or not yet expired,
/// spelled out in full so each is prepared once and cached.
macro_rules! visible {
    ($head:literal $(, $tail:literal)?) => {
        concat!($head, " (expire_time IS NULL OR expire_time > ?)" $(, $tail)?)
    };
}

/// SQLite's `synchronous` setting for the cache's connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Synchronous {
    /// No fsync at all: fastest, loses recent commits on power loss.
    Off,
    /// fsync at WAL checkpoints only (diskcache's default).
    #[default]
    Normal,
    /// fsync on every commit.
    Full,
}

impl Synchronous {
    fn pragma(self) -> &'static str {
        match self {
            Synchronous::Off => "OFF",
            Synchronous::Normal => "NORMAL",
            Synchronous::Full => "FULL",
        }
    }
}

/// Settings for [`Cache::open`] and [`crate::FanoutCache::open`].
///
/// ```
/// use std::time::Duration;
/// let dir = tempfile::tempdir()?;
/// let cache = cache::CacheOptions::default()
///     .timeout(Duration::from_secs(5))
///     .synchronous(cache::Synchronous::Full)
///     .open(dir.path())?;
/// assert_eq!(cache.len()?, 0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct CacheOptions {
    pub(crate) timeout: Duration,
    pub(crate) synchronous: Synchronous,
    pub(crate) page_size: u32,
}

impl Default for CacheOptions {
    fn default() -> Self {
        CacheOptions {
            timeout: Duration::from_secs(60),
            synchronous: Synchronous::Normal,
            page_size: 1024,
        }
    }
}

impl CacheOptions {
    /// How long an operation keeps retrying a locked database before it
    /// fails with [`Error::Timeout`] (default 60 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// SQLite's `synchronous` setting (default `NORMAL`).
    pub fn synchronous(mut self, synchronous: Synchronous) -> Self {
        self.synchronous = synchronous;
        self
    }

    /// SQLite's page size for a newly created database, a power of two
    /// from 512 to 65536 (default 1024). Every commit appends whole pages
    /// to the WAL, and a counter's row is a few bytes: 1 KiB pages make
    /// the 8x8x100 driver a quarter faster than SQLite's default 4 KiB.
    /// An existing database keeps the page size it was created with.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let cache = cache::CacheOptions::default().page_size(4096).open(dir.path())?;
    /// let db = rusqlite::Connection::open(cache.db_path())?;
    /// assert_eq!(db.query_row("PRAGMA page_size", [], |row| row.get::<_, u32>(0))?, 4096);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn page_size(mut self, bytes: u32) -> Self {
        self.page_size = bytes;
        self
    }

    /// Opens (creating if needed) the cache in `dir`.
    pub fn open(self, dir: impl AsRef<Path>) -> Result<Cache> {
        Cache::open_with(dir.as_ref(), self)
    }
}

/// A key-value cache in one SQLite database, `DIR/cache.db`.
///
/// Threads share it through `Arc`. Writes from one process go through one
/// connection, one at a time (a waiting thread wakes as soon as the lock is
/// free instead of polling SQLite); reads use a pool of connections and run
/// in parallel with each other and with writes (WAL).
pub struct Cache {
    db_path: PathBuf,
    options: CacheOptions,
    /// The connection for writes; `None` after a failure, until the next
    /// write opens a fresh one.
    writer: Mutex<Option<Connection>>,
    /// Idle reader connections, each with the generation it was opened in.
    readers: Mutex<Vec<(u64, Connection)>>,
    /// Bumped when the writer fails: readers of older generations are
    /// closed instead of pooled.
    generation: AtomicU64,
}

impl fmt::Debug for Cache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("db_path", &self.db_path)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere cannot leave a connection mid-transaction: rusqlite
    // rolls back when the transaction is dropped during unwinding.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Cache {
    /// Opens (creating if needed) the cache in `dir` with default options.
    ///
    /// Many processes may open the same directory at once.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let cache = cache::Cache::open(dir.path())?;
    /// cache.set("greeting", "hello")?;
    /// assert_eq!(cache.get("greeting")?, Some(cache::Value::from("hello")));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open(dir: impl AsRef<Path>) -> Result<Cache> {
        Cache::open_with(dir.as_ref(), CacheOptions::default())
    }

    fn open_with(dir: &Path, options: CacheOptions) -> Result<Cache> {
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            path: dir.to_owned(),
            source,
        })?;
        let db_path = dir.join(DB_FILE);
        let writer = open_connection(&db_path, &options)?;
        // The first opener creates the schema; the others race it for the
        // lock, as diskcache's `_sql_retry` does.
        retry_busy(&db_path, options.timeout, || {
            let mode: String =
                writer.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
            if !mode.eq_ignore_ascii_case("wal") {
                return Err(AttemptError::Sql(rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
                    Some(format!(
                        "cannot use a WAL journal here (journal_mode is {mode})"
                    )),
                )));
            }
            writer.execute(SCHEMA, [])?;
            Ok(())
        })?;
        Ok(Cache {
            db_path,
            options,
            writer: Mutex::new(Some(writer)),
            readers: Mutex::new(Vec::new()),
            generation: AtomicU64::new(0),
        })
    }

    /// The path of the SQLite database file.
    pub fn db_path(&self) -> &Path {
        &self.db_path
    }

    /// Runs `op` in one `BEGIN IMMEDIATE` transaction on the writer
    /// connection, retrying the whole transaction while the database is
    /// locked by another process.
    ///
    /// After a failure the process's connections to the database are
    /// closed and the next operation opens fresh ones. SQLite keeps some
    /// failures for the life of a connection, or of all the process's
    /// connections to one database: a WAL file it could reopen only
    /// read-only (every write then fails with SQLITE_READONLY), a lock
    /// whose release failed (every later attempt is SQLITE_BUSY or
    /// SQLITE_PROTOCOL, here and in every other process, until the
    /// process's last connection closes), or a rollback that failed
    /// (the connection stays inside a transaction that holds the write
    /// lock).
    fn write<T>(
        &self,
        mut op: impl FnMut(&rusqlite::Transaction<'_>, f64) -> Result<T, AttemptError>,
    ) -> Result<T> {
        let mut slot = lock(&self.writer);
        let result = retry_busy(&self.db_path, self.options.timeout, || {
            let conn = match slot.take() {
                Some(conn) if conn.is_autocommit() => slot.insert(conn),
                stale => {
                    drop(stale);
                    slot.insert(open_connection(&self.db_path, &self.options)?)
                }
            };
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let value = op(&tx, now())?;
            tx.commit()?;
            Ok(value)
        });
        if matches!(result, Err(Error::Sqlite { .. } | Error::Timeout { .. })) {
            *slot = None;
            self.retire_readers();
        }
        result
    }

    /// Closes the idle readers, and makes those in use close when done.
    fn retire_readers(&self) {
        self.generation.fetch_add(1, Ordering::Relaxed);
        lock(&self.readers).clear();
    }

    /// Runs `op` on a pooled reader connection.
    fn read<T>(&self, mut op: impl FnMut(&Connection, f64) -> rusqlite::Result<T>) -> Result<T> {
        let pooled = lock(&self.readers).pop();
        let (generation, conn) = match pooled {
            Some(pooled) => pooled,
            None => (
                self.generation.load(Ordering::Relaxed),
                open_connection(&self.db_path, &self.options)?,
            ),
        };
        let result = retry_busy(&self.db_path, self.options.timeout, || {
            Ok(op(&conn, now())?)
        });
        // A reader that failed may keep its failure; a fresh one replaces it.
        if result.is_ok() && generation == self.generation.load(Ordering::Relaxed) {
            lock(&self.readers).push((generation, conn));
        }
        result
    }

    /// The value of `key`, or `None` if it is absent or expired.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let cache = cache::Cache::open(dir.path())?;
    /// assert_eq!(cache.get(1)?, None);
    /// cache.set(1, 10)?;
    /// assert_eq!(cache.get(1)?, Some(cache::Value::Int(10)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get(&self, key: impl Into<Key>) -> Result<Option<Value>> {
        let key = key.into();
        self.read(|conn, now| select_visible(conn, &key, now))
    }

    /// Stores `value` under `key`, replacing any previous value.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let cache = cache::Cache::open(dir.path())?;
    /// cache.set(b"k".as_slice(), b"v".as_slice())?;
    /// assert_eq!(cache.get(b"k".as_slice())?, Some(cache::Value::from(b"v".as_slice())));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set(&self, key: impl Into<Key>, value: impl Into<Value>) -> Result<()> {
        self.set_expiring(key.into(), value.into(), None)
    }

    /// Stores `value` under `key` until `ttl` has passed; after that the
    /// item is invisible to every operation and not counted by `len`.
    ///
    /// ```
    /// use std::time::Duration;
    /// let dir = tempfile::tempdir()?;
    /// let cache = cache::Cache::open(dir.path())?;
    /// cache.set_with_ttl("session", 1, Duration::from_millis(50))?;
    /// assert!(cache.contains("session")?);
    /// std::thread::sleep(Duration::from_millis(60));
    /// assert!(!cache.contains("session")?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_with_ttl(
        &self,
        key: impl Into<Key>,
        value: impl Into<Value>,
        ttl: Duration,
    ) -> Result<()> {
        self.set_expiring(key.into(), value.into(), Some(ttl))
    }

    fn set_expiring(&self, key: Key, value: Value, ttl: Option<Duration>) -> Result<()> {
        self.write(|tx, now| {
            upsert(tx, &key, &value, ttl.map(|ttl| now + ttl.as_secs_f64()))?;
            Ok(())
        })
    }

    /// Stores `value` under `key` only if `key` is absent (or expired);
    /// returns whether it was stored.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let cache = cache::Cache::open(dir.path())?;
    /// assert!(cache.add("k", 1)?);
    /// assert!(!cache.add("k", 2)?);
    /// assert_eq!(cache.get("k")?, Some(cache::Value::Int(1)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn add(&self, key: impl Into<Key>, value: impl Into<Value>) -> Result<bool> {
        let (key, value) = (key.into(), value.into());
        self.write(|tx, now| {
            if select_visible(tx, &key, now)?.is_some() {
                return Ok(false);
            }
            upsert(tx, &key, &value, None)?;
            Ok(true)
        })
    }

    /// Adds `delta` to the integer stored under `key` and returns the new
    /// value, atomically across threads and processes. An absent key starts
    /// at `default`; with no default it is [`Error::KeyNotFound`].
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let cache = cache::Cache::open(dir.path())?;
    /// assert_eq!(cache.incr("hits", 1, Some(0))?, 1);
    /// assert_eq!(cache.incr("hits", 5, Some(0))?, 6);
    /// assert!(matches!(cache.incr("misses", 1, None), Err(cache::Error::KeyNotFound(_))));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn incr(&self, key: impl Into<Key>, delta: i64, default: Option<i64>) -> Result<i64> {
        let key = key.into();
        self.write(|tx, now| {
            let current = match select_visible(tx, &key, now)? {
                Some(Value::Int(i)) => i,
                Some(_) => return Err(Error::NotAnInteger(key.clone()).into()),
                None => default.ok_or_else(|| Error::KeyNotFound(key.clone()))?,
            };
            let new = current
                .checked_add(delta)
                .ok_or_else(|| Error::Overflow(key.clone()))?;
            // Keep an existing item's expiry; an item made from the default has none.
            let updated = tx
                .prepare_cached(visible!("UPDATE cache SET value = ? WHERE key = ? AND"))?
                .execute(params![new, key, now])?;
            if updated == 0 {
                upsert(tx, &key, &Value::Int(new), None)?;
            }
            Ok(new)
        })
    }

    /// Subtracts `delta`: `incr` with the delta negated.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let cache = cache::Cache::open(dir.path())?;
    /// assert_eq!(cache.decr("stock", 3, Some(10))?, 7);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn decr(&self, key: impl Into<Key>, delta: i64, default: Option<i64>) -> Result<i64> {
        let key = key.into();
        let delta = delta
            .checked_neg()
            .ok_or_else(|| Error::Overflow(key.clone()))?;
        self.incr(key, delta, default)
    }

    /// Removes `key`; returns whether a visible item was removed.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let cache = cache::Cache::open(dir.path())?;
    /// cache.set(1, 1)?;
    /// assert!(cache.delete(1)?);
    /// assert!(!cache.delete(1)?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn delete(&self, key: impl Into<Key>) -> Result<bool> {
        Ok(self.pop(key)?.is_some())
    }

    /// Removes `key` and returns its value, if it was present and not expired.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let cache = cache::Cache::open(dir.path())?;
    /// cache.set(1, "one")?;
    /// assert_eq!(cache.pop(1)?, Some(cache::Value::from("one")));
    /// assert_eq!(cache.pop(1)?, None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn pop(&self, key: impl Into<Key>) -> Result<Option<Value>> {
        let key = key.into();
        self.write(|tx, now| {
            let value = select_visible(tx, &key, now)?;
            tx.execute("DELETE FROM cache WHERE key = ?", [&key])?;
            Ok(value)
        })
    }

    /// Whether `key` is present and not expired.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let cache = cache::Cache::open(dir.path())?;
    /// assert!(!cache.contains(1)?);
    /// cache.set(1, 1)?;
    /// assert!(cache.contains(1)?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn contains(&self, key: impl Into<Key>) -> Result<bool> {
        Ok(self.get(key)?.is_some())
    }

    /// How many items are present and not expired.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let cache = cache::Cache::open(dir.path())?;
    /// cache.set(1, 1)?;
    /// cache.set("two", 2)?;
    /// assert_eq!(cache.len()?, 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn len(&self) -> Result<u64> {
        self.read(|conn, now| {
            conn.prepare_cached(visible!("SELECT COUNT(*) FROM cache WHERE"))?
                .query_row([now], |row| row.get(0))
        })
    }

    /// Whether no item is present (expired ones do not count).
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Removes every item, expired ones included, and returns how many rows
    /// it removed (as diskcache's `clear` does).
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let cache = cache::Cache::open(dir.path())?;
    /// for i in 0..3 { cache.set(i, i)?; }
    /// assert_eq!(cache.clear()?, 3);
    /// assert_eq!(cache.len()?, 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn clear(&self) -> Result<u64> {
        self.write(|tx, _| Ok(tx.execute("DELETE FROM cache", [])? as u64))
    }

    /// Removes expired items and returns how many it removed.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let cache = cache::Cache::open(dir.path())?;
    /// cache.set_with_ttl(1, 1, std::time::Duration::ZERO)?;
    /// assert_eq!(cache.expire()?, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn expire(&self) -> Result<u64> {
        self.write(|tx, now| {
            Ok(tx.execute("DELETE FROM cache WHERE expire_time <= ?", [now])? as u64)
        })
    }

    /// The keys present and not expired, in order: integers numerically,
    /// then strings, then bytes. A snapshot: later writes do not show.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let cache = cache::Cache::open(dir.path())?;
    /// for key in [10, 2, 33] { cache.set(key, 0)?; }
    /// let keys: Vec<_> = cache.iter()?.collect();
    /// assert_eq!(keys, [2, 10, 33].map(cache::Key::from));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn iter(&self) -> Result<std::vec::IntoIter<Key>> {
        self.read(|conn, now| {
            let mut statement =
                conn.prepare_cached(visible!("SELECT key FROM cache WHERE", " ORDER BY key"))?;
            let keys = statement
                .query_map([now], |row| row.get(0))?
                .collect::<rusqlite::Result<Vec<Key>>>()?;
            Ok(keys)
        })
        .map(Vec::into_iter)
    }

    /// Runs SQLite's `PRAGMA integrity_check` on the database and returns
    /// the problems it reports: none when the database is sound.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let cache = cache::Cache::open(dir.path())?;
    /// cache.set(1, 1)?;
    /// assert!(cache.integrity_check()?.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn integrity_check(&self) -> Result<Vec<String>> {
        self.read(|conn, _| {
            let lines = conn
                .prepare("PRAGMA integrity_check")?
                .query_map([], |row| row.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(if lines == ["ok"] { Vec::new() } else { lines })
        })
    }
}

fn open_connection(db_path: &Path, options: &CacheOptions) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    retry_busy(db_path, options.timeout, || {
        let conn = Connection::open_with_flags(db_path, flags)?;
        // Busy is retried in `retry_busy`, with a deadline, instead of
        // SQLite's coarse sleeping handler.
        conn.busy_timeout(Duration::ZERO)?;
        // The first statement reads the schema, which waits for a shared
        // lock while another process creates the database.
        conn.pragma_update(None, "synchronous", options.synchronous.pragma())?;
        // Only a new database takes it; an existing one keeps its own.
        conn.pragma_update(None, "page_size", options.page_size)?;
        Ok(conn)
    })
}

fn select_visible(conn: &Connection, key: &Key, now: f64) -> rusqlite::Result<Option<Value>> {
    conn.prepare_cached(visible!("SELECT value FROM cache WHERE key = ? AND"))?
        .query_row(params![key, now], |row| row.get(0))
        .optional()
}

fn upsert(
    conn: &Connection,
    key: &Key,
    value: &Value,
    expire_time: Option<f64>,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO cache (key, value, expire_time) VALUES (?, ?, ?)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value, expire_time = excluded.expire_time",
    )?
    .execute(params![key, value, expire_time])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn cache() -> (tempfile::TempDir, Cache) {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        (dir, cache)
    }

    #[test]
    fn set_get_replace_each_kind() {
        let (_dir, cache) = cache();
        cache.set(1, "one").unwrap();
        cache.set("two", 2).unwrap();
        cache.set(&b"\x00three"[..], &b"\xff"[..]).unwrap();
        assert_eq!(cache.get(1).unwrap(), Some(Value::from("one")));
        assert_eq!(cache.get("two").unwrap(), Some(Value::Int(2)));
        assert_eq!(
            cache.get(&b"\x00three"[..]).unwrap(),
            Some(Value::from(&b"\xff"[..]))
        );
        assert_eq!(cache.get("1").unwrap(), None, "text '1' is not integer 1");
        cache.set(1, 11).unwrap();
        assert_eq!(cache.get(1).unwrap(), Some(Value::Int(11)));
        assert_eq!(cache.len().unwrap(), 3);
    }

    #[test]
    fn ttl_hides_and_expire_removes() {
        let (_dir, cache) = cache();
        cache.set_with_ttl("gone", 1, Duration::ZERO).unwrap();
        cache
            .set_with_ttl("kept", 1, Duration::from_secs(3600))
            .unwrap();
        cache.set("plain", 1).unwrap();
        assert_eq!(cache.get("gone").unwrap(), None);
        assert_eq!(cache.len().unwrap(), 2);
        let keys: Vec<_> = cache.iter().unwrap().collect();
        assert_eq!(keys, vec![Key::from("kept"), Key::from("plain")]);
        // An expired item is absent for add and incr.
        assert!(cache.add("gone", 5).unwrap());
        assert_eq!(cache.get("gone").unwrap(), Some(Value::Int(5)));
        cache.set_with_ttl("gone", 1, Duration::ZERO).unwrap();
        assert_eq!(cache.incr("gone", 1, Some(100)).unwrap(), 101);
        cache.set_with_ttl("old", 1, Duration::ZERO).unwrap();
        assert_eq!(cache.expire().unwrap(), 1);
    }

    #[test]
    fn incr_keeps_expiry_and_checks_type() {
        let (_dir, cache) = cache();
        cache
            .set_with_ttl("t", 1, Duration::from_secs(3600))
            .unwrap();
        assert_eq!(cache.incr("t", 2, None).unwrap(), 3);
        cache.set("s", "text").unwrap();
        assert!(
            matches!(cache.incr("s", 1, Some(0)), Err(Error::NotAnInteger(Key::Text(k))) if k == "s")
        );
        cache.set("max", i64::MAX).unwrap();
        assert!(matches!(
            cache.incr("max", 1, None),
            Err(Error::Overflow(_))
        ));
        assert_eq!(
            cache.get("max").unwrap(),
            Some(Value::Int(i64::MAX)),
            "failed incr changes nothing"
        );
        assert!(matches!(
            cache.decr("x", i64::MIN, Some(0)),
            Err(Error::Overflow(_))
        ));
        assert_eq!(cache.decr("d", 4, Some(0)).unwrap(), -4);
    }

    #[test]
    fn add_delete_pop_contains() {
        let (_dir, cache) = cache();
        assert!(cache.add(1, 1).unwrap());
        assert!(!cache.add(1, 2).unwrap());
        assert!(cache.contains(1).unwrap());
        assert_eq!(cache.pop(1).unwrap(), Some(Value::Int(1)));
        assert!(!cache.contains(1).unwrap());
        assert!(!cache.delete(1).unwrap());
        cache.set(2, 2).unwrap();
        assert!(cache.delete(2).unwrap());
        assert!(cache.is_empty().unwrap());
    }

    #[test]
    fn clear_counts_every_row() {
        let (_dir, cache) = cache();
        for i in 0..5 {
            cache.set(i, i).unwrap();
        }
        cache.set_with_ttl("expired", 0, Duration::ZERO).unwrap();
        assert_eq!(cache.len().unwrap(), 5);
        assert_eq!(cache.clear().unwrap(), 6);
        assert_eq!(cache.clear().unwrap(), 0);
    }

    #[test]
    fn integer_keys_iterate_numerically() {
        let (_dir, cache) = cache();
        for key in [100, -5, 9, 10, 0] {
            cache.set(key, 0).unwrap();
        }
        cache.set("a", 0).unwrap();
        cache.set(&b"a"[..], 0).unwrap();
        let keys: Vec<_> = cache.iter().unwrap().collect();
        let expected: Vec<Key> = vec![
            (-5).into(),
            0.into(),
            9.into(),
            10.into(),
            100.into(),
            "a".into(),
            (&b"a"[..]).into(),
        ];
        assert_eq!(keys, expected);
    }

    #[test]
    fn many_threads_increment_one_key_without_loss() {
        let (dir, cache) = cache();
        let cache = Arc::new(cache);
        // A second cache object on the same file stands in for another process.
        let other = Arc::new(Cache::open(dir.path()).unwrap());
        let threads: Vec<_> = (0..16)
            .map(|i| {
                let cache = if i % 2 == 0 {
                    cache.clone()
                } else {
                    other.clone()
                };
                std::thread::spawn(move || {
                    for _ in 0..100 {
                        cache.incr("n", 1, Some(0)).unwrap();
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(cache.get("n").unwrap(), Some(Value::Int(1600)));
    }

    #[test]
    fn held_lock_times_out_with_error() {
        let dir = tempfile::tempdir().unwrap();
        let cache = CacheOptions::default()
            .timeout(Duration::from_millis(100))
            .open(dir.path())
            .unwrap();
        let blocker = Connection::open(dir.path().join(DB_FILE)).unwrap();
        blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
        match cache.set(1, 1) {
            Err(Error::Timeout { path, waited }) => {
                assert_eq!(path, dir.path().join(DB_FILE));
                assert!(waited >= Duration::from_millis(100));
            }
            other => panic!("expected a timeout, got {other:?}"),
        }
        blocker.execute_batch("ROLLBACK").unwrap();
        cache.set(1, 1).unwrap();
    }

    #[test]
    fn not_a_database_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(DB_FILE), vec![b'x'; 4096]).unwrap();
        let error = Cache::open(dir.path()).unwrap_err();
        let message = error.to_string();
        assert!(matches!(error, Error::Sqlite { .. }), "{message}");
        assert!(
            message.contains("cache.db") && message.contains("not a database"),
            "{message}"
        );
    }

    #[test]
    fn unwritable_directory_is_an_io_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, b"").unwrap();
        let error = Cache::open(file.join("sub")).unwrap_err();
        assert!(
            matches!(&error, Error::Io { path, .. } if path == &file.join("sub")),
            "{error}"
        );
    }

    #[test]
    fn a_transaction_left_open_is_ended_before_the_next_write() {
        let dir = tempfile::tempdir().unwrap();
        let cache = CacheOptions::default()
            .timeout(Duration::from_millis(100))
            .open(dir.path())
            .unwrap();
        // What a rollback that failed on an I/O error leaves behind.
        lock(&cache.writer)
            .as_ref()
            .unwrap()
            .execute_batch("BEGIN IMMEDIATE; INSERT INTO cache VALUES ('stray', 1, NULL)")
            .unwrap();
        cache.set(1, 1).unwrap();
        assert_eq!(cache.get("stray").unwrap(), None, "rolled back");
        let other = Connection::open(dir.path().join(DB_FILE)).unwrap();
        other.busy_timeout(Duration::ZERO).unwrap();
        other
            .execute_batch("BEGIN IMMEDIATE; UPDATE cache SET value = 2; COMMIT")
            .expect("the write lock is free for other connections");
        assert_eq!(cache.get(1).unwrap(), Some(Value::Int(2)));
    }

    #[test]
    fn a_writer_that_keeps_failing_is_replaced_after_its_first_error() {
        let (_dir, cache) = cache();
        // As a WAL file reopened read-only after a failed open: every write
        // on this connection fails.
        lock(&cache.writer)
            .as_ref()
            .unwrap()
            .pragma_update(None, "query_only", true)
            .unwrap();
        let error = cache.set(1, 1).unwrap_err();
        assert!(error.to_string().contains("readonly"), "{error}");
        cache.set(1, 1).unwrap();
        assert_eq!(cache.incr(1, 1, None).unwrap(), 2);
    }

    #[test]
    fn a_reader_that_failed_is_closed_not_pooled() {
        let (dir, cache) = cache();
        cache.set(1, 1).unwrap();
        // A reader on which every query fails: no cache table there.
        let elsewhere = Connection::open(dir.path().join("other.db")).unwrap();
        lock(&cache.readers).push((0, elsewhere));
        assert!(cache.get(1).is_err());
        assert_eq!(cache.get(1).unwrap(), Some(Value::Int(1)));
        assert_eq!(lock(&cache.readers).len(), 1, "the fresh reader is pooled");
    }

    #[test]
    fn readers_opened_before_a_writer_failure_are_retired() {
        let (_dir, cache) = cache();
        cache.set(1, 1).unwrap();
        assert_eq!(cache.get(1).unwrap(), Some(Value::Int(1)));
        assert_eq!(lock(&cache.readers).len(), 1);
        lock(&cache.writer)
            .as_ref()
            .unwrap()
            .pragma_update(None, "query_only", true)
            .unwrap();
        assert!(cache.set(2, 2).is_err());
        assert!(lock(&cache.readers).is_empty(), "idle readers closed");
        assert!(lock(&cache.writer).is_none(), "writer closed");
        assert_eq!(cache.len().unwrap(), 1);
    }

    #[test]
    fn a_failed_write_releases_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        cache.set("text", "not a number").unwrap();
        assert!(cache.incr("text", 1, None).is_err());
        let other = Connection::open(dir.path().join(DB_FILE)).unwrap();
        other.busy_timeout(Duration::ZERO).unwrap();
        other
            .execute_batch("BEGIN IMMEDIATE; COMMIT")
            .expect("no transaction left open");
    }

    #[test]
    fn a_panic_inside_a_write_rolls_back_and_leaves_the_cache_usable() {
        let (_dir, cache) = cache();
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            cache.write(|tx, _| -> Result<(), AttemptError> {
                upsert(tx, &Key::from("half"), &Value::Int(1), None)?;
                panic!("a bug in the middle of a transaction");
            })
        }));
        assert!(panicked.is_err());
        assert!(cache.writer.is_poisoned());
        assert_eq!(cache.get("half").unwrap(), None, "rolled back");
        assert_eq!(cache.incr("n", 1, Some(0)).unwrap(), 1);
    }

    #[test]
    fn a_corrupted_database_gives_errors_and_integrity_problems_not_panics() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        for key in 0..2000 {
            cache.set(key, vec![7u8; 100]).unwrap();
        }
        let db_path = cache.db_path().to_owned();
        drop(cache);
        // Every page after the first two (header and schema) overwritten
        // with a pattern that is no valid b-tree page.
        let mut bytes = std::fs::read(&db_path).unwrap();
        assert!(bytes.len() > 100 * 1024, "{} bytes", bytes.len());
        for byte in &mut bytes[2048..] {
            *byte = 0x5a;
        }
        std::fs::write(&db_path, bytes).unwrap();

        let cache = Cache::open(dir.path()).unwrap();
        let problems = match cache.integrity_check() {
            Ok(problems) => problems.join("; "),
            Err(error) => error.to_string(),
        };
        assert!(!problems.is_empty() && problems != "ok");
        // Each operation answers, with a value or an error.
        let _ = cache.get(5);
        let _ = cache.incr(5, 1, Some(0));
        let _ = cache.set(3000, 1);
        let _ = cache.len();
        let _ = cache.iter();
        let _ = cache.pop(6);
        let _ = cache.clear();
        assert!(
            cache.len().is_err() || cache.get(7).is_err() || cache.iter().is_err(),
            "a corrupt table is noticed"
        );
    }

    #[test]
    fn integrity_check_of_a_sound_database_is_empty() {
        let (_dir, cache) = cache();
        for key in 0..500 {
            cache.incr(key, 1, Some(0)).unwrap();
        }
        assert_eq!(cache.integrity_check().unwrap(), Vec::<String>::new());
    }

    #[test]
    fn cache_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Cache>();
    }
}
