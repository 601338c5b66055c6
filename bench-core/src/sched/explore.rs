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
//! The work per run is kept to the run's new part. The steps before the
//! state a run branches at replay the run before it, choice for choice,
//! and a run is a function of its schedule, so their footprints are
//! those the path already holds: they are not recorded again
//! ([`Scheduler::records_step`]). The race analysis keeps its vector
//! clocks and its table of each line's last write and reads, with an
//! undo log, and rewinds them to the branch point instead of analysing
//! the whole run again ([`Races`]); the races of the replayed steps were
//! added when they first ran.
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
    /// The state the current run branches at: the steps before it replay
    /// the run before, whose footprints the path keeps, so they are not
    /// recorded again ([`Scheduler::records_step`]).
    branch: usize,
    bound: Option<u32>,
    reduce: bool,
    /// Whether the current run was cut, and why.
    cut: Option<Cut>,
    stats: Exploration,
    error: Option<String>,
    /// The race analysis, kept from run to run.
    races: Races,
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
        Explorer {
            path: vec![],
            at: 0,
            branch: 0,
            bound,
            reduce,
            cut: None,
            stats: Exploration::default(),
            error: None,
            races: Races::default(),
        }
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
                self.branch = self.path.len() - 1;
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
    /// The steps before the run's branch point replayed the run before
    /// (same choices, same footprints), whose races were added then: only
    /// the steps from there on are analysed ([`Races`]).
    fn add_backtrack_points(&mut self) {
        let mut races = std::mem::take(&mut self.races);
        let found = races.analyse(&self.path, self.branch);
        for &(j, i) in found {
            let cpu = self.path[i as usize].chosen;
            let j = j as usize;
            if self.path[j].enabled & bit(cpu) != 0 {
                self.add_backtrack(j, cpu);
            } else {
                for c in members(self.path[j].enabled) {
                    self.add_backtrack(j, c);
                }
            }
        }
        self.races = races;
    }
}

/// The race analysis of a path, kept from run to run and rewound to the
/// branch point of each: happens-before as vector clocks, and per line its
/// last write and the reads since.
#[derive(Default)]
struct Races {
    /// CPUs the clocks count (fixed by the first run: each run of an
    /// exploration starts with the same CPUs).
    cpus: usize,
    /// Vector clock of each step analysed (row i: the steps of each CPU
    /// that happen before step i or are it).
    clocks: Vec<u32>,
    /// Each step's number among its CPU's steps (from 1).
    nth: Vec<u32>,
    /// Per line: its last write and the first of the reads since.
    lines: rustc_hash::FxHashMap<u64, Line>,
    /// The read lists, threaded (step, next), newest first.
    reads: Vec<(u32, u32)>,
    /// Steps that touched an unlisted word, and steps that touched any.
    unknown_steps: Vec<u32>,
    touching: Vec<u32>,
    /// Per step: where its entries of `undo` start, and the length of
    /// `reads` before it.
    marks: Vec<(u32, u32)>,
    /// Each line's value before a step changed it, in order: what a rewind
    /// restores.
    undo: Vec<(u64, Line)>,
    /// The races the last analysis found: (earlier step, later step).
    found: Vec<(u32, u32)>,
}

impl Races {
    /// Analyse `path` from step `from` on (the steps before are those
    /// analysed last time, unchanged); the races whose later step is one
    /// of those analysed now.
    fn analyse(&mut self, path: &[Node], from: usize) -> &[(u32, u32)] {
        let cpus = path.iter().map(|node| 64 - node.enabled.leading_zeros()).max().unwrap_or(0) as usize;
        let from = if cpus == self.cpus { from.min(self.nth.len()) } else { 0 };
        self.cpus = cpus;
        self.rewind(from);
        self.found.clear();
        // Each CPU's latest clock and its steps so far, at `from`.
        let mut latest: Vec<u32> = vec![0; cpus * cpus];
        let mut count = vec![0u32; cpus];
        let mut seen = 0;
        for j in (0..from).rev() {
            let q = path[j].chosen as usize;
            if count[q] == 0 {
                count[q] = self.nth[j];
                latest[q * cpus..(q + 1) * cpus].copy_from_slice(&self.clocks[j * cpus..(j + 1) * cpus]);
                seen += 1;
                if seen == cpus {
                    break;
                }
            }
        }
        let mut deps: Vec<u32> = vec![];
        let mut clock = vec![0u32; cpus];
        for (i, node) in path.iter().enumerate().skip(from) {
            let p = node.chosen as usize;
            count[p] += 1;
            self.marks.push((self.undo.len() as u32, self.reads.len() as u32));
            deps.clear();
            let fp = &node.footprint;
            if fp.has_unknown() {
                deps.extend(&self.touching);
                self.unknown_steps.push(i as u32);
            } else if !fp.is_empty() {
                deps.extend(&self.unknown_steps);
            }
            for (word, write) in fp.words() {
                if word == UNKNOWN {
                    continue;
                }
                let line = self.lines.entry(word).or_insert(Line { write: NONE, reads: NONE });
                self.undo.push((word, *line));
                if line.write != NONE {
                    deps.push(line.write);
                }
                if write {
                    let mut r = line.reads;
                    while r != NONE {
                        let (step, next) = self.reads[r as usize];
                        deps.push(step);
                        r = next;
                    }
                    *line = Line { write: i as u32, reads: NONE };
                } else {
                    self.reads.push((i as u32, line.reads));
                    line.reads = (self.reads.len() - 1) as u32;
                }
            }
            if !fp.is_empty() {
                self.touching.push(i as u32);
            }
            // What this CPU's own earlier steps already ordered before it.
            clock.copy_from_slice(&latest[p * cpus..(p + 1) * cpus]);
            for &j in &deps {
                let q = path[j as usize].chosen as usize;
                if q != p && latest[p * cpus + q] < self.nth[j as usize] {
                    self.found.push((j, i as u32));
                }
                let row = j as usize * cpus;
                for (c, &t) in clock.iter_mut().zip(&self.clocks[row..row + cpus]) {
                    *c = (*c).max(t);
                }
            }
            clock[p] = count[p];
            latest[p * cpus..(p + 1) * cpus].copy_from_slice(&clock);
            self.clocks.extend_from_slice(&clock);
            self.nth.push(count[p]);
        }
        &self.found
    }

    /// Forget the steps from `to` on: the analysis as it stood after step
    /// `to - 1`.
    fn rewind(&mut self, to: usize) {
        if to == 0 {
            self.lines.clear();
            self.undo.clear();
            self.marks.clear();
            self.reads.clear();
        }
        while self.marks.len() > to {
            let (undo, reads) = self.marks.pop().expect("a step to forget");
            for (word, before) in self.undo.drain(undo as usize..).rev() {
                *self.lines.get_mut(&word).expect("an undone line is in the table") = before;
            }
            self.reads.truncate(reads as usize);
        }
        self.clocks.truncate(to * self.cpus);
        self.nth.truncate(to);
        let kept = |steps: &mut Vec<u32>| steps.truncate(steps.partition_point(|&s| (s as usize) < to));
        kept(&mut self.unknown_steps);
        kept(&mut self.touching);
    }
}

/// No step (a line not written yet, the end of a read list).
const NONE: u32 = u32::MAX;

/// A line's accesses so far in the race analysis: the step that last
/// wrote it and the first of the reads since.
#[derive(Copy, Clone, Debug)]
struct Line {
    write: u32,
    reads: u32,
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

    fn records_step(&self, step: u64) -> bool {
        step as usize >= self.branch
    }

    fn stepped(&mut self, cpu: u32, footprint: Footprint) {
        let node = &mut self.path[self.at - 1];
        debug_assert_eq!(node.chosen, cpu);
        node.footprint = footprint;
    }
}
