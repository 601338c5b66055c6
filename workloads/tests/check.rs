//! The race checker at library level: it finds the two bugs the thread
//! found by reading (pre-fix's table freed with a live uffd PTE,
//! v2-posted's stale TLB), finds the guard-marker race in every policy
//! that does not recheck always, passes the correct policies, and its
//! counterexamples shrink and replay exactly.
//!
//! Schedule counts are sized for debug builds on 2 cores (the controlled
//! engine runs ~500 schedules/s there); the closing note's statement that
//! v1, v2-flush-bool and v2-step3-down stay clean rests on a 10,000-schedule
//! PCT run of each on these presets (`collapse-bench check --schedules
//! 10000`, release build).

use bench_core::controlled::Strategy;
use bench_core::kernel::DynPolicy;
use bench_core::results::TimelineEvent;
use bench_core::{LockClass, Oracle, Role};
use std::sync::Arc;
use workloads::check::{
    check_policy, parse_token, replay, run_schedule, runs, token, CheckOptions, Counterexample, ReplayOutcome,
};
use workloads::preset;
use workloads::scenario::Scenario;

/// Schedules each correct policy must pass on each preset here.
const CLEAN_SCHEDULES: u64 = 400;
/// Budget for finding a known bug (each is found within ~100 at seed 1).
const FIND_BUDGET: u64 = 2000;

fn policy(name: &str, params: serde_json::Value) -> Arc<dyn DynPolicy> {
    let entry = policies::registry().into_iter().find(|e| e.name == name).unwrap_or_else(|| panic!("{name}"));
    (entry.build)(&params).unwrap()
}

fn plain(name: &str) -> Arc<dyn DynPolicy> {
    policy(name, serde_json::Value::Null)
}

fn finding() -> CheckOptions {
    CheckOptions { schedules: FIND_BUDGET, stop_at_first: true, ..CheckOptions::default() }
}

/// The first counterexample of `policy` on `preset`; its verdict must be `oracle`.
fn finds(policy: &Arc<dyn DynPolicy>, preset_name: &str, oracle: Oracle) -> (Scenario, Counterexample) {
    let scenario = preset(preset_name).unwrap();
    let report = check_policy(policy, &scenario, &finding()).unwrap();
    let label = policy.label();
    assert!(report.failed(), "{label} on {preset_name}: nothing in {} schedules", report.schedules);
    assert!(report.by_oracle.contains_key(&oracle), "{label} on {preset_name}: {:?}", report.by_oracle);
    let cx = report.first.expect("a counterexample");
    assert_eq!(cx.oracle(), oracle, "{label} on {preset_name}: {:#?}", cx.violations);
    assert_eq!(cx.index, report.by_oracle[&oracle].1, "the first violating schedule is kept");
    (scenario, cx)
}

#[test]
fn pre_fix_frees_a_table_with_the_uffd_page_in_it() {
    let (_, cx) = finds(&plain("pre-fix"), "uffd-private", Oracle::TableFreedLive);
    let v = &cx.violations;
    assert!(v[0].message.contains("anon page installed by uffd"), "{:#?}", v);
    // The original report's symptom, at teardown, from the shrunk schedule:
    // exactly one uffd page went with the table.
    assert!(
        v.iter().any(|v| v.oracle == Oracle::Accounting
            && v.message.contains("Bad rss-counter state")
            && v.message.contains("type:MM_ANONPAGES val:1")),
        "{v:#?}"
    );
    assert!(v.iter().any(|v| v.oracle == Oracle::LostPage && v.message.contains("installed by uffd")), "{v:#?}");
}

#[test]
fn v2_posted_leaves_a_stale_tlb_on_pml_contended() {
    let (_, cx) = finds(&plain("v2-posted"), "pml-contended", Oracle::StaleTlb);
    assert_eq!(cx.violations[0].step.as_deref(), Some("abort"), "{:#?}", cx.violations);
    assert!(cx.violations[0].message.contains("still cached"), "{:#?}", cx.violations);
}

/// `policies`: no violation in CLEAN_SCHEDULES PCT schedules.
fn clean_on(preset_name: &str, policies: &[&str]) {
    let scenario = preset(preset_name).unwrap();
    let opts = CheckOptions { schedules: CLEAN_SCHEDULES, ..CheckOptions::default() };
    for &name in policies {
        let report = check_policy(&plain(name), &scenario, &opts).unwrap();
        assert_eq!(report.schedules, CLEAN_SCHEDULES);
        assert!(
            report.by_oracle.is_empty(),
            "{name} on {preset_name}: {:?}\n{:#?}",
            report.by_oracle,
            report.first.map(|f| f.violations)
        );
        assert_eq!(report.step_limits, 0, "{name} on {preset_name}");
        assert!(report.steps > CLEAN_SCHEDULES * 20, "{name} on {preset_name}: {} steps", report.steps);
    }
}

/// Where no trylock of `pml` fails (no neighbour; or `pml` and `ptl`
/// are one lock), the v2 repairs never drop `ptl` with entries cleared
/// and are as clean as v1.
const CLEAN_WITHOUT_CONTENTION: [&str; 3] = ["v1", "v2-flush-bool", "v2-step3-down"];

#[test]
fn correct_policies_pass_uffd_private() {
    clean_on("uffd-private", &CLEAN_WITHOUT_CONTENTION);
}

#[test]
fn correct_policies_pass_cow_swap() {
    clean_on("cow-swap", &CLEAN_WITHOUT_CONTENTION);
}

#[test]
fn v1_passes_pml_contended() {
    clean_on("pml-contended", &["v1"]);
}

/// The v2 repairs under `pml` contention: the trylock fails, `ptl` is
/// dropped with step 2's entries cleared and unflushed, UFFDIO_COPY fills
/// one, and a CPU that cached the old subpage still translates to it.
/// That is all they break: no table freed live, no flush left unpaid.
#[test]
fn the_v2_repairs_leave_a_stale_translation_under_pml_contention() {
    for name in ["v2-flush-bool", "v2-step3-down"] {
        let (_, cx) = finds(&plain(name), "pml-contended", Oracle::StaleTranslation);
        assert!(cx.violations.iter().all(|v| v.oracle == Oracle::StaleTranslation), "{name}: {:#?}", cx.violations);
        let upto = &cx.timeline[..cx.violation_at];
        let failed_trylock = upto
            .iter()
            .position(
                |e| matches!(&e.event, TimelineEvent::Trylock { ok: false, lock } if lock.class == LockClass::PmdLock),
            )
            .unwrap_or_else(|| panic!("{name}: no failed trylock of pml:\n{}", timeline_text(&cx)));
        let install = upto
            .iter()
            .rposition(|e| {
                cx.roles[e.cpu as usize] == Role::Uffd && matches!(e.event, TimelineEvent::InstallAnon { .. })
            })
            .unwrap_or_else(|| panic!("{name}: no uffd install:\n{}", timeline_text(&cx)));
        assert!(failed_trylock < install, "{name}:\n{}", timeline_text(&cx));
    }
}

#[test]
fn correct_policies_pass_no_split_locks() {
    clean_on("no-split-locks", &CLEAN_WITHOUT_CONTENTION);
}

#[test]
fn guard_markers_catch_every_policy_that_does_not_always_recheck() {
    for name in ["v1", "v2-flush-bool", "v2-step3-down", "v2-posted"] {
        let (_, cx) = finds(&plain(name), "markers", Oracle::TableFreedLive);
        assert!(cx.violations[0].message.contains("guard marker"), "{name}: {:#?}", cx.violations);
    }
}

#[test]
fn always_rechecking_v2_repairs_are_immune_to_guard_markers() {
    let scenario = preset("markers").unwrap();
    let opts = CheckOptions { schedules: CLEAN_SCHEDULES, ..CheckOptions::default() };
    for name in ["v2-flush-bool", "v2-step3-down"] {
        let report =
            check_policy(&policy(name, serde_json::json!({"recheck_always": true})), &scenario, &opts).unwrap();
        assert_eq!(report.policy, format!("{name}:recheck_always=true"));
        assert!(report.by_oracle.is_empty(), "{}: {:?}", report.policy, report.first.map(|f| f.violations));
    }
}

fn timeline_text(cx: &Counterexample) -> String {
    let mut s = format!("at {}\n", cx.violation_at);
    for e in &cx.timeline {
        s.push_str(&format!("{} cpu{} {:?}\n", e.step, e.cpu, e.event));
    }
    s
}

#[test]
fn counterexamples_shrink_and_replay_exactly() {
    let p = plain("pre-fix");
    let (scenario, cx) = finds(&p, "uffd-private", Oracle::TableFreedLive);
    let opts = finding();
    // Shrunk: not longer, and still the same oracle, replayed exactly.
    assert!(cx.schedule.len() <= cx.original.len(), "{} > {}", cx.schedule.len(), cx.original.len());
    assert!(cx.shrink_replays > 0 && cx.shrink_replays <= opts.shrink_budget);
    let (run, violations) =
        run_schedule(&p, &scenario, cx.index, Strategy::Replay(cx.original.clone()), &opts, false).unwrap();
    assert_eq!(run.schedule, cx.original, "the search's schedule replays");
    assert_eq!(violations[0].oracle, Oracle::TableFreedLive);
    // The token encodes the shrunk schedule; replaying it twice gives the
    // same run and the same timeline.
    assert_eq!(parse_token(&cx.token()).unwrap(), (cx.index, cx.schedule.clone()));
    let again = |n: usize| match replay(&p, &scenario, &opts, cx.index, &cx.schedule).unwrap() {
        ReplayOutcome::Violated(r) => r,
        other => panic!("replay {n}: {other:?}"),
    };
    let (a, b) = (again(1), again(2));
    assert_eq!(a.oracle(), Oracle::TableFreedLive);
    assert_eq!(a.schedule, cx.schedule);
    assert_eq!(timeline_text(&a), timeline_text(&b));
    assert_eq!(timeline_text(&a), timeline_text(&cx), "the check's own replay is the same");
    // The violation is placed at pte_free_defer, not at the end of the run.
    let at = &a.timeline[a.violation_at - 1].event;
    assert!(matches!(at, TimelineEvent::TableFree { .. }), "{at:?}\n{}", timeline_text(&a));
    assert!(a.violation_at < a.timeline.len());
    // The timeline names what it shows without the model: the uffd CPU's
    // install, and each lock by its class and table.
    let uffd = |cpu: u32| a.roles[cpu as usize] == Role::Uffd;
    assert!(a.timeline.iter().any(|e| uffd(e.cpu) && matches!(e.event, TimelineEvent::InstallAnon { .. })));
    let ptl = a.timeline.iter().find_map(|e| match &e.event {
        TimelineEvent::Lock { lock } if lock.class == LockClass::PteLock => Some(lock),
        _ => None,
    });
    assert!(ptl.is_some_and(|l| l.name.starts_with("ptl (PTE table ")), "{ptl:?}");
    // A token that does not fit this configuration diverges.
    let mut longer = cx.schedule.clone();
    longer.push(0);
    assert!(matches!(replay(&p, &scenario, &opts, cx.index, &longer).unwrap(), ReplayOutcome::Diverged { .. }));
    assert!(matches!(
        replay(&p, &scenario, &opts, cx.index, &cx.schedule[..cx.schedule.len() / 2]).unwrap(),
        ReplayOutcome::Diverged { .. }
    ));
    // The same schedule under the correct policy does not fit either, or is clean.
    match replay(&plain("v1"), &scenario, &opts, cx.index, &cx.schedule).unwrap() {
        ReplayOutcome::Violated(r) => panic!("v1 violated: {:#?}", r.violations),
        ReplayOutcome::Diverged { .. } | ReplayOutcome::Clean { .. } => {}
    }
}

/// Each schedule draws its own actor operations: the same interleaving
/// with another schedule's streams is another run.
#[test]
fn schedules_draw_their_own_operations() {
    let (p, scenario, opts) = (plain("v1"), preset("uffd-private").unwrap(), CheckOptions::default());
    let run = |index: u64| {
        let (run, _) = run_schedule(&p, &scenario, index, Strategy::Random { seed: 7 }, &opts, true).unwrap();
        let installs: Vec<String> = run
            .trace
            .iter()
            .filter(|t| matches!(t.event, bench_core::Event::PteSet(..)))
            .map(|t| format!("{:?}", t.event))
            .collect();
        (run.schedule, installs)
    };
    assert_eq!(run(3), run(3));
    let (a, b) = (run(3), run(4));
    assert_ne!(a.1, b.1, "schedules 3 and 4 made the same uffd copies");
}

#[test]
fn same_options_same_report() {
    let p = plain("v2-posted");
    let scenario = preset("pml-contended").unwrap();
    let opts = CheckOptions { schedules: 150, ..CheckOptions::default() };
    let a = check_policy(&p, &scenario, &opts).unwrap();
    let b = check_policy(&p, &scenario, &opts).unwrap();
    assert!(a.failed(), "v2-posted on pml-contended: nothing in 150 schedules");
    assert_eq!((a.schedules, a.steps, a.step_limits), (b.schedules, b.steps, b.step_limits));
    assert_eq!(a.by_oracle, b.by_oracle);
    let (fa, fb) = (a.first.unwrap(), b.first.unwrap());
    assert_eq!((fa.index, &fa.original, &fa.schedule), (fb.index, &fb.original, &fb.schedule));
    assert_eq!(timeline_text(&fa), timeline_text(&fb));
    // Three threads give the same report, counterexample included.
    let c = check_policy(&p, &scenario, &CheckOptions { jobs: 3, ..opts.clone() }).unwrap();
    assert_eq!((c.schedules, c.steps, c.violating, &c.by_oracle), (a.schedules, a.steps, a.violating, &a.by_oracle));
    let fc = c.first.unwrap();
    assert_eq!((fc.index, &fc.original, &fc.schedule), (fa.index, &fa.original, &fa.schedule));
    // Another seed searches other schedules.
    let c = check_policy(&p, &scenario, &CheckOptions { seed: 2, ..opts }).unwrap();
    assert_ne!((c.steps, c.first.map(|f| f.original)), (a.steps, Some(fa.original)));
}

#[test]
fn tokens_round_trip_and_reject_garbage() {
    let s = vec![0, 0, 1, 1, 1, 0, 2];
    assert_eq!(token(38, &s), "s2-38-0x2.1x3.0x1.2x1");
    assert_eq!(runs(&s), [(0, 2), (1, 3), (0, 1), (2, 1)]);
    assert_eq!(parse_token("s2-38-0x2.1x3.0x1.2x1").unwrap(), (38, s));
    for bad in ["", "s2-", "s2-1-", "0x2", "s2-0x1", "s2-x-0x1", "s2-1-0x0", "s2-1-0x", "s2-1-x3", "s2-1-0x1..1x1"] {
        assert!(parse_token(bad).is_err(), "{bad} accepted");
    }
    let old = parse_token("s1-0x2.1x3").unwrap_err();
    assert!(old.contains("run the check again"), "{old}");
}

#[test]
fn the_shrinker_drops_actors_the_violation_does_not_need() {
    // With mm->page_table_lock as every lock, each neighbour hold delays
    // the collapse; none is needed for the uffd page to go with the table.
    let (_, cx) = finds(&plain("pre-fix"), "no-split-locks", Oracle::TableFreedLive);
    let neighbours: Vec<u32> =
        (0..cx.roles.len() as u32).filter(|&c| cx.roles[c as usize] == Role::Neighbour).collect();
    assert_eq!(neighbours.len(), 2, "{:?}", cx.roles);
    let before = &cx.timeline[..cx.violation_at];
    assert!(before.iter().all(|e| !neighbours.contains(&e.cpu)), "{}", timeline_text(&cx));
    assert!(before.iter().any(|e| cx.roles[e.cpu as usize] == Role::Uffd), "{}", timeline_text(&cx));
}
