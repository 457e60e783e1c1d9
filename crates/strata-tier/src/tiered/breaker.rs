//! A circuit breaker per tier: closed, open after N consecutive failures, half-open for one
//! probe after a cool-down.
//!
//! The hot path (a closed breaker) reads one atomic and takes no lock. The atomics:
//! - `state` mirrors the state kept under the mutex (0 closed, 1 half-open, 2 open); it is
//!   written only with the mutex held, and read without it to skip the lock while closed.
//! - `failures` counts consecutive failures while closed; a success stores 0 (after a load,
//!   so that a healthy tier's successes do not all write the same cache line).
//!
//! Time is tokio's, so tests with a paused clock drive the cool-down without sleeping.

use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use strata_metrics::{CircuitState, Gauge};
use tokio::time::Instant;

const CLOSED: u8 = CircuitState::Closed as u8;
const HALF_OPEN: u8 = CircuitState::HalfOpen as u8;
const OPEN: u8 = CircuitState::Open as u8;

/// The breaker's full state, behind the mutex.
#[derive(Debug)]
enum State {
    Closed,
    Open { until: Instant },
    HalfOpen { probing: bool },
}

/// Whether a call may go ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admit {
    /// The breaker is closed.
    Call,
    /// The breaker is half-open and this call is its one probe: its outcome decides.
    Probe,
}

#[derive(Debug)]
pub(crate) struct Breaker {
    threshold: u32,
    cool_down: Duration,
    state: AtomicU8,
    failures: AtomicU32,
    inner: Mutex<State>,
    gauge: std::sync::Arc<Gauge>,
}

impl Breaker {
    pub(crate) fn new(threshold: u32, cool_down: Duration, gauge: std::sync::Arc<Gauge>) -> Self {
        gauge.set(i64::from(CLOSED));
        Breaker {
            threshold,
            cool_down,
            state: AtomicU8::new(CLOSED),
            failures: AtomicU32::new(0),
            inner: Mutex::new(State::Closed),
            gauge,
        }
    }

    /// The state as the metrics gauge encodes it.
    pub(crate) fn state(&self) -> CircuitState {
        match self.state.load(Ordering::Acquire) {
            CLOSED => CircuitState::Closed,
            HALF_OPEN => CircuitState::HalfOpen,
            _ => CircuitState::Open,
        }
    }

    /// Whether a call may go ahead now; `None` means refused.
    pub(crate) fn admit(&self) -> Option<Admit> {
        if self.state.load(Ordering::Acquire) == CLOSED {
            return Some(Admit::Call);
        }
        let mut inner = self.inner.lock();
        match *inner {
            State::Closed => Some(Admit::Call),
            State::Open { until } if Instant::now() >= until => {
                *inner = State::HalfOpen { probing: true };
                self.publish(HALF_OPEN);
                Some(Admit::Probe)
            }
            State::Open { .. } | State::HalfOpen { probing: true } => None,
            State::HalfOpen { probing: false } => {
                *inner = State::HalfOpen { probing: true };
                Some(Admit::Probe)
            }
        }
    }

    /// Records a call that reached the tier and came back healthy.
    pub(crate) fn success(&self) {
        if self.state.load(Ordering::Acquire) == CLOSED {
            if self.failures.load(Ordering::Relaxed) != 0 {
                self.failures.store(0, Ordering::Relaxed);
            }
            return;
        }
        let mut inner = self.inner.lock();
        // A call admitted while closed may finish after the breaker opened: only the probe's
        // success closes it again, but any success while half-open proves the tier is back.
        if matches!(*inner, State::HalfOpen { .. }) {
            *inner = State::Closed;
            self.failures.store(0, Ordering::Relaxed);
            self.publish(CLOSED);
        }
    }

    /// Records a call that failed for a reason that says the tier is unhealthy.
    pub(crate) fn failure(&self) {
        let mut inner = self.inner.lock();
        match *inner {
            State::Closed => {
                let n = self.failures.load(Ordering::Relaxed).saturating_add(1);
                self.failures.store(n, Ordering::Relaxed);
                if n >= self.threshold {
                    *inner = State::Open { until: self.reopen_at() };
                    self.publish(OPEN);
                }
            }
            State::HalfOpen { .. } => {
                *inner = State::Open { until: self.reopen_at() };
                self.publish(OPEN);
            }
            State::Open { .. } => {}
        }
    }

    /// Records a probe that never finished (its caller was cancelled): another may start.
    pub(crate) fn abandon_probe(&self) {
        let mut inner = self.inner.lock();
        if matches!(*inner, State::HalfOpen { probing: true }) {
            *inner = State::HalfOpen { probing: false };
        }
    }

    /// When an opening breaker will let a probe through (a cool-down too large to add to the
    /// clock means a year, never a panic).
    fn reopen_at(&self) -> Instant {
        let now = Instant::now();
        now.checked_add(self.cool_down)
            .or_else(|| now.checked_add(Duration::from_secs(365 * 24 * 3600)))
            .unwrap_or(now)
    }

    fn publish(&self, state: u8) {
        self.state.store(state, Ordering::Release);
        self.gauge.set(i64::from(state));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn opens_after_threshold_then_probes_and_closes() {
        let gauge = std::sync::Arc::new(Gauge::new());
        let b = Breaker::new(3, Duration::from_secs(5), gauge.clone());
        b.failure();
        b.failure();
        b.success();
        b.failure();
        b.failure();
        assert_eq!(b.state(), CircuitState::Closed, "a success resets the count");
        b.failure();
        assert_eq!(b.state(), CircuitState::Open);
        assert_eq!(gauge.get(), 2);
        assert_eq!(b.admit(), None);
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(b.admit(), Some(Admit::Probe));
        assert_eq!(b.admit(), None, "one probe at a time");
        b.failure();
        assert_eq!(b.state(), CircuitState::Open, "a failed probe reopens");
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(b.admit(), Some(Admit::Probe));
        b.abandon_probe();
        assert_eq!(b.admit(), Some(Admit::Probe), "an abandoned probe frees the slot");
        b.success();
        assert_eq!(b.state(), CircuitState::Closed);
        assert_eq!(gauge.get(), 0);
        assert_eq!(b.admit(), Some(Admit::Call));
    }
}
