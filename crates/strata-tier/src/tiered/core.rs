//! The untyped body of the tiered cache: bytes in, bytes out. The typed [`TieredCache`]
//! (`super::TieredCache`) is a thin layer of codecs over it, so the orchestration is compiled
//! once, not once per key and value type.
//!
//! Locking: every write, promotion and invalidation of a key runs under that key's striped
//! async mutex, held across all the tiers it touches. A read takes it only after missing the
//! top tier. So the tiers change for one key in one order, and a value read from a lower tier
//! cannot be promoted over a newer write or a removal. A load (`get_or_load`) holds its key's
//! stripe and the close gate while it runs; reads that the load makes of the same cache on
//! its own task find them recorded in a task-local and go on without waiting for themselves.
//!
//! Cancellation: a multi-tier write runs in a spawned task that owns the key's lock, so a
//! caller that stops waiting cannot leave the write half done (new value above, old below).
//! Half-done reads and promotions are harmless: a promotion only copies the current value.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::Mutex;
use strata_core::{Cache, Clock};
use strata_metrics::Registry;
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;

use super::slot::Slot;
use super::writeback::{Lookup, PendingOp, WriteBack};
use super::{TierFailure, WriteReport};
use crate::tier::{Invalidation, Tier, TierEntry};
use crate::{Error, Result};

tokio::task_local! {
    /// What loads on this task hold while their `load` runs (lock stripes and close gates, by
    /// address). A load may read the cache, and such a read must not wait for a lock the load
    /// holds: the holder is this very task, suspended in the load until the read returns.
    static HELD: Vec<usize>;
}

/// The address that stands for `lock` in [`HELD`].
fn addr<T>(lock: &T) -> usize {
    std::ptr::from_ref(lock) as usize
}

/// Whether a load on the current task holds the lock at `addr`.
fn held_here(addr: usize) -> bool {
    HELD.try_with(|held| held.contains(&addr)).unwrap_or(false)
}

/// Runs `fut` (a load) with the locks at `addrs` recorded as held by the current task.
async fn holding<F: std::future::Future>(addrs: [usize; 2], fut: F) -> F::Output {
    let mut held = HELD.try_with(Clone::clone).unwrap_or_default();
    held.extend(addrs);
    HELD.scope(held, fut).await
}

/// The shared tiers (those with an invalidation stream) attached to a cache that is open, by
/// address. A shared tier skips the notices of its own writes (the cache that wrote already
/// knows), so two caches over one tier instance would never hear each other's writes; the
/// builder refuses the second one (see [`Attachment`]).
static ATTACHED: Mutex<Vec<usize>> = Mutex::new(Vec::new());

/// The address that identifies a tier instance, shared by every clone of its `Arc`.
fn tier_addr(tier: &Arc<dyn Tier>) -> usize {
    Arc::as_ptr(tier).cast::<()>() as usize
}

/// One cache's claim on its shared tiers, released when the cache closes or is dropped.
/// While it is held the tiers' `Arc`s are alive, so their addresses cannot be reused.
pub(crate) struct Attachment(Mutex<Vec<usize>>);

impl Attachment {
    /// Claims `tiers` for one cache, all or none; on a conflict, the name of a tier that
    /// another open cache holds.
    pub(crate) fn claim<'a>(
        tiers: impl IntoIterator<Item = &'a Arc<dyn Tier>>,
    ) -> std::result::Result<Self, String> {
        let mut attached = ATTACHED.lock();
        let mut mine = Vec::new();
        for tier in tiers {
            let addr = tier_addr(tier);
            if attached.contains(&addr) {
                // Nothing was pushed yet: the claim is all or none.
                return Err(tier.name().to_owned());
            }
            mine.push(addr);
        }
        attached.extend_from_slice(&mine);
        Ok(Attachment(Mutex::new(mine)))
    }

    fn release(&self) {
        let mine = std::mem::take(&mut *self.0.lock());
        if !mine.is_empty() {
            ATTACHED.lock().retain(|addr| !mine.contains(addr));
        }
    }
}

impl Drop for Attachment {
    fn drop(&mut self) {
        self.release();
    }
}

/// What one tier said about a key.
enum Read {
    Hit(TierEntry),
    Miss,
    /// The tier failed, was skipped, or may hold a stale copy: a miss that proves nothing.
    Unknown,
}

pub(crate) struct Core {
    pub(crate) slots: Arc<[Slot]>,
    pub(crate) clock: Arc<dyn Clock>,
    locks: Box<[Arc<tokio::sync::Mutex<()>>]>,
    hasher: ahash::RandomState,
    negative: Option<Cache<Vec<u8>, ()>>,
    pub(crate) writeback: Option<WriteBack>,
    /// Writes hold it shared; `close` takes it exclusively, so it waits for writes in flight
    /// and no write starts after it. `true` once closed.
    gate: tokio::sync::RwLock<bool>,
    closed: AtomicBool,
    background: Mutex<Vec<JoinHandle<()>>>,
    pub(crate) registry: Arc<Registry>,
    /// This cache's claim on its shared tiers (released on close, or on drop).
    attachment: Attachment,
}

impl Drop for Core {
    fn drop(&mut self) {
        for task in self.background.get_mut().drain(..) {
            task.abort();
        }
    }
}

impl Core {
    pub(crate) fn new(
        slots: Arc<[Slot]>,
        clock: Arc<dyn Clock>,
        lock_stripes: usize,
        negative: Option<Cache<Vec<u8>, ()>>,
        writeback: Option<WriteBack>,
        registry: Arc<Registry>,
        attachment: Attachment,
    ) -> Self {
        Core {
            slots,
            clock,
            locks: (0..lock_stripes).map(|_| Arc::new(tokio::sync::Mutex::new(()))).collect(),
            hasher: ahash::RandomState::new(),
            negative,
            writeback,
            gate: tokio::sync::RwLock::new(false),
            closed: AtomicBool::new(false),
            background: Mutex::new(Vec::new()),
            registry,
            attachment,
        }
    }

    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        Ok(())
    }

    /// [`Self::check_open`], and for a write, that the runtime can run it: a write runs in
    /// a spawned task whose tier calls need timers, and a runtime without them must fail it
    /// before any tier is touched or any key marked stale. (Reads find out on their first
    /// tier call instead, which costs them no extra timer.)
    fn check_writable(&self) -> Result<()> {
        self.check_open()?;
        crate::rt::require_timers()
    }

    fn lock_for(&self, key: &[u8]) -> Arc<tokio::sync::Mutex<()>> {
        // The stripe count is a power of two (checked by the builder).
        let i = self.hasher.hash_one(key) as usize & (self.locks.len() - 1);
        Arc::clone(&self.locks[i])
    }

    /// Takes every stripe, in order (so two callers cannot deadlock), for the operations that
    /// touch every key: a clear must not be undone by a promotion that read before it.
    async fn lock_all(&self) -> Vec<tokio::sync::OwnedMutexGuard<()>> {
        let mut guards = Vec::with_capacity(self.locks.len());
        for lock in self.locks.iter() {
            guards.push(Arc::clone(lock).lock_owned().await);
        }
        guards
    }

    // ---- Reads ----

    /// Reads tier `i`. `count_miss` is false for the second look at the top tier under the
    /// lock, so that one lookup counts one miss. The one error is a runtime that cannot run
    /// tier calls at all (no time driver), which no other tier could answer either.
    async fn read_slot(
        &self,
        i: usize,
        key: &[u8],
        now: SystemTime,
        count_miss: bool,
    ) -> Result<Read> {
        let slot = &self.slots[i];
        // A distrusted tier is repaired (cleared) first if it can be, then read.
        let trusted = slot.readable(key) || (slot.repair().await && slot.readable(key));
        if !trusted {
            return Ok(Read::Unknown);
        }
        Ok(match slot.get(key).await {
            Ok(Some(e)) if !e.is_expired(now) => {
                slot.metrics.hits.incr();
                Read::Hit(e)
            }
            Ok(_) => {
                if count_miss {
                    slot.metrics.misses.incr();
                }
                Read::Miss
            }
            Err(e) if crate::rt::is_missing_timers(&e) => return Err(e),
            Err(_) => Read::Unknown,
        })
    }

    pub(crate) async fn get(&self, key: &[u8]) -> Result<Option<TierEntry>> {
        self.check_open()?;
        if let Read::Hit(e) = self.read_slot(0, key, self.clock.wall(), true).await? {
            return Ok(Some(e));
        }
        if self.negative.as_ref().is_some_and(|n| n.contains_key(key)) {
            return Ok(None);
        }
        let lock = self.lock_for(key);
        // Inside a load that holds this stripe, this task already has the lock.
        let _guard = if held_here(addr(&*lock)) { None } else { Some(lock.lock().await) };
        self.read_locked(key, true).await
    }

    /// The read below the top tier, with the key's lock held.
    async fn read_locked(&self, key: &[u8], remember_miss: bool) -> Result<Option<TierEntry>> {
        let now = self.clock.wall();
        let mut proven = true;
        // The top tier again: another reader may have promoted the key while we waited.
        match self.read_slot(0, key, now, false).await? {
            Read::Hit(e) => return Ok(Some(e)),
            Read::Miss => {}
            Read::Unknown => proven = false,
        }
        if let Some(wb) = &self.writeback {
            match wb.lookup(key) {
                Lookup::Queued(PendingOp::Put(e)) if !e.is_expired(now) => {
                    // The queued write is the newest value: back into the top tier with it.
                    let top = &self.slots[0];
                    if top.put(key, e.clone(), now).await.is_ok() {
                        top.after_write(key, true);
                    }
                    return Ok(Some(e));
                }
                Lookup::Queued(_) | Lookup::Cleared => return Ok(None),
                Lookup::Nothing => {}
            }
        }
        for i in 1..self.slots.len() {
            match self.read_slot(i, key, now, true).await? {
                Read::Hit(e) => {
                    self.promote(key, &e, i, now).await;
                    return Ok(Some(e));
                }
                Read::Miss => {}
                Read::Unknown => proven = false,
            }
        }
        // Only a miss every tier answered is remembered: a skipped tier may hold the key.
        if proven && remember_miss {
            if let Some(n) = &self.negative {
                n.insert(key.to_vec(), ());
            }
        }
        Ok(None)
    }

    /// Copies `entry`, found in tier `found`, into every tier above it.
    async fn promote(&self, key: &[u8], entry: &TierEntry, found: usize, now: SystemTime) {
        let mut promoted = false;
        for slot in &self.slots[..found] {
            // A failed promotion leaves the tier without the key or with this same value, never
            // with an older one (a tier gets an older value only from a failed write, which
            // marked the key already), so only a success changes the key's mark.
            if slot.put(key, entry.clone(), now).await.is_ok() {
                slot.after_write(key, true);
                promoted = true;
            }
        }
        if promoted && found < self.slots.len() {
            self.slots[found].metrics.promotions.incr();
        }
    }

    /// Reads `key`, or runs `load` under the key's lock (one load per key at a time) and
    /// stores what it returns. Returns the entry and whether it was loaded.
    pub(crate) async fn get_or_load<F>(&self, key: &[u8], load: F) -> Result<(TierEntry, bool)>
    where
        F: std::future::Future<Output = Result<TierEntry>>,
    {
        self.check_open()?;
        if let Read::Hit(e) = self.read_slot(0, key, self.clock.wall(), true).await? {
            return Ok((e, false));
        }
        // A miss leads to a load and a write, which must not start on a runtime that cannot
        // run it (see `check_writable`).
        crate::rt::require_timers()?;
        let lock = self.lock_for(key);
        // Inside a load of this cache (a load reading it), this task already holds the gate,
        // and maybe this stripe: taking them again would wait for itself (a read of the gate
        // queues behind a waiting `close`).
        let (gate_addr, lock_addr) = (addr(&self.gate), addr(&*lock));
        let _gate = if held_here(gate_addr) {
            None
        } else {
            let gate = self.gate.read().await;
            if *gate {
                return Err(Error::Closed);
            }
            Some(gate)
        };
        let _guard = if held_here(lock_addr) { None } else { Some(lock.lock().await) };
        if let Some(e) = self.read_locked(key, false).await? {
            return Ok((e, false));
        }
        let entry = holding([gate_addr, lock_addr], load).await?;
        let now = self.clock.wall();
        // The loaded value is the caller's whatever happens to the copies: a failed store is
        // counted by the tiers and reported in the log, not turned into a failed read.
        let stored = if entry.is_expired(now) {
            self.remove_locked(key).await
        } else {
            self.put_locked(key, entry.clone(), now).await
        };
        match stored {
            Ok(report) if !report.is_complete() => {
                tracing::debug!(failures = report.failures().len(), "loaded value stored partly");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "loaded value could not be stored in any tier"),
        }
        Ok((entry, true))
    }

    // ---- Writes ----

    /// Runs a write in its own task, so it completes even if the caller stops waiting.
    async fn spawn_write<F>(fut: F) -> Result<WriteReport>
    where
        F: std::future::Future<Output = Result<WriteReport>> + Send + 'static,
    {
        tokio::spawn(fut).await.map_err(|e| Error::Unavailable {
            tier: "tiered".to_owned(),
            reason: format!("write task failed: {e}"),
        })?
    }

    pub(crate) async fn put(
        self: &Arc<Self>,
        key: Vec<u8>,
        entry: TierEntry,
    ) -> Result<WriteReport> {
        self.check_writable()?;
        let core = Arc::clone(self);
        Self::spawn_write(async move {
            let gate = core.gate.read().await;
            if *gate {
                return Err(Error::Closed);
            }
            let lock = core.lock_for(&key);
            let _guard = lock.lock().await;
            let now = core.clock.wall();
            if entry.is_expired(now) {
                // Never written down: an expired put is a removal.
                return core.remove_locked(&key).await;
            }
            core.put_locked(&key, entry, now).await
        })
        .await
    }

    async fn put_locked(
        &self,
        key: &[u8],
        entry: TierEntry,
        now: SystemTime,
    ) -> Result<WriteReport> {
        if let Some(n) = &self.negative {
            n.remove(key);
        }
        let mut report = WriteReport::default();
        let Some(wb) = &self.writeback else {
            let mut stored = false;
            for slot in self.slots.iter() {
                let outcome = slot.put(key, entry.clone(), now).await;
                stored |= outcome.is_ok();
                record(slot, key, outcome, &mut report);
            }
            if !stored {
                return Err(report.into_first_error());
            }
            return Ok(report);
        };
        // The place in the queue comes first: a `Full` error leaves every tier untouched.
        let reservation = wb.reserve(false).await?;
        let top = &self.slots[0];
        let outcome = top.put(key, entry.clone(), now).await;
        record(top, key, outcome, &mut report);
        wb.send(reservation, key.to_vec(), PendingOp::Put(entry))?;
        Ok(report)
    }

    pub(crate) async fn remove(self: &Arc<Self>, key: Vec<u8>) -> Result<WriteReport> {
        self.check_writable()?;
        let core = Arc::clone(self);
        Self::spawn_write(async move {
            let gate = core.gate.read().await;
            if *gate {
                return Err(Error::Closed);
            }
            let lock = core.lock_for(&key);
            let _guard = lock.lock().await;
            core.remove_locked(&key).await
        })
        .await
    }

    /// Removes `key` everywhere. A tier that fails keeps the key marked dirty, so the removal
    /// holds for readers in any case; the failures are reported.
    async fn remove_locked(&self, key: &[u8]) -> Result<WriteReport> {
        let mut report = WriteReport::default();
        let Some(wb) = &self.writeback else {
            for slot in self.slots.iter() {
                let outcome = slot.remove(key).await;
                record(slot, key, outcome, &mut report);
            }
            return Ok(report);
        };
        let reservation = wb.reserve(false).await?;
        let top = &self.slots[0];
        let outcome = top.remove(key).await;
        record(top, key, outcome, &mut report);
        wb.send(reservation, key.to_vec(), PendingOp::Remove)?;
        Ok(report)
    }

    pub(crate) async fn invalidate_all(self: &Arc<Self>) -> Result<WriteReport> {
        self.check_writable()?;
        let core = Arc::clone(self);
        Self::spawn_write(async move {
            let gate = core.gate.read().await;
            if *gate {
                return Err(Error::Closed);
            }
            let _all = core.lock_all().await;
            if let Some(n) = &core.negative {
                n.invalidate_all();
            }
            let mut report = WriteReport::default();
            let slots: &[Slot] = match &core.writeback {
                None => &core.slots,
                Some(wb) => {
                    // Always waits for a place: once asked, the lower tiers must be cleared,
                    // and the queued clear is what hides their stale copies meanwhile.
                    let reservation = wb.reserve(true).await?;
                    wb.send_clear(reservation)?;
                    &core.slots[..1]
                }
            };
            for slot in slots {
                if let Err(error) = slot.clear().await {
                    slot.after_failed_clear();
                    report.push(TierFailure { tier: slot.name.clone(), error });
                }
            }
            Ok(report)
        })
        .await
    }

    // ---- Coherence ----

    /// Starts a task that applies the invalidations of tier `index` to the tiers above it.
    pub(crate) fn watch(
        self: &Arc<Self>,
        index: usize,
        mut rx: tokio::sync::broadcast::Receiver<Invalidation>,
    ) {
        let weak = Arc::downgrade(self);
        let task = tokio::spawn(async move {
            loop {
                let notice = rx.recv().await;
                // Held only while applying one notice, so the cache can be dropped between.
                let Some(core) = weak.upgrade() else { return };
                match notice {
                    Ok(Invalidation::Key(key)) => core.invalidate_key_above(index, &key).await,
                    Ok(Invalidation::All) | Err(RecvError::Lagged(_)) => {
                        core.clear_above(index).await;
                    }
                    Err(RecvError::Closed) => {
                        // No more notices will come, so nothing above can be trusted to stay
                        // fresh: drop it once, and stop.
                        core.clear_above(index).await;
                        tracing::warn!(tier = %core.slots[index].name, "invalidation stream ended");
                        return;
                    }
                }
            }
        });
        self.background.lock().push(task);
    }

    async fn invalidate_key_above(&self, index: usize, key: &[u8]) {
        let lock = self.lock_for(key);
        let _guard = lock.lock().await;
        if let Some(n) = &self.negative {
            n.remove(key);
        }
        for slot in &self.slots[..index] {
            let ok = slot.remove(key).await.is_ok();
            slot.after_write(key, ok);
        }
    }

    async fn clear_above(&self, index: usize) {
        let _all = self.lock_all().await;
        if let Some(n) = &self.negative {
            n.invalidate_all();
        }
        for slot in &self.slots[..index] {
            if slot.clear().await.is_err() {
                slot.after_failed_clear();
            }
        }
    }

    // ---- Lifecycle ----

    pub(crate) async fn flush(&self) -> Result<()> {
        match &self.writeback {
            Some(wb) => wb.flush().await,
            None => Ok(()),
        }
    }

    pub(crate) async fn close(&self) {
        {
            let mut gate = self.gate.write().await;
            if *gate {
                return;
            }
            *gate = true;
            self.closed.store(true, Ordering::Release);
        }
        if let Some(wb) = &self.writeback {
            wb.close().await;
        }
        for task in self.background.lock().drain(..) {
            task.abort();
        }
        // Closed: no call or notice reaches the tiers through this cache any more, so another
        // cache may attach them.
        self.attachment.release();
    }
}

/// Records a write's outcome on `slot` (dirty marking) and in `report`.
fn record(slot: &Slot, key: &[u8], outcome: Result<()>, report: &mut WriteReport) {
    slot.after_write(key, outcome.is_ok());
    if let Err(error) = outcome {
        report.push(TierFailure { tier: slot.name.clone(), error });
    }
}
