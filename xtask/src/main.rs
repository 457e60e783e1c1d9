//! `cargo xtask <job>`: the project's jobs, run the same way locally and in CI.
//!
//! Cargo is invoked through `$CARGO` with argument vectors, never shell strings, so the
//! jobs run anywhere the toolchain does.

mod audit;
mod hitratio;

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

const USAGE: &str = "\
usage: cargo xtask <job> [args]

jobs:
  lint        cargo fmt --check, clippy -D warnings on every target, cargo doc with warnings denied
  test        every test of the workspace (unit, integration, doc), then the loom models
  loom        the loom models alone (RUSTFLAGS=--cfg strata_loom)
  audit       advisories (offline RustSec DB), license allow-list, unsafe count and forbid rule
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
        "hitratio" => hitratio::run(&rest),
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
    clippy.args(["clippy", "--workspace", "--all-targets", "--all-features", "--", "-D", "warnings"]);
    run(clippy)?;
    let mut doc = cargo();
    doc.args(["doc", "--workspace", "--no-deps", "--all-features"]).env("RUSTDOCFLAGS", "-D warnings");
    run(doc)
}

fn test(extra: &[String]) -> Result<()> {
    let mut t = cargo();
    t.args(["test", "--workspace", "--all-features"]).args(extra);
    run(t)?;
    loom()
}

fn loom() -> Result<()> {
    let mut t = cargo();
    t.args(["test", "--release", "-p", "strata-core", "--lib", "loom"])
        .env("RUSTFLAGS", "--cfg strata_loom")
        .env("LOOM_MAX_PREEMPTIONS", "2")
        .env("CARGO_TARGET_DIR", root().join("target").join("loom"));
    run(t)
}
