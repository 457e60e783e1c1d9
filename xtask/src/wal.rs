//! `cargo xtask wal-check DIR [--repair] [--max-record-size BYTES]`: validate a Strata WAL
//! directory like `redis-check-aof`, and `cargo xtask wal-fuzz [SECONDS]`: run the cargo-fuzz
//! target of the segment decoder for a bounded time.

use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use std::process::Command;
use strata_wal::{check_dir, CheckOptions, StdFs};

const CHECK_USAGE: &str = "usage: cargo xtask wal-check DIR [--repair] [--max-record-size BYTES]
       [--segment-size BYTES]

Validates every record of the WAL in DIR (manifest, snapshot, segments) and reports what is
wrong and where. --repair truncates the log at its first bad record (later segments are
removed). --segment-size is the size the log was written with (default 64 MiB): zeros at the
end of the last segment are a memory-mapped segment's unfilled space only in a file of the
space reserved for that size. Exits non-zero if problems remain. Refuses to run while a writer
holds the log.";

/// Runs `wal-check`.
pub(crate) fn wal_check(args: &[String]) -> Result<()> {
    let mut dir: Option<PathBuf> = None;
    let mut opts = CheckOptions::default();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--repair" => opts.repair = true,
            "--max-record-size" => {
                let n = it.next().context("--max-record-size needs a value")?;
                opts.max_record_size =
                    n.parse().with_context(|| format!("bad --max-record-size `{n}`"))?;
            }
            "--segment-size" => {
                let n = it.next().context("--segment-size needs a value")?;
                opts.segment_size =
                    n.parse().with_context(|| format!("bad --segment-size `{n}`"))?;
            }
            "-h" | "--help" => {
                println!("{CHECK_USAGE}");
                return Ok(());
            }
            other if other.starts_with('-') => bail!("unknown option `{other}`\n\n{CHECK_USAGE}"),
            other => {
                if dir.replace(PathBuf::from(other)).is_some() {
                    bail!("only one directory, please\n\n{CHECK_USAGE}");
                }
            }
        }
    }
    let Some(dir) = dir else { bail!("missing DIR\n\n{CHECK_USAGE}") };
    if !dir.is_dir() {
        bail!("{} is not a directory", dir.display());
    }
    let report =
        check_dir(&StdFs, &dir, opts).with_context(|| format!("checking {}", dir.display()))?;
    print!("{report}");
    if !report.is_clean() {
        if opts.repair {
            bail!("the log still has problems that --repair cannot fix");
        }
        bail!(
            "the log has {} problem(s); rerun with --repair to truncate at the first",
            report.problems.len()
        );
    }
    Ok(())
}

/// Runs `wal-fuzz [SECONDS]` (default 60): the `wal_segment` cargo-fuzz target, under the
/// nightly toolchain when rustup has one, else on the current toolchain with
/// `RUSTC_BOOTSTRAP=1` (cargo-fuzz needs nightly-only sanitizer flags).
pub(crate) fn wal_fuzz(args: &[String]) -> Result<()> {
    let seconds: u64 = match args.first() {
        Some(s) => s.parse().with_context(|| format!("bad SECONDS `{s}`"))?,
        None => 60,
    };
    let fuzz_dir = crate::root().join("fuzz");
    let has_nightly = Command::new("rustup")
        .args(["run", "nightly", "rustc", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    let mut cmd = if has_nightly {
        let mut c = Command::new("rustup");
        c.args(["run", "nightly", "cargo"]);
        c
    } else {
        let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
        c.env("RUSTC_BOOTSTRAP", "1");
        c
    };
    let installed = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !installed {
        bail!("cargo-fuzz is not installed: run `cargo install cargo-fuzz`");
    }
    cmd.current_dir(&fuzz_dir)
        .args(["fuzz", "run", "wal_segment", "--", &format!("-max_total_time={seconds}")])
        // A target dir of its own: fuzz builds use sanitizer flags that would invalidate the
        // workspace's build cache.
        .env("CARGO_TARGET_DIR", fuzz_target_dir());
    crate::run(cmd)
}

/// `$CARGO_TARGET_DIR/fuzz`, or `target/fuzz` in the workspace.
fn fuzz_target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir).join("fuzz"),
        None => crate::root().join("target").join("fuzz"),
    }
}
