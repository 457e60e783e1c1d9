//! `cargo xtask <job>`: the project's jobs, run the same way locally and in CI.
//!
//! Cargo is invoked through `$CARGO` with argument vectors, never shell strings, so the
//! jobs run anywhere the toolchain does.

#![forbid(unsafe_code)]

mod audit;
mod hitratio;
mod wal;

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

const USAGE: &str = "\
usage: cargo xtask <job> [args]

jobs:
  lint        cargo fmt --check, clippy -D warnings on every target, cargo doc with warnings denied,
              and the facade's feature isolation (a memory-only build compiles no tier code)
  test        every test of the workspace (unit, integration, doc), the loom models, a one-minute
              stress with every fault kind (kill, torn, redis-down)
  stress      the main job: Strata under mixed load and faults, checked as it runs [--secs N] [--threads T]
              [--tiers memory,disk,redis] [--wal always|interval|never|off] [--faults kill,torn,redis-down] [--report DIR]
  bench       side by side: strata vs moka vs quick_cache (throughput, memory), WAL, durable cache,
              disk and Redis tiers against raw rates; one section of ratios at the end [--quick]
  loom        the loom models alone (RUSTFLAGS=--cfg strata_loom)
  audit       advisories (offline RustSec DB), license allow-list, unsafe count and forbid rule
  wal-check   validate a write-ahead log directory, like redis-check-aof: wal-check DIR [--repair]
  wal-fuzz    cargo-fuzz the WAL segment decoder for a bounded time: wal-fuzz [SECONDS] (needs cargo-fuzz)
  hitratio    replay cache traces through every policy, strata-core, moka and quick_cache (release)
";

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let job = args.next().unwrap_or_default();
    let rest: Vec<String> = args.collect();
    match job.as_str() {
        "lint" => lint(),
        "test" => test(&rest),
        "loom" => loom(),
        "audit" => audit::run(&rest),
        "stress" => release_bin("stress", &rest),
        "bench" => bench(&rest),
        "hitratio" => hitratio::run(&rest),
        "wal-check" => wal::wal_check(&rest),
        "wal-fuzz" => wal::wal_fuzz(&rest),
        "" | "help" | "-h" | "--help" => {
            print!("{USAGE}");
            Ok(())
        }
        other => bail!("unknown job `{other}`\n\n{USAGE}"),
    }
}

/// The workspace root (xtask lives one level below it).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask has a parent").to_path_buf()
}

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(root());
    cmd
}

fn run(mut cmd: Command) -> Result<()> {
    eprintln!("$ {cmd:?}");
    let status = cmd.status().with_context(|| format!("could not start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

fn lint() -> Result<()> {
    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--", "--check"]);
    run(fmt)?;
    let mut clippy = cargo();
    clippy.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--all-features",
        "--",
        "-D",
        "warnings",
    ]);
    run(clippy)?;
    let mut doc = cargo();
    doc.args(["doc", "--workspace", "--no-deps", "--all-features"])
        .env("RUSTDOCFLAGS", "-D warnings");
    run(doc)?;
    feature_isolation()
}

/// A user who embeds only what they need compiles only that: the facade's default build has
/// no tier, disk, Redis or WAL code, and `disk` and `redis` do not pull in each other.
fn feature_isolation() -> Result<()> {
    // (features, crates that must be in the build, crates that must not)
    let cases: [(&str, &[&str], &[&str]); 4] = [
        ("", &[], &["strata-tier", "strata-wal", "redis", "memmap2"]),
        ("disk", &["strata-tier", "memmap2"], &["redis", "strata-wal"]),
        ("redis", &["strata-tier", "redis"], &["memmap2", "strata-wal"]),
        ("wal", &["strata-tier", "strata-wal"], &["redis"]),
    ];
    for (features, wanted, unwanted) in cases {
        let mut tree = cargo();
        tree.args(["tree", "-p", "strata", "-e", "normal", "--prefix", "none", "-f", "{p}"]);
        if !features.is_empty() {
            tree.args(["--features", features]);
        }
        let out = tree.output().with_context(|| format!("could not run {tree:?}"))?;
        if !out.status.success() {
            bail!("{tree:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let crates: std::collections::BTreeSet<&str> =
            text.lines().filter_map(|l| l.split_whitespace().next()).collect();
        let label = if features.is_empty() { "default" } else { features };
        for c in wanted {
            if !crates.contains(c) {
                bail!("feature isolation: the `{label}` build of strata lacks {c}");
            }
        }
        for c in unwanted {
            if crates.contains(c) {
                bail!("feature isolation: the `{label}` build of strata compiles {c}");
            }
        }
        eprintln!("feature isolation: `{label}` build ok ({} crates)", crates.len());
    }
    Ok(())
}

fn test(extra: &[String]) -> Result<()> {
    let mut t = cargo();
    t.args(["test", "--workspace", "--all-features"]).args(extra);
    run(t)?;
    loom()?;
    // The metrics example serves a real cache's Prometheus text on loopback and fails unless
    // the figures it scrapes move.
    let mut metrics = cargo();
    metrics.args(["run", "--quiet", "-p", "strata", "--example", "serve_prometheus", "--"]);
    metrics.args(["--self-check", "--seconds", "20"]);
    run(metrics)?;
    stress_with_every_fault()
}

/// About a minute of the main job with every fault kind: SIGKILLs of the durable child,
/// torn log tails, and redis-server killed and restarted under the tiered workload.
///
/// The Redis fault needs redis-server (`.ci/run` installs it). In CI (`CI=true`) its absence
/// fails the run; on a developer's machine the job says so loudly and runs the other faults.
fn stress_with_every_fault() -> Result<()> {
    let redis =
        Command::new("redis-server").arg("--version").output().is_ok_and(|o| o.status.success());
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let (tiers, faults) = if redis || ci {
        ("memory,disk,redis", "kill,torn,redis-down")
    } else {
        eprintln!(
            "\n*** redis-server is not installed: the stress runs without the redis tier and the \
             redis-down fault (apt-get install redis-server, or run .ci/run) ***\n"
        );
        ("memory,disk", "kill,torn")
    };
    let report = root().join("target").join("stress-report");
    let args =
        ["--secs", "60", "--tiers", tiers, "--wal", "always", "--faults", faults, "--report"];
    let mut args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    args.push(report.display().to_string());
    release_bin("stress", &args)
}

/// The side-by-side comparisons: strata vs moka vs quick_cache (throughput and memory), then
/// the WAL, the durable cache and the tiers against the machine's raw rates, ending in one
/// section with every bench's summary of ratios. `--quick` passes `--quick` to the in-memory
/// comparison and runs only the interleaved summaries of the criterion benches (a filter that
/// matches no criterion benchmark), which is what CI-sized runs want.
fn bench(args: &[String]) -> Result<()> {
    let quick = args.iter().any(|a| a == "--quick");
    release_bin("compare", args)?;
    let mut summaries = Vec::new();
    for name in ["wal", "durable", "disk_tier", "redis_tier", "tiers"] {
        let mut cmd = cargo();
        cmd.args(["bench", "--quiet", "-p", "strata-benches", "--bench", name, "--"]);
        if quick {
            cmd.arg("only-the-summaries");
        }
        eprintln!("$ {cmd:?}");
        let out = cmd
            .stderr(std::process::Stdio::inherit())
            .output()
            .with_context(|| format!("could not start {cmd:?}"))?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        print!("{text}");
        if !out.status.success() {
            bail!("{cmd:?} failed: {}", out.status);
        }
        for line in summary_lines(&text) {
            // One comparison per row: summaries put several on a line, split by "; ".
            for part in line.split("; ").map(str::trim).filter(|p| !p.starts_with("==")) {
                summaries.push((name, part.replace('|', "/")));
            }
        }
    }
    println!("\n# Every comparison of this run (same machine, same process per bench)\n");
    println!("| bench | comparison |\n|---|---|");
    for (name, part) in summaries {
        println!("| {name} | {part} |");
    }
    Ok(())
}

/// The summary a bench prints after its criterion groups: every non-empty line from the
/// first one that names a summary.
fn summary_lines(text: &str) -> Vec<&str> {
    text.lines()
        .skip_while(|l| !l.to_lowercase().contains("summary") && !l.contains(" p50 "))
        .filter(|l| !l.trim().is_empty())
        .collect()
}

/// Builds and runs one of the release binaries of `strata-benches` (stress, compare).
fn release_bin(bin: &str, args: &[String]) -> Result<()> {
    let mut cmd = cargo();
    cmd.args(["run", "--release", "--quiet", "-p", "strata-benches", "--bin", bin, "--"])
        .args(args);
    run(cmd)
}

fn loom() -> Result<()> {
    // The cache's models, then the metrics crate's (the counter's stripe hand-off), with the
    // same flags and target dir so the second run reuses the first one's loom build.
    for krate in ["strata-core", "strata-metrics"] {
        let mut t = cargo();
        t.args(["test", "--release", "-p", krate, "--lib", "loom"])
            .env("RUSTFLAGS", "--cfg strata_loom")
            .env("LOOM_MAX_PREEMPTIONS", "2")
            .env("CARGO_TARGET_DIR", root().join("target").join("loom"));
        run(t)?;
    }
    Ok(())
}
