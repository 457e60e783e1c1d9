//! Cargo.lock against a local copy of the RustSec advisory database.
//!
//! The database is read from a plain directory with `rustsec` built without its `git`
//! feature, so the check never touches the network: a stale copy gives a stale answer, never
//! a hang. Withdrawn advisories are dropped by the query itself; informational advisories
//! (unmaintained, unsound, notice) come back as warnings and do not fail the job.

use anyhow::{Context, Result};
use rustsec::advisory::Informational;
use rustsec::report::{Report, Settings};
use rustsec::{Database, Lockfile};
use std::path::Path;

/// One advisory that matched one locked package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Finding {
    /// The advisory id, e.g. `RUSTSEC-2020-0105`.
    pub(crate) id: String,
    /// `vulnerability`, or the informational kind (`unmaintained`, `unsound`, `notice`).
    pub(crate) kind: String,
    /// The affected package name.
    pub(crate) package: String,
    /// The locked version that the advisory matched.
    pub(crate) version: String,
    /// The advisory's one-line title.
    pub(crate) title: String,
    /// The patched version requirements, joined, or `none` when there is no fix.
    pub(crate) patched: String,
}

/// What the advisory scan found.
#[derive(Debug, Default)]
pub(crate) struct AdvisoryReport {
    /// Advisories loaded from the database (withdrawn ones included).
    pub(crate) advisories_loaded: usize,
    /// Packages in the lock file.
    pub(crate) packages: usize,
    /// Vulnerabilities: these fail the job.
    pub(crate) vulnerabilities: Vec<Finding>,
    /// Informational advisories: printed as warnings only.
    pub(crate) warnings: Vec<Finding>,
}

/// Scans the lock file at `lockfile` against the database directory `db`.
pub(crate) fn scan(db: &Path, lockfile: &Path) -> Result<AdvisoryReport> {
    // `Database::open` on a missing directory reports a bare I/O error; a check first gives the
    // user the path and the way out.
    if !db.join("crates").is_dir() {
        anyhow::bail!(
            "no advisory database at {} (expected a `crates/` folder there); \
             pass `--db PATH` to name another copy of rustsec/advisory-db",
            db.display()
        );
    }
    let database = Database::open(db)
        .with_context(|| format!("could not load the advisory database at {}", db.display()))?;
    let lock = Lockfile::load(lockfile)
        .with_context(|| format!("could not read the lock file {}", lockfile.display()))?;

    let settings = Settings {
        informational_warnings: vec![
            Informational::Unmaintained,
            Informational::Unsound,
            Informational::Notice,
        ],
        ..Settings::default()
    };
    let report = Report::generate(&database, &lock, &settings);

    let mut vulnerabilities: Vec<Finding> = report
        .vulnerabilities
        .list
        .iter()
        .map(|v| Finding {
            id: v.advisory.id.to_string(),
            kind: "vulnerability".to_owned(),
            package: v.package.name.to_string(),
            version: v.package.version.to_string(),
            title: v.advisory.title.clone(),
            patched: joined(v.versions.patched()),
        })
        .collect();
    let mut warnings: Vec<Finding> = report
        .warnings
        .iter()
        .flat_map(|(kind, list)| list.iter().map(move |w| (kind, w)))
        .map(|(kind, w)| Finding {
            id: w.advisory.as_ref().map_or_else(|| "-".to_owned(), |a| a.id.to_string()),
            kind: kind.to_string(),
            package: w.package.name.to_string(),
            version: w.package.version.to_string(),
            title: w.advisory.as_ref().map_or_else(String::new, |a| a.title.clone()),
            patched: w.versions.as_ref().map_or_else(|| "none".to_owned(), |v| joined(v.patched())),
        })
        .collect();
    vulnerabilities.sort_by(|a, b| (&a.package, &a.id).cmp(&(&b.package, &b.id)));
    warnings.sort_by(|a, b| (&a.package, &a.id).cmp(&(&b.package, &b.id)));

    Ok(AdvisoryReport {
        advisories_loaded: database.iter().count(),
        packages: lock.packages.len(),
        vulnerabilities,
        warnings,
    })
}

fn joined(reqs: &[rustsec::VersionReq]) -> String {
    if reqs.is_empty() {
        return "none".to_owned();
    }
    reqs.iter().map(ToString::to_string).collect::<Vec<_>>().join(" or ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::test_support::TempDir;

    /// Writes one advisory in the database's Markdown-with-TOML-front-matter format.
    fn advisory(db: &Path, id: &str, package: &str, extra: &str, patched: &str) {
        let dir = db.join("crates").join(package);
        std::fs::create_dir_all(&dir).expect("create advisory dir");
        let text = format!(
            "```toml\n[advisory]\nid = \"{id}\"\npackage = \"{package}\"\ndate = \"2099-01-01\"\n\
             url = \"https://example.invalid/{id}\"\n{extra}\n\n[versions]\npatched = [{patched}]\n```\n\n\
             # Synthetic advisory {id}\n\nWritten by the xtask audit tests.\n"
        );
        std::fs::write(dir.join(format!("{id}.md")), text).expect("write advisory");
    }

    /// Writes a lock file holding the given `(name, version)` packages from crates.io.
    fn lockfile(dir: &Path, packages: &[(&str, &str)]) -> std::path::PathBuf {
        let mut text = String::from("version = 3\n");
        for (name, version) in packages {
            text.push_str(&format!(
                "\n[[package]]\nname = \"{name}\"\nversion = \"{version}\"\n\
                 source = \"registry+https://github.com/rust-lang/crates.io-index\"\n"
            ));
        }
        let path = dir.join("Cargo.lock");
        std::fs::write(&path, text).expect("write lock file");
        path
    }

    fn synthetic_db(root: &Path) -> std::path::PathBuf {
        let db = root.join("advisory-db");
        advisory(&db, "RUSTSEC-2099-0001", "fakecrate", "", "\">= 1.2.0\"");
        advisory(
            &db,
            "RUSTSEC-2099-0002",
            "gonecrate",
            "withdrawn = \"2099-02-01\"",
            "\">= 9.0.0\"",
        );
        advisory(&db, "RUSTSEC-2099-0003", "oldcrate", "informational = \"unmaintained\"", "");
        db
    }

    /// Locked `(name, version)` packages, expected vulnerability ids, expected warning ids.
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str], &'a [&'a str]);

    #[test]
    fn vulnerable_patched_withdrawn_and_informational() {
        let tmp = TempDir::new("advisories");
        let db = synthetic_db(tmp.path());

        let cases: &[Case<'_>] = &[
            (&[("fakecrate", "1.1.0")], &["RUSTSEC-2099-0001"], &[]),
            (&[("fakecrate", "1.2.0")], &[], &[]),
            (&[("fakecrate", "2.0.3")], &[], &[]),
            (&[("gonecrate", "1.0.0")], &[], &[]),
            (&[("oldcrate", "0.1.0")], &[], &["RUSTSEC-2099-0003"]),
            (&[("unrelated", "1.0.0")], &[], &[]),
            (
                &[("fakecrate", "0.9.0"), ("gonecrate", "1.0.0"), ("oldcrate", "0.1.0")],
                &["RUSTSEC-2099-0001"],
                &["RUSTSEC-2099-0003"],
            ),
        ];
        for (i, (packages, vulns, warns)) in cases.iter().enumerate() {
            let case_dir = tmp.path().join(format!("case{i}"));
            std::fs::create_dir_all(&case_dir).expect("case dir");
            let lock = lockfile(&case_dir, packages);
            let report = scan(&db, &lock).expect("scan succeeds");
            let got_v: Vec<&str> = report.vulnerabilities.iter().map(|f| f.id.as_str()).collect();
            let got_w: Vec<&str> = report.warnings.iter().map(|f| f.id.as_str()).collect();
            assert_eq!(&got_v, vulns, "case {i}: vulnerabilities for {packages:?}");
            assert_eq!(&got_w, warns, "case {i}: warnings for {packages:?}");
            assert_eq!(report.advisories_loaded, 3, "withdrawn advisories still load");
            assert_eq!(report.packages, packages.len());
        }
    }

    #[test]
    fn finding_carries_version_and_fix() {
        let tmp = TempDir::new("finding");
        let db = synthetic_db(tmp.path());
        let lock = lockfile(tmp.path(), &[("fakecrate", "1.1.0"), ("oldcrate", "0.1.0")]);
        let report = scan(&db, &lock).expect("scan succeeds");
        let vuln = &report.vulnerabilities[0];
        assert_eq!(vuln.package, "fakecrate");
        assert_eq!(vuln.version, "1.1.0");
        assert_eq!(vuln.kind, "vulnerability");
        assert_eq!(vuln.patched, ">=1.2.0");
        assert_eq!(vuln.title, "Synthetic advisory RUSTSEC-2099-0001");
        let warn = &report.warnings[0];
        assert_eq!(warn.kind, "unmaintained");
        assert_eq!(warn.patched, "none");
    }

    #[test]
    fn missing_database_names_the_option() {
        let tmp = TempDir::new("missing");
        let lock = lockfile(tmp.path(), &[]);
        let err = scan(&tmp.path().join("nowhere"), &lock).expect_err("no database there");
        let msg = format!("{err:#}");
        assert!(msg.contains("--db"), "{msg}");
        assert!(msg.contains("nowhere"), "{msg}");
    }
}
