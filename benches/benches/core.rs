//! Criterion: strata-core, moka and quick_cache on the same mixed Zipf workload.

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::time::Duration;
use strata_benches::{contenders, run_mixed, zipf_stream, CAPACITY};

fn mixed(c: &mut Criterion) {
    let keys = zipf_stream(1 << 20, 7);
    let mut group = c.benchmark_group("mixed_zipf_90get_10insert");
    group
        .throughput(Throughput::Elements(keys.len() as u64))
        .sample_size(10)
        .measurement_time(Duration::from_secs(5));
    for threads in [1, 2] {
        for cache in contenders(CAPACITY) {
            run_mixed(cache.as_ref(), &keys, threads);
            group.bench_function(format!("{}/{threads}t", cache.name()), |b| {
                b.iter_custom(|iters| {
                    (0..iters).map(|_| run_mixed(cache.as_ref(), &keys, threads).0).sum()
                });
            });
        }
    }
    group.finish();
}

criterion_group!(benches, mixed);
criterion_main!(benches);
