//! The shared cache handle and its synchronous operations.

use crate::builder::{shard_capacity, CacheBuilder};
use crate::clock::Clock;
use crate::expiry::RemovalCause;
use crate::loader::Inflight;
use crate::shard::{read_record, Removed, Shard, TimeSettings, WriteOutcome};
use crate::stats::{self, CacheStats};
use crossbeam_utils::CachePadded;
use parking_lot::{RwLock, RwLockWriteGuard};
use std::borrow::Borrow;
use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher, Hash};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use strata_metrics::{CacheMetrics, Registry};

pub(crate) type Weigher<K, V> = Arc<dyn Fn(&K, &V) -> u32 + Send + Sync>;
pub(crate) type Listener<K, V> = Arc<dyn Fn(K, V, RemovalCause) + Send + Sync>;
pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
pub(crate) type Reloader<K, V> = Arc<dyn Fn(K) -> BoxFuture<Option<V>> + Send + Sync>;
/// The shards, each on its own cache lines so that two shards' locks never share one.
pub(crate) type Shards<K, V> = Box<[CachePadded<RwLock<Shard<K, V>>>]>;

pub(crate) struct Inner<K, V, S> {
    pub(crate) shards: Shards<K, V>,
    pub(crate) mask: usize,
    pub(crate) hasher: S,
    pub(crate) time: TimeSettings<K, V>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) weigher: Option<Weigher<K, V>>,
    pub(crate) listener: Option<Listener<K, V>>,
    /// The handles statistics are recorded into; `None` when they are off, so that every
    /// recording site costs one branch and no atomics.
    pub(crate) stats: Option<CacheMetrics>,
    /// Where `stats` is registered (the user's, or a private one); the size gauges hold
    /// `Weak` references to this `Inner`, so the registry never keeps a cache alive.
    pub(crate) registry: Arc<Registry>,
    /// The value of the `cache` label on this cache's series and tracing spans.
    pub(crate) name: String,
    pub(crate) inflight: Inflight<K>,
    pub(crate) reloader: Option<Reloader<K, V>>,
    /// The total capacity; guarded so that `set_capacity` calls do not interleave.
    pub(crate) capacity: parking_lot::Mutex<u64>,
}

/// A concurrent in-memory cache: a cheap-to-clone handle, `Send + Sync`, usable from threads
/// and async tasks alike (no operation blocks on I/O; locks are held for bounded work).
///
/// ```
/// use strata_core::Cache;
///
/// let cache: Cache<u64, String> = Cache::builder().max_capacity(10_000).build()?;
/// cache.insert(1, "one".to_string());
/// assert_eq!(cache.get(&1).as_deref(), Some("one"));
/// assert_eq!(cache.remove(&1).as_deref(), Some("one"));
/// assert!(!cache.contains_key(&1));
/// # Ok::<(), strata_core::Error>(())
/// ```
pub struct Cache<K, V, S = ahash::RandomState> {
    pub(crate) inner: Arc<Inner<K, V, S>>,
}

impl<K, V, S> Clone for Cache<K, V, S> {
    fn clone(&self) -> Self {
        Cache { inner: Arc::clone(&self.inner) }
    }
}

impl<K, V, S> fmt::Debug for Cache<K, V, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache").field("shards", &self.inner.shards.len()).finish_non_exhaustive()
    }
}

impl<K, V> Cache<K, V, ahash::RandomState>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// Starts configuring a cache.
    pub fn builder() -> CacheBuilder<K, V, ahash::RandomState> {
        CacheBuilder::new()
    }
}

/// What [`EntryRef::and_compute`] should do with the entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compute<V> {
    /// Store this value.
    Put(V),
    /// Store this value with a time to live of its own (a zero TTL removes the entry, as
    /// [`Cache::insert_with_ttl`] does).
    PutWithTtl(V, Duration),
    /// Remove the entry.
    Remove,
    /// Leave things as they are.
    Keep,
}

/// Atomic per-key operations, from [`Cache::entry`].
///
/// The closures run while the key's shard is locked for writing, so they see and decide in
/// one step (as `ConcurrentHashMap.compute` does in Java). Keep them short, and never call
/// the same cache from inside them: that would wait on the lock the closure holds.
#[must_use = "an entry does nothing until one of its methods is called"]
pub struct EntryRef<'a, K, V, S> {
    cache: &'a Cache<K, V, S>,
    key: K,
}

impl<K, V, S> fmt::Debug for EntryRef<'_, K, V, S>
where
    K: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EntryRef").field("key", &self.key).finish_non_exhaustive()
    }
}

impl<K, V, S> Cache<K, V, S>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Clone + Send + Sync + 'static,
{
    pub(crate) fn from_inner(inner: Arc<Inner<K, V, S>>) -> Self {
        Cache { inner }
    }

    #[inline]
    pub(crate) fn hash<Q: Hash + ?Sized>(&self, key: &Q) -> u64 {
        self.inner.hasher.hash_one(key)
    }

    #[inline]
    pub(crate) fn shard(&self, hash: u64) -> &RwLock<Shard<K, V>> {
        self.shard_at(self.shard_index(hash))
    }

    /// The shard a hash belongs to. It comes from bits 32.. of the hash: the table uses the
    /// low bits for its buckets and the top seven for its tags, so the shard choice takes
    /// from neither.
    #[inline]
    pub(crate) fn shard_index(&self, hash: u64) -> usize {
        (hash >> 32) as usize & self.inner.mask
    }

    #[inline]
    pub(crate) fn shard_at(&self, index: usize) -> &RwLock<Shard<K, V>> {
        &self.inner.shards[index]
    }

    pub(crate) fn hasher(&self) -> &S {
        &self.inner.hasher
    }

    #[inline]
    pub(crate) fn now(&self) -> u64 {
        self.inner.time.epoch.nanos(self.inner.clock.now())
    }

    #[inline]
    fn count(&self, f: impl FnOnce(&CacheMetrics)) {
        if let Some(s) = &self.inner.stats {
            f(s);
        }
    }

    /// Returns a clone of the value for `key`, if present and not expired, and records the
    /// read for the eviction policy (and for time-to-idle).
    #[inline]
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hash(key);
        let shard = self.shard(hash);
        let guard = shard.read();
        let Some(slot) = guard.find(hash, key) else {
            drop(guard);
            self.count(|s| s.misses.incr());
            return None;
        };
        let mut refresh = None;
        let mut shortened = None;
        if let Some(t) = guard.timing(slot) {
            let now = self.now();
            if t.expire_at.load(Ordering::Relaxed) <= now {
                drop(guard);
                self.count(|s| s.misses.incr());
                return None;
            }
            let time = &self.inner.time;
            if time.reads_need_time() {
                if let Some(at) = time.on_read(guard.entry(slot), t, now) {
                    t.expire_at.store(at, Ordering::Relaxed);
                    if at < t.scheduled {
                        shortened = Some(t.gen);
                    }
                }
                if let Some(after) = time.refresh {
                    if now.saturating_sub(t.written)
                        >= after.as_nanos().min(u128::from(u64::MAX)) as u64
                    {
                        refresh = Some((guard.entry(slot).key.clone(), t.gen));
                    }
                }
            }
        }
        let value = guard.entry(slot).value.clone();
        let full = guard.reads.record(read_record(slot, hash));
        // A full stripe is drained into the policy while we still hold the read lock: other
        // readers go on meanwhile, only writers wait. Shards with deadlines take the write
        // lock instead (if free), to reclaim expired entries in the same pass.
        let drained = full && !guard.is_timed() && guard.try_drain_shared();
        let timed = guard.is_timed();
        drop(guard);
        self.count(|s| s.hits.incr());
        if full && !drained && timed {
            self.try_maintain(shard);
        }
        if let Some(gen) = shortened {
            // Rare: an `Expiry` moved the deadline before the one the wheel will check.
            shard.write().reschedule(slot, gen);
        }
        if let Some((key, gen)) = refresh {
            self.start_refresh(key, hash, gen);
        }
        Some(value)
    }

    /// Like [`get`](Self::get), but leaves no trace: the policy, time-to-idle and the
    /// statistics do not see the read.
    pub fn peek<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hash(key);
        let guard = self.shard(hash).read();
        let slot = guard.find(hash, key)?;
        if guard.timing(slot).is_some() && guard.is_expired(slot, self.now()) {
            return None;
        }
        Some(guard.entry(slot).value.clone())
    }

    /// Whether a live entry for `key` exists (without counting as a read).
    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hash(key);
        let guard = self.shard(hash).read();
        match guard.find(hash, key) {
            Some(slot) => guard.timing(slot).is_none() || !guard.is_expired(slot, self.now()),
            None => false,
        }
    }

    /// Inserts or replaces the value for `key`.
    ///
    /// The entry may be evicted at once if the policy does not admit it or if it weighs more
    /// than the cache can hold; the removal listener then sees it with cause `Size`.
    pub fn insert(&self, key: K, value: V) {
        self.write(key, value, None);
    }

    /// Inserts with a time to live of its own, which replaces the cache-wide one for this entry.
    pub fn insert_with_ttl(&self, key: K, value: V, ttl: Duration) {
        // A zero TTL means "already expired": store nothing, but still drop the old value so
        // that a reader never sees a value older than the last write.
        if ttl.is_zero() {
            self.remove(&key);
            return;
        }
        self.write(key, value, Some(ttl));
    }

    pub(crate) fn write(&self, key: K, value: V, ttl: Option<Duration>) -> WriteOutcome {
        let hash = self.hash(&key);
        let mut out = Removed::new();
        let mut guard = self.lock_for_write(self.shard_index(hash));
        let outcome = self.write_locked(&mut guard, hash, key, value, ttl, &mut out);
        drop(guard);
        self.finish(out);
        outcome
    }

    /// Write-locks shard `i` and replays its buffered reads, so that the policy decides
    /// evictions with them. The replay holds the shard's readers back (for at most a stripe
    /// per core of records); replaying under a read lock before taking the write lock, as
    /// writes did before, costs a second lock round trip and the policy mutex's: on inserts
    /// of new keys into a full cache, 5% more time in all (measured 2026-11-24).
    pub(crate) fn lock_for_write(&self, i: usize) -> RwLockWriteGuard<'_, Shard<K, V>> {
        let mut guard = self.shard_at(i).write();
        guard.drain_reads();
        guard
    }

    /// The insert path once the shard is write-locked.
    pub(crate) fn write_locked(
        &self,
        shard: &mut Shard<K, V>,
        hash: u64,
        key: K,
        value: V,
        ttl: Option<Duration>,
        out: &mut Removed<K, V>,
    ) -> WriteOutcome {
        let weight = self.inner.weigher.as_ref().map_or(1, |w| w(&key, &value));
        // Reading the clock costs as much as the rest of a small write; skip it when no
        // entry of this shard has, or is about to get, a deadline.
        let now = if ttl.is_some() || shard.is_timed() || self.inner.time.writes_need_time() {
            self.now()
        } else {
            0
        };
        if u64::from(weight) > shard.capacity() {
            // It cannot fit even alone: refuse the new value, and drop the stale one for the
            // key. As in Caffeine and moka, the write replaced the stale value (the listener
            // sees `Replaced`, or `Expired` if it had expired) before the new one was evicted
            // (`Size`); the user removed nothing, so it is not `Explicit`.
            let mut stale = Removed::new();
            shard.remove(&self.inner.hasher, hash, &key, now, &mut stale);
            let mut outcome =
                WriteOutcome { rejected: true, evicted: 1, ..WriteOutcome::default() };
            for (k, v, cause) in stale.into_iter() {
                let cause = if cause == RemovalCause::Expired {
                    outcome.expired += 1;
                    cause
                } else {
                    outcome.updated = true;
                    RemovalCause::Replaced
                };
                out.push(k, v, cause);
            }
            out.push(key, value, RemovalCause::Size);
            self.count(|s| {
                s.admission_rejections.incr();
                s.evictions_size.incr();
                if outcome.updated {
                    s.updates.incr();
                }
                if outcome.expired > 0 {
                    s.expirations.add(outcome.expired);
                }
            });
            return outcome;
        }
        let outcome = shard.insert(
            &self.inner.hasher,
            &self.inner.time,
            hash,
            key,
            value,
            weight,
            ttl,
            now,
            out,
        );
        self.count(|s| {
            if outcome.inserted {
                s.inserts.incr();
            }
            if outcome.updated {
                s.updates.incr();
            }
            if outcome.rejected {
                s.admission_rejections.incr();
            }
            if outcome.evicted > 0 {
                s.evictions_size.add(outcome.evicted);
            }
            if outcome.expired > 0 {
                s.expirations.add(outcome.expired);
            }
        });
        outcome
    }

    /// Removes `key`, returning its value if it was live.
    pub fn remove<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hash(key);
        let mut out = Removed::new();
        let now = self.now();
        let v = self.shard(hash).write().remove(&self.inner.hasher, hash, key, now, &mut out);
        self.count_removals(out.causes());
        self.finish(out);
        v
    }

    /// Counts explicit removals and expirations found by a remove.
    pub(crate) fn count_removals(&self, causes: impl Iterator<Item = RemovalCause>) {
        self.count(|s| {
            for c in causes {
                match c {
                    RemovalCause::Expired => s.expirations.incr(),
                    _ => s.removals.incr(),
                }
            }
        });
    }

    /// Removes every entry; the listener sees each as `Explicit` (or `Expired`).
    pub fn invalidate_all(&self) {
        let now = self.now();
        for shard in self.inner.shards.iter() {
            let mut out = Removed::new();
            let (explicit, expired) = shard.write().clear(now, &mut out);
            self.count(|s| {
                s.removals.add(explicit);
                s.expirations.add(expired);
            });
            self.finish(out);
        }
    }

    /// Removes every entry for which `predicate` returns true, one shard at a time (each
    /// shard is locked while the predicate runs over it). Returns how many were removed.
    pub fn invalidate_if(&self, mut predicate: impl FnMut(&K, &V) -> bool) -> u64 {
        let now = self.now();
        let mut total = 0;
        for shard in self.inner.shards.iter() {
            let mut out = Removed::new();
            let (explicit, expired) =
                shard.write().retain(&self.inner.hasher, now, &mut predicate, &mut out);
            total += explicit;
            self.count(|s| {
                s.removals.add(explicit);
                s.expirations.add(expired);
            });
            self.finish(out);
        }
        total
    }

    /// Atomic per-key operations on `key`.
    pub fn entry(&self, key: K) -> EntryRef<'_, K, V, S> {
        EntryRef { cache: self, key }
    }

    /// Iterates over clones of the live entries.
    ///
    /// Weakly consistent, like a `ConcurrentHashMap` iterator: it never blocks writers for
    /// long (it copies a few entries at a time) and yields every entry that stays in the
    /// cache, unchanged, for the whole iteration. Entries written or removed meanwhile may or
    /// may not appear, and a key removed and written again meanwhile may appear twice.
    pub fn iter(&self) -> Iter<K, V, S> {
        Iter { cache: self.clone(), shard: 0, next: Some(0), buf: Vec::new() }
    }

    /// The number of entries held (expired entries not yet reclaimed included; call
    /// [`run_pending_tasks`](Self::run_pending_tasks) first for an exact figure).
    pub fn entry_count(&self) -> u64 {
        self.inner.shards.iter().map(|s| s.read().len() as u64).sum()
    }

    /// The total weight held (the entry count when there is no weigher).
    pub fn weighted_size(&self) -> u64 {
        self.inner.shards.iter().map(|s| s.read().weighted_size()).sum()
    }

    /// The capacity (entries, or weight with a weigher).
    pub fn capacity(&self) -> u64 {
        *self.inner.capacity.lock()
    }

    /// Changes the capacity at run time, evicting at once if the cache is now over it.
    ///
    /// # Errors
    ///
    /// [`Error::ZeroCapacity`](crate::Error::ZeroCapacity) for 0, and
    /// [`Error::InvalidConfig`](crate::Error::InvalidConfig) for a capacity below the
    /// number of shards (fixed when the cache was built): the capacity is split between the
    /// shards, and a shard given a share of zero could hold none of its keys. The capacity
    /// is left as it was.
    pub fn set_capacity(&self, capacity: u64) -> crate::Result<()> {
        if capacity == 0 {
            return Err(crate::Error::ZeroCapacity);
        }
        let n = self.inner.shards.len();
        if capacity < n as u64 {
            return Err(crate::Error::InvalidConfig(
                "the capacity must be at least the number of shards, or some shard holds nothing",
            ));
        }
        // The evicted entries reach the listener once the capacity's mutex is released: the
        // listener runs outside every lock, and may read the capacity.
        let mut removed = Vec::with_capacity(n);
        {
            let mut total = self.inner.capacity.lock();
            *total = capacity;
            for (i, shard) in self.inner.shards.iter().enumerate() {
                let mut out = Removed::new();
                let evicted = shard.write().set_capacity(
                    &self.inner.hasher,
                    shard_capacity(capacity, n, i),
                    &mut out,
                );
                self.count(|s| s.evictions_size.add(evicted));
                removed.push(out);
            }
        }
        for out in removed {
            self.finish(out);
        }
        Ok(())
    }

    /// The eviction policy's name.
    pub fn policy_name(&self) -> &'static str {
        self.inner.shards[0].read().policy_name()
    }

    /// A snapshot of the statistics (all zero but the sizes if they were turned off).
    ///
    /// ```
    /// use strata_core::Cache;
    ///
    /// let cache: Cache<u32, u32> = Cache::builder().max_capacity(10).build()?;
    /// cache.insert(1, 1);
    /// cache.get(&1);
    /// cache.get(&2);
    /// let s = cache.stats();
    /// assert_eq!((s.hits, s.misses, s.inserts, s.entry_count), (1, 1, 1, 1));
    /// assert_eq!(s.hit_ratio(), 0.5);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn stats(&self) -> CacheStats {
        match &self.inner.stats {
            Some(s) => stats::snapshot(s, self.entry_count(), self.weighted_size()),
            None => CacheStats {
                entry_count: self.entry_count(),
                weighted_size: self.weighted_size(),
                ..CacheStats::default()
            },
        }
    }

    /// The registry this cache's series live in: the one given to
    /// [`CacheBuilder::metrics`], or a private one. Take a
    /// [`snapshot`](Registry::snapshot) of it for load-latency percentiles, or report it to a
    /// [`Recorder`](strata_metrics::Recorder).
    pub fn metrics_registry(&self) -> &Arc<Registry> {
        &self.inner.registry
    }

    /// The name this cache's series carry as their `cache` label (`"default"` unless set
    /// with [`CacheBuilder::metrics`]).
    pub fn metrics_name(&self) -> &str {
        &self.inner.name
    }

    /// Renders the cache's registry in the Prometheus text format (version 0.0.4; serve it
    /// with `Content-Type: `[`strata_metrics::CONTENT_TYPE`]). A registry shared through
    /// [`CacheBuilder::metrics`] renders every component registered in it, not only this
    /// cache; with statistics off this cache contributes no series.
    ///
    /// ```
    /// use strata_core::Cache;
    ///
    /// let cache: Cache<u32, u32> = Cache::builder().max_capacity(10).build()?;
    /// cache.insert(1, 1);
    /// cache.get(&1);
    /// let text = cache.render_prometheus();
    /// assert!(text.contains("strata_cache_hits_total{cache=\"default\"} 1\n"));
    /// assert!(text.contains("strata_cache_entries{cache=\"default\"} 1\n"));
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn render_prometheus(&self) -> String {
        self.inner.registry.render_prometheus()
    }

    /// Does all pending housekeeping now: replays buffered reads to the policy and reclaims
    /// every expired entry. Normally this happens a little at a time during other calls.
    pub fn run_pending_tasks(&self) {
        let now = self.now();
        for shard in self.inner.shards.iter() {
            loop {
                let mut out = Removed::new();
                let (done, expired) = shard.write().maintain(&self.inner.hasher, now, &mut out);
                self.count(|s| s.expirations.add(expired));
                self.finish(out);
                if done {
                    break;
                }
            }
        }
    }

    /// Bounded housekeeping after a read found its buffer full; skipped if a writer is busy.
    fn try_maintain(&self, shard: &RwLock<Shard<K, V>>) {
        if let Some(mut guard) = shard.try_write() {
            let mut out = Removed::new();
            let now = self.now();
            let (_, expired) = guard.maintain(&self.inner.hasher, now, &mut out);
            drop(guard);
            self.count(|s| s.expirations.add(expired));
            self.finish(out);
        }
    }

    /// Hands removed entries to the listener, outside every lock.
    ///
    /// A panic of the listener is caught and logged per notification, as Caffeine does with
    /// a listener's exception: the entries are already out of the cache, so letting the
    /// panic unwind would only drop the batch's remaining notifications and stop an
    /// operation that works shard by shard (`invalidate_all`) partway, leaving entries
    /// behind. Unwind safety is asserted because nothing of the cache is observed after the
    /// panic but `self.inner`'s immutable fields: no lock is held here, and every shard's
    /// invariants were restored before its lock was released.
    pub(crate) fn finish(&self, out: Removed<K, V>) {
        if let Some(listener) = &self.inner.listener {
            for (k, v, cause) in out.into_iter() {
                let call = std::panic::AssertUnwindSafe(|| listener(k, v, cause));
                if let Err(panic) = std::panic::catch_unwind(call) {
                    let message = panic
                        .downcast_ref::<&str>()
                        .copied()
                        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
                        .unwrap_or("(a panic payload that is not a string)");
                    tracing::error!(
                        cache = %self.inner.name,
                        ?cause,
                        panic = message,
                        "the removal listener panicked; its notification is dropped, the \
                         others are still delivered"
                    );
                }
            }
        }
    }

    /// Writes `value` only if the entry for `key` still has write generation `gen` (the
    /// end of a refresh: a newer write wins). Returns whether it was written.
    ///
    /// The new value gets the time to live the entry was written with, counted from now: a
    /// value inserted with a TTL of its own (`insert_with_ttl`, `Compute::PutWithTtl`)
    /// would otherwise lose it on its first refresh, and never expire in a cache without a
    /// cache-wide TTL.
    pub(crate) fn write_if_generation(&self, key: K, hash: u64, gen: u32, value: V) -> bool {
        let shard = self.shard(hash);
        let mut out = Removed::new();
        let mut guard = shard.write();
        let written = match guard.generation_and_ttl(hash, &key) {
            Some((current, ttl)) if current == gen => {
                self.write_locked(&mut guard, hash, key, value, ttl, &mut out);
                true
            }
            _ => false,
        };
        drop(guard);
        self.finish(out);
        written
    }
}

impl<K, V, S> EntryRef<'_, K, V, S>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Clone + Send + Sync + 'static,
{
    /// Returns the live value, or stores and returns `make()` if there is none — atomically:
    /// of many concurrent callers for one key, exactly one `make` runs.
    pub fn or_insert_with(self, make: impl FnOnce() -> V) -> V {
        let cache = self.cache;
        let hash = cache.hash(&self.key);
        let mut out = Removed::new();
        let mut guard = cache.shard(hash).write();
        let now = cache.now();
        if let Some(v) = guard.live_value(hash, &self.key, now) {
            let v = v.clone();
            drop(guard);
            cache.count(|s| s.hits.incr());
            return v;
        }
        let v = make();
        cache.count(|s| s.misses.incr());
        cache.write_locked(&mut guard, hash, self.key, v.clone(), None, &mut out);
        drop(guard);
        cache.finish(out);
        v
    }

    /// [`or_insert_with`](Self::or_insert_with) with a ready value.
    pub fn or_insert(self, value: V) -> V {
        self.or_insert_with(|| value)
    }

    /// Reads the live value (if any) and decides what to do with it, atomically. Returns the
    /// value decided on: the current one for `Keep`, the new one for `Put` (also when the
    /// cache then refuses it, as the admission policy may refuse any new entry of a full
    /// cache), `None` for `Remove` and for a zero TTL.
    ///
    /// ```
    /// use strata_core::{Cache, Compute};
    ///
    /// let counts: Cache<&str, u64> = Cache::builder().max_capacity(100).build()?;
    /// for _ in 0..3 {
    ///     counts.entry("hits").and_compute(|v| Compute::Put(v.copied().unwrap_or(0) + 1));
    /// }
    /// assert_eq!(counts.get("hits"), Some(3));
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn and_compute(self, f: impl FnOnce(Option<&V>) -> Compute<V>) -> Option<V> {
        self.and_compute_with(|current| {
            let current = current.value();
            let decision = f(current);
            let after = match &decision {
                Compute::Keep => current.cloned(),
                Compute::Put(v) => Some(v.clone()),
                Compute::PutWithTtl(v, ttl) => (!ttl.is_zero()).then(|| v.clone()),
                Compute::Remove => None,
            };
            (decision, after)
        })
    }

    /// The general form of [`and_compute`](Self::and_compute): the closure looks at the
    /// entry if it needs to ([`Current::value`]; a blind write does not pay for the lookup),
    /// and returns its decision and a result of its own, which this returns. It is how a
    /// caller makes a side effect part of the same atomic step, or fails it without touching
    /// the entry: the durable cache appends its log record in the closure and answers `Keep`
    /// if the append failed. Nothing is cloned; the key is hashed once.
    ///
    /// The closure runs with the key's shard write-locked: other threads' reads and writes of
    /// that shard wait for it, so keep it short, and never touch the same cache from inside
    /// it (the lock is not reentrant: that deadlocks).
    ///
    /// ```
    /// use strata_core::{Cache, Compute};
    ///
    /// let stock: Cache<&str, u32> = Cache::builder().max_capacity(100).build()?;
    /// stock.insert("apples", 2);
    /// let take = |n: u32| {
    ///     stock.entry("apples").and_compute_with(|e| match e.value().copied().unwrap_or(0) {
    ///         have if have >= n => (Compute::Put(have - n), Ok(have - n)),
    ///         have => (Compute::Keep, Err(have)),
    ///     })
    /// };
    /// assert_eq!(take(1), Ok(1));
    /// assert_eq!(take(5), Err(1));
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn and_compute_with<R>(self, f: impl FnOnce(&Current<'_, K, V>) -> (Compute<V>, R)) -> R {
        let cache = self.cache;
        let hash = cache.hash(&self.key);
        let mut out = Removed::new();
        // As for a plain write: buffered reads reach the policy before it decides evictions.
        let mut guard = cache.lock_for_write(cache.shard_index(hash));
        // Only a shard holding timed entries needs the time to tell a live value.
        let now = if guard.is_timed() { cache.now() } else { 0 };
        let (decision, result) = f(&Current { shard: &guard, hash, key: &self.key, now });
        let put = match decision {
            Compute::Keep => None,
            Compute::Put(v) => Some((v, None)),
            Compute::PutWithTtl(v, ttl) if !ttl.is_zero() => Some((v, Some(ttl))),
            Compute::PutWithTtl(..) | Compute::Remove => {
                guard.remove(&cache.inner.hasher, hash, &self.key, now, &mut out);
                cache.count_removals(out.causes());
                None
            }
        };
        if let Some((v, ttl)) = put {
            cache.write_locked(&mut guard, hash, self.key, v, ttl, &mut out);
        }
        drop(guard);
        cache.finish(out);
        result
    }
}

/// The entry an [`EntryRef::and_compute_with`] closure decides about, its shard locked.
pub struct Current<'a, K, V> {
    shard: &'a Shard<K, V>,
    hash: u64,
    key: &'a K,
    now: u64,
}

impl<K, V> fmt::Debug for Current<'_, K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Current").finish_non_exhaustive()
    }
}

impl<K: Hash + Eq + 'static, V: 'static> Current<'_, K, V> {
    /// The live value, looked up now (an expired one counts as absent). Reading it is not
    /// recorded for the eviction policy or time-to-idle.
    pub fn value(&self) -> Option<&V> {
        self.shard.live_value(self.hash, self.key, self.now)
    }
}

/// A weakly consistent iterator over clones of a cache's entries; see [`Cache::iter`].
pub struct Iter<K, V, S> {
    cache: Cache<K, V, S>,
    shard: usize,
    next: Option<usize>,
    buf: Vec<(K, V)>,
}

impl<K, V, S> fmt::Debug for Iter<K, V, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Iter").field("shard", &self.shard).finish_non_exhaustive()
    }
}

/// Entries copied per lock acquisition while iterating.
const ITER_CHUNK: usize = 64;

impl<K, V, S> Iterator for Iter<K, V, S>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Clone + Send + Sync + 'static,
{
    type Item = (K, V);

    fn next(&mut self) -> Option<(K, V)> {
        loop {
            if let Some(item) = self.buf.pop() {
                return Some(item);
            }
            let shards = &self.cache.inner.shards;
            if self.shard >= shards.len() {
                return None;
            }
            match self.next {
                Some(from) => {
                    let now = self.cache.now();
                    self.next = shards[self.shard].read().snapshot_from(
                        from,
                        ITER_CHUNK,
                        now,
                        &mut self.buf,
                    );
                    self.buf.reverse();
                }
                None => {
                    self.shard += 1;
                    self.next = Some(0);
                }
            }
        }
    }
}
