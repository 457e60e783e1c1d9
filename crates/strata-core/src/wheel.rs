//! A hierarchical timer wheel: finds the entries whose deadline has passed without scanning
//! the map, in work bounded per call.
//!
//! Time is cut into ticks of 2^24 ns (about 16.8 ms). Level `l` has 64 buckets of 64^l
//! ticks each; five levels reach about 208 days, and later deadlines wait in an overflow list
//! that is re-placed once per 208-day rotation. Records are `(slot, generation, deadline)`:
//! the wheel never unlinks a record when an entry changes; the shard recognizes a stale record
//! when it comes due (the generation or the deadline no longer match) and drops it.
//!
//! # Invariants
//!
//! - `current` is the last tick whose due records have been handed out (or are in `due`).
//! - A record in level `l`, bucket `b` has a deadline tick whose level-`l` digit is `b` and
//!   whose higher digits equal `current`'s, and `b > digit_l(current)` — except while the
//!   bucket at `digit_l(current)` is being cascaded, which `advance` finishes first.
//! - Every placed record's tick is at least `current + 1`, so a record rescheduled during
//!   `advance` is never handed out twice in one tick.

/// Ticks are 2^24 ns.
const TICK_SHIFT: u32 = 24;
const BITS: u32 = 6;
const SLOTS: usize = 1 << BITS;
const LEVELS: usize = 5;

/// A scheduled expiry check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Rec {
    pub(crate) slot: u32,
    pub(crate) gen: u32,
    /// The deadline (cache nanos) this record was scheduled for.
    pub(crate) at: u64,
}

/// What the owner did with a due record.
pub(crate) enum Due {
    /// Removed, or stale: forget the record.
    Done,
    /// Not expired yet after all (its deadline moved): check again at this time.
    Reschedule(u64),
}

#[derive(Debug)]
pub(crate) struct Wheel {
    /// Level `l`'s buckets are `buckets[l * SLOTS..(l + 1) * SLOTS]`; the vector only grows
    /// to the highest level a record has used, so that a shard whose deadlines all land in
    /// the lower levels (a TTL of an hour uses levels 0 to 2) does not carry 320 empty
    /// vectors (7.5 KiB) for a cache of many shards.
    buckets: Vec<Vec<Rec>>,
    occupied: [u64; LEVELS],
    due: Vec<Rec>,
    overflow: Vec<Rec>,
    current: u64,
    /// Records scheduled since the last count: an upper bound on how many the wheel holds
    /// (handing records out does not lower it). See [`Wheel::needs_compaction`].
    scheduled: usize,
}

/// Records a wheel may hold beyond twice the live entries before it is compacted: its
/// shard's capacity, within these bounds. Proportional to the capacity, so that a cache of
/// many shards does not allow thousands of stale records in each.
const MIN_COMPACTION_SLACK: u64 = 64;
const MAX_COMPACTION_SLACK: u64 = 4096;

/// The compaction slack of a wheel in a shard of `capacity` (see [`Wheel::needs_compaction`]).
pub(crate) fn compaction_slack(capacity: u64) -> usize {
    capacity.clamp(MIN_COMPACTION_SLACK, MAX_COMPACTION_SLACK) as usize
}

fn tick(at: u64) -> u64 {
    at >> TICK_SHIFT
}

fn digit(t: u64, level: usize) -> usize {
    ((t >> (BITS as usize * level)) as usize) & (SLOTS - 1)
}

impl Wheel {
    pub(crate) fn new(now: u64) -> Self {
        Wheel {
            buckets: Vec::new(),
            occupied: [0; LEVELS],
            due: Vec::new(),
            overflow: Vec::new(),
            current: tick(now),
            scheduled: 0,
        }
    }

    /// Schedules a check of `rec` at `rec.at`.
    pub(crate) fn schedule(&mut self, rec: Rec) {
        self.scheduled += 1;
        let t = tick(rec.at).max(self.current + 1);
        let level = (63 - (t ^ self.current).leading_zeros()) / BITS;
        let level = level as usize;
        if level >= LEVELS {
            self.overflow.push(rec);
            return;
        }
        let b = digit(t, level);
        if self.buckets.len() <= level * SLOTS + b {
            self.buckets.resize_with((level + 1) * SLOTS, Vec::new);
        }
        self.buckets[level * SLOTS + b].push(rec);
        self.occupied[level] |= 1 << b;
    }

    /// Whether the wheel may hold more than about twice `live` records. Records of entries
    /// that were overwritten, removed or evicted stay until their deadline (they are dropped
    /// when they come due), so a cache that writes faster than its TTL turns over would grow
    /// the wheel without bound; the owner then drops the stale ones with [`Wheel::retain`].
    /// `scheduled` counts from the last compaction, so the work is amortized: at least
    /// `live + slack` schedules between two compactions of at most that many records
    /// (`slack` comes from [`compaction_slack`]).
    pub(crate) fn needs_compaction(&self, live: usize, slack: usize) -> bool {
        self.scheduled > 2 * live + slack
    }

    /// Keeps only the records `keep` accepts, and gives back the memory of the others.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&Rec) -> bool) {
        let mut held = 0;
        for (i, bucket) in self.buckets.iter_mut().enumerate() {
            if bucket.is_empty() {
                continue;
            }
            bucket.retain(&mut keep);
            if bucket.is_empty() {
                *bucket = Vec::new();
                self.occupied[i / SLOTS] &= !(1 << (i % SLOTS));
            } else if bucket.capacity() > 2 * bucket.len() + 8 {
                bucket.shrink_to_fit();
            }
            held += bucket.len();
        }
        self.due.retain(&mut keep);
        self.overflow.retain(&mut keep);
        self.due.shrink_to_fit();
        self.overflow.shrink_to_fit();
        self.scheduled = held + self.due.len() + self.overflow.len();
    }

    /// How many records the wheel holds.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.buckets.iter().map(Vec::len).sum::<usize>() + self.due.len() + self.overflow.len()
    }

    /// Whether any record is scheduled.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.due.is_empty() && self.overflow.is_empty() && self.occupied.iter().all(|&o| o == 0)
    }

    /// Hands every record due by `now` to `on_due`, at most `budget` records in all (due or
    /// moved between levels). Returns `true` when nothing due by `now` is left.
    pub(crate) fn advance(
        &mut self,
        now: u64,
        mut budget: usize,
        mut on_due: impl FnMut(Rec) -> Due,
    ) -> bool {
        let target = tick(now);
        loop {
            while let Some(rec) = self.due.pop() {
                if budget == 0 {
                    self.due.push(rec);
                    return false;
                }
                budget -= 1;
                if let Due::Reschedule(at) = on_due(rec) {
                    self.schedule(Rec { at, ..rec });
                }
            }
            // Finish cascading the buckets that `current` has entered, highest level first
            // so that their records can fall into the lower buckets cascaded next.
            for level in (0..LEVELS).rev() {
                let b = digit(self.current, level);
                if self.occupied[level] & (1 << b) == 0 {
                    continue;
                }
                let idx = level * SLOTS + b;
                let mut recs = std::mem::take(&mut self.buckets[idx]);
                self.occupied[level] &= !(1 << b);
                if level == 0 {
                    self.due.append(&mut recs);
                    continue;
                }
                while let Some(rec) = recs.pop() {
                    if budget == 0 {
                        recs.push(rec);
                        self.buckets[idx] = recs;
                        self.occupied[level] |= 1 << b;
                        return false;
                    }
                    budget -= 1;
                    self.place_cascaded(rec);
                }
            }
            if !self.due.is_empty() {
                continue;
            }
            if self.current >= target {
                return true;
            }
            let next = self.next_interesting().min(target);
            if next > self.current {
                self.current = next;
            }
            if self.current % (1 << (BITS as usize * LEVELS)) == 0 && !self.overflow.is_empty() {
                for rec in std::mem::take(&mut self.overflow) {
                    self.place_cascaded(rec);
                }
            }
            if self.current == target && self.nothing_due_now() {
                return true;
            }
        }
    }

    /// Re-places a record from a bucket `current` has entered: it belongs to a lower level
    /// now, or is due if its tick has come.
    fn place_cascaded(&mut self, rec: Rec) {
        if tick(rec.at) <= self.current {
            self.due.push(rec);
        } else {
            self.schedule(rec);
        }
    }

    fn nothing_due_now(&self) -> bool {
        self.due.is_empty()
            && (0..LEVELS).all(|l| self.occupied[l] & (1 << digit(self.current, l)) == 0)
    }

    /// The earliest tick at which some bucket must be cascaded or handed out.
    fn next_interesting(&self) -> u64 {
        let mut next = u64::MAX;
        for level in 0..LEVELS {
            let occ = self.occupied[level];
            if occ == 0 {
                continue;
            }
            let b = u64::from(occ.trailing_zeros());
            let span = BITS as usize * (level + 1);
            let high = if span >= 64 { 0 } else { (self.current >> span) << span };
            next = next.min(high | (b << (BITS as usize * level)));
        }
        if !self.overflow.is_empty() {
            let span = BITS as usize * LEVELS;
            next = next.min(((self.current >> span) + 1) << span);
        }
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const T: u64 = 1 << TICK_SHIFT;

    fn collect(w: &mut Wheel, now: u64) -> Vec<u32> {
        let mut out = Vec::new();
        while !w.advance(now, 7, |r| {
            out.push(r.slot);
            Due::Done
        }) {}
        out.sort_unstable();
        out
    }

    #[test]
    fn hands_out_records_once_their_tick_has_passed() {
        let mut w = Wheel::new(0);
        w.schedule(Rec { slot: 1, gen: 0, at: 5 * T });
        w.schedule(Rec { slot: 2, gen: 0, at: 100 * T });
        w.schedule(Rec { slot: 3, gen: 0, at: 5000 * T });
        assert!(collect(&mut w, 4 * T).is_empty());
        assert_eq!(collect(&mut w, 5 * T), vec![1]);
        assert_eq!(collect(&mut w, 99 * T), Vec::<u32>::new());
        assert_eq!(collect(&mut w, 6000 * T), vec![2, 3]);
        assert!(w.is_empty());
    }

    #[test]
    fn very_far_deadlines_use_the_overflow_and_still_fire() {
        let mut w = Wheel::new(0);
        let far = (1u64 << 31) * T; // beyond five levels
        w.schedule(Rec { slot: 9, gen: 0, at: far });
        assert!(collect(&mut w, far - T).is_empty());
        assert_eq!(collect(&mut w, far), vec![9]);
    }

    #[test]
    fn rescheduled_records_fire_later() {
        let mut w = Wheel::new(0);
        w.schedule(Rec { slot: 1, gen: 0, at: 3 * T });
        let mut fired = 0;
        while !w.advance(3 * T, 100, |_| {
            fired += 1;
            Due::Reschedule(10 * T)
        }) {}
        assert_eq!(fired, 1);
        assert_eq!(collect(&mut w, 10 * T), vec![1]);
    }

    proptest! {
        /// Against a reference: after advancing to `now`, exactly the records whose deadline
        /// tick is at most `now`'s tick have fired, each exactly once.
        #[test]
        fn fires_exactly_the_due_records(
            deadlines in proptest::collection::vec(0u64..(1 << 22), 1..200),
            steps in proptest::collection::vec(0u64..(1 << 20), 1..20),
            start in 0u64..(1 << 20),
        ) {
            let start = start * T;
            let mut w = Wheel::new(start);
            for (i, d) in deadlines.iter().enumerate() {
                w.schedule(Rec { slot: i as u32, gen: 0, at: start + d * T });
            }
            let mut fired = vec![0u32; deadlines.len()];
            let mut now = start;
            for s in steps {
                now += s * T;
                while !w.advance(now, 13, |r| { fired[r.slot as usize] += 1; Due::Done }) {}
                for (i, d) in deadlines.iter().enumerate() {
                    let due = start + d * T <= now;
                    // A deadline at or before the start fires one tick late by design.
                    let due_late_ok = *d == 0 && now < start + T;
                    prop_assert!(fired[i] <= 1);
                    if !due_late_ok {
                        prop_assert_eq!(fired[i] == 1, due, "record {} (deadline +{} ticks) at +{} ticks", i, d, (now - start) / T);
                    }
                }
            }
        }
    }
}
