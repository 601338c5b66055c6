//! Applying patches, as posted to linux-mm, to the text of `mm/khugepaged.c`.
//!
//! A patch file given with `--kernel-patch` may be a `git format-patch`
//! mail (headers, commit message, `---`, diffstat, `diff --git` sections
//! with `index` lines, the `-- ` signature), the output of `diff -u`, or a
//! quilt patch; it may change several files. [`apply`] applies, in order,
//! only the sections for the target file (normally `mm/khugepaged.c`) and
//! reports the others in [`Applied::ignored_files`].
//!
//! Paths are matched as `patch -p1` and `git apply` do, with the first
//! component (`a/`, `b/`, `linux-6.12.orig/`) stripped; a path without that
//! prefix (`mm/khugepaged.c` itself) is accepted too.
//!
//! Each file section is split out of the patch here (by the counts in the
//! hunk headers, so that a removed line starting with `-- ` is not taken
//! for a file header) and handed to diffy, which parses it and applies it.
//! diffy's `apply` already does what `patch` and `git apply` do with a hunk
//! whose line numbers are off (the patch was made against a slightly
//! different tree): it looks for the hunk's context and removed lines,
//! matched exactly, first at the line the hunk names and then at offsets
//! moving away from it, nearest first (one line before, one after, two
//! before, ...). So no offset search is implemented here. Like `git apply`
//! and unlike GNU `patch`, it never applies a hunk with "fuzz" (some
//! context lines ignored). Only when a hunk does not apply is the text
//! searched here, to tell the user which line of the hunk was not found.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// One patch file given with `--kernel-patch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelPatch {
    /// The file, as given.
    pub path: PathBuf,
    /// A short label for reports: the file's stem (`0001-mm-fix` for
    /// `0001-mm-fix.patch`), with every character other than ASCII letters,
    /// digits, `-`, `_` and `.` replaced by `-`.
    pub name: String,
    /// The file's text.
    pub text: String,
}

impl KernelPatch {
    /// Reads a patch file. Errors when it cannot be read or is not UTF-8.
    pub fn read(path: &Path) -> Result<KernelPatch, PatchError> {
        let bytes = std::fs::read(path).map_err(|source| PatchError::Read { path: path.to_owned(), source })?;
        let text = String::from_utf8(bytes).map_err(|_| PatchError::NotUtf8 { path: path.to_owned() })?;
        Ok(KernelPatch::new(path, text))
    }

    /// A patch whose text is already in memory; `path` is what messages
    /// name and what [`name`](KernelPatch::name) is made from.
    pub fn new(path: &Path, text: String) -> KernelPatch {
        KernelPatch { path: path.to_owned(), name: label(path), text }
    }
}

/// The file stem, restricted to `[A-Za-z0-9._-]`.
fn label(path: &Path) -> String {
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let name: String =
        stem.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '-' }).collect();
    if name.is_empty() {
        "patch".to_owned()
    } else {
        name
    }
}

/// The target file's text with all patches applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub text: String,
    /// The sections of the patches for other files, which were not
    /// applied: (patch name, that file's path with `a/`/`b/` stripped), in
    /// the order of the patches and of the sections in each.
    pub ignored_files: Vec<(String, String)>,
}

/// Why patches could not be read or applied. The messages name the
/// `--kernel-patch` option and the patch file.
#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    #[error("--kernel-patch {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },

    #[error("--kernel-patch {}: not UTF-8 text; a patch as posted or made by git format-patch or diff -u is expected", path.display())]
    NotUtf8 { path: PathBuf },

    #[error("--kernel-patch {}: no unified diff found (no `--- `/`+++ ` file headers followed by `@@` hunks); a patch made by git format-patch or diff -u is expected", path.display())]
    NoDiff { path: PathBuf },

    #[error("--kernel-patch {}: does not change {target}; it changes {}", path.display(), files.join(", "))]
    NotForTarget { path: PathBuf, target: String, files: Vec<String> },

    #[error("--kernel-patch {}: line {line}: {message}", path.display())]
    Malformed { path: PathBuf, line: usize, message: String },

    #[error("--kernel-patch {}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },

    #[error("--kernel-patch {}: {what}; only changes to the file's text can be applied", path.display())]
    Unsupported { path: PathBuf, what: String },

    #[error(
        "--kernel-patch {}: hunk #{hunk} for {target} ({header}) does not apply: its line `{}` was not found{}; was the patch made against another version of {target}?",
        path.display(),
        missing_line.trim(),
        NearMatch(*partial_match)
    )]
    HunkFailed {
        path: PathBuf,
        target: String,
        /// 1-based, counting the patch's hunks for the target file.
        hunk: u32,
        /// `@@ -a,b +c,d @@`, as in the patch.
        header: String,
        /// The first of the hunk's context or removed lines (in order)
        /// that could not be matched, without its line end.
        missing_line: String,
        /// Where the hunk's lines before that one were found, as
        /// (first line, last line), 1-based, in the text the hunk was
        /// applied to; `None` when not even its first line was.
        partial_match: Option<(u32, u32)>,
    },
}

/// Formats [`PatchError::HunkFailed::partial_match`].
struct NearMatch(Option<(u32, u32)>);

impl fmt::Display for NearMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => Ok(()),
            Some((a, b)) if a == b => write!(f, " after the line before it (line {a})"),
            Some((a, b)) => write!(f, " after the lines before it (lines {a}-{b})"),
        }
    }
}

/// Applies `patches`, in order, to `original`, the text of the file
/// `target` (a path in the tree, `mm/khugepaged.c`).
///
/// Only each patch's sections for `target` are applied; the others are
/// listed in [`Applied::ignored_files`]. Errors: a patch with no section for
/// `target` ([`PatchError::NotForTarget`]), one that is not a unified diff,
/// one that creates, deletes or renames `target`, and a hunk that does not
/// apply ([`PatchError::HunkFailed`], naming the hunk). Line ends in CRLF
/// (a mail client's doing) are read as LF.
pub fn apply(original: &str, target: &str, patches: &[KernelPatch]) -> Result<Applied, PatchError> {
    let mut text = original.to_owned();
    let mut ignored_files = Vec::new();
    for patch in patches {
        let normalized;
        let patch_text = if patch.text.contains("\r\n") {
            normalized = patch.text.replace("\r\n", "\n");
            &normalized
        } else {
            &patch.text
        };
        let sections = split_sections(patch_text).map_err(|(line, message)| PatchError::Malformed {
            path: patch.path.clone(),
            line,
            message,
        })?;
        if sections.is_empty() {
            return Err(PatchError::NoDiff { path: patch.path.clone() });
        }

        let mut hunk_number = 0;
        let mut touched_target = false;
        let mut others: Vec<String> = Vec::new();
        for section in &sections {
            let old = section.old.as_deref();
            let new = section.new.as_deref();
            let is_target = |p: Option<&str>| p.is_some_and(|p| matches_target(p, target));
            if !is_target(old) && !is_target(new) {
                let shown = section.shown_path();
                if !others.contains(&shown) {
                    others.push(shown);
                }
                continue;
            }
            touched_target = true;
            let unsupported = |what: String| PatchError::Unsupported { path: patch.path.clone(), what };
            if old.is_none_or(|p| p == DEV_NULL) {
                return Err(unsupported(format!("creates {target}, which the kernel tree already has")));
            }
            if new.is_none_or(|p| p == DEV_NULL) {
                return Err(unsupported(format!("deletes {target}")));
            }
            if !(is_target(old) && is_target(new)) {
                return Err(unsupported(format!(
                    "renames {} to {}",
                    strip_ab(old.unwrap_or_default()),
                    strip_ab(new.unwrap_or_default())
                )));
            }
            text = apply_section(&text, target, section, patch, &mut hunk_number)?;
        }
        if !touched_target {
            return Err(PatchError::NotForTarget {
                path: patch.path.clone(),
                target: target.to_owned(),
                files: others,
            });
        }
        ignored_files.extend(others.into_iter().map(|file| (patch.name.clone(), file)));
    }
    Ok(Applied { text, ignored_files })
}

const DEV_NULL: &str = "/dev/null";

/// Whether a path from a patch names `target`: as it is, or with its first
/// component stripped (`-p1`).
fn matches_target(path: &str, target: &str) -> bool {
    path == target || path.split_once('/').is_some_and(|(_, rest)| rest == target)
}

/// A path as reports show it: without git's `a/` or `b/`.
fn strip_ab(path: &str) -> String {
    path.strip_prefix("a/").or_else(|| path.strip_prefix("b/")).unwrap_or(path).to_owned()
}

/// One file's part of a patch.
#[derive(Debug, Default)]
struct Section {
    /// The old and new paths as the patch writes them (`a/mm/x.c`,
    /// `/dev/null`): from the `---`/`+++` lines, else from git's
    /// `rename from`/`rename to` or `diff --git` line.
    old: Option<String>,
    new: Option<String>,
    /// Whether `---`/`+++` lines were seen (a git section may have none:
    /// a mode change, a pure rename, a binary file).
    has_file_header: bool,
    git: bool,
    hunks: Vec<RawHunk>,
}

impl Section {
    fn shown_path(&self) -> String {
        match (&self.new, &self.old) {
            (Some(new), _) if new != DEV_NULL => strip_ab(new),
            (_, Some(old)) => strip_ab(old),
            (Some(new), None) => strip_ab(new),
            (None, None) => "(unnamed file)".to_owned(),
        }
    }
}

#[derive(Debug)]
struct RawHunk {
    /// `@@ -a,b +c,d @@`, without the function name after it.
    header: String,
    /// The header line and the hunk's lines, each ending in `\n`.
    text: String,
}

/// A path from a `---`/`+++` line: up to a tab (`diff -u` writes the time
/// after one), unquoted when git quoted it.
fn header_path(rest: &str) -> String {
    let path = rest.split('\t').next().unwrap_or_default().trim_end();
    let path = path.strip_prefix('"').and_then(|p| p.strip_suffix('"')).unwrap_or(path);
    path.to_owned()
}

/// The paths of a `diff --git a/x b/y` line. Ambiguous when paths hold
/// `" b/"`; then the `---`/`+++` or `rename` lines that follow decide.
fn git_paths(rest: &str) -> (String, String) {
    let rest = rest.trim_end();
    // Unchanged names: "a/P b/P" with the two halves equal.
    let half = rest.len().saturating_sub(1) / 2;
    if rest.len() % 2 == 1 && rest.is_char_boundary(half) && rest.as_bytes()[half] == b' ' {
        let (a, b) = (&rest[..half], &rest[half + 1..]);
        if a.get(2..) == b.get(2..) {
            return (a.to_owned(), b.to_owned());
        }
    }
    match rest.split_once(" b/") {
        Some((a, b)) => (a.to_owned(), format!("b/{b}")),
        None => (rest.to_owned(), rest.to_owned()),
    }
}

/// The counts of a hunk header `@@ -a[,b] +c[,d] @@ ...`, and the header
/// without the function name.
fn hunk_header(line: &str) -> Option<(usize, usize, String)> {
    let rest = line.strip_prefix("@@ -")?;
    let end = rest.find(" @@")?;
    let (old, new) = rest[..end].split_once(" +")?;
    let count = |range: &str| -> Option<usize> {
        match range.split_once(',') {
            Some((start, len)) => {
                start.parse::<usize>().ok()?;
                len.parse().ok()
            }
            None => range.parse::<usize>().ok().map(|_| 1),
        }
    };
    Some((count(old)?, count(new)?, format!("@@ -{} @@", &rest[..end])))
}

/// Splits a patch into file sections. Everything outside sections (mail
/// headers, commit message, diffstat, `index` lines, signature) is skipped.
/// Inside a hunk, lines are taken by the header's counts. Errors are
/// (1-based line number, message).
fn split_sections(text: &str) -> Result<Vec<Section>, (usize, String)> {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let mut sections: Vec<Section> = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let content = line.trim_end_matches('\n');
        if let Some(rest) = content.strip_prefix("diff --git ") {
            let (old, new) = git_paths(rest);
            sections.push(Section { old: Some(old), new: Some(new), git: true, ..Section::default() });
        } else if let Some(rest) = content.strip_prefix("rename from ") {
            if let Some(s) = sections.last_mut().filter(|s| s.git && !s.has_file_header) {
                s.old = Some(rest.to_owned());
            }
        } else if let Some(rest) = content.strip_prefix("rename to ") {
            if let Some(s) = sections.last_mut().filter(|s| s.git && !s.has_file_header) {
                s.new = Some(rest.to_owned());
            }
        } else if content.starts_with("new file mode ") || content.starts_with("deleted file mode ") {
            // `--- /dev/null` or `+++ /dev/null` follows when there is
            // content; an empty file created or deleted has none.
            if let Some(s) = sections.last_mut().filter(|s| s.git && !s.has_file_header) {
                if content.starts_with("new") {
                    s.old = Some(DEV_NULL.to_owned());
                } else {
                    s.new = Some(DEV_NULL.to_owned());
                }
            }
        } else if let (Some(old), Some(new)) =
            (content.strip_prefix("--- "), lines.get(i + 1).and_then(|l| l.trim_end_matches('\n').strip_prefix("+++ ")))
        {
            let (old, new) = (header_path(old), header_path(new));
            // The `---`/`+++` lines of the `diff --git` section before
            // them, if they name the same files.
            let same = |git: &Option<String>, path: &str| {
                path == DEV_NULL || git.as_deref().is_some_and(|g| strip_ab(g) == strip_ab(path))
            };
            let reuse = sections.last().is_some_and(|s| {
                s.git && !s.has_file_header && s.hunks.is_empty() && same(&s.old, &old) && same(&s.new, &new)
            });
            if !reuse {
                sections.push(Section::default());
            }
            let s = sections.last_mut().expect("a section was just made");
            s.old = Some(old);
            s.new = Some(new);
            s.has_file_header = true;
            i += 1;
        } else if content.starts_with("@@ ") {
            let Some((mut old_left, mut new_left, header)) = hunk_header(content) else {
                return Err((i + 1, format!("bad hunk header `{content}`")));
            };
            let Some(section) = sections.last_mut().filter(|s| s.has_file_header) else {
                return Err((i + 1, format!("hunk `{header}` has no `--- `/`+++ ` file header before it")));
            };
            let start = i;
            let mut hunk_text = String::from(line);
            while old_left > 0 || new_left > 0 {
                i += 1;
                let Some(body) = lines.get(i) else {
                    return Err((start + 1, format!(
                        "hunk `{header}` is cut short: the patch ends with {old_left} old and {new_left} new lines still to come"
                    )));
                };
                match body.as_bytes().first() {
                    // Some mailers drop the space of an empty context line.
                    Some(b' ') | Some(b'\n') if old_left > 0 && new_left > 0 => {
                        old_left -= 1;
                        new_left -= 1;
                    }
                    Some(b'-') if old_left > 0 => old_left -= 1,
                    Some(b'+') if new_left > 0 => new_left -= 1,
                    Some(b'\\') => {}
                    _ => {
                        return Err((i + 1, format!(
                            "hunk `{header}` (line {}) ends early: {old_left} old and {new_left} new lines are still to come, but this line is `{}`",
                            start + 1,
                            body.trim_end_matches('\n')
                        )))
                    }
                }
                hunk_text.push_str(body);
            }
            // `\ No newline at end of file` after the last line.
            if let Some(next) = lines.get(i + 1).filter(|l| l.starts_with('\\')) {
                hunk_text.push_str(next);
                i += 1;
            }
            if !hunk_text.ends_with('\n') {
                hunk_text.push('\n');
            }
            section.hunks.push(RawHunk { header, text: hunk_text });
        }
        i += 1;
    }
    // A git section with neither file header nor hunks (a mode change,
    // a pure rename, a binary file) still names the file it touches.
    Ok(sections)
}

/// Applies one file section with diffy; on failure, finds the hunk that
/// fails and says why.
fn apply_section(
    text: &str,
    target: &str,
    section: &Section,
    patch: &KernelPatch,
    hunk_number: &mut usize,
) -> Result<String, PatchError> {
    let first_hunk = *hunk_number + 1;
    *hunk_number += section.hunks.len();
    if section.hunks.is_empty() {
        return Ok(text.to_owned());
    }
    let file_header = format!("--- a/{target}\n+++ b/{target}\n");
    let mut whole = file_header.clone();
    for hunk in &section.hunks {
        whole.push_str(&hunk.text);
    }
    let malformed = |e: diffy::ParsePatchError| PatchError::Invalid {
        path: patch.path.clone(),
        message: format!("the section for {target} is not a valid unified diff: {e}"),
    };
    let parsed = diffy::Patch::from_str(&whole).map_err(|e| {
        // diffy's positions are in the text rebuilt here; say which hunk.
        let which =
            section.hunks.iter().position(|h| diffy::Patch::from_str(&format!("{file_header}{}", h.text)).is_err());
        match which {
            Some(k) => PatchError::Invalid {
                path: patch.path.clone(),
                message: format!(
                    "hunk #{} for {target} ({}) is not valid: {e}",
                    first_hunk + k,
                    section.hunks[k].header
                ),
            },
            None => malformed(e),
        }
    })?;
    if let Ok(applied) = diffy::apply(text, &parsed) {
        return Ok(applied);
    }

    // Replay hunk by hunk to find the one that fails, and why.
    let mut current = text.to_owned();
    for (k, hunk) in section.hunks.iter().enumerate() {
        let one_text = format!("{file_header}{}", hunk.text);
        let one = diffy::Patch::from_str(&one_text).map_err(malformed)?;
        match diffy::apply(&current, &one) {
            Ok(next) => current = next,
            Err(_) => {
                let parsed_hunk = &one.hunks()[0];
                let (missing_line, partial_match) = diagnose(&current, parsed_hunk);
                return Err(PatchError::HunkFailed {
                    path: patch.path.clone(),
                    target: target.to_owned(),
                    hunk: u32::try_from(first_hunk + k).unwrap_or(u32::MAX),
                    header: hunk.header.clone(),
                    missing_line,
                    partial_match,
                });
            }
        }
    }
    // Each hunk applies alone but not all together: one overlaps lines an
    // earlier one changed.
    Err(PatchError::Invalid { path: patch.path.clone(), message: format!("its hunks for {target} overlap each other") })
}

/// For a hunk that does not apply to `text`: the first of its context and
/// removed lines not found, and where the lines before it were found. The
/// place chosen is where the longest run of the hunk's first lines
/// matches, nearest to the line the hunk names.
fn diagnose(text: &str, hunk: &diffy::Hunk<'_, str>) -> (String, Option<(u32, u32)>) {
    let image: Vec<&str> = text.split_inclusive('\n').collect();
    let wanted: Vec<&str> = hunk
        .lines()
        .iter()
        .filter_map(|l| match l {
            diffy::Line::Context(s) | diffy::Line::Delete(s) => Some(*s),
            diffy::Line::Insert(_) => None,
        })
        .collect();
    // Where diffy starts looking: the hunk's line in the new file, as the
    // text has the earlier hunks applied.
    let expected = hunk.new_range().start().saturating_sub(1);
    let mut best: (usize, usize) = (0, expected); // (length, position)
    for pos in 0..image.len() {
        let len = wanted.iter().zip(&image[pos..]).take_while(|(w, l)| w == l).count();
        if len > best.0 || (len == best.0 && len > 0 && pos.abs_diff(expected) < best.1.abs_diff(expected)) {
            best = (len, pos);
        }
    }
    let (len, pos) = best;
    let missing =
        wanted.get(len).or(wanted.last()).map(|l| l.trim_end_matches(['\n', '\r']).to_owned()).unwrap_or_default();
    let line = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    let partial = (len > 0).then(|| (line(pos + 1), line(pos + len)));
    (missing, partial)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "mm/khugepaged.c";

    /// A synthetic stand-in for the target file: 30 numbered lines.
    fn original() -> String {
        (1..=30).map(|i| format!("line {i}\n")).collect()
    }

    fn patch(name: &str, text: &str) -> KernelPatch {
        KernelPatch::new(Path::new(name), text.to_owned())
    }

    const SIMPLE: &str = "\
--- a/mm/khugepaged.c
+++ b/mm/khugepaged.c
@@ -4,3 +4,3 @@ int f(void)
 line 4
-line 5
+line five
 line 6
";

    #[test]
    fn names() {
        assert_eq!(label(Path::new("/x/0001-mm-fix.patch")), "0001-mm-fix");
        assert_eq!(label(Path::new("fix v2 (final).diff")), "fix-v2--final-");
        assert_eq!(label(Path::new("a.b.patch")), "a.b");
        assert_eq!(label(Path::new("Ümlaut.patch")), "-mlaut");
        assert_eq!(label(Path::new("/")), "patch");
    }

    #[test]
    fn read_from_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0002-thing.patch");
        std::fs::write(&path, SIMPLE).unwrap();
        let p = KernelPatch::read(&path).unwrap();
        assert_eq!(p, KernelPatch { path: path.clone(), name: "0002-thing".into(), text: SIMPLE.into() });

        let err = KernelPatch::read(&dir.path().join("none.patch")).unwrap_err();
        assert!(matches!(err, PatchError::Read { .. }));
        assert!(err.to_string().starts_with(&format!("--kernel-patch {}: ", dir.path().join("none.patch").display())));

        std::fs::write(&path, b"\xff\xfe").unwrap();
        assert!(matches!(KernelPatch::read(&path), Err(PatchError::NotUtf8 { .. })));
    }

    #[test]
    fn applies_at_the_stated_line() {
        let out = apply(&original(), T, &[patch("p.patch", SIMPLE)]).unwrap();
        assert_eq!(out.text, original().replace("line 5\n", "line five\n"));
        assert!(out.ignored_files.is_empty());
    }

    #[test]
    fn applies_at_an_offset_nearest_first() {
        // The hunk says line 4; its lines are at line 14.
        let shifted: String = (1..=10).map(|i| format!("extra {i}\n")).chain([original()]).collect();
        let out = apply(&shifted, T, &[patch("p.patch", SIMPLE)]).unwrap();
        assert_eq!(out.text, shifted.replace("line 5\n", "line five\n"));

        // The same context twice, at lines 4-6 and 24-26: the copy nearest
        // the stated line (20) is changed.
        let twice = original().replace("line 24\nline 25\nline 26\n", "line 4\nline 5\nline 6\n");
        let near20 = SIMPLE.replace("@@ -4,3 +4,3 @@", "@@ -20,3 +20,3 @@");
        let out = apply(&twice, T, &[patch("p.patch", &near20)]).unwrap();
        let lines: Vec<&str> = out.text.lines().collect();
        assert_eq!(lines[4], "line 5");
        assert_eq!(lines[24], "line five");
    }

    #[test]
    fn plain_diff_u_with_timestamps_and_other_prefixes() {
        let text = "\
--- linux-6.12.orig/mm/khugepaged.c\t2024-11-17 10:07:00.000000000 +0000
+++ linux-6.12/mm/khugepaged.c\t2024-11-18 10:07:00.000000000 +0000
@@ -1,2 +1,2 @@
-line 1
+line one
 line 2
";
        let out = apply(&original(), T, &[patch("p.diff", text)]).unwrap();
        assert!(out.text.starts_with("line one\nline 2\n"));

        let no_prefix = SIMPLE.replace("a/mm/", "mm/").replace("b/mm/", "mm/");
        let out = apply(&original(), T, &[patch("p.diff", &no_prefix)]).unwrap();
        assert!(out.text.contains("line five\n"));
    }

    /// A format-patch mail: headers, message, diffstat, two files (the
    /// target second), a removed line that starts with `-- `, and the
    /// signature.
    const MAIL: &str = "\
From 1234567890abcdef Mon Sep 17 00:00:00 2001
From: A Developer <dev@example.org>
Date: Tue, 1 Oct 2024 12:00:00 +0200
Subject: [PATCH] mm: synthetic example

A commit message line.
--- this line in the message is not a header

Signed-off-by: A Developer <dev@example.org>
---
 include/linux/example.h |  2 +-
 mm/khugepaged.c         |  3 ++-
 2 files changed, 3 insertions(+), 2 deletions(-)

diff --git a/include/linux/example.h b/include/linux/example.h
index 1111111..2222222 100644
--- a/include/linux/example.h
+++ b/include/linux/example.h
@@ -1,3 +1,3 @@
 x
--- removed y
+++ added y
 z
diff --git a/mm/khugepaged.c b/mm/khugepaged.c
index 3333333..4444444 100644
--- a/mm/khugepaged.c
+++ b/mm/khugepaged.c
@@ -9,3 +9,4 @@ static int g(void)
 line 9
-line 10
+line ten
+line ten and a half
 line 11
@@ -20,3 +21,3 @@ static int h(void)
 line 20
-line 21
+line twenty-one
 line 22
-- 
2.45.0

";

    #[test]
    fn multi_file_mail() {
        let out = apply(&original(), T, &[patch("0001-mm-synthetic.patch", MAIL)]).unwrap();
        let expected = original()
            .replace("line 10\n", "line ten\nline ten and a half\n")
            .replace("line 21\n", "line twenty-one\n");
        assert_eq!(out.text, expected);
        assert_eq!(out.ignored_files, vec![("0001-mm-synthetic".to_owned(), "include/linux/example.h".to_owned())]);
    }

    #[test]
    fn crlf_mail_applies() {
        let out = apply(&original(), T, &[patch("m.eml", &MAIL.replace('\n', "\r\n"))]).unwrap();
        assert!(out.text.contains("line twenty-one\n"));
    }

    #[test]
    fn patches_apply_in_order() {
        let second = "\
--- a/mm/khugepaged.c
+++ b/mm/khugepaged.c
@@ -4,3 +4,3 @@
 line 4
-line five
+line 5 again
 line 6
";
        let out = apply(&original(), T, &[patch("1.patch", SIMPLE), patch("2.patch", second)]).unwrap();
        assert_eq!(out.text, original().replace("line 5\n", "line 5 again\n"));
        // The other order: the second does not apply to the original.
        let err = apply(&original(), T, &[patch("2.patch", second), patch("1.patch", SIMPLE)]).unwrap_err();
        assert!(
            matches!(&err, PatchError::HunkFailed { path, hunk: 1, .. } if path == Path::new("2.patch")),
            "{err:?}"
        );
    }

    #[test]
    fn empty_context_line_without_its_space() {
        let base = "a\n\nb\n";
        let text = "--- a/mm/khugepaged.c\n+++ b/mm/khugepaged.c\n@@ -1,3 +1,3 @@\n a\n\n-b\n+c\n";
        assert_eq!(apply(base, T, &[patch("p", text)]).unwrap().text, "a\n\nc\n");
    }

    #[test]
    fn no_newline_at_end_of_file() {
        let base = "a\nb";
        let text = "--- a/mm/khugepaged.c\n+++ b/mm/khugepaged.c\n@@ -1,2 +1,2 @@\n a\n-b\n\\ No newline at end of file\n+c\n\\ No newline at end of file\n";
        assert_eq!(apply(base, T, &[patch("p", text)]).unwrap().text, "a\nc");
    }

    #[test]
    fn error_hunk_does_not_apply() {
        // Hunk 2's third line differs from the file.
        let bad = MAIL.replace(" line 22\n", " line 22 changed\n");
        let err = apply(&original(), T, &[patch("/tmp/0001-x.patch", &bad)]).unwrap_err();
        match &err {
            PatchError::HunkFailed { path, target, hunk, header, missing_line, partial_match } => {
                assert_eq!(path, Path::new("/tmp/0001-x.patch"));
                assert_eq!(target, T);
                assert_eq!(*hunk, 2);
                assert_eq!(header, "@@ -20,3 +21,3 @@");
                assert_eq!(missing_line, "line 22 changed");
                // Hunk 1 added a line, so lines 20-21 are now 21-22.
                assert_eq!(*partial_match, Some((21, 22)));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            err.to_string(),
            "--kernel-patch /tmp/0001-x.patch: hunk #2 for mm/khugepaged.c (@@ -20,3 +21,3 @@) does not apply: \
             its line `line 22 changed` was not found after the lines before it (lines 21-22); \
             was the patch made against another version of mm/khugepaged.c?"
        );

        // The first line already differs: no partial match.
        let bad = SIMPLE.replace(" line 4\n", " line four\n");
        let err = apply(&original(), T, &[patch("p.patch", &bad)]).unwrap_err();
        assert!(
            matches!(&err, PatchError::HunkFailed { hunk: 1, missing_line, partial_match: None, .. } if missing_line == "line four"),
            "{err:?}"
        );
    }

    #[test]
    fn error_no_section_for_target() {
        let other = MAIL.split("diff --git a/mm/").next().unwrap().to_owned();
        let err = apply(&original(), T, &[patch("0003-hdr.patch", &other)]).unwrap_err();
        assert!(
            matches!(&err, PatchError::NotForTarget { files, .. } if files == &["include/linux/example.h"]),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "--kernel-patch 0003-hdr.patch: does not change mm/khugepaged.c; it changes include/linux/example.h"
        );
    }

    #[test]
    fn error_no_diff() {
        let err = apply(&original(), T, &[patch("notes.txt", "Just some words.\n---\nMore.\n")]).unwrap_err();
        assert!(matches!(err, PatchError::NoDiff { .. }), "{err:?}");
    }

    #[test]
    fn error_truncated_and_headerless_hunks() {
        let cut = &SIMPLE[..SIMPLE.len() - " line 6\n".len()];
        let err = apply(&original(), T, &[patch("p.patch", cut)]).unwrap_err();
        assert!(matches!(&err, PatchError::Malformed { line: 3, .. }), "{err:?}");
        assert!(err.to_string().contains("is cut short"), "{err}");

        let garbled = SIMPLE.replace("+line five\n", "+line five\nnot a hunk line\n");
        let err = apply(&original(), T, &[patch("p.patch", &garbled)]).unwrap_err();
        assert!(matches!(&err, PatchError::Malformed { line: 7, .. }), "{err:?}");

        let headerless = "@@ -1 +1 @@\n-line 1\n+x\n";
        let err = apply(&original(), T, &[patch("p.patch", headerless)]).unwrap_err();
        assert!(matches!(&err, PatchError::Malformed { line: 1, .. }), "{err:?}");
        assert!(err.to_string().contains("no `--- `/`+++ ` file header"), "{err}");
    }

    #[test]
    fn error_create_delete_rename_target() {
        let create = "--- /dev/null\n+++ b/mm/khugepaged.c\n@@ -0,0 +1 @@\n+x\n";
        let err = apply(&original(), T, &[patch("c.patch", create)]).unwrap_err();
        assert!(
            matches!(&err, PatchError::Unsupported { what, .. } if what.starts_with("creates mm/khugepaged.c")),
            "{err:?}"
        );

        let delete = "diff --git a/mm/khugepaged.c b/mm/khugepaged.c\ndeleted file mode 100644\nindex 1..0\n";
        let err = apply(&original(), T, &[patch("d.patch", delete)]).unwrap_err();
        assert!(matches!(&err, PatchError::Unsupported { what, .. } if what == "deletes mm/khugepaged.c"), "{err:?}");

        let rename = "diff --git a/mm/khugepaged.c b/mm/collapse.c\nsimilarity index 100%\nrename from mm/khugepaged.c\nrename to mm/collapse.c\n";
        let err = apply(&original(), T, &[patch("r.patch", rename)]).unwrap_err();
        assert!(
            matches!(&err, PatchError::Unsupported { what, .. } if what == "renames mm/khugepaged.c to mm/collapse.c"),
            "{err:?}"
        );
    }

    #[test]
    fn mode_change_of_other_file_is_ignored() {
        let text = format!("diff --git a/scripts/x.sh b/scripts/x.sh\nold mode 100644\nnew mode 100755\n{SIMPLE}");
        let out = apply(&original(), T, &[patch("m.patch", &text)]).unwrap();
        assert_eq!(out.ignored_files, vec![("m".to_owned(), "scripts/x.sh".to_owned())]);
        assert!(out.text.contains("line five\n"));
    }

    #[test]
    fn git_paths_split() {
        assert_eq!(git_paths("a/mm/x.c b/mm/x.c"), ("a/mm/x.c".into(), "b/mm/x.c".into()));
        assert_eq!(git_paths("a/p q b/p q"), ("a/p q".into(), "b/p q".into()));
        assert_eq!(git_paths("a/old.c b/new.c"), ("a/old.c".into(), "b/new.c".into()));
    }
}
