//! The actors: what runs beside the collapse, each a loop of one kernel
//! path that touches the same page tables.
//!
//! Every actor runs on its own model CPU, makes every random choice from
//! its own ChaCha8 stream (seeded from the scenario's seed and its CPU
//! number) and hands it to the path's one implementation in
//! [`crate::kernel_paths`], which reaches the page tables only through the
//! kernel-named primitives on [`Cx`]; no actor holds a lock between
//! operations. Each operation is timed into the actor's role, then the
//! actor waits out its pace.

use crate::kernel_paths;
use crate::scenario::{Scenario, VmaShare, ACTOR_ROLES};
use bench_core::harness::Harness;
use bench_core::kernel::{Cx, DynPolicy, Engine};
use bench_core::mm::RangeLayout;
use bench_core::pte::{HPAGE_PMD_MASK, PAGE_SIZE, PTRS_PER_PTE};
use bench_core::Role;
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};
use std::sync::Arc;

/// What every actor has: its random stream, the ranges it works on (and
/// where they lie), and its think time.
pub struct ActorState {
    rng: ChaCha8Rng,
    ranges: Vec<u32>,
    layout: RangeLayout,
    pace_ns: u64,
    /// The entry every operation aims at (an exhaustive scope), else drawn.
    target: Option<u32>,
}

impl ActorState {
    /// The stream of actor `index` (its CPU number) under `seed`.
    fn new(
        seed: u64,
        index: u32,
        (ranges, layout): (Vec<u32>, RangeLayout),
        pace_ns: u64,
        target: Option<u32>,
    ) -> Self {
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&seed.to_le_bytes());
        key[8..12].copy_from_slice(&index.to_le_bytes());
        ActorState { rng: ChaCha8Rng::from_seed(key), ranges, layout, pace_ns, target }
    }

    /// Uniform in `0..n` (Lemire's multiply-shift; `n` > 0).
    fn below(&mut self, n: usize) -> usize {
        ((self.rng.next_u32() as u64 * n as u64) >> 32) as usize
    }

    /// One of this actor's ranges (None if it has none).
    fn pick_range(&mut self) -> Option<u32> {
        if self.ranges.is_empty() {
            return None;
        }
        let k = self.below(self.ranges.len());
        Some(self.ranges[k])
    }

    /// A PTE index in a table: the scope's target, else drawn.
    fn pick_index(&mut self) -> usize {
        match self.target {
            Some(t) => t as usize,
            None => self.below(PTRS_PER_PTE),
        }
    }

    /// An address in one of this actor's ranges: the range, then the
    /// entry (None, and no entry drawn, if it has no range).
    fn pick_addr(&mut self) -> Option<u64> {
        let r = self.pick_range()?;
        let i = self.pick_index();
        Some(self.layout.addr(r) + i as u64 * PAGE_SIZE)
    }

    /// Wait out the think time (the engine decides how).
    fn pace<E: Engine>(&self, cx: &mut Cx<'_, E>) {
        if self.pace_ns > 0 {
            cx.pause(self.pace_ns);
        }
    }
}

/// A collapser: khugepaged or MADV_COLLAPSE calling
/// `collapse_pte_mapped_thp()` on its own ranges (range `r` belongs to
/// collapser `r % collapsers`), round-robin, then putting the range back
/// ([`kernel_paths::restore_range`]).
pub struct Collapser {
    state: ActorState,
    policy: Arc<dyn DynPolicy>,
    install_pmd: bool,
    next: usize,
    /// Put the range back after each collapse (not in an exhaustive scope).
    restore: bool,
}

impl Collapser {
    /// One collapse, its accounting check, and the restore.
    fn round<E: Engine>(&mut self, cx: &mut Cx<'_, E>) {
        let ranges = &self.state.ranges;
        let r = *ranges.get(self.next).expect("a validated scenario gives every collapser a range");
        self.next = (self.next + 1) % ranges.len();
        cx.run_collapse(&*self.policy, self.state.layout.addr(r), self.install_pmd);
        if cx.oracles_enabled() {
            cx.check_range_accounting(r);
        }
        if !self.restore {
            return;
        }
        cx.set_role(Role::Restore);
        let t0 = cx.now_ns();
        kernel_paths::restore_range(cx, r);
        let ns = cx.now_ns() - t0;
        cx.record_op(Role::Restore, ns);
        cx.set_role(Role::Collapse);
    }
}

/// A swapper: reclaim's `try_to_unmap_one()` and the `do_swap_page()`
/// fault, alternately.
pub struct Swapper {
    state: ActorState,
    swap_in: bool,
}

/// A uffd monitor thread: UFFDIO_COPY of `pages` pages at a time.
pub struct Copier {
    state: ActorState,
    pages: u32,
}

/// A `pml` neighbour: a THP fault, split, zap or mprotect of another huge
/// PMD in the same PMD table, which takes the same `pml`.
pub struct Neighbour {
    state: ActorState,
    hold_ns: u64,
}

/// A workload actor: one model CPU's loop.
pub enum Actor {
    /// `collapse_pte_mapped_thp()` plus the restore of its range.
    Collapser(Collapser),
    /// `filemap_map_pages()`: page-cache faults that trylock the huge page
    /// and skip it while it is locked ([`kernel_paths::page_cache_fault`]).
    Faulter(ActorState),
    /// `UFFDIO_COPY` into private uffd-armed VMAs: an anonymous page
    /// installed under `ptl` alone, without the page lock (the bug;
    /// [`kernel_paths::uffdio_copy`]), `uffd_copy_pages` per ioctl.
    Uffd(Copier),
    /// `wp_page_copy()`: a write fault COWing a file subpage into an
    /// anonymous copy under `ptl` ([`kernel_paths::cow_fault`]).
    Cow(ActorState),
    /// Swap-out and swap-in of anonymous pages under `ptl`
    /// ([`kernel_paths::swap_out`], [`kernel_paths::swap_in`]).
    Swap(Swapper),
    /// Migration of anonymous pages: two `ptl` sections around the copy
    /// ([`kernel_paths::migrate_one`]).
    Migrate(ActorState),
    /// Holds `pml` for another huge PMD of the same PMD table
    /// ([`kernel_paths::hold_neighbour_pml`]).
    Neighbour(Neighbour),
    /// Reads memory through its TLB and checks it reads the right data.
    Reader(ActorState),
    /// Installs and removes guard PTE markers under `ptl` alone
    /// ([`kernel_paths::toggle_guard_marker`]).
    Marker(ActorState),
    /// `madvise(MADV_DONTNEED)` of a whole range, freeing the PTE table it
    /// empties ([`kernel_paths::madv_dontneed`]).
    PtReclaim(ActorState),
    /// `retract_page_tables()` of a range, from another VMA's
    /// `collapse_file()` ([`kernel_paths::retract_page_tables`]).
    Retract(ActorState),
}

impl Actor {
    /// The scenario's actors in CPU order (collapsers, faulters, uffd,
    /// cow, swap, migrate, neighbours, readers, markers): actor `i` runs
    /// on model CPU `i` and draws from stream `(seed, i)`. `scenario`
    /// must pass [`Scenario::validate`] (as `run_policy` checks).
    pub fn for_scenario(scenario: &Scenario, policy: &Arc<dyn DynPolicy>) -> Vec<Actor> {
        let all: Vec<u32> = (0..scenario.ranges).collect();
        let private = match scenario.share {
            VmaShare::Private => all.clone(),
            VmaShare::Shared => vec![],
        };
        let uffd = scenario.private_uffd_ranges();
        let layout = scenario.mm_config().layout();
        let collapsers = scenario.threads.collapsers;
        let mut actors = vec![];
        for role in ACTOR_ROLES {
            for k in 0..scenario.threads.of(role) {
                let index = actors.len() as u32;
                let target = scenario.scope.map(|s| s.target);
                let state = |ranges: &[u32]| {
                    let mine = (ranges.to_vec(), layout);
                    ActorState::new(scenario.seed, index, mine, scenario.pace.of(role), target)
                };
                actors.push(match role {
                    Role::Collapse => {
                        let own: Vec<u32> = all.iter().copied().filter(|r| r % collapsers == k).collect();
                        Actor::Collapser(Collapser {
                            state: state(&own),
                            policy: policy.clone(),
                            install_pmd: scenario.collapse_mode.install_pmd(),
                            next: 0,
                            restore: scenario.scope.is_none(),
                        })
                    }
                    Role::Faulter => Actor::Faulter(state(&all)),
                    Role::Uffd => Actor::Uffd(Copier { state: state(&uffd), pages: scenario.uffd_copy_pages }),
                    Role::Cow => Actor::Cow(state(&private)),
                    Role::Swap => Actor::Swap(Swapper { state: state(&private), swap_in: false }),
                    Role::Migrate => Actor::Migrate(state(&private)),
                    Role::Neighbour => {
                        Actor::Neighbour(Neighbour { state: state(&all), hold_ns: scenario.neighbour_hold_ns })
                    }
                    Role::Reader => Actor::Reader(state(&all)),
                    Role::Marker => Actor::Marker(state(&all)),
                    Role::PtReclaim => Actor::PtReclaim(state(&all)),
                    Role::Retract => Actor::Retract(state(&all)),
                    Role::Restore | Role::Oracle => unreachable!("{role} is not an actor kind"),
                });
            }
        }
        actors
    }

    /// Whether the actor runs in the mm (joins `mm_cpumask`): every one
    /// but khugepaged, a kernel thread that borrows no user mm.
    pub fn runs_the_mm(&self) -> bool {
        !matches!(self, Actor::Collapser(c) if !c.install_pmd)
    }

    /// Whether this actor's next operation runs under `mmap_lock` for
    /// read: a fault (page-cache, COW, swap-in, a neighbour's THP fault),
    /// a uffd ioctl or an madvise.
    fn takes_mmap_lock(&self) -> bool {
        match self {
            Actor::Faulter(_)
            | Actor::Uffd(_)
            | Actor::Cow(_)
            | Actor::Neighbour(_)
            | Actor::Marker(_)
            | Actor::PtReclaim(_) => true,
            Actor::Swap(s) => s.swap_in,
            Actor::Collapser(_) | Actor::Migrate(_) | Actor::Reader(_) | Actor::Retract(_) => false,
        }
    }

    fn state(&self) -> &ActorState {
        match self {
            Actor::Collapser(c) => &c.state,
            Actor::Swap(s) => &s.state,
            Actor::Neighbour(n) => &n.state,
            Actor::Uffd(c) => &c.state,
            Actor::Faulter(s)
            | Actor::Cow(s)
            | Actor::Migrate(s)
            | Actor::Reader(s)
            | Actor::Marker(s)
            | Actor::PtReclaim(s)
            | Actor::Retract(s) => s,
        }
    }
}

impl bench_core::actor::Actor for Actor {
    fn role(&self) -> Role {
        match self {
            Actor::Collapser(_) => Role::Collapse,
            Actor::Faulter(_) => Role::Faulter,
            Actor::Uffd(_) => Role::Uffd,
            Actor::Cow(_) => Role::Cow,
            Actor::Swap(_) => Role::Swap,
            Actor::Migrate(_) => Role::Migrate,
            Actor::Neighbour(_) => Role::Neighbour,
            Actor::Reader(_) => Role::Reader,
            Actor::Marker(_) => Role::Marker,
            Actor::PtReclaim(_) => Role::PtReclaim,
            Actor::Retract(_) => Role::Retract,
        }
    }

    /// One operation; true only for a collapse (collapses are what an
    /// operation limit counts). A collapse is timed by `run_collapse`,
    /// its restore as a `restore` operation; every other operation,
    /// skipped or not, is timed into the actor's role.
    fn op<E: Engine>(&mut self, cx: &mut Cx<'_, E>) -> bool {
        if self.runs_the_mm() {
            cx.switch_mm();
        }
        let t0 = cx.now_ns();
        // Faults, uffd ioctls and madvise run under mmap_lock for read;
        // reclaim, migration and retraction find their pages through the
        // rmap, reads go through the TLB, and a collapse's caller takes it
        // in `run_collapse` (for write, before v6.6).
        let mmap_read = self.takes_mmap_lock();
        if mmap_read {
            cx.mmap_read_lock();
        }
        // What each path did matters to a caller with fixed choices
        // (the conformance cases); an actor just goes on to its next op.
        match self {
            Actor::Collapser(c) => c.round(cx),
            Actor::Faulter(s) => {
                if let Some(addr) = s.pick_addr() {
                    kernel_paths::page_cache_fault(cx, addr);
                }
            }
            // One ioctl: page by page from the address picked, to the end
            // of its range at most, until a page is not copied.
            Actor::Uffd(c) => {
                if let Some(addr) = c.state.pick_addr() {
                    let left = PTRS_PER_PTE as u64 - (addr & !HPAGE_PMD_MASK) / PAGE_SIZE;
                    for k in 0..u64::from(c.pages).min(left) {
                        if kernel_paths::uffdio_copy(cx, addr + k * PAGE_SIZE) != kernel_paths::UffdCopy::Installed {
                            break;
                        }
                    }
                }
            }
            Actor::Cow(s) => {
                if let Some(addr) = s.pick_addr() {
                    kernel_paths::cow_fault(cx, addr);
                }
            }
            Actor::Swap(s) => {
                if let Some(addr) = s.state.pick_addr() {
                    if s.swap_in {
                        kernel_paths::swap_in(cx, addr);
                    } else {
                        kernel_paths::swap_out(cx, addr);
                    }
                }
                s.swap_in = !s.swap_in;
            }
            Actor::Migrate(s) => {
                if let Some(addr) = s.pick_addr() {
                    kernel_paths::migrate_one(cx, addr);
                }
            }
            Actor::Neighbour(n) => {
                if let Some(r) = n.state.pick_range() {
                    kernel_paths::hold_neighbour_pml(cx, n.state.layout.pmd(r).0, n.hold_ns);
                }
            }
            // A user access through this CPU's TLB (a lockless walk on a
            // miss); `touch` reports data of the wrong page or a freed one.
            Actor::Reader(s) => {
                if let Some(addr) = s.pick_addr() {
                    cx.touch(addr);
                }
            }
            Actor::Marker(s) => {
                if let Some(addr) = s.pick_addr() {
                    kernel_paths::toggle_guard_marker(cx, addr);
                }
            }
            Actor::PtReclaim(s) => {
                if let Some(r) = s.pick_range() {
                    kernel_paths::madv_dontneed(cx, s.layout.addr(r));
                }
            }
            Actor::Retract(s) => {
                if let Some(r) = s.pick_range() {
                    kernel_paths::retract_page_tables(cx, r);
                }
            }
        }
        if mmap_read {
            cx.mmap_read_unlock();
        }
        let collapse = matches!(self, Actor::Collapser(_));
        if !collapse {
            let ns = cx.now_ns() - t0;
            cx.record_op(self.role(), ns);
        }
        self.state().pace(cx);
        collapse
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::presets::preset;
    use bench_core::kernel::{CollapsePolicy, NoParams, ScanResult};

    /// A policy that is never run: the streams are drawn before any op.
    struct Idle(NoParams);

    impl CollapsePolicy for Idle {
        type Params = NoParams;
        const NAME: &'static str = "idle";
        const SUMMARY: &'static str = "does nothing";
        fn new(params: NoParams) -> Self {
            Idle(params)
        }
        fn params(&self) -> &NoParams {
            &self.0
        }
        fn collapse<E: Engine>(&self, _: &mut Cx<'_, E>, _: u64, _: bool) -> ScanResult {
            ScanResult::Fail
        }
    }

    /// The first draws of every actor's stream.
    fn draws(scenario: &Scenario) -> Vec<Vec<u64>> {
        let policy: Arc<dyn DynPolicy> = Arc::new(Idle(NoParams {}));
        Actor::for_scenario(scenario, &policy)
            .into_iter()
            .map(|mut a| {
                let s = match &mut a {
                    Actor::Collapser(c) => &mut c.state,
                    Actor::Swap(s) => &mut s.state,
                    Actor::Neighbour(n) => &mut n.state,
                    Actor::Uffd(c) => &mut c.state,
                    Actor::Faulter(s)
                    | Actor::Cow(s)
                    | Actor::Migrate(s)
                    | Actor::Reader(s)
                    | Actor::Marker(s)
                    | Actor::PtReclaim(s)
                    | Actor::Retract(s) => s,
                };
                (0..4).map(|_| s.rng.next_u64()).collect()
            })
            .collect()
    }

    #[test]
    fn same_seed_same_choices() {
        let mut s = preset("mixed").unwrap();
        let first = draws(&s);
        assert_eq!(first.len(), 9);
        assert_eq!(draws(&s), first, "same seed, same streams");
        for (a, b) in first.iter().zip(&first[1..]) {
            assert_ne!(a, b, "each actor has its own stream");
        }
        s.seed += 1;
        assert_ne!(draws(&s)[0], first[0], "another seed, other streams");
    }

    #[test]
    fn actors_are_numbered_in_cpu_order_with_their_ranges() {
        let mut s = preset("mixed").unwrap();
        s.threads.collapsers = 3;
        let policy: Arc<dyn DynPolicy> = Arc::new(Idle(NoParams {}));
        let actors = Actor::for_scenario(&s, &policy);
        let roles: Vec<Role> = actors.iter().map(bench_core::actor::Actor::role).collect();
        assert_eq!(roles[..4], [Role::Collapse, Role::Collapse, Role::Collapse, Role::Faulter]);
        assert_eq!(roles[10], Role::Marker);
        assert_eq!(actors[1].state().ranges, vec![1, 4, 7]);
        assert_eq!(roles[4], Role::Uffd);
        assert_eq!(actors[4].state().ranges, vec![0, 1, 2, 3], "uffd: the armed half");
        assert_eq!(actors[5].state().ranges.len(), 8, "cow: every private range");
    }
}
