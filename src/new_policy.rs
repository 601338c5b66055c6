//! `new-policy`: write a plugin crate, a copy of the template crate
//! `examples/policy-template/` under a new name, ready to build.
//!
//! The template holds the shipped `v1`'s form as the policy `template-v1`,
//! with the place patches usually change marked: a library (the policy),
//! a binary (this command line with the policy added, through
//! [`crate::main_with`]), a criterion bench and a test that runs the
//! conformance suite on it. Its files are embedded at build time and
//! written with only their names replaced ([`files`]); with the
//! template's own names that gives the template back byte for byte (a
//! test keeps it so). A crate of its own also gets path dependencies on
//! this checkout, a `[workspace]` table and this checkout's `Cargo.lock`.

use crate::cli::CliError;
use std::path::{Path, PathBuf};

/// This repository, where the generated crate's path dependencies point.
pub const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// The template crate's files, as (path relative to its directory, contents).
const TEMPLATE: [(&str, &str); 5] = [
    ("Cargo.toml", include_str!("../examples/policy-template/Cargo.toml")),
    ("src/lib.rs", include_str!("../examples/policy-template/src/lib.rs")),
    ("src/main.rs", include_str!("../examples/policy-template/src/main.rs")),
    ("benches/collapse.rs", include_str!("../examples/policy-template/benches/collapse.rs")),
    ("tests/conformance.rs", include_str!("../examples/policy-template/tests/conformance.rs")),
];

/// The names [`files`] replaces, each also in its `_` form ([`crate_ident`]):
/// the template's package name,
const TEMPLATE_PACKAGE: &str = "policy-template";
/// its policy's `NAME`,
const TEMPLATE_POLICY: &str = "template-v1";
/// and the type that `NAME` gives ([`type_name`]).
const TEMPLATE_TYPE: &str = "TemplateV1";

/// How the template's path dependencies start: it is two levels below the
/// repository.
const TEMPLATE_REPO: &str = "\"../..";

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
    /// Where to create the crate's directory NAME.
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
}

/// What [`files`] writes: the template under these names.
#[derive(Clone, Debug)]
pub struct Plugin<'a> {
    /// The crate's package name (`my-fix`; the template's `policy-template`).
    pub package: &'a str,
    /// The policy's `NAME` (`my-fix`; the template's `template-v1`).
    pub policy: &'a str,
    /// A crate of its own (`new-policy`): path dependencies on this
    /// repository ([`REPO`]), a `[workspace]` table, profiles, `.gitignore`
    /// and this repository's `Cargo.lock` (same versions, builds offline).
    /// False for a member of this workspace (the template itself).
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

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Whether `word` occurs in `text` as a whole word.
fn has_word(text: &str, word: &str) -> bool {
    text.match_indices(word).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + word.len()..].chars().next();
        !before.is_some_and(is_ident_char) && !after.is_some_and(is_ident_char)
    })
}

/// `text` with every template name in it replaced by `p`'s, in one pass
/// (a new name that holds a template name is not replaced again).
fn rename(text: &str, p: &Plugin<'_>) -> String {
    let names = [
        (TEMPLATE_PACKAGE.to_owned(), p.package.to_owned()),
        (crate_ident(TEMPLATE_PACKAGE), crate_ident(p.package)),
        (TEMPLATE_POLICY.to_owned(), p.policy.to_owned()),
        (crate_ident(TEMPLATE_POLICY), crate_ident(p.policy)),
        (TEMPLATE_TYPE.to_owned(), type_name(p.policy)),
    ];
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    'scan: while let Some(c) = rest.chars().next() {
        for (template, name) in &names {
            if let Some(after) = rest.strip_prefix(template.as_str()) {
                out.push_str(name);
                rest = after;
                continue 'scan;
            }
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// `Cargo.toml` of a crate of its own: the template's, renamed, with path
/// dependencies on [`REPO`], and a workspace of its own.
fn standalone_cargo_toml(template: &str, p: &Plugin<'_>) -> String {
    let renamed = rename(template, p).replace(TEMPLATE_REPO, &format!("\"{REPO}"));
    format!(
        "# Written by `collapse-bench new-policy {policy}`: a copy of its template crate,\n\
         # examples/policy-template/. The path dependencies point at the\n\
         # collapse-bench checkout that wrote it.\n\
         \n\
         {renamed}\
         \n\
         # A workspace of its own: it builds wherever it is, even inside the\n\
         # collapse-bench checkout.\n\
         [workspace]\n\
         \n\
         [profile.release]\n\
         debug = 1\n\
         \n\
         [profile.bench]\n\
         debug = 1\n",
        policy = p.policy,
    )
}

/// Every file of the crate, as (path relative to its directory, contents):
/// the template's with `p`'s names. Bad input if the policy's type name is
/// already a word of the template (`cx` would make `Cx`).
pub fn files(p: &Plugin<'_>) -> Result<Vec<(&'static str, String)>, CliError> {
    let new_type = type_name(p.policy);
    if new_type != TEMPLATE_TYPE && TEMPLATE.iter().any(|(_, text)| has_word(text, &new_type)) {
        return Err(CliError::Usage(format!(
            "NAME: `{}` would name its type `{new_type}`, which the template already uses; choose another NAME",
            p.policy
        )));
    }
    let mut out: Vec<(&'static str, String)> = TEMPLATE
        .iter()
        .map(|&(path, text)| match (path, p.standalone) {
            ("Cargo.toml", true) => (path, standalone_cargo_toml(text, p)),
            _ => (path, rename(text, p)),
        })
        .collect();
    if p.standalone {
        out.push((".gitignore", "/target\n".into()));
        if let Ok(lock) = std::fs::read_to_string(Path::new(REPO).join("Cargo.lock")) {
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
    let plugin = Plugin { package: &args.name, policy: &args.name, standalone: true };
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
        "wrote {shown}/: policy `{name}` (type {ty}), a copy of the template (v1's form)\n\n\
         {cd:<width$} # then edit src/lib.rs at CHANGE HERE\n\
         {test:<width$} # the conformance suite\n\
         {check:<width$} # the checker, a verdict per policy\n\
         {report:<width$} # the report for the thread",
        name = args.name,
        ty = type_name(&args.name),
        cd = format!("cd {}", crate::cli::quote(&shown.to_string())),
        test = "cargo test",
        check = format!("cargo run --release -- check -p {},v1", args.name),
        report = format!("cargo run --release -- report -p v1,{}", args.name),
    );
    Ok(())
}
