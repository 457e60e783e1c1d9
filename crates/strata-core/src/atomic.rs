//! Multi-key atomic sections: the shards of a set of keys write-locked together.

use crate::cache::Cache;
use crate::shard::{Removed, Shard};
use crate::{Error, Result};
use parking_lot::RwLockWriteGuard;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::time::Duration;

/// Exclusive access to the keys of some shards, for the length of one
/// [`Cache::atomically`] call.
///
/// Every operation applies at once to the cache, but no other thread can observe any of them
/// until the section ends, since it holds the write locks of every shard it may touch: to
/// the rest of the program, the whole section happens at one instant.
pub struct Atomic<'a, K, V, S> {
    cache: &'a Cache<K, V, S>,
    /// Write guards, sorted by shard index (the order they were taken in).
    guards: Vec<(usize, RwLockWriteGuard<'a, Shard<K, V>>)>,
    now: u64,
    out: Removed<K, V>,
}

impl<K, V, S> fmt::Debug for Atomic<'_, K, V, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shards: Vec<usize> = self.guards.iter().map(|(i, _)| *i).collect();
        f.debug_struct("Atomic").field("shards", &shards).finish_non_exhaustive()
    }
}

impl<K, V, S> Cache<K, V, S>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Clone + Send + Sync + 'static,
{
    /// Runs `f` with the shards of `keys` write-locked, so that everything `f` does through
    /// its [`Atomic`] becomes visible to other threads at one instant.
    ///
    /// Locks are taken in shard order, so two sections over overlapping keys never deadlock;
    /// removal listeners run after the locks are released. `f` may touch any key whose shard
    /// is locked (not only those named); a key of another shard is refused with
    /// [`Error::NotLocked`]. Keep `f` short and free of I/O: it blocks every reader and
    /// writer of the locked shards, and it must not call back into this cache (a shard lock
    /// is not reentrant).
    ///
    /// ```
    /// use strata_core::Cache;
    ///
    /// let accounts: Cache<&str, i64> = Cache::builder().max_capacity(100).build()?;
    /// accounts.insert("alice", 10);
    /// accounts.insert("bob", 0);
    /// accounts.atomically(&["alice", "bob"], |tx| -> strata_core::Result<()> {
    ///     let a = tx.get(&"alice")?.copied().unwrap_or(0);
    ///     let b = tx.get(&"bob")?.copied().unwrap_or(0);
    ///     tx.insert("alice", a - 3)?;
    ///     tx.insert("bob", b + 3)?;
    ///     Ok(())
    /// })?;
    /// assert_eq!(accounts.get("alice").unwrap() + accounts.get("bob").unwrap(), 10);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn atomically<'k, R>(
        &self,
        keys: impl IntoIterator<Item = &'k K>,
        f: impl FnOnce(&mut Atomic<'_, K, V, S>) -> R,
    ) -> R
    where
        K: 'k,
    {
        let mut shards: Vec<usize> =
            keys.into_iter().map(|k| self.shard_index(self.hash(k))).collect();
        shards.sort_unstable();
        shards.dedup();
        // Buffered reads go to the policies first, under the read locks, as a plain write
        // does: the policies then decide evictions with them.
        for &i in &shards {
            self.shard_at(i).read().try_drain_shared();
        }
        let guards = shards.iter().map(|&i| (i, self.shard_at(i).write())).collect();
        let mut section = Atomic { cache: self, guards, now: self.now(), out: Removed::new() };
        let result = f(&mut section);
        let Atomic { guards, out, .. } = section;
        drop(guards);
        self.finish(out);
        result
    }
}

impl<K, V, S> Atomic<'_, K, V, S>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Clone + Send + Sync + 'static,
{
    fn locked(&mut self, hash: u64) -> Result<&mut Shard<K, V>> {
        let i = self.cache.shard_index(hash);
        match self.guards.binary_search_by_key(&i, |(j, _)| *j) {
            Ok(at) => Ok(&mut self.guards[at].1),
            Err(_) => Err(Error::NotLocked),
        }
    }

    /// The live value of `key`. Reads inside a section are not recorded for the eviction
    /// policy or time-to-idle (like [`Cache::peek`]).
    ///
    /// # Errors
    ///
    /// [`Error::NotLocked`] if the key's shard is not locked by this section.
    pub fn get(&self, key: &K) -> Result<Option<&V>> {
        let hash = self.cache.hash(key);
        let i = self.cache.shard_index(hash);
        let at = self.guards.binary_search_by_key(&i, |(j, _)| *j).map_err(|_| Error::NotLocked)?;
        Ok(self.guards[at].1.live_value(hash, key, self.now))
    }

    /// Inserts or replaces, with the cache-wide expiry settings.
    ///
    /// # Errors
    ///
    /// [`Error::NotLocked`] if the key's shard is not locked by this section.
    pub fn insert(&mut self, key: K, value: V) -> Result<()> {
        self.write(key, value, None)
    }

    /// Inserts or replaces with a time to live of its own; a zero TTL removes the key.
    ///
    /// # Errors
    ///
    /// [`Error::NotLocked`] if the key's shard is not locked by this section.
    pub fn insert_with_ttl(&mut self, key: K, value: V, ttl: Duration) -> Result<()> {
        if ttl.is_zero() {
            return self.remove(&key).map(drop);
        }
        self.write(key, value, Some(ttl))
    }

    fn write(&mut self, key: K, value: V, ttl: Option<Duration>) -> Result<()> {
        let hash = self.cache.hash(&key);
        let cache = self.cache;
        let mut out = std::mem::replace(&mut self.out, Removed::new());
        let result = self.locked(hash).map(|shard| {
            cache.write_locked(shard, hash, key, value, ttl, &mut out);
        });
        self.out = out;
        result
    }

    /// Removes `key`, returning its value if it was live.
    ///
    /// # Errors
    ///
    /// [`Error::NotLocked`] if the key's shard is not locked by this section.
    pub fn remove(&mut self, key: &K) -> Result<Option<V>> {
        let hash = self.cache.hash(key);
        let cache = self.cache;
        let now = self.now;
        let mut out = std::mem::replace(&mut self.out, Removed::new());
        let before = out.len();
        let result =
            self.locked(hash).map(|shard| shard.remove(cache.hasher(), hash, key, now, &mut out));
        cache.count_removals(out.causes().skip(before));
        self.out = out;
        result
    }
}
