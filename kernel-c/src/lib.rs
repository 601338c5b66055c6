//! The kernel's own C as a policy (DESIGN section 8): read
//! `collapse_pte_mapped_thp()` from a kernel tree or Debian's source
//! tarball ([`source`]), apply the patches under review ([`patch`]), take
//! the function and the file's helpers it calls ([`extract`]), compile
//! them against the project's kernel-compat headers with the machine's C
//! compiler ([`compile`]), and run the result as one more policy on both
//! engines: its `pmd_lock()`, `ptep_clear()`, `pmdp_collapse_flush()` ...
//! are the model's primitives ([`compat`]), so the oracles, lockdep,
//! scheduling points, costs and metrics are those the Rust policies meet.
//!
//! ```text
//! collapse-bench check --kernel-source /usr/src/linux-source-6.12.tar.xz \
//!     --kernel-patch fix.patch -p kernel,v1
//! ```
//!
//! The project ships no kernel code: it reads the user's tree.

mod compat;
pub mod compile;
pub mod extract;
pub mod patch;
pub mod source;

use bench_core::kernel::{runtime_entry, Cx, Engine, MmapLock, PolicyEntry, RuntimePolicy, ScanResult};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The function the front end reads.
pub const FUNCTION: &str = "collapse_pte_mapped_thp";
/// The file it is read from.
pub const FILE: &str = "mm/khugepaged.c";
/// The name the kernel policy also answers to on the command line.
pub const ALIAS: &str = "kernel";

/// Why the kernel's function could not be made into a policy: each names
/// the option and what to do.
#[derive(Debug, thiserror::Error)]
pub enum KernelCError {
    /// Reading the tree.
    #[error(transparent)]
    Source(#[from] source::SourceError),
    /// Reading or applying a patch.
    #[error(transparent)]
    Patch(#[from] patch::PatchError),
    /// Taking the function out of the file.
    #[error(transparent)]
    Extract(#[from] extract::ExtractError),
    /// Compiling or loading it.
    #[error(transparent)]
    Compile(#[from] compile::CompileError),
}

/// What went into a kernel policy, for the report's record.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Provenance {
    /// The tree or tarball given to `--kernel-source`.
    pub source: PathBuf,
    /// Its version, from its Makefile (`6.12.118`).
    pub version: String,
    /// The patches applied, in order, by file.
    pub patches: Vec<PathBuf>,
    /// Files the patches also touch, which the model does not read.
    pub ignored_files: Vec<String>,
    /// The functions compiled, in file order.
    pub functions: Vec<String>,
    /// The step comments found (`/* step N: ... */`), in order.
    pub steps: Vec<u32>,
}

/// `collapse_pte_mapped_thp()` as compiled from one tree and its patches.
pub struct KernelFunction {
    name: &'static str,
    summary: &'static str,
    mmap_lock: MmapLock,
    compiled: compile::Compiled,
    /// What it was made from.
    pub provenance: Provenance,
}

impl KernelFunction {
    /// Read, patch, extract, compile and load the function of the tree
    /// at `source` with `patches` applied in order. Its name is
    /// `linux-<version>`, followed by `+<patch>` for each patch.
    pub fn load(source: &Path, patches: &[PathBuf]) -> Result<KernelFunction, KernelCError> {
        Self::from_tree(source::open(source)?, patches)
    }

    /// [`KernelFunction::load`] from a tree already read.
    pub fn from_tree(tree: source::KernelTree, patches: &[PathBuf]) -> Result<KernelFunction, KernelCError> {
        let source = tree.origin.as_path();
        let patch_files = patches.iter().map(|p| patch::KernelPatch::read(p)).collect::<Result<Vec<_>, _>>()?;
        let applied = patch::apply(&tree.khugepaged_c, FILE, &patch_files)?;
        let extracted = extract::extract(&applied.text, FILE, FUNCTION, &compile::provided_by_compat)?;
        let compiled = compile::compile(&extracted)?;
        let mut name = format!("linux-{}", tree.version);
        for p in &patch_files {
            name.push('+');
            name.push_str(&p.name);
        }
        // Before v6.6 the caller held mmap_lock for write, and the
        // function asserted it: read the assertion from the source.
        let mmap_lock = if extracted.c.contains("mmap_assert_write_locked") { MmapLock::Write } else { MmapLock::Read };
        let summary = format!(
            "the kernel's own {FUNCTION}() from {}{}, compiled against the compat layer",
            source.display(),
            if patch_files.is_empty() {
                String::new()
            } else {
                format!(" with {}", patch_files.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(", "))
            }
        );
        let provenance = Provenance {
            source: source.to_path_buf(),
            version: tree.version.to_string(),
            patches: patches.to_vec(),
            ignored_files: applied.ignored_files.iter().map(|(patch, file)| format!("{patch}: {file}")).collect(),
            functions: extracted.functions.clone(),
            steps: extracted.steps.clone(),
        };
        Ok(KernelFunction {
            // A handful per process at most (one per --kernel-source run,
            // a few in the tests): leaked to give the 'static names the
            // registry and the reports keep.
            name: Box::leak(name.into_boxed_str()),
            summary: Box::leak(summary.into_boxed_str()),
            mmap_lock,
            compiled,
            provenance,
        })
    }

    /// How long compiling and loading took.
    pub fn compile_time(&self) -> Duration {
        self.compiled.compile_time
    }

    /// gcc's warnings (`-Wall`), empty if none.
    pub fn warnings(&self) -> &str {
        &self.compiled.warnings
    }

    /// Its registry entry: `-p linux-6.12.118` (or `-p kernel`, which the
    /// command line maps to it) builds it.
    pub fn entry(self) -> PolicyEntry {
        runtime_entry(self)
    }
}

impl RuntimePolicy for KernelFunction {
    fn name(&self) -> &'static str {
        self.name
    }

    fn summary(&self) -> &'static str {
        self.summary
    }

    fn mmap_lock(&self) -> MmapLock {
        self.mmap_lock
    }

    fn collapse<E: Engine>(&self, cx: &mut Cx<'_, E>, haddr: u64, install_pmd: bool) -> ScanResult {
        self.compiled.call(cx, haddr, install_pmd)
    }
}
