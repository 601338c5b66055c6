//! The counterexample timeline `collapse-bench check` prints: one column
//! per CPU that takes part, one row per event, from the collapse's last
//! prologue before the violation to the violation, at most 72 columns
//! wide so it can be pasted into a mail.
//!
//! ```text
//! step  CPU0 collapse                 CPU1 uffd
//! ----  -------------                 ---------
//!    1  prologue
//!   11  step 2 (clear)
//!   11  ptep_clear x512 0..511
//!   17                                lock ptl
//!   18                                install anon idx 120
//!   22  pte_free_defer table 0
//!       *** table-freed-live
//! ```
//!
//! Events of other CPUs are kept only where they touch what the collapse
//! touches: their lock, trylock and unlock of a lock the collapse takes in
//! the window (and their hold of one when the window opens), the PTEs and
//! PMDs they set or clear while holding one of those, and every table
//! they free (what a page-table freer does). A run of installs, each
//! in its own `ptl` section (a UFFDIO_COPY of many pages), is one row
//! (`anon x15 240..254`) but for its last, shown whole.

use bench_core::kernel::{Step, PTRS_PER_PTE};
use bench_core::results::{TimelineEntry, TimelineEvent, TimelineLock};
use bench_core::{CachedTranslation, LockClass, Role};
use std::collections::{BTreeMap, BTreeSet};

/// Widest line.
pub const WIDTH: usize = 72;

/// What to draw.
pub struct Timeline<'a> {
    /// The events up to the violation, in order.
    pub events: &'a [TimelineEntry],
    /// Role of each CPU.
    pub roles: &'a [Role],
    /// The CPU that reported it (None: found at teardown).
    pub cpu: Option<u32>,
    /// The last row's text ("*** table-freed-live").
    pub marker: String,
    /// Translations the violation says other CPUs still cache: the fill
    /// of each is shown, however early it happened.
    pub cached: &'a [CachedTranslation],
}

/// A lock's short name in a timeline: its class ("pml", "ptl"), or "mm
/// ptl" for `mm->page_table_lock`.
pub fn lock_label(lock: &TimelineLock) -> &'static str {
    match lock.class {
        LockClass::PageTableLock => "mm ptl",
        class => class.name(),
    }
}

/// The label of an event that names one numbered thing, split into the
/// words and the number (`("ptep_clear idx", 7)`), so that a run of them
/// can be shown as one.
pub fn numbered(event: &TimelineEvent) -> Option<(&'static str, u64)> {
    match *event {
        TimelineEvent::PteClear { idx } => Some(("ptep_clear idx", idx.into())),
        TimelineEvent::InstallAnon { idx, .. } => Some(("install anon idx", idx.into())),
        TimelineEvent::TableFree { table } => Some(("pte_free_defer table", table.into())),
        TimelineEvent::TableFreeNow { table } => Some(("pte_free table", table.into())),
        _ => None,
    }
}

/// An event's short label ("lock ptl", "step 2 (clear)", "install anon idx
/// 176", "return SCAN_FAIL").
pub fn label(event: &TimelineEvent) -> String {
    match event {
        TimelineEvent::Step { step } => step.label().to_owned(),
        TimelineEvent::Lock { lock } => format!("lock {}", lock_label(lock)),
        TimelineEvent::Trylock { lock, ok } => {
            format!("trylock {} {}", lock_label(lock), if *ok { "ok" } else { "FAILED" })
        }
        TimelineEvent::Unlock { lock } => format!("unlock {}", lock_label(lock)),
        TimelineEvent::PteSet { idx, pte } => format!("set idx {idx}: {pte}"),
        TimelineEvent::PmdClear => "pmdp_collapse_flush".to_owned(),
        TimelineEvent::PmdClearOnly => "pmd_clear".to_owned(),
        TimelineEvent::PmdHuge => "set_huge_pmd".to_owned(),
        TimelineEvent::FlushMm => "flush_tlb_mm".to_owned(),
        TimelineEvent::FlushRange => "flush range".to_owned(),
        TimelineEvent::Returned { result } => format!("return {result}"),
        TimelineEvent::LocklessRead => "lockless read".to_owned(),
        TimelineEvent::TlbAccess { vpn } => format!("tlb access {vpn:#x}"),
        // Named by entry index, as the clears and installs are.
        TimelineEvent::TlbFill { vpn, .. } => format!("tlb fill idx {}", vpn % PTRS_PER_PTE as u64),
        TimelineEvent::PageOp { pfn } => format!("page op {pfn}"),
        TimelineEvent::TableAlloc => "wait for a page table".to_owned(),
        TimelineEvent::PageLock { pfn } => format!("lock_page {pfn}"),
        TimelineEvent::PteClear { .. }
        | TimelineEvent::InstallAnon { .. }
        | TimelineEvent::TableFree { .. }
        | TimelineEvent::TableFreeNow { .. } => {
            let (words, n) = numbered(event).expect("the events `numbered` splits");
            format!("{words} {n}")
        }
    }
}

/// The lock an event takes, tries or drops.
fn lock_of(event: &TimelineEvent) -> Option<&TimelineLock> {
    match event {
        TimelineEvent::Lock { lock } | TimelineEvent::Trylock { lock, .. } | TimelineEvent::Unlock { lock } => {
            Some(lock)
        }
        _ => None,
    }
}

const PROLOGUE: TimelineEvent = TimelineEvent::Step { step: Step::Prologue };

#[derive(Clone)]
struct Row {
    step: Option<u64>,
    cpu: u32,
    label: String,
    /// A run of `ptep_clear`: (count, lowest idx, highest idx).
    clears: Option<(u32, u16, u16)>,
    /// The entry an `install anon` row installs.
    install: Option<u16>,
}

/// Fold each run of three or more `lock L`, `install anon idx i`,
/// `unlock L` triples of one CPU, but its last, into one row
/// `anon xN lo..hi` at the first one's step.
fn fold_installs(rows: Vec<Row>) -> Vec<Row> {
    let triple = |r: &[Row]| -> Option<u16> {
        let [lock, install, unlock] = r else { return None };
        let same_cpu = lock.cpu == install.cpu && install.cpu == unlock.cpu;
        let paired = lock.label.starts_with("lock ") && unlock.label == format!("un{}", lock.label);
        install.install.filter(|_| same_cpu && paired)
    };
    let mut out: Vec<Row> = vec![];
    let mut i = 0;
    while i < rows.len() {
        // The run of triples from row i, all on row i's CPU.
        let idxs: Vec<u16> =
            rows[i..].chunks_exact(3).map_while(|r| triple(r).filter(|_| r[0].cpu == rows[i].cpu)).collect();
        if let [folded @ .., _last] = &idxs[..] {
            if let (Some(lo), Some(hi), 2..) = (folded.iter().min(), folded.iter().max(), folded.len()) {
                let label = format!("anon x{} {lo}..{hi}", folded.len());
                out.push(Row { step: rows[i].step, cpu: rows[i].cpu, label, clears: None, install: None });
                i += 3 * folded.len();
                continue;
            }
        }
        out.push(rows[i].clone());
        i += 1;
    }
    out
}

/// The collapsing CPU the timeline follows: the reporter if it is a
/// collapser, else the last CPU to start a collapse before the violation.
fn collapser(t: &Timeline<'_>) -> u32 {
    if let Some(cpu) = t.cpu.filter(|&c| t.roles.get(c as usize) == Some(&Role::Collapse)) {
        return cpu;
    }
    t.events.iter().rev().find(|e| e.event == PROLOGUE).map(|e| e.cpu).or(t.cpu).unwrap_or(0)
}

/// The fill behind each translation the violation names (`t.cached`), in
/// its order: the index of the last fill of that CPU, page and frame, or
/// `None` where the events have none.
pub fn cached_fills(t: &Timeline<'_>) -> Vec<Option<usize>> {
    t.cached
        .iter()
        .map(|c| {
            let fill = TimelineEvent::TlbFill { vpn: c.vpn, pfn: c.pfn };
            t.events.iter().rposition(|e| e.cpu == c.cpu && e.event == fill)
        })
        .collect()
}

/// The events the timeline shows, as indices into `t.events`, in order:
/// from the collapse's last prologue before the violation, the collapsing
/// CPU's events and the events of other CPUs that touch what it touches
/// (see the module's documentation), another CPU's hold of such a lock
/// from its start, and the fill of each translation the violation names
/// ([`cached_fills`]), however early.
pub fn shown(t: &Timeline<'_>) -> Vec<usize> {
    let events = t.events;
    let cpu = collapser(t);
    let start = events.iter().rposition(|e| e.cpu == cpu && e.event == PROLOGUE).unwrap_or(0);
    let touched: BTreeSet<&TimelineLock> =
        events[start..].iter().filter(|e| e.cpu == cpu).filter_map(|e| lock_of(&e.event)).collect();
    // Locks each CPU holds, with the index of the event that took them.
    let mut held: BTreeMap<u32, BTreeMap<&TimelineLock, usize>> = BTreeMap::new();
    let mut kept: Vec<usize> = vec![];
    for (i, e) in events.iter().enumerate() {
        if i == start {
            // Another CPU's hold of a lock the collapse wants shows from its start.
            kept.extend(
                held.iter()
                    .filter(|(c, _)| **c != cpu)
                    .flat_map(|(_, h)| h.iter().filter(|(lock, _)| touched.contains(*lock)).map(|(_, &at)| at)),
            );
            kept.sort_unstable();
        }
        let holds_touched = held.get(&e.cpu).is_some_and(|h| h.keys().any(|lock| touched.contains(*lock)));
        match &e.event {
            TimelineEvent::Lock { lock } | TimelineEvent::Trylock { lock, ok: true } => {
                held.entry(e.cpu).or_default().insert(lock, i);
            }
            TimelineEvent::Unlock { lock } => {
                held.entry(e.cpu).or_default().remove(lock);
            }
            _ => {}
        }
        let keep = i >= start
            && (e.cpu == cpu
                || match &e.event {
                    TimelineEvent::PteSet { .. }
                    | TimelineEvent::InstallAnon { .. }
                    | TimelineEvent::PteClear { .. }
                    | TimelineEvent::PmdClear
                    | TimelineEvent::PmdClearOnly => holds_touched,
                    // Another path freeing a table (a retraction, an
                    // empty-table reclaim) is what a stale-table or
                    // use-after-free finding is about.
                    TimelineEvent::TableFree { .. } | TimelineEvent::TableFreeNow { .. } => true,
                    event => lock_of(event).is_some_and(|lock| touched.contains(lock)),
                });
        if keep {
            kept.push(i);
        }
    }
    kept.extend(cached_fills(t).into_iter().flatten());
    kept.sort_unstable();
    kept.dedup();
    kept
}

/// The rows, before layout.
fn rows(t: &Timeline<'_>) -> Vec<Row> {
    let events = t.events;
    let mut out: Vec<Row> = vec![];
    for i in shown(t) {
        let e = &events[i];
        if let TimelineEvent::PteClear { idx } = e.event {
            if let Some(Row { cpu: c, clears: Some((n, lo, hi)), .. }) = out.last_mut() {
                if *c == e.cpu {
                    *n += 1;
                    *lo = (*lo).min(idx);
                    *hi = (*hi).max(idx);
                    continue;
                }
            }
            let clears = Some((1, idx, idx));
            out.push(Row { step: Some(e.step), cpu: e.cpu, label: label(&e.event), clears, install: None });
            continue;
        }
        let install = match e.event {
            TimelineEvent::InstallAnon { idx, .. } => Some(idx),
            _ => None,
        };
        out.push(Row { step: Some(e.step), cpu: e.cpu, label: label(&e.event), clears: None, install });
    }
    let mut out = fold_installs(out);
    for row in &mut out {
        if let Some((n, lo, hi)) = row.clears.filter(|c| c.0 > 1) {
            row.label = format!("ptep_clear x{n} {lo}..{hi}");
        }
    }
    out.push(Row {
        step: None,
        cpu: t.cpu.unwrap_or_else(|| collapser(t)),
        label: t.marker.clone(),
        clears: None,
        install: None,
    });
    out
}

/// `text` in lines of at most `width` characters, broken at spaces; a word
/// wider than a line is cut into pieces of `width`. Never empty.
fn wrap_cell(text: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let mut lines: Vec<String> = vec![];
    let mut line = String::new();
    for word in text.split(' ').filter(|w| !w.is_empty()) {
        let mut word: Vec<char> = word.chars().collect();
        if !line.is_empty() && line.chars().count() + 1 + word.len() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        while line.chars().count() + word.len() > width {
            let room = width - line.chars().count();
            line.extend(word.drain(..room));
            lines.push(std::mem::take(&mut line));
        }
        line.extend(word);
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

/// Render the timeline: a header, then one line per row, none wider than
/// [`WIDTH`], no trailing blanks. Each CPU has a column; where the columns
/// do not all fit as wide as their widest label, the widest are narrowed
/// and a label or header too long for its column goes on over the lines
/// below it, broken at spaces: nothing is cut.
pub fn render(t: &Timeline<'_>) -> Vec<String> {
    let rows = rows(t);
    let cpus: Vec<u32> = rows.iter().map(|r| r.cpu).collect::<BTreeSet<_>>().into_iter().collect();
    let role = |c: u32| t.roles.get(c as usize).map_or("?".to_owned(), |r| r.name().to_owned());
    let header = |c: u32| format!("CPU{c} {}", role(c));
    let step_w = rows.iter().filter_map(|r| r.step).max().unwrap_or(0).to_string().len().max(4);
    // Each column as wide as its widest cell plus a gap (none after the
    // last); then columns are narrowed until the line fits: first one
    // wider than its rows only for its header ("CPU2 neighbour" over
    // "lock pml"), down to its rows, then the widest.
    let gap = |k: usize| if k + 1 < cpus.len() { 2 } else { 0 };
    let labels: Vec<usize> = cpus
        .iter()
        .enumerate()
        .map(|(k, &c)| rows.iter().filter(|r| r.cpu == c).map(|r| r.label.len()).max().unwrap_or(0).max(8) + gap(k))
        .collect();
    let mut widths: Vec<usize> =
        cpus.iter().enumerate().map(|(k, &c)| (header(c).len() + gap(k)).max(labels[k])).collect();
    let room = WIDTH.saturating_sub(step_w + 2);
    while widths.iter().sum::<usize>() > room {
        let header_only = (0..widths.len()).filter(|&k| widths[k] > labels[k]).max_by_key(|&k| widths[k]);
        let Some(k) = header_only.or_else(|| (0..widths.len()).max_by_key(|&k| widths[k])) else { break };
        if widths[k] <= 8 {
            break;
        }
        widths[k] -= 1;
    }
    let text_width = |k: usize| widths[k] - gap(k).min(1);
    // The lines of one row: `cells` gives each CPU's text, wrapped in its
    // column; the step number on the first line only.
    let lines = |step: &str, cells: &dyn Fn(u32) -> String| -> Vec<String> {
        let wrapped: Vec<Vec<String>> =
            cpus.iter().enumerate().map(|(k, &c)| wrap_cell(&cells(c), text_width(k))).collect();
        let height = wrapped.iter().map(Vec::len).max().unwrap_or(1);
        (0..height)
            .map(|i| {
                let mut s = format!("{:>step_w$}  ", if i == 0 { step } else { "" });
                for (k, column) in wrapped.iter().enumerate() {
                    let text = column.get(i).map_or("", String::as_str);
                    s.push_str(&format!("{text:<w$}", w = widths[k]));
                }
                s.trim_end().to_owned()
            })
            .collect()
    };
    let mut out = lines("step", &header);
    let dashes = |c: u32| {
        let k = cpus.iter().position(|&x| x == c).expect("a column");
        "-".repeat(header(c).len().min(text_width(k)))
    };
    out.extend(lines("----", &dashes));
    for r in &rows {
        let step = r.step.map_or(String::new(), |s| s.to_string());
        out.extend(lines(&step, &|c| if c == r.cpu { r.label.clone() } else { String::new() }));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use bench_core::kernel::{Pfn, Pte, ScanResult};

    fn entry(step: u64, cpu: u32, event: TimelineEvent) -> TimelineEntry {
        TimelineEntry { step, cpu, event }
    }

    fn lock(class: LockClass, name: &str) -> TimelineLock {
        TimelineLock { class, name: name.into() }
    }

    #[test]
    fn the_fill_behind_a_named_stale_translation_is_shown_however_early() {
        let ptl = lock(LockClass::PteLock, "ptl (PTE table 0)");
        let fill = |vpn| TimelineEvent::TlbFill { vpn, pfn: Pfn(0x200 + (vpn as u32 % 512)) };
        let events = vec![
            entry(1, 2, fill(0x10000005)),
            entry(2, 2, fill(0x10000007)),
            entry(3, 0, PROLOGUE),
            entry(4, 0, TimelineEvent::Lock { lock: ptl.clone() }),
            entry(4, 0, TimelineEvent::PteClear { idx: 7 }),
            entry(4, 0, TimelineEvent::Unlock { lock: ptl }),
        ];
        let roles = [Role::Collapse, Role::Uffd, Role::Reader];
        let named = [CachedTranslation { cpu: 2, vpn: 0x10000007, pfn: Pfn(0x207) }];
        let text = |cached| {
            render(&Timeline { events: &events, roles: &roles, cpu: Some(0), marker: "*** stale-tlb".into(), cached })
                .join("\n")
        };
        let with = text(&named);
        assert!(with.contains("CPU2 reader") && with.contains("tlb fill idx 7"), "{with}");
        assert!(!with.contains("idx 5"), "only the named translation's fill:\n{with}");
        assert!(!text(&[]).contains("CPU2"), "{}", text(&[]));
    }

    #[test]
    fn a_cell_wider_than_its_column_goes_on_below_it_whole() {
        assert_eq!(wrap_cell("ptep_clear x512 0..511", 16), ["ptep_clear x512", "0..511"]);
        assert_eq!(wrap_cell("*** stale-translation", 12), ["***", "stale-transl", "ation"]);
        assert_eq!(wrap_cell("", 8), [""]);
        // Four CPUs: every label and header whole, over as many lines as it needs.
        let ptl = lock(LockClass::PteLock, "ptl (PTE table 0)");
        let events = vec![
            entry(1, 0, PROLOGUE),
            entry(2, 0, TimelineEvent::Lock { lock: ptl.clone() }),
            entry(2, 0, TimelineEvent::Step { step: Step::RemoveTable }),
            entry(3, 1, TimelineEvent::Lock { lock: ptl.clone() }),
            entry(4, 2, TimelineEvent::Lock { lock: ptl.clone() }),
            entry(5, 3, TimelineEvent::Lock { lock: ptl }),
        ];
        let roles = [Role::Collapse, Role::Uffd, Role::Neighbour, Role::Reader];
        let marker = "*** stale-translation";
        let t = Timeline { events: &events, roles: &roles, cpu: Some(1), marker: marker.into(), cached: &[] };
        let lines = render(&t);
        let text = lines.join("\n");
        assert!(lines.iter().all(|l| l.len() <= WIDTH && !l.ends_with(' ')), "{text}");
        let words: Vec<&str> = text.split_whitespace().collect();
        assert!(text.contains("neighbour") && text.contains("step 4 (remove table)"), "{text}");
        assert!(words.contains(&"***") && text.contains("stale-translation"), "{text}");
    }

    #[test]
    fn window_filter_compression_and_width() {
        let pml = lock(LockClass::PmdLock, "pml (PMD table 0)");
        let ptl = lock(LockClass::PteLock, "ptl (PTE table 0)");
        let other = lock(LockClass::PteLock, "ptl (PTE table 1)");
        let anon = Pte::present(Pfn(0xc02));
        let mut events = vec![
            entry(1, 0, PROLOGUE),
            entry(2, 0, TimelineEvent::Returned { result: ScanResult::Succeed }),
            entry(3, 0, PROLOGUE),
            entry(4, 0, TimelineEvent::Lock { lock: ptl.clone() }),
            entry(4, 0, TimelineEvent::Step { step: Step::Clear }),
        ];
        events.extend((0..512).map(|idx| entry(4, 0, TimelineEvent::PteClear { idx })));
        events.extend([
            entry(4, 0, TimelineEvent::Unlock { lock: ptl.clone() }),
            entry(5, 2, TimelineEvent::Lock { lock: other.clone() }),
            entry(5, 2, TimelineEvent::PteSet { idx: 7, pte: Pte::NONE }),
            entry(5, 2, TimelineEvent::Unlock { lock: other }),
            entry(6, 1, TimelineEvent::Lock { lock: ptl.clone() }),
            entry(6, 1, TimelineEvent::InstallAnon { idx: 120, pte: anon }),
            entry(6, 1, TimelineEvent::Unlock { lock: ptl }),
            entry(7, 0, TimelineEvent::Lock { lock: pml }),
            entry(7, 0, TimelineEvent::TableFree { table: 0 }),
        ]);
        let roles = [Role::Collapse, Role::Uffd, Role::Marker];
        let marker = "*** table-freed-live, with a tail long enough that the column is narrowed to fit";
        let t = Timeline { events: &events, roles: &roles, cpu: Some(0), marker: marker.into(), cached: &[] };
        let lines = render(&t);
        let text = lines.join("\n");
        assert!(lines.iter().all(|l| l.len() <= WIDTH && !l.ends_with(' ')), "{text}");
        assert!(lines[0].starts_with("step  CPU0 collapse") && lines[0].contains("CPU1 uffd"), "{text}");
        assert!(!text.contains("CPU2"), "the marker CPU touched nothing the collapse touched:\n{text}");
        assert_eq!(lines.iter().filter(|l| l.contains("ptep_clear")).count(), 1, "{text}");
        assert!(text.contains("ptep_clear x512 0..511"), "{text}");
        assert!(text.contains("install anon idx 120"), "{text}");
        assert!(!text.contains("return"), "starts at the last prologue:\n{text}");
        // The marker, wider than its column, goes on over a second line:
        // nothing is cut.
        let tail: Vec<&str> = lines[lines.len() - 2..].iter().map(|l| l.trim()).collect();
        assert!(tail[0].starts_with("*** table-freed-live"), "{text}");
        assert_eq!(tail.join(" "), marker, "{text}");
        // 2 header lines, prologue, lock, clear, ptep_clear, unlock, 3 uffd
        // rows, lock pml, free, the marker's 2 lines.
        assert_eq!(lines.len(), 2 + 12, "{text}");
    }

    #[test]
    fn a_run_of_installs_is_one_row_but_for_its_last() {
        let ptl = lock(LockClass::PteLock, "ptl (PTE table 0)");
        let anon = Pte::present(Pfn(0xc02));
        let mut events = vec![
            entry(1, 0, PROLOGUE),
            entry(2, 0, TimelineEvent::Lock { lock: ptl.clone() }),
            entry(2, 0, TimelineEvent::PteClear { idx: 3 }),
            entry(3, 0, TimelineEvent::Unlock { lock: ptl.clone() }),
        ];
        for (k, idx) in [240u16, 241, 242, 250].into_iter().enumerate() {
            let step = 10 + 3 * k as u64;
            events.extend([
                entry(step, 1, TimelineEvent::Lock { lock: ptl.clone() }),
                entry(step + 1, 1, TimelineEvent::InstallAnon { idx, pte: anon }),
                entry(step + 2, 1, TimelineEvent::Unlock { lock: ptl.clone() }),
            ]);
        }
        let roles = [Role::Collapse, Role::Uffd];
        let t = Timeline { events: &events, roles: &roles, cpu: Some(1), marker: "*** x".into(), cached: &[] };
        let lines = render(&t);
        let text = lines.join("\n");
        let row = lines.iter().find(|l| l.contains("anon x3 ")).unwrap_or_else(|| panic!("{text}"));
        assert!(row.trim_start().starts_with("10 ") && row.ends_with("anon x3 240..242"), "{text}");
        let last: Vec<String> = lines[lines.len() - 4..lines.len() - 1]
            .iter()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        assert_eq!(last, ["19 lock ptl", "20 install anon idx 250", "21 unlock ptl"], "{text}");
        // Two installs stay as they are.
        let t = Timeline { events: &events[..10], ..t };
        assert_eq!(render(&t).iter().filter(|l| l.contains("install anon idx")).count(), 2);
    }

    #[test]
    fn labels_name_what_the_event_did() {
        let pml = lock(LockClass::PmdLock, "pml (PMD table 0)");
        let mm = lock(LockClass::PageTableLock, "mm->page_table_lock");
        for (event, want) in [
            (TimelineEvent::Step { step: Step::RemoveTable }, "step 4 (remove table)"),
            (TimelineEvent::Lock { lock: mm.clone() }, "lock mm ptl"),
            (TimelineEvent::Trylock { lock: pml.clone(), ok: true }, "trylock pml ok"),
            (TimelineEvent::Trylock { lock: pml.clone(), ok: false }, "trylock pml FAILED"),
            (TimelineEvent::Unlock { lock: mm }, "unlock mm ptl"),
            (TimelineEvent::PteClear { idx: 5 }, "ptep_clear idx 5"),
            (TimelineEvent::PteSet { idx: 7, pte: Pte::NONE }, "set idx 7: none"),
            (TimelineEvent::InstallAnon { idx: 252, pte: Pte::present(Pfn(0xc02)) }, "install anon idx 252"),
            (TimelineEvent::TableFree { table: 3 }, "pte_free_defer table 3"),
            (TimelineEvent::TableFreeNow { table: 4 }, "pte_free table 4"),
            (TimelineEvent::Returned { result: ScanResult::Fail }, "return SCAN_FAIL"),
            (TimelineEvent::TlbAccess { vpn: 0x7f3a1000 }, "tlb access 0x7f3a1000"),
            (TimelineEvent::TlbFill { vpn: 0x10000187, pfn: Pfn(0x387) }, "tlb fill idx 391"),
            (TimelineEvent::PageLock { pfn: Pfn(0x200) }, "lock_page pfn 0x200"),
        ] {
            assert_eq!(label(&event), want, "{event:?}");
        }
    }

    #[test]
    fn events_are_tagged_by_kind_in_files() {
        let event = TimelineEvent::Trylock { lock: lock(LockClass::PmdLock, "pml (PMD table 0)"), ok: true };
        let json = serde_json::to_value(entry(13, 0, event.clone())).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "step": 13,
                "cpu": 0,
                "event": {"kind": "trylock", "lock": {"class": "pmd_lock", "name": "pml (PMD table 0)"}, "ok": true}
            })
        );
        assert_eq!(serde_json::from_value::<TimelineEntry>(json).unwrap().event, event);
        let step = serde_json::to_value(TimelineEvent::Step { step: Step::RemoveTable }).unwrap();
        assert_eq!(step, serde_json::json!({"kind": "step", "step": "remove_table"}));
    }
}
