//! Stateless model checking: every Mazurkiewicz-inequivalent interleaving
//! of a bounded run, one run per interleaving, with dynamic partial-order
//! reduction.
//!
//! The algorithm is Flanagan and Godefroid's DPOR (POPL 2005) with sleep
//! sets (Godefroid 1996), in the race-driven form Nidhugg and loom use:
//! run once; for every pair of steps of different CPUs that touch a word
//! one of them writes ([`Footprint::conflicts`]) and that the run did not
//! already order by happens-before (vector clocks), note that the later
//! step's CPU must also be tried at the state before the earlier step
//! (its backtrack set; every CPU that could run there when that CPU could
//! not); then re-run from the deepest state with a CPU left to try. A CPU
//! whose step from a state has been explored sleeps in the branches after
//! it until a step dependent with that one runs: a run in which every CPU
//! that can run sleeps is equivalent to one already explored and is cut
//! ("sleep-set blocked"). Source sets (Abdulla et al., POPL 2014) would
//! add fewer backtrack points; these are a superset, so what is lost is
//! only time.
//!
//! A step is what a CPU does from one scheduling point to the next
//! ([`crate::sched`]), together with what the probes that follow it do
//! (a waiter woken by its release takes the lock or page lock then): the
//! run loop hands its footprint to [`Scheduler::stepped`].
//!
//! An optional preemption bound (as in loom and CHESS): a choice that
//! switches away from a CPU that could go on is a preemption, and a run
//! may make at most that many. Choices the bound forbids are not
//! explored, so a bounded exploration that forbade any is not complete
//! ([`Exploration::complete`]); one that never needed to is. Bounding and
//! the reduction lose each other's runs unless handled (Coons, Musuvathi
//! and McKinley, OOPSLA 2013): a backtrack point the bound forbids moves
//! to the latest earlier state where the bound allows it, and under a
//! bound no CPU sleeps (the explored run a sleep set stands for may lie
//! beyond the bound).

use super::{Runnable, Scheduler};
use crate::footprint::{Footprint, UNKNOWN};
use std::collections::HashMap;

/// A set of CPUs (exploration needs at most 64).
type Cpus = u64;

fn bit(cpu: u32) -> Cpus {
    1 << cpu
}

/// The CPUs of `set`, lowest first.
fn members(mut set: Cpus) -> impl Iterator<Item = u32> {
    std::iter::from_fn(move || {
        (set != 0).then(|| {
            let cpu = set.trailing_zeros();
            set &= set - 1;
            cpu
        })
    })
}

/// A state on the current path: what could run there, what was and is to
/// be tried, and who sleeps.
#[derive(Clone, Debug)]
struct Node {
    enabled: Cpus,
    /// The CPU that ran the step before this state.
    last: Option<u32>,
    /// Preemptions the path made before this state.
    preemptions: u32,
    /// The CPU the current run takes here, and what its step touched.
    chosen: u32,
    footprint: Footprint,
    /// CPUs tried (or being tried) from here.
    done: Cpus,
    /// CPUs to try from here.
    backtrack: Cpus,
    /// Steps asleep on arriving here: explored from an earlier state and
    /// independent of every step since.
    sleep: Vec<(u32, Footprint)>,
    /// The steps of the CPUs tried from here before `chosen`.
    explored: Vec<(u32, Footprint)>,
}

impl Node {
    fn asleep(&self) -> Cpus {
        self.sleep.iter().fold(0, |m, (cpu, _)| m | bit(*cpu))
    }

    /// Whether taking `cpu` here is a preemption.
    fn preempts(&self, cpu: u32) -> bool {
        self.last.is_some_and(|last| last != cpu && self.enabled & bit(last) != 0)
    }
}

/// Counts of an exploration so far.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Exploration {
    /// Runs made.
    pub runs: u64,
    /// Of those, runs cut because every CPU that could run slept (each
    /// equivalent to one explored).
    pub sleep_blocked: u64,
    /// Runs cut because the bound forbade every choice left.
    pub bound_blocked: u64,
    /// Whether the bound forbade a choice anywhere (then the exploration
    /// is not complete).
    pub bound_hit: bool,
    /// The most steps of a run.
    pub max_steps: u64,
    /// Whether every interleaving has been explored (no choice left, none
    /// forbidden by the bound).
    pub complete: bool,
}

impl Exploration {
    /// Interleavings explored: runs that went to their end.
    pub fn interleavings(&self) -> u64 {
        self.runs - self.sleep_blocked - self.bound_blocked
    }
}

/// The exhaustive scheduler: hand it to one run after another
/// ([`crate::controlled::run_controlled_with`]), calling [`Explorer::advance`]
/// after each, until that returns false.
pub struct Explorer {
    path: Vec<Node>,
    /// Steps of the current run so far.
    at: usize,
    bound: Option<u32>,
    reduce: bool,
    /// Whether the current run was cut, and why.
    cut: Option<Cut>,
    stats: Exploration,
    error: Option<String>,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Cut {
    Sleep,
    Bound,
}

impl Explorer {
    /// An exploration with at most `bound` preemptions per run (None: no
    /// bound). With `reduce` false every CPU that can run is tried at
    /// every state (no partial-order reduction: for comparison).
    pub fn new(bound: Option<u32>, reduce: bool) -> Explorer {
        Explorer { path: vec![], at: 0, bound, reduce, cut: None, stats: Exploration::default(), error: None }
    }

    /// The counts so far.
    pub fn stats(&self) -> Exploration {
        self.stats
    }

    /// Whether the run just made was cut (it is equivalent to an explored
    /// one, or its rest is beyond the bound): its findings are real, but
    /// its end is not an end of the scenario.
    pub fn was_cut(&self) -> bool {
        self.cut.is_some()
    }

    /// Whether the run just made was cut because every CPU that could run
    /// slept: it is equivalent to a run explored, findings and all.
    pub fn was_sleep_blocked(&self) -> bool {
        self.cut == Some(Cut::Sleep)
    }

    /// Why the exploration cannot go on, if a run did not repeat the one
    /// before it (the scenario is not a function of its schedule).
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    /// End the run just made and set up the next. Returns false when there
    /// is none: the exploration is over ([`Exploration::complete`] says
    /// whether the bound left anything out), or it failed ([`Explorer::error`]).
    pub fn advance(&mut self) -> bool {
        self.stats.runs += 1;
        self.stats.max_steps = self.stats.max_steps.max(self.at as u64);
        match self.cut.take() {
            Some(Cut::Sleep) => self.stats.sleep_blocked += 1,
            Some(Cut::Bound) => self.stats.bound_blocked += 1,
            None => {}
        }
        if self.error.is_some() {
            return false;
        }
        // The path beyond the steps the run made (a run cut short) goes.
        self.path.truncate(self.at);
        if self.reduce {
            self.add_backtrack_points();
        }
        self.at = 0;
        while let Some(node) = self.path.last_mut() {
            let left = node.backtrack & !node.done & !node.asleep();
            if left != 0 {
                let cpu = left.trailing_zeros();
                let step = std::mem::take(&mut node.footprint);
                node.explored.push((node.chosen, step));
                node.chosen = cpu;
                node.done |= bit(cpu);
                return true;
            }
            self.path.pop();
        }
        self.stats.complete = !self.stats.bound_hit;
        false
    }

    /// Whether `cpu` may be tried at node `j` within the bound; notes
    /// that the bound forbade a choice.
    fn within_bound(&mut self, j: usize, cpu: u32) -> bool {
        let node = &self.path[j];
        let ok = !node.preempts(cpu) || self.bound.is_none_or(|b| node.preemptions < b);
        if !ok {
            self.stats.bound_hit = true;
        }
        ok
    }

    /// Try `cpu` at node `j` too, unless it sleeps there. Where the bound
    /// forbids it, try it instead at the latest earlier state where the
    /// bound allows it (Coons, Musuvathi and McKinley, OOPSLA 2013:
    /// bounding and the reduction otherwise lose each other's runs).
    fn add_backtrack(&mut self, j: usize, cpu: u32) {
        for k in (0..=j).rev() {
            let node = &self.path[k];
            if node.enabled & bit(cpu) == 0 {
                continue;
            }
            if node.asleep() & bit(cpu) != 0 {
                return;
            }
            if self.within_bound(k, cpu) {
                self.path[k].backtrack |= bit(cpu);
                return;
            }
        }
    }

    /// The races of the run just made: for each step, the earlier steps of
    /// other CPUs it depends on that happen-before did not already order
    /// before it; each adds a backtrack point at the state before it.
    fn add_backtrack_points(&mut self) {
        let n = self.path.len();
        let cpus = self.path.iter().map(|node| 64 - node.enabled.leading_zeros()).max().unwrap_or(0) as usize;
        // Vector clock of each step: steps of each CPU that happen before
        // it or are it; and each step's number among its CPU's.
        let mut clocks: Vec<Vec<u32>> = Vec::with_capacity(n);
        let mut nth: Vec<u32> = Vec::with_capacity(n);
        let mut latest: Vec<Vec<u32>> = vec![vec![0; cpus]; cpus];
        let mut count = vec![0u32; cpus];
        let mut last_write: HashMap<u64, usize> = HashMap::new();
        let mut reads: HashMap<u64, Vec<usize>> = HashMap::new();
        let mut unknown_steps: Vec<usize> = vec![];
        let mut touching: Vec<usize> = vec![];
        let mut races = vec![];
        for i in 0..n {
            let p = self.path[i].chosen as usize;
            count[p] += 1;
            let mut deps: Vec<usize> = vec![];
            let fp = &self.path[i].footprint;
            if fp.has_unknown() {
                deps.extend(&touching);
                unknown_steps.push(i);
            } else if !fp.is_empty() {
                deps.extend(&unknown_steps);
            }
            for (word, write) in fp.words() {
                if word == UNKNOWN {
                    continue;
                }
                if let Some(&j) = last_write.get(&word) {
                    deps.push(j);
                }
                if write {
                    if let Some(rs) = reads.get_mut(&word) {
                        deps.append(rs);
                    }
                    last_write.insert(word, i);
                } else {
                    reads.entry(word).or_default().push(i);
                }
            }
            if !fp.is_empty() {
                touching.push(i);
            }
            // What this CPU's own earlier steps already ordered before it.
            let base = &latest[p];
            let mut clock = base.clone();
            for &j in &deps {
                let q = self.path[j].chosen as usize;
                if q != p && base[q] < nth[j] {
                    races.push((j, i));
                }
                for (c, &t) in clock.iter_mut().zip(&clocks[j]) {
                    *c = (*c).max(t);
                }
            }
            clock[p] = count[p];
            latest[p] = clock.clone();
            clocks.push(clock);
            nth.push(count[p]);
        }
        for (j, i) in races {
            let cpu = self.path[i].chosen;
            if self.path[j].enabled & bit(cpu) != 0 {
                self.add_backtrack(j, cpu);
            } else {
                for c in members(self.path[j].enabled) {
                    self.add_backtrack(j, c);
                }
            }
        }
    }
}

impl Scheduler for Explorer {
    fn next(&mut self, runnable: &[Runnable], step: u64) -> Option<u32> {
        let s = step as usize;
        debug_assert_eq!(s, self.at);
        if runnable.iter().any(|r| r.cpu >= 64) {
            self.error = Some("the exhaustive checker runs at most 64 CPUs".to_owned());
            return None;
        }
        let enabled = runnable.iter().fold(0, |m, r| m | bit(r.cpu));
        if let Some(node) = self.path.get(s) {
            // Replaying the path to the state to branch at.
            if node.enabled != enabled {
                self.error = Some(format!(
                    "at step {s} CPUs {enabled:#b} could run where the run before had {:#b}: the run is not a \
                     function of its schedule",
                    node.enabled
                ));
                return None;
            }
            self.at += 1;
            return Some(node.chosen);
        }
        let (last, preemptions, sleep) = match s.checked_sub(1).map(|p| &self.path[p]) {
            None => (None, 0, vec![]),
            Some(parent) => {
                let preemptions = parent.preemptions + u32::from(parent.preempts(parent.chosen));
                // Under a bound, a run a sleep set calls equivalent to an
                // explored one may need more preemptions than the bound
                // allows, so nothing sleeps there.
                let sleep = if self.reduce && self.bound.is_none() {
                    parent
                        .sleep
                        .iter()
                        .chain(&parent.explored)
                        .filter(|(_, fp)| !fp.conflicts(&parent.footprint))
                        .cloned()
                        .collect()
                } else {
                    vec![]
                };
                (Some(parent.chosen), preemptions, sleep)
            }
        };
        self.path.push(Node {
            enabled,
            last,
            preemptions,
            chosen: 0,
            footprint: Footprint::default(),
            done: 0,
            backtrack: 0,
            sleep,
            explored: vec![],
        });
        let awake = enabled & !self.path[s].asleep();
        let allowed = members(awake).filter(|&c| self.within_bound(s, c)).fold(0, |m, c| m | bit(c));
        if allowed == 0 {
            self.path.pop();
            self.cut = Some(if awake == 0 { Cut::Sleep } else { Cut::Bound });
            return None;
        }
        // Go on with the CPU that ran last when it may: runs with few
        // preemptions first, as a bounded search wants.
        let cpu = match last {
            Some(l) if allowed & bit(l) != 0 => l,
            _ => allowed.trailing_zeros(),
        };
        let node = &mut self.path[s];
        node.chosen = cpu;
        node.done = bit(cpu);
        node.backtrack = if self.reduce { bit(cpu) } else { allowed };
        self.at += 1;
        Some(cpu)
    }

    fn wants_footprints(&self) -> bool {
        true
    }

    fn stepped(&mut self, cpu: u32, footprint: Footprint) {
        let node = &mut self.path[self.at - 1];
        debug_assert_eq!(node.chosen, cpu);
        node.footprint = footprint;
    }
}
