//! Every package's `license` field against an allow-list of SPDX identifiers.
//!
//! A license field is an SPDX expression. A package passes when the expression can be
//! satisfied by licenses on the list: `A OR B` needs one side, `A AND B` needs both. A
//! `X WITH exception` term passes when `X` is allowed, because an SPDX exception only grants
//! extra permissions on top of `X`; it never takes any away. `X+` passes when `X` is allowed,
//! since the "or later" choice includes `X` itself. `LicenseRef-*` terms are not SPDX licenses
//! and never pass: such a package has to be reviewed by hand.
//!
//! Expressions are parsed in the lax mode crates.io tolerates (`MIT/Apache-2.0`, deprecated
//! ids), because old crates still carry those and the intent is unambiguous.

use anyhow::{bail, Result};
use spdx::{Expression, LicenseId, ParseMode};

/// The allow-list used when `--allow-licenses` is not given; docs/supply-chain.md says why
/// each entry is here.
pub(crate) const DEFAULT_ALLOWED: &[&str] = &[
    "MIT",
    "Apache-2.0",
    "BSD-2-Clause",
    "BSD-3-Clause",
    "ISC",
    "0BSD",
    "Zlib",
    "BSL-1.0",
    "CC0-1.0",
    "Unicode-DFS-2016",
    "Unicode-3.0",
    "MPL-2.0",
    "CDLA-Permissive-2.0",
];

/// An allow-list of SPDX license identifiers.
#[derive(Debug, Clone)]
pub(crate) struct AllowList {
    ids: Vec<LicenseId>,
}

impl AllowList {
    /// Builds the list from SPDX identifiers; an unknown identifier is an error, not a silent
    /// no-op, so a typo cannot weaken or break the policy unnoticed.
    pub(crate) fn new<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Self> {
        let mut ids = Vec::new();
        for name in names {
            let name = name.trim();
            if name.is_empty() {
                continue;
            }
            let Some(id) = spdx::license_id(name) else {
                bail!(
                    "`{name}` is not an SPDX license identifier (see https://spdx.org/licenses/)"
                );
            };
            ids.push(id);
        }
        if ids.is_empty() {
            bail!("the license allow-list is empty");
        }
        Ok(Self { ids })
    }

    /// Parses a comma-separated list, the form `--allow-licenses` takes.
    pub(crate) fn parse(list: &str) -> Result<Self> {
        Self::new(list.split(','))
    }

    /// The identifiers on the list, in the order given.
    pub(crate) fn names(&self) -> Vec<&'static str> {
        self.ids.iter().map(|id| id.name).collect()
    }

    fn allows(&self, req: &spdx::LicenseReq) -> bool {
        // Exceptions (`WITH`) and `+` are deliberately ignored: see the module doc.
        req.license.id().is_some_and(|id| self.ids.contains(&id))
    }
}

impl Default for AllowList {
    fn default() -> Self {
        Self::new(DEFAULT_ALLOWED.iter().copied())
            .unwrap_or_else(|e| unreachable!("the default allow-list is valid SPDX: {e}"))
    }
}

/// The verdict on one package's license field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The expression is satisfiable with allowed licenses.
    Allowed,
    /// The expression cannot be satisfied; the string names the terms that blocked it.
    Rejected(String),
    /// The expression does not parse as SPDX.
    Invalid(String),
    /// The package has no `license` field.
    Missing,
}

/// Judges one `license` field (`None` when the manifest has none).
pub(crate) fn check(license: Option<&str>, allow: &AllowList) -> Verdict {
    let Some(text) = license.map(str::trim).filter(|t| !t.is_empty()) else {
        return Verdict::Missing;
    };
    let expr = match Expression::parse_mode(text, ParseMode::LAX) {
        Ok(expr) => expr,
        Err(e) => return Verdict::Invalid(e.to_string()),
    };
    match expr.evaluate_with_failures(|req| allow.allows(req)) {
        Ok(()) => Verdict::Allowed,
        Err(failures) => {
            let mut terms: Vec<String> = failures.iter().map(|f| f.req.to_string()).collect();
            terms.sort();
            terms.dedup();
            Verdict::Rejected(format!("not allowed: {}", terms.join(", ")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expressions_against_the_default_list() {
        let allow = AllowList::default();
        // (license field, passes?)
        let cases: &[(Option<&str>, bool)] = &[
            (Some("MIT"), true),
            (Some("MIT OR Apache-2.0"), true),
            (Some("Apache-2.0 OR MIT"), true),
            (Some("MIT/Apache-2.0"), true),
            (Some("MIT OR GPL-3.0-only"), true),
            (Some("GPL-3.0-only OR MIT"), true),
            (Some("GPL-3.0-only"), false),
            (Some("AGPL-3.0-or-later"), false),
            (Some("MIT AND GPL-3.0-only"), false),
            (Some("MIT AND BSD-3-Clause"), true),
            (Some("(MIT OR Apache-2.0) AND Unicode-3.0"), true),
            (Some("(MIT OR Apache-2.0) AND Unicode-DFS-2016"), true),
            (Some("(MIT OR Apache-2.0) AND OpenSSL"), false),
            (Some("(GPL-2.0-only OR SSPL-1.0) AND MIT"), false),
            (Some("Apache-2.0 WITH LLVM-exception"), true),
            (Some("Apache-2.0 WITH LLVM-exception OR Apache-2.0 OR MIT"), true),
            (Some("GPL-2.0-only WITH Classpath-exception-2.0"), false),
            (Some("MPL-2.0+"), true),
            (Some("Zlib OR Apache-2.0 OR MIT"), true),
            (Some("CC0-1.0"), true),
            (Some("BSL-1.0"), true),
            (Some("ISC AND MIT AND OpenSSL"), false),
            (Some("LicenseRef-ring"), false),
            (Some("MIT OR LicenseRef-custom"), true),
            (Some("  MIT  "), true),
        ];
        for (license, passes) in cases {
            let verdict = check(*license, &allow);
            assert_eq!(verdict == Verdict::Allowed, *passes, "{license:?} gave {verdict:?}");
            if !passes {
                assert!(matches!(verdict, Verdict::Rejected(_)), "{license:?} gave {verdict:?}");
            }
        }
    }

    #[test]
    fn missing_and_malformed_fields() {
        let allow = AllowList::default();
        assert_eq!(check(None, &allow), Verdict::Missing);
        assert_eq!(check(Some(""), &allow), Verdict::Missing);
        assert_eq!(check(Some("   "), &allow), Verdict::Missing);
        for bad in ["MIT OR", "AND MIT", "(MIT", "MIT OR OR Apache-2.0", "Made-Up-License-9"] {
            assert!(matches!(check(Some(bad), &allow), Verdict::Invalid(_)), "{bad}");
        }
    }

    #[test]
    fn rejection_names_the_blocking_terms() {
        let allow = AllowList::default();
        let Verdict::Rejected(why) = check(Some("MIT AND GPL-3.0-only AND SSPL-1.0"), &allow)
        else {
            panic!("expected a rejection");
        };
        assert!(why.contains("GPL-3.0-only"), "{why}");
        assert!(why.contains("SSPL-1.0"), "{why}");
        assert!(!why.contains("MIT"), "{why}");
    }

    #[test]
    fn custom_lists() {
        let only_mit = AllowList::parse("MIT").expect("valid list");
        assert_eq!(check(Some("MIT OR Apache-2.0"), &only_mit), Verdict::Allowed);
        assert!(matches!(check(Some("Apache-2.0"), &only_mit), Verdict::Rejected(_)));

        let gpl = AllowList::parse(" GPL-3.0-only , MIT ").expect("valid list with spaces");
        assert_eq!(gpl.names(), vec!["GPL-3.0-only", "MIT"]);
        assert_eq!(check(Some("GPL-3.0-only"), &gpl), Verdict::Allowed);

        assert!(AllowList::parse("MIT,Not-A-License").is_err());
        assert!(AllowList::parse("").is_err());
        assert!(AllowList::parse(" , ").is_err());
    }

    #[test]
    fn default_list_matches_its_names() {
        assert_eq!(AllowList::default().names(), DEFAULT_ALLOWED);
    }
}
