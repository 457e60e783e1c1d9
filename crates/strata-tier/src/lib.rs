//! Tiers: memory, local disk and Redis behind one [`Tier`] trait, the tiered cache that
//! composes them, and (feature `wal`) the durable cache that joins strata-core to strata-wal.
//!
//! Invariant: no tier ever serves an expired entry or bytes that failed their integrity
//! check, and no write that returned `Ok` is dropped silently.

// `deny`, not `forbid`: the disk tier's memory map (`disk/mmap.rs`) is the one allowed
// exception, with its SAFETY argument beside it.
#![deny(unsafe_code)]

mod codec;
mod error;
mod rt;
mod tier;

pub mod memory;
pub mod tiered;

#[cfg(feature = "disk")]
pub mod disk;
#[cfg(feature = "wal")]
pub mod durable;
#[cfg(feature = "redis")]
pub mod redis;

pub use codec::{Codec, Postcard};
pub use error::{Error, Result};
pub use tier::{unix_millis, ExpiresAt, Invalidation, Tier, TierEntry, TierFuture};
