//! Eviction and admission policies for Strata.
//!
//! A cache owns its entries; a [`Policy`] owns only the *order* in which they should leave.
//! The owner tells the policy what happened to each resident entry (identified by a dense
//! [`Slot`] number and the keyed hash of its key) and asks it which entry to evict when the
//! total weight is over capacity. Keeping the two apart lets the owner serve reads without
//! touching the policy: reads are recorded in buffers and replayed to the policy in batches.
//!
//! **Invariant: strata-evict never does IO and never locks.** A policy is plain data mutated
//! through `&mut self`; the owner provides the mutual exclusion.
//!
//! Policies are chosen by value with [`PolicyConfig`], so users never name a generic.

#![forbid(unsafe_code)]

mod ghost;
mod list;
mod minisim;
mod nodes;
mod opt;
mod queue;
mod rejected;
mod rng;
mod s3fifo;
mod sieve;
mod sketch;
mod tinylfu;

pub use opt::{next_uses, opt_hit_ratio, opt_with_next_uses, OptResult};
pub use queue::{Fifo, Lru, Queue};
pub use rng::mix64;
pub use s3fifo::S3Fifo;
pub use sieve::Sieve;
pub use tinylfu::TinyLfu;

/// How W-TinyLFU sizes its window between recency (large window) and frequency (small).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Adaptation {
    /// The window keeps its initial share.
    Fixed,
    /// Caffeine's hill climber: compare the hit rate of each sample period with the last and
    /// keep moving the window in the direction that helped.
    HillClimbing,
    /// Four miniature caches with different windows replay a sampled subset of the requests;
    /// the window of the best one is adopted (the default: it closed more of the gap to OPT
    /// on every shared trace set and seed tried, see docs/benchmarks.md).
    MiniSimulation,
}

use std::fmt;

/// A configuration that no policy can be built from.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// A percentage parameter was above 100.
    #[error("{name} is {value}%, but must be at most 100%")]
    Percent {
        /// The parameter's name.
        name: &'static str,
        /// The rejected value.
        value: u8,
    },
    /// A policy name that [`PolicyConfig::from_name`] does not know.
    #[error("unknown policy `{0}` (known: tinylfu, tinylfu-hill, tinylfu-static, tinylfu-door, s3fifo, sieve, lru, fifo)")]
    UnknownPolicy(String),
}

/// The result type of this crate.
pub type Result<T> = std::result::Result<T, Error>;

/// The owner's number for a resident entry.
///
/// Slots are dense (the owner keeps them below the number of entries it has ever held at
/// once, plus a small constant) and are reused after an entry leaves, so a policy may keep
/// per-entry state in a `Vec` indexed by slot and grow it on demand.
pub type Slot = u32;

/// An eviction and admission policy.
///
/// # What the caller guarantees
///
/// - `on_insert` is called once for a slot that is not resident; after it the slot is
///   resident until the policy returns it from [`Policy::evict`] or the owner calls
///   [`Policy::on_remove`] for it.
/// - `on_update` and `on_remove` are only called for resident slots.
/// - `on_access` may be called late and for a slot that has been reused since the access
///   happened (reads are buffered); the low 32 bits of the `hash` passed are those of the
///   hash of the key that was read (the higher bits may be zero: the owner buffers only 32),
///   so a policy that remembers `hash as u32` can ignore a record that no longer matches. It
///   may also be called for a slot that is not resident at all, and must then do nothing.
/// - Calls are serialized: a policy is never used from two threads at once.
///
/// # What the policy must do
///
/// - Keep [`Policy::weighted_size`] equal to the sum of the weights of resident slots.
/// - From [`Policy::evict`], return a resident slot (and forget it) whenever any slot is
///   resident, so that the owner's loop `while weighted_size() > capacity() { evict() }`
///   always terminates. It may return the entry that was just inserted: that is how an
///   admission filter rejects a candidate.
/// - Never panic on any sequence of calls that respects the caller's guarantees, and never
///   allocate more than a constant amount per resident slot (plus a sketch sized by capacity).
pub trait Policy: Send + Sync + fmt::Debug {
    /// A short, stable name used in reports ("lru", "tinylfu", ...).
    fn name(&self) -> &'static str;

    /// A new entry became resident in `slot`.
    fn on_insert(&mut self, slot: Slot, hash: u64, weight: u32);

    /// A resident entry was read (see the caller's guarantees on staleness).
    fn on_access(&mut self, slot: Slot, hash: u64);

    /// A resident entry's value was replaced; its weight may have changed.
    fn on_update(&mut self, slot: Slot, weight: u32);

    /// The owner removed a resident entry (explicitly, or because it expired).
    fn on_remove(&mut self, slot: Slot);

    /// Picks a resident entry to evict, forgets it, and returns it; `None` only when nothing
    /// is resident.
    fn evict(&mut self) -> Option<Slot>;

    /// The sum of the weights of resident entries.
    fn weighted_size(&self) -> u64;

    /// The number of resident entries.
    fn len(&self) -> usize;

    /// Whether no entry is resident.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The weight the owner wants to stay under.
    fn capacity(&self) -> u64;

    /// Changes the capacity; the owner evicts afterwards until the size fits.
    fn set_capacity(&mut self, capacity: u64);

    /// Forgets every resident entry at once (the owner cleared its storage).
    fn clear(&mut self);

    /// A hint that about `entries` entries will be resident, so per-slot state can be
    /// allocated once, exactly, instead of grown by doubling. The default ignores it.
    fn reserve(&mut self, entries: usize) {
        let _ = entries;
    }

    /// Tells the policy that its capacity counts weight units, not entries, so how many
    /// entries it will hold is unknown: state sized per expected entry (W-TinyLFU's frequency
    /// sketch) starts small and grows with the resident count instead of being sized from
    /// the capacity, which for a cache bounded in bytes would mean a counter per byte. The
    /// default ignores it.
    fn weighted_capacity(&mut self) {}

    /// The share of the capacity (0 to 1) that the policy gives, or is moving, to its
    /// recency region (W-TinyLFU's window); `None` for policies without one (the default).
    ///
    /// An owner that splits one workload over several instances (shards) can let one of
    /// them adapt and pass this to the others' [`Policy::set_window_share`]: see
    /// [`PolicyConfig::build_follower`].
    fn window_share(&self) -> Option<f64> {
        None
    }

    /// Moves the recency region towards `share` of the capacity (clamped to 0..=1), a
    /// decision taken by another instance over the same workload. Policies without such a
    /// region ignore it (the default). An instance that adapts by itself may later move
    /// away from it again.
    fn set_window_share(&mut self, share: f64) {
        let _ = share;
    }
}

/// Which policy to use, chosen by value.
///
/// Per-slot memory (beyond the owner's own map): 12.5 bytes for every policy (two links, a
/// 32-bit hash tag and 4 bits of metadata), plus 4 bytes for the weight once any entry weighs
/// other than 1;
/// S3-FIFO adds a ghost queue of up to one fingerprint per resident entry (about 13 bytes
/// each); W-TinyLFU adds its frequency sketch, 8 bytes per expected entry (at least 8 KiB
/// for a policy built with [`PolicyConfig::build`]; a follower has no such floor), and its
/// memory of recently rejected candidates, 1 byte per expected entry.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PolicyConfig {
    /// First in, first out.
    Fifo,
    /// Least recently used.
    Lru,
    /// SIEVE: FIFO with a visited bit and a sweeping hand.
    Sieve,
    /// S3-FIFO: small, main and ghost FIFO queues.
    S3Fifo {
        /// The small (probationary) queue's share of the capacity, in percent; 10 in the paper.
        small_percent: u8,
    },
    /// W-TinyLFU: an LRU window in front of a segmented LRU guarded by a frequency sketch.
    TinyLfu {
        /// The window's initial share of the capacity, in percent; Caffeine starts at 1.
        window_percent: u8,
        /// How the window is resized to the workload.
        adaptation: Adaptation,
        /// Whether the frequency sketch has a doorkeeper (a Bloom filter that absorbs each
        /// key's first occurrence per sample period) in front of half as many counters. Same
        /// memory; measured slightly worse on the shared traces, so off by default.
        doorkeeper: bool,
    },
}

impl Default for PolicyConfig {
    /// Adaptive W-TinyLFU: across database, search, web and loop traces it closes the most
    /// of the gap between LRU and the offline optimum (see docs/benchmarks.md).
    fn default() -> Self {
        PolicyConfig::TinyLfu {
            window_percent: 1,
            adaptation: Adaptation::MiniSimulation,
            doorkeeper: false,
        }
    }
}

impl PolicyConfig {
    /// Builds the policy for a region of `capacity` weight units.
    ///
    /// `seed` keys any randomness (admission jitter, sketch indexes); give each instance its
    /// own. Out-of-range parameters are clamped; call [`PolicyConfig::validate`] first to
    /// reject them instead.
    pub fn build(&self, capacity: u64, seed: u64) -> Box<dyn Policy> {
        match *self {
            PolicyConfig::Fifo => Box::new(Fifo::new(capacity)),
            PolicyConfig::Lru => Box::new(Lru::new(capacity)),
            PolicyConfig::Sieve => Box::new(Sieve::new(capacity)),
            PolicyConfig::S3Fifo { small_percent } => {
                Box::new(S3Fifo::new(capacity, small_percent))
            }
            PolicyConfig::TinyLfu { window_percent, adaptation, doorkeeper } => {
                Box::new(TinyLfu::new(capacity, window_percent, adaptation, doorkeeper, seed))
            }
        }
    }

    /// Like [`PolicyConfig::build`], for an owner that splits one workload over several
    /// instances (shards) and lets one of them, built with `build`, size the window for all.
    ///
    /// An adaptive W-TinyLFU built here does not adapt by itself: it keeps its initial window
    /// until the owner passes it a share with [`Policy::set_window_share`] (typically the
    /// leader's [`Policy::window_share`]). It so saves the state of the adaptation, which for
    /// the miniature simulations is up to about 70 KiB per instance. The shards of a hashed
    /// store see statistically the same workload, so one instance's decision serves all.
    /// Every other policy is built exactly as by `build`.
    ///
    /// ```
    /// use strata_evict::{Policy, PolicyConfig};
    /// let config = PolicyConfig::default();
    /// let (leader, mut follower) = (config.build(1000, 1), config.build_follower(1000, 2));
    /// follower.set_window_share(0.3);
    /// assert_eq!(follower.window_share(), Some(0.3));
    /// assert_eq!(leader.window_share(), Some(0.01));
    /// assert_eq!(follower.name(), leader.name());
    /// ```
    pub fn build_follower(&self, capacity: u64, seed: u64) -> Box<dyn Policy> {
        match *self {
            PolicyConfig::TinyLfu { window_percent, adaptation, doorkeeper } => {
                Box::new(TinyLfu::follower(capacity, window_percent, adaptation, doorkeeper, seed))
            }
            _ => self.build(capacity, seed),
        }
    }

    /// Checks the parameters, so a builder can reject nonsense with a clear error.
    pub fn validate(&self) -> Result<()> {
        match *self {
            PolicyConfig::S3Fifo { small_percent: v } if v > 100 => {
                Err(Error::Percent { name: "small_percent", value: v })
            }
            PolicyConfig::TinyLfu { window_percent: v, .. } if v > 100 => {
                Err(Error::Percent { name: "window_percent", value: v })
            }
            _ => Ok(()),
        }
    }

    /// The policy's short name, as [`Policy::name`] reports it.
    pub fn name(&self) -> &'static str {
        match self {
            PolicyConfig::Fifo => "fifo",
            PolicyConfig::Lru => "lru",
            PolicyConfig::Sieve => "sieve",
            PolicyConfig::S3Fifo { .. } => "s3fifo",
            PolicyConfig::TinyLfu { adaptation, doorkeeper, .. } => {
                tinylfu::tinylfu_name(*adaptation, *doorkeeper)
            }
        }
    }

    /// Every policy with its recommended parameters, the default first.
    pub fn all() -> Vec<PolicyConfig> {
        let tinylfu = |adaptation, doorkeeper| PolicyConfig::TinyLfu {
            window_percent: 1,
            adaptation,
            doorkeeper,
        };
        vec![
            PolicyConfig::default(),
            tinylfu(Adaptation::HillClimbing, false),
            tinylfu(Adaptation::Fixed, false),
            tinylfu(Adaptation::MiniSimulation, true),
            PolicyConfig::S3Fifo { small_percent: 10 },
            PolicyConfig::Sieve,
            PolicyConfig::Lru,
            PolicyConfig::Fifo,
        ]
    }

    /// The configuration [`PolicyConfig::all`] lists under `name`.
    ///
    /// ```
    /// use strata_evict::PolicyConfig;
    /// let p = PolicyConfig::from_name("sieve")?;
    /// assert_eq!(p.build(100, 1).name(), "sieve");
    /// assert!(PolicyConfig::from_name("clock").is_err());
    /// # Ok::<(), strata_evict::Error>(())
    /// ```
    pub fn from_name(name: &str) -> Result<PolicyConfig> {
        PolicyConfig::all()
            .into_iter()
            .find(|p| p.name() == name)
            .ok_or_else(|| Error::UnknownPolicy(name.to_owned()))
    }
}
