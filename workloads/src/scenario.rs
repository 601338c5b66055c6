//! A workload's configuration: address space, actors, rates, seed.
//!
//! A [`Scenario`] is what a preset returns and what a scenario file holds
//! (TOML, every key optional, unknown keys rejected). `set` overrides one
//! key from the command line with exactly the checks a file gets, and
//! [`Scenario::validate`] checks ranges and combinations before a run.

use bench_core::mm::{Layout, RANGES_PER_PMD_TABLE, VM_SHARED, VM_UFFD_MINOR, VM_UFFD_MISSING, VM_UFFD_WP};
use bench_core::pte::PTRS_PER_PTE;
use bench_core::{FileKind, MmConfig, Role};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::Path;

/// Most collapse ranges a scenario may ask for.
pub const MAX_RANGES: u32 = 4096;
/// Most threads (model CPUs) a scenario may ask for.
pub const MAX_THREADS: u32 = 1024;
/// Longest pace or neighbour hold, ns (1 s).
pub const MAX_WAIT_NS: u64 = 1_000_000_000;
/// Largest anonymous page pool (64-byte descriptors: 256 MiB).
pub const MAX_ANON_PAGES: u32 = 1 << 22;
/// Most spare PTE tables (4 KiB each: 256 MiB).
pub const MAX_SPARE_TABLES: u32 = 1 << 16;

/// Why a scenario could not be loaded, overridden or accepted.
///
/// Displayed as `origin: field: message`, leaving out what is unknown
/// (`scenario.toml:3: unknown field ...`, `threads.uffd: unknown key ...`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ScenarioError {
    /// The file (and line) or preset the scenario came from, when known.
    pub origin: Option<String>,
    /// The dotted key at fault, when one is.
    pub field: Option<String>,
    /// What is wrong and what is allowed.
    pub message: String,
}

impl ScenarioError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        ScenarioError { origin: None, field: None, message: message.into() }
    }

    pub(crate) fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        ScenarioError { field: Some(field.into()), ..Self::new(message) }
    }

    fn from_origin(origin: impl Into<String>, message: impl Into<String>) -> Self {
        ScenarioError { origin: Some(origin.into()), ..Self::new(message) }
    }
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for part in [&self.origin, &self.field].into_iter().flatten() {
            write!(f, "{part}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// MAP_PRIVATE or MAP_SHARED, for every VMA of the scenario.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VmaShare {
    /// `MAP_PRIVATE`: writes COW into anonymous copies; uffd fills install
    /// anonymous pages under `ptl` alone.
    Private,
    /// `MAP_SHARED` (`VM_SHARED`): no anonymous pages.
    Shared,
}

/// Which userfaultfd registration an armed VMA has.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UffdMode {
    /// `VM_UFFD_MISSING`.
    Missing,
    /// `VM_UFFD_MINOR`.
    Minor,
    /// `VM_UFFD_WP` (collapse gives up with `SCAN_PTE_UFFD_WP`).
    Wp,
}

impl UffdMode {
    fn vm_flag(self) -> u32 {
        match self {
            UffdMode::Missing => VM_UFFD_MISSING,
            UffdMode::Minor => VM_UFFD_MINOR,
            UffdMode::Wp => VM_UFFD_WP,
        }
    }
}

/// Which caller of `collapse_pte_mapped_thp()` the collapsers model.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CollapseMode {
    /// khugepaged's scan: retract the table, leave the PMD none
    /// (`install_pmd = false`).
    Khugepaged,
    /// `MADV_COLLAPSE`: map the huge page by PMD (`install_pmd = true`).
    MadvCollapse,
}

impl CollapseMode {
    /// The `install_pmd` argument this caller passes.
    pub fn install_pmd(self) -> bool {
        self == CollapseMode::MadvCollapse
    }
}

/// The actor kinds in CPU order: collapsers take the first CPUs, then
/// faulters, and so on (the order of [`Threads`]' keys).
pub const ACTOR_ROLES: [Role; 11] = [
    Role::Collapse,
    Role::Faulter,
    Role::Uffd,
    Role::Cow,
    Role::Swap,
    Role::Migrate,
    Role::Neighbour,
    Role::Reader,
    Role::Marker,
    Role::PtReclaim,
    Role::Retract,
];

/// Threads (model CPUs) per actor kind. A `[threads]` table that leaves a
/// key out gets the default: one collapser, one reader, nothing else.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Threads {
    /// Collapsers (`collapse_pte_mapped_thp()` callers); at least one.
    pub collapsers: u32,
    /// Page-cache faulters (`filemap_map_pages`).
    pub faulters: u32,
    /// UFFDIO_COPY fillers on private uffd-armed VMAs.
    pub uffd: u32,
    /// COW writers on private VMAs.
    pub cow: u32,
    /// Swap-out / swap-in of anonymous pages.
    pub swap: u32,
    /// Migration of anonymous pages.
    pub migrate: u32,
    /// `pml` neighbours (other huge PMDs of the same PMD table).
    pub neighbours: u32,
    /// TLB readers.
    pub readers: u32,
    /// Guard-marker inserters (ptl-only).
    pub markers: u32,
    /// `MADV_DONTNEED` callers that free the PTE tables they empty.
    pub reclaimers: u32,
    /// `retract_page_tables()` callers (another VMA's `collapse_file()`).
    pub retractors: u32,
}

impl Threads {
    /// The keys of a `[threads]` (and `[pace]`) table.
    pub const KEYS: [&'static str; 11] = [
        "collapsers",
        "faulters",
        "uffd",
        "cow",
        "swap",
        "migrate",
        "neighbours",
        "readers",
        "markers",
        "reclaimers",
        "retractors",
    ];

    /// Threads of the actor kind that runs as `role` (0 for roles no
    /// actor runs as).
    pub fn of(&self, role: Role) -> u32 {
        match role {
            Role::Collapse => self.collapsers,
            Role::Faulter => self.faulters,
            Role::Uffd => self.uffd,
            Role::Cow => self.cow,
            Role::Swap => self.swap,
            Role::Migrate => self.migrate,
            Role::Neighbour => self.neighbours,
            Role::Reader => self.readers,
            Role::Marker => self.markers,
            Role::PtReclaim => self.reclaimers,
            Role::Retract => self.retractors,
            Role::Restore | Role::Oracle => 0,
        }
    }

    /// Threads in all (saturating: a file may ask for any count, and
    /// validation refuses more than [`MAX_THREADS`]).
    pub fn total(&self) -> u32 {
        ACTOR_ROLES.iter().fold(0, |sum: u32, &r| sum.saturating_add(self.of(r)))
    }

    fn of_mut(&mut self, role: Role) -> &mut u32 {
        match role {
            Role::Collapse => &mut self.collapsers,
            Role::Faulter => &mut self.faulters,
            Role::Uffd => &mut self.uffd,
            Role::Cow => &mut self.cow,
            Role::Swap => &mut self.swap,
            Role::Migrate => &mut self.migrate,
            Role::Neighbour => &mut self.neighbours,
            Role::Reader => &mut self.readers,
            Role::Marker => &mut self.markers,
            Role::PtReclaim => &mut self.reclaimers,
            Role::Retract => &mut self.retractors,
            Role::Restore | Role::Oracle => unreachable!("{role} is not an actor kind"),
        }
    }

    /// The mix fitted to `cores` threads (a native run that must not have
    /// more threads than cores): the collapsers stay (at most `cores` of
    /// them) and the other threads go to the other actor kinds in
    /// proportion to their counts here, by largest remainder (ties to the
    /// kind earlier in CPU order). A mix with only collapsers is filled
    /// with readers.
    pub fn fitted_to(&self, cores: u32) -> Threads {
        let collapsers = self.collapsers.min(cores);
        self.with_collapsers(collapsers, cores)
    }

    /// The mix on a machine of `cpus` CPUs ([`Scenario::scaled_to`]):
    /// every kind in proportion to its count here, the collapsers too (at
    /// least one), by largest remainder. A mix with only collapsers is
    /// filled with readers.
    pub fn scaled_to(&self, cpus: u32) -> Threads {
        let share = u64::from(self.collapsers) * u64::from(cpus);
        let total = u64::from(self.total().max(1));
        let collapsers = ((share + total / 2) / total).clamp(1, u64::from(cpus)) as u32;
        self.with_collapsers(collapsers, cpus)
    }

    /// `collapsers` collapsers, and the other `cpus - collapsers` threads
    /// spread over the other kinds in proportion to their counts here.
    fn with_collapsers(&self, collapsers: u32, cpus: u32) -> Threads {
        let spare = u64::from(cpus - collapsers);
        let mut kinds: Vec<(Role, u64)> =
            ACTOR_ROLES[1..].iter().map(|&r| (r, u64::from(self.of(r)))).filter(|k| k.1 > 0).collect();
        if kinds.is_empty() {
            kinds.push((Role::Reader, 1));
        }
        let weight: u64 = kinds.iter().map(|k| k.1).sum();
        let mut scaled = Threads { collapsers, readers: 0, ..Threads::default() };
        let mut remainders = vec![];
        for (i, &(role, w)) in kinds.iter().enumerate() {
            *scaled.of_mut(role) = (spare * w / weight) as u32;
            remainders.push((std::cmp::Reverse(spare * w % weight), i));
        }
        remainders.sort();
        let short = cpus - scaled.total();
        for &(_, i) in remainders.iter().take(short as usize) {
            *scaled.of_mut(kinds[i].0) += 1;
        }
        scaled
    }

    /// The actor kinds present, `+`-joined in CPU order (`collapse+uffd`).
    pub fn kinds(&self) -> String {
        ACTOR_ROLES.iter().filter(|&&r| self.of(r) > 0).map(|r| r.name()).collect::<Vec<_>>().join("+")
    }
}

impl Default for Threads {
    fn default() -> Self {
        Threads {
            collapsers: 1,
            faulters: 0,
            uffd: 0,
            cow: 0,
            swap: 0,
            migrate: 0,
            neighbours: 0,
            readers: 1,
            markers: 0,
            reclaimers: 0,
            retractors: 0,
        }
    }
}

/// Think time between one actor's operations, ns, per actor kind (the keys
/// of [`Threads`]); 0 runs operations back to back.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Pace {
    /// Between a collapser's collapse-and-restore rounds.
    pub collapsers: u64,
    /// Between page-cache faults.
    pub faulters: u64,
    /// Between UFFDIO_COPYs.
    pub uffd: u64,
    /// Between COW faults.
    pub cow: u64,
    /// Between swap-outs and swap-ins.
    pub swap: u64,
    /// Between migrations.
    pub migrate: u64,
    /// Between a neighbour's `pml` holds.
    pub neighbours: u64,
    /// Between reads.
    pub readers: u64,
    /// Between marker insertions and removals.
    pub markers: u64,
    /// Between MADV_DONTNEED calls.
    pub reclaimers: u64,
    /// Between table retractions.
    pub retractors: u64,
}

impl Pace {
    /// Think time of the actor kind that runs as `role`.
    pub fn of(&self, role: Role) -> u64 {
        match role {
            Role::Collapse => self.collapsers,
            Role::Faulter => self.faulters,
            Role::Uffd => self.uffd,
            Role::Cow => self.cow,
            Role::Swap => self.swap,
            Role::Migrate => self.migrate,
            Role::Neighbour => self.neighbours,
            Role::Reader => self.readers,
            Role::Marker => self.markers,
            Role::PtReclaim => self.reclaimers,
            Role::Retract => self.retractors,
            Role::Restore | Role::Oracle => 0,
        }
    }
}

/// A workload: the address space, the actors on it, and the seed.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Scenario {
    /// Preset or scenario name (a file without one takes its file stem).
    #[serde(default)]
    pub name: String,
    /// Collapse ranges (2 MiB VMAs, one huge page each), 1..=4096.
    pub ranges: u32,
    /// Present PTEs of 512 in a range's table when it is (re)populated.
    pub density: u32,
    /// What backs the mapping: `shmem` (tmpfs) or `file`.
    pub file: FileKind,
    /// `private` or `shared`, for every VMA.
    pub share: VmaShare,
    /// Fraction of ranges whose VMA is uffd-armed: the first
    /// ceil(fraction * ranges) ranges.
    pub uffd_fraction: f64,
    /// The registration of armed VMAs.
    pub uffd_mode: UffdMode,
    /// Pages per UFFDIO_COPY (1..=512): the uffd actor copies this many
    /// pages from the address it picks, to the end of the range at most,
    /// one page at a time as `mfill_atomic()` does, stopping at the first
    /// page not copied (an entry already there is -EEXIST). Outside a
    /// collapse's window that is the one hole it picked; inside it, the
    /// run of entries the collapse cleared.
    pub uffd_copy_pages: u32,
    /// One `pml` per PMD table (else `mm->page_table_lock`).
    pub split_pmd_ptlocks: bool,
    /// One `ptl` per PTE table (else `mm->page_table_lock`).
    pub split_pte_ptlocks: bool,
    /// khugepaged (leave the PMD none) or MADV_COLLAPSE (install it).
    pub collapse_mode: CollapseMode,
    /// Threads per actor kind.
    pub threads: Threads,
    /// Think time per actor kind, ns.
    pub pace: Pace,
    /// How long a neighbour holds `pml` per operation, ns.
    pub neighbour_hold_ns: u64,
    /// Every random choice comes from this (0..=i64::MAX: TOML integers
    /// are signed).
    pub seed: u64,
    /// Run the oracles (stale-TLB clock, per-collapse accounting).
    pub oracles: bool,
    /// Anonymous page pool; None: 4096 + 1024 per range.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub anon_pages: Option<u32>,
    /// PTE tables beyond one per range; None: 2 per range + 64.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spare_tables: Option<u32>,
    /// Ranges laid out in each PMD table (so sharing its `pml` and its
    /// neighbours), 1..=511: 511, one contiguous mapping, unless the
    /// workload was scaled to a machine ([`Scenario::scaled_to`] gives each
    /// copy a PMD table of its own).
    pub ranges_per_pmd_table: u32,
    /// Set when this is a preset's exhaustive scope
    /// ([`crate::exhaustive::scope`]), never by a file or an override.
    #[serde(skip)]
    pub scope: Option<ExhaustiveScope>,
}

/// How the actors of an exhaustive scope differ from a sampled run's: each
/// aims every operation at entry `target` of its range, and the collapser
/// leaves its range as its one collapse left it (no restore: the scope
/// ends with the collapse, and a restore would only add steps that race
/// nothing the scope asks about).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct ExhaustiveScope {
    /// The PTE index every actor aims at.
    pub target: u32,
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario {
            name: "custom".into(),
            ranges: 4,
            density: 512,
            file: FileKind::Shmem,
            share: VmaShare::Private,
            uffd_fraction: 0.0,
            uffd_mode: UffdMode::Missing,
            uffd_copy_pages: 16,
            split_pmd_ptlocks: true,
            split_pte_ptlocks: true,
            collapse_mode: CollapseMode::MadvCollapse,
            threads: Threads::default(),
            pace: Pace::default(),
            neighbour_hold_ns: 1000,
            seed: 1,
            oracles: true,
            anon_pages: None,
            spare_tables: None,
            ranges_per_pmd_table: RANGES_PER_PMD_TABLE,
            scope: None,
        }
    }
}

impl Scenario {
    /// This workload on a machine of `cpus` CPUs (`--cpus`, the CPU
    /// sweep): its actors and its address space grown or shrunk together,
    /// as if `cpus / threads` copies of it ran side by side in one mm.
    /// Every actor kind, the collapsers among them (at least one), keeps
    /// its share of the CPUs ([`Threads::scaled_to`]), and the ranges keep
    /// theirs (at least one per collapser), so each range sees the
    /// inserters and the collapses it sees here, and a 64-CPU run collapses
    /// about as often successfully as the preset does. What grows with the
    /// CPUs is what a bigger machine shares: `mm_cpumask`, whose every CPU
    /// a flush interrupts. Each copy's ranges lie in a PMD table of their
    /// own (a 1 GiB each, as copies of a mapping side by side would), so
    /// each copy's collapses and neighbours share its `pml`, as the preset's
    /// do, and no `pml` serves every copy. A khugepaged preset gets a collapser per copy too,
    /// where a real machine has one khugepaged thread: read those as
    /// copies of the workload, each with its own collapse caller. An
    /// explicit `anon_pages` or `spare_tables` is scaled with the ranges.
    pub fn scaled_to(&self, cpus: u32) -> Scenario {
        let threads = self.threads.scaled_to(cpus);
        let copies = |n: u32| -> u32 {
            let share = u64::from(n) * u64::from(cpus);
            let total = u64::from(self.threads.total().max(1));
            ((share + total / 2) / total) as u32
        };
        Scenario {
            ranges: copies(self.ranges).max(threads.collapsers).max(1),
            anon_pages: self.anon_pages.map(|n| copies(n).max(1)),
            spare_tables: self.spare_tables.map(|n| copies(n).max(1)),
            ranges_per_pmd_table: self.ranges.clamp(1, self.ranges_per_pmd_table),
            threads,
            ..self.clone()
        }
    }

    /// The top-level keys of a scenario file.
    pub const KEYS: [&'static str; 19] = [
        "name",
        "ranges",
        "density",
        "file",
        "share",
        "uffd_fraction",
        "uffd_mode",
        "uffd_copy_pages",
        "split_pmd_ptlocks",
        "split_pte_ptlocks",
        "collapse_mode",
        "threads",
        "pace",
        "neighbour_hold_ns",
        "seed",
        "oracles",
        "anon_pages",
        "spare_tables",
        "ranges_per_pmd_table",
    ];

    /// Parse a scenario file's text. `origin` names it in errors (a path);
    /// a scenario without a `name` takes the origin's file stem. Parsing
    /// does not validate: apply overrides, then call [`Scenario::validate`].
    pub fn from_toml_str(s: &str, origin: &str) -> Result<Scenario, ScenarioError> {
        let mut scenario: Scenario = toml::from_str(s).map_err(|e| {
            let at = match e.span() {
                Some(span) => format!("{origin}:{}", line_of(s, span.start)),
                None => origin.to_owned(),
            };
            ScenarioError::from_origin(at, e.message())
        })?;
        if scenario.name.is_empty() {
            scenario.name =
                Path::new(origin).file_stem().map_or_else(|| "scenario".into(), |s| s.to_string_lossy().into_owned());
        }
        Ok(scenario)
    }

    /// Read and parse a scenario file (see [`Scenario::from_toml_str`]).
    pub fn from_toml_file(path: impl AsRef<Path>) -> Result<Scenario, ScenarioError> {
        let path = path.as_ref();
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ScenarioError::from_origin(origin.as_str(), format!("cannot read: {e}")))?;
        Self::from_toml_str(&text, &origin)
    }

    /// Override one key: `density=256` is `set("density", "256")`; nested
    /// keys are dotted (`threads.uffd`, `pace.readers`). The value is read
    /// as a TOML value (`256`, `true`, `0.5`, `"x"`), or as a bare string
    /// when it is not one (`khugepaged`). Goes through the same
    /// deserializer as a file, so bad values get the same errors.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ScenarioError> {
        let mut root = toml::Value::try_from(&*self)
            .map_err(|e| ScenarioError::field(key, format!("cannot serialize scenario: {e}")))?;
        let (parents, leaf) = match key.rsplit_once('.') {
            Some((parents, leaf)) => (parents.split('.').collect(), leaf),
            None => (vec![], key),
        };
        let unknown = |part: &str, allowed: &[&str]| {
            ScenarioError::field(key, format!("unknown key `{part}`; allowed: {}", allowed.join(", ")))
        };
        let mut table = root.as_table_mut().expect("a scenario serializes to a table");
        let mut allowed: &[&str] = &Self::KEYS;
        for part in parents {
            if !allowed.contains(&part) {
                return Err(unknown(part, allowed));
            }
            table = match table.get_mut(part) {
                Some(toml::Value::Table(t)) => t,
                _ => {
                    return Err(ScenarioError::field(key, format!("`{part}` is not a table; set it as `{part}=VALUE`")))
                }
            };
            allowed = &Threads::KEYS;
        }
        if !allowed.contains(&leaf) {
            return Err(unknown(leaf, allowed));
        }
        let parsed = value.parse::<toml::Value>().unwrap_or_else(|_| toml::Value::String(value.to_owned()));
        table.insert(leaf.to_owned(), parsed);
        *self = root.try_into().map_err(|e: toml::de::Error| ScenarioError::field(key, e.message()))?;
        Ok(())
    }

    /// Check every value's range and the combinations the actors need.
    /// Each error names the field and what is allowed.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        let bad = |field: &str, message: String| Err(ScenarioError::field(field, message));
        if !(1..=MAX_RANGES).contains(&self.ranges) {
            return bad("ranges", format!("{}; allowed 1..={MAX_RANGES}", self.ranges));
        }
        if self.density > 512 {
            return bad("density", format!("{}; allowed 0..=512 present PTEs per table", self.density));
        }
        if !(0.0..=1.0).contains(&self.uffd_fraction) {
            return bad("uffd_fraction", format!("{}; allowed 0.0..=1.0", self.uffd_fraction));
        }
        if self.split_pmd_ptlocks && !self.split_pte_ptlocks {
            return bad(
                "split_pmd_ptlocks",
                "true needs split_pte_ptlocks = true (USE_SPLIT_PMD_PTLOCKS implies USE_SPLIT_PTE_PTLOCKS)".into(),
            );
        }
        let t = &self.threads;
        if !(1..=self.ranges).contains(&t.collapsers) {
            return bad(
                "threads.collapsers",
                format!(
                    "{}; allowed 1..={} (at least one, at most one per range: each collapser owns its ranges)",
                    t.collapsers, self.ranges
                ),
            );
        }
        if !(1..=MAX_THREADS).contains(&t.total()) {
            return bad("threads", format!("{} threads in all; allowed 1..={MAX_THREADS}", t.total()));
        }
        if t.uffd > 0 && self.private_uffd_ranges().is_empty() {
            return bad(
                "threads.uffd",
                format!(
                    "{} uffd fillers but no private uffd-armed VMA (set uffd_fraction > 0 and share = private)",
                    t.uffd
                ),
            );
        }
        if self.share == VmaShare::Shared {
            for (key, n, what) in [
                ("threads.cow", t.cow, "COW writers"),
                ("threads.swap", t.swap, "swappers"),
                ("threads.migrate", t.migrate, "migrators"),
            ] {
                if n > 0 {
                    return bad(
                        key,
                        format!("{n} {what} but no private VMA: anonymous pages exist only in private mappings (set share = private)"),
                    );
                }
            }
        }
        if !(1..=PTRS_PER_PTE as u32).contains(&self.uffd_copy_pages) {
            return bad("uffd_copy_pages", format!("{}; allowed 1..={PTRS_PER_PTE} pages", self.uffd_copy_pages));
        }
        if self.neighbour_hold_ns > MAX_WAIT_NS {
            return bad("neighbour_hold_ns", format!("{}; allowed 0..={MAX_WAIT_NS} (1 s)", self.neighbour_hold_ns));
        }
        for (key, role) in Threads::KEYS.iter().zip(ACTOR_ROLES) {
            let ns = self.pace.of(role);
            if ns > MAX_WAIT_NS {
                return bad(&format!("pace.{key}"), format!("{ns} ns; allowed 0..={MAX_WAIT_NS} (1 s)"));
            }
        }
        if i64::try_from(self.seed).is_err() {
            return bad("seed", format!("{}; allowed 0..={} (TOML integers are signed 64-bit)", self.seed, i64::MAX));
        }
        if let Some(n) = self.anon_pages {
            if !(1..=MAX_ANON_PAGES).contains(&n) {
                return bad("anon_pages", format!("{n}; allowed 1..={MAX_ANON_PAGES}"));
            }
        }
        if let Some(n) = self.spare_tables {
            if n > MAX_SPARE_TABLES {
                return bad("spare_tables", format!("{n}; allowed 0..={MAX_SPARE_TABLES}"));
            }
        }
        if !(1..=RANGES_PER_PMD_TABLE).contains(&self.ranges_per_pmd_table) {
            let n = self.ranges_per_pmd_table;
            return bad("ranges_per_pmd_table", format!("{n}; allowed 1..={RANGES_PER_PMD_TABLE}"));
        }
        Ok(())
    }

    /// Ranges whose VMA is uffd-armed: the first ceil(uffd_fraction * ranges).
    pub fn uffd_armed_ranges(&self) -> u32 {
        // Less a hair, so 0.3 * 10 (3.0000000000000004) arms 3, not 4.
        let n = (self.uffd_fraction * self.ranges as f64 - 1e-9).ceil();
        (n.max(0.0) as u32).min(self.ranges)
    }

    /// The `VM_*` flags of range `r`'s VMA.
    pub fn vma_flags(&self, r: u32) -> u32 {
        let shared = match self.share {
            VmaShare::Shared => VM_SHARED,
            VmaShare::Private => 0,
        };
        let uffd = if r < self.uffd_armed_ranges() { self.uffd_mode.vm_flag() } else { 0 };
        shared | uffd
    }

    /// Ranges a uffd filler works on: private and uffd-armed.
    pub fn private_uffd_ranges(&self) -> Vec<u32> {
        match self.share {
            VmaShare::Private => (0..self.uffd_armed_ranges()).collect(),
            VmaShare::Shared => vec![],
        }
    }

    /// The model configuration: one VMA per range, one CPU per thread.
    pub fn mm_config(&self) -> MmConfig {
        MmConfig {
            ranges: (0..self.ranges).map(|r| self.vma_flags(r)).collect(),
            file: self.file,
            split_pmd_ptlocks: self.split_pmd_ptlocks,
            split_pte_ptlocks: self.split_pte_ptlocks,
            cpus: self.threads.total(),
            density: self.density,
            anon_pages: self.anon_pages.unwrap_or(4096 + 1024 * self.ranges),
            spare_tables: self.spare_tables.unwrap_or(2 * self.ranges + 64),
            oracles: self.oracles,
            ranges_per_pmd_table: self.ranges_per_pmd_table,
        }
    }

    /// What a run of this scenario needs in memory, estimated from its
    /// configuration before anything is allocated.
    pub fn memory_need(&self) -> MemoryNeed {
        let cpus = u64::from(self.threads.total());
        MemoryNeed {
            model: Layout::of(&self.mm_config()).bytes(),
            stacks: cpus * THREAD_STACK_BYTES,
            histograms: cpus * HISTOGRAM_BYTES_PER_CPU,
        }
    }

    /// Refuse a configuration whose [`Scenario::memory_need`] exceeds
    /// `available` bytes (the machine's MemAvailable; None: unknown, no
    /// check), naming what to lower and by how much, rather than let the
    /// kernel's OOM killer end the run.
    pub fn check_memory(&self, available: Option<u64>) -> Result<(), ScenarioError> {
        let Some(available) = available else { return Ok(()) };
        let need = self.memory_need();
        if need.total() <= available {
            return Ok(());
        }
        let mib = |b: u64| b.div_ceil(1 << 20);
        let per_thread = THREAD_STACK_BYTES + HISTOGRAM_BYTES_PER_CPU;
        let (field, advice) = if need.model > available {
            ("ranges", "lower ranges, anon_pages or spare_tables".to_owned())
        } else {
            let fit = (available - need.model) / per_thread;
            ("threads", format!("lower the thread count: at most {fit} fit beside this model"))
        };
        Err(ScenarioError::field(
            field,
            format!(
                "this configuration needs about {} MiB (model {} MiB for {} ranges, {} anonymous pages and {} spare \
                 tables; {} threads x {} MiB of stack and histograms), but only {} MiB are available \
                 (MemAvailable); {advice}",
                mib(need.total()),
                mib(need.model),
                self.ranges,
                self.mm_config().anon_pages,
                self.mm_config().spare_tables,
                self.threads.total(),
                mib(per_thread),
                mib(available),
            ),
        ))
    }
}

/// Stack reserved per actor thread (Rust's default for spawned threads).
const THREAD_STACK_BYTES: u64 = 2 << 20;
/// Histograms one CPU may allocate: hdrhistogram with 2 significant
/// digits over 1 ns..60 s keeps 3840 counters (30 KiB); a CPU has at most
/// one per collapse result, two per (role, lock class) and one per role.
const HISTOGRAM_BYTES_PER_CPU: u64 = 96 * 3840 * 8;

/// The memory a run needs, by part, in bytes.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct MemoryNeed {
    /// The model: `struct page` array, PTE and PMD tables, locks, TLBs.
    pub model: u64,
    /// Actor threads' stacks.
    pub stacks: u64,
    /// Latency histograms, at most.
    pub histograms: u64,
}

impl MemoryNeed {
    /// All of it.
    pub fn total(&self) -> u64 {
        self.model + self.stacks + self.histograms
    }
}

/// The machine's available memory in bytes (`MemAvailable` in
/// /proc/meminfo), or None where that cannot be read.
pub fn available_memory() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// 1-based line of byte offset `at` in `s`.
fn line_of(s: &str, at: usize) -> usize {
    s.as_bytes()[..at.min(s.len())].iter().filter(|&&b| b == b'\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fitting_keeps_the_collapsers_and_the_mix() {
        let pml = crate::preset("pml-contended").unwrap().threads;
        assert_eq!(pml.fitted_to(5), pml);
        let two = pml.fitted_to(2);
        assert_eq!((two.collapsers, two.neighbours, two.total()), (1, 1, 2));
        assert_eq!(two.kinds(), "collapse+neighbour");
        let many = pml.fitted_to(64);
        assert_eq!((many.collapsers, many.uffd, many.neighbours, many.readers), (1, 16, 31, 16));
        assert_eq!(pml.fitted_to(1), Threads { collapsers: 1, readers: 0, ..Threads::default() });
        let alone = Threads { readers: 0, ..Threads::default() }.fitted_to(3);
        assert_eq!((alone.collapsers, alone.readers), (1, 2));
        let mixed = crate::preset("mixed").unwrap().threads.fitted_to(256);
        assert_eq!((mixed.total(), mixed.collapsers, mixed.faulters, mixed.markers), (256, 1, 32, 31));
        let uffd = crate::preset("uffd-private").unwrap().threads.fitted_to(2);
        assert_eq!(uffd.kinds(), "collapse+uffd");
    }

    #[test]
    fn scaling_to_a_machine_grows_every_actor_and_the_ranges_together() {
        let pml = crate::preset("pml-contended").unwrap();
        assert_eq!(pml.scaled_to(5).threads, pml.threads);
        assert_eq!(pml.scaled_to(5).ranges, pml.ranges);
        let many = pml.scaled_to(64);
        // 12.8 copies of 1 collapser, 1 uffd, 2 neighbours, 1 reader and
        // 4 ranges.
        let t = &many.threads;
        assert_eq!((t.total(), t.collapsers, t.uffd, t.neighbours, t.readers), (64, 13, 13, 25, 13));
        assert_eq!(many.ranges, 51);
        many.validate().unwrap();
        // Each copy's 4 ranges in a PMD table of their own: 13 tables, 13
        // pml, as on a machine running 13 copies of the mapping.
        assert_eq!(many.ranges_per_pmd_table, 4);
        assert_eq!(bench_core::mm::Layout::of(&many.mm_config()).pmd_tables, 13);
        assert_eq!(pml.ranges_per_pmd_table, RANGES_PER_PMD_TABLE, "a preset is one contiguous mapping");
        let two = pml.scaled_to(2);
        assert_eq!((two.threads.collapsers, two.threads.total(), two.ranges), (1, 2, 2));
        let mixed = crate::preset("mixed").unwrap().scaled_to(64);
        assert_eq!((mixed.threads.total(), mixed.threads.collapsers, mixed.ranges), (64, 7, 57));
        // Every collapser has a range of its own.
        let lone = Scenario { ranges: 1, ..crate::preset("uffd-private").unwrap() }.scaled_to(30);
        assert!(lone.ranges >= lone.threads.collapsers, "{lone:?}");
    }

    #[test]
    fn keys_match_what_serde_writes() {
        let s = Scenario { anon_pages: Some(1), spare_tables: Some(1), ..Scenario::default() };
        let toml::Value::Table(t) = toml::Value::try_from(&s).unwrap() else {
            panic!("a scenario serializes to a table")
        };
        let mut keys: Vec<&str> = t.keys().map(String::as_str).collect();
        let mut want = Scenario::KEYS.to_vec();
        keys.sort_unstable();
        want.sort_unstable();
        assert_eq!(keys, want);
        for sub in ["threads", "pace"] {
            let mut keys: Vec<&str> = t[sub].as_table().unwrap().keys().map(String::as_str).collect();
            let mut want = Threads::KEYS.to_vec();
            keys.sort_unstable();
            want.sort_unstable();
            assert_eq!(keys, want, "[{sub}]");
        }
    }

    #[test]
    fn set_overrides_top_level_and_nested_keys() {
        let mut s = Scenario::default();
        s.set("density", "256").unwrap();
        s.set("threads.uffd", "2").unwrap();
        s.set("pace.readers", "1000").unwrap();
        s.set("collapse_mode", "khugepaged").unwrap();
        s.set("uffd_fraction", "1").unwrap();
        s.set("anon_pages", "100").unwrap();
        s.set("name", "x y").unwrap();
        s.set("file", "\"file\"").unwrap();
        assert_eq!(s.density, 256);
        assert_eq!(s.threads.uffd, 2);
        assert_eq!(s.threads.collapsers, 1, "other keys kept");
        assert_eq!(s.pace.readers, 1000);
        assert_eq!(s.collapse_mode, CollapseMode::Khugepaged);
        assert_eq!(s.uffd_fraction, 1.0);
        assert_eq!(s.anon_pages, Some(100));
        assert_eq!(s.name, "x y");
        assert_eq!(s.file, FileKind::File);
    }

    #[test]
    fn set_unknown_key_names_it_and_the_allowed_keys() {
        let mut s = Scenario::default();
        let e = s.set("threads.ufd", "1").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("threads.ufd"));
        assert_eq!(
            e.to_string(),
            "threads.ufd: unknown key `ufd`; allowed: collapsers, faulters, uffd, cow, swap, migrate, neighbours, readers, markers, reclaimers, retractors"
        );
        let e = s.set("densty", "1").unwrap_err().to_string();
        assert!(e.starts_with("densty: unknown key `densty`; allowed: name, ranges, density,"), "{e}");
        let e = s.set("density.x", "1").unwrap_err().to_string();
        assert_eq!(e, "density.x: `density` is not a table; set it as `density=VALUE`");
        let e = s.set("threads.uffd.x", "1").unwrap_err().to_string();
        assert_eq!(e, "threads.uffd.x: `uffd` is not a table; set it as `uffd=VALUE`");
        assert_eq!(s, Scenario::default(), "a failed set changes nothing");
    }

    #[test]
    fn set_bad_values_name_the_allowed_values() {
        let mut s = Scenario::default();
        let e = s.set("collapse_mode", "khugepage").unwrap_err().to_string();
        assert!(
            e.starts_with("collapse_mode: unknown variant `khugepage`")
                && e.contains("`khugepaged`")
                && e.contains("`madv-collapse`"),
            "{e}"
        );
        let e = s.set("share", "public").unwrap_err().to_string();
        assert!(e.contains("`private`") && e.contains("`shared`"), "{e}");
        let e = s.set("density", "-1").unwrap_err().to_string();
        assert!(e.starts_with("density: ") && e.contains("u32"), "{e}");
        let e = s.set("threads", "3").unwrap_err().to_string();
        assert!(e.starts_with("threads: "), "{e}");
    }

    #[test]
    fn file_with_unknown_key_names_file_line_and_allowed_keys() {
        let text = "ranges = 2\n[threads]\nufd = 1\n";
        let e = Scenario::from_toml_str(text, "dir/scenario.toml").unwrap_err();
        assert_eq!(e.origin.as_deref(), Some("dir/scenario.toml:3"));
        let msg = e.to_string();
        assert!(msg.starts_with("dir/scenario.toml:3: unknown field `ufd`, expected one of `collapsers`"), "{msg}");
        let e = Scenario::from_toml_str("rangez = 1\n", "s.toml").unwrap_err();
        assert!(e.to_string().contains("`ranges`"), "{e}");
    }

    #[test]
    fn file_fills_defaults_and_takes_its_stem_as_name() {
        let s =
            Scenario::from_toml_str("density = 64\nshare = \"shared\"\n[threads]\nfaulters = 2\n", "x/my-load.toml")
                .unwrap();
        assert_eq!(s.name, "my-load");
        assert_eq!(s.density, 64);
        assert_eq!(s.share, VmaShare::Shared);
        assert_eq!(s.threads.faulters, 2);
        assert_eq!(s.threads.collapsers, 1);
        assert_eq!(s.ranges, Scenario::default().ranges);
        s.validate().unwrap();
        let named = Scenario::from_toml_str("name = \"n\"\n", "x/y.toml").unwrap();
        assert_eq!(named.name, "n");
    }

    #[test]
    fn file_round_trips() {
        let mut s = Scenario::default();
        s.set("spare_tables", "7").unwrap();
        s.set("uffd_fraction", "0.25").unwrap();
        let text = toml::to_string(&s).unwrap();
        assert_eq!(Scenario::from_toml_str(&text, "t.toml").unwrap(), s);
    }

    #[test]
    fn missing_file_names_the_path() {
        let e = Scenario::from_toml_file("/nonexistent/s.toml").unwrap_err();
        assert!(e.to_string().starts_with("/nonexistent/s.toml: cannot read: "), "{e}");
    }

    #[test]
    fn validate_names_the_field() {
        let check = |key: &str, value: &str, want: &str| {
            let mut s = Scenario::default();
            s.set(key, value).unwrap();
            let e = s.validate().unwrap_err();
            assert_eq!(e.field.as_deref(), Some(want), "{e}");
            e.to_string()
        };
        let e = check("density", "513", "density");
        assert!(e.contains("0..=512"), "{e}");
        let e = check("threads.collapsers", "0", "threads.collapsers");
        assert!(e.contains("allowed 1..=4"), "{e}");
        check("threads.collapsers", "5", "threads.collapsers");
        let e = check("threads.uffd", "1", "threads.uffd");
        assert_eq!(
            e,
            "threads.uffd: 1 uffd fillers but no private uffd-armed VMA (set uffd_fraction > 0 and share = private)"
        );
        check("ranges", "0", "ranges");
        check("ranges", "4097", "ranges");
        check("uffd_fraction", "1.5", "uffd_fraction");
        check("pace.markers", "1000000001", "pace.markers");
        check("neighbour_hold_ns", "1000000001", "neighbour_hold_ns");
        check("threads.readers", "1024", "threads");
        check("split_pte_ptlocks", "false", "split_pmd_ptlocks");
        check("anon_pages", "0", "anon_pages");
        let mut s = Scenario { share: VmaShare::Shared, uffd_fraction: 1.0, ..Scenario::default() };
        s.threads.uffd = 1;
        assert_eq!(s.validate().unwrap_err().field.as_deref(), Some("threads.uffd"));
        s.threads.uffd = 0;
        s.threads.cow = 1;
        assert_eq!(s.validate().unwrap_err().field.as_deref(), Some("threads.cow"));
        s.seed = u64::MAX;
        s.threads.cow = 0;
        assert_eq!(s.validate().unwrap_err().field.as_deref(), Some("seed"));
    }

    #[test]
    fn uffd_arms_the_first_ceil_fraction_ranges() {
        let mut s = Scenario { ranges: 10, ..Scenario::default() };
        for (f, n) in [(0.0, 0), (0.3, 3), (0.31, 4), (0.5, 5), (1.0, 10), (0.01, 1)] {
            s.uffd_fraction = f;
            assert_eq!(s.uffd_armed_ranges(), n, "fraction {f}");
        }
        s.uffd_fraction = 0.25;
        s.uffd_mode = UffdMode::Minor;
        let c = s.mm_config();
        assert_eq!(c.ranges[..4], [VM_UFFD_MINOR, VM_UFFD_MINOR, VM_UFFD_MINOR, 0]);
        assert_eq!(s.private_uffd_ranges(), vec![0, 1, 2]);
        s.share = VmaShare::Shared;
        assert_eq!(s.mm_config().ranges[0], VM_SHARED | VM_UFFD_MINOR);
        assert!(s.private_uffd_ranges().is_empty());
        assert_eq!(c.cpus, 2);
        assert_eq!(c.anon_pages, 4096 + 10 * 1024);
        assert_eq!(c.spare_tables, 84);
    }

    #[test]
    fn memory_need_is_checked_against_what_is_available() {
        let s = crate::preset("mixed").unwrap();
        let need = s.memory_need();
        assert!(s.check_memory(None).is_ok(), "unknown: no check");
        assert!(s.check_memory(Some(need.total())).is_ok());
        let e = s.check_memory(Some(need.total() - 1)).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("threads"), "{e}");
        assert!(e.message.contains("MemAvailable") && e.message.contains("at most 8 fit"), "{e}");
        let e = s.check_memory(Some(need.model - 1)).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("ranges"), "{e}");
        assert!(e.message.contains("lower ranges, anon_pages or spare_tables"), "{e}");
        // The most validation allows stays well inside an ordinary machine.
        let most = Scenario {
            ranges: MAX_RANGES,
            anon_pages: Some(MAX_ANON_PAGES),
            spare_tables: Some(MAX_SPARE_TABLES),
            threads: Threads { readers: MAX_THREADS - 1, ..Threads::default() },
            ..Scenario::default()
        };
        most.validate().unwrap();
        assert!(most.memory_need().total() < 6 << 30, "{:?}", most.memory_need());
    }
}
