//! `new-policy`: write a plugin crate holding a copy of a shipped policy,
//! renamed, with the place patches usually change marked, ready to build.
//!
//! The crate has a library (the policy), a binary (this command line with
//! the policy added, through [`crate::main_with`]), a criterion bench and a
//! test that runs the conformance suite on it. `examples/policy-template/`
//! is exactly what [`files`] writes for `template-v1` from `v1` as a
//! workspace member (a test keeps the two equal).
//!
//! The policy is the shipped source (embedded at build time) with string
//! replacements: the type and `NAME` renamed, the `SUMMARY` marked as a
//! copy, `crate::khugepaged`/`crate::recheck` imported from `policies`,
//! and the CHANGE HERE comment added after step 1's `notify_start()`.

use crate::cli::CliError;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// This repository, where the generated crate's path dependencies point.
pub const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// The shipped policies a new one can start from, with their sources.
pub const SOURCES: [(&str, &str); 5] = [
    ("v1", include_str!("../policies/src/v1.rs")),
    ("v2-flush-bool", include_str!("../policies/src/v2_flush_bool.rs")),
    ("v2-step3-down", include_str!("../policies/src/v2_step3_down.rs")),
    ("v2-posted", include_str!("../policies/src/v2_posted.rs")),
    ("pre-fix", include_str!("../policies/src/pre_fix.rs")),
];

/// The shipped controls (buggy on purpose) and the oracle that catches each.
const CONTROLS: [(&str, &str, &str); 2] =
    [("v2-posted", "stale-tlb", "StaleTlb"), ("pre-fix", "table-freed-live", "TableFreedLive")];

/// Crates the plugin depends on or that every crate sees: its name may not
/// be one of them.
const TAKEN: [&str; 12] = [
    "bench-core",
    "policies",
    "workloads",
    "reports",
    "collapse-bench",
    "criterion",
    "std",
    "core",
    "alloc",
    "test",
    "proc-macro",
    "policy-template",
];

/// Rust keywords (a crate name becomes an identifier with `-` as `_`).
const KEYWORDS: [&str; 51] = [
    "as", "async", "await", "break", "const", "continue", "crate", "dyn", "else", "enum", "extern", "false", "fn",
    "for", "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut", "pub", "ref", "return", "self", "Self",
    "static", "struct", "super", "trait", "true", "type", "unsafe", "use", "where", "while", "abstract", "become",
    "box", "do", "final", "macro", "override", "priv", "typeof", "unsized", "virtual", "yield", "try",
];

/// Arguments of `new-policy`.
#[derive(clap::Args, Debug)]
pub struct NewPolicyArgs {
    /// Name of the new policy and of its crate, e.g. `my-fix`: lower-case
    /// ASCII letters, digits and `-`, starting with a letter. The policy's
    /// type is its CamelCase (`MyFix`).
    pub name: String,
    /// The shipped policy to copy: v1, v2-flush-bool, v2-step3-down,
    /// v2-posted or pre-fix.
    #[arg(long, default_value = "v1")]
    pub from: String,
    /// Where to create the crate's directory NAME.
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
}

/// What [`files`] writes.
#[derive(Clone, Debug)]
pub struct Plugin<'a> {
    /// The crate's package name (`my-fix`; the template's `policy-template`).
    pub package: &'a str,
    /// The policy's `NAME` (`my-fix`; the template's `template-v1`).
    pub policy: &'a str,
    /// The shipped policy it copies (a name in [`SOURCES`]).
    pub from: &'a str,
    /// This repository as the path dependencies spell it: absolute for
    /// `new-policy`, `../..` for the template.
    pub repo: &'a str,
    /// A crate of its own (`new-policy`): a `[workspace]` table, profiles,
    /// `.gitignore` and this repository's `Cargo.lock` (same versions,
    /// builds offline). False for a member of this workspace (the template).
    pub standalone: bool,
}

/// `my-fix` → `MyFix`; `v2-fix` → `V2Fix`.
pub fn type_name(policy: &str) -> String {
    policy
        .split(['-', '_'])
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map(|c| c.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
        })
        .collect()
}

/// `my-fix` → `my_fix`, the crate as Rust code names it.
pub fn crate_ident(package: &str) -> String {
    package.replace('-', "_")
}

/// The names `--from` takes.
pub fn allowed_from() -> String {
    SOURCES.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
}

/// A new policy's name is also its crate's and (CamelCased) its type's.
pub fn check_name(name: &str) -> Result<(), CliError> {
    let bad = |why: &str| {
        Err(CliError::Usage(format!(
            "NAME: `{name}` {why}; a policy crate's NAME is lower-case ASCII letters, digits and `-`, starting \
             with a letter (e.g. my-fix)"
        )))
    };
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return bad("does not start with a lower-case letter");
    }
    if let Some(c) = name.chars().find(|&c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')) {
        return bad(&format!("holds `{c}`"));
    }
    if name.ends_with('-') || name.contains("--") {
        return bad("has an empty part between `-`s");
    }
    if KEYWORDS.contains(&crate_ident(name).as_str()) {
        return bad("is a Rust keyword");
    }
    if TAKEN.contains(&name) {
        return bad("is the name of a crate it depends on or a reserved one");
    }
    if let Some(e) = policies::registry().iter().find(|e| e.name == name) {
        return bad(&format!("is a shipped policy's name ({})", e.summary));
    }
    Ok(())
}

/// The source of `from`, or bad input listing the allowed names.
fn source(from: &str) -> Result<&'static str, CliError> {
    SOURCES
        .iter()
        .find(|(n, _)| *n == from)
        .map(|(_, s)| *s)
        .ok_or_else(|| CliError::Usage(format!("--from: unknown policy `{from}`; allowed: {}", allowed_from())))
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Replace every whole-word occurrence of `word` in `text`.
fn replace_word(text: &str, word: &str, with: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(word) {
        let before = rest[..i].chars().next_back();
        let after = rest[i + word.len()..].chars().next();
        out.push_str(&rest[..i]);
        if before.is_some_and(is_ident_char) || after.is_some_and(is_ident_char) {
            out.push_str(word);
        } else {
            out.push_str(with);
        }
        rest = &rest[i + word.len()..];
    }
    out.push_str(rest);
    out
}

/// Whether `word` occurs in `text` as a whole word.
fn has_word(text: &str, word: &str) -> bool {
    replace_word(text, word, "\u{0}") != text
}

/// The identifier after `after` in `text`.
fn ident_after<'t>(text: &'t str, after: &str) -> Option<&'t str> {
    let start = text.find(after)? + after.len();
    let rest = &text[start..];
    let end = rest.find(|c: char| !is_ident_char(c)).unwrap_or(rest.len());
    Some(&rest[..end]).filter(|s| !s.is_empty())
}

/// The string literal that starts at or after `from` in `text`: its byte
/// range including the quotes.
fn literal_after(text: &str, from: usize) -> Option<(usize, usize)> {
    let open = from + text[from..].find('"')?;
    let mut escaped = false;
    for (i, c) in text[open + 1..].char_indices() {
        match c {
            '\\' if !escaped => escaped = true,
            '"' if !escaped => return Some((open, open + 1 + i + 1)),
            _ => escaped = false,
        }
    }
    None
}

/// A Rust string literal holding `s`.
fn quoted(s: &str) -> String {
    format!("{s:?}")
}

/// The place patches usually change, marked in the copy.
const CHANGE_HERE: &str = "\
// ============================== CHANGE HERE ==============================
// Patches to collapse_pte_mapped_thp() usually change what follows, up to
// the end of step 4: which of pml (pmd_lock) and ptl are held across
// step 2 (clear the PTEs), step 3 (refcounts and counters) and step 4
// (remove the table), any trylock and recheck, and then what the abort
// path at the end owes (flush_tlb_mm() for entries already cleared, the
// accounting of nr_ptes). Port the patch here hunk by hunk, with the
// kernel's names on `cx`. The helpers called here are shared with the
// shipped policies (policies::khugepaged, policies::recheck); to change
// one, copy it into this file from the policies crate and edit the copy.
// ==========================================================================
";

/// The policy's source: the shipped `from` renamed and marked.
pub fn policy_source(from: &str, policy: &str) -> Result<String, CliError> {
    let text = source(from)?;
    let broken = |what: &str| {
        CliError::Failed(format!("the embedded source of `{from}` has no {what}; new-policy needs updating"))
    };
    let old_type = ident_after(text, "impl CollapsePolicy for ").ok_or_else(|| broken("`impl CollapsePolicy for`"))?;
    let new_type = type_name(policy);
    if new_type != old_type && has_word(text, &new_type) {
        return Err(CliError::Usage(format!(
            "NAME: `{policy}` would name its type `{new_type}`, which the source of `{from}` already uses; \
             choose another NAME"
        )));
    }
    let mut s = replace_word(text, old_type, &new_type);

    // NAME and SUMMARY.
    let at = s.find("const NAME: &'static str =").ok_or_else(|| broken("`const NAME`"))?;
    let (a, b) = literal_after(&s, at).ok_or_else(|| broken("NAME literal"))?;
    s.replace_range(a..b, &quoted(policy));
    let at = s.find("const SUMMARY: &'static str =").ok_or_else(|| broken("`const SUMMARY`"))?;
    let (a, b) = literal_after(&s, at).ok_or_else(|| broken("SUMMARY literal"))?;
    let summary: String = serde_json::from_str(&s[a..b]).map_err(|_| broken("plain SUMMARY literal"))?;
    let line_start = s[..at].rfind('\n').map_or(0, |i| i + 1);
    let end = b + s[b..].find(';').ok_or_else(|| broken("`;` after SUMMARY"))? + 1;
    let indent = &s[line_start..at].to_owned();
    let literal = quoted(&format!("copied from {from}: {summary}"));
    let one_line = format!("{indent}const SUMMARY: &'static str = {literal};");
    let statement = if one_line.len() <= 120 {
        one_line
    } else {
        format!("{indent}const SUMMARY: &'static str =\n{indent}    {literal};")
    };
    s.replace_range(line_start..end, &statement);

    // The shared steps come from the policies crate.
    s = s.replace("crate::khugepaged", "policies::khugepaged").replace("crate::recheck", "policies::recheck");
    s = sort_uses(&s);

    // The place to change: after step 1 (notify_start), before the locking.
    let mark = |indent: &str| CHANGE_HERE.lines().map(|l| format!("{indent}{l}\n")).collect::<String>();
    match s.find("notify_start(cx, t, &mut k);\n") {
        Some(i) => {
            let line_start = s[..i].rfind('\n').map_or(0, |j| j + 1);
            let indent = s[line_start..i].to_owned();
            let after = i + "notify_start(cx, t, &mut k);\n".len();
            s.insert_str(after, &format!("\n{}", mark(&indent)));
        }
        None => {
            let i = s.find("impl CollapsePolicy for").ok_or_else(|| broken("`impl CollapsePolicy for`"))?;
            s.insert_str(i, &format!("{}\n", mark("")));
        }
    }

    // What it is, above the original's description.
    let header = format!(
        "//! `{policy}`: a collapse policy plugin, copied from the shipped `{from}`\n\
         //! (policies/src/{file}.rs) by `collapse-bench new-policy`. Port a patch\n\
         //! into it at the place marked CHANGE HERE; `cargo test` runs the\n\
         //! conformance suite on it, and this crate's binary is collapse-bench with\n\
         //! `{policy}` added (`cargo run --release -- check -p {policy},v1`).\n\
         //!\n\
         //! The original's description:\n\
         //!\n",
        file = from.replace('-', "_"),
    );
    Ok(header + &s)
}

/// Sort the first run of top-level `use` statements as rustfmt does
/// (`bench_core` before `policies` once `crate::` is `policies::`).
fn sort_uses(s: &str) -> String {
    let lines: Vec<&str> = s.split_inclusive('\n').collect();
    let Some(first) = lines.iter().position(|l| l.starts_with("use ")) else { return s.to_owned() };
    let mut statements: Vec<String> = vec![];
    let mut i = first;
    while i < lines.len() && lines[i].starts_with("use ") {
        let mut statement = String::new();
        while i < lines.len() {
            statement.push_str(lines[i]);
            i += 1;
            if statement.trim_end().ends_with(';') {
                break;
            }
        }
        statements.push(statement);
    }
    statements.sort_by(|a, b| a.trim_end_matches([';', '\n']).cmp(b.trim_end_matches([';', '\n'])));
    let mut out: String = lines[..first].concat();
    out.extend(statements);
    out.push_str(&lines[i..].concat());
    out
}

/// `Cargo.toml`.
fn cargo_toml(p: &Plugin<'_>) -> String {
    let mut t = String::new();
    if p.standalone {
        let _ = writeln!(
            t,
            "# Written by `collapse-bench new-policy {} --from {}`. The path dependencies\n\
             # point at the collapse-bench checkout that wrote it.\n",
            p.policy, p.from
        );
    }
    let _ = write!(
        t,
        "[package]\n\
         name = \"{package}\"\n\
         version = \"0.1.0\"\n\
         edition = \"2021\"\n\
         license = \"GPL-2.0-only\"\n\
         publish = false\n\
         description = \"The collapse policy {policy}, a plugin of collapse-bench (copied from {from})\"\n\
         \n\
         [dependencies]\n\
         bench-core = {{ path = \"{repo}/bench-core\" }}\n\
         collapse-bench = {{ path = \"{repo}\" }}\n\
         policies = {{ path = \"{repo}/policies\" }}\n\
         reports = {{ path = \"{repo}/reports\" }}\n\
         workloads = {{ path = \"{repo}/workloads\" }}\n\
         \n\
         [dev-dependencies]\n\
         criterion = \"0.8\"\n\
         \n\
         [[bench]]\n\
         name = \"collapse\"\n\
         harness = false\n",
        package = p.package,
        policy = p.policy,
        from = p.from,
        repo = p.repo,
    );
    if p.standalone {
        t.push_str(
            "\n# A workspace of its own: it builds wherever it is, even inside the\n\
             # collapse-bench checkout.\n\
             [workspace]\n\
             \n\
             [profile.release]\n\
             debug = 1\n\
             \n\
             [profile.bench]\n\
             debug = 1\n",
        );
    }
    t
}

/// `src/main.rs`.
fn main_rs(p: &Plugin<'_>) -> String {
    sort_uses(&format!(
        "//! `{package}`: the collapse-bench command line (list, run, check, report,\n\
         //! compare) with `{policy}` added beside the shipped policies.\n\
         //!\n\
         //! ```text\n\
         //! cargo run --release -- list\n\
         //! cargo run --release -- check -p {policy},v1\n\
         //! cargo run --release -- report -p v1,{policy}\n\
         //! ```\n\
         \n\
         use bench_core::kernel::entry;\n\
         use {krate}::{ty};\n\
         \n\
         fn main() -> std::process::ExitCode {{\n    \
             collapse_bench::main_with(vec![entry::<{ty}>()])\n\
         }}\n",
        package = p.package,
        policy = p.policy,
        krate = crate_ident(p.package),
        ty = type_name(p.policy),
    ))
}

/// `tests/conformance.rs`.
fn conformance_rs(p: &Plugin<'_>) -> String {
    sort_uses(&format!(
        "//! The conformance suite on `{policy}`: the selftest-like functional cases\n\
         //! (refcounts, counters and lock state after each) and the checker on\n\
         //! every workload preset. `Expect::Correct`: every oracle must hold. A\n\
         //! policy meant to be caught says which oracle catches it instead, e.g.\n\
         //! `Expect::Caught(Oracle::StaleTlb)`.\n\
         \n\
         use bench_core::kernel::entry;\n\
         use workloads::conformance::{{assert_conforms, Expect}};\n\
         use {krate}::{ty};\n\
         \n\
         #[test]\n\
         fn {fn_name}_conforms() {{\n    \
             assert_conforms(&entry::<{ty}>(), Expect::Correct);\n\
         }}\n",
        policy = p.policy,
        krate = crate_ident(p.package),
        ty = type_name(p.policy),
        fn_name = crate_ident(p.policy),
    ))
}

/// `benches/collapse.rs`.
fn bench_rs(p: &Plugin<'_>) -> String {
    const BODY: &str = r#"use bench_core::mm::{range_addr, MmConfig};
use bench_core::harness::{new_cpu, Harness};
use bench_core::kernel::{CollapsePolicy, ScanResult};
use bench_core::{FileKind, Mm, Native, Role};
use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion};
use policies::v1::V1;
use std::time::{Duration, Instant};
use workloads::kernel_paths::restore_range;

/// One uncontended khugepaged-mode collapse of a full table by `P`, timed
/// through the framework; the range is put back untimed after each.
fn uncontended<P: CollapsePolicy>(group: &mut BenchmarkGroup<'_, WallTime>) {
    let mm = Mm::new(MmConfig {
        ranges: vec![0],
        file: FileKind::Shmem,
        split_pmd_ptlocks: true,
        split_pte_ptlocks: true,
        cpus: 1,
        density: 512,
        anon_pages: 64,
        spare_tables: 64,
        oracles: false,
    })
    .expect("valid model");
    let policy = P::new(Default::default());
    let haddr = range_addr(0);
    let mut cx = new_cpu(&mm, 0, Role::Collapse, Native::new(Instant::now(), None, false));
    // CPU 0 in mm_cpumask, so that the flush really walks its TLB.
    assert!(cx.touch(haddr).is_some());
    group.bench_function(P::NAME, |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                let t0 = Instant::now();
                let result = cx.run_collapse(&policy, haddr, false);
                timed += t0.elapsed();
                assert_eq!(result, ScanResult::Succeed, "an uncontended collapse of a full table succeeds");
                cx.set_role(Role::Restore);
                restore_range(&mut cx, 0);
                cx.set_role(Role::Collapse);
            }
            timed
        })
    });
}

fn uncontended_collapse(c: &mut Criterion) {
    let mut group = c.benchmark_group("uncontended_collapse");
    uncontended::<TYPE>(&mut group);
    uncontended::<V1>(&mut group);
    group.finish();
}

/// Criterion's plots need the embedded font registered (as collapse-bench's own benches do).
fn config() -> Criterion {
    reports::plots::register_fonts().expect("embedded font");
    Criterion::default()
}

criterion_group! {
    name = benches;
    config = config();
    targets = uncontended_collapse
}
criterion_main!(benches);
"#;
    let head = format!(
        "//! `cargo bench`: one uncontended collapse (khugepaged mode, a full\n\
         //! 512-entry table, nobody else running, oracles off) by `{policy}` and by\n\
         //! the shipped `v1`, through the framework, as collapse-bench's\n\
         //! `uncontended_collapse/v1_framework`. Under contention, compare them\n\
         //! with `cargo run --release -- report -p v1,{policy}`.\n\
         //!\n\
         //! ```text\n\
         //! cargo bench -- --save-baseline before   # then change the policy, and\n\
         //! cargo bench -- --baseline before        # compare with it\n\
         //! cargo bench -- --test                   # smoke: each once\n\
         //! ```\n\
         \n",
        policy = p.policy,
    );
    // The plugin's crate among the others, in rustfmt's order.
    let body = format!("use {}::{};\n", crate_ident(p.package), type_name(p.policy)) + BODY;
    head + &sort_uses(&body.replace("TYPE", &type_name(p.policy)))
}

/// Every file of the crate, as (path relative to its directory, contents).
pub fn files(p: &Plugin<'_>) -> Result<Vec<(&'static str, String)>, CliError> {
    let mut out = vec![
        ("Cargo.toml", cargo_toml(p)),
        ("src/lib.rs", policy_source(p.from, p.policy)?),
        ("src/main.rs", main_rs(p)),
        ("benches/collapse.rs", bench_rs(p)),
        ("tests/conformance.rs", conformance_rs(p)),
    ];
    if p.standalone {
        out.push((".gitignore", "/target\n".into()));
        if let Ok(lock) = std::fs::read_to_string(Path::new(p.repo).join("Cargo.lock")) {
            // The versions this checkout was built and tested with.
            out.push(("Cargo.lock", lock));
        }
    }
    Ok(out)
}

/// `--dir`, before anything is written: it is created (with its missing
/// parents) when it does not exist, so its nearest existing ancestor
/// must be a directory this process may create in.
fn check_dir(dir: &Path) -> Result<(), CliError> {
    let abs = std::path::absolute(dir).map_err(|e| CliError::Usage(format!("--dir {}: {e}", dir.display())))?;
    let existing = abs.ancestors().find(|a| a.symlink_metadata().is_ok()).unwrap_or(Path::new("/"));
    crate::output_file::writable_dir(existing).map_err(|why| CliError::Usage(format!("--dir {}: {why}", dir.display())))
}

/// `new-policy`.
pub fn new_policy(args: &NewPolicyArgs) -> Result<(), CliError> {
    check_name(&args.name)?;
    source(&args.from)?;
    check_dir(&args.dir)?;
    let crate_dir = args.dir.join(&args.name);
    if crate_dir.symlink_metadata().is_ok() {
        return Err(CliError::Usage(format!("{} exists; choose another NAME or --dir", crate_dir.display())));
    }
    if !Path::new(REPO).join("bench-core").join("Cargo.toml").is_file() {
        return Err(CliError::Failed(format!(
            "this collapse-bench was built in {REPO}, which no longer holds the repository the new crate's \
             path dependencies need; rebuild it where the checkout is"
        )));
    }
    let plugin = Plugin { package: &args.name, policy: &args.name, from: &args.from, repo: REPO, standalone: true };
    let files = files(&plugin)?;
    let failed = |what: String, e: std::io::Error| CliError::Failed(format!("{what}: {e}"));
    std::fs::create_dir_all(&args.dir).map_err(|e| failed(format!("creating {}", args.dir.display()), e))?;
    // Built aside and renamed into place: no half-written crate is left.
    let staging = args.dir.join(format!(".{}.new-policy-{}", args.name, std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    let written = (|| {
        for (path, text) in &files {
            let target = staging.join(path);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent).map_err(|e| failed(format!("creating {}", parent.display()), e))?;
            }
            std::fs::write(&target, text).map_err(|e| failed(format!("writing {}", target.display()), e))?;
        }
        std::fs::rename(&staging, &crate_dir).map_err(|e| failed(format!("creating {}", crate_dir.display()), e))
    })();
    if written.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    written?;
    let shown = crate_dir.display();
    let width = 46usize.max(shown.to_string().len() + 3);
    sayln!(
        "wrote {shown}/: policy `{name}` (type {ty}), a copy of {from}\n\n\
         {cd:<width$} # then edit src/lib.rs at CHANGE HERE\n\
         {test:<width$} # the conformance suite\n\
         {check:<width$} # the checker, a verdict per policy\n\
         {report:<width$} # the report for the thread",
        name = args.name,
        ty = type_name(&args.name),
        from = args.from,
        cd = format!("cd {}", crate::cli::quote(&shown.to_string())),
        test = "cargo test",
        check = format!("cargo run --release -- check -p {},v1", args.name),
        report = format!("cargo run --release -- report -p v1,{}", args.name),
    );
    if let Some((_, oracle, variant)) = CONTROLS.iter().find(|c| c.0 == args.from) {
        sayln!(
            "\nnote: {} is a control, buggy on purpose ({oracle}): until the copy is fixed, `cargo test` fails \
             with the conformance suite's finding; a copy kept buggy on purpose expects it in \
             tests/conformance.rs: Expect::Caught(bench_core::Oracle::{variant})",
            args.from
        );
    }
    Ok(())
}
