//! Table-driven checks of the `Policy` contract for every `PolicyConfig`, and property
//! tests over random operation sequences against a reference model of residency.

use proptest::prelude::*;
use std::collections::HashMap;
use strata_evict::{Adaptation, Policy, PolicyConfig, Slot};

/// Every configuration under test: the recommended ones plus unusual parameters.
fn configs() -> Vec<PolicyConfig> {
    let mut all = PolicyConfig::all();
    for (window_percent, adaptation, doorkeeper) in [
        (0, Adaptation::MiniSimulation, false),
        (100, Adaptation::Fixed, true),
        (20, Adaptation::HillClimbing, true),
        (0, Adaptation::HillClimbing, false),
        (100, Adaptation::MiniSimulation, true),
    ] {
        all.push(PolicyConfig::TinyLfu { window_percent, adaptation, doorkeeper });
    }
    all.push(PolicyConfig::S3Fifo { small_percent: 0 });
    all.push(PolicyConfig::S3Fifo { small_percent: 100 });
    all
}

#[derive(Clone, Debug)]
enum Op {
    /// Insert a new key with this weight (into the lowest free slot).
    Insert {
        key: u64,
        weight: u32,
    },
    /// Read the resident entry at this index (modulo the count), with its right hash.
    Access {
        pick: usize,
    },
    /// A stale read: a slot number and a hash that do not match any resident entry.
    StaleAccess {
        slot: Slot,
    },
    Update {
        pick: usize,
        weight: u32,
    },
    Remove {
        pick: usize,
    },
    SetCapacity {
        capacity: u64,
    },
    Clear,
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u64..64, 1u32..6).prop_map(|(key, weight)| Op::Insert { key, weight }),
        6 => any::<usize>().prop_map(|pick| Op::Access { pick }),
        1 => (0u32..80).prop_map(|slot| Op::StaleAccess { slot }),
        1 => (any::<usize>(), 0u32..8).prop_map(|(pick, weight)| Op::Update { pick, weight }),
        1 => any::<usize>().prop_map(|pick| Op::Remove { pick }),
        1 => (0u64..40).prop_map(|capacity| Op::SetCapacity { capacity }),
        1 => Just(Op::Clear),
    ]
}

/// The owner side of the contract plus a reference model: which slots are resident with
/// which hash and weight.
struct Harness {
    policy: Box<dyn Policy>,
    /// slot -> (hash, weight) for every resident slot.
    model: HashMap<Slot, (u64, u32)>,
    keys: HashMap<u64, Slot>,
    evicted: Vec<Slot>,
}

impl Harness {
    fn new(config: &PolicyConfig, capacity: u64, seed: u64) -> Self {
        Harness {
            policy: config.build(capacity, seed),
            model: HashMap::new(),
            keys: HashMap::new(),
            evicted: Vec::new(),
        }
    }

    fn resident(&self, pick: usize) -> Option<Slot> {
        let mut slots: Vec<Slot> = self.model.keys().copied().collect();
        slots.sort_unstable();
        (!slots.is_empty()).then(|| slots[pick % slots.len()])
    }

    fn free_slot(&self) -> Slot {
        (0..).find(|s| !self.model.contains_key(s)).expect("a free slot exists")
    }

    fn hash_of(key: u64) -> u64 {
        strata_evict::mix64(key)
    }

    /// The owner's eviction loop, checking every returned slot.
    fn enforce(&mut self) {
        let mut rounds = 0;
        let bound = self.model.len() + 1;
        while self.policy.weighted_size() > self.policy.capacity() {
            rounds += 1;
            assert!(rounds <= bound, "{}: evict loop did not converge", self.policy.name());
            let victim = self.policy.evict().expect("over capacity means something is resident");
            assert!(
                self.model.remove(&victim).is_some(),
                "{}: evicted non-resident slot {victim}",
                self.policy.name()
            );
            self.keys.retain(|_, s| *s != victim);
            self.evicted.push(victim);
        }
    }

    fn apply(&mut self, op: &Op) {
        match *op {
            Op::Insert { key, weight } => {
                if self.keys.contains_key(&key) {
                    return;
                }
                let slot = self.free_slot();
                self.model.insert(slot, (Self::hash_of(key), weight));
                self.keys.insert(key, slot);
                self.policy.on_insert(slot, Self::hash_of(key), weight);
                self.enforce();
            }
            Op::Access { pick } => {
                if let Some(slot) = self.resident(pick) {
                    let hash = self.model[&slot].0;
                    self.policy.on_access(slot, hash);
                }
            }
            Op::StaleAccess { slot } => {
                // A hash no resident key has: the policy must ignore the record.
                self.policy.on_access(slot, 0xDEAD_BEEF_0000_0000 | u64::from(slot));
            }
            Op::Update { pick, weight } => {
                if let Some(slot) = self.resident(pick) {
                    self.model.get_mut(&slot).expect("resident").1 = weight;
                    self.policy.on_update(slot, weight);
                    self.enforce();
                }
            }
            Op::Remove { pick } => {
                if let Some(slot) = self.resident(pick) {
                    self.model.remove(&slot);
                    self.keys.retain(|_, s| *s != slot);
                    self.policy.on_remove(slot);
                }
            }
            Op::SetCapacity { capacity } => {
                self.policy.set_capacity(capacity);
                self.enforce();
            }
            Op::Clear => {
                self.policy.clear();
                self.model.clear();
                self.keys.clear();
            }
        }
        self.check();
    }

    fn check(&self) {
        let name = self.policy.name();
        let weight: u64 = self.model.values().map(|&(_, w)| u64::from(w)).sum();
        assert_eq!(self.policy.weighted_size(), weight, "{name}: weighted size");
        assert_eq!(self.policy.len(), self.model.len(), "{name}: len");
        assert!(
            self.policy.weighted_size() <= self.policy.capacity(),
            "{name}: over capacity after eviction"
        );
    }

    /// Evicts everything, checking each slot comes back exactly once.
    fn drain(&mut self) {
        let name = self.policy.name();
        let mut seen = std::collections::HashSet::new();
        while let Some(slot) = self.policy.evict() {
            assert!(self.model.remove(&slot).is_some(), "{name}: drained non-resident slot {slot}");
            assert!(seen.insert(slot), "{name}: slot {slot} returned twice");
            assert!(seen.len() <= 10_000, "{name}: drain does not end");
        }
        assert!(self.model.is_empty(), "{name}: lost slots {:?}", self.model.keys());
        assert_eq!(self.policy.weighted_size(), 0, "{name}: weight left after drain");
        assert!(self.policy.is_empty());
    }
}

/// A deterministic pseudo-random operation sequence.
fn scripted_ops(seed: u64, n: usize) -> Vec<Op> {
    let mut x = seed;
    let mut next = move || {
        x = strata_evict::mix64(x.wrapping_add(0x9E37_79B9_7F4A_7C15));
        x
    };
    (0..n)
        .map(|_| {
            let r = next();
            match r % 20 {
                0..=8 => Op::Insert { key: next() % 300, weight: 1 + (next() % 4) as u32 },
                9..=16 => Op::Access { pick: next() as usize },
                17 => Op::Update { pick: next() as usize, weight: (next() % 6) as u32 },
                18 => Op::Remove { pick: next() as usize },
                _ => Op::StaleAccess { slot: (next() % 200) as Slot },
            }
        })
        .collect()
}

#[test]
fn bounds_hold_and_no_entry_is_lost_or_duplicated() {
    for config in configs() {
        for capacity in [1u64, 7, 50] {
            let mut h = Harness::new(&config, capacity, 42);
            for op in scripted_ops(capacity, 3_000) {
                h.apply(&op);
            }
            h.drain();
        }
    }
}

#[test]
fn the_same_seed_gives_the_same_evictions() {
    for config in configs() {
        let run = |seed| {
            let mut h = Harness::new(&config, 40, seed);
            for op in scripted_ops(9, 5_000) {
                h.apply(&op);
            }
            h.evicted
        };
        let a = run(1);
        assert!(!a.is_empty(), "{}: the script must evict", config.name());
        assert_eq!(a, run(1), "{}: not deterministic", config.name());
    }
}

#[test]
fn a_heavy_entry_is_evicted_when_nothing_else_fits() {
    for config in configs() {
        let mut h = Harness::new(&config, 10, 3);
        h.apply(&Op::Insert { key: 1, weight: 4 });
        h.apply(&Op::Insert { key: 2, weight: 11 });
        assert!(
            !h.keys.contains_key(&2),
            "{}: an entry heavier than the capacity stayed",
            config.name()
        );
        h.check();
    }
}

#[test]
fn names_round_trip_and_validation_rejects_nonsense() {
    for config in PolicyConfig::all() {
        assert_eq!(PolicyConfig::from_name(config.name()).as_ref(), Ok(&config));
        assert_eq!(config.build(10, 0).name(), config.name());
        assert!(config.validate().is_ok());
    }
    assert!(PolicyConfig::TinyLfu {
        window_percent: 101,
        adaptation: Adaptation::Fixed,
        doorkeeper: false
    }
    .validate()
    .is_err());
    assert!(PolicyConfig::S3Fifo { small_percent: 200 }.validate().is_err());
    assert_eq!(PolicyConfig::default().name(), "tinylfu");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn random_sequences_respect_the_contract(
        ops in proptest::collection::vec(op_strategy(), 1..300),
        capacity in 0u64..30,
        seed in any::<u64>(),
    ) {
        for config in configs() {
            let mut h = Harness::new(&config, capacity, seed);
            for op in &ops {
                h.apply(op);
            }
            h.drain();
        }
    }
}
