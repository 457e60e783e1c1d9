//! Seeded synthetic traces: Zipf popularity, scans, loops and phase changes.
//!
//! A trace is a list of [`Phase`]s, each drawing a number of requests from one [`Pattern`]
//! over its own key range, so a phase change (a new hot set) is a new phase with a different
//! `key_offset`. The same phases and seed always give the same trace.

use strata_evict::mix64;

/// How a phase picks keys.
#[derive(Clone, Debug, PartialEq)]
pub enum Pattern {
    /// Key `i` (of `keys`) drawn with probability proportional to `1 / (i + 1)^exponent`.
    Zipf {
        /// The number of distinct keys.
        keys: u64,
        /// The skew; 0 is uniform, around 1 is typical of web and database workloads.
        exponent: f64,
    },
    /// Keys drawn uniformly from `keys` distinct keys.
    Uniform {
        /// The number of distinct keys.
        keys: u64,
    },
    /// Keys `0, 1, .., keys - 1, 0, 1, ..` in order: defeats LRU when larger than the cache.
    Loop {
        /// The loop's length.
        keys: u64,
    },
    /// A one-time sequential scan over fresh keys (each requested once).
    Scan,
    /// Each request comes from `a` with probability `percent_a`%, otherwise from `b`; the
    /// two draw from disjoint key ranges (`b`'s keys are offset by 2^40).
    Mix {
        /// The first pattern.
        a: Box<Pattern>,
        /// The second pattern.
        b: Box<Pattern>,
        /// The chance, in percent, that a request comes from `a`.
        percent_a: u8,
    },
}

/// A run of requests drawn from one pattern.
#[derive(Clone, Debug, PartialEq)]
pub struct Phase {
    /// Where keys come from.
    pub pattern: Pattern,
    /// How many requests this phase makes.
    pub requests: usize,
    /// Added to every key, so phases can use disjoint key sets.
    pub key_offset: u64,
}

/// A seeded generator of uniform numbers (SplitMix64).
#[derive(Clone, Debug)]
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix64(self.0)
    }

    /// Uniform in [0, 1).
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
        }
    }
}

/// The most distinct keys a Zipf pattern may have (its table costs 8 bytes per key).
pub const MAX_ZIPF_KEYS: u64 = 1 << 24;

/// A sampler for one pattern, holding its precomputed tables.
enum Sampler {
    Zipf(Vec<f64>),
    Uniform(u64),
    Loop { keys: u64, next: u64 },
    Scan { next: u64 },
    Mix { a: Box<Sampler>, b: Box<Sampler>, percent_a: u8 },
}

impl Sampler {
    fn new(pattern: &Pattern) -> Sampler {
        match pattern {
            Pattern::Zipf { keys, exponent } => {
                let n = (*keys).clamp(1, MAX_ZIPF_KEYS) as usize;
                let mut cdf = Vec::with_capacity(n);
                let mut total = 0.0;
                for i in 0..n {
                    total += 1.0 / ((i + 1) as f64).powf(*exponent);
                    cdf.push(total);
                }
                cdf.iter_mut().for_each(|c| *c /= total);
                Sampler::Zipf(cdf)
            }
            Pattern::Uniform { keys } => Sampler::Uniform((*keys).max(1)),
            Pattern::Loop { keys } => Sampler::Loop { keys: (*keys).max(1), next: 0 },
            Pattern::Scan => Sampler::Scan { next: 0 },
            Pattern::Mix { a, b, percent_a } => Sampler::Mix {
                a: Box::new(Sampler::new(a)),
                b: Box::new(Sampler::new(b)),
                percent_a: *percent_a,
            },
        }
    }

    fn sample(&mut self, rng: &mut Rng) -> u64 {
        match self {
            Sampler::Zipf(cdf) => {
                let u = rng.next_f64();
                cdf.partition_point(|&c| c < u).min(cdf.len() - 1) as u64
            }
            Sampler::Uniform(n) => rng.below(*n),
            Sampler::Loop { keys, next } => {
                let k = *next;
                *next = (*next + 1) % *keys;
                k
            }
            Sampler::Scan { next } => {
                *next += 1;
                *next - 1
            }
            Sampler::Mix { a, b, percent_a } => {
                if rng.below(100) < u64::from(*percent_a) {
                    a.sample(rng)
                } else {
                    b.sample(rng) + (1 << 40)
                }
            }
        }
    }
}

/// Generates the requests of every phase in order.
///
/// ```
/// use strata_sim::synth::{generate, Pattern, Phase};
/// let phases = [Phase { pattern: Pattern::Loop { keys: 3 }, requests: 5, key_offset: 10 }];
/// assert_eq!(generate(&phases, 1), [10, 11, 12, 10, 11]);
/// ```
pub fn generate(phases: &[Phase], seed: u64) -> Vec<u64> {
    let mut rng = Rng(seed);
    let mut out = Vec::with_capacity(phases.iter().map(|p| p.requests).sum());
    for phase in phases {
        let mut sampler = Sampler::new(&phase.pattern);
        for _ in 0..phase.requests {
            out.push(sampler.sample(&mut rng).wrapping_add(phase.key_offset));
        }
    }
    out
}

/// A named synthetic workload for tests and demonstrations.
#[derive(Clone, Debug)]
pub struct Workload {
    /// A short name.
    pub name: &'static str,
    /// Its phases.
    pub phases: Vec<Phase>,
}

/// A small suite covering the shapes that separate policies: a skewed hot set, a hot set
/// under scans, a loop slightly larger than typical caches, and a phase change from a
/// frequency-friendly to a recency-friendly workload. Sized for caches of about 100-1000.
pub fn suite(requests_per_phase: usize) -> Vec<Workload> {
    let zipf = Pattern::Zipf { keys: 10_000, exponent: 0.9 };
    vec![
        Workload {
            name: "zipf",
            phases: vec![Phase {
                pattern: zipf.clone(),
                requests: requests_per_phase,
                key_offset: 0,
            }],
        },
        Workload {
            name: "zipf+scan",
            phases: vec![Phase {
                pattern: Pattern::Mix {
                    a: Box::new(zipf.clone()),
                    b: Box::new(Pattern::Scan),
                    percent_a: 70,
                },
                requests: requests_per_phase,
                key_offset: 0,
            }],
        },
        Workload {
            name: "loop",
            phases: vec![Phase {
                pattern: Pattern::Loop { keys: 1_200 },
                requests: requests_per_phase,
                key_offset: 0,
            }],
        },
        Workload {
            name: "phases",
            phases: vec![
                Phase { pattern: zipf.clone(), requests: requests_per_phase / 2, key_offset: 0 },
                Phase {
                    pattern: Pattern::Loop { keys: 400 },
                    requests: requests_per_phase / 2,
                    key_offset: 1 << 32,
                },
                Phase { pattern: zipf, requests: requests_per_phase / 2, key_offset: 2 << 32 },
            ],
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipf_is_skewed_and_seeded() {
        let phases = [Phase {
            pattern: Pattern::Zipf { keys: 1000, exponent: 1.0 },
            requests: 20_000,
            key_offset: 0,
        }];
        let a = generate(&phases, 7);
        assert_eq!(a, generate(&phases, 7));
        assert_ne!(a, generate(&phases, 8));
        let zeros = a.iter().filter(|&&k| k == 0).count();
        let tail = a.iter().filter(|&&k| k >= 500).count();
        // Key 0 has probability 1/H(1000), about 13%; the upper half about 9% together.
        assert!((2000..3400).contains(&zeros), "{zeros}");
        assert!(tail < 2600, "{tail}");
        assert!(a.iter().all(|&k| k < 1000));
    }

    #[test]
    fn scans_never_repeat_and_mixes_stay_apart() {
        let scan = generate(&[Phase { pattern: Pattern::Scan, requests: 100, key_offset: 5 }], 1);
        assert_eq!(scan, (5..105).collect::<Vec<u64>>());
        let mix = Pattern::Mix {
            a: Box::new(Pattern::Uniform { keys: 10 }),
            b: Box::new(Pattern::Scan),
            percent_a: 50,
        };
        let t = generate(&[Phase { pattern: mix, requests: 1000, key_offset: 0 }], 3);
        let from_a = t.iter().filter(|&&k| k < 10).count();
        assert!((400..600).contains(&from_a), "{from_a}");
        assert!(t.iter().all(|&k| !(10..1 << 40).contains(&k)));
    }
}
