//! The disk tier: a capacity-bounded cache on local files, rebuilt from them after a restart.
//!
//! # Layout
//!
//! The tier's directory holds up to `capacity / region_size` region files
//! (`region-00000.dat`, ...), each created at exactly `region_size` bytes, and a `LOCK` file
//! that one tier at a time holds. Entries are appended to the *active* region, each with a
//! header (magic, sequence number, expiry, lengths) and a CRC32C over header, key and value
//! (the byte layout is in `format.rs`). When the active region is full it is *sealed* and
//! mapped read-only; when every region is in use, the oldest sealed one is reclaimed (FIFO,
//! as in foyer's and CacheLib's large-object caches): its entries leave the index and a fresh
//! file is renamed over it. The disk never holds more than `capacity` bytes of regions.
//!
//! An in-memory index maps a 64-bit hash of each key to its region, offset and length
//! (24 bytes per slot of a `HashMap`, about 29 bytes per entry at its load factor), and each
//! region keeps the hashes written to it (8 bytes per entry written) so that reclaiming it
//! costs its own entries, not a scan of the index. Reads compare the stored key with the one
//! asked for, so two keys with the same hash can only cause a miss, never a wrong value.
//!
//! # What is guaranteed
//!
//! - `get` verifies the CRC of every entry it reads and never returns an expired entry or
//!   another key's value. An entry that fails its check is dropped, counted in
//!   [`DiskStats::corrupt_entries`], and a tombstone is written so that a restart cannot bring
//!   back an older value of the key in its place.
//! - `remove` writes a tombstone and an expired `put` does too, so a restart does not resurrect
//!   the key; `clear` raises a sequence-number *floor* recorded in the next region's header,
//!   below which recovery ignores every entry, so a crash half-way through `clear` cannot
//!   bring entries back either.
//! - After a restart the index is rebuilt by scanning the region files in generation order; a
//!   later entry for a key (larger sequence number) wins. A region whose header is damaged is
//!   dropped and counted in [`DiskStats::corrupt_regions`]; in a region whose entry fails to
//!   parse or to pass its checksum, that entry and everything after it in the region are
//!   dropped and counted once in [`DiskStats::corrupt_entries`]. Expired entries are dropped.
//!   Opened with a smaller capacity, the tier drops the region files beyond it and every
//!   region no newer than those, so that no older entry of a key outlives a newer one dropped.
//! - What the checksum cannot give back is a write it lost: when the newest entry of a key is
//!   lost to corruption or a torn write, recovery serves the key's previous value, which
//!   passes its check and was written for that key (foyer and CacheLib behave the same way).
//!
//! # Durability
//!
//! With `sync(false)` (the default, as in foyer and CacheLib, whose disk tiers are caches, not
//! stores) entries reach the page cache before a call returns: they survive the process
//! crashing, and an operating-system crash loses what the kernel had not written back. With
//! `sync(true)` every put and remove is `fdatasync`ed, and new region files and the directory
//! are synced, before the call returns. [`DiskTier::close`] syncs whatever is outstanding.
//!
//! # Blocking
//!
//! Reads run inline on the caller's task: a sealed region is read through its memory map and
//! the active one with a positioned read, both a copy of one entry that the page cache
//! usually serves. Writes with `sync(false)` also run inline, since a `pwrite` into the page
//! cache costs about as much as handing the work to another thread. With `sync(true)` writes
//! run on tokio's blocking pool (`spawn_blocking`) so that an `fsync` never stalls a runtime
//! worker. A call checks its deadline before it starts; a disk operation that has started is
//! not abandoned half-way.
//!
//! The tier uses Unix positioned IO (`pread`/`pwrite`) and renames files over mapped ones,
//! which Unix allows; it does not build on Windows.

mod format;
mod mmap;

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::hash::{BuildHasherDefault, Hasher};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use memmap2::Mmap;
use parking_lot::{Mutex, RwLock};
use strata_core::{Clock, SystemClock};
use strata_metrics::{Counter, GaugeFn, Registry};

use self::format::{
    decode_entry, encode_entry, entry_len, Kind, RegionHeader, Scan, ENTRY_HEADER_LEN,
    REGION_HEADER_LEN,
};
use crate::tier::{Tier, TierEntry, TierFuture};
use crate::{Error, Result};

/// The bytes a region file spends on its header: `capacity` counts them.
pub const REGION_OVERHEAD: usize = REGION_HEADER_LEN;
/// The bytes an entry spends beyond its key and value (its header): `capacity` and
/// `max_entry_size` count them.
pub const ENTRY_OVERHEAD: usize = ENTRY_HEADER_LEN;

/// The smallest region size accepted.
pub const MIN_REGION_SIZE: u64 = 1 << 10;
/// The largest region size accepted (offsets inside a region are 32-bit).
pub const MAX_REGION_SIZE: u64 = 1 << 30;
/// The most regions one tier may have (`capacity / region_size`).
pub const MAX_REGIONS: u64 = 1 << 16;
/// The default region size is `capacity / 16`, clamped to this range.
const DEFAULT_REGION_RANGE: (u64, u64) = (64 << 10, 16 << 20);

/// Where an entry lives: 12 bytes, so an index slot (hash and location) is 24.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Loc {
    slot: u32,
    offset: u32,
    len: u32,
}

/// The index is keyed by a hash that is already well mixed, so it hashes its keys as they are.
#[derive(Default)]
struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used by a `u64` key; this keeps the hasher correct for any other.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type Index = HashMap<u64, Loc, BuildHasherDefault<IdentityHasher>>;

/// How readers reach a region slot's bytes.
#[derive(Clone)]
enum View {
    /// No region in this slot.
    Free,
    /// The active region (or a sealed one whose map failed): read with positioned reads.
    Written(Arc<File>),
    /// A sealed region, read through its read-only map.
    Mapped(Arc<Mmap>),
}

/// What readers share: the index and the region views, changed together under one lock so
/// that a location is always read through the view of the region it points into.
struct Shared {
    index: Index,
    views: Vec<View>,
}

/// The region being appended to.
struct Active {
    slot: u32,
    file: Arc<File>,
    /// Where the next entry goes.
    offset: usize,
}

/// Writer-side state, behind one mutex: writes to a disk tier are serialized (they are
/// appends to one file), and the writer lock is always taken before the shared lock.
struct Writer {
    active: Option<Active>,
    /// Sealed regions, oldest first: the reclaim order.
    sealed: VecDeque<u32>,
    /// Slots without a region.
    free: Vec<u32>,
    /// Per slot, the hashes of the keys written there, to unindex them when it is reclaimed.
    keys: Vec<Vec<u64>>,
    /// Keys (by hash) unindexed while an older value of theirs may still be on disk with no
    /// tombstone after it: their last put failed, or a tombstone for a corrupt entry did. A
    /// remove of such a key writes the tombstone the index alone would not ask for.
    shadowed: HashSet<u64>,
    next_seq: u64,
    next_generation: u64,
    /// Entries below this sequence number were cleared; new regions record it.
    floor: u64,
    /// Reused encoding buffer.
    buf: Vec<u8>,
}

/// The settings a built tier runs with.
#[derive(Clone, Debug)]
struct Config {
    name: String,
    dir: PathBuf,
    capacity: u64,
    region_size: usize,
    regions: u32,
    max_entry_size: usize,
    sync: bool,
}

/// Counters, read through [`DiskTier::stats`]; the disk-specific ones are shared with a
/// metrics registry when the builder is given one.
#[derive(Debug, Default)]
struct Counters {
    hits: Arc<Counter>,
    misses: Arc<Counter>,
    puts: Arc<Counter>,
    removes: Arc<Counter>,
    corrupt_entries: Arc<Counter>,
    corrupt_regions: Arc<Counter>,
    reclaimed_regions: Arc<Counter>,
    recovered_entries: Arc<Counter>,
    expired_dropped: Arc<Counter>,
}

impl Counters {
    /// Counters whose disk-specific families live in `registry`, labelled `tier="<name>"`.
    /// Hits, misses and writes are not registered: the tiered cache records those for every
    /// tier alike (`strata_tier_*`).
    fn registered(registry: &Registry, name: &str) -> strata_metrics::Result<Self> {
        let l = [(TIER_LABEL[0], name)];
        Ok(Counters {
            corrupt_entries: registry.counter(&metrics::CORRUPT_ENTRIES, &l)?,
            corrupt_regions: registry.counter(&metrics::CORRUPT_REGIONS, &l)?,
            reclaimed_regions: registry.counter(&metrics::RECLAIMED_REGIONS, &l)?,
            recovered_entries: registry.counter(&metrics::RECOVERED_ENTRIES, &l)?,
            expired_dropped: registry.counter(&metrics::EXPIRED_DROPPED, &l)?,
            ..Counters::default()
        })
    }
}

const TIER_LABEL: &[&str] = &["tier"];

/// The metric families a disk tier records into a [`Registry`] given to
/// [`DiskTierBuilder::metrics`], each labelled `tier="<name>"`.
pub mod metrics {
    use strata_metrics::{MetricDesc, MetricKind, Unit};

    use super::TIER_LABEL;

    const fn counter(name: &'static str, help: &'static str) -> MetricDesc {
        MetricDesc {
            name,
            help,
            kind: MetricKind::Counter,
            unit: Unit::None,
            labels: TIER_LABEL,
            bounds: &[],
        }
    }

    const fn gauge(name: &'static str, help: &'static str) -> MetricDesc {
        MetricDesc {
            name,
            help,
            kind: MetricKind::Gauge,
            unit: Unit::None,
            labels: TIER_LABEL,
            bounds: &[],
        }
    }

    /// Entries that failed to parse or their checksum; none was served.
    pub const CORRUPT_ENTRIES: MetricDesc = counter(
        "strata_disk_corrupt_entries_total",
        "Disk tier entries dropped because they failed to parse or their checksum.",
    );
    /// Region files dropped whole at recovery.
    pub const CORRUPT_REGIONS: MetricDesc = counter(
        "strata_disk_corrupt_regions_total",
        "Disk tier region files dropped at recovery (damaged or foreign header).",
    );
    /// Regions reclaimed to make room.
    pub const RECLAIMED_REGIONS: MetricDesc = counter(
        "strata_disk_reclaimed_regions_total",
        "Disk tier regions reclaimed to make room, their entries evicted.",
    );
    /// Entries indexed by recovery.
    pub const RECOVERED_ENTRIES: MetricDesc = counter(
        "strata_disk_recovered_entries_total",
        "Disk tier entries indexed by recovery when the tier opened.",
    );
    /// Entries dropped because they had expired.
    pub const EXPIRED_DROPPED: MetricDesc = counter(
        "strata_disk_expired_dropped_total",
        "Disk tier entries dropped on a read or at recovery because they had expired.",
    );
    /// Keys in the index.
    pub const ENTRIES: MetricDesc = gauge("strata_disk_entries", "Keys in the disk tier's index.");
    /// Region files in use.
    pub const REGIONS_IN_USE: MetricDesc = gauge(
        "strata_disk_regions_in_use",
        "Disk tier region files in use, the active one included.",
    );
}

/// A snapshot of a disk tier's counters and size.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DiskStats {
    /// Keys in the index (expired ones that no read has dropped yet included).
    pub entries: u64,
    /// Region files in use, the active one included.
    pub regions_in_use: u64,
    /// Reads that returned a value.
    pub hits: u64,
    /// Reads that returned nothing.
    pub misses: u64,
    /// Puts that stored a value.
    pub puts: u64,
    /// Removes, and puts of already expired entries, that dropped a key.
    pub removes: u64,
    /// Entries that failed to parse or their checksum, on a read or during recovery; none of
    /// them was served.
    pub corrupt_entries: u64,
    /// Region files dropped whole during recovery: a damaged header, or one written with
    /// another region size.
    pub corrupt_regions: u64,
    /// Regions reclaimed to make room (their entries evicted).
    pub reclaimed_regions: u64,
    /// Entries indexed by the recovery at open.
    pub recovered_entries: u64,
    /// Entries dropped because they had expired, on a read or during recovery.
    pub expired_dropped: u64,
}

/// A [`Tier`] on local files: fixed-size regions, a CRC32C per entry, FIFO region reclaim,
/// and an index rebuilt from the files when it opens. See the [module docs](self).
///
/// ```
/// use std::time::{Duration, Instant};
/// use strata_tier::disk::DiskTier;
/// use strata_tier::{Tier, TierEntry};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let dir = tempfile::tempdir().unwrap();
/// let tier = DiskTier::builder(dir.path()).capacity(1 << 20).build()?;
/// let deadline = Instant::now() + Duration::from_secs(1);
/// let entry = TierEntry { value: b"v".to_vec(), expires_at: None };
/// tier.put(b"k", entry.clone(), deadline).await?;
/// tier.close().await?;
/// drop(tier);
///
/// let tier = DiskTier::builder(dir.path()).capacity(1 << 20).build()?;
/// assert_eq!(tier.get(b"k", deadline).await?, Some(entry));
/// assert_eq!(tier.stats().recovered_entries, 1);
/// # Ok::<(), strata_tier::Error>(())
/// # }).unwrap();
/// ```
pub struct DiskTier {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: Config,
    clock: Arc<dyn Clock>,
    hasher: ahash::RandomState,
    shared: RwLock<Shared>,
    writer: Mutex<Writer>,
    counters: Counters,
    closed: AtomicBool,
    /// Held for the tier's life: the exclusive lock on the directory.
    _lock: File,
}

impl fmt::Debug for DiskTier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DiskTier")
            .field("config", &self.inner.cfg)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// Configures and opens a [`DiskTier`]; see [`DiskTier::builder`].
#[derive(Debug)]
pub struct DiskTierBuilder {
    name: String,
    dir: PathBuf,
    capacity: Option<u64>,
    region_size: Option<u64>,
    max_entry_size: Option<usize>,
    sync: bool,
    clock: Arc<dyn Clock>,
    registry: Option<Arc<Registry>>,
}

impl DiskTier {
    /// Starts configuring a disk tier stored in `dir` (created if missing).
    pub fn builder(dir: impl Into<PathBuf>) -> DiskTierBuilder {
        DiskTierBuilder {
            name: "disk".to_owned(),
            dir: dir.into(),
            capacity: None,
            region_size: None,
            max_entry_size: None,
            sync: false,
            clock: Arc::new(SystemClock),
            registry: None,
        }
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> DiskStats {
        let c = &self.inner.counters;
        let entries = self.inner.shared.read().index.len() as u64;
        let regions_in_use = self.inner.regions_in_use() as u64;
        DiskStats {
            entries,
            regions_in_use,
            hits: c.hits.get(),
            misses: c.misses.get(),
            puts: c.puts.get(),
            removes: c.removes.get(),
            corrupt_entries: c.corrupt_entries.get(),
            corrupt_regions: c.corrupt_regions.get(),
            reclaimed_regions: c.reclaimed_regions.get(),
            recovered_entries: c.recovered_entries.get(),
            expired_dropped: c.expired_dropped.get(),
        }
    }

    /// The byte bound on the region files.
    pub fn capacity(&self) -> u64 {
        self.inner.cfg.capacity
    }

    /// The size of one region file.
    pub fn region_size(&self) -> u64 {
        self.inner.cfg.region_size as u64
    }

    /// How many regions the capacity holds.
    pub fn regions(&self) -> u32 {
        self.inner.cfg.regions
    }

    /// The largest entry (40-byte header, key and value) a put accepts.
    pub fn max_entry_size(&self) -> usize {
        self.inner.cfg.max_entry_size
    }

    /// The directory the tier lives in.
    pub fn dir(&self) -> &Path {
        &self.inner.cfg.dir
    }

    /// Syncs the active region and the directory, then refuses further calls with
    /// [`Error::Closed`]. The directory lock is released when the tier is dropped.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if a sync fails; the tier is closed all the same.
    pub async fn close(&self) -> Result<()> {
        let inner = Arc::clone(&self.inner);
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => rt.spawn_blocking(move || inner.close()).await.map_err(|e| self.joined(e))?,
            Err(_) => inner.close(),
        }
    }

    /// Whether writes go to the blocking pool (see the module docs).
    fn offload(&self) -> Option<tokio::runtime::Handle> {
        if self.inner.cfg.sync {
            tokio::runtime::Handle::try_current().ok()
        } else {
            None
        }
    }

    fn joined(&self, e: tokio::task::JoinError) -> Error {
        Error::Unavailable {
            tier: self.inner.cfg.name.clone(),
            reason: format!("disk task failed: {e}"),
        }
    }

    fn start(&self, deadline: Instant, op: &'static str) -> Result<()> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        if Instant::now() >= deadline {
            return Err(Error::Timeout { tier: self.inner.cfg.name.clone(), op });
        }
        Ok(())
    }
}

impl Tier for DiskTier {
    fn name(&self) -> &str {
        &self.inner.cfg.name
    }

    fn get<'a>(&'a self, key: &'a [u8], deadline: Instant) -> TierFuture<'a, Option<TierEntry>> {
        Box::pin(async move {
            self.start(deadline, "get")?;
            self.inner.get(key)
        })
    }

    fn put<'a>(&'a self, key: &'a [u8], entry: TierEntry, deadline: Instant) -> TierFuture<'a, ()> {
        Box::pin(async move {
            self.start(deadline, "put")?;
            self.inner.check_size(key, &entry.value)?;
            match self.offload() {
                Some(rt) => {
                    let (inner, key) = (Arc::clone(&self.inner), key.to_vec());
                    rt.spawn_blocking(move || inner.put(&key, entry))
                        .await
                        .map_err(|e| self.joined(e))?
                }
                None => self.inner.put(key, entry),
            }
        })
    }

    fn remove<'a>(&'a self, key: &'a [u8], deadline: Instant) -> TierFuture<'a, ()> {
        Box::pin(async move {
            self.start(deadline, "remove")?;
            match self.offload() {
                Some(rt) => {
                    let (inner, key) = (Arc::clone(&self.inner), key.to_vec());
                    rt.spawn_blocking(move || inner.remove(&key))
                        .await
                        .map_err(|e| self.joined(e))?
                }
                None => self.inner.remove(key),
            }
        })
    }

    fn clear<'a>(&'a self, deadline: Instant) -> TierFuture<'a, ()> {
        Box::pin(async move {
            self.start(deadline, "clear")?;
            // Clearing creates and deletes files: always off the runtime's workers when a
            // runtime is there.
            let inner = Arc::clone(&self.inner);
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => {
                    rt.spawn_blocking(move || inner.clear()).await.map_err(|e| self.joined(e))?
                }
                Err(_) => inner.clear(),
            }
        })
    }
}

impl DiskTierBuilder {
    /// The tier's name in metrics, logs and errors (`disk` by default).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The bound on the bytes of region files (required). It is divided into
    /// `capacity / region_size` regions; at least 2 are needed.
    pub fn capacity(mut self, bytes: u64) -> Self {
        self.capacity = Some(bytes);
        self
    }

    /// The size of one region file: the unit of reclaim. By default `capacity / 16`, between
    /// 64 KiB and 16 MiB (and at most `capacity / 2`).
    pub fn region_size(mut self, bytes: u64) -> Self {
        self.region_size = Some(bytes);
        self
    }

    /// The largest entry a put accepts, counting its 40-byte header, key and value. By default,
    /// and at most, what fits in one region after its 64-byte header.
    pub fn max_entry_size(mut self, bytes: usize) -> Self {
        self.max_entry_size = Some(bytes);
        self
    }

    /// Whether every put and remove is synced to the device before it returns (off by
    /// default; see the module docs for what each setting loses in a crash).
    pub fn sync(mut self, sync: bool) -> Self {
        self.sync = sync;
        self
    }

    /// Records the disk tier's own counters and gauges (the families in [`metrics`]) in
    /// `registry`, labelled `tier="<name>"`.
    pub fn metrics(mut self, registry: Arc<Registry>) -> Self {
        self.registry = Some(registry);
        self
    }

    /// The clock expiries are checked against (its wall time); the system clock by default.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// [`build`](Self::build) on tokio's blocking pool (inline when no runtime is running),
    /// so that the scan of the region files never stalls a runtime worker.
    ///
    /// # Errors
    ///
    /// As [`build`](Self::build), and [`Error::Unavailable`] if the blocking task fails.
    pub async fn open(self) -> Result<DiskTier> {
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                let name = self.name.clone();
                rt.spawn_blocking(move || self.build()).await.map_err(|e| Error::Unavailable {
                    tier: name,
                    reason: format!("opening the disk tier failed: {e}"),
                })?
            }
            Err(_) => self.build(),
        }
    }

    /// Checks the configuration, takes the directory's lock and rebuilds the index from the
    /// region files found there. This does blocking file IO (a scan of every region); from
    /// async code, use [`open`](Self::open).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for a missing or zero capacity, a region size out of range or
    /// not dividing the capacity into 2 to [`MAX_REGIONS`] regions, a maximum entry size that
    /// does not fit a region, an empty name, or a `dir` that exists and is not a directory;
    /// [`Error::Io`] if the directory cannot be created, read or locked (another tier holds
    /// it), or a region file cannot be opened, read or mapped.
    pub fn build(self) -> Result<DiskTier> {
        let cfg = self.config()?;
        let metrics_error =
            |e: strata_metrics::Error| Error::InvalidConfig(format!("metrics: {e}"));
        let counters = match &self.registry {
            Some(r) => Counters::registered(r, &cfg.name).map_err(metrics_error)?,
            None => Counters::default(),
        };
        let inner = Arc::new(Inner::open(cfg, self.clock, counters)?);
        if let Some(r) = &self.registry {
            // The gauges are read from the tier at snapshot time; a `Weak` so that the
            // registry does not keep a dropped tier (and its directory lock) alive.
            let l = [(TIER_LABEL[0], inner.cfg.name.as_str())];
            let weak = Arc::downgrade(&inner);
            let entries: GaugeFn =
                Arc::new(move || weak.upgrade().map_or(0, |i| i.shared.read().index.len() as i64));
            r.gauge_fn(&metrics::ENTRIES, &l, entries).map_err(metrics_error)?;
            let weak = Arc::downgrade(&inner);
            let regions: GaugeFn =
                Arc::new(move || weak.upgrade().map_or(0, |i| i.regions_in_use() as i64));
            r.gauge_fn(&metrics::REGIONS_IN_USE, &l, regions).map_err(metrics_error)?;
        }
        Ok(DiskTier { inner })
    }

    fn config(&self) -> Result<Config> {
        let invalid = |msg: String| Err(Error::InvalidConfig(msg));
        if self.name.is_empty() {
            return invalid("a tier's name must not be empty".to_owned());
        }
        let capacity = match self.capacity {
            None => return invalid("disk tier: capacity (bytes) is required".to_owned()),
            Some(0) => return invalid("disk tier: capacity must be more than 0 bytes".to_owned()),
            Some(c) => c,
        };
        let region_size = match self.region_size {
            Some(r) => r,
            None => {
                let (lo, hi) = DEFAULT_REGION_RANGE;
                (capacity / 16).clamp(lo, hi).min(capacity / 2).max(MIN_REGION_SIZE)
            }
        };
        if !(MIN_REGION_SIZE..=MAX_REGION_SIZE).contains(&region_size) {
            return invalid(format!(
                "disk tier: region size {region_size} is outside \
                 {MIN_REGION_SIZE}..={MAX_REGION_SIZE} bytes"
            ));
        }
        let regions = capacity / region_size;
        if regions < 2 {
            return invalid(format!(
                "disk tier: capacity {capacity} holds {regions} region(s) of {region_size} bytes; \
                 at least 2 are needed (raise the capacity or lower the region size)"
            ));
        }
        if regions > MAX_REGIONS {
            return invalid(format!(
                "disk tier: capacity {capacity} makes {regions} regions of {region_size} bytes, \
                 more than {MAX_REGIONS}; raise the region size"
            ));
        }
        // Both bounds were checked against constants far below `usize::MAX` and `u32::MAX`.
        let region_size = region_size as usize;
        let room = region_size - REGION_HEADER_LEN;
        let max_entry_size = self.max_entry_size.unwrap_or(room);
        if !(ENTRY_HEADER_LEN..=room).contains(&max_entry_size) {
            return invalid(format!(
                "disk tier: max entry size {max_entry_size} is outside {ENTRY_HEADER_LEN}..={room} \
                 bytes (an entry must fit in one region after its header)"
            ));
        }
        if self.dir.exists() && !self.dir.is_dir() {
            return invalid(format!(
                "disk tier: {} exists and is not a directory",
                self.dir.display()
            ));
        }
        Ok(Config {
            name: self.name.clone(),
            dir: self.dir.clone(),
            capacity,
            region_size,
            regions: regions as u32,
            max_entry_size,
            sync: self.sync,
        })
    }
}

/// One region file found at open.
struct Found {
    slot: u32,
    header: RegionHeader,
    file: File,
    map: Mmap,
}

impl Inner {
    fn region_path(&self, slot: u32) -> PathBuf {
        region_path(&self.cfg.dir, slot)
    }

    fn regions_in_use(&self) -> usize {
        self.shared.read().views.iter().filter(|v| !matches!(v, View::Free)).count()
    }

    fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    fn io(&self, op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Error {
        let path = path.into();
        move |e| Error::io(op, path, e)
    }

    fn check_size(&self, key: &[u8], value: &[u8]) -> Result<()> {
        let max = self.cfg.max_entry_size;
        let key_room = max - ENTRY_HEADER_LEN;
        if key.len() > key_room {
            return Err(Error::TooLarge { what: "key", len: key.len(), max: key_room });
        }
        let value_room = key_room - key.len();
        if value.len() > value_room {
            return Err(Error::TooLarge { what: "value", len: value.len(), max: value_room });
        }
        Ok(())
    }

    fn open(cfg: Config, clock: Arc<dyn Clock>, counters: Counters) -> Result<Inner> {
        fs::create_dir_all(&cfg.dir).map_err(|e| Error::io("create directory", &cfg.dir, e))?;
        let lock = lock_dir(&cfg.dir)?;
        let regions = cfg.regions as usize;
        let inner = Inner {
            clock,
            hasher: ahash::RandomState::new(),
            shared: RwLock::new(Shared {
                index: Index::default(),
                views: vec![View::Free; regions],
            }),
            writer: Mutex::new(Writer {
                active: None,
                sealed: VecDeque::new(),
                free: Vec::new(),
                keys: vec![Vec::new(); regions],
                shadowed: HashSet::new(),
                next_seq: 1,
                next_generation: 1,
                floor: 0,
                buf: Vec::new(),
            }),
            counters,
            closed: AtomicBool::new(false),
            _lock: lock,
            cfg,
        };
        inner.recover()?;
        Ok(inner)
    }

    /// Rebuilds the index from the region files in the directory.
    fn recover(&self) -> Result<()> {
        let mut found = self.find_regions()?;
        found.sort_by_key(|f| (f.header.generation, f.slot));
        let floor = found.iter().map(|f| f.header.floor).max().unwrap_or(0);
        let now = self.clock.wall();
        let mut w = self.writer.lock();
        let mut s = self.shared.write();
        // The newest entry seen per key hash: its sequence number, and where it is unless it
        // is a tombstone or expired (which still hide older entries of the key).
        let mut newest: HashMap<u64, (u64, Option<Loc>), BuildHasherDefault<IdentityHasher>> =
            HashMap::default();
        let mut max_seq = 0;
        let mut ends = Vec::with_capacity(found.len());
        for f in &found {
            let mut at = REGION_HEADER_LEN;
            // Every step moves `at` forward by at least one entry header, so the scan ends
            // within `len / ENTRY_HEADER_LEN` steps. `clean` says whether it reached the
            // zeros after the last entry (rather than a header it could not read).
            let clean = loop {
                match decode_entry(&f.map, at) {
                    Scan::End => break true,
                    Scan::Corrupt { why, skip } => {
                        self.counters.corrupt_entries.incr();
                        tracing::warn!(
                            path = %self.region_path(f.slot).display(), offset = at, reason = why,
                            rest_of_region_dropped = skip.is_none(),
                            "disk tier: dropping a corrupt entry"
                        );
                        match skip {
                            Some(len) => at += len,
                            None => break false,
                        }
                    }
                    Scan::Entry(r) => {
                        max_seq = max_seq.max(r.seq);
                        if r.seq >= floor {
                            let h = self.hash(r.key);
                            let expired = r.expires_at.is_some_and(|e| e.is_expired(now));
                            if expired {
                                self.counters.expired_dropped.incr();
                            }
                            let loc = (r.kind == Kind::Put && !expired).then_some(Loc {
                                slot: f.slot,
                                offset: at as u32,
                                len: r.len as u32,
                            });
                            if loc.is_some() {
                                w.keys[f.slot as usize].push(h);
                            }
                            let e = newest.entry(h).or_insert((r.seq, loc));
                            if r.seq >= e.0 {
                                *e = (r.seq, loc);
                            }
                        }
                        at += r.len;
                    }
                }
            };
            ends.push((at, clean));
        }
        s.index = newest.into_iter().filter_map(|(h, (_, loc))| Some((h, loc?))).collect();
        self.counters.recovered_entries.add(s.index.len() as u64);
        // New sequence numbers start past every number the last run can have used, not
        // just past the largest one read back: without fsync, an operating-system crash can
        // lose an entry's page yet keep a later page of the same region, so entries the scan
        // stopped before may reappear once appends resume over the hole. They all sit in the
        // newest region, after the entries scanned, so there are at most a region's worth.
        let unseen = (self.cfg.region_size / ENTRY_HEADER_LEN) as u64;
        w.next_seq = max_seq.saturating_add(unseen + 1).max(floor).max(1);
        w.next_generation = found.last().map_or(1, |f| f.header.generation.saturating_add(1));
        w.floor = floor;

        let newest_slot = found.last().map(|f| f.slot);
        for (f, (end, clean)) in found.into_iter().zip(ends) {
            let slot = f.slot;
            if Some(slot) == newest_slot && clean {
                // The newest region ended cleanly: keep appending to it, so a restart does not
                // cost a region. Its map is dropped before the first write.
                drop(f.map);
                let path = self.region_path(slot);
                let len = f.file.metadata().map_err(self.io("stat", &path))?.len();
                if len < self.cfg.region_size as u64 {
                    f.file
                        .set_len(self.cfg.region_size as u64)
                        .map_err(self.io("extend", &path))?;
                }
                let file = Arc::new(f.file);
                s.views[slot as usize] = View::Written(Arc::clone(&file));
                w.active = Some(Active { slot, file, offset: end });
            } else {
                s.views[slot as usize] = View::Mapped(Arc::new(for_random_reads(f.map)));
                w.sealed.push_back(slot);
            }
        }
        w.free = (0..self.cfg.regions)
            .rev()
            .filter(|&i| matches!(s.views[i as usize], View::Free))
            .collect();
        Ok(())
    }

    /// Opens and maps every region file of the directory; drops leftovers, region files
    /// beyond the configured count, and regions whose header is damaged or foreign.
    fn find_regions(&self) -> Result<Vec<Found>> {
        let dir = &self.cfg.dir;
        let mut found = Vec::new();
        // The newest generation among the regions dropped for lying beyond the capacity.
        let mut newest_dropped: Option<u64> = None;
        let entries = fs::read_dir(dir).map_err(|e| Error::io("read directory", dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("read directory", dir, e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let path = entry.path();
            if name.starts_with("region-") && name.ends_with(".tmp") {
                // A region that was being created when the process stopped.
                remove_file(&path)?;
                continue;
            }
            let Some(slot) = parse_region_name(name) else { continue };
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(self.io("open", &path))?;
            let len = file.metadata().map_err(self.io("stat", &path))?.len();
            let mut head = [0u8; REGION_HEADER_LEN];
            let header = if len < REGION_HEADER_LEN as u64 {
                Err("region header truncated")
            } else {
                file.read_exact_at(&mut head, 0).map_err(self.io("read", &path))?;
                RegionHeader::decode(&head)
            };
            if slot >= self.cfg.regions {
                tracing::info!(
                    path = %path.display(),
                    "disk tier: dropping a region beyond the configured capacity"
                );
                if let Ok(h) = header {
                    newest_dropped = newest_dropped.max(Some(h.generation));
                }
                drop(file);
                remove_file(&path)?;
                continue;
            }
            let header = header.and_then(|h| {
                if h.region_size as usize != self.cfg.region_size || len > h.region_size as u64 {
                    Err("region written with another region size")
                } else {
                    Ok(h)
                }
            });
            match header {
                Ok(header) => {
                    let map = mmap::map_readonly(&file).map_err(self.io("mmap", &path))?;
                    // Recovery reads it front to back once.
                    let _ = map.advise(memmap2::Advice::Sequential);
                    found.push(Found { slot, header, file, map });
                }
                Err(why) => {
                    self.counters.corrupt_regions.incr();
                    tracing::warn!(
                        path = %path.display(), reason = why,
                        "disk tier: dropping a region file"
                    );
                    drop(file);
                    remove_file(&path)?;
                }
            }
        }
        if let Some(cut) = newest_dropped {
            // The regions dropped may hold the newest entries of keys (a later value, the
            // tombstone of a removal) whose older entries lie in regions that stay. So every
            // region no newer than one dropped goes too, as FIFO reclaim would have taken it
            // first: what stays is newer than all that was dropped.
            let (older, newer): (Vec<Found>, Vec<Found>) =
                found.into_iter().partition(|f| f.header.generation <= cut);
            for f in older {
                let path = self.region_path(f.slot);
                tracing::info!(
                    path = %path.display(),
                    "disk tier: dropping a region older than one beyond the configured capacity"
                );
                drop(f);
                remove_file(&path)?;
            }
            found = newer;
        }
        Ok(found)
    }

    fn get(&self, key: &[u8]) -> Result<Option<TierEntry>> {
        let h = self.hash(key);
        let found = {
            let s = self.shared.read();
            s.index.get(&h).map(|&loc| (loc, s.views[loc.slot as usize].clone()))
        };
        let Some((loc, view)) = found else {
            self.counters.misses.incr();
            return Ok(None);
        };
        let (start, end) = (loc.offset as usize, loc.offset as usize + loc.len as usize);
        let verdict = match view {
            // The index and the views change together, so a location never points at a free
            // slot; were it to, a miss is the safe answer.
            View::Free => Verdict::Miss,
            View::Mapped(map) => {
                self.judge(map.get(start..end).map_or(Scan::End, |b| decode_entry(b, 0)), key)
            }
            View::Written(file) => {
                let mut buf = vec![0u8; loc.len as usize];
                file.read_exact_at(&mut buf, u64::from(loc.offset))
                    .map_err(|e| Error::io("read", self.region_path(loc.slot), e))?;
                self.judge(decode_entry(&buf, 0), key)
            }
        };
        match verdict {
            Verdict::Hit(entry) => {
                self.counters.hits.incr();
                return Ok(Some(entry));
            }
            Verdict::Miss => {}
            Verdict::Expired => {
                self.counters.expired_dropped.incr();
                self.unindex_if(h, loc);
            }
            Verdict::Corrupt(why) => self.drop_corrupt(key, h, loc, why),
        }
        self.counters.misses.incr();
        Ok(None)
    }

    fn judge(&self, scan: Scan<'_>, key: &[u8]) -> Verdict {
        match scan {
            Scan::Entry(r) if r.kind == Kind::Put && r.key == key => {
                if r.expires_at.is_some_and(|e| e.is_expired(self.clock.wall())) {
                    Verdict::Expired
                } else {
                    Verdict::Hit(TierEntry { value: r.value.to_vec(), expires_at: r.expires_at })
                }
            }
            // Another key with the same hash: this key is not stored.
            Scan::Entry(_) => Verdict::Miss,
            Scan::End => Verdict::Corrupt("entry missing (zeros or out of the file)"),
            Scan::Corrupt { why, .. } => Verdict::Corrupt(why),
        }
    }

    /// Drops `h` from the index if it still points at `loc`.
    fn unindex_if(&self, h: u64, loc: Loc) {
        let mut s = self.shared.write();
        if s.index.get(&h) == Some(&loc) {
            s.index.remove(&h);
        }
    }

    /// A read found `key`'s entry damaged: unindex it, and write a tombstone so that a restart
    /// does not serve an older value of the key in its place.
    fn drop_corrupt(&self, key: &[u8], h: u64, loc: Loc, why: &'static str) {
        self.counters.corrupt_entries.incr();
        let path = self.region_path(loc.slot);
        tracing::warn!(
            path = %path.display(), offset = loc.offset, reason = why,
            "disk tier: dropping a corrupt entry"
        );
        let mut w = self.writer.lock();
        if self.shared.read().index.get(&h) != Some(&loc) {
            return;
        }
        if let Err(e) = self.append(&mut w, Kind::Tombstone, None, key, &[]) {
            w.shadowed.insert(h);
            tracing::warn!(
                error = %e,
                "disk tier: no tombstone for a corrupt entry; a restart may serve an older value"
            );
        }
        self.shared.write().index.remove(&h);
    }

    fn put(&self, key: &[u8], entry: TierEntry) -> Result<()> {
        self.check_size(key, &entry.value)?;
        if entry.is_expired(self.clock.wall()) {
            return self.remove(key);
        }
        let h = self.hash(key);
        let mut w = self.writer.lock();
        match self.append(&mut w, Kind::Put, entry.expires_at, key, &entry.value) {
            Ok(loc) => {
                self.shared.write().index.insert(h, loc);
                w.keys[loc.slot as usize].push(h);
                if !w.shadowed.is_empty() {
                    w.shadowed.remove(&h);
                }
                self.counters.puts.incr();
                Ok(())
            }
            Err(e) => {
                // The write's outcome on disk is unknown: stop serving the key's older value so
                // that no reader sees a value older than a write that was attempted, and
                // remember that it may still be on disk for a later remove to hide.
                self.shared.write().index.remove(&h);
                w.shadowed.insert(h);
                Err(e)
            }
        }
    }

    fn remove(&self, key: &[u8]) -> Result<()> {
        let h = self.hash(key);
        let mut w = self.writer.lock();
        // A key the index does not hold has nothing on disk that recovery would serve: it was
        // evicted with its region, cleared, or hidden by a newer tombstone or expired entry,
        // unless it is shadowed (an older value behind a failed write is still there).
        if !self.shared.read().index.contains_key(&h) && !w.shadowed.contains(&h) {
            return Ok(());
        }
        let written = self.append(&mut w, Kind::Tombstone, None, key, &[]);
        self.shared.write().index.remove(&h);
        if written.is_ok() {
            w.shadowed.remove(&h);
        } else {
            w.shadowed.insert(h);
        }
        self.counters.removes.incr();
        written.map(|_| ())
    }

    /// Appends one entry to the active region (opening a new one when it is full) and returns
    /// where it went. The caller holds the writer lock and updates the index.
    fn append(
        &self,
        w: &mut Writer,
        kind: Kind,
        expires_at: Option<crate::ExpiresAt>,
        key: &[u8],
        value: &[u8],
    ) -> Result<Loc> {
        let seq = w.next_seq;
        w.next_seq += 1;
        w.buf.clear();
        encode_entry(&mut w.buf, kind, seq, expires_at, key, value);
        let len = entry_len(key.len(), value.len());
        if w.active.as_ref().is_none_or(|a| a.offset + len > self.cfg.region_size) {
            self.roll(w)?;
        }
        let Writer { active, buf, .. } = w;
        let Some(a) = active.as_mut() else {
            return Err(Error::Unavailable {
                tier: self.cfg.name.clone(),
                reason: "no active region".to_owned(),
            });
        };
        let path = || self.region_path(a.slot);
        a.file.write_all_at(buf, a.offset as u64).map_err(|e| Error::io("write", path(), e))?;
        let loc = Loc { slot: a.slot, offset: a.offset as u32, len: len as u32 };
        a.offset += len;
        if self.cfg.sync {
            a.file.sync_data().map_err(|e| Error::io("fsync", path(), e))?;
        }
        Ok(loc)
    }

    /// Seals the active region (if any) and makes a fresh one active, reclaiming the oldest
    /// sealed region when no slot is free.
    fn roll(&self, w: &mut Writer) -> Result<()> {
        if let Some(a) = w.active.take() {
            let view = match mmap::map_readonly(&a.file) {
                Ok(map) => View::Mapped(Arc::new(for_random_reads(map))),
                Err(e) => {
                    // Reading it with positioned reads works as well, only slower.
                    tracing::warn!(
                        error = %e,
                        "disk tier: cannot map a sealed region; reading it with pread"
                    );
                    View::Written(Arc::clone(&a.file))
                }
            };
            self.shared.write().views[a.slot as usize] = view;
            w.sealed.push_back(a.slot);
        }
        let slot = match w.free.pop() {
            Some(slot) => slot,
            None => {
                let Some(&oldest) = w.sealed.front() else {
                    return Err(Error::Unavailable {
                        tier: self.cfg.name.clone(),
                        reason: "no region to reclaim".to_owned(),
                    });
                };
                self.reclaim(w, oldest)?;
                w.sealed.pop_front();
                oldest
            }
        };
        match self.create_region(w, slot) {
            Ok(file) => {
                let file = Arc::new(file);
                self.shared.write().views[slot as usize] = View::Written(Arc::clone(&file));
                w.active = Some(Active { slot, file, offset: REGION_HEADER_LEN });
                Ok(())
            }
            Err(e) => {
                w.free.push(slot);
                Err(e)
            }
        }
    }

    /// Evicts every entry of the region in `slot` and deletes its file. The file goes first:
    /// were it to outlive the index entries, a restart could resurrect keys removed since.
    fn reclaim(&self, w: &mut Writer, slot: u32) -> Result<()> {
        remove_file(&self.region_path(slot))?;
        let keys = std::mem::take(&mut w.keys[slot as usize]);
        let mut s = self.shared.write();
        for h in keys {
            if s.index.get(&h).is_some_and(|l| l.slot == slot) {
                s.index.remove(&h);
            }
        }
        s.views[slot as usize] = View::Free;
        drop(s);
        self.counters.reclaimed_regions.incr();
        Ok(())
    }

    /// Creates the file of a new region in `slot`: written under a temporary name, then
    /// renamed into place, so that a crash never leaves a region file without its header.
    fn create_region(&self, w: &mut Writer, slot: u32) -> Result<File> {
        let tmp = self.cfg.dir.join(format!("region-{slot:05}.tmp"));
        let path = self.region_path(slot);
        let header = RegionHeader {
            region_size: self.cfg.region_size as u32,
            generation: w.next_generation,
            floor: w.floor,
        };
        let made = (|| {
            let file =
                OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&tmp)?;
            file.set_len(self.cfg.region_size as u64)?;
            file.write_all_at(&header.encode(), 0)?;
            if self.cfg.sync {
                file.sync_all()?;
            }
            fs::rename(&tmp, &path)?;
            if self.cfg.sync {
                File::open(&self.cfg.dir)?.sync_all()?;
            }
            Ok(file)
        })();
        match made {
            Ok(file) => {
                w.next_generation += 1;
                Ok(file)
            }
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                Err(Error::io("create region", path, e))
            }
        }
    }

    fn clear(&self) -> Result<()> {
        let mut w = self.writer.lock();
        // The new region records the floor first; once it exists, recovery ignores every
        // older entry even if deleting the old files below is cut short.
        let old_floor = w.floor;
        w.floor = w.next_seq;
        let file = match self.create_region(&mut w, 0) {
            Ok(file) => Arc::new(file),
            Err(e) => {
                w.floor = old_floor;
                return Err(e);
            }
        };
        {
            let mut s = self.shared.write();
            s.index.clear();
            s.views.iter_mut().for_each(|v| *v = View::Free);
            s.views[0] = View::Written(Arc::clone(&file));
        }
        w.active = Some(Active { slot: 0, file, offset: REGION_HEADER_LEN });
        w.sealed.clear();
        w.keys.iter_mut().for_each(Vec::clear);
        // The floor hides every older entry, shadowed ones included.
        w.shadowed.clear();
        w.free = (1..self.cfg.regions).rev().collect();
        let mut failed = None;
        for slot in 1..self.cfg.regions {
            if let Err(e) = remove_file(&self.region_path(slot)) {
                // Harmless for correctness (the floor hides the file's entries); its slot is
                // rewritten when it is next used.
                tracing::warn!(error = %e, "disk tier: clear could not delete a region file");
                failed.get_or_insert(e);
            }
        }
        if self.cfg.sync {
            File::open(&self.cfg.dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| Error::io("fsync", &self.cfg.dir, e))?;
        }
        failed.map_or(Ok(()), Err)
    }

    fn close(&self) -> Result<()> {
        let w = self.writer.lock();
        self.closed.store(true, Ordering::Release);
        if let Some(a) = &w.active {
            a.file.sync_data().map_err(self.io("fsync", self.region_path(a.slot)))?;
        }
        File::open(&self.cfg.dir)
            .and_then(|d| d.sync_all())
            .map_err(self.io("fsync", &self.cfg.dir))
    }
}

/// What a read made of the bytes at an entry's location.
enum Verdict {
    Hit(TierEntry),
    Miss,
    Expired,
    Corrupt(&'static str),
}

/// Tells the kernel that a sealed region is read at random: a read that misses the page cache
/// then brings in its own pages, not the default read-ahead window around them, which for
/// small entries would mostly be other entries' bytes. Advice only, so a failure is ignored.
fn for_random_reads(map: Mmap) -> Mmap {
    let _ = map.advise(memmap2::Advice::Random);
    map
}

fn region_path(dir: &Path, slot: u32) -> PathBuf {
    dir.join(format!("region-{slot:05}.dat"))
}

/// The slot of a region file name `region-NNNNN.dat`.
fn parse_region_name(name: &str) -> Option<u32> {
    let digits = name.strip_prefix("region-")?.strip_suffix(".dat")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Deletes a file; one that is already gone is fine.
fn remove_file(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("remove", path, e)),
    }
}

/// Takes the exclusive lock on `dir/LOCK` that keeps a second tier out of the directory.
///
/// A lock that is taken is retried for a moment before giving up: a `flock` belongs to the
/// open file, and a child process this one is spawning shares it between `fork` and `exec`
/// (where the close-on-exec flag drops it). A tier reopened on one thread while another thread
/// spawns a process would otherwise fail for no lasting reason.
fn lock_dir(dir: &Path) -> Result<File> {
    use fs4::fs_std::FileExt as _;
    const ATTEMPTS: u32 = 50;
    const PAUSE: std::time::Duration = std::time::Duration::from_millis(4);
    let path = dir.join("LOCK");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io("open", &path, e))?;
    for attempt in 1..=ATTEMPTS {
        match file.try_lock_exclusive() {
            Ok(true) => return Ok(file),
            Ok(false) if attempt < ATTEMPTS => std::thread::sleep(PAUSE),
            Ok(false) => break,
            Err(e) => return Err(Error::io("lock", &path, e)),
        }
    }
    Err(Error::io(
        "lock",
        &path,
        io::Error::new(io::ErrorKind::WouldBlock, "the directory is in use by another disk tier"),
    ))
}

#[cfg(test)]
mod tests;
