//! Lockdep for the model: the lock-order oracle's rules and its run-wide
//! dependency graph (DESIGN §4).
//!
//! As in the kernel's lockdep, the rules are about lock *classes*, not
//! lock instances: every `ptl` is one class ([`LockClass::PteLock`]),
//! every split `pml` another ([`LockClass::PmdLock`]), and
//! `mm->page_table_lock` a third. `spin_lock_nested(l, n)` makes subclass
//! `n`, which lockdep treats as a class of its own. A node of the graph is
//! a [`LockNode`]: a class and a subclass.
//!
//! Two kinds of rule are checked on every *blocking* acquisition (taken
//! while some lock is held; [`Cx::spin_lock`](crate::kernel::Cx::spin_lock),
//! `spin_lock_nested`, `pmd_lock`), once against each held lock:
//!
//! * the order rule ([`order_rule`]): `pml` (or `mm->page_table_lock`)
//!   before `ptl`, never the other way round except by trylock; two locks
//!   of one class only with a higher subclass for the inner one ("possible
//!   recursive locking detected" when the subclass is the same);
//! * the dependency graph ([`Lockdep`]): holding A while waiting for B adds
//!   the edge A → B, kept for the whole run in the [`Mm`](crate::Mm), so an
//!   ABBA is reported when its second half is first taken, whether or not
//!   the two ever met and deadlocked. A trylock cannot wait, so it adds no
//!   edge; but a lock taken by trylock and then held is the A of the
//!   blocking acquisitions made under it.
//!
//! Each (held, new) pair is reported at most once per run, in lockdep's
//! words: "possible circular locking dependency detected" with the
//! existing dependency chain and the two-CPU "possible unsafe locking
//! scenario" table. When the order rule and the graph both object to the
//! same pair, the graph's report (which has the chain) is the one given.
//!
//! Cost. Only acquisitions made with a lock already held get here; each
//! looks up the edge in a bitmap of the edges already in the graph (a
//! relaxed atomic load of a line that is written once per edge per run),
//! and only a new edge takes the graph's mutex. There are at most
//! 24 × 24 edges ([`MAX_LOCKDEP_SUBCLASSES`] subclasses of 3 classes), so
//! the mutex is taken a handful of times per run, whatever its length.
//!
//! The exhaustive checker does not see the graph (its words are plain
//! atomics, not [`crate::footprint`]'s): it is an observer, and what it
//! reports depends on the set of edges a run adds, not on the order they
//! arrive in. The last edge of a cycle to arrive closes it, whichever
//! that is, so two interleavings that differ only in which CPU adds its
//! edge first reach the same verdict (with the chain told from the other
//! side) and count as one.

use crate::locks::LockClass;
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use strum::EnumCount;

/// Subclasses the fast path tracks per class (the kernel's
/// `MAX_LOCKDEP_SUBCLASSES`). Higher subclasses are still checked, through
/// the mutex every time.
pub const MAX_LOCKDEP_SUBCLASSES: u32 = 8;

const NODES: usize = LockClass::COUNT * MAX_LOCKDEP_SUBCLASSES as usize;
const EDGE_WORDS: usize = (NODES * NODES).div_ceil(64);

/// A node of the dependency graph: a lock class and a subclass.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LockNode {
    /// The class.
    pub class: LockClass,
    /// The subclass (`spin_lock_nested`'s argument; 0 for `spin_lock`).
    pub subclass: u32,
}

impl LockNode {
    /// Class `class`, subclass `subclass`.
    pub fn new(class: LockClass, subclass: u32) -> LockNode {
        LockNode { class, subclass }
    }

    fn index(self) -> Option<usize> {
        (self.subclass < MAX_LOCKDEP_SUBCLASSES)
            .then(|| self.class as usize * MAX_LOCKDEP_SUBCLASSES as usize + self.subclass as usize)
    }
}

/// Lockdep's spelling: `ptl`, or `ptl/1` for subclass 1.
impl fmt::Display for LockNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.class.name())?;
        if self.subclass != 0 {
            write!(f, "/{}", self.subclass)?;
        }
        Ok(())
    }
}

/// Where a dependency was first seen: who took which lock while holding
/// which.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Site {
    /// The CPU.
    pub cpu: u32,
    /// Its role then (`collapse`, `restore`, ...).
    pub role: String,
    /// The collapse step, when the CPU was collapsing.
    pub step: Option<String>,
    /// The lock held (instance name: "ptl (PTE table 0)").
    pub held: String,
    /// The lock taken while holding it.
    pub taken: String,
}

impl Site {
    /// Two lines of a dependency chain entry (where lockdep prints the
    /// stack trace).
    fn lines(&self) -> String {
        let at = self.step.as_deref().map(|s| format!(" at {s}")).unwrap_or_default();
        format!(
            "       {}, taken while holding {}\n       by CPU {} ({}){at}\n",
            self.taken, self.held, self.cpu, self.role
        )
    }
}

/// An edge of the graph: `to` was waited for while `from` was held.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dependency {
    /// Held.
    pub from: LockNode,
    /// Waited for.
    pub to: LockNode,
    /// Where it was first seen.
    pub site: Site,
}

/// What the order rule says of taking `new` (blocking) while `held` is held.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rule {
    /// Allowed.
    Legal,
    /// The same class and subclass (another instance): lockdep's
    /// "possible recursive locking detected".
    Recursive,
    /// Against the documented order; the text says which rule.
    Order(String),
}

/// The order rule (DESIGN §2): `pml` → `ptl` is the only order between
/// classes, and `ptl` under `mm->page_table_lock` (locks split for PTE
/// tables only). Within a class, an inner lock needs a higher subclass.
pub fn order_rule(held: LockNode, new: LockNode) -> Rule {
    use LockClass::*;
    match (held.class, new.class) {
        (PageTableLock | PmdLock, PteLock) => Rule::Legal,
        (a, b) if a == b => match new.subclass.cmp(&held.subclass) {
            std::cmp::Ordering::Greater => Rule::Legal,
            std::cmp::Ordering::Equal => Rule::Recursive,
            std::cmp::Ordering::Less => Rule::Order(format!(
                "which breaks the nesting order: with {held} held, another {} must be\n\
                 taken with a higher subclass than {}",
                new.class.name(),
                held.subclass
            )),
        },
        (PteLock, outer) => Rule::Order(format!(
            "which breaks the lock order {} -> ptl: with ptl held, {} may\nonly be trylocked.",
            outer.name(),
            outer.name()
        )),
        (a, b) => Rule::Order(format!(
            "which breaks the lock order: {} and {} never nest (pmd_lockptr() is one\nor the other).",
            a.name(),
            b.name()
        )),
    }
}

/// The acquisition being checked, for a report.
#[derive(Clone, Debug)]
pub struct Acquisition {
    /// Held → new, and where.
    pub dep: Dependency,
    /// Every lock the CPU holds, outermost first, with its node.
    pub held: Vec<(LockNode, String)>,
}

impl Acquisition {
    fn header(&self, title: &str) -> String {
        let d = &self.dep;
        let at = d.site.step.as_deref().map(|s| format!(", at: {s}")).unwrap_or_default();
        format!(
            "WARNING: {title}\n\
             CPU {cpu} ({role}) is trying to acquire lock:\n \
             ({to}){{+.+.}}, {taken}{at}\n\
             \n\
             but CPU {cpu} is already holding lock:\n \
             ({from}){{+.+.}}, {held}\n\
             \n",
            cpu = d.site.cpu,
            role = d.site.role,
            to = d.to,
            from = d.from,
            taken = d.site.taken,
            held = d.site.held,
        )
    }

    fn held_list(&self) -> String {
        let d = &self.dep;
        let n = self.held.len();
        let mut s =
            format!("{n} lock{} held by CPU {} ({}):\n", if n == 1 { "" } else { "s" }, d.site.cpu, d.site.role);
        for (i, (node, name)) in self.held.iter().enumerate() {
            s.push_str(&format!(" #{i}: ({node}){{+.+.}}, {name}\n"));
        }
        s
    }

    /// "the existing dependency chain (in reverse order) is:" with `chain`
    /// (the path from the new lock to the held one), then the scenario.
    fn chain_and_scenario(&self, chain: &[Dependency]) -> String {
        let d = &self.dep;
        let mut s = String::from("the existing dependency chain (in reverse order) is:\n\n");
        for (i, e) in chain.iter().enumerate().rev() {
            s.push_str(&format!("-> #{} ({}){{+.+.}}:\n{}", i + 1, e.to, e.site.lines()));
        }
        s.push_str(&format!("-> #0 ({}){{+.+.}}:\n{}\n", d.to, d.site.lines()));
        s.push_str("other info that might help us debug this:\n\n");
        // Lockdep's names: source is the new lock, target the held one,
        // parent the node before the chain's last (which is the target, or
        // the target's class under another subclass).
        let reached = chain.last().map_or(d.from, |e| e.to);
        let parent = chain.last().map_or(d.to, |e| e.from);
        s.push_str(&scenario(d.to, parent, d.from, reached, chain.iter().map(|e| e.from).chain([reached])));
        s
    }

    /// The graph's report: taking `dep.to` while holding `dep.from` closes
    /// the cycle `chain` (`dep.to` → ... → `dep.from`).
    pub fn circular_report(&self, chain: &[Dependency], rule: &Rule) -> String {
        let mut s = self.header("possible circular locking dependency detected");
        s.push_str("which lock already depends on the new lock.\n");
        if let Rule::Order(why) = rule {
            s.push_str(&format!("(and {why})\n"));
        }
        s.push('\n');
        s.push_str(&self.chain_and_scenario(chain));
        s.push_str(&self.held_list());
        s
    }

    /// The order rule's report. `chain`, when not empty, is a path from the
    /// new lock to the held lock's class under another subclass: the other
    /// half of the ABBA, which the graph (one class per subclass) cannot
    /// close by itself.
    pub fn order_report(&self, why: &str, chain: &[Dependency]) -> String {
        let d = &self.dep;
        let mut s = self.header("possible circular locking dependency detected");
        s.push_str(why);
        s.push('\n');
        if chain.is_empty() {
            s.push_str("No CPU has taken them the other way round yet in this run; any that\n");
            s.push_str("does, as the documented order says it may, can deadlock with this one.\n\n");
            s.push_str("other info that might help us debug this:\n\n");
            s.push_str(&scenario(d.to, d.to, d.from, d.from, [d.to, d.from]));
        } else {
            let last = chain.last().expect("not empty").to;
            s.push_str(&format!(
                "The other way round has been taken already; {last} is {} under a nesting\n\
                 annotation, a class of its own to lockdep's graph, so it is the order\n\
                 rule that reports this.\n\n",
                d.from
            ));
            s.push_str(&self.chain_and_scenario(chain));
        }
        s.push_str(&self.held_list());
        s
    }

    /// The recursion report: another lock of the same class and subclass.
    pub fn recursive_report(&self) -> String {
        let d = &self.dep;
        let mut s = self.header("possible recursive locking detected");
        s.push_str("other info that might help us debug this:\n");
        s.push_str(" Possible unsafe locking scenario:\n\n");
        s.push_str("       CPU0\n       ----\n");
        s.push_str(&format!("  lock({});\n  lock({});\n\n *** DEADLOCK ***\n\n", d.from, d.to));
        s.push_str(" May be due to missing lock nesting notation\n\n");
        s.push_str(&self.held_list());
        s
    }
}

/// Lockdep's `print_circular_lock_scenario()`: CPU0 holds `target` and
/// waits for `source`; CPU1 holds `parent` and waits for `reached` (the
/// target, or its class under another subclass).
fn scenario(
    source: LockNode,
    parent: LockNode,
    target: LockNode,
    reached: LockNode,
    chain: impl IntoIterator<Item = LockNode>,
) -> String {
    let mut s = String::new();
    if parent != source {
        let names: Vec<String> = chain.into_iter().map(|n| n.to_string()).collect();
        s.push_str(&format!("Chain exists of:\n  {}\n\n", names.join(" --> ")));
    }
    s.push_str(" Possible unsafe locking scenario:\n\n");
    s.push_str("       CPU0                    CPU1\n");
    s.push_str("       ----                    ----\n");
    s.push_str(&format!("  lock({target});\n"));
    s.push_str(&format!("                               lock({parent});\n"));
    s.push_str(&format!("                               lock({reached});\n"));
    s.push_str(&format!("  lock({source});\n"));
    s.push_str("\n *** DEADLOCK ***\n\n");
    s
}

#[derive(Default)]
struct Graph {
    /// Edges out of each node, in the order first seen.
    after: BTreeMap<LockNode, Vec<Dependency>>,
    /// Pairs already reported (any rule).
    reported: Vec<(LockNode, LockNode)>,
}

impl Graph {
    fn has_edge(&self, from: LockNode, to: LockNode) -> bool {
        self.after.get(&from).is_some_and(|v| v.iter().any(|e| e.to == to))
    }

    /// Shortest path (breadth first, as lockdep searches) from `from` to a
    /// node `is_target` accepts, as the edges followed.
    fn path(&self, from: LockNode, is_target: impl Fn(LockNode) -> bool) -> Option<Vec<Dependency>> {
        let mut parent: BTreeMap<LockNode, &Dependency> = BTreeMap::new();
        let mut queue = VecDeque::from([from]);
        while let Some(n) = queue.pop_front() {
            for e in self.after.get(&n).into_iter().flatten() {
                if e.to == from || parent.contains_key(&e.to) {
                    continue;
                }
                parent.insert(e.to, e);
                if is_target(e.to) {
                    let mut path = vec![e.clone()];
                    let mut at = e.from;
                    while at != from {
                        let p = parent[&at];
                        path.push(p.clone());
                        at = p.from;
                    }
                    path.reverse();
                    return Some(path);
                }
                queue.push_back(e.to);
            }
        }
        None
    }
}

/// The run-wide dependency graph, kept in the [`Mm`](crate::Mm).
#[derive(Default)]
pub struct Lockdep {
    /// Bit per edge (nodes with a subclass below the limit) in the graph.
    known: [AtomicU64; EDGE_WORDS],
    /// Bit per pair already reported.
    reported: [AtomicU64; EDGE_WORDS],
    graph: Mutex<Graph>,
}

fn bit(from: LockNode, to: LockNode) -> Option<(usize, u64)> {
    let i = from.index()? * NODES + to.index()?;
    Some((i / 64, 1 << (i % 64)))
}

impl Lockdep {
    fn graph(&self) -> MutexGuard<'_, Graph> {
        self.graph.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the edge `from` → `to` is in the graph already (the fast
    /// path: one relaxed load; false for untracked subclasses).
    #[inline]
    pub fn knows(&self, from: LockNode, to: LockNode) -> bool {
        bit(from, to).is_some_and(|(w, b)| self.known[w].load(Ordering::Relaxed) & b != 0)
    }

    /// Record that `dep.to` was waited for while `dep.from` was held. If
    /// the edge is new and closes a cycle (`dep.to` already reaches
    /// `dep.from`), returns the existing path `dep.to` → ... → `dep.from`;
    /// the pair then counts as reported. A self-edge is not recorded (that
    /// is recursion, for the order rule).
    pub fn add(&self, dep: Dependency) -> Option<Vec<Dependency>> {
        if dep.from == dep.to {
            return None;
        }
        let (from, to) = (dep.from, dep.to);
        let mut g = self.graph();
        if g.has_edge(from, to) {
            self.set(&self.known, from, to);
            return None;
        }
        let chain = g.path(to, |n| n == from);
        g.after.entry(from).or_default().push(dep);
        self.set(&self.known, from, to);
        let chain = chain?;
        if g.reported.contains(&(from, to)) {
            return None;
        }
        g.reported.push((from, to));
        self.set(&self.reported, from, to);
        Some(chain)
    }

    /// Claim the one report of the pair `from` → `to`: true the first time.
    pub fn first_report(&self, from: LockNode, to: LockNode) -> bool {
        if bit(from, to).is_some_and(|(w, b)| self.reported[w].load(Ordering::Relaxed) & b != 0) {
            return false;
        }
        let mut g = self.graph();
        if g.reported.contains(&(from, to)) {
            return false;
        }
        g.reported.push((from, to));
        self.set(&self.reported, from, to);
        true
    }

    /// A path from `from` to any subclass of `class` (for the order rule's
    /// report: the other half of an ABBA the graph splits by subclass).
    pub fn path_to_class(&self, from: LockNode, class: LockClass) -> Vec<Dependency> {
        self.graph().path(from, |n| n.class == class).unwrap_or_default()
    }

    /// Every edge recorded so far, in first-seen order per node.
    pub fn dependencies(&self) -> Vec<Dependency> {
        self.graph().after.values().flatten().cloned().collect()
    }

    fn set(&self, bits: &[AtomicU64; EDGE_WORDS], from: LockNode, to: LockNode) {
        if let Some((w, b)) = bit(from, to) {
            bits[w].fetch_or(b, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PML: LockNode = LockNode { class: LockClass::PmdLock, subclass: 0 };
    const PTL: LockNode = LockNode { class: LockClass::PteLock, subclass: 0 };
    const PTL1: LockNode = LockNode { class: LockClass::PteLock, subclass: 1 };

    fn dep(from: LockNode, to: LockNode, cpu: u32) -> Dependency {
        let site = Site {
            cpu,
            role: "collapse".into(),
            step: Some("step 4 (remove table)".into()),
            held: format!("{from} (instance)"),
            taken: format!("{to} (instance)"),
        };
        Dependency { from, to, site }
    }

    #[test]
    fn a_new_edge_that_closes_a_cycle_is_reported_with_its_chain() {
        let ld = Lockdep::default();
        let pgtl = LockNode::new(LockClass::PageTableLock, 0);
        assert_eq!(ld.add(dep(PML, PTL, 0)), None);
        assert_eq!(ld.add(dep(PTL, pgtl, 1)), None);
        assert!(ld.knows(PML, PTL) && ld.knows(PTL, pgtl) && !ld.knows(PTL, PML));
        // pgtl -> pml closes pml -> ptl -> pgtl.
        let chain = ld.add(dep(pgtl, PML, 2)).expect("cycle");
        let hops: Vec<(LockNode, LockNode)> = chain.iter().map(|e| (e.from, e.to)).collect();
        assert_eq!(hops, [(PML, PTL), (PTL, pgtl)]);
        assert_eq!(chain[1].site.cpu, 1);
        // Once per pair: the edge is known now, and the pair is claimed.
        assert_eq!(ld.add(dep(pgtl, PML, 3)), None);
        assert!(!ld.first_report(pgtl, PML));
        let a = Acquisition { dep: dep(pgtl, PML, 2), held: vec![(pgtl, "mm->page_table_lock".into())] };
        let text = a.circular_report(&chain, &order_rule(pgtl, PML));
        assert!(text.starts_with("WARNING: possible circular locking dependency detected\n"), "{text}");
        assert!(text.contains("Chain exists of:\n  pml --> ptl --> page_table_lock\n"), "{text}");
        assert!(text.contains("-> #2 (page_table_lock){+.+.}:") && text.contains("-> #0 (pml){+.+.}:"), "{text}");
        assert!(text.contains("never nest"), "{text}");
    }

    #[test]
    fn subclasses_are_nodes_of_their_own() {
        let ld = Lockdep::default();
        assert_eq!(ld.add(dep(PML, PTL1, 0)), None);
        // ptl/0 -> pml does not close pml -> ptl/1 in the graph ...
        assert_eq!(ld.add(dep(PTL, PML, 0)), None);
        // ... but the order rule's report finds it by class.
        let chain = ld.path_to_class(PML, LockClass::PteLock);
        assert_eq!(chain.len(), 1);
        assert_eq!(chain[0].to, PTL1);
        // The nesting order within one class.
        assert_eq!(order_rule(PTL, PTL1), Rule::Legal);
        assert_eq!(order_rule(PTL1, PTL1), Rule::Recursive);
        assert!(matches!(order_rule(PTL1, PTL), Rule::Order(_)));
        assert_eq!(order_rule(PML, PTL), Rule::Legal);
        assert!(matches!(order_rule(PTL, PML), Rule::Order(_)));
    }

    #[test]
    fn untracked_subclasses_go_through_the_mutex() {
        let ld = Lockdep::default();
        let deep = LockNode::new(LockClass::PmdLock, MAX_LOCKDEP_SUBCLASSES + 1);
        assert_eq!(ld.add(dep(PML, deep, 0)), None);
        assert!(!ld.knows(PML, deep));
        assert!(ld.add(dep(deep, PML, 0)).is_some());
        assert!(!ld.first_report(deep, PML));
    }
}
