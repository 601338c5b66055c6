//! The simulation engine's timing rules, checked to the nanosecond with
//! the default cost model: a spinning waiter burns virtual time until the
//! release and then pays a hand-off, the lock hands over in FIFO order,
//! and a flush pays one IPI per other CPU that has run the mm. And the
//! stall guard: a loop that costs nothing ends the run, named, instead of
//! spinning forever at one instant.

mod common;

use bench_core::actor::Actor;
use bench_core::controlled::{run_controlled, ControlledConfig, ControlledRun, End, Strategy};
use bench_core::engine::STALL_CALLS;
use bench_core::harness::Harness;
use bench_core::kernel::{Cx, Engine, PmdRef};
use bench_core::mm::NEIGHBOUR_SLOT;
use bench_core::IntoEnumIterator;
use bench_core::{Cost, CostModel, Mm, Role};
use common::model;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Run each actor's one operation under `costs`.
fn simulate_under(costs: &CostModel, mm: &Arc<Mm>, actors: Vec<Step>) -> ControlledRun {
    let cfg = ControlledConfig {
        ops: u64::MAX,
        ops_per_cpu: 1,
        max_steps: 1_000_000,
        until_ns: u64::MAX,
        record_trace: false,
    };
    run_controlled(mm.clone(), actors, &cfg, &Strategy::TimeOrdered(costs.table()))
}

fn simulate(mm: &Arc<Mm>, actors: Vec<Step>) -> End {
    simulate_under(&CostModel::default(), mm, actors).end
}

/// The `pml` of range 0's PMD table (as a neighbour takes it).
const PML: PmdRef = PmdRef { table: 0, idx: NEIGHBOUR_SLOT };

/// One operation: wait `start_ns`, then take `pml`, hold it `hold_ns`,
/// release; or join the mm and flush it; or wait `start_ns`, then retry
/// `spin_trylock(pml)` until it succeeds (with `pml` already held when
/// `own`: it never does). Records when things happened.
enum Step {
    Lock { start_ns: u64, hold_ns: u64, acquired_at: Arc<AtomicU64> },
    JoinMm,
    Flush { start_ns: u64, took: Arc<AtomicU64> },
    Trylock { start_ns: u64, own: bool, acquired_at: Arc<AtomicU64> },
}

impl Actor for Step {
    fn role(&self) -> Role {
        Role::Neighbour
    }

    fn op<E: Engine>(&mut self, cx: &mut Cx<'_, E>) -> bool {
        match self {
            Step::Lock { start_ns, hold_ns, acquired_at } => {
                cx.pause(*start_ns);
                let pml = cx.pmd_lock(PML);
                acquired_at.store(cx.now_ns(), Ordering::Relaxed);
                cx.ndelay(*hold_ns);
                cx.spin_unlock(pml);
            }
            Step::JoinMm => cx.switch_mm(),
            Step::Flush { start_ns, took } => {
                cx.switch_mm();
                cx.pause(*start_ns);
                let t0 = cx.now_ns();
                cx.flush_tlb_mm();
                took.store(cx.now_ns() - t0, Ordering::Relaxed);
            }
            Step::Trylock { start_ns, own, acquired_at } => {
                cx.pause(*start_ns);
                let held = own.then(|| cx.pmd_lock(PML));
                let pml = cx.pmd_lockptr(PML);
                while !cx.spin_trylock(pml) {}
                acquired_at.store(cx.now_ns(), Ordering::Relaxed);
                cx.spin_unlock(pml);
                if let Some(pml) = held {
                    cx.spin_unlock(pml);
                }
            }
        }
        true
    }
}

fn ns(c: Cost) -> u64 {
    CostModel::default().ns(c) as u64
}

#[test]
fn a_spinning_waiter_burns_time_until_the_release_then_pays_a_hand_off() {
    let mm = model(2);
    let (holder, waiter) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let end = simulate(
        &mm,
        vec![
            Step::Lock { start_ns: 0, hold_ns: 10_000, acquired_at: holder.clone() },
            Step::Lock { start_ns: 1_000, hold_ns: 0, acquired_at: waiter.clone() },
        ],
    );
    assert_eq!(end, End::Finished);
    let entry = ns(Cost::KernelEntry);
    // The holder: kernel entry, an uncontended lock on a line nobody else wrote.
    let held_at = entry + ns(Cost::LockUncontended);
    assert_eq!(holder.load(Ordering::Relaxed), held_at);
    // The waiter asks at entry + 1 us, spins until the release, takes over.
    let released_at = held_at + 10_000;
    assert_eq!(waiter.load(Ordering::Relaxed), released_at + ns(Cost::LockHandoff));
    let stats = mm.lock_stats().find(|l| l.2.contended > 0).expect("one contended acquisition").2;
    assert_eq!(stats.wait_ns, released_at + ns(Cost::LockHandoff) - (entry + 1_000));
    assert_eq!((stats.acquisitions, stats.contended), (2, 1));
}

#[test]
fn waiters_get_the_lock_in_the_order_they_queued() {
    let mm = model(4);
    let times: Vec<Arc<AtomicU64>> = (0..4).map(|_| Arc::new(AtomicU64::new(0))).collect();
    // Queued at +1.3, +1.1 and +1.2 us on CPUs 1, 2, 3; each holds 1 us.
    let starts = [0, 1_300, 1_100, 1_200];
    let actors = (0..4)
        .map(|i| Step::Lock {
            start_ns: starts[i],
            hold_ns: if i == 0 { 10_000 } else { 1_000 },
            acquired_at: times[i].clone(),
        })
        .collect();
    assert_eq!(simulate(&mm, actors), End::Finished);
    let at: Vec<u64> = times.iter().map(|t| t.load(Ordering::Relaxed)).collect();
    let handoff = ns(Cost::LockHandoff);
    let first = ns(Cost::KernelEntry) + ns(Cost::LockUncontended) + 10_000 + handoff;
    // FIFO by queueing time: CPU 2, then 3, then 1.
    assert_eq!([at[2], at[3], at[1]], [first, first + 1_000 + handoff, first + 2 * (1_000 + handoff)]);
}

#[test]
fn a_whole_mm_flush_pays_one_ipi_per_other_cpu_that_ran_the_mm() {
    for others in [0u32, 1, 3, 7] {
        let mm = model(others + 1);
        let took = Arc::new(AtomicU64::new(0));
        let mut actors = vec![Step::Flush { start_ns: 1_000, took: took.clone() }];
        actors.extend((0..others).map(|_| Step::JoinMm));
        assert_eq!(simulate(&mm, actors), End::Finished);
        let want = ns(Cost::MmFlushBase) + u64::from(others) * ns(Cost::Ipi);
        assert_eq!(took.load(Ordering::Relaxed), want, "{others} other CPUs in mm_cpumask");
    }
}

/// CPU 0 holds `pml` for 10 us from its kernel entry; CPU 1 retries
/// `spin_trylock(pml)` from 1 us on.
fn trylock_retry() -> (Arc<Mm>, Vec<Step>, Arc<AtomicU64>) {
    let got = Arc::new(AtomicU64::new(0));
    let actors = vec![
        Step::Lock { start_ns: 0, hold_ns: 10_000, acquired_at: Arc::new(AtomicU64::new(0)) },
        Step::Trylock { start_ns: 1_000, own: false, acquired_at: got.clone() },
    ];
    (model(2), actors, got)
}

#[test]
fn a_trylock_retried_burns_time_until_the_holder_lets_go() {
    let (mm, actors, got) = trylock_retry();
    assert_eq!(simulate(&mm, actors), End::Finished);
    let released_at = ns(Cost::KernelEntry) + ns(Cost::LockUncontended) + 10_000;
    // Every try reads the lock word from the holder's core. The first to
    // find it free starts after the release (one at the release instant
    // still runs before the holder's unlock), and pays for itself.
    let per_try = ns(Cost::LockUncontended) + ns(Cost::CacheLineTransfer);
    let start = ns(Cost::KernelEntry) + 1_000;
    let first_free = start + ((released_at - start) / per_try + 1) * per_try;
    assert_eq!(got.load(Ordering::Relaxed), first_free + per_try);
}

#[test]
fn a_trylock_retried_on_free_lock_primitives_ends_the_run_as_stalled() {
    // Refused by validation; the engine must survive it all the same.
    let costs = CostModel { lock_uncontended: 0.0, cache_line_transfer: 0.0, ..CostModel::default() };
    assert!(costs.validate().is_err());
    let (mm, actors, got) = trylock_retry();
    let run = simulate_under(&costs, &mm, actors);
    assert_eq!(
        run.end,
        End::Stalled {
            cpu: 1,
            report: format!(
                "CPU 1 (neighbour) made over {STALL_CALLS} calls in a row into the simulation at 1100 ns of virtual \
                 time without its clock moving, the last a spin_trylock of pml (PMD table 0) held by CPU 0 \
                 (neighbour), holding nothing: a loop that costs nothing; zero in this cost model: \
                 lock_uncontended, cache_line_transfer"
            ),
        }
    );
    assert_eq!(got.load(Ordering::Relaxed), 0, "it never got the lock");
    assert!(run.steps < 10, "{} steps", run.steps);
}

#[test]
fn a_trylock_of_a_lock_the_cpu_holds_stalls_even_under_a_valid_model() {
    let mm = model(1);
    let got = Arc::new(AtomicU64::new(0));
    let run = simulate_under(
        &CostModel::default(),
        &mm,
        vec![Step::Trylock { start_ns: 0, own: true, acquired_at: got.clone() }],
    );
    let End::Stalled { cpu: 0, report } = &run.end else { panic!("{:?}", run.end) };
    let want = format!(
        "CPU 0 (neighbour) made over {STALL_CALLS} calls in a row into the simulation at {} ns of virtual time \
         without its clock moving, the last a spin_trylock of pml (PMD table 0) held by CPU 0 (neighbour), \
         holding pml (PMD table 0): a loop that costs nothing; no cost in this model is zero, so it passes only \
         scheduling points that charge nothing (a spin_trylock of a lock the CPU holds itself, say)",
        ns(Cost::KernelEntry) + ns(Cost::LockUncontended)
    );
    assert_eq!(report, &want);
    assert_eq!(got.load(Ordering::Relaxed), 0);
}

#[test]
fn operations_that_cost_nothing_end_the_run_as_stalled() {
    // Every cost zero (refused by validation): no operation takes time,
    // and joining the mm passes no scheduling point.
    let mut zero = CostModel::default();
    for c in Cost::iter() {
        zero.set(c, 0.0);
    }
    let cfg = ControlledConfig {
        ops: u64::MAX,
        ops_per_cpu: u64::MAX,
        max_steps: u64::MAX,
        until_ns: 1_000_000,
        record_trace: false,
    };
    let run = run_controlled(model(2), vec![Step::JoinMm, Step::JoinMm], &cfg, &Strategy::TimeOrdered(zero.table()));
    let End::Stalled { cpu: 0, report } = &run.end else { panic!("{:?}", run.end) };
    assert!(
        report.starts_with(&format!(
            "CPU 0 (neighbour) made over {STALL_CALLS} calls in a row into the simulation at 0 ns of virtual time \
             without its clock moving, operation after operation, at no scheduling point, holding nothing: a \
             loop that costs nothing; zero in this cost model: lock_uncontended, lock_handoff,"
        )),
        "{report}"
    );
    assert_eq!(run.steps, 1, "CPU 0 never gave the CPU up");
}
