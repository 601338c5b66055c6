//! `collapse-bench`: run, check and compare `collapse_pte_mapped_thp()`
//! locking policies. The command line lives in the library
//! (`collapse_bench::main_with`), so a plugin crate's binary is the same
//! program with its own policies added.

fn main() -> std::process::ExitCode {
    collapse_bench::main_with(Vec::new())
}
