//! The write-back queue: writes to the tiers below the top one, applied later, in order, by
//! a few worker tasks ("lanes").
//!
//! - **Bounded.** A write holds one permit of a semaphore of `capacity` permits from before
//!   it touches the top tier until the worker has applied it to every lower tier. When none is
//!   free the caller waits ([`OnFull::Wait`]) or gets [`Error::Full`] ([`OnFull::Error`]) with
//!   nothing written; a write is never dropped.
//! - **Ordered.** Jobs are sent under the key's lock to the lane the key hashes to, and each
//!   lane applies its jobs first in, first out, so an older write to a key never lands after a
//!   newer one; lanes let writes of different keys to a slow tier overlap.
//! - **Clears are barriers.** A clear is sent to every lane; each lane stops at it until all
//!   have, one of them clears the lower tiers, and only then do the lanes go on. So the clear
//!   lands after every write queued before it and before every write queued after it.
//! - **Visible.** Until a job is applied, [`Pending`] holds the newest queued operation per
//!   key, and readers that miss the top tier consult it before the lower tiers, which may
//!   still hold an older value. Each job carries a sequence number, so that finishing an older
//!   job never hides a newer pending one. A queued clear makes every key without a newer
//!   pending write read as absent below the top tier until the clear is applied.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use strata_core::Clock;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use super::slot::{is_health_failure, Slot};
use super::OnFull;
use crate::tier::TierEntry;
use crate::{Error, Result};

/// The wait before the first retry of a failed write-back job; it doubles per retry.
const FIRST_RETRY_BACKOFF: Duration = Duration::from_millis(10);

/// The longest wait between two retries of a write-back job.
///
/// A lane that waits holds every later write of its keys behind it, and only an open breaker
/// stops the retries early, so without a cap a late-opening breaker and many retries would
/// hold a lane for hours (10 ms doubled 20 times is about three hours). 2 s is long enough to
/// stop hammering a tier that is restarting or failing over (which takes seconds), and of
/// the order of a tier call's own timeout (1 s by default) and the breaker's cool-down (5 s
/// by default), so a retry waits no longer than those already let a bad tier cost; a job
/// then holds its lane at most `retries * (2 s + timeout)`, linear in the retries asked for.
const MAX_RETRY_BACKOFF: Duration = Duration::from_secs(2);

/// What a queued job does to the lower tiers.
#[derive(Debug, Clone)]
pub(crate) enum PendingOp {
    Put(TierEntry),
    Remove,
}

/// What readers see of the queue.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    by_key: HashMap<Vec<u8>, (u64, PendingOp)>,
    /// Clears queued and not yet applied.
    clears: u64,
}

/// What a reader that missed the top tier learns from the queue.
#[derive(Debug)]
pub(crate) enum Lookup {
    /// The newest queued operation on the key.
    Queued(PendingOp),
    /// Nothing is queued for the key, but a clear is: the lower tiers' copy is stale.
    Cleared,
    /// Nothing queued: the lower tiers are up to date for the key.
    Nothing,
}

enum Job {
    Write { seq: u64, key: Vec<u8>, op: PendingOp, _permit: OwnedSemaphorePermit },
    Clear(Arc<ClearJob>),
}

/// One clear, shared by every lane; its place in the queue is released when the last lane
/// lets go of it, after the clear is done.
struct ClearJob {
    barrier: tokio::sync::Barrier,
    _permit: OwnedSemaphorePermit,
}

/// A reserved place in the queue, taken before anything is written.
pub(crate) struct Reservation(OwnedSemaphorePermit);

pub(crate) struct WriteBack {
    capacity: usize,
    on_full: OnFull,
    permits: Arc<Semaphore>,
    /// One sender per lane; `None` once closed. Sending under this one mutex keeps the clear
    /// markers in the same place relative to other jobs in every lane.
    lanes: Mutex<Option<Vec<mpsc::UnboundedSender<Job>>>>,
    hasher: ahash::RandomState,
    pending: Arc<Mutex<Pending>>,
    seq: Mutex<u64>,
    workers: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    slots: Arc<[Slot]>,
}

impl WriteBack {
    /// Starts `lanes` workers on the current runtime; they write to `slots[1..]`.
    pub(crate) fn start(
        slots: Arc<[Slot]>,
        capacity: usize,
        on_full: OnFull,
        lanes: usize,
        retries: u32,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let permits = Arc::new(Semaphore::new(capacity));
        let pending = Arc::new(Mutex::new(Pending::default()));
        let mut senders = Vec::with_capacity(lanes);
        let mut workers = Vec::with_capacity(lanes);
        for _ in 0..lanes.max(1) {
            let (tx, rx) = mpsc::unbounded_channel();
            let worker = Worker {
                slots: Arc::clone(&slots),
                pending: Arc::clone(&pending),
                permits: Arc::clone(&permits),
                capacity,
                retries,
                clock: Arc::clone(&clock),
            };
            senders.push(tx);
            workers.push(tokio::spawn(worker.run(rx)));
        }
        WriteBack {
            capacity,
            on_full,
            permits,
            lanes: Mutex::new(Some(senders)),
            hasher: ahash::RandomState::new(),
            pending,
            seq: Mutex::new(0),
            workers: Mutex::new(workers),
            slots,
        }
    }

    /// Jobs queued and not yet applied.
    pub(crate) fn len(&self) -> usize {
        self.capacity - self.permits.available_permits()
    }

    /// Takes a place in the queue, waiting or failing as configured (`force_wait` for a
    /// clear, which must not be refused once the top tier may have been cleared).
    pub(crate) async fn reserve(&self, force_wait: bool) -> Result<Reservation> {
        let permits = Arc::clone(&self.permits);
        if force_wait || self.on_full == OnFull::Wait {
            return permits.acquire_owned().await.map(Reservation).map_err(|_| Error::Closed);
        }
        match permits.try_acquire_owned() {
            Ok(p) => Ok(Reservation(p)),
            Err(tokio::sync::TryAcquireError::NoPermits) => {
                for slot in &self.slots[1..] {
                    slot.metrics.writeback_rejections.incr();
                }
                Err(Error::Full { tier: self.lower_names(), capacity: self.capacity })
            }
            Err(tokio::sync::TryAcquireError::Closed) => Err(Error::Closed),
        }
    }

    fn lower_names(&self) -> String {
        self.slots[1..].iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(",")
    }

    /// Queues `op` on `key` with its reservation. The caller holds the key's lock.
    pub(crate) fn send(&self, r: Reservation, key: Vec<u8>, op: PendingOp) -> Result<()> {
        let lanes = self.lanes.lock();
        let lanes = lanes.as_ref().ok_or(Error::Closed)?;
        let lane = &lanes[self.hasher.hash_one(&key) as usize % lanes.len()];
        let seq = {
            let mut seq = self.seq.lock();
            *seq += 1;
            *seq
        };
        // The pending entry is in place before the job can be applied and removed.
        self.pending.lock().by_key.insert(key.clone(), (seq, op.clone()));
        lane.send(Job::Write { seq, key, op, _permit: r.0 }).map_err(|_| Error::Closed)?;
        self.publish_depth();
        Ok(())
    }

    /// Queues a clear of the lower tiers; every queued write is superseded by it.
    pub(crate) fn send_clear(&self, r: Reservation) -> Result<()> {
        let lanes = self.lanes.lock();
        let lanes = lanes.as_ref().ok_or(Error::Closed)?;
        {
            let mut pending = self.pending.lock();
            pending.by_key.clear();
            pending.clears += 1;
        }
        let job =
            Arc::new(ClearJob { barrier: tokio::sync::Barrier::new(lanes.len()), _permit: r.0 });
        for lane in lanes {
            lane.send(Job::Clear(Arc::clone(&job))).map_err(|_| Error::Closed)?;
        }
        self.publish_depth();
        Ok(())
    }

    pub(crate) fn lookup(&self, key: &[u8]) -> Lookup {
        let pending = self.pending.lock();
        match pending.by_key.get(key) {
            Some((_, op)) => Lookup::Queued(op.clone()),
            None if pending.clears > 0 => Lookup::Cleared,
            None => Lookup::Nothing,
        }
    }

    /// Waits until every job queued so far has been applied.
    pub(crate) async fn flush(&self) -> Result<()> {
        let n = u32::try_from(self.capacity).unwrap_or(u32::MAX);
        // Holding every permit at once means no job is in flight; the semaphore is fair, so
        // writers that arrive meanwhile queue behind this call instead of starving it.
        let all = self.permits.acquire_many(n).await.map_err(|_| Error::Closed)?;
        drop(all);
        Ok(())
    }

    /// Stops taking jobs and waits for the workers to apply every queued one.
    pub(crate) async fn close(&self) {
        drop(self.lanes.lock().take());
        let workers = std::mem::take(&mut *self.workers.lock());
        for worker in workers {
            if let Err(e) = worker.await {
                tracing::error!(error = %e, "write-back worker failed");
            }
        }
    }

    fn publish_depth(&self) {
        publish_depth(&self.slots, self.len());
    }
}

fn publish_depth(slots: &[Slot], depth: usize) {
    let depth = i64::try_from(depth).unwrap_or(i64::MAX);
    for slot in &slots[1..] {
        slot.metrics.writeback_queue_depth.set(depth);
    }
}

struct Worker {
    slots: Arc<[Slot]>,
    pending: Arc<Mutex<Pending>>,
    permits: Arc<Semaphore>,
    capacity: usize,
    retries: u32,
    clock: Arc<dyn Clock>,
}

impl Worker {
    async fn run(self, mut rx: mpsc::UnboundedReceiver<Job>) {
        // Ends when every sender is gone (close, or the cache dropped) and the queue is empty.
        while let Some(job) = rx.recv().await {
            match job {
                Job::Write { seq, key, op, _permit } => {
                    for slot in &self.slots[1..] {
                        self.apply(slot, &key, &op).await;
                    }
                    let mut pending = self.pending.lock();
                    if pending.by_key.get(&key).is_some_and(|(s, _)| *s == seq) {
                        pending.by_key.remove(&key);
                    }
                }
                Job::Clear(job) => {
                    // Every lane stops here; the leader clears while the others wait at the
                    // second barrier, so no lane applies a later write before the clear.
                    if job.barrier.wait().await.is_leader() {
                        for slot in &self.slots[1..] {
                            if self.with_retries(|| slot.clear()).await.is_err() {
                                slot.after_failed_clear();
                            }
                        }
                        let mut pending = self.pending.lock();
                        pending.clears = pending.clears.saturating_sub(1);
                    }
                    job.barrier.wait().await;
                }
            }
            // The job's permit was released at the end of its arm, so the depth counts it done.
            publish_depth(&self.slots, self.capacity - self.permits.available_permits());
        }
    }

    async fn apply(&self, slot: &Slot, key: &[u8], op: &PendingOp) {
        let outcome = match op {
            // Checked again at apply time: an entry that expired while queued is never
            // written down; `Slot::put` turns it into a removal.
            PendingOp::Put(entry) => {
                self.with_retries(|| slot.put(key, entry.clone(), self.clock.wall())).await
            }
            PendingOp::Remove => self.with_retries(|| slot.remove(key)).await,
        };
        slot.after_write(key, outcome.is_ok());
    }

    /// Runs `call` up to `1 + retries` times, backing off between tries (doubling from
    /// [`FIRST_RETRY_BACKOFF`] up to [`MAX_RETRY_BACKOFF`]); not again against
    /// an open breaker, nor after a refusal of this key or value (too large, not encodable),
    /// which a retry cannot change: the failure is then recorded as a dirty key at once.
    async fn with_retries<F, Fut>(&self, mut call: F) -> Result<()>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<()>>,
    {
        let mut backoff = FIRST_RETRY_BACKOFF;
        let mut tries = 0;
        loop {
            match call().await {
                Ok(()) => return Ok(()),
                Err(e @ Error::Unavailable { .. }) => return Err(e),
                Err(e) if tries >= self.retries || !is_health_failure(&e) => return Err(e),
                Err(_) => {
                    tries += 1;
                    // The workers run on the runtime the cache was built on, which the
                    // builder checked has timers; should it not, the write fails, never panics.
                    crate::rt::sleep(backoff)?.await;
                    backoff = backoff.saturating_mul(2).min(MAX_RETRY_BACKOFF);
                }
            }
        }
    }
}
