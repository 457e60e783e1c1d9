//! The one place where the crate picks its atomics: `std`'s normally, loom's under
//! `cfg(strata_loom)`, so the lock-free pieces can be model-checked unchanged.

#[cfg(strata_loom)]
pub(crate) use loom::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
#[cfg(not(strata_loom))]
pub(crate) use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
