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
//!   18                                install anon at idx 120
//!   22  pte_free_defer table 0
//!       *** table-freed-live
//! ```
//!
//! Events of other CPUs are kept only where they touch what the collapse
//! touches: their lock, trylock and unlock of a lock the collapse takes in
//! the window (and their hold of one when the window opens), and the PTEs
//! they set or clear while holding one of those.

use bench_core::event::TraceEntry;
use bench_core::kernel::{LockId, Step};
use bench_core::{Event, Role};
use std::collections::{BTreeMap, BTreeSet};

/// Widest line.
pub const WIDTH: usize = 72;

/// What to draw.
pub struct Timeline<'a> {
    /// The run's trace.
    pub trace: &'a [TraceEntry],
    /// A label for every trace entry.
    pub labels: &'a [String],
    /// Role of each CPU.
    pub roles: &'a [Role],
    /// Entries `trace[..end]` had happened when the violation was seen.
    pub end: usize,
    /// The CPU that reported it (None: found at teardown).
    pub cpu: Option<u32>,
    /// The last row's text ("*** table-freed-live").
    pub marker: String,
}

struct Row {
    step: Option<u64>,
    cpu: u32,
    label: String,
    /// A run of `ptep_clear`: (count, lowest idx, highest idx).
    clears: Option<(u32, u16, u16)>,
}

/// The collapsing CPU the timeline follows: the reporter if it is a
/// collapser, else the last CPU to start a collapse before the violation.
fn collapser(t: &Timeline<'_>, end: usize) -> u32 {
    if let Some(cpu) = t.cpu.filter(|&c| t.roles.get(c as usize) == Some(&Role::Collapse)) {
        return cpu;
    }
    t.trace[..end].iter().rev().find(|e| e.event == Event::Step(Step::Prologue)).map(|e| e.cpu).or(t.cpu).unwrap_or(0)
}

fn lock_of(event: &Event) -> Option<LockId> {
    match *event {
        Event::Lock(id) | Event::Trylock(id, _) | Event::Unlock(id) => Some(id),
        _ => None,
    }
}

/// The rows, before layout.
fn rows(t: &Timeline<'_>) -> Vec<Row> {
    let end = t.end.min(t.trace.len()).min(t.labels.len());
    let cpu = collapser(t, end);
    let start =
        t.trace[..end].iter().rposition(|e| e.cpu == cpu && e.event == Event::Step(Step::Prologue)).unwrap_or(0);
    let touched: BTreeSet<LockId> =
        t.trace[start..end].iter().filter(|e| e.cpu == cpu).filter_map(|e| lock_of(&e.event)).collect();
    // Locks each CPU holds, with the trace index that took them.
    let mut held: BTreeMap<u32, BTreeMap<LockId, usize>> = BTreeMap::new();
    let mut kept: Vec<usize> = vec![];
    for (i, e) in t.trace[..end].iter().enumerate() {
        if i == start {
            // Another CPU's hold of a lock the collapse wants shows from its start.
            kept.extend(
                held.iter()
                    .filter(|(c, _)| **c != cpu)
                    .flat_map(|(_, h)| h.iter().filter(|(id, _)| touched.contains(id)).map(|(_, &at)| at)),
            );
            kept.sort_unstable();
        }
        let holds_touched = held.get(&e.cpu).is_some_and(|h| h.keys().any(|id| touched.contains(id)));
        match e.event {
            Event::Lock(id) | Event::Trylock(id, true) => {
                held.entry(e.cpu).or_default().insert(id, i);
            }
            Event::Unlock(id) => {
                held.entry(e.cpu).or_default().remove(&id);
            }
            _ => {}
        }
        let keep = i >= start
            && (e.cpu == cpu
                || match e.event {
                    Event::Lock(id) | Event::Trylock(id, _) | Event::Unlock(id) => touched.contains(&id),
                    Event::PteSet(..) | Event::PteClear(_) => holds_touched,
                    _ => false,
                });
        if keep {
            kept.push(i);
        }
    }
    let mut out: Vec<Row> = vec![];
    for i in kept {
        let e = &t.trace[i];
        if let Event::PteClear(idx) = e.event {
            if let Some(Row { cpu: c, clears: Some((n, lo, hi)), .. }) = out.last_mut() {
                if *c == e.cpu {
                    *n += 1;
                    *lo = (*lo).min(idx);
                    *hi = (*hi).max(idx);
                    continue;
                }
            }
            out.push(Row { step: Some(e.step), cpu: e.cpu, label: t.labels[i].clone(), clears: Some((1, idx, idx)) });
            continue;
        }
        out.push(Row { step: Some(e.step), cpu: e.cpu, label: t.labels[i].clone(), clears: None });
    }
    for row in &mut out {
        if let Some((n, lo, hi)) = row.clears.filter(|c| c.0 > 1) {
            row.label = format!("ptep_clear x{n} {lo}..{hi}");
        }
    }
    out.push(Row { step: None, cpu: t.cpu.unwrap_or(cpu), label: t.marker.clone(), clears: None });
    out
}

fn fit(s: &str, width: usize) -> String {
    s.chars().take(width).collect()
}

/// Render the timeline: a header, then one line per row, none wider than
/// [`WIDTH`], no trailing blanks.
pub fn render(t: &Timeline<'_>) -> Vec<String> {
    let rows = rows(t);
    let cpus: Vec<u32> = rows.iter().map(|r| r.cpu).collect::<BTreeSet<_>>().into_iter().collect();
    let role = |c: u32| t.roles.get(c as usize).map_or("?".to_owned(), |r| r.name().to_owned());
    let header = |c: u32| format!("CPU{c} {}", role(c));
    let step_w = rows.iter().filter_map(|r| r.step).max().unwrap_or(0).to_string().len().max(4);
    // Each column as wide as its widest cell plus a gap (none after the
    // last); then the widest is narrowed until the line fits.
    let mut widths: Vec<usize> = cpus
        .iter()
        .enumerate()
        .map(|(k, &c)| {
            let widest = rows.iter().filter(|r| r.cpu == c).map(|r| r.label.len()).max().unwrap_or(0);
            widest.max(header(c).len()) + if k + 1 < cpus.len() { 2 } else { 0 }
        })
        .collect();
    let room = WIDTH.saturating_sub(step_w + 2);
    while widths.iter().sum::<usize>() > room {
        let Some(widest) = widths.iter_mut().max() else { break };
        if *widest <= 8 {
            break;
        }
        *widest -= 1;
    }
    let line = |step: &str, cells: &dyn Fn(u32) -> String| {
        let mut s = format!("{step:>step_w$}  ");
        for (k, (&c, &w)) in cpus.iter().zip(&widths).enumerate() {
            let text = fit(&cells(c), if k + 1 < cpus.len() { w - 1 } else { w });
            s.push_str(&format!("{text:<w$}"));
        }
        fit(s.trim_end(), WIDTH)
    };
    let mut out = vec![line("step", &header)];
    out.push(line("----", &|c| "-".repeat(header(c).len())));
    for r in &rows {
        let step = r.step.map_or(String::new(), |s| s.to_string());
        out.push(line(&step, &|c| if c == r.cpu { r.label.clone() } else { String::new() }));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(step: u64, cpu: u32, event: Event) -> TraceEntry {
        TraceEntry { step, cpu, event }
    }

    #[test]
    fn window_filter_compression_and_width() {
        let (pml, ptl, other) = (LockId(1), LockId(2), LockId(3));
        let mut trace = vec![
            entry(1, 0, Event::Step(Step::Prologue)),
            entry(2, 0, Event::Returned(bench_core::kernel::ScanResult::Succeed)),
            entry(3, 0, Event::Step(Step::Prologue)),
            entry(4, 0, Event::Lock(ptl)),
            entry(4, 0, Event::Step(Step::Clear)),
        ];
        trace.extend((0..512).map(|i| entry(4, 0, Event::PteClear(i))));
        trace.extend([
            entry(4, 0, Event::Unlock(ptl)),
            entry(5, 2, Event::Lock(other)),
            entry(5, 2, Event::PteSet(7, bench_core::kernel::Pte::NONE)),
            entry(5, 2, Event::Unlock(other)),
            entry(6, 1, Event::Lock(ptl)),
            entry(6, 1, Event::PteSet(120, bench_core::kernel::Pte::NONE)),
            entry(6, 1, Event::Unlock(ptl)),
            entry(7, 0, Event::Lock(pml)),
            entry(7, 0, Event::TableFree(0)),
            entry(8, 0, Event::Unlock(pml)),
        ]);
        let labels: Vec<String> = trace
            .iter()
            .map(|e| match e.event {
                Event::PteClear(i) => format!("ptep_clear idx {i}"),
                Event::PteSet(i, _) => format!("install anon at idx {i} and a very long tail that is cut"),
                ev => format!("{ev:?}"),
            })
            .collect();
        let end = trace.len() - 1;
        let roles = [Role::Collapse, Role::Uffd, Role::Marker];
        let t = Timeline {
            trace: &trace,
            labels: &labels,
            roles: &roles,
            end,
            cpu: Some(0),
            marker: "*** table-freed-live".into(),
        };
        let lines = render(&t);
        let text = lines.join("\n");
        assert!(lines.iter().all(|l| l.len() <= WIDTH && !l.ends_with(' ')), "{text}");
        assert!(lines[0].starts_with("step  CPU0 collapse") && lines[0].contains("CPU1 uffd"), "{text}");
        assert!(!text.contains("CPU2"), "the marker CPU touched nothing the collapse touched:\n{text}");
        assert_eq!(lines.iter().filter(|l| l.contains("ptep_clear")).count(), 1, "{text}");
        assert!(text.contains("ptep_clear x512 0..511"), "{text}");
        assert!(!text.contains("Returned"), "starts at the last prologue:\n{text}");
        assert!(!text.contains("Unlock(LockId(1))"), "ends at the violation:\n{text}");
        assert!(lines.last().unwrap().trim_start().starts_with("*** table-freed-live"), "{text}");
        // 2 header lines, prologue, lock, clear, ptep_clear, unlock, 3 uffd rows, lock pml, free, marker.
        assert_eq!(lines.len(), 2 + 11, "{text}");
    }
}
