//! What the tiers and the tiered cache need from the tokio runtime a call runs on, checked
//! so that a runtime that lacks it is a clear [`Error::InvalidConfig`], never a panic.
//!
//! Every tier call is bounded by a tokio timer, and tokio panics when a timer is made on a
//! runtime built without the time driver (`Builder::new_current_thread().build()` with
//! neither `enable_time()` nor `enable_all()`), or outside any runtime. Tokio offers no way
//! to ask whether the driver is there, so the timer is made inside `catch_unwind`: free when
//! it works, and when it does not, the panic tokio raises (its message still goes to the
//! panic hook, which prints it) becomes an error that names the missing driver.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use crate::{Error, Result};

/// The message of the error a call gets outside any tokio runtime.
const NO_RUNTIME: &str = "strata-tier calls must run inside a tokio runtime \
     with the time driver (enable_time() or enable_all() on the runtime builder)";
/// The message of the error a call gets on a runtime without the time driver.
const NO_TIME_DRIVER: &str = "the tokio runtime running this call has no time driver, \
     and strata-tier bounds every tier call with a timer: build the runtime with \
     enable_time() or enable_all()";

/// The error for a call made where tokio timers cannot be made.
fn missing() -> Error {
    let msg =
        if tokio::runtime::Handle::try_current().is_err() { NO_RUNTIME } else { NO_TIME_DRIVER };
    Error::InvalidConfig(msg.to_owned())
}

/// Whether `e` says that the call ran where tokio timers cannot be made: a fault of the
/// caller's runtime, not of any tier, so it must neither count against a tier's health nor
/// mark a key as possibly stale there (the tier was never reached).
pub(crate) fn is_missing_timers(e: &Error) -> bool {
    matches!(e, Error::InvalidConfig(msg) if msg == NO_RUNTIME || msg == NO_TIME_DRIVER)
}

/// Runs `make` (which makes a tokio timer) where a missing runtime or time driver is an
/// error rather than a panic.
fn with_timers<T>(make: impl FnOnce() -> T) -> Result<T> {
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(missing());
    }
    // Unwind safety: on a panic nothing but the closure's own captures (dropped here) was
    // touched; tokio panics before it registers anything.
    catch_unwind(AssertUnwindSafe(make)).map_err(|_| missing())
}

/// Checks that timers can be made on the current runtime. Costs a timer made and dropped:
/// for builders and rare calls, not for every read.
pub(crate) fn require_timers() -> Result<()> {
    with_timers(|| drop(tokio::time::sleep(Duration::ZERO)))
}

/// [`tokio::time::timeout`], or an error where timers cannot be made.
pub(crate) fn timeout<F: Future>(d: Duration, f: F) -> Result<tokio::time::Timeout<F>> {
    with_timers(|| tokio::time::timeout(d, f))
}

/// [`tokio::time::timeout_at`], or an error where timers cannot be made.
#[cfg(feature = "redis")]
pub(crate) fn timeout_at<F: Future>(
    at: tokio::time::Instant,
    f: F,
) -> Result<tokio::time::Timeout<F>> {
    with_timers(|| tokio::time::timeout_at(at, f))
}

/// [`tokio::time::sleep`], or an error where timers cannot be made.
pub(crate) fn sleep(d: Duration) -> Result<tokio::time::Sleep> {
    with_timers(|| tokio::time::sleep(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_runtime_without_timers_is_an_error_and_one_with_them_is_not() {
        assert!(require_timers().is_err_and(|e| is_missing_timers(&e)), "outside any runtime");
        let bare = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        let err = bare.block_on(async { require_timers() }).expect_err("no time driver");
        assert!(is_missing_timers(&err) && err.to_string().contains("enable_time"), "{err}");
        let timed = tokio::runtime::Builder::new_current_thread().enable_time().build();
        timed.expect("runtime").block_on(async { require_timers() }).expect("timers work");
        assert!(!is_missing_timers(&Error::InvalidConfig("other".into())));
    }
}
