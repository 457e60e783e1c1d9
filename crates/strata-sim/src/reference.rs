//! Published facts about the shared traces (`../shared/traces/README.md`): request and
//! unique-key counts a correct parser reproduces, and the exact LRU and Belady OPT hit
//! ratios (percent, two decimals) at the standard sizes. These are expectations to check
//! against, never substitutes for a measurement.

use std::path::{Path, PathBuf};

/// One shared trace and what is known about it.
#[derive(Clone, Copy, Debug)]
pub struct TraceSpec {
    /// A short name for tables ("OLTP", "loop", ...).
    pub name: &'static str,
    /// The path below the traces directory.
    pub file: &'static str,
    /// Requests in the trace.
    pub requests: usize,
    /// Distinct keys in the trace.
    pub unique: usize,
    /// The standard cache sizes, in entries.
    pub sizes: &'static [u64],
    /// Exact LRU hit ratio (percent) at each standard size.
    pub lru: &'static [f64],
    /// Belady OPT hit ratio (percent) at each standard size.
    pub opt: &'static [f64],
    /// Whether the trace is large enough to keep out of debug-build test runs.
    pub large: bool,
}

/// Every shared trace, in the README's order.
pub const TRACES: &[TraceSpec] = &[
    TraceSpec {
        name: "OLTP",
        file: "arc/OLTP.lis.zst",
        requests: 914_145,
        unique: 186_880,
        sizes: &[250, 500, 1000, 2000],
        lru: &[16.47, 23.45, 32.83, 42.47],
        opt: &[38.43, 46.42, 53.61, 60.40],
        large: false,
    },
    TraceSpec {
        name: "P3",
        file: "arc/P3.lis.zst",
        requests: 3_912_296,
        unique: 762_543,
        sizes: &[20_000, 160_000],
        lru: &[2.28, 51.58],
        opt: &[21.95, 70.83],
        large: true,
    },
    TraceSpec {
        name: "P12",
        file: "arc/P12.lis.zst",
        requests: 13_208_930,
        unique: 3_153_310,
        sizes: &[20_000, 160_000],
        lru: &[7.44, 36.03],
        opt: &[24.05, 58.41],
        large: true,
    },
    TraceSpec {
        name: "loop",
        file: "lirs/loop.trace.gz",
        requests: 505_500,
        unique: 1_011,
        sizes: &[256, 512, 768, 1024],
        lru: &[0.00, 0.00, 0.00, 99.80],
        opt: &[25.22, 50.54, 75.81, 99.80],
        large: false,
    },
    TraceSpec {
        name: "multi2",
        file: "lirs/multi2.trace.gz",
        requests: 26_311,
        unique: 5_684,
        sizes: &[128, 256, 512, 768],
        lru: &[9.60, 24.54, 36.37, 38.77],
        opt: &[37.90, 46.96, 53.83, 58.63],
        large: false,
    },
    TraceSpec {
        name: "sprite",
        file: "lirs/sprite.trace.gz",
        requests: 133_996,
        unique: 7_075,
        sizes: &[128, 256, 512, 768],
        lru: &[27.37, 49.90, 78.94, 87.82],
        opt: &[57.23, 75.06, 88.20, 91.95],
        large: false,
    },
    TraceSpec {
        name: "2_pools",
        file: "lirs/2_pools.trace.gz",
        requests: 100_000,
        unique: 9_939,
        sizes: &[128, 256, 512, 768],
        lru: &[26.86, 42.18, 51.22, 53.21],
        opt: &[53.21, 58.07, 63.01, 66.23],
        large: false,
    },
    TraceSpec {
        name: "gli",
        file: "lirs/gli.trace.gz",
        requests: 6_015,
        unique: 2_529,
        sizes: &[250, 500, 1000, 2000],
        lru: &[0.91, 0.95, 11.21, 57.41],
        opt: &[17.64, 34.26, 53.13, 57.96],
        large: false,
    },
    TraceSpec {
        name: "cs",
        file: "lirs/cs.trace.gz",
        requests: 6_781,
        unique: 1_409,
        sizes: &[100, 200, 400, 800],
        lru: &[1.83, 1.83, 1.83, 1.83],
        opt: &[7.73, 13.63, 25.42, 49.02],
        large: false,
    },
    TraceSpec {
        name: "web07",
        file: "cache2k/web07.trace.xz",
        requests: 76_118,
        unique: 20_484,
        sizes: &[2000, 8000],
        lru: &[55.50, 66.92],
        opt: &[67.97, 73.09],
        large: false,
    },
];

/// The shared traces directory as seen from the workspace root: `../shared/traces`.
pub fn traces_dir(workspace_root: &Path) -> PathBuf {
    workspace_root.join("..").join("shared").join("traces")
}

/// The spec whose file name matches `path`'s, if any.
pub fn spec_for(path: &Path) -> Option<&'static TraceSpec> {
    let name = path.file_name()?.to_str()?;
    TRACES.iter().find(|t| t.file.rsplit('/').next() == Some(name))
}
