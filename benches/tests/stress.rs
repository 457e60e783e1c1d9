//! The stress job's own checks: a short run passes, and a run where the cache is made to
//! lose an acknowledged write fails with the loss reported — so a passing verdict means
//! something.

use std::process::Command;

fn stress(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_stress"))
        .args(args)
        .output()
        .expect("the stress binary runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status.success(), text)
}

fn figure(summary: &str, name: &str) -> u64 {
    let line = summary
        .lines()
        .find(|l| l.starts_with(&format!("| {name} |")))
        .unwrap_or_else(|| panic!("no `{name}` row in:\n{summary}"));
    line.split('|').nth(2).and_then(|v| v.trim().parse().ok()).expect("a number")
}

/// A short run with kills and torn tails under the sync policy `wal` must lose nothing
/// acknowledged and verify some records after the faults.
fn kills_and_torn_tails_lose_nothing(wal: &str) {
    let (ok, out) =
        stress(&["--secs", "4", "--threads", "2", "--wal", wal, "--faults", "kill,torn"]);
    assert!(ok, "stress failed:\n{out}");
    assert_eq!(figure(&out, "records lost"), 0);
    assert!(figure(&out, "records verified after faults") > 0, "{out}");
}

#[test]
fn a_short_run_with_kills_and_torn_tails_loses_nothing() {
    kills_and_torn_tails_lose_nothing("always");
}

/// Under `Interval` the log is written through memory-mapped segments (on Linux): an
/// acknowledged write is in the page cache, so a SIGKILL must lose none of it either, and a
/// torn record written into the zeros after the last one must be cut at recovery.
#[test]
fn a_short_run_with_kills_and_torn_tails_under_interval_loses_nothing() {
    kills_and_torn_tails_lose_nothing("interval");
}

#[test]
fn a_lost_acknowledged_write_is_reported_and_fails_the_run() {
    let (ok, out) = stress(&[
        "--secs",
        "3",
        "--threads",
        "1",
        "--tiers",
        "memory",
        "--wal",
        "always",
        "--faults",
        "kill",
        "--inject-loss",
    ]);
    assert!(!ok, "a run that lost writes must fail:\n{out}");
    assert!(figure(&out, "records lost") > 0, "{out}");
    assert!(out.contains("verdict: FAIL"), "{out}");
}
