//! Belady's optimal replacement (MIN), computed offline: the hit ratio no online policy can
//! beat on a given request sequence and capacity, shown beside every measured figure so an
//! impossible number is caught at once.
//!
//! On a miss the requested key is brought in and, if the cache is full, the resident key
//! whose next request lies furthest in the future is dropped first (classic demand paging,
//! which is what the published reference figures use). [`Opt::bypass`] also allows leaving
//! the requested key out when its own next request is the furthest, the true bound for a
//! cache with an admission filter. With unit weights both are optimal in their model
//! (Belady 1966; Mattson et al. 1970). The computation is O(n log n): one backward pass finds each request's next
//! use, and a max-heap with lazy deletion orders resident keys by next use.

use std::collections::{BinaryHeap, HashMap};

/// The outcome of replaying a trace under Belady's OPT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OptResult {
    /// Requests that found their key resident.
    pub hits: u64,
    /// All requests.
    pub requests: u64,
}

impl OptResult {
    /// Hits over requests, or zero for an empty trace.
    pub fn hit_ratio(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.hits as f64 / self.requests as f64
        }
    }
}

/// For each request, the index of the next request for the same key (`usize::MAX` if none).
pub fn next_uses(trace: &[u64]) -> Vec<usize> {
    let mut next = vec![usize::MAX; trace.len()];
    let mut last: HashMap<u64, usize> = HashMap::with_capacity(trace.len().min(1 << 20));
    for (i, key) in trace.iter().enumerate().rev() {
        if let Some(j) = last.insert(*key, i) {
            next[i] = j;
        }
    }
    next
}

/// Belady's OPT hit count for `trace` (one key per request, unit weights) and a cache of
/// `capacity` entries, with demand paging (every missed key is brought in).
pub fn opt_hit_ratio(trace: &[u64], capacity: usize) -> OptResult {
    let next = next_uses(trace);
    opt_with_next_uses(trace, &next, capacity, false)
}

/// [`opt_hit_ratio`] with precomputed [`next_uses`], so several capacities share one pass;
/// with `bypass`, a missed key whose next use is the furthest is not brought in.
///
/// # Panics
///
/// Panics if `next` is not as long as `trace`.
pub fn opt_with_next_uses(
    trace: &[u64],
    next: &[usize],
    capacity: usize,
    bypass: bool,
) -> OptResult {
    assert_eq!(trace.len(), next.len(), "next uses must come from the same trace");
    let requests = trace.len() as u64;
    if capacity == 0 {
        return OptResult { hits: 0, requests };
    }
    // Each resident key maps to its next use; the heap may hold stale (next use, key)
    // pairs, recognised because they no longer match the map.
    let mut resident: HashMap<u64, usize> = HashMap::with_capacity(capacity.min(1 << 20) + 1);
    let mut heap: BinaryHeap<(usize, u64)> = BinaryHeap::with_capacity(capacity.min(1 << 20) + 1);
    let mut hits = 0u64;
    for (i, &key) in trace.iter().enumerate() {
        if let Some(n) = resident.get_mut(&key) {
            hits += 1;
            *n = next[i];
        } else {
            if !bypass {
                // Demand paging: make room among the others before bringing the key in.
                evict_furthest(&mut resident, &mut heap, capacity - 1);
            }
            resident.insert(key, next[i]);
        }
        heap.push((next[i], key));
        // Compact when stale pairs dominate, so memory stays O(capacity).
        if heap.len() > 4 * capacity + 1024 {
            heap = resident.iter().map(|(&k, &n)| (n, k)).collect();
        }
        evict_furthest(&mut resident, &mut heap, capacity);
    }
    OptResult { hits, requests }
}

/// Drops the resident keys used furthest in the future until at most `keep` remain.
fn evict_furthest(
    resident: &mut HashMap<u64, usize>,
    heap: &mut BinaryHeap<(usize, u64)>,
    keep: usize,
) {
    // Every pop removes one heap element, so this loop ends.
    while resident.len() > keep {
        let Some((n, k)) = heap.pop() else { break };
        if resident.get(&k) == Some(&n) {
            resident.remove(&k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loop_larger_than_cache_keeps_a_fixed_subset() {
        // Keys 0..4 repeated 10 times with room for 2. With bypass OPT pins two keys and
        // hits half of the requests after the first round; demand paging must take every
        // missed key in, so one slot churns and it hits one request in three.
        let trace: Vec<u64> = (0..40).map(|i| i % 4).collect();
        let r = opt_hit_ratio(&trace, 2);
        assert_eq!(r.requests, 40);
        assert_eq!(r.hits, 12, "{r:?}");
        let next = next_uses(&trace);
        assert_eq!(opt_with_next_uses(&trace, &next, 2, true).hits, 18);
    }

    #[test]
    fn everything_fits() {
        let trace = [1, 2, 3, 1, 2, 3, 1];
        assert_eq!(opt_hit_ratio(&trace, 3).hits, 4);
        assert_eq!(opt_hit_ratio(&trace, 0).hits, 0);
    }
}
