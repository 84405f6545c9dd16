//! Keys spread over several [`Cache`] shards.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cache::{Cache, CacheOptions};
use crate::error::Result;
use crate::key::{Key, Value};

/// A cache whose keys are spread over `shards` [`Cache`]s in the
/// subdirectories `000`, `001`, ... of one directory, so that writers of
/// different keys rarely wait for the same lock.
///
/// A key's shard is [`Key::stable_hash`] modulo the shard count: every
/// process, in every run, puts a key on the same shard.
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let cache = cache::FanoutCache::open(dir.path(), 8)?;
/// for key in 0..20 { cache.set(key, key * 2)?; }
/// assert_eq!(cache.len()?, 20);
/// assert_eq!(cache.get(7)?, Some(cache::Value::Int(14)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct FanoutCache {
    dir: PathBuf,
    shards: Vec<Cache>,
}

impl FanoutCache {
    /// The shard count diskcache's `FanoutCache` uses by default.
    pub const DEFAULT_SHARDS: usize = 8;

    /// Opens (creating if needed) a cache of `shards` shards in `dir`.
    ///
    /// # Panics
    /// If `shards` is zero.
    pub fn open(dir: impl AsRef<Path>, shards: usize) -> Result<FanoutCache> {
        FanoutCache::open_with(dir, shards, CacheOptions::default())
    }

    /// Opens a cache of `shards` shards, each with `options`.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let options = cache::CacheOptions::default().timeout(std::time::Duration::from_secs(1));
    /// let cache = cache::FanoutCache::open_with(dir.path(), 2, options)?;
    /// assert!(dir.path().join("001").join("cache.db").exists());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open_with(
        dir: impl AsRef<Path>,
        shards: usize,
        options: CacheOptions,
    ) -> Result<FanoutCache> {
        assert!(shards > 0, "a FanoutCache needs at least one shard");
        let dir = dir.as_ref().to_owned();
        let shards = (0..shards)
            .map(|i| options.clone().open(dir.join(format!("{i:03}"))))
            .collect::<Result<_>>()?;
        Ok(FanoutCache { dir, shards })
    }

    /// The directory holding the shards.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The shards, in order.
    pub fn shards(&self) -> &[Cache] {
        &self.shards
    }

    /// The shard that holds `key`: the same in every process.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let cache = cache::FanoutCache::open(dir.path(), 8)?;
    /// cache.set(42, 1)?;
    /// let key = cache::Key::from(42);
    /// assert!(cache.shard(&key).contains(42)?);
    /// assert!(cache.shard(&key).db_path().starts_with(cache.dir()));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn shard(&self, key: &Key) -> &Cache {
        &self.shards[(key.stable_hash() % self.shards.len() as u64) as usize]
    }

    /// [`Cache::get`] on the key's shard.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let cache = cache::FanoutCache::open(dir.path(), 3)?;
    /// cache.set("k", 1)?;
    /// assert_eq!(cache.get("k")?, Some(cache::Value::Int(1)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get(&self, key: impl Into<Key>) -> Result<Option<Value>> {
        let key = key.into();
        self.shard(&key).get(key)
    }

    /// [`Cache::set`] on the key's shard.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let cache = cache::FanoutCache::open(dir.path(), 4)?;
    /// cache.set(b"k".as_slice(), "v")?;
    /// assert_eq!(cache.get(b"k".as_slice())?, Some(cache::Value::from("v")));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set(&self, key: impl Into<Key>, value: impl Into<Value>) -> Result<()> {
        let key = key.into();
        self.shard(&key).set(key, value)
    }

    /// [`Cache::set_with_ttl`] on the key's shard.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let cache = cache::FanoutCache::open(dir.path(), 4)?;
    /// cache.set_with_ttl("gone", 1, std::time::Duration::ZERO)?;
    /// assert_eq!(cache.get("gone")?, None);
    /// assert_eq!(cache.len()?, 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_with_ttl(
        &self,
        key: impl Into<Key>,
        value: impl Into<Value>,
        ttl: Duration,
    ) -> Result<()> {
        let key = key.into();
        self.shard(&key).set_with_ttl(key, value, ttl)
    }

    /// [`Cache::add`] on the key's shard.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let cache = cache::FanoutCache::open(dir.path(), 4)?;
    /// assert!(cache.add(1, "first")?);
    /// assert!(!cache.add(1, "second")?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn add(&self, key: impl Into<Key>, value: impl Into<Value>) -> Result<bool> {
        let key = key.into();
        self.shard(&key).add(key, value)
    }

    /// [`Cache::incr`] on the key's shard: atomic across threads and processes.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let cache = cache::FanoutCache::open(dir.path(), 8)?;
    /// assert_eq!(cache.incr(0, 1, Some(0))?, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn incr(&self, key: impl Into<Key>, delta: i64, default: Option<i64>) -> Result<i64> {
        let key = key.into();
        self.shard(&key).incr(key, delta, default)
    }

    /// [`Cache::decr`] on the key's shard.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let cache = cache::FanoutCache::open(dir.path(), 4)?;
    /// assert_eq!(cache.decr("stock", 2, Some(5))?, 3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn decr(&self, key: impl Into<Key>, delta: i64, default: Option<i64>) -> Result<i64> {
        let key = key.into();
        self.shard(&key).decr(key, delta, default)
    }

    /// [`Cache::delete`] on the key's shard.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let cache = cache::FanoutCache::open(dir.path(), 4)?;
    /// cache.set(1, 1)?;
    /// assert!(cache.delete(1)?);
    /// assert!(!cache.contains(1)?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn delete(&self, key: impl Into<Key>) -> Result<bool> {
        let key = key.into();
        self.shard(&key).delete(key)
    }

    /// [`Cache::pop`] on the key's shard.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let cache = cache::FanoutCache::open(dir.path(), 4)?;
    /// cache.set(1, 10)?;
    /// assert_eq!(cache.pop(1)?, Some(cache::Value::Int(10)));
    /// assert_eq!(cache.pop(1)?, None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn pop(&self, key: impl Into<Key>) -> Result<Option<Value>> {
        let key = key.into();
        self.shard(&key).pop(key)
    }

    /// [`Cache::contains`] on the key's shard.
    pub fn contains(&self, key: impl Into<Key>) -> Result<bool> {
        let key = key.into();
        self.shard(&key).contains(key)
    }

    /// Items present and not expired, over all shards.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let cache = cache::FanoutCache::open(dir.path(), 4)?;
    /// for key in 0..10 { cache.set(key, key)?; }
    /// assert_eq!(cache.len()?, 10);
    /// assert!(!cache.is_empty()?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn len(&self) -> Result<u64> {
        self.shards.iter().map(Cache::len).sum()
    }

    /// Whether no shard holds an item.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Removes every item from every shard; returns how many rows it removed.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let cache = cache::FanoutCache::open(dir.path(), 4)?;
    /// for key in 0..10 { cache.set(key, 0)?; }
    /// assert_eq!(cache.clear()?, 10);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn clear(&self) -> Result<u64> {
        self.shards.iter().map(Cache::clear).sum()
    }

    /// Removes expired items from every shard; returns how many.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let cache = cache::FanoutCache::open(dir.path(), 4)?;
    /// cache.set_with_ttl("a", 1, std::time::Duration::ZERO)?;
    /// cache.set("b", 1)?;
    /// assert_eq!(cache.expire()?, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn expire(&self) -> Result<u64> {
        self.shards.iter().map(Cache::expire).sum()
    }

    /// The keys of all shards, in the same order as [`Cache::iter`].
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let cache = cache::FanoutCache::open(dir.path(), 8)?;
    /// for key in (0..100).rev() { cache.set(key, 0)?; }
    /// assert!(cache.iter()?.eq((0..100).map(cache::Key::from)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn iter(&self) -> Result<std::vec::IntoIter<Key>> {
        let mut keys = Vec::new();
        for shard in &self.shards {
            keys.extend(shard.iter()?);
        }
        keys.sort_unstable();
        Ok(keys.into_iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_land_on_their_hashed_shard_only() {
        let dir = tempfile::tempdir().unwrap();
        let cache = FanoutCache::open(dir.path(), 4).unwrap();
        for key in 0..40 {
            cache.set(key, key).unwrap();
        }
        for (index, shard) in cache.shards().iter().enumerate() {
            for key in shard.iter().unwrap() {
                assert_eq!(key.stable_hash() % 4, index as u64);
            }
        }
        let per_shard: Vec<u64> = cache.shards().iter().map(|s| s.len().unwrap()).collect();
        assert_eq!(per_shard.iter().sum::<u64>(), 40);
        assert!(
            per_shard.iter().all(|&n| n > 0),
            "keys spread over all shards: {per_shard:?}"
        );
    }

    #[test]
    fn reopening_finds_the_same_items() {
        let dir = tempfile::tempdir().unwrap();
        {
            let cache = FanoutCache::open(dir.path(), 8).unwrap();
            for key in 0..100 {
                cache.incr(key, key, Some(0)).unwrap();
            }
        }
        let cache = FanoutCache::open(dir.path(), 8).unwrap();
        for key in 0..100 {
            assert_eq!(cache.get(key).unwrap(), Some(Value::Int(key)));
        }
        assert_eq!(cache.clear().unwrap(), 100);
        assert!(cache.is_empty().unwrap());
    }

    #[test]
    fn every_operation_routes_through_the_shard() {
        let dir = tempfile::tempdir().unwrap();
        let cache = FanoutCache::open(dir.path(), 3).unwrap();
        assert!(cache.add("a", 1).unwrap());
        assert_eq!(cache.decr("a", 1, None).unwrap(), 0);
        assert!(cache.contains("a").unwrap());
        cache.set_with_ttl("t", 1, Duration::ZERO).unwrap();
        assert!(!cache.contains("t").unwrap());
        assert_eq!(cache.expire().unwrap(), 1);
        assert_eq!(cache.pop("a").unwrap(), Some(Value::Int(0)));
        assert!(!cache.delete("a").unwrap());
    }

    #[test]
    fn fanout_cache_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<FanoutCache>();
    }
}
