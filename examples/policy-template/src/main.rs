//! `policy-template`: the collapse-bench command line (list, run, check, report,
//! compare) with `template-v1` added beside the shipped policies.
//!
//! ```text
//! cargo run --release -- list
//! cargo run --release -- check -p template-v1,v1
//! cargo run --release -- report -p v1,template-v1
//! ```

use bench_core::kernel::entry;

use policy_template::TemplateV1;

fn main() -> std::process::ExitCode {
    collapse_bench::main_with(vec![entry::<TemplateV1>()])
}
