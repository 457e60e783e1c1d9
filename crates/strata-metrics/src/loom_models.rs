//! loom models of the lock-free pieces, run with
//! `RUSTFLAGS="--cfg strata_loom" cargo test --release -p strata-metrics --lib loom`.
//!
//! They check the atomic invariants stated in the module docs: once writers are joined, a
//! counter's stripes and a histogram's buckets and sum are exact, whatever the interleaving; a
//! reader racing with writers never sees more than was added.

use crate::{Counter, Gauge, Histogram};
use loom::sync::Arc;
use loom::thread;

#[test]
fn loom_counter_is_exact_after_join() {
    loom::model(|| {
        let c = Arc::new(Counter::new());
        let writers: Vec<_> = (0..2)
            .map(|_| {
                let c = Arc::clone(&c);
                thread::spawn(move || {
                    c.add(2);
                    c.incr();
                })
            })
            .collect();
        // A racing read sees at most what will have been added.
        assert!(c.get() <= 6);
        for w in writers {
            w.join().expect("writer");
        }
        assert_eq!(c.get(), 6);
    });
}

#[test]
fn loom_histogram_is_exact_after_join() {
    // A snapshot reads every bucket, and each read is a point where loom may switch threads:
    // the smallest precision (128 buckets) and a preemption bound keep the model tractable
    // while still interleaving the writers with the racing snapshot.
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(2);
    builder.max_branches = 100_000;
    builder.check(|| {
        let h = Arc::new(Histogram::with_precision(crate::MIN_PRECISION).expect("in range"));
        let writers: Vec<_> = [3u64, 1_000_000]
            .into_iter()
            .map(|v| {
                let h = Arc::clone(&h);
                thread::spawn(move || h.record(v))
            })
            .collect();
        let racing = h.snapshot();
        assert!(racing.count() <= 2 && racing.sum() <= 1_000_003);
        for w in writers {
            w.join().expect("writer");
        }
        let s = h.snapshot();
        assert_eq!((s.count(), s.sum()), (2, 1_000_003));
    });
}

#[test]
fn loom_gauge_adds_balance() {
    loom::model(|| {
        let g = Arc::new(Gauge::new());
        let writers: Vec<_> = [5i64, -3]
            .into_iter()
            .map(|d| {
                let g = Arc::clone(&g);
                thread::spawn(move || g.add(d))
            })
            .collect();
        for w in writers {
            w.join().expect("writer");
        }
        assert_eq!(g.get(), 2);
    });
}

#[test]
fn loom_slot_handoff_loses_no_increment() {
    use crate::counter::{add_to, claim, release};
    use crate::sync::{AtomicBool, AtomicU64, Ordering};
    // One slot, two threads: whoever claims it adds with load+store, the other with fetch_add
    // on the shared stripe, or, if it comes after the release, claims the slot and adds with
    // load+store on top of the first holder's store. No interleaving may lose an increment.
    loom::model(|| {
        let slots = Arc::new([AtomicBool::new(false)]);
        let stripes = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let (slots, stripes) = (Arc::clone(&slots), Arc::clone(&stripes));
                thread::spawn(move || {
                    let i = claim(&slots[..]).min(1);
                    add_to(&stripes[i], 1, i == 0);
                    add_to(&stripes[i], 1, i == 0);
                    if i == 0 {
                        release(&slots[..], 0);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("adder");
        }
        let total = stripes[0].load(Ordering::Relaxed) + stripes[1].load(Ordering::Relaxed);
        assert_eq!(total, 4);
    });
}
