//! Strata's in-memory cache: sharded, concurrent, async-friendly, with expiry, weighted
//! capacity, single-flight loading, refresh and removal listeners.
//!
//! # How it is built
//!
//! A [`Cache`] is a fixed set of shards. Each shard is a reader-writer lock around a hash
//! table of slot numbers, a slab of entries, an eviction [`Policy`](strata_evict::Policy), a
//! timer wheel for expiry and a striped buffer of reads. A read takes the shard's read lock,
//! clones the value and appends the access to its thread's stripe; the policy learns of
//! reads in batches (Caffeine's BP-Wrapper), drained under the read lock by whoever fills a
//! stripe or is about to write. So reads never serialize on the policy, drains never block
//! other readers, and the policy stays plain single-threaded data behind its own mutex.
//!
//! **Invariant: after any write returns, each shard's total weight is within its capacity,
//! and an entry whose deadline has passed is never returned.** Expired entries are reclaimed
//! by the timer wheel a bounded number at a time, during writes and read-buffer drains.
//!
//! ```
//! use std::time::Duration;
//! use strata_core::{Cache, RemovalCause};
//!
//! let cache: Cache<String, u64> = Cache::builder()
//!     .max_capacity(2)
//!     .time_to_live(Duration::from_secs(60))
//!     .removal_listener(|k, _v, cause| {
//!         if cause == RemovalCause::Size {
//!             println!("evicted {k}");
//!         }
//!     })
//!     .build()?;
//! cache.insert("a".into(), 1);
//! assert_eq!(cache.get("a"), Some(1));
//! # Ok::<(), strata_core::Error>(())
//! ```

#![forbid(unsafe_code)]

mod atomic;
mod builder;
mod cache;
mod clock;
mod error;
mod expiry;
mod loader;
mod read_buffer;
mod shard;
mod stats;
mod sync;
mod wheel;

pub use atomic::Atomic;
pub use builder::CacheBuilder;
pub use cache::{Cache, Compute, Current, EntryRef, Iter};
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{Error, Result};
pub use expiry::{Expiry, RemovalCause};
pub use stats::CacheStats;
pub use strata_evict::PolicyConfig;
