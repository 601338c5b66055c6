//! The exhaustive explorer on scopes small enough to count by hand: it
//! explores exactly the Mazurkiewicz-inequivalent interleavings (with the
//! reduction) or exactly all of them (without), finds the deadlock an
//! ABBA order allows and every outcome the full enumeration finds, and
//! says whether a preemption bound left anything out.

mod common;

use bench_core::actor::Actor;
use bench_core::controlled::{run_controlled_with, ControlledConfig, End};
use bench_core::kernel::{Cx, Engine, LockId};
use bench_core::sched::{Exploration, Explorer};
use bench_core::{Mm, Role};
use common::model;

/// Range 0's `pml`, and its PTE table's `ptl`.
fn locks(mm: &Mm) -> (LockId, LockId) {
    (mm.pmd_lock_id(0), mm.pte_lock_id(0))
}

/// Each operation takes the locks in `order` nested, then releases them.
struct Nest {
    order: Vec<LockId>,
}

impl Actor for Nest {
    fn role(&self) -> Role {
        Role::Neighbour
    }
    fn op<E: Engine>(&mut self, cx: &mut Cx<'_, E>) -> bool {
        for (k, &id) in self.order.iter().enumerate() {
            cx.spin_lock_nested(id, k as u32);
        }
        for &id in self.order.iter().rev() {
            cx.spin_unlock(id);
        }
        false
    }
}

/// What a run came to: its end and the rules it broke.
type Outcome = (End, Vec<bench_core::Oracle>);

/// Explore `ops` operations of each actor (on a model with a CPU for
/// each of `cpus` actors); every explored run's outcome.
fn explore(
    cpus: u32,
    actors: impl Fn(&Mm) -> Vec<Nest>,
    ops: u64,
    bound: Option<u32>,
    reduce: bool,
) -> (Exploration, Vec<Outcome>) {
    let cfg = ControlledConfig {
        ops: u64::MAX,
        ops_per_cpu: ops,
        max_steps: 10_000,
        until_ns: u64::MAX,
        record_trace: false,
    };
    let mut explorer = Explorer::new(bound, reduce);
    let mut ends = vec![];
    loop {
        let mm = model(cpus);
        let run = run_controlled_with(mm.clone(), actors(&mm), &cfg, &mut explorer);
        if !explorer.was_cut() {
            let oracles = mm.violations.snapshot().0.iter().map(|v| v.oracle).collect();
            ends.push((run.end, oracles));
        }
        if !explorer.advance() {
            break;
        }
    }
    assert_eq!(explorer.error(), None);
    (explorer.stats(), ends)
}

/// Two CPUs each taking one lock twice (one operation, one lock, each).
fn one_lock_twice(mm: &Mm) -> Vec<Nest> {
    let (pml, _) = locks(mm);
    vec![Nest { order: vec![pml] }, Nest { order: vec![pml] }]
}

#[test]
fn two_cpus_taking_one_lock_twice_have_six_interleavings_of_their_critical_sections() {
    // Each CPU: reach the lock, a critical section (one step: taken and
    // released), reach it again, a second section, return: 5 steps. Only
    // the order of the four sections matters: C(4, 2) = 6 classes.
    let (stats, ends) = explore(2, one_lock_twice, 2, None, true);
    assert_eq!(stats.interleavings(), 6, "{stats:?}");
    assert!(stats.complete && !stats.bound_hit);
    assert!(ends.iter().all(|e| *e == (End::Finished, vec![])));
    // Without the reduction: every interleaving of 5 + 5 steps, C(10, 5).
    let (stats, _) = explore(2, one_lock_twice, 2, None, false);
    assert_eq!((stats.interleavings(), stats.runs), (252, 252), "{stats:?}");
    assert!(stats.complete);
}

#[test]
fn steps_that_touch_nothing_shared_are_explored_once() {
    // Two CPUs on two different locks: one class.
    let (stats, _) = explore(
        2,
        |mm| {
            let (pml, ptl) = locks(mm);
            vec![Nest { order: vec![pml] }, Nest { order: vec![ptl] }]
        },
        2,
        None,
        true,
    );
    assert_eq!(stats.interleavings(), 1, "{stats:?}");
}

#[test]
fn steps_taken_while_a_cpu_waits_do_not_race_with_the_lock_it_waits_for() {
    // CPU 0 holds pml across its ptl section, CPU 1 takes pml: three
    // classes (CPU 1's section before CPU 0's, after it, or CPU 1 queued
    // on pml while CPU 0 holds it). CPU 2 only passes scheduling points
    // that touch nothing shared, so adding it adds no class, even though
    // its steps run while CPU 1 waits and CPU 1 is asked after each
    // whether pml is free: that look changed nothing, and counts as no
    // step's access.
    let held = |mm: &Mm| {
        let (pml, ptl) = locks(mm);
        vec![Nest { order: vec![pml, ptl] }, Nest { order: vec![pml] }]
    };
    let (two, _) = explore(2, held, 1, None, true);
    assert_eq!(two.interleavings(), 3, "{two:?}");
    let (three, ends) = explore(
        3,
        |mm| {
            let mut actors = held(mm);
            actors.push(Nest { order: vec![] });
            actors
        },
        1,
        None,
        true,
    );
    assert_eq!(three.interleavings(), 3, "{three:?}");
    assert!(three.complete && ends.iter().all(|e| *e == (End::Finished, vec![])));
}

#[test]
fn an_abba_order_deadlocks_in_exactly_the_interleavings_that_split_the_pairs() {
    // CPU 0 takes pml (a), makes its ptl section (s0), releases pml (b);
    // CPU 1 takes ptl (t), makes its pml section (p), releases ptl (r).
    // A class is an order of the pml steps (p before a, between a and b,
    // or after b) and of the ptl steps (s0 before t, between t and r, or
    // after r), each CPU's own steps in program order. Of the nine pairs
    // five are possible: p before a with s0 between t and r (CPU 0 queues
    // on ptl) or after r; p after b with s0 before t; p between a and b
    // with s0 before t (CPU 1 queues on pml) or between t and r, each
    // holding its first lock: the deadlock. Lockdep's graph is not a
    // footprint (the order its edges arrive in changes no verdict), so
    // which CPU adds its edge first splits no class.
    let abba = |mm: &Mm| {
        let (pml, ptl) = locks(mm);
        vec![Nest { order: vec![pml, ptl] }, Nest { order: vec![ptl, pml] }]
    };
    let (stats, ends) = explore(2, abba, 1, None, true);
    let deadlocks = ends.iter().filter(|(e, _)| matches!(e, End::Deadlock(_))).count();
    assert_eq!((stats.interleavings(), deadlocks), (5, 1), "{stats:?} {ends:?}");
    assert!(stats.complete);
    // Every outcome the full enumeration reaches, the reduction reaches.
    let (all, every) = explore(2, abba, 1, None, false);
    assert!(all.interleavings() > 5 && all.complete, "{all:?}");
    let distinct = |outcomes: &[Outcome]| -> Vec<String> {
        let mut v: Vec<String> = outcomes.iter().map(|o| format!("{o:?}")).collect();
        v.sort();
        v.dedup();
        v
    };
    assert_eq!(distinct(&ends), distinct(&every));
    assert!(ends.iter().any(|(_, oracles)| oracles.contains(&bench_core::Oracle::LockOrder)), "{ends:?}");
}

#[test]
fn a_bound_that_forbids_a_choice_leaves_the_exploration_incomplete() {
    // No preemption at all: each CPU runs until it finishes or blocks, so
    // of the six classes only "all of CPU 0, then all of CPU 1" (and the
    // other way round) are reached.
    let (stats, _) = explore(2, one_lock_twice, 2, Some(0), true);
    assert!(stats.bound_hit && !stats.complete, "{stats:?}");
    assert_eq!(stats.interleavings(), 2, "{stats:?}");
    // A bound the scope never reaches leaves it complete. No CPU sleeps
    // under a bound, so 4 of its runs repeat a class of the 6.
    let (stats, _) = explore(2, one_lock_twice, 2, Some(10), true);
    assert!(stats.complete && !stats.bound_hit);
    assert_eq!(stats.interleavings(), 10);
}
