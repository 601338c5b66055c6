//! bench-core's modules import only from their own layer or the layers
//! below it, and never in a cycle: the layering the crate documentation
//! states, checked against the sources. A module's imports are the
//! `crate::name` paths in it (comments and `#[cfg(test)]` code left out),
//! with the crate root's re-exports resolved to the module that defines
//! them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The layers, lowest first, as the crate documentation lists them.
const LAYERS: &[&[&str]] = &[
    &[
        "footprint",
        "recycle",
        "pool",
        "pte",
        "page",
        "pgtable",
        "locks",
        "tlb",
        "rcu",
        "rwsem",
        "cost",
        "oracle",
        "role",
        "scan",
        "machine",
    ],
    &["lockdep"],
    &["mm"],
    &["event", "metrics", "watch"],
    &["engine", "sched"],
    &["kernel"],
    &["harness", "oops", "results", "actor", "watchdog"],
    &["native", "controlled"],
];

fn layer_of(module: &str) -> usize {
    LAYERS.iter().position(|l| l.contains(&module)).unwrap_or_else(|| panic!("module {module} is in no layer"))
}

/// Source without line comments and without what follows `#[cfg(test)]`.
fn code(src: &str) -> String {
    let src = src.split("#[cfg(test)]").next().unwrap_or("");
    src.lines().map(|l| l.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n")
}

/// The identifiers after every `crate::` in `code`.
fn crate_paths(code: &str) -> Vec<String> {
    code.match_indices("crate::")
        .map(|(i, m)| code[i + m.len()..].chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect())
        .collect()
}

/// Top-level module of every source file, with its code.
fn modules(src: &Path) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(src).unwrap();
                let top =
                    rel.components().next().unwrap().as_os_str().to_string_lossy().trim_end_matches(".rs").to_owned();
                out.entry(top).or_default().push_str(&code(&std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    out
}

/// `pub use module::{A, B}` and `pub use module::A` in the crate root:
/// name -> module.
fn reexports(lib: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for stmt in lib.split(';') {
        let Some(rest) = stmt.trim().strip_prefix("pub use ") else { continue };
        let Some((module, names)) = rest.split_once("::") else { continue };
        for name in names.trim_matches(|c| c == '{' || c == '}').split(',') {
            out.insert(name.trim().to_owned(), module.to_owned());
        }
    }
    out
}

/// Every import from a higher layer, and every cycle, in `modules`.
fn violations(modules: &BTreeMap<String, String>, reexports: &BTreeMap<String, String>) -> Vec<String> {
    let mut edges: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    let mut found = vec![];
    for (module, code) in modules {
        for path in crate_paths(code) {
            let target = reexports.get(&path).cloned().unwrap_or(path);
            if &target == module || !modules.contains_key(&target) {
                continue;
            }
            if layer_of(&target) > layer_of(module) {
                found.push(format!("{module} imports {target}, a higher layer"));
            }
            edges.entry(module).or_default().insert(target);
        }
    }
    // Depth-first search: an edge back to a module on the path is a cycle.
    fn visit<'a>(
        m: &'a str,
        edges: &'a BTreeMap<&str, BTreeSet<String>>,
        done: &mut BTreeSet<&'a str>,
        path: &mut Vec<&'a str>,
        found: &mut Vec<String>,
    ) {
        if let Some(at) = path.iter().position(|&p| p == m) {
            found.push(format!("cycle: {} -> {m}", path[at..].join(" -> ")));
            return;
        }
        if !done.insert(m) {
            return;
        }
        path.push(m);
        for next in edges.get(m).into_iter().flatten() {
            visit(next, edges, done, path, found);
        }
        path.pop();
    }
    let mut done = BTreeSet::new();
    for module in modules.keys() {
        visit(module, &edges, &mut done, &mut vec![], &mut found);
    }
    found
}

#[test]
fn modules_import_downwards_only_and_in_no_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut modules = modules(&src);
    let lib = modules.remove("lib").expect("lib.rs");
    assert_eq!(violations(&modules, &reexports(&lib)), Vec::<String>::new());
}

#[test]
fn an_upward_import_and_a_cycle_are_found() {
    let modules: BTreeMap<String, String> = [
        ("mm", code("use crate::Cx; // crate::native\n#[cfg(test)]\nuse crate::controlled;")),
        ("kernel", code("use crate::mm::Mm;")),
        ("event", code("use crate::metrics::Metrics;")),
        ("metrics", code("use crate::event::Step;")),
    ]
    .into_iter()
    .map(|(m, c)| (m.to_owned(), c))
    .collect();
    let reexports = reexports("pub use kernel::{Cx, Engine};\npub use role::Role;\n");
    assert_eq!(
        violations(&modules, &reexports),
        ["mm imports kernel, a higher layer", "cycle: event -> metrics -> event", "cycle: kernel -> mm -> kernel"]
    );
}
