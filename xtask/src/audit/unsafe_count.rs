//! Counting `unsafe` per workspace crate, and the `#![forbid(unsafe_code)]` rule.
//!
//! Sources are parsed with `syn`, so comments, doc comments and string literals never count,
//! and an `unsafe fn()` pointer *type* is not mistaken for an unsafe function. Macro bodies
//! (`macro_rules!` and invocations) are opaque to a parser, so inside them every `unsafe`
//! token is counted in a separate column; the lexer still drops comments and strings there.
//! Code behind any `cfg` is counted: the audit is about what the source can contain, not
//! about one build.

use anyhow::{bail, Context, Result};
use proc_macro2::{TokenStream, TokenTree};
use std::path::{Path, PathBuf};
use syn::visit::{self, Visit};

/// How many `unsafe` constructs a piece of source holds, by kind.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UnsafeCount {
    /// `unsafe { ... }` blocks.
    pub(crate) blocks: usize,
    /// `unsafe fn` items, methods and trait method declarations.
    pub(crate) fns: usize,
    /// `unsafe impl` blocks.
    pub(crate) impls: usize,
    /// `unsafe trait`, `unsafe extern` blocks and `#[unsafe(...)]` attributes.
    pub(crate) other: usize,
    /// `unsafe` tokens inside macro definitions and invocations.
    pub(crate) in_macros: usize,
}

impl UnsafeCount {
    /// The sum over every kind.
    pub(crate) fn total(&self) -> usize {
        self.blocks + self.fns + self.impls + self.other + self.in_macros
    }

    fn add(&mut self, o: &Self) {
        self.blocks += o.blocks;
        self.fns += o.fns;
        self.impls += o.impls;
        self.other += o.other;
        self.in_macros += o.in_macros;
    }
}

struct Counter(UnsafeCount);

impl<'ast> Visit<'ast> for Counter {
    fn visit_expr_unsafe(&mut self, i: &'ast syn::ExprUnsafe) {
        self.0.blocks += 1;
        visit::visit_expr_unsafe(self, i);
    }

    // `Signature` is shared by free functions, inherent and trait methods and foreign
    // functions, while function pointer types use `TypeBareFn`, so this counts exactly the
    // unsafe functions that are declared.
    fn visit_signature(&mut self, i: &'ast syn::Signature) {
        if i.unsafety.is_some() {
            self.0.fns += 1;
        }
        visit::visit_signature(self, i);
    }

    fn visit_item_impl(&mut self, i: &'ast syn::ItemImpl) {
        if i.unsafety.is_some() {
            self.0.impls += 1;
        }
        visit::visit_item_impl(self, i);
    }

    fn visit_item_trait(&mut self, i: &'ast syn::ItemTrait) {
        if i.unsafety.is_some() {
            self.0.other += 1;
        }
        visit::visit_item_trait(self, i);
    }

    fn visit_item_foreign_mod(&mut self, i: &'ast syn::ItemForeignMod) {
        if i.unsafety.is_some() {
            self.0.other += 1;
        }
        visit::visit_item_foreign_mod(self, i);
    }

    fn visit_attribute(&mut self, i: &'ast syn::Attribute) {
        // Edition 2024 spells `#[no_mangle]` and friends as `#[unsafe(no_mangle)]`.
        if i.path().is_ident("unsafe") {
            self.0.other += 1;
        }
        visit::visit_attribute(self, i);
    }

    fn visit_macro(&mut self, i: &'ast syn::Macro) {
        self.0.in_macros += unsafe_tokens(i.tokens.clone());
        visit::visit_macro(self, i);
    }
}

/// Counts `unsafe` identifiers in a token stream, descending into every group.
fn unsafe_tokens(tokens: TokenStream) -> usize {
    // An explicit stack rather than recursion: deeply nested input cannot overflow the
    // stack, and the walk ends because every token is visited once.
    let mut stack = vec![tokens];
    let mut n = 0;
    while let Some(stream) = stack.pop() {
        for tt in stream {
            match tt {
                TokenTree::Ident(ident) if ident == "unsafe" => n += 1,
                TokenTree::Group(g) => stack.push(g.stream()),
                _ => {}
            }
        }
    }
    n
}

/// Counts `unsafe` in one file's source text.
///
/// Text `syn` cannot parse (a UI-test fixture, syntax newer than `syn`) is still lexed, and
/// every `unsafe` token in it lands in the macro column; text that does not even lex is an
/// error, because silently counting zero would let unsafe code through.
pub(crate) fn count_source(src: &str) -> Result<UnsafeCount> {
    match syn::parse_file(src) {
        Ok(file) => {
            let mut counter = Counter(UnsafeCount::default());
            counter.visit_file(&file);
            Ok(counter.0)
        }
        Err(_) => {
            let tokens: TokenStream =
                src.parse().map_err(|e| anyhow::anyhow!("not valid Rust tokens: {e}"))?;
            Ok(UnsafeCount { in_macros: unsafe_tokens(tokens), ..UnsafeCount::default() })
        }
    }
}

/// Whether a crate root carries an unconditional `#![forbid(unsafe_code)]`.
///
/// A `cfg_attr` or a `deny` does not count: `deny` can be overridden by an inner `allow`,
/// which is exactly what `forbid` exists to prevent.
pub(crate) fn has_forbid_unsafe(src: &str) -> Result<bool> {
    let file = syn::parse_file(src).map_err(|e| anyhow::anyhow!("does not parse: {e}"))?;
    for attr in &file.attrs {
        if !matches!(attr.style, syn::AttrStyle::Inner(_)) || !attr.path().is_ident("forbid") {
            continue;
        }
        let mut found = false;
        // `forbid(...)` takes lint paths; one that does not parse is not `unsafe_code`.
        let parsed = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("unsafe_code") {
                found = true;
            }
            Ok(())
        });
        if parsed.is_ok() && found {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Upper bounds on the source walk, so a stray symlink farm or a checked-in `target/` of a
/// nested project cannot make the audit run away.
const MAX_FILES: usize = 20_000;
const MAX_DEPTH: usize = 32;

/// Every `.rs` file under a package directory, skipping `target/`, hidden folders and nested
/// packages (a folder with its own `Cargo.toml` belongs to another crate).
pub(crate) fn rust_files(package_dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut stack = vec![(package_dir.to_path_buf(), 0usize)];
    while let Some((dir, depth)) = stack.pop() {
        let entries =
            std::fs::read_dir(&dir).with_context(|| format!("could not list {}", dir.display()))?;
        for entry in entries {
            let entry = entry.with_context(|| format!("could not list {}", dir.display()))?;
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            // `file_type` does not follow symlinks, so a link loop is never entered.
            let kind =
                entry.file_type().with_context(|| format!("could not stat {}", path.display()))?;
            if kind.is_dir() {
                if name.starts_with('.') || name == "target" || path.join("Cargo.toml").is_file() {
                    continue;
                }
                if depth + 1 > MAX_DEPTH {
                    bail!("{} is nested deeper than {MAX_DEPTH} folders", path.display());
                }
                stack.push((path, depth + 1));
            } else if kind.is_file() && name.ends_with(".rs") {
                files.push(path);
                if files.len() > MAX_FILES {
                    bail!("more than {MAX_FILES} .rs files under {}", package_dir.display());
                }
            }
        }
    }
    files.sort();
    Ok(files)
}

/// The unsafe census of one workspace crate.
#[derive(Debug, Clone)]
pub(crate) struct CrateUnsafe {
    /// The package name.
    pub(crate) name: String,
    /// How many `.rs` files were read.
    pub(crate) files: usize,
    /// Totals over those files.
    pub(crate) count: UnsafeCount,
    /// Crate roots that lack `#![forbid(unsafe_code)]`, as paths relative to the package.
    pub(crate) roots_without_forbid: Vec<String>,
}

impl CrateUnsafe {
    /// The forbid rule: a crate with no unsafe at all must say so in every crate root.
    pub(crate) fn violates_forbid_rule(&self) -> bool {
        self.count.total() == 0 && !self.roots_without_forbid.is_empty()
    }
}

/// Counts one package: every `.rs` under `package_dir`, and the forbid attribute in each of
/// `roots` (the lib/bin target files).
pub(crate) fn census(name: &str, package_dir: &Path, roots: &[PathBuf]) -> Result<CrateUnsafe> {
    let files = rust_files(package_dir)?;
    let mut count = UnsafeCount::default();
    for file in &files {
        let src = std::fs::read_to_string(file)
            .with_context(|| format!("could not read {}", file.display()))?;
        let c = count_source(&src).with_context(|| format!("in {}", file.display()))?;
        count.add(&c);
    }
    let mut roots_without_forbid = Vec::new();
    for root in roots {
        let src = std::fs::read_to_string(root)
            .with_context(|| format!("could not read crate root {}", root.display()))?;
        let forbids = has_forbid_unsafe(&src).with_context(|| format!("in {}", root.display()))?;
        if !forbids {
            let shown = root.strip_prefix(package_dir).unwrap_or(root);
            roots_without_forbid.push(shown.display().to_string());
        }
    }
    Ok(CrateUnsafe { name: name.to_owned(), files: files.len(), count, roots_without_forbid })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::test_support::TempDir;

    fn count(src: &str) -> UnsafeCount {
        count_source(src).expect("source lexes")
    }

    #[test]
    fn counts_each_kind() {
        // (source, blocks, fns, impls, other, in_macros)
        let cases: &[(&str, usize, usize, usize, usize, usize)] = &[
            ("fn f() {}", 0, 0, 0, 0, 0),
            ("fn f() { unsafe { g() } }", 1, 0, 0, 0, 0),
            ("fn f() { unsafe { unsafe { g() } } }", 2, 0, 0, 0, 0),
            ("unsafe fn f() {}", 0, 1, 0, 0, 0),
            ("unsafe fn f() { unsafe { g() } }", 1, 1, 0, 0, 0),
            ("struct S; impl S { unsafe fn m(&self) {} fn n(&self) {} }", 0, 1, 0, 0, 0),
            ("trait T { unsafe fn m(&self); }", 0, 1, 0, 0, 0),
            ("struct S; unsafe impl Send for S {}", 0, 0, 1, 0, 0),
            ("unsafe trait T {}", 0, 0, 0, 1, 0),
            ("unsafe extern \"C\" { fn abs(x: i32) -> i32; }", 0, 0, 0, 1, 0),
            ("extern \"C\" { fn abs(x: i32) -> i32; }", 0, 0, 0, 0, 0),
            ("#[unsafe(no_mangle)] pub extern \"C\" fn f() {}", 0, 0, 0, 1, 0),
            // A function pointer type is not an unsafe function.
            ("type F = unsafe fn(); fn take(_: unsafe extern \"C\" fn()) {}", 0, 0, 0, 0, 0),
            // Comments, doc comments and strings never count.
            ("// unsafe { x }\nfn f() {}", 0, 0, 0, 0, 0),
            ("/* unsafe fn g() {} */ fn f() {}", 0, 0, 0, 0, 0),
            ("/// Never `unsafe { }` here.\nfn f() {}", 0, 0, 0, 0, 0),
            ("fn f() -> &'static str { \"unsafe { boom }\" }", 0, 0, 0, 0, 0),
            ("fn f() -> &'static str { r#\"unsafe\"# }", 0, 0, 0, 0, 0),
            ("const C: char = 'u'; fn unsafe_name() {}", 0, 0, 0, 0, 0),
            // Macro bodies are counted as tokens.
            ("macro_rules! m { () => { unsafe { g() } }; }", 0, 0, 0, 0, 1),
            ("fn f() { let _v = vec![unsafe { g() }, unsafe { h() }]; }", 0, 0, 0, 0, 2),
            ("fn f() { println!(\"unsafe\"); }", 0, 0, 0, 0, 0),
            // Nested modules and closures are walked.
            ("mod a { mod b { fn f() { let c = || unsafe { g() }; } } }", 1, 0, 0, 0, 0),
        ];
        for (src, blocks, fns, impls, other, in_macros) in cases {
            let want = UnsafeCount {
                blocks: *blocks,
                fns: *fns,
                impls: *impls,
                other: *other,
                in_macros: *in_macros,
            };
            assert_eq!(count(src), want, "{src}");
        }
    }

    #[test]
    fn unparsable_source_falls_back_to_tokens_or_errors() {
        // Tokens fine, grammar wrong: the lexer still finds the unsafe.
        let c = count("fn fn fn unsafe { unsafe }");
        assert_eq!(c, UnsafeCount { in_macros: 2, ..UnsafeCount::default() });
        // Unbalanced delimiters and unterminated strings do not even lex.
        assert!(count_source("fn ( unsafe { } } {").is_err());
        assert!(count_source("fn f() { \"unsafe").is_err());
    }

    #[test]
    fn forbid_detection() {
        // (crate root source, has forbid)
        let cases: &[(&str, bool)] = &[
            ("#![forbid(unsafe_code)]\nfn f() {}", true),
            ("//! Docs.\n#![forbid(unsafe_code)]\n#![warn(missing_docs)]", true),
            ("#![forbid(missing_docs, unsafe_code)]", true),
            ("#![deny(unsafe_code)]", false),
            ("#![forbid(missing_docs)]", false),
            ("#![cfg_attr(not(test), forbid(unsafe_code))]", false),
            ("// #![forbid(unsafe_code)]\nfn f() {}", false),
            ("fn f() {}", false),
            ("#[forbid(unsafe_code)]\nfn f() {}", false),
        ];
        for (src, want) in cases {
            assert_eq!(has_forbid_unsafe(src).expect("parses"), *want, "{src}");
        }
        assert!(has_forbid_unsafe("fn (").is_err());
    }

    #[test]
    fn census_of_a_small_package() {
        let tmp = TempDir::new("census");
        let pkg = tmp.path().join("pkg");
        let write = |rel: &str, text: &str| {
            let p = pkg.join(rel);
            std::fs::create_dir_all(p.parent().expect("has parent")).expect("mkdir");
            std::fs::write(p, text).expect("write");
        };
        write("Cargo.toml", "[package]\nname = \"pkg\"\n");
        write("src/lib.rs", "//! Safe.\nmod inner;\n");
        write("src/inner.rs", "pub fn f() {}\n");
        write("tests/it/main.rs", "#[test] fn t() {}\n");
        // None of these may be counted: build output, hidden folders, nested packages, non-Rust.
        write("target/debug/gen.rs", "unsafe fn x() {}");
        write(".hidden/x.rs", "unsafe fn x() {}");
        write("fuzz/Cargo.toml", "[package]\nname = \"fuzz\"\n");
        write("fuzz/src/main.rs", "unsafe fn x() {}");
        write("src/notes.txt", "unsafe fn x() {}");

        let lib = pkg.join("src/lib.rs");
        let safe = census("pkg", &pkg, std::slice::from_ref(&lib)).expect("census");
        assert_eq!(safe.files, 3);
        assert_eq!(safe.count.total(), 0);
        assert_eq!(safe.roots_without_forbid, vec!["src/lib.rs".to_owned()]);
        assert!(safe.violates_forbid_rule());

        write("src/lib.rs", "//! Safe.\n#![forbid(unsafe_code)]\nmod inner;\n");
        let fixed = census("pkg", &pkg, std::slice::from_ref(&lib)).expect("census");
        assert!(fixed.roots_without_forbid.is_empty());
        assert!(!fixed.violates_forbid_rule());

        // A crate that needs unsafe is exempt from the rule, and its unsafe is counted.
        write("src/lib.rs", "//! Not safe.\nmod inner;\n");
        write("src/inner.rs", "pub fn f() { unsafe { g() } }\nunsafe impl Send for X {}\n");
        let unsafe_pkg = census("pkg", &pkg, std::slice::from_ref(&lib)).expect("census");
        assert_eq!(unsafe_pkg.count.blocks, 1);
        assert_eq!(unsafe_pkg.count.impls, 1);
        assert!(!unsafe_pkg.violates_forbid_rule());
    }
}
