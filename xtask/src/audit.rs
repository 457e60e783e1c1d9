//! `cargo xtask audit`: the supply chain, checked offline.
//!
//! Three checks run every time, and all three run even when an earlier one fails, so one
//! run shows everything that needs fixing:
//!
//! 1. `Cargo.lock` against a local copy of the RustSec advisory database
//!    ([`advisories`]): a vulnerability fails the job, an informational advisory warns.
//! 2. Every package's `license` against an SPDX allow-list ([`licenses`]).
//! 3. `unsafe` counted per workspace crate ([`unsafe_count`]); a crate with none must carry
//!    `#![forbid(unsafe_code)]` in each crate root so none can creep in.
//!
//! The package graph comes from `cargo metadata`, run through `$CARGO`, so crates added to
//! the workspace later are covered without touching this file. docs/supply-chain.md is the
//! user-facing description.

mod advisories;
mod licenses;
mod unsafe_count;

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;

const USAGE: &str = "\
usage: cargo xtask audit [--db PATH] [--allow-licenses LIST]

  --db PATH              advisory database folder (default: ../shared/advisory-db from the
                         workspace root); a plain copy of rustsec/advisory-db, no git needed
  --allow-licenses LIST  comma-separated SPDX ids that replace the default allow-list
";

/// Command-line options of the audit job.
#[derive(Debug)]
struct Options {
    db: PathBuf,
    allow: licenses::AllowList,
}

fn parse_args(args: &[String], workspace_root: &Path) -> Result<Option<Options>> {
    let mut db = None;
    let mut allow = None;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_owned())),
            _ => (arg.as_str(), None),
        };
        let mut value = |name: &str| -> Result<String> {
            match inline.clone().or_else(|| it.next().cloned()) {
                Some(v) => Ok(v),
                None => bail!("{name} needs a value\n\n{USAGE}"),
            }
        };
        match flag {
            "--db" => db = Some(PathBuf::from(value("--db")?)),
            "--allow-licenses" => {
                allow = Some(licenses::AllowList::parse(&value("--allow-licenses")?)?);
            }
            "-h" | "--help" => return Ok(None),
            other => bail!("unknown audit option `{other}`\n\n{USAGE}"),
        }
    }
    let db = db.unwrap_or_else(|| workspace_root.join("..").join("shared").join("advisory-db"));
    Ok(Some(Options { db, allow: allow.unwrap_or_default() }))
}

/// The parts of `cargo metadata --format-version 1` the audit reads.
#[derive(Debug, Deserialize)]
struct Metadata {
    packages: Vec<Package>,
    workspace_members: Vec<String>,
    workspace_root: PathBuf,
}

#[derive(Debug, Deserialize)]
struct Package {
    id: String,
    name: String,
    version: String,
    license: Option<String>,
    license_file: Option<String>,
    manifest_path: PathBuf,
    targets: Vec<Target>,
}

#[derive(Debug, Deserialize)]
struct Target {
    kind: Vec<String>,
    src_path: PathBuf,
}

fn metadata() -> Result<Metadata> {
    let mut cmd = crate::cargo();
    // Every platform's dependencies are included (no `--filter-platform`): a license or an
    // advisory matters even for a target this machine does not build.
    cmd.args(["metadata", "--format-version", "1"]).stderr(Stdio::inherit());
    let out = cmd.output().with_context(|| format!("could not start {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", out.status);
    }
    serde_json::from_slice(&out.stdout).context("could not parse `cargo metadata` output")
}

/// Renders rows as a left-aligned text table with a header rule.
fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| -> String {
        let padded: Vec<String> =
            cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        format!("  {}\n", padded.join("  ").trim_end())
    };
    let mut out = line(headers.to_vec());
    out.push_str(&line(
        widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str)
            .collect(),
    ));
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// One line of the closing summary.
struct Outcome {
    check: &'static str,
    passed: bool,
    detail: String,
}

/// Runs the audit job with the arguments after `audit`.
pub(crate) fn run(args: &[String]) -> Result<()> {
    let Some(opts) = parse_args(args, &crate::root())? else {
        print!("{USAGE}");
        return Ok(());
    };
    // `cargo metadata` first: it also brings Cargo.lock up to date with the manifests, so the
    // advisory scan below reads the lock file that a build would use.
    let meta = metadata()?;
    let outcomes =
        [check_advisories(&opts, &meta), check_licenses(&opts, &meta), check_unsafe(&meta)];

    println!("\n== summary");
    let rows: Vec<Vec<String>> = outcomes
        .iter()
        .map(|o| {
            vec![
                o.check.to_owned(),
                if o.passed { "ok" } else { "FAIL" }.to_owned(),
                o.detail.clone(),
            ]
        })
        .collect();
    print!("{}", table(&["check", "status", "detail"], &rows));
    let failed: Vec<&str> = outcomes.iter().filter(|o| !o.passed).map(|o| o.check).collect();
    if !failed.is_empty() {
        bail!("audit failed: {}", failed.join(", "));
    }
    println!("\naudit passed");
    Ok(())
}

fn check_advisories(opts: &Options, meta: &Metadata) -> Outcome {
    let lockfile = meta.workspace_root.join("Cargo.lock");
    println!("== advisories ({} against {})", lockfile.display(), opts.db.display());
    let report = match advisories::scan(&opts.db, &lockfile) {
        Ok(r) => r,
        Err(e) => {
            println!("  error: {e:#}");
            return Outcome { check: "advisories", passed: false, detail: format!("{e:#}") };
        }
    };
    let rows: Vec<Vec<String>> = report
        .vulnerabilities
        .iter()
        .chain(&report.warnings)
        .map(|f| {
            vec![
                f.id.clone(),
                f.kind.clone(),
                format!("{} {}", f.package, f.version),
                f.patched.clone(),
                f.title.clone(),
            ]
        })
        .collect();
    if rows.is_empty() {
        println!("  no advisory matches a locked package");
    } else {
        print!("{}", table(&["advisory", "kind", "package", "patched", "title"], &rows));
    }
    Outcome {
        check: "advisories",
        passed: report.vulnerabilities.is_empty(),
        detail: format!(
            "{} vulnerabilities, {} warnings ({} advisories, {} locked packages)",
            report.vulnerabilities.len(),
            report.warnings.len(),
            report.advisories_loaded,
            report.packages
        ),
    }
}

/// Why one package's license fails the allow-list, or `None` when it passes.
fn license_problem(p: &Package, allow: &licenses::AllowList) -> Option<String> {
    Some(match licenses::check(p.license.as_deref(), allow) {
        licenses::Verdict::Allowed => return None,
        licenses::Verdict::Rejected(why) => why,
        licenses::Verdict::Invalid(e) => format!(
            "`{}` is not a valid SPDX expression: {e}",
            p.license.as_deref().unwrap_or_default()
        ),
        licenses::Verdict::Missing => match &p.license_file {
            Some(file) => format!(
                "no `license` field, only license-file `{file}`: review the text by hand and \
                 ask upstream for an SPDX expression"
            ),
            None => "no `license` field in its manifest".to_owned(),
        },
    })
}

fn check_licenses(opts: &Options, meta: &Metadata) -> Outcome {
    println!("\n== licenses (allowed: {})", opts.allow.names().join(", "));
    let mut by_expr: BTreeMap<String, usize> = BTreeMap::new();
    let mut failures = Vec::new();
    for p in &meta.packages {
        let shown = p.license.clone().unwrap_or_else(|| "(none)".to_owned());
        *by_expr.entry(shown.clone()).or_default() += 1;
        if let Some(why) = license_problem(p, &opts.allow) {
            failures.push(vec![format!("{} {}", p.name, p.version), shown, why]);
        }
    }
    let mut counts: Vec<(String, usize)> = by_expr.into_iter().collect();
    counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let rows: Vec<Vec<String>> =
        counts.iter().map(|(e, n)| vec![n.to_string(), e.clone()]).collect();
    print!("{}", table(&["packages", "license expression"], &rows));
    if !failures.is_empty() {
        println!("\n  rejected:");
        print!("{}", table(&["package", "license", "reason"], &failures));
    }
    Outcome {
        check: "licenses",
        passed: failures.is_empty(),
        detail: format!("{} of {} packages rejected", failures.len(), meta.packages.len()),
    }
}

/// The files that must carry `#![forbid(unsafe_code)]`: lib and bin roots, or, for a package
/// that has neither (a bench-only package), every target root except the build script.
fn forbid_roots(p: &Package) -> Vec<PathBuf> {
    const ROOT_KINDS: &[&str] =
        &["lib", "rlib", "dylib", "cdylib", "staticlib", "proc-macro", "bin"];
    let is_root = |t: &&Target| t.kind.iter().any(|k| ROOT_KINDS.contains(&k.as_str()));
    let mut roots: Vec<PathBuf> =
        p.targets.iter().filter(is_root).map(|t| t.src_path.clone()).collect();
    if roots.is_empty() {
        roots = p
            .targets
            .iter()
            .filter(|t| !t.kind.iter().any(|k| k == "custom-build"))
            .map(|t| t.src_path.clone())
            .collect();
    }
    roots.sort();
    roots.dedup();
    roots
}

fn check_unsafe(meta: &Metadata) -> Outcome {
    println!("\n== unsafe (workspace crates)");
    let mut members: Vec<&Package> =
        meta.packages.iter().filter(|p| meta.workspace_members.contains(&p.id)).collect();
    members.sort_by(|a, b| a.name.cmp(&b.name));
    let mut rows = Vec::new();
    let mut offenders = Vec::new();
    let mut errors = Vec::new();
    for p in members {
        let Some(dir) = p.manifest_path.parent() else {
            errors.push(format!("{}: manifest path has no folder", p.name));
            continue;
        };
        let c = match unsafe_count::census(&p.name, dir, &forbid_roots(p)) {
            Ok(c) => c,
            Err(e) => {
                println!("  error in {}: {e:#}", p.name);
                errors.push(format!("{}: {e:#}", p.name));
                continue;
            }
        };
        let forbid = if c.roots_without_forbid.is_empty() {
            "yes".to_owned()
        } else {
            format!("missing in {}", c.roots_without_forbid.join(", "))
        };
        let verdict = if c.violates_forbid_rule() {
            offenders.push(c.name.clone());
            "FAIL: no unsafe, add #![forbid(unsafe_code)]"
        } else if c.count.total() > 0 {
            "ok (uses unsafe)"
        } else {
            "ok"
        };
        let n = c.count;
        rows.push(vec![
            c.name.clone(),
            c.files.to_string(),
            n.blocks.to_string(),
            n.fns.to_string(),
            n.impls.to_string(),
            n.other.to_string(),
            n.in_macros.to_string(),
            n.total().to_string(),
            forbid,
            verdict.to_owned(),
        ]);
    }
    print!(
        "{}",
        table(
            &[
                "crate", "files", "blocks", "fns", "impls", "other", "macros", "total", "forbid",
                "verdict"
            ],
            &rows
        )
    );
    let passed = offenders.is_empty() && errors.is_empty();
    let mut detail = format!("{} crates", rows.len());
    if !offenders.is_empty() {
        detail.push_str(&format!(
            "; no unsafe but no #![forbid(unsafe_code)]: {}",
            offenders.join(", ")
        ));
    }
    if !errors.is_empty() {
        detail.push_str(&format!("; could not read: {}", errors.join("; ")));
    }
    Outcome { check: "unsafe", passed, detail }
}

#[cfg(test)]
pub(crate) mod test_support {
    //! A temporary folder for the audit's tests, removed when dropped.

    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicUsize, Ordering};

    static NEXT: AtomicUsize = AtomicUsize::new(0);

    /// A fresh folder under the system temp dir, unique per process and per call.
    pub(crate) struct TempDir(PathBuf);

    impl TempDir {
        pub(crate) fn new(tag: &str) -> Self {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let path = std::env::temp_dir()
                .join(format!("strata-xtask-audit-{}-{n}-{tag}", std::process::id()));
            // A leftover from a crashed run with the same pid is stale by definition.
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(&path).expect("create temp dir");
            Self(path)
        }

        pub(crate) fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            // Cleanup failure must not mask the test's own result.
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn options() {
        let root = Path::new("/ws/main");
        let o = parse_args(&[], root).expect("no args").expect("not help");
        assert_eq!(o.db, Path::new("/ws/main/../shared/advisory-db"));
        assert_eq!(o.allow.names(), licenses::DEFAULT_ALLOWED);

        let o = parse_args(&args(&["--db", "/x/db", "--allow-licenses", "MIT,ISC"]), root)
            .expect("valid")
            .expect("not help");
        assert_eq!(o.db, Path::new("/x/db"));
        assert_eq!(o.allow.names(), vec!["MIT", "ISC"]);

        let o = parse_args(&args(&["--db=/y", "--allow-licenses=Apache-2.0"]), root)
            .expect("valid")
            .expect("not help");
        assert_eq!(o.db, Path::new("/y"));
        assert_eq!(o.allow.names(), vec!["Apache-2.0"]);

        assert!(parse_args(&args(&["--help"]), root).expect("help").is_none());
        for bad in [&["--db"][..], &["--frobnicate"], &["--allow-licenses", "Nope-1.0"]] {
            assert!(parse_args(&args(bad), root).is_err(), "{bad:?}");
        }
    }

    fn package(license: Option<&str>, license_file: Option<&str>, targets: Vec<Target>) -> Package {
        Package {
            id: "x".into(),
            name: "x".into(),
            version: "0.1.0".into(),
            license: license.map(str::to_owned),
            license_file: license_file.map(str::to_owned),
            manifest_path: "/p/Cargo.toml".into(),
            targets,
        }
    }

    #[test]
    fn license_problems_are_explained() {
        let allow = licenses::AllowList::default();
        assert_eq!(
            license_problem(&package(Some("MIT OR Apache-2.0"), None, vec![]), &allow),
            None
        );
        // (license, license-file, a phrase the message must contain)
        let cases: &[(Option<&str>, Option<&str>, &str)] = &[
            (None, None, "no `license` field in its manifest"),
            (None, Some("LICENSE.txt"), "only license-file `LICENSE.txt`"),
            (Some("GPL-3.0-only"), None, "not allowed: GPL-3.0-only"),
            (Some("MIT OR OR"), None, "is not a valid SPDX expression"),
        ];
        for (license, file, phrase) in cases {
            let why = license_problem(&package(*license, *file, vec![]), &allow)
                .unwrap_or_else(|| panic!("{license:?} must fail"));
            assert!(why.contains(phrase), "{license:?}: {why}");
        }
    }

    #[test]
    fn roots_for_the_forbid_rule() {
        let t =
            |kind: &str, path: &str| Target { kind: vec![kind.to_owned()], src_path: path.into() };
        let pkg = |targets| package(None, None, targets);
        let p = pkg(vec![
            t("lib", "/p/src/lib.rs"),
            t("bin", "/p/src/main.rs"),
            t("test", "/p/tests/it/main.rs"),
            t("custom-build", "/p/build.rs"),
        ]);
        assert_eq!(
            forbid_roots(&p),
            vec![PathBuf::from("/p/src/lib.rs"), PathBuf::from("/p/src/main.rs")]
        );
        let p = pkg(vec![t("bench", "/p/benches/b.rs"), t("custom-build", "/p/build.rs")]);
        assert_eq!(forbid_roots(&p), vec![PathBuf::from("/p/benches/b.rs")]);
    }

    #[test]
    fn table_aligns_columns() {
        let out = table(&["a", "long header"], &[vec!["wide cell".into(), "x".into()]]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0], "  a          long header");
        assert_eq!(lines[1], "  ---------  -----------");
        assert_eq!(lines[2], "  wide cell  x");
    }
}
