//! One tier as the tiered cache holds it: the tier, its timeout, circuit breaker, metrics,
//! and the keys whose copy in this tier may be stale.
//!
//! Every call goes through [`Slot::admit`] and [`Slot::finish`]: the breaker may refuse it,
//! a tokio timeout bounds it (whatever the tier does with its deadline), its latency and
//! outcome are recorded, and it runs inside a `tier.<op>` tracing span naming the tier.
//!
//! **Dirty keys.** A write (put or remove) to this tier that failed, timed out, or was not
//! attempted because the breaker was open may have left an older value here. Such a key is
//! marked dirty, and reads skip this tier for it, until a later write of the key to this tier
//! succeeds. The set is bounded: when it overflows, the whole tier is marked as needing a
//! clear, reads skip it entirely, and the next read that finds the breaker closed clears it.
//! So a failed write can make this tier miss, never serve an older value. The marks live in
//! memory, so a put that the tier answered but refused (a value too large for it, or a
//! Redis out of memory: [`Error::Refused`]) is also
//! followed by a remove of the key there: a persistent tier must not keep the older value for
//! a restart to serve.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use strata_metrics::{CircuitState, TierMetrics, TierOpMetrics};
use tracing::Instrument;

use super::breaker::{Admit, Breaker};
use crate::tier::{ExpiresAt, Tier, TierEntry, TierFuture};
use crate::{Error, Result};

/// The operations, for spans, errors and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Get,
    Put,
    Remove,
    Clear,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Get => "get",
            Op::Put => "put",
            Op::Remove => "remove",
            Op::Clear => "clear",
        }
    }
}

/// A call the breaker let through; it must be passed to [`Slot::finish`]. Dropped unfinished
/// (the caller was cancelled), a probe frees the breaker's probe slot.
pub(crate) struct Permit<'a> {
    breaker: &'a Breaker,
    admit: Admit,
    done: bool,
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.done && self.admit == Admit::Probe {
            self.breaker.abandon_probe();
        }
    }
}

pub(crate) struct Slot {
    pub(crate) tier: Arc<dyn Tier>,
    pub(crate) name: String,
    pub(crate) timeout: Duration,
    pub(crate) breaker: Breaker,
    pub(crate) metrics: TierMetrics,
    /// The longest time an entry may live in this tier (the near-cache cap above a shared tier).
    pub(crate) max_ttl: Option<Duration>,
    dirty: Mutex<HashSet<Vec<u8>>>,
    /// How many keys `dirty` holds, read without its lock so clean tiers pay one load.
    dirty_len: AtomicUsize,
    dirty_limit: usize,
    /// Set when this tier may hold stale values for keys no longer tracked one by one.
    needs_clear: AtomicBool,
    /// How many times `needs_clear` was raised; changed only with `dirty` locked, so that a
    /// repair can tell whether it was raised again while its clear ran.
    raised: AtomicU64,
    /// Set while one caller clears the tier to repair it, so that others do not pile on.
    clearing: AtomicBool,
}

impl Slot {
    pub(crate) fn new(
        tier: Arc<dyn Tier>,
        timeout: Duration,
        breaker: (u32, Duration),
        metrics: TierMetrics,
        max_ttl: Option<Duration>,
        dirty_limit: usize,
    ) -> Self {
        let name = tier.name().to_owned();
        let breaker = Breaker::new(breaker.0, breaker.1, Arc::clone(&metrics.circuit_state));
        Slot {
            tier,
            name,
            timeout,
            breaker,
            metrics,
            max_ttl,
            dirty: Mutex::new(HashSet::new()),
            dirty_len: AtomicUsize::new(0),
            dirty_limit,
            needs_clear: AtomicBool::new(false),
            raised: AtomicU64::new(0),
            clearing: AtomicBool::new(false),
        }
    }

    pub(crate) fn circuit_state(&self) -> CircuitState {
        self.breaker.state()
    }

    /// Asks the breaker for a call; a refusal is an [`Error::Unavailable`].
    fn admit(&self) -> Result<Permit<'_>> {
        match self.breaker.admit() {
            Some(admit) => Ok(Permit { breaker: &self.breaker, admit, done: false }),
            None => Err(Error::Unavailable {
                tier: self.name.clone(),
                reason: "circuit breaker open".to_owned(),
            }),
        }
    }

    /// The std deadline handed to the tier, matching the tokio timeout that enforces it.
    fn deadline(&self) -> std::time::Instant {
        let now = std::time::Instant::now();
        // A timeout too large to add means "no deadline" in practice: a year is plenty.
        now.checked_add(self.timeout)
            .or_else(|| now.checked_add(Duration::from_secs(365 * 24 * 3600)))
            .unwrap_or(now)
    }

    fn op_metrics(&self, op: Op) -> &TierOpMetrics {
        // The metric families know get, put and remove; a clear is a bulk removal.
        match op {
            Op::Get => &self.metrics.get,
            Op::Put => &self.metrics.put,
            Op::Remove | Op::Clear => &self.metrics.remove,
        }
    }

    /// Runs an admitted call under the timeout, in its span, and records how it went.
    async fn finish<T>(
        &self,
        mut permit: Permit<'_>,
        op: Op,
        call: TierFuture<'_, T>,
    ) -> Result<T> {
        let span = match op {
            Op::Get => tracing::debug_span!("tier.get", tier = %self.name),
            Op::Put => tracing::debug_span!("tier.put", tier = %self.name),
            Op::Remove => tracing::debug_span!("tier.remove", tier = %self.name),
            Op::Clear => tracing::debug_span!("tier.clear", tier = %self.name),
        };
        // A runtime without timers fails the call before it reaches the tier: the permit is
        // dropped unfinished (freeing a probe), and nothing is recorded against the tier.
        let bounded = crate::rt::timeout(self.timeout, call.instrument(span))?;
        let started = tokio::time::Instant::now();
        let outcome = match bounded.await {
            Ok(r) => r,
            Err(_) => Err(Error::Timeout { tier: self.name.clone(), op: op.name() }),
        };
        permit.done = true;
        let m = self.op_metrics(op);
        m.duration.record_duration(started.elapsed());
        match &outcome {
            Ok(_) => self.breaker.success(),
            Err(e) => {
                m.errors.incr();
                if matches!(e, Error::Timeout { .. }) {
                    m.timeouts.incr();
                }
                if is_health_failure(e) {
                    self.breaker.failure();
                } else {
                    // The tier answered; it refused this key or value, not every call.
                    self.breaker.success();
                }
                tracing::debug!(tier = %self.name, op = op.name(), error = %e, "tier call failed");
            }
        }
        outcome
    }

    pub(crate) async fn get(&self, key: &[u8]) -> Result<Option<TierEntry>> {
        let permit = self.admit()?;
        let call = self.tier.get(key, self.deadline());
        self.finish(permit, Op::Get, call).await
    }

    /// Writes `entry`, capped to this tier's longest TTL; an entry already expired becomes a
    /// removal, since an expired entry is never written down.
    pub(crate) async fn put(&self, key: &[u8], entry: TierEntry, now: SystemTime) -> Result<()> {
        let entry = self.cap(entry, now);
        if entry.is_expired(now) {
            return self.remove(key).await;
        }
        let permit = self.admit()?;
        let call = self.tier.put(key, entry, self.deadline());
        let outcome = self.finish(permit, Op::Put, call).await;
        if outcome
            .as_ref()
            .is_err_and(|e| !is_health_failure(e) && !crate::rt::is_missing_timers(e))
        {
            // The tier answered and refused this key or value (too large for it, say), keeping
            // any older value of the key. The key is marked dirty, but marks live in memory:
            // after a restart a persistent tier would serve that older value as current. So
            // it goes now; should this fail too, the mark still hides it until then.
            let _ = self.remove(key).await;
        }
        outcome
    }

    pub(crate) async fn remove(&self, key: &[u8]) -> Result<()> {
        let permit = self.admit()?;
        let call = self.tier.remove(key, self.deadline());
        self.finish(permit, Op::Remove, call).await
    }

    pub(crate) async fn clear(&self) -> Result<()> {
        let permit = self.admit()?;
        let call = self.tier.clear(self.deadline());
        self.finish(permit, Op::Clear, call).await
    }

    /// `entry` with its expiry brought forward to this tier's longest TTL.
    pub(crate) fn cap(&self, mut entry: TierEntry, now: SystemTime) -> TierEntry {
        // A cap past what the clock can represent caps nothing.
        if let Some(max) = self.max_ttl.filter(|max| now.checked_add(*max).is_some()) {
            let cap = ExpiresAt::after(now, max);
            entry.expires_at = Some(entry.expires_at.map_or(cap, |e| e.min(cap)));
        }
        entry
    }

    /// Whether this tier's copy of `key` can be trusted.
    pub(crate) fn readable(&self, key: &[u8]) -> bool {
        // The set first, then the flag. An overflow raises the flag before it empties the set,
        // so a key that leaves the set that way is seen in the set or else through the flag;
        // read the other way round, a reader could pass the flag just before the overflow
        // raised it and then find the key gone from the emptied set.
        let unmarked =
            self.dirty_len.load(Ordering::Acquire) == 0 || !self.dirty.lock().contains(key);
        unmarked && !self.needs_clear.load(Ordering::Acquire)
    }

    /// Records the outcome of a write of `key` to this tier (see the module docs).
    pub(crate) fn after_write(&self, key: &[u8], ok: bool) {
        if ok {
            if self.dirty_len.load(Ordering::Acquire) != 0 {
                let mut dirty = self.dirty.lock();
                if dirty.remove(key) {
                    self.dirty_len.store(dirty.len(), Ordering::Release);
                }
            }
            return;
        }
        let mut dirty = self.dirty.lock();
        if dirty.len() >= self.dirty_limit {
            // Too many to track: distrust the whole tier until it has been cleared. The
            // flag is raised before the set is emptied, so no reader sees neither.
            self.needs_clear.store(true, Ordering::Release);
            self.raised.fetch_add(1, Ordering::AcqRel);
            dirty.clear();
            tracing::warn!(tier = %self.name, "too many failed writes; tier skipped until cleared");
        } else {
            dirty.insert(key.to_vec());
        }
        self.dirty_len.store(dirty.len(), Ordering::Release);
    }

    /// Records that a clear of this tier failed: it may still hold anything.
    pub(crate) fn after_failed_clear(&self) {
        let _dirty = self.dirty.lock();
        self.needs_clear.store(true, Ordering::Release);
        self.raised.fetch_add(1, Ordering::AcqRel);
    }

    /// If this tier must be cleared before it is read again, tries that once now (one caller
    /// at a time). Returns whether the tier is readable afterwards.
    pub(crate) async fn repair(&self) -> bool {
        if !self.needs_clear.load(Ordering::Acquire) {
            return true;
        }
        if self.clearing.swap(true, Ordering::AcqRel) {
            return false;
        }
        // Lowered however this ends: a caller that stops waiting (a timeout around `get`)
        // drops this future mid-clear, and a flag left raised would refuse every later
        // repair, leaving the tier unread for good.
        let _clearing = ClearingFlag(&self.clearing);
        let before = self.raised.load(Ordering::Acquire);
        // Keys marked dirty before the clear are empty here now; keys marked during it stay
        // marked, which only costs misses. But if the flag was raised again while the clear
        // ran (the dirty set overflowed, forgetting keys whose failed writes may have left
        // stale values after the clear passed them), it stays raised for another clear.
        let ok = self.clear().await.is_ok() && {
            let _dirty = self.dirty.lock();
            let unchanged = self.raised.load(Ordering::Acquire) == before;
            if unchanged {
                self.needs_clear.store(false, Ordering::Release);
            }
            unchanged
        };
        if ok {
            tracing::info!(tier = %self.name, "tier cleared after failed writes; reads resume");
        }
        ok
    }
}

/// Lowers [`Slot::repair`]'s `clearing` flag when the repair ends or is dropped.
struct ClearingFlag<'a>(&'a AtomicBool);

impl Drop for ClearingFlag<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// Whether an error says the tier is unhealthy (and counts toward opening its breaker), as
/// opposed to the tier refusing one key or value.
pub(crate) fn is_health_failure(e: &Error) -> bool {
    !matches!(
        e,
        Error::TooLarge { .. }
            | Error::Refused { .. }
            | Error::Codec(_)
            | Error::Corrupt { .. }
            | Error::InvalidConfig(_)
            | Error::Full { .. }
            | Error::Conflict { .. }
    )
}
