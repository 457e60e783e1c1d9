//! The durable cache: strata-core's in-memory cache joined to strata-wal's write-ahead log,
//! with warm restarts, background checkpoints and optimistic multi-key transactions.
//!
//! ```
//! use strata_tier::durable::{DurableCache, DurableOptions};
//!
//! # fn main() -> strata_tier::Result<()> {
//! let dir = tempfile::tempdir().map_err(|e| strata_tier::Error::io("tempdir", "/tmp", e))?;
//! let cache: DurableCache<String, u64> = DurableCache::open(dir.path(), DurableOptions::new())?;
//! cache.insert("alice".into(), 10)?;
//! cache.insert("bob".into(), 0)?;
//! cache.transaction(|tx| -> strata_tier::Result<()> {
//!     let a = tx.get(&"alice".to_string())?.unwrap_or(0);
//!     let b = tx.get(&"bob".to_string())?.unwrap_or(0);
//!     tx.insert("alice".into(), a - 3)?;
//!     tx.insert("bob".into(), b + 3)?;
//!     Ok(())
//! })?;
//! cache.close_blocking()?;
//! drop(cache);
//!
//! let cache: DurableCache<String, u64> = DurableCache::open(dir.path(), DurableOptions::new())?;
//! assert_eq!(cache.get(&"alice".to_string()), Some(7));
//! assert_eq!(cache.get(&"bob".to_string()), Some(3));
//! # Ok(())
//! # }
//! ```
//!
//! # How it is built
//!
//! A [`DurableCache`] holds a `strata_core::Cache<K, Stored<V>>` (each value with its version
//! and absolute expiry), a [`Wal`], a key and a value [`Codec`], and a global version counter.
//!
//! **Versions.** Every write (put, remove, clear, each write of a transaction) takes the next
//! value of one counter, while the shard lock of its key is held. So for any one key, versions
//! increase in the order the writes were applied and logged. Version 0 means "absent". Versions
//! are what optimistic transactions and [`DurableCache::compare_and_swap`] validate against,
//! and what recovery uses to order a snapshot against the log. The counter resumes above
//! every version in the log (a snapshot ends with a `Floor` record for that), so a version a
//! client saw is never handed out again for another write. (The exception is a write that a
//! power loss took back under `Interval` or `Never`: its version may be reused, as its value
//! is lost.)
//!
//! **Write path.** Keys and values are encoded first, outside every lock: an encoding error or
//! an oversized value returns an error and changes nothing. Then, with the key's shard
//! write-locked (`EntryRef::and_compute_with` for a single-key write, `Cache::atomically` for
//! a remove and a transaction), the record is appended to the WAL (handed to the OS, not yet
//! fsynced) and the value is applied in memory. The record's version is taken inside the
//! append, under the WAL's lock ([`Wal::append_nowait_with`]), so versions increase in log
//! order and taking one needs no atomic read-modify-write. Holding the shard lock across
//! append and apply makes the per-key log order equal the apply order, and means no reader
//! sees a value before its record is in the log. The wait for durability happens
//! *after* the lock is released ([`Wal::append_nowait`] then [`Wal::wait_durable`]), so under
//! [`SyncPolicy::Always`] committers on different shards share one fsync (group commit).
//! An operation returns once the WAL has honoured the policy. Under `Interval` and `Never`
//! the WAL copies records into a memory-mapped segment (no system call per write; the copy
//! is in the page cache, so it survives a process crash as a `write` would).
//!
//! **Clear.** [`DurableCache::clear`] logs `Clear { c }`, taking the version `c` as any write
//! does, and removes from memory, shard by shard, every entry whose version is below `c`;
//! recovery does the same, and also skips every later-logged put whose version is below `c`
//! (logs written before versions were taken under the WAL's lock can hold such puts). Writes
//! that read (compare-and-swap, remove, which returns the old value, and transaction commits)
//! hold a shared `gate` lock that clear holds exclusively, so they never see half a clear. A
//! plain insert does without (two atomic operations fewer on the hottest path), and still
//! agrees with the log: it takes its version and applies its value within one hold of its shard
//! lock, so if its version is below `c`, its record came before the clear's, its hold before
//! the clear reached that shard, and the clear removes it, as recovery does; if its version
//! is above `c`, it stays in memory and in the log alike.
//!
//! **Expiry.** A TTL becomes an absolute wall-clock [`ExpiresAt`] (from the clock's
//! [`wall`](strata_core::Clock::wall)) where the write happens, and is logged as such. In
//! memory the entry also gets the remaining time as its cache TTL so that it is reclaimed, and
//! every read checks the wall-clock expiry itself. Recovery drops every entry whose expiry has
//! passed.
//!
//! **Evictions are not logged.** The in-memory cache is bounded and may evict (or its
//! admission policy may refuse a new key). An evicted key reads as absent; after a restart it
//! may come back, but only with its latest acknowledged value, never an older one (recovery
//! keeps the highest version of each key). Size the capacity above the live key count if every
//! key must stay readable, as transactional data (account balances) usually requires.
//!
//! # Recovery and checkpoints
//!
//! [`DurableCache::open`] replays the WAL into a map from key to (value bytes, version,
//! expiry): a put or remove applies only if its version is higher than the map's entry for the
//! key; a clear removes entries with a lower version; a transaction record applies all its
//! writes. Expired entries are dropped, the rest decoded and inserted into the cache.
//!
//! When the bytes logged since the last checkpoint pass [`DurableOptions::checkpoint_bytes`],
//! a background thread writes a snapshot: [`Wal::begin_checkpoint`] closes the active segment
//! (covered sequence number `S`), the thread iterates the cache (64 entries per shard read
//! lock, so no reader or writer waits longer than one such chunk) and appends a `Put` per live
//! entry with its version, then a `Floor`; `finish` switches the manifest and drops the
//! covered segments. The snapshot is not a point-in-time image: writes continue while it is
//! taken. Why replaying the log tail (records with sequence number above `S`) over it still
//! rebuilds the exact state:
//!
//! 1. Every write with sequence number `<= S` was appended, and therefore applied in memory
//!    under its shard lock, before `begin_checkpoint` returned; the iteration reads each shard
//!    after that, so for every key the snapshot holds that key's state after *at least* all
//!    writes up to `S`, possibly after some later ones too.
//! 2. Every write after `S` is in the tail, in sequence order, which per key is version
//!    order. Replaying "apply only if newer" over the snapshot therefore skips exactly the
//!    tail writes the snapshot already reflects and applies the rest in order: each key ends
//!    at its last logged write, as without the checkpoint.
//! 3. A key absent from the snapshot (removed, expired or evicted when iterated) gets every
//!    tail write applied in order; a key evicted before being iterated and not written since
//!    is lost, which is what eviction means, and never replaced by an older value.
//! 4. A clear after `S` removes exactly the entries with lower versions, as it did in memory.
//!    A clear logged up to `S` may still be removing entries while the snapshot is taken:
//!    the snapshot leaves out every entry with a version below the latest clear's (published
//!    under the log's lock once that clear's record is logged, so never for a clear that
//!    failed), and starts with a `Clear` record of that version, so that replay also skips an
//!    insert of a lower version in the tail (only older logs hold one: versions now increase
//!    in log order).
//!
//! # Transactions
//!
//! [`DurableCache::transaction`] runs a closure against a [`Transaction`] that buffers writes
//! and records the version of every key it reads (reads see the transaction's own writes).
//! Commit write-locks the shards of every key read or written (in shard order, so commits never
//! deadlock), checks that every read version is still current, appends *one* `Txn` record
//! holding all writes, applies them, unlocks, and waits for durability. A torn `Txn` record
//! fails its checksum and is dropped whole by recovery, so a crash never exposes part of a
//! transaction. On a conflict the closure runs again, up to [`DurableOptions::max_attempts`]
//! times, then [`Error::Conflict`] is returned. The result is serializable: every committed
//! transaction behaves as if it ran alone at its commit instant. Each read also re-checks
//! the versions of the earlier reads, so a closure never sees a mix of states (opacity); when
//! it does detect a change, the read returns [`Error::Conflict`] and the attempt is rerun,
//! whatever the closure returns. An `Err` returned by the closure discards the buffered
//! writes and is handed back; a panic unwinds through `transaction` with nothing applied (the
//! buffer lives in the `Transaction`, dropped during unwinding). docs/durability.md compares
//! this with Redis MULTI/EXEC and RocksDB transactions.

mod record;
mod txn;

pub use txn::Transaction;

use std::collections::hash_map::{Entry, HashMap};
use std::fmt;
use std::hash::Hash;
use std::num::NonZeroU64;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::{Condvar, Mutex, RwLock};
use serde::de::DeserializeOwned;
use serde::Serialize;
use strata_core::{Cache, Clock, Compute, SystemClock};
use strata_metrics::Registry;
use strata_wal::{CheckpointInfo, RecoveryMode, SyncPolicy, Wal};

use crate::{Codec, Error, ExpiresAt, Postcard, Result};
use record::{LogRecord, Put, Remove};

/// The write path compares the log's growth with the checkpoint threshold once every this
/// many records.
const CHECK_EVERY: u64 = 64;

/// How often the checkpoint thread looks whether its cache is gone, when nothing wakes it.
const WORKER_POLL: Duration = Duration::from_millis(200);

/// A value as the in-memory cache holds it, packed so that the cache's slot for it needs no
/// tag of its own: with a `u64` key and value a slot is 32 bytes instead of 40, and every
/// insert touches a fifth less memory.
#[derive(Clone, Debug)]
struct Stored<V> {
    value: V,
    /// The write's version, never 0 (0 means "absent"); `NonZeroU64` lends the slot its niche.
    version: NonZeroU64,
    /// The absolute expiry in Unix milliseconds, 0 for none (a deadline is never 0: see
    /// [`Stored::new`]).
    expires_ms: u64,
}

impl<V> Stored<V> {
    fn new(value: V, version: u64, expires_at: Option<ExpiresAt>) -> Self {
        Stored {
            value,
            // Versions start at 1; a damaged log claiming 0 is read as the lowest version.
            version: NonZeroU64::new(version).unwrap_or(NonZeroU64::MIN),
            // A deadline of 0 ms (1970) has passed anyway; 1 ms keeps it apart from "none".
            expires_ms: expires_at.map_or(0, |e| e.0.max(1)),
        }
    }

    fn version(&self) -> u64 {
        self.version.get()
    }

    fn expires_at(&self) -> Option<ExpiresAt> {
        (self.expires_ms != 0).then_some(ExpiresAt(self.expires_ms))
    }

    fn is_live(&self, now: SystemTime) -> bool {
        self.expires_at().is_none_or(|e| !e.is_expired(now))
    }
}

/// How a [`DurableCache`] is opened; chained setters, checked by [`DurableCache::open`].
pub struct DurableOptions<K, V> {
    capacity: u64,
    shards: Option<usize>,
    sync_policy: SyncPolicy,
    recovery_mode: RecoveryMode,
    checkpoint_bytes: Option<u64>,
    segment_size: u64,
    max_record_size: usize,
    write_buffer: usize,
    max_attempts: u32,
    keys: Arc<dyn Codec<K>>,
    values: Arc<dyn Codec<V>>,
    clock: Arc<dyn Clock>,
    metrics: Option<(Arc<Registry>, String)>,
}

impl<K, V> fmt::Debug for DurableOptions<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DurableOptions")
            .field("capacity", &self.capacity)
            .field("sync_policy", &self.sync_policy)
            .field("recovery_mode", &self.recovery_mode)
            .field("checkpoint_bytes", &self.checkpoint_bytes)
            .field("max_attempts", &self.max_attempts)
            .finish_non_exhaustive()
    }
}

impl<K, V> DurableOptions<K, V>
where
    K: Serialize + DeserializeOwned,
    V: Serialize + DeserializeOwned,
{
    /// The defaults, with postcard codecs ([`Postcard::keys`], [`Postcard::values`]): 100,000
    /// entries, [`SyncPolicy::Always`], [`RecoveryMode::TolerateTornTail`], a checkpoint every
    /// 64 MiB of log, 64 MiB segments, 32 transaction attempts, the system clock.
    pub fn new() -> Self {
        Self::with_codecs(Postcard::keys(), Postcard::values())
    }
}

impl<K, V> Default for DurableOptions<K, V>
where
    K: Serialize + DeserializeOwned,
    V: Serialize + DeserializeOwned,
{
    fn default() -> Self {
        Self::new()
    }
}

impl<K, V> DurableOptions<K, V> {
    /// The defaults of [`DurableOptions::new`] with codecs of your own. A key codec must be
    /// deterministic (one key, one encoding).
    pub fn with_codecs(keys: impl Codec<K>, values: impl Codec<V>) -> Self {
        DurableOptions {
            capacity: 100_000,
            shards: None,
            sync_policy: SyncPolicy::Always,
            recovery_mode: RecoveryMode::TolerateTornTail,
            checkpoint_bytes: Some(64 << 20),
            segment_size: 64 << 20,
            max_record_size: 32 << 20,
            write_buffer: 0,
            max_attempts: 32,
            keys: Arc::new(keys),
            values: Arc::new(values),
            clock: Arc::new(SystemClock),
            metrics: None,
        }
    }

    /// How many entries the in-memory cache holds (evictions beyond it are not logged; see
    /// the module docs).
    pub fn capacity(mut self, entries: u64) -> Self {
        self.capacity = entries;
        self
    }

    /// The in-memory cache's shard count (a power of two; default: the core's choice).
    pub fn shards(mut self, shards: usize) -> Self {
        self.shards = Some(shards);
        self
    }

    /// When writes are fsynced; docs/durability.md says what each policy may lose.
    pub fn sync_policy(mut self, policy: SyncPolicy) -> Self {
        self.sync_policy = policy;
        self
    }

    /// What recovery does with damaged log records.
    pub fn recovery_mode(mut self, mode: RecoveryMode) -> Self {
        self.recovery_mode = mode;
        self
    }

    /// Log bytes after which a background checkpoint starts; `None` turns background
    /// checkpoints off ([`DurableCache::checkpoint`] still works).
    pub fn checkpoint_bytes(mut self, bytes: Option<u64>) -> Self {
        self.checkpoint_bytes = bytes;
        self
    }

    /// The WAL's segment size (default 64 MiB).
    pub fn segment_size(mut self, bytes: u64) -> Self {
        self.segment_size = bytes;
        self
    }

    /// The largest log record (one write, or one whole transaction) and the most recovery
    /// allocates for one record (default 32 MiB). Reopen with at least the size written with.
    pub fn max_record_size(mut self, bytes: usize) -> Self {
        self.max_record_size = bytes;
        self
    }

    /// Bytes of log records to collect in memory before one `write` to the OS (default 0:
    /// one `write` per operation); only with [`SyncPolicy::Interval`] or [`SyncPolicy::Never`].
    /// The price: acknowledged writes still in the buffer (at most this many bytes, and under
    /// `Interval(d)` at most the last `d`) are lost by a *process* crash too, not only by a
    /// power loss. With the standard file system on Linux it has no effect: under these
    /// policies the log's segments are memory-mapped, so a write is already a memory copy
    /// into the page cache, as cheap as one into the buffer, and survives a process crash
    /// ([`strata_wal::FileSystem::create_mapped`]). See docs/durability.md.
    pub fn write_buffer(mut self, bytes: usize) -> Self {
        self.write_buffer = bytes;
        self
    }

    /// How many times a conflicting transaction runs before [`Error::Conflict`] (default 32).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts;
        self
    }

    /// The clock: monotonic time for the in-memory cache, wall time for expiry deadlines.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Records the cache's statistics (hits, misses, inserts, evictions, ...) and the
    /// log's (appends, bytes, fsyncs with latency, checkpoints, recovery) in `registry`,
    /// labelled `name`, for [`strata_metrics::TextEncoder`] or a `Recorder`.
    pub fn metrics(mut self, registry: Arc<Registry>, name: impl Into<String>) -> Self {
        self.metrics = Some((registry, name.into()));
        self
    }

    fn validate(&self) -> Result<()> {
        let bad = |s: &str| Err(Error::InvalidConfig(s.to_string()));
        if self.capacity == 0 {
            return bad("capacity must be at least 1 entry");
        }
        if self.max_attempts == 0 {
            return bad("max_attempts must be at least 1");
        }
        if self.checkpoint_bytes == Some(0) {
            return bad(
                "checkpoint_bytes must be positive (or None for no background checkpoints)",
            );
        }
        Ok(())
    }
}

/// What [`DurableCache::open`] recovered.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecoveryStats {
    /// Records read from the last checkpoint's snapshot.
    pub snapshot_records: u64,
    /// Records read from the log after the snapshot.
    pub log_records: u64,
    /// Live entries loaded into the cache.
    pub entries: u64,
    /// Entries dropped because their expiry had passed.
    pub expired: u64,
    /// Bytes of a torn log tail that the WAL truncated.
    pub bytes_truncated: u64,
    /// Log records skipped as corrupt (only with [`RecoveryMode::SkipCorrupt`]).
    pub skipped: u64,
    /// How long opening took, replay included.
    pub duration: Duration,
}

/// The background checkpoint thread's mailbox.
#[derive(Debug, Default)]
struct Signal {
    state: Mutex<SignalState>,
    cv: Condvar,
}

#[derive(Debug, Default)]
struct SignalState {
    requested: bool,
    stop: bool,
}

impl Signal {
    fn request(&self) {
        self.state.lock().requested = true;
        self.cv.notify_one();
    }

    fn stop(&self) {
        self.state.lock().stop = true;
        self.cv.notify_one();
    }
}

pub(crate) struct Inner<K, V> {
    cache: Cache<K, Stored<V>>,
    wal: Wal,
    dir: PathBuf,
    keys: Arc<dyn Codec<K>>,
    values: Arc<dyn Codec<V>>,
    clock: Arc<dyn Clock>,
    /// The next version to hand out. Changed only in [`Inner::append_then`], under the WAL's
    /// lock (and at open, before anyone else can): versions increase in log order, and a
    /// plain load and store take one, with no atomic read-modify-write. Checkpoints read it
    /// without the lock; any value since their snapshot began is high enough (see
    /// `LogRecord::Floor`).
    next_version: AtomicU64,
    /// Compare-and-swap, remove and transaction commits hold it shared,
    /// [`DurableCache::clear`] exclusively; plain inserts do without (see the module docs).
    gate: RwLock<()>,
    /// The version of the latest clear: every write with a lower version is cleared.
    cleared_below: AtomicU64,
    /// Set by `close`; writes check it first (the WAL refuses them anyway once closed).
    closed: AtomicBool,
    policy: SyncPolicy,
    max_attempts: u32,
    /// The log's [`Wal::appended_bytes`] when the last checkpoint began.
    since: AtomicU64,
    /// Set when a checkpoint has been asked for and has not begun: the threshold is not
    /// looked at again meanwhile.
    checkpoint_due: AtomicBool,
    checkpoint_bytes: Option<u64>,
    signal: Arc<Signal>,
    worker: Mutex<Option<JoinHandle<()>>>,
    recovery: RecoveryStats,
    checkpoints: AtomicU64,
    checkpoint_failures: AtomicU64,
}

impl<K, V> Drop for Inner<K, V> {
    fn drop(&mut self) {
        // The worker holds only a `Weak`; telling it to stop lets it exit without waiting
        // for its next poll. Nothing is synced here: persistence never depends on `Drop`.
        self.signal.stop();
    }
}

/// A durable, transactional cache; see the [module docs](self).
///
/// A cheap-to-clone handle (`Send + Sync`); clones share one cache and one log.
pub struct DurableCache<K, V> {
    inner: Arc<Inner<K, V>>,
}

impl<K, V> Clone for DurableCache<K, V> {
    fn clone(&self) -> Self {
        DurableCache { inner: Arc::clone(&self.inner) }
    }
}

impl<K, V> fmt::Debug for DurableCache<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DurableCache")
            .field("dir", &self.inner.dir)
            .field("policy", &self.inner.policy)
            .finish_non_exhaustive()
    }
}

/// A recovered entry.
struct Slot<V> {
    value: V,
    version: u64,
    expires_at: Option<u64>,
}

/// A buffer that grew past this (a large value) is freed after use rather than kept.
const SCRATCH_KEEP: usize = 256 << 10;

thread_local! {
    /// Per-thread buffer for a single-key write's log record, so that the write path
    /// allocates nothing for its bytes.
    static SCRATCH: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// This thread's record buffer, taken out of its slot for one write and put back, empty,
/// when dropped. A codec that calls back into the cache meanwhile finds the slot empty and
/// simply grows a buffer of its own; a panic loses the buffer, nothing else.
struct Scratch(Vec<u8>);

impl Scratch {
    fn take() -> Self {
        // During thread teardown the slot may be gone: a fresh buffer does as well.
        Scratch(SCRATCH.try_with(std::cell::Cell::take).unwrap_or_default())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let mut buf = std::mem::take(&mut self.0);
        if buf.capacity() <= SCRATCH_KEEP {
            buf.clear();
            let _ = SCRATCH.try_with(|slot| slot.set(buf));
        }
    }
}

/// Opens the log, retrying a taken directory lock for a moment before reporting it.
///
/// A `flock` belongs to the open file, and a child process this one is spawning shares it
/// between `fork` and `exec` (where close-on-exec drops it): a cache reopened on one thread
/// while another thread spawns a process would otherwise fail for no lasting reason. A lock
/// that another live process holds is still reported, after about 200 ms.
fn open_wal(builder: strata_wal::WalBuilder) -> Result<Wal> {
    const ATTEMPTS: u32 = 50;
    const PAUSE: Duration = Duration::from_millis(4);
    for _ in 1..ATTEMPTS {
        match builder.clone().open() {
            Err(strata_wal::Error::Locked { .. }) => std::thread::sleep(PAUSE),
            other => return other.map_err(Error::from),
        }
    }
    builder.open().map_err(Error::from)
}

/// Maps a WAL error, naming `Closed` as this crate's.
fn wal_err(e: strata_wal::Error) -> Error {
    match e {
        strata_wal::Error::Closed => Error::Closed,
        e => Error::Wal(e),
    }
}

impl<K, V> DurableCache<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// Opens (creating if needed) the cache stored in `dir`: locks the directory (retrying a
    /// taken lock for about 200 ms), replays the log, drops expired entries, and starts the
    /// background checkpoint thread.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for nonsense options; [`Error::Wal`] for a directory that is a
    /// file, is locked by another process, holds a log of a newer format or a corrupt one (as
    /// the recovery mode decides), or cannot be read or written; [`Error::Corrupt`] for a log
    /// record that is intact but not a record of this cache; [`Error::Codec`] for a stored
    /// key or value the codecs cannot decode (a changed type).
    pub fn open(dir: impl AsRef<Path>, options: DurableOptions<K, V>) -> Result<Self> {
        let started = Instant::now();
        options.validate()?;
        let dir = dir.as_ref().to_path_buf();
        let builder = Wal::builder(&dir)
            .sync_policy(options.sync_policy)
            .recovery_mode(options.recovery_mode)
            .segment_size(options.segment_size)
            .max_record_size(options.max_record_size)
            .write_buffer(options.write_buffer);
        let builder = match &options.metrics {
            Some((registry, name)) => builder.metrics(Arc::clone(registry), name.clone()),
            None => builder,
        };
        let wal = open_wal(builder)?;
        let mut builder =
            Cache::builder().max_capacity(options.capacity).clock(options.clock.clone());
        if let Some((registry, name)) = &options.metrics {
            builder = builder.metrics(Arc::clone(registry), name.clone());
        }
        if let Some(n) = options.shards {
            builder = builder.shards(n);
        }
        let cache = builder.build()?;
        let codecs = Codecs { keys: &*options.keys, values: &*options.values };
        let (state, mut stats, max_version, cleared_below) = replay(&wal, &dir, &codecs)?;
        let now = options.clock.wall();
        for (key, slot) in state {
            let expires_at = slot.expires_at.map(ExpiresAt);
            let remaining = match expires_at {
                Some(e) => match e.remaining(now) {
                    Some(left) => Some(left),
                    None => {
                        stats.expired += 1;
                        continue;
                    }
                },
                None => None,
            };
            let stored = Stored::new(slot.value, slot.version, expires_at);
            match remaining {
                Some(ttl) => cache.insert_with_ttl(key, stored, ttl),
                None => cache.insert(key, stored),
            }
            stats.entries += 1;
        }
        let report = wal.recovery_report();
        stats.bytes_truncated = report.bytes_truncated;
        stats.skipped = report.skipped_count;
        stats.duration = started.elapsed();
        let signal = Arc::new(Signal::default());
        let inner = Arc::new(Inner {
            cache,
            wal,
            dir,
            keys: options.keys,
            values: options.values,
            clock: options.clock,
            next_version: AtomicU64::new(max_version + 1),
            gate: RwLock::new(()),
            cleared_below: AtomicU64::new(cleared_below),
            closed: AtomicBool::new(false),
            policy: options.sync_policy,
            max_attempts: options.max_attempts,
            since: AtomicU64::new(0),
            checkpoint_due: AtomicBool::new(false),
            checkpoint_bytes: options.checkpoint_bytes,
            signal: Arc::clone(&signal),
            worker: Mutex::new(None),
            recovery: stats,
            checkpoints: AtomicU64::new(0),
            checkpoint_failures: AtomicU64::new(0),
        });
        if inner.checkpoint_bytes.is_some() {
            let weak = Arc::downgrade(&inner);
            let handle = std::thread::Builder::new()
                .name("strata-durable-checkpoint".into())
                .spawn(move || checkpoint_worker(&weak, &signal))
                .map_err(|e| Error::io("spawn checkpoint thread", &inner.dir, e))?;
            *inner.worker.lock() = Some(handle);
        }
        Ok(DurableCache { inner })
    }

    /// What recovery found when the cache was opened.
    pub fn recovery_stats(&self) -> &RecoveryStats {
        &self.inner.recovery
    }

    /// The value of `key`, if present and not expired.
    pub fn get(&self, key: &K) -> Option<V> {
        self.get_versioned(key).map(|(v, _)| v)
    }

    /// The value of `key` with its version (see [`compare_and_swap`](Self::compare_and_swap)).
    pub fn get_versioned(&self, key: &K) -> Option<(V, u64)> {
        let s = self.inner.cache.get(key)?;
        let version = s.version();
        s.is_live(self.inner.clock.wall()).then_some((s.value, version))
    }

    /// Whether `key` has a live value.
    pub fn contains_key(&self, key: &K) -> bool {
        self.get_versioned(key).is_some()
    }

    /// Stores `value` under `key` and returns the write's version, once logged and as durable
    /// as the sync policy promises.
    ///
    /// # Errors
    ///
    /// [`Error::Codec`] or [`Error::TooLarge`] if the key or value cannot be encoded (nothing
    /// changed); [`Error::Closed`]; [`Error::Wal`] if the log failed (see
    /// docs/durability.md: a failed fsync poisons the log and the cache refuses writes).
    pub fn insert(&self, key: K, value: V) -> Result<u64> {
        self.put(key, value, None, None).map(|r| r.unwrap_or_default())
    }

    /// [`insert`](Self::insert) with a time to live, stored as an absolute wall-clock expiry
    /// that holds across restarts. A zero TTL removes the key.
    ///
    /// # Errors
    ///
    /// As [`insert`](Self::insert).
    pub fn insert_with_ttl(&self, key: K, value: V, ttl: Duration) -> Result<u64> {
        if ttl.is_zero() {
            self.remove(&key)?;
            return Ok(0);
        }
        let at = ExpiresAt::after(self.inner.clock.wall(), ttl);
        self.put(key, value, Some(at), None).map(|r| r.unwrap_or_default())
    }

    /// Stores `value` only if the key's current version is `expected` (0: only if absent).
    /// Returns `Ok(Ok(new_version))` if it was stored, `Ok(Err(current_version))` if not.
    ///
    /// # Errors
    ///
    /// As [`insert`](Self::insert).
    pub fn compare_and_swap(&self, key: K, expected: u64, value: V) -> Result<Result<u64, u64>> {
        self.put(key, value, None, Some(expected))
    }

    /// Removes `key`, returning its live value. The removal is logged even if the key is
    /// absent in memory, so that a value evicted from memory does not come back at restart.
    ///
    /// # Errors
    ///
    /// [`Error::Codec`] or [`Error::TooLarge`] for the key; [`Error::Closed`]; [`Error::Wal`].
    pub fn remove(&self, key: &K) -> Result<Option<V>> {
        let inner = &*self.inner;
        inner.check_open()?;
        let mut scratch = Scratch::take();
        let buf = &mut scratch.0;
        {
            record::begin_remove(buf, |out| inner.keys.encode(key, out))?;
            let now = inner.clock.wall();
            let gate = inner.gate.read();
            let (seq, old) = inner.cache.atomically([key], |a| -> Result<_> {
                let (seq, _) = inner.append(buf, 1, record::finish_remove)?;
                let old = a.remove(key)?;
                Ok((seq, old.filter(|s| s.is_live(now)).map(|s| s.value)))
            })?;
            drop(gate);
            inner.wait(seq)?;
            Ok(old)
        }
    }

    /// Removes every entry, as one logged operation.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`]; [`Error::Wal`].
    pub fn clear(&self) -> Result<()> {
        let inner = &*self.inner;
        inner.check_open()?;
        let gate = inner.gate.write();
        let mut buf = Vec::new();
        // Published once the record is logged, before the log's lock is released: a
        // checkpoint whose snapshot covers the record then leaves out what the clear removes
        // (see the module docs), and a clear that failed to log removes nothing, in memory
        // or from a checkpoint.
        let (seq, version) = inner.append_then(&mut buf, 1, record::clear, |version| {
            inner.cleared_below.fetch_max(version, Ordering::SeqCst);
        })?;
        // Only what was written before the clear: a plain insert does not wait for the gate,
        // and one that took a later version stays.
        inner.cache.invalidate_if(|_, s| s.version() < version);
        drop(gate);
        inner.wait(seq)
    }

    /// The single-key write path; `expected` turns it into a compare-and-swap.
    fn put(
        &self,
        key: K,
        value: V,
        expires_at: Option<ExpiresAt>,
        expected: Option<u64>,
    ) -> Result<Result<u64, u64>> {
        let inner = &*self.inner;
        inner.check_open()?;
        let mut scratch = Scratch::take();
        let buf = &mut scratch.0;
        {
            // The record up to the version, written by the codecs straight into the buffer
            // (outside every lock); the version and expiry follow under the shard lock.
            record::begin_put(
                buf,
                |out| inner.keys.encode(&key, out),
                |out| inner.values.encode(&value, out),
            )?;
            // Wall time matters only to a deadline or a version check; a plain insert skips
            // the clock read.
            let now = if expires_at.is_some() || expected.is_some() {
                inner.clock.wall()
            } else {
                SystemTime::UNIX_EPOCH
            };
            // Only a compare-and-swap, which reads, needs the clear gate; see the module docs.
            let gate = expected.map(|_| inner.gate.read());
            // One step under the key's shard lock: check, version, log, apply. A failed
            // append keeps the entry as it was. The outcome comes back in words the closure
            // sets (a version of 0: not stored), not in its return value, which the caller
            // would read back with a wider load than the closure's stores (a stall).
            let (mut seq, mut version, mut found) = (0u64, 0u64, 0u64);
            let logged = inner.cache.entry(key).and_compute_with(|current| {
                if let Some(expected) = expected {
                    let current =
                        current.value().filter(|s| s.is_live(now)).map_or(0, |s| s.version());
                    if current != expected {
                        found = current;
                        return (Compute::Keep, Ok(()));
                    }
                }
                let finish =
                    |buf: &mut Vec<u8>, v| record::finish_put(buf, v, expires_at.map(|e| e.0));
                match inner.append(buf, 1, finish) {
                    Ok((s, v)) => {
                        (seq, version) = (s, v);
                        let stored = Stored::new(value, version, expires_at);
                        (put_decision(stored, expires_at, now), Ok(()))
                    }
                    Err(e) => (Compute::Keep, Err(e)),
                }
            });
            drop(gate);
            logged?;
            if version == 0 {
                // The compare-and-swap found another version.
                return Ok(Err(found));
            }
            inner.wait(seq)?;
            Ok(Ok(version))
        }
    }

    /// Clones of the live entries with their values, a few at a time (weakly consistent, as
    /// `strata_core::Cache::iter`).
    pub fn iter(&self) -> impl Iterator<Item = (K, V)> + '_ {
        let now = self.inner.clock.wall();
        self.inner.cache.iter().filter(move |(_, s)| s.is_live(now)).map(|(k, s)| (k, s.value))
    }

    /// The number of entries in memory (expired ones not yet reclaimed included).
    pub fn entry_count(&self) -> u64 {
        self.inner.cache.entry_count()
    }

    /// Waits until every write so far is durable (fsyncs if needed), whatever the policy.
    ///
    /// # Errors
    ///
    /// [`Error::Wal`] if the fsync failed.
    pub fn flush(&self) -> Result<()> {
        self.inner.wal.flush_durable().map_err(wal_err)
    }

    /// Writes a checkpoint now (the background thread does the same when the log has grown
    /// past [`DurableOptions::checkpoint_bytes`]). Readers and writers keep going meanwhile.
    ///
    /// # Errors
    ///
    /// [`Error::Wal`] (`CheckpointInProgress` if the background thread is at it); encoding
    /// errors; [`Error::Closed`].
    pub fn checkpoint(&self) -> Result<CheckpointInfo> {
        self.inner.check_open()?;
        self.inner.checkpoint()
    }

    /// How many checkpoints this handle's cache has finished, and how many failed.
    pub fn checkpoint_counts(&self) -> (u64, u64) {
        (
            self.inner.checkpoints.load(Ordering::Relaxed),
            self.inner.checkpoint_failures.load(Ordering::Relaxed),
        )
    }

    /// The log directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Flushes and fsyncs the log, stops the checkpoint thread and refuses further writes
    /// (reads keep working). Calling it twice is harmless. Call it (or
    /// [`close_blocking`](Self::close_blocking)) before exiting: dropping the cache does not
    /// sync.
    ///
    /// # Errors
    ///
    /// [`Error::Wal`] if the final fsync failed.
    pub async fn close(&self) -> Result<()> {
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                let this = self.clone();
                handle.spawn_blocking(move || this.close_blocking()).await.map_err(|e| {
                    Error::Unavailable { tier: "durable".into(), reason: e.to_string() }
                })?
            }
            Err(_) => self.close_blocking(),
        }
    }

    /// The blocking form of [`close`](Self::close).
    ///
    /// # Errors
    ///
    /// As [`close`](Self::close).
    pub fn close_blocking(&self) -> Result<()> {
        let inner = &*self.inner;
        inner.closed.store(true, Ordering::Release);
        inner.signal.stop();
        let handle = inner.worker.lock().take();
        if let Some(handle) = handle {
            // The worker only calls fallible functions; a panic there would be a bug, and the
            // log is still closed below.
            let _ = handle.join();
        }
        inner.wal.close().map_err(wal_err)
    }
}

impl<K, V> Inner<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            Err(Error::Closed)
        } else {
            Ok(())
        }
    }

    /// Appends the record begun in `record` once `finish` has ended it with its versions:
    /// `n` consecutive ones, the first passed to `finish` and returned after the record's
    /// sequence number. Call with the shard of every key the record writes locked. Does not
    /// wait for the fsync.
    fn append(
        &self,
        record: &mut Vec<u8>,
        n: u64,
        finish: impl FnOnce(&mut Vec<u8>, u64),
    ) -> Result<(u64, u64)> {
        self.append_then(record, n, finish, |_| {})
    }

    /// [`Inner::append`], calling `logged` with the first version once the record is in the
    /// log, still under the log's lock (see [`Wal::append_nowait_then`]); not if it failed.
    /// Wakes the checkpoint thread when the log has grown past the threshold.
    fn append_then(
        &self,
        record: &mut Vec<u8>,
        n: u64,
        finish: impl FnOnce(&mut Vec<u8>, u64),
        logged: impl FnOnce(u64),
    ) -> Result<(u64, u64)> {
        let version = std::cell::Cell::new(0);
        let seq = self
            .wal
            .append_nowait_then(
                record,
                |record| {
                    // The only place versions are taken, with the log locked: a plain load
                    // and store hand each out once (an atomic read-modify-write here cost a
                    // durable insert about 5%), and versions increase in log order.
                    let first = self.next_version.load(Ordering::Relaxed);
                    self.next_version.store(first.saturating_add(n), Ordering::Relaxed);
                    version.set(first);
                    finish(record, first);
                },
                |_| logged(version.get()),
            )
            .map_err(wal_err)?;
        // Looked at every 64th record: reading the log's byte count costs no atomic
        // read-modify-write, and a threshold of megabytes need not be met to the byte. A
        // record of a 64th of the threshold or more is looked at too, so that large values
        // cannot carry the log far past it (63 records of the largest size allowed would be
        // about 2 GiB).
        if let Some(limit) = self.checkpoint_bytes {
            if (seq % CHECK_EVERY == 0 || record.len() as u64 >= limit / CHECK_EVERY)
                && !self.checkpoint_due.load(Ordering::Relaxed)
                && self.wal.appended_bytes().saturating_sub(self.since.load(Ordering::Relaxed))
                    >= limit
            {
                self.checkpoint_due.store(true, Ordering::Relaxed);
                self.signal.request();
            }
        }
        Ok((seq, version.get()))
    }

    /// Waits for `seq` as the sync policy requires (only `Always` waits).
    fn wait(&self, seq: u64) -> Result<()> {
        if self.policy == SyncPolicy::Always {
            self.wal.wait_durable(seq).map_err(wal_err)?;
        }
        Ok(())
    }

    /// Applies a logged put inside an atomic section.
    fn apply_put(
        &self,
        a: &mut strata_core::Atomic<'_, K, Stored<V>, ahash::RandomState>,
        key: K,
        value: V,
        version: u64,
        expires_at: Option<ExpiresAt>,
        now: SystemTime,
    ) -> Result<()> {
        match put_decision(Stored::new(value, version, expires_at), expires_at, now) {
            Compute::Put(stored) => a.insert(key, stored)?,
            Compute::PutWithTtl(stored, ttl) => a.insert_with_ttl(key, stored, ttl)?,
            Compute::Remove => drop(a.remove(&key)?),
            Compute::Keep => {}
        }
        Ok(())
    }

    fn checkpoint(&self) -> Result<CheckpointInfo> {
        let mut cp = self.wal.begin_checkpoint().map_err(wal_err)?;
        // Bytes appended from here on count toward the next checkpoint.
        self.since.store(self.wal.appended_bytes(), Ordering::Relaxed);
        self.checkpoint_due.store(false, Ordering::Relaxed);
        let now = self.clock.wall();
        let (mut kb, mut vb, mut buf) = (Vec::new(), Vec::new(), Vec::new());
        // A clear whose record the snapshot covers may still be removing entries: leave out
        // what it removes, and tell replay about it, since a write it clears may still come
        // in the tail (see the module docs).
        let cleared = self.cleared_below.load(Ordering::SeqCst);
        if cleared > 0 {
            LogRecord::Clear { version: cleared }.encode(&mut buf);
            cp.append(&buf).map_err(wal_err)?;
        }
        for (key, stored) in self.cache.iter() {
            if !stored.is_live(now) || stored.version() < cleared {
                continue;
            }
            kb.clear();
            vb.clear();
            buf.clear();
            self.keys.encode(&key, &mut kb)?;
            self.values.encode(&stored.value, &mut vb)?;
            LogRecord::Put(Put {
                key: &kb,
                value: &vb,
                version: stored.version(),
                expires_at: stored.expires_at().map(|e| e.0),
            })
            .encode(&mut buf);
            cp.append(&buf).map_err(wal_err)?;
        }
        buf.clear();
        LogRecord::Floor { next_version: self.next_version.load(Ordering::Relaxed) }
            .encode(&mut buf);
        cp.append(&buf).map_err(wal_err)?;
        let info = cp.finish().map_err(wal_err)?;
        self.checkpoints.fetch_add(1, Ordering::Relaxed);
        Ok(info)
    }
}

/// How memory takes a logged put: with the remaining time as its cache TTL, so that it is
/// reclaimed, or not at all if it is already past its deadline (the TTL was shorter than the
/// time to get here: the log holds it, recovery drops it, and memory must not serve the old
/// value).
fn put_decision<V>(
    stored: Stored<V>,
    expires_at: Option<ExpiresAt>,
    now: SystemTime,
) -> Compute<Stored<V>> {
    match expires_at.map(|e| e.remaining(now)) {
        None => Compute::Put(stored),
        Some(Some(ttl)) => Compute::PutWithTtl(stored, ttl),
        Some(None) => Compute::Remove,
    }
}

/// The background checkpoint thread: waits for a request (or a stop), and exits once the
/// cache is gone.
fn checkpoint_worker<K, V>(weak: &Weak<Inner<K, V>>, signal: &Signal)
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    loop {
        {
            let mut st = signal.state.lock();
            if !st.requested && !st.stop {
                signal.cv.wait_for(&mut st, WORKER_POLL);
            }
            if st.stop {
                return;
            }
            if !st.requested {
                if weak.strong_count() == 0 {
                    return;
                }
                continue;
            }
            st.requested = false;
        }
        let Some(inner) = weak.upgrade() else { return };
        if inner.closed.load(Ordering::Acquire) {
            return;
        }
        let started = Instant::now();
        let outcome = inner.checkpoint();
        // Whatever happened, the write path may ask again once the log has grown past the
        // threshold since the last checkpoint that began (a failed one resets nothing).
        inner.checkpoint_due.store(false, Ordering::Relaxed);
        match outcome {
            Ok(info) => tracing::debug!(
                id = info.checkpoint_id,
                covered_seq = info.covered_seq,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "durable cache checkpoint"
            ),
            // A checkpoint asked for by `DurableCache::checkpoint` is under way: it covers
            // this request.
            Err(Error::Wal(strata_wal::Error::CheckpointInProgress)) => {}
            Err(e) => {
                inner.checkpoint_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "durable cache checkpoint failed; the log keeps growing until one succeeds");
            }
        }
    }
}

/// The highest version a log may hold; see the check at the end of `replay`.
const MAX_VERSION: u64 = u64::MAX / 2;

/// The latest write of each key during replay (ahash: SipHash costs a warm restart of a
/// million keys a tenth of its time).
type ReplayMap<K, V> = HashMap<K, Slot<V>, ahash::RandomState>;

/// The codecs replay decodes with.
struct Codecs<'a, K, V> {
    keys: &'a dyn Codec<K>,
    values: &'a dyn Codec<V>,
}

/// Replays the log into a map of the latest write per key; returns it with the recovery
/// figures, the highest version seen and the version of the latest clear.
fn replay<K: Hash + Eq + 'static, V: 'static>(
    wal: &Wal,
    dir: &Path,
    codecs: &Codecs<'_, K, V>,
) -> Result<(ReplayMap<K, V>, RecoveryStats, u64, u64)> {
    // Sized for the snapshot, which holds one record per live key: a warm restart then never
    // rehashes the map.
    let snapshot = wal.recovery_report().snapshot_records;
    let mut state: ReplayMap<K, V> = HashMap::with_capacity_and_hasher(
        usize::try_from(snapshot).unwrap_or(0).min(1 << 26),
        ahash::RandomState::new(),
    );
    let mut stats = RecoveryStats::default();
    let mut max_version = 0u64;
    // The latest clear's version (see `replay_put`).
    let mut cleared = 0u64;
    for rec in wal.replay().map_err(wal_err)? {
        let rec = rec.map_err(wal_err)?;
        match rec.source {
            strata_wal::Source::Snapshot => stats.snapshot_records += 1,
            strata_wal::Source::Log => stats.log_records += 1,
        }
        let decoded = LogRecord::decode(&rec.payload).map_err(|e| Error::Corrupt {
            path: dir.to_path_buf(),
            detail: format!("log record {} is not a durable-cache record: {e}", rec.seq),
        })?;
        match decoded {
            LogRecord::Put(p) => {
                max_version = max_version.max(p.version);
                replay_put(&mut state, codecs, &p, cleared)?;
            }
            LogRecord::Remove(r) => {
                max_version = max_version.max(r.version);
                replay_remove(&mut state, codecs.keys, &r)?;
            }
            LogRecord::Clear { version } => {
                max_version = max_version.max(version);
                cleared = cleared.max(version);
                state.retain(|_, s| s.version > version);
            }
            LogRecord::Txn(ops) => {
                for op in &ops {
                    match op {
                        record::Op::Put(p) => {
                            max_version = max_version.max(p.version);
                            replay_put(&mut state, codecs, p, cleared)?;
                        }
                        record::Op::Remove(r) => {
                            max_version = max_version.max(r.version);
                            replay_remove(&mut state, codecs.keys, r)?;
                        }
                    }
                }
            }
            LogRecord::Floor { next_version } => {
                max_version = max_version.max(next_version.saturating_sub(1));
            }
        }
    }
    // The counter resumes above every logged version and must never wrap: a wrapped version
    // would lose to the logged one at every later restart, so acknowledged writes would be
    // lost. No real log comes near 2^63 writes, so a version above that is damage even with
    // its checksum intact.
    if max_version > MAX_VERSION {
        return Err(Error::Corrupt {
            path: dir.to_path_buf(),
            detail: format!("a logged version ({max_version}) is beyond any real write count"),
        });
    }
    Ok((state, stats, max_version, cleared))
}

/// Applies a logged put if it is newer than what the map holds for its key and than the
/// latest clear replayed (`cleared`, its version). The value is decoded only then: a value
/// superseded by a write already replayed costs no decoding.
fn replay_put<K: Hash + Eq + 'static, V: 'static>(
    state: &mut ReplayMap<K, V>,
    codecs: &Codecs<'_, K, V>,
    p: &Put<'_>,
    cleared: u64,
) -> Result<()> {
    // A write with a version below the latest clear's was cleared, even when its record
    // comes after the clear's (a plain insert that raced with the clear; see the module docs).
    if p.version <= cleared {
        return Ok(());
    }
    let key = codecs.keys.decode(p.key)?;
    let slot = |value| Slot { value, version: p.version, expires_at: p.expires_at };
    match state.entry(key) {
        Entry::Occupied(mut o) => {
            // An older write than the one held: the snapshot already reflects a later one.
            if o.get().version < p.version {
                o.insert(slot(codecs.values.decode(p.value)?));
            }
        }
        Entry::Vacant(v) => {
            v.insert(slot(codecs.values.decode(p.value)?));
        }
    }
    Ok(())
}

fn replay_remove<K: Hash + Eq + 'static, V>(
    state: &mut ReplayMap<K, V>,
    keys: &dyn Codec<K>,
    r: &Remove<'_>,
) -> Result<()> {
    let key = keys.decode(r.key)?;
    if state.get(&key).is_some_and(|s| s.version < r.version) {
        state.remove(&key);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
