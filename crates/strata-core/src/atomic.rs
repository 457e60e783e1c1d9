//! Multi-key atomic sections: the shards of a set of keys write-locked together.

use crate::cache::Cache;
use crate::shard::{Removed, Shard};
use crate::{Error, Result};
use parking_lot::RwLockWriteGuard;
use std::cell::Cell;
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
    guards: Guards<'a, K, V>,
    /// The cache's clock, read on first use: a section that only writes without deadlines
    /// never needs it.
    now: Cell<Option<u64>>,
    out: Removed<K, V>,
}

type Guard<'a, K, V> = RwLockWriteGuard<'a, Shard<K, V>>;

/// The write guards of a section, by shard index. One shard (a single-key section, the
/// durable cache's every plain write) needs no allocation.
enum Guards<'a, K, V> {
    One(usize, Guard<'a, K, V>),
    /// Sorted by shard index, the order they were taken in.
    Many(Vec<(usize, Guard<'a, K, V>)>),
}

impl<K, V> Guards<'_, K, V> {
    fn get(&self, shard: usize) -> Option<&Shard<K, V>> {
        match self {
            Guards::One(i, g) => (*i == shard).then_some(&**g),
            Guards::Many(v) => v.binary_search_by_key(&shard, |(j, _)| *j).ok().map(|at| &*v[at].1),
        }
    }

    fn get_mut(&mut self, shard: usize) -> Option<&mut Shard<K, V>> {
        match self {
            Guards::One(i, g) => (*i == shard).then_some(&mut **g),
            Guards::Many(v) => match v.binary_search_by_key(&shard, |(j, _)| *j) {
                Ok(at) => Some(&mut *v[at].1),
                Err(_) => None,
            },
        }
    }

    fn shards(&self) -> Vec<usize> {
        match self {
            Guards::One(i, _) => vec![*i],
            Guards::Many(v) => v.iter().map(|(i, _)| *i).collect(),
        }
    }
}

impl<K, V, S> fmt::Debug for Atomic<'_, K, V, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Atomic").field("shards", &self.guards.shards()).finish_non_exhaustive()
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
        // The distinct shards, without allocating for the common single-shard section.
        let mut first = None;
        let mut more: Vec<usize> = Vec::new();
        for k in keys {
            let i = self.shard_index(self.hash(k));
            match first {
                None => first = Some(i),
                Some(f) if f == i => {}
                Some(_) => more.push(i),
            }
        }
        let guards = match first {
            None => Guards::Many(Vec::new()),
            // `more` holds only shards other than the first one.
            // Buffered reads go to the policy first, as for a plain write: the policy then
            // decides evictions with them.
            Some(i) if more.is_empty() => Guards::One(i, self.lock_for_write(i)),
            Some(i) => {
                more.push(i);
                more.sort_unstable();
                more.dedup();
                Guards::Many(more.iter().map(|&j| (j, self.lock_for_write(j))).collect())
            }
        };
        let mut section = Atomic { cache: self, guards, now: Cell::new(None), out: Removed::new() };
        // If `f` panics, what it already did stays done (the locks do not poison), and so
        // the entries it removed must still reach the listener: the panic is caught, the
        // locks released and the listener called as on a normal return, and then the
        // panic goes on. Nothing observes the section between the catch and the resume.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&mut section)));
        let Atomic { guards, out, .. } = section;
        drop(guards);
        self.finish(out);
        match result {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        }
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
        self.guards.get_mut(i).ok_or(Error::NotLocked)
    }

    fn now(&self) -> u64 {
        match self.now.get() {
            Some(now) => now,
            None => {
                let now = self.cache.now();
                self.now.set(Some(now));
                now
            }
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
        let shard = self.guards.get(self.cache.shard_index(hash)).ok_or(Error::NotLocked)?;
        // Only a shard holding timed entries needs the time to tell if one has expired.
        let now = if shard.is_timed() { self.now() } else { 0 };
        Ok(shard.live_value(hash, key, now))
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
        let timed = self.guards.get(cache.shard_index(hash)).is_some_and(|s| s.is_timed());
        let now = if timed { self.now() } else { 0 };
        let mut out = std::mem::replace(&mut self.out, Removed::new());
        let before = out.len();
        let result =
            self.locked(hash).map(|shard| shard.remove(cache.hasher(), hash, key, now, &mut out));
        cache.count_removals(out.causes().skip(before));
        self.out = out;
        result
    }
}
