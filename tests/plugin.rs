//! Out-of-tree policy plugins: `new-policy` copies the template crate,
//! byte for byte under the template's own names, and writes a crate equal
//! to the template modulo the name; the template's policy registers
//! beside the shipped ones through the library; bad input exits 2.
//!
//! Building generated crates (a cargo build of their own, minutes on a
//! cold cache) is the ignored test at the end:
//! `cargo test --test plugin -- --ignored`.

mod common;

use collapse_bench::new_policy::{files, Plugin};
use common::{bench, scratch};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The template's own names, as a member of this workspace.
const TEMPLATE: Plugin<'static> = Plugin { package: "policy-template", policy: "template-v1", standalone: false };

fn template_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/policy-template")
}

/// `new-policy`'s rendering under the template's own names is the
/// template, file for file and byte for byte: it replaces names and
/// nothing else.
#[test]
fn the_template_is_what_new_policy_writes() {
    let written = files(&TEMPLATE).expect("the template renders");
    let mut paths: Vec<&str> = written.iter().map(|(path, _)| *path).collect();
    paths.sort_unstable();
    assert_eq!(paths, tree(&template_dir()), "new-policy writes every file of examples/policy-template/ and no other");
    for (path, text) in written {
        let file = template_dir().join(path);
        assert!(read(&file) == text, "{} differs from what `new-policy` writes for it:\n{text}", file.display());
    }
}

/// The template's policy, compiled into this test as a module.
#[path = "../examples/policy-template/src/lib.rs"]
mod template;

mod renamed {
    //! A policy under a bad or taken name: `v1` with another `NAME`.
    use bench_core::kernel::{CollapsePolicy, Cx, Engine, NoParams, ScanResult};
    use policies::v1::V1;

    pub struct Named<const BAD: bool>(V1, NoParams);

    impl<const BAD: bool> CollapsePolicy for Named<BAD> {
        type Params = NoParams;
        const NAME: &'static str = if BAD { "my fix,v1" } else { "v1" };
        const SUMMARY: &'static str = "v1 renamed";
        fn new(params: NoParams) -> Self {
            Named(V1::new(params), params)
        }
        fn params(&self) -> &NoParams {
            &self.1
        }
        fn collapse<E: Engine>(&self, cx: &mut Cx<'_, E>, haddr: u64, install_pmd: bool) -> ScanResult {
            self.0.collapse(cx, haddr, install_pmd)
        }
    }
}

/// Through the library, as the template's binary does it: `template-v1`
/// is registered after the shipped policies, listed, parsed by `-p`, and
/// the default of `check` and `report`'s verdicts; a taken or bad name is
/// bad input (exit 2) naming it.
#[test]
fn the_template_policy_registers_beside_the_shipped_ones() {
    use bench_core::kernel::entry;
    use collapse_bench::cli::CliError;
    let usage = |r: Result<(), CliError>| match r {
        Err(e @ CliError::Usage(_)) => e.to_string(),
        other => panic!("expected bad input, got {other:?}"),
    };
    let err = usage(collapse_bench::register(vec![entry::<renamed::Named<false>>()]));
    assert!(err.contains("`v1`") && err.contains("shipped"), "{err}");
    let err = usage(collapse_bench::register(vec![entry::<renamed::Named<true>>()]));
    assert!(err.contains("`my fix,v1`"), "{err}");
    let twice = vec![entry::<template::TemplateV1>(), entry::<template::TemplateV1>()];
    let err = usage(collapse_bench::register(twice));
    assert!(err.contains("`template-v1`"), "{err}");
    assert_eq!(
        collapse_bench::registered_names(),
        "v1,v6.13,v6.1,v2-flush-bool,v2-step3-down,v2-posted,v2-posted-relookup,v6.13-noflush,pre-fix"
    );

    collapse_bench::register(vec![entry::<template::TemplateV1>()]).expect("template-v1 registers");
    assert_eq!(
        collapse_bench::registered_names(),
        "v1,v6.13,v6.1,v2-flush-bool,v2-step3-down,v2-posted,v2-posted-relookup,v6.13-noflush,pre-fix,template-v1"
    );
    let list = collapse_bench::cli::list();
    let line = list.lines().find(|l| l.trim_start().starts_with("template-v1 ")).expect("template-v1 listed");
    assert!(line.contains("copied from v1"), "{line}");
    let parsed = collapse_bench::cli::parse_policies("template-v1,v1").expect("-p template-v1,v1");
    assert_eq!(parsed.iter().map(|p| p.label()).collect::<Vec<_>>(), ["template-v1", "v1"]);
    // Once per process: the same list again is fine, another is not.
    collapse_bench::register(vec![entry::<template::TemplateV1>()]).expect("same list again");
    assert!(collapse_bench::register(vec![]).is_err());
    // The whole command line on it: `list` succeeds, a clash exits 2.
    let list = collapse_bench::main_with_args(vec![entry::<template::TemplateV1>()], ["policy-template", "list"]);
    assert_eq!(list, std::process::ExitCode::SUCCESS);
    let clash = collapse_bench::main_with_args(vec![entry::<renamed::Named<false>>()], ["x", "list"]);
    assert_eq!(clash, std::process::ExitCode::from(2));
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every file below `dir`, relative, sorted.
fn tree(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.push(path.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    let mut out = vec![];
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// `new-policy policy-fix` writes the template modulo the name, plus what
/// a crate of its own needs.
#[test]
fn new_policy_writes_the_template_renamed() {
    let dir = scratch("renamed");
    let out = bench(&["new-policy", "policy-fix", "--dir", dir.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("cargo run --release -- check -p policy-fix,v1"), "{stdout}");
    let crate_dir = dir.join("policy-fix");
    assert_eq!(
        tree(&crate_dir),
        [
            ".gitignore",
            "Cargo.lock",
            "Cargo.toml",
            "benches/collapse.rs",
            "src/lib.rs",
            "src/main.rs",
            "tests/conformance.rs"
        ]
    );
    let rename = |s: &str| {
        s.replace("policy-template", "policy-fix")
            .replace("policy_template", "policy_fix")
            .replace("template-v1", "policy-fix")
            .replace("template_v1", "policy_fix")
            .replace("TemplateV1", "PolicyFix")
    };
    for file in ["src/lib.rs", "src/main.rs", "benches/collapse.rs", "tests/conformance.rs"] {
        let template = rename(&read(&template_dir().join(file)));
        assert_eq!(read(&crate_dir.join(file)), template, "{file} is not the template's renamed");
    }
    // Cargo.toml: the template's, with absolute paths, and a workspace of its own.
    let toml = read(&crate_dir.join("Cargo.toml"));
    let repo = env!("CARGO_MANIFEST_DIR");
    let template = rename(&read(&template_dir().join("Cargo.toml"))).replace("\"../..", &format!("\"{repo}"));
    assert!(toml.contains(&template), "{toml}\n--- does not hold ---\n{template}");
    assert!(toml.contains("\n[workspace]\n"), "{toml}");
}

/// A name that holds a template name is written once, not replaced again.
#[test]
fn a_name_holding_a_template_name_is_not_replaced_twice() {
    let plugin = Plugin { package: "template-v1-fix", policy: "template-v1-fix", standalone: false };
    let written = files(&plugin).expect("renders");
    let file = |path: &str| &written.iter().find(|(p, _)| *p == path).unwrap().1;
    let lib = file("src/lib.rs");
    assert!(lib.contains("pub struct TemplateV1Fix(NoParams);"), "{lib}");
    assert!(lib.contains("const NAME: &'static str = \"template-v1-fix\";"), "{lib}");
    assert!(file("src/main.rs").contains("use template_v1_fix::TemplateV1Fix;"), "{}", file("src/main.rs"));
    assert!(file("Cargo.toml").contains("name = \"template-v1-fix\"\n"), "{}", file("Cargo.toml"));
}

/// Runs `new-policy args` in a fresh directory, expects exit 2 with every
/// needle in the error and nothing written but `keep`.
fn rejects(name: &str, args: &[&str], needles: &[&str], keep: &[&str]) {
    let dir = scratch(name);
    for k in keep {
        std::fs::create_dir_all(dir.join(k)).unwrap();
    }
    let mut all = vec!["new-policy"];
    all.extend(args);
    all.extend(["--dir", dir.to_str().unwrap()]);
    let out = bench(&all);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
    for n in needles {
        assert!(stderr.contains(n), "{name}: `{n}` not in: {stderr}");
    }
    let left: Vec<String> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(left.len(), keep.len(), "{name}: nothing written, found {left:?}");
    assert!(tree(&dir).is_empty(), "{name}: nothing written");
}

#[test]
fn new_policy_rejects_bad_input_with_exit_2() {
    rejects("exists", &["my-fix"], &["my-fix exists; choose another NAME or --dir"], &["my-fix"]);
    rejects("upper", &["My_Fix"], &["NAME", "`My_Fix`", "lower-case"], &[]);
    rejects("digit", &["1fix"], &["NAME", "`1fix`"], &[]);
    rejects("space", &["my fix"], &["NAME", "holds ` `"], &[]);
    rejects("dash", &["my-"], &["NAME", "`my-`"], &[]);
    rejects("keyword", &["fn"], &["NAME", "keyword"], &[]);
    rejects("shipped", &["v1"], &["NAME", "shipped policy"], &[]);
    rejects("dependency", &["policies"], &["NAME", "crate it depends on"], &[]);
    rejects("type clash", &["cx"], &["NAME", "`Cx`", "already uses"], &[]);
}

/// A generated crate builds on its own (path dependencies on this
/// checkout, a workspace of its own, this checkout's Cargo.lock), passes
/// its conformance test, and its binary lists its policy: a cargo build of its own (a separate
/// target directory, `target/plugin-build`; minutes when cold), so ignored
/// by default: `cargo test --test plugin -- --ignored`.
#[test]
#[ignore]
fn a_generated_crate_builds_conforms_and_lists_its_policy() {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/plugin-build");
    let cargo_in = |dir: &Path, args: &[&str]| {
        let out = Command::new(&cargo)
            .args(args)
            .current_dir(dir)
            .env("CARGO_TARGET_DIR", &target)
            .env_remove("RUSTFLAGS")
            .output()
            .expect("run cargo");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "cargo {args:?} in {}:\n{text}", dir.display());
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let dir = scratch("build");
    let out = bench(&["new-policy", "my-fix", "--dir", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let crate_dir = dir.join("my-fix");
    cargo_in(&crate_dir, &["build", "--offline", "--all-targets"]);
    // Its conformance test passes: the copy is v1, which conforms.
    cargo_in(&crate_dir, &["test", "--offline", "-q"]);
    let list = cargo_in(&crate_dir, &["run", "--offline", "-q", "--", "list"]);
    assert!(list.lines().any(|l| l.trim_start().starts_with("my-fix ")), "{list}");
    // The template, through cargo as a user runs it.
    let list = cargo_in(
        Path::new(env!("CARGO_MANIFEST_DIR")),
        &["run", "--offline", "-q", "-p", "policy-template", "--", "list"],
    );
    assert!(list.lines().any(|l| l.trim_start().starts_with("template-v1 ")), "{list}");
}
