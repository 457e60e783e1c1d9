//! Replays of synthetic workloads: every policy stays at or below OPT with bypass, and the
//! policies show the differences they exist for.

use strata_evict::{next_uses, opt_with_next_uses, PolicyConfig};
use strata_sim::replay::replay_policy;
use strata_sim::synth::{generate, suite};

#[test]
fn no_policy_beats_opt_and_the_default_beats_lru_where_it_should() {
    for workload in suite(40_000) {
        let trace = generate(&workload.phases, 11);
        let next = next_uses(&trace);
        for capacity in [100u64, 500] {
            let opt = opt_with_next_uses(&trace, &next, capacity as usize, true).hit_ratio();
            let lru = replay_policy(&PolicyConfig::Lru, &trace, capacity, 1).hit_ratio();
            for config in PolicyConfig::all() {
                let hit = replay_policy(&config, &trace, capacity, 1).hit_ratio();
                assert!(
                    hit <= opt + 1e-9,
                    "{}@{capacity} {}: {hit} above OPT {opt}",
                    workload.name,
                    config.name()
                );
            }
            let default = replay_policy(&PolicyConfig::default(), &trace, capacity, 1).hit_ratio();
            // At 100 entries the 1,200-key loop is twelve times the cache, and the default's
            // margin over LRU there depends on the seed; at 500 frequency tells its keys apart.
            if matches!(workload.name, "zipf+scan" | "loop") && capacity == 500 {
                assert!(
                    default > lru + 0.02,
                    "{}@{capacity}: default {default} vs LRU {lru}",
                    workload.name
                );
            }
        }
    }
}

#[test]
fn replays_are_deterministic() {
    let w = &suite(20_000)[3];
    let trace = generate(&w.phases, 5);
    for config in PolicyConfig::all() {
        let a = replay_policy(&config, &trace, 200, 9);
        assert_eq!(a, replay_policy(&config, &trace, 200, 9), "{}", config.name());
        assert_eq!(a.requests, trace.len() as u64);
    }
}

#[test]
fn a_loop_just_larger_than_the_cache_defeats_lru_but_not_tinylfu() {
    let trace = generate(&suite(30_000)[2].phases, 1);
    let lru = replay_policy(&PolicyConfig::Lru, &trace, 1_000, 1).hit_ratio();
    let tlfu = replay_policy(&PolicyConfig::default(), &trace, 1_000, 1).hit_ratio();
    assert_eq!(lru, 0.0);
    assert!(tlfu > 0.5, "tinylfu {tlfu}");
}
