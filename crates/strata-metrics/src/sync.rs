//! The one place where the crate picks its atomics: `std`'s normally, loom's under
//! `cfg(strata_loom)`, so that the counter and the histogram can be model-checked unchanged.

#[cfg(strata_loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
#[cfg(not(strata_loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
