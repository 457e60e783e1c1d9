//! What every workload of a stress run shares: the clock, the tallies and the first failures.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use strata_metrics::Histogram;

/// Counters of one run, added to by every workload thread.
#[derive(Default)]
pub(crate) struct Tally {
    pub(crate) ops: AtomicU64,
    pub(crate) gets: AtomicU64,
    pub(crate) hits: AtomicU64,
    /// Reads of the tiered workload, and those that found a value in some tier.
    pub(crate) tiered_gets: AtomicU64,
    pub(crate) tiered_hits: AtomicU64,
    /// Operations that returned an error the workload expects under faults (a tier down).
    pub(crate) errors: AtomicU64,
    pub(crate) checks: AtomicU64,
    pub(crate) violations: AtomicU64,
    pub(crate) transactions: AtomicU64,
    /// Writes, removes and commits the durable child acknowledged.
    pub(crate) durable_acks: AtomicU64,
    pub(crate) kills: AtomicU64,
    pub(crate) torn_tails: AtomicU64,
    pub(crate) redis_outages: AtomicU64,
    /// Acknowledged writes and commits checked after a fault.
    pub(crate) records_verified: AtomicU64,
    /// Acknowledged writes or commits missing (or half applied) after a fault: must stay 0.
    pub(crate) records_lost: AtomicU64,
}

pub(crate) struct Run {
    pub(crate) started: Instant,
    pub(crate) deadline: Instant,
    pub(crate) stop: AtomicBool,
    pub(crate) tally: Tally,
    pub(crate) latency: Histogram,
    first: Mutex<Vec<String>>,
}

impl Run {
    pub(crate) fn new(secs: u64) -> Self {
        let started = Instant::now();
        Run {
            started,
            deadline: started + Duration::from_secs(secs),
            stop: AtomicBool::new(false),
            tally: Tally::default(),
            latency: Histogram::new(),
            first: Mutex::new(Vec::new()),
        }
    }

    /// Whether workloads should wind down.
    pub(crate) fn over(&self) -> bool {
        self.stop.load(Ordering::Relaxed) || Instant::now() >= self.deadline
    }

    /// Records a broken invariant; the first few are kept for the summary.
    pub(crate) fn violation(&self, what: String) {
        self.tally.violations.fetch_add(1, Ordering::Relaxed);
        self.note(what);
    }

    /// Records acknowledged data lost after a fault.
    pub(crate) fn lost(&self, n: u64, what: String) {
        self.tally.records_lost.fetch_add(n, Ordering::Relaxed);
        self.note(what);
    }

    fn note(&self, what: String) {
        eprintln!("stress: {what}");
        let mut f = self.first.lock().unwrap_or_else(|e| e.into_inner());
        if f.len() < 20 {
            f.push(what);
        }
    }

    pub(crate) fn failures(&self) -> Vec<String> {
        self.first.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
