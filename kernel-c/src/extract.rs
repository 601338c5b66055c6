//! Taking what to compile out of `mm/khugepaged.c`: the entry function
//! (`collapse_pte_mapped_thp`), the static helpers of the same file it
//! needs, and `enum scan_result`.
//!
//! The file is read by a small scan at the level of C tokens, not parsed:
//! comments, string and character literals and preprocessor lines
//! (continuations included) are skipped, and at brace depth 0 a function
//! definition is a declaration whose last token before `{` is `)`, with no
//! `=` outside parentheses; its name is the first identifier followed by
//! `(` that is not an attribute (`__attribute__((...))`, `__printf(...)`,
//! ...). That covers `static inline`, attributes and return types over
//! several lines; old K&R definitions and functions returning function
//! pointers are not recognised. Preprocessor conditionals are not
//! evaluated: code under `#ifdef` is read as if it were always there, and
//! braces must balance without them.
//!
//! A function's calls are the identifiers in its body followed by `(`,
//! not after `.` or `->`. Functions passed by name (callbacks) are not
//! calls and are not taken.

use std::collections::{BTreeSet, HashMap};

/// What [`extract`] took out of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extracted {
    /// C to compile: `enum scan_result`, then the functions in file order,
    /// each after a `#line` directive naming its line in the file, so that
    /// diagnostics point into `mm/khugepaged.c`. The entry function has
    /// `KC_STEP(N);` and `KC_STEP_ABORT();` markers added (see [`extract`]).
    pub c: String,
    /// The functions in `c`, in file order; the entry is one of them.
    pub functions: Vec<String>,
    /// The constants of `enum scan_result`, in order (so the first is 0).
    pub scan_results: Vec<String>,
    /// The numbers N of the entry's `/* step N ... */` comments, in order.
    pub steps: Vec<u32>,
}

/// Why [`extract`] could not take the code out of the file. The file is the
/// one read with `--kernel-source`, with any `--kernel-patch` applied.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error("{file} (from --kernel-source, with any --kernel-patch applied): no definition of {function}() found; does this kernel version have it, or did a patch remove or rename it?")]
    EntryNotFound { file: String, function: String },

    #[error("{file} (from --kernel-source, with any --kernel-patch applied): {what} is defined more than once (lines {}), probably under #ifdef/#else; preprocessor conditionals are not evaluated, so one definition cannot be chosen", join_lines(lines))]
    Duplicate { file: String, what: String, lines: Vec<u32> },

    #[error("{file} (from --kernel-source, with any --kernel-patch applied): no `enum scan_result {{ ... }};` definition found; the tool needs the file's own result codes")]
    NoScanResult { file: String },

    #[error("{file}:{line} (from --kernel-source, with any --kernel-patch applied): enum scan_result gives {constant} an explicit value; only a plain list of constants is supported (the first may be `= 0`)")]
    ScanResultValue { file: String, line: u32, constant: String },

    #[error("{file}:{line} (from --kernel-source, with any --kernel-patch applied): {message}")]
    Syntax { file: String, line: u32, message: String },
}

fn join_lines(lines: &[u32]) -> String {
    match lines {
        [] => String::new(),
        [one] => one.to_string(),
        [init @ .., last] => format!("{} and {last}", init.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")),
    }
}

/// Takes `entry` out of `file` (the text of the file named `file_name`, as
/// `#line` directives and messages name it), with every function defined
/// in the file that it calls, directly or through other such functions,
/// for which `provided(name)` is false (the others are supplied by the
/// compat headers). `entry` is always taken, whatever `provided` says.
///
/// The output ([`Extracted::c`]) is `enum scan_result` and then each
/// function in file order, each preceded by `#line N "file_name"` and
/// copied exactly, from the first line of its declaration (the return
/// type) to its closing brace.
///
/// In the entry only, two kinds of markers are added on the same line, so
/// that line numbers do not change: after a block comment whose text
/// starts with `step N` (any case), ` KC_STEP(N);` right after the `*/`;
/// after the label `abort:`, ` KC_STEP_ABORT();`.
///
/// Errors: `entry` not defined, or defined more than once (also a taken
/// helper defined more than once); no `enum scan_result`, or one with
/// explicit values (other than `= 0` on the first constant); an
/// unterminated comment or literal, or unbalanced braces.
pub fn extract(
    file: &str,
    file_name: &str,
    entry: &str,
    provided: &dyn Fn(&str) -> bool,
) -> Result<Extracted, ExtractError> {
    let syntax = |(line, message): (u32, String)| ExtractError::Syntax { file: file_name.to_owned(), line, message };
    let toks = lex(file).map_err(syntax)?;
    let top = scan_top_level(file, &toks).map_err(syntax)?;

    let mut by_name: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, f) in top.functions.iter().enumerate() {
        by_name.entry(f.name.as_str()).or_default().push(i);
    }
    let single = |name: &str| -> Result<Option<usize>, ExtractError> {
        match by_name.get(name).map(Vec::as_slice) {
            None | Some([]) => Ok(None),
            Some([one]) => Ok(Some(*one)),
            Some(many) => Err(ExtractError::Duplicate {
                file: file_name.to_owned(),
                what: format!("{name}()"),
                lines: many.iter().map(|&i| top.functions[i].line).collect(),
            }),
        }
    };
    let entry_index = single(entry)?
        .ok_or_else(|| ExtractError::EntryNotFound { file: file_name.to_owned(), function: entry.to_owned() })?;

    // The functions to take: the entry and, transitively, what it calls.
    let mut taken = BTreeSet::from([entry_index]);
    let mut work = vec![entry_index];
    while let Some(i) = work.pop() {
        for name in calls(file, &toks, &top.functions[i]) {
            if name == entry || provided(name) {
                continue;
            }
            if let Some(j) = single(name)? {
                if taken.insert(j) {
                    work.push(j);
                }
            }
        }
    }

    let (enum_text_line, enum_text, scan_results) = scan_result_enum(file, file_name, &toks, &top)?;
    let mut c = String::new();
    let directive = |line: u32| format!("#line {line} \"{}\"\n", file_name.replace('\\', "\\\\").replace('"', "\\\""));
    c.push_str(&directive(enum_text_line));
    c.push_str(enum_text);
    c.push('\n');

    let mut functions = Vec::new();
    let mut steps = Vec::new();
    // BTreeSet order is index order, which is file order.
    for &i in &taken {
        let f = &top.functions[i];
        let start = line_start_or_token(file, toks[f.first_tok].start);
        let end = toks[f.close_tok].end;
        c.push_str(&directive(line_of(file, start)));
        if i == entry_index {
            let (text, found) = with_markers(file, &toks, f, start, end);
            c.push_str(&text);
            steps = found;
        } else {
            c.push_str(&file[start..end]);
        }
        c.push('\n');
        functions.push(f.name.clone());
    }
    Ok(Extracted { c, functions, scan_results, steps })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Ident,
    Number,
    Punct,
    Str,
    Char,
    BlockComment,
    LineComment,
}

#[derive(Debug, Clone, Copy)]
struct Tok {
    kind: Kind,
    start: usize,
    end: usize,
    /// 1-based line of `start`.
    line: u32,
}

impl Tok {
    fn is_comment(&self) -> bool {
        matches!(self.kind, Kind::BlockComment | Kind::LineComment)
    }
}

fn is_punct(file: &str, t: &Tok, p: &str) -> bool {
    t.kind == Kind::Punct && &file[t.start..t.end] == p
}

/// Splits C into tokens, comments included; preprocessor lines and
/// whitespace are dropped. Errors are (line, message).
fn lex(src: &str) -> Result<Vec<Tok>, (u32, String)> {
    let b = src.as_bytes();
    let mut toks = Vec::new();
    let mut i = 0;
    let mut line: u32 = 1;
    // Only whitespace (and comments) since the last newline: a `#` here
    // starts a preprocessor line.
    let mut at_line_start = true;
    while i < b.len() {
        let c = b[i];
        let start = i;
        let start_line = line;
        match c {
            b'\n' => {
                line += 1;
                at_line_start = true;
                i += 1;
                continue;
            }
            b' ' | b'\t' | b'\r' | b'\x0b' | b'\x0c' => {
                i += 1;
                continue;
            }
            b'\\' if b.get(i + 1) == Some(&b'\n') => {
                line += 1;
                i += 2;
                continue;
            }
            b'#' if at_line_start => {
                i = skip_preprocessor_line(b, i, &mut line)?;
                continue;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let Some(len) = src[i + 2..].find("*/") else {
                    return Err((line, "unterminated /* comment".to_owned()));
                };
                let end = i + 2 + len + 2;
                line += count_newlines(&b[i..end]);
                toks.push(Tok { kind: Kind::BlockComment, start, end, line: start_line });
                i = end;
                continue;
            }
            b'/' if b.get(i + 1) == Some(&b'/') => {
                let end = src[i..].find('\n').map_or(b.len(), |n| i + n);
                toks.push(Tok { kind: Kind::LineComment, start, end, line: start_line });
                i = end;
                continue;
            }
            b'"' | b'\'' => {
                i += 1;
                loop {
                    match b.get(i) {
                        None | Some(b'\n') => {
                            let what = if c == b'"' { "string" } else { "character" };
                            return Err((start_line, format!("unterminated {what} literal")));
                        }
                        Some(b'\\') => {
                            if b.get(i + 1) == Some(&b'\n') {
                                line += 1;
                            }
                            i += 2;
                        }
                        Some(&q) if q == c => {
                            i += 1;
                            break;
                        }
                        Some(_) => i += 1,
                    }
                }
                let kind = if c == b'"' { Kind::Str } else { Kind::Char };
                toks.push(Tok { kind, start, end: i, line: start_line });
            }
            _ if c == b'_' || c.is_ascii_alphabetic() => {
                while i < b.len() && (b[i] == b'_' || b[i].is_ascii_alphanumeric()) {
                    i += 1;
                }
                toks.push(Tok { kind: Kind::Ident, start, end: i, line: start_line });
            }
            _ if c.is_ascii_digit() || (c == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit)) => {
                // A preprocessing number: 0x1fUL, 1e+5, 1.5f.
                i += 1;
                while i < b.len() {
                    let d = b[i];
                    let exponent_sign = (d == b'+' || d == b'-') && matches!(b[i - 1], b'e' | b'E' | b'p' | b'P');
                    if !(exponent_sign || d == b'_' || d == b'.' || d.is_ascii_alphanumeric()) {
                        break;
                    }
                    i += 1;
                }
                toks.push(Tok { kind: Kind::Number, start, end: i, line: start_line });
            }
            _ => {
                let len =
                    if src[i..].starts_with("->") { 2 } else { src[i..].chars().next().map_or(1, char::len_utf8) };
                i += len;
                toks.push(Tok { kind: Kind::Punct, start, end: i, line: start_line });
            }
        }
        at_line_start = false;
    }
    Ok(toks)
}

fn count_newlines(bytes: &[u8]) -> u32 {
    u32::try_from(bytes.iter().filter(|&&c| c == b'\n').count()).unwrap_or(u32::MAX)
}

/// Skips a preprocessor line from its `#`: to its newline (not consumed),
/// following backslash continuations and block comments that span lines.
/// Quotes in it are not literals (`#error don't` is valid).
fn skip_preprocessor_line(b: &[u8], mut i: usize, line: &mut u32) -> Result<usize, (u32, String)> {
    while i < b.len() {
        match b[i] {
            b'\n' => return Ok(i),
            b'\\' if b.get(i + 1) == Some(&b'\n') => {
                *line += 1;
                i += 2;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let start_line = *line;
                let rest = &b[i + 2..];
                let Some(len) = rest.windows(2).position(|w| w == b"*/") else {
                    return Err((start_line, "unterminated /* comment".to_owned()));
                };
                *line += count_newlines(&rest[..len]);
                i += 2 + len + 2;
            }
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    Ok(i)
}

/// A top-level function definition.
#[derive(Debug)]
struct FnDef {
    name: String,
    /// The first token of its declaration, its `{` and its `}`.
    first_tok: usize,
    open_tok: usize,
    close_tok: usize,
    /// The line of `first_tok`.
    line: u32,
}

/// A top-level `enum scan_result { ... }`.
#[derive(Debug)]
struct EnumDef {
    first_tok: usize,
    open_tok: usize,
    close_tok: usize,
    /// The `;` after it, or the `}` when there is none.
    last_tok: usize,
}

struct TopLevel {
    functions: Vec<FnDef>,
    enums: Vec<EnumDef>,
}

/// Names that take parenthesised arguments in front of a function's name
/// without being it.
const ATTRIBUTES: &[&str] = &[
    "__attribute__",
    "__attribute",
    "__declspec",
    "__printf",
    "__scanf",
    "__section",
    "__aligned",
    "__alloc_size",
    "__must_hold",
    "__acquires",
    "__releases",
    "__cond_acquires",
    "__cond_releases",
    "_Alignas",
    "alignas",
];

/// C keywords after which a `(` is not a function's parameter list.
const KEYWORDS: &[&str] = &[
    "void",
    "char",
    "short",
    "int",
    "long",
    "float",
    "double",
    "signed",
    "unsigned",
    "_Bool",
    "const",
    "volatile",
    "static",
    "inline",
    "extern",
    "struct",
    "union",
    "enum",
    "typeof",
    "__typeof__",
    "sizeof",
    "return",
    "if",
    "while",
    "for",
    "switch",
];

/// Finds the top-level function definitions and `enum scan_result`s.
fn scan_top_level(file: &str, toks: &[Tok]) -> Result<TopLevel, (u32, String)> {
    let sig: Vec<usize> = (0..toks.len()).filter(|&i| !toks[i].is_comment()).collect();
    let text = |k: usize| &file[toks[sig[k]].start..toks[sig[k]].end];
    let punct = |k: usize, p: &str| is_punct(file, &toks[sig[k]], p);
    let mut functions = Vec::new();
    let mut enums = Vec::new();
    let mut decl_start: Option<usize> = None;
    let mut k = 0;
    while k < sig.len() {
        let ds = *decl_start.get_or_insert(k);
        if punct(k, ";") {
            decl_start = None;
        } else if punct(k, "}") {
            return Err((
                toks[sig[k]].line,
                "`}` without a matching `{` (unbalanced braces, perhaps across #ifdef branches)".to_owned(),
            ));
        } else if punct(k, "{") {
            // Its matching `}`.
            let mut depth = 0usize;
            let mut close = None;
            for (j, _) in sig.iter().enumerate().skip(k) {
                if punct(j, "{") {
                    depth += 1;
                } else if punct(j, "}") {
                    depth -= 1;
                    if depth == 0 {
                        close = Some(j);
                        break;
                    }
                }
            }
            let Some(close) = close else {
                return Err((
                    toks[sig[k]].line,
                    "`{` never closed (unbalanced braces, perhaps across #ifdef branches)".to_owned(),
                ));
            };
            if let Some(name) = function_name(file, toks, &sig[ds..k]) {
                functions.push(FnDef {
                    name: name.to_owned(),
                    first_tok: sig[ds],
                    open_tok: sig[k],
                    close_tok: sig[close],
                    line: toks[sig[ds]].line,
                });
                decl_start = None;
            } else if k >= ds + 2 && text(k - 2) == "enum" && text(k - 1) == "scan_result" {
                let last = (close + 1..sig.len())
                    .find(|&j| punct(j, ";") || punct(j, "{") || punct(j, "}"))
                    .filter(|&j| punct(j, ";"))
                    .unwrap_or(close);
                enums.push(EnumDef {
                    first_tok: sig[ds],
                    open_tok: sig[k],
                    close_tok: sig[close],
                    last_tok: sig[last],
                });
            }
            k = close + 1;
            continue;
        }
        k += 1;
    }
    Ok(TopLevel { functions, enums })
}

/// The name of the function a declaration (the tokens before a top-level
/// `{`) defines, or `None` when it is not a function definition.
fn function_name<'a>(file: &'a str, toks: &[Tok], decl: &[usize]) -> Option<&'a str> {
    let last = toks[*decl.last()?];
    if !is_punct(file, &last, ")") {
        return None;
    }
    let mut depth = 0i32;
    let mut name = None;
    for (n, &i) in decl.iter().enumerate() {
        let t = &toks[i];
        if is_punct(file, t, "(") {
            if depth == 0 && name.is_none() && n > 0 {
                let prev = &toks[decl[n - 1]];
                let word = &file[prev.start..prev.end];
                if prev.kind == Kind::Ident && !ATTRIBUTES.contains(&word) && !KEYWORDS.contains(&word) {
                    name = Some(word);
                }
            }
            depth += 1;
        } else if is_punct(file, t, ")") {
            depth -= 1;
        } else if depth == 0 && is_punct(file, t, "=") {
            return None;
        }
    }
    name
}

/// The names `f` calls: identifiers in its body followed by `(`, except
/// after `.` or `->`.
fn calls<'a>(file: &'a str, toks: &[Tok], f: &FnDef) -> BTreeSet<&'a str> {
    let body: Vec<&Tok> = toks[f.open_tok + 1..f.close_tok].iter().filter(|t| !t.is_comment()).collect();
    let mut names = BTreeSet::new();
    for (n, t) in body.iter().enumerate() {
        if t.kind != Kind::Ident {
            continue;
        }
        let followed = body.get(n + 1).is_some_and(|next| is_punct(file, next, "("));
        let member = n > 0 && (is_punct(file, body[n - 1], ".") || is_punct(file, body[n - 1], "->"));
        if followed && !member {
            names.insert(&file[t.start..t.end]);
        }
    }
    names
}

/// The start of the line holding byte `pos`, if only whitespace precedes it
/// on that line; else `pos`.
fn line_start_or_token(file: &str, pos: usize) -> usize {
    let line_start = file[..pos].rfind('\n').map_or(0, |n| n + 1);
    if file[line_start..pos].trim().is_empty() {
        line_start
    } else {
        pos
    }
}

fn line_of(file: &str, pos: usize) -> u32 {
    1 + count_newlines(&file.as_bytes()[..pos])
}

/// The entry's text from `start` to `end` with the step and abort markers
/// added, and the step numbers found.
fn with_markers(file: &str, toks: &[Tok], f: &FnDef, start: usize, end: usize) -> (String, Vec<u32>) {
    let mut inserts: Vec<(usize, String)> = Vec::new();
    let mut steps = Vec::new();
    let body = &toks[f.open_tok + 1..f.close_tok];
    let sig: Vec<&Tok> = body.iter().filter(|t| !t.is_comment()).collect();
    for t in body {
        if t.kind == Kind::BlockComment {
            if let Some(n) = step_number(&file[t.start + 2..t.end - 2]) {
                inserts.push((t.end, format!(" KC_STEP({n});")));
                steps.push(n);
            }
        }
    }
    for (n, t) in sig.iter().enumerate() {
        if t.kind != Kind::Ident || &file[t.start..t.end] != "abort" || n == 0 {
            continue;
        }
        let colon = sig.get(n + 1).filter(|next| is_punct(file, next, ":"));
        let prev = sig[n - 1];
        let statement_start = [";", "{", "}", ":"].iter().any(|p| is_punct(file, prev, p));
        if let (Some(colon), true) = (colon, statement_start) {
            inserts.push((colon.end, " KC_STEP_ABORT();".to_owned()));
        }
    }
    inserts.sort_by_key(|(pos, _)| *pos);
    let mut out = String::new();
    let mut at = start;
    for (pos, text) in inserts {
        out.push_str(&file[at..pos]);
        out.push_str(&text);
        at = pos;
    }
    out.push_str(&file[at..end]);
    (out, steps)
}

/// N, when a comment's text starts with `step N` (any case; leading
/// whitespace and `*` of a multi-line comment allowed).
fn step_number(comment: &str) -> Option<u32> {
    let text = comment.trim_start().trim_start_matches('*').trim_start();
    let head = text.get(..4)?;
    if !head.eq_ignore_ascii_case("step") {
        return None;
    }
    let rest = &text[4..];
    let digits_from = rest.len() - rest.trim_start().len();
    if digits_from == 0 {
        return None;
    }
    let rest = &rest[digits_from..];
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    rest[..digits].parse().ok()
}

/// The line, text and constants of the file's `enum scan_result`.
fn scan_result_enum<'a>(
    file: &'a str,
    file_name: &str,
    toks: &[Tok],
    top: &TopLevel,
) -> Result<(u32, &'a str, Vec<String>), ExtractError> {
    let e = match top.enums.as_slice() {
        [] => return Err(ExtractError::NoScanResult { file: file_name.to_owned() }),
        [one] => one,
        many => {
            return Err(ExtractError::Duplicate {
                file: file_name.to_owned(),
                what: "enum scan_result".to_owned(),
                lines: many.iter().map(|e| toks[e.first_tok].line).collect(),
            })
        }
    };
    let body: Vec<&Tok> = toks[e.open_tok + 1..e.close_tok].iter().filter(|t| !t.is_comment()).collect();
    let mut constants = Vec::new();
    for item in body.split(|t| is_punct(file, t, ",")) {
        let Some(first) = item.first() else { continue };
        let name = &file[first.start..first.end];
        let bad = || ExtractError::ScanResultValue {
            file: file_name.to_owned(),
            line: first.line,
            constant: name.to_owned(),
        };
        if first.kind != Kind::Ident {
            return Err(ExtractError::Syntax {
                file: file_name.to_owned(),
                line: first.line,
                message: format!("unexpected `{name}` in enum scan_result"),
            });
        }
        match item {
            [_] => {}
            [_, eq, zero] if constants.is_empty() && is_punct(file, eq, "=") && &file[zero.start..zero.end] == "0" => {}
            _ => return Err(bad()),
        }
        constants.push(name.to_owned());
    }
    let start = line_start_or_token(file, toks[e.first_tok].start);
    Ok((line_of(file, start), &file[start..toks[e.last_tok].end], constants))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A synthetic file in the shape of khugepaged.c.
    const FILE: &str = r#"// SPDX-License-Identifier: synthetic test fixture
#include <linux/mm.h>
#define HELPER_MACRO(x) \
	do { if (x) { helper_a(x); } } while (0)

enum scan_result {
	SCAN_FAIL,
	SCAN_SUCCEED,
	SCAN_OTHER, /* a comment, with a comma */
};

static const char *names[] = { "a { b", "c } d" };

static int __attribute__((unused)) helper_a(int x);

/* Recursion: helper_a and helper_b call each other. */
static int helper_a(int x)
{
	return x ? helper_b(x - 1) : 0;
}

static inline int
helper_b(int x)
{
	char c = '{';
	return helper_a(x) + (c == '}');
}

static int provided_helper(int x)
{
	return x;
}

static int unused_helper(void)
{
	return 2;
}

#ifdef CONFIG_X
int entry_fn(int x)
{
	int ret = SCAN_FAIL;

	/* Step 1: call helpers */
	ret = helper_a(x) + provided_helper(x);
	if (ret)
		goto abort;
	/* a comment that is not a step */
	/* step 2 */
	ops->unused_helper();
	s.unused_helper();
	return ret;
abort:
	return SCAN_FAIL; // done
}
#endif
"#;

    fn no_provided(_: &str) -> bool {
        false
    }

    #[test]
    fn entry_with_helpers_recursion_and_provided_filter() {
        let out = extract(FILE, "mm/test.c", "entry_fn", &|n| n == "provided_helper").unwrap();
        assert_eq!(out.functions, ["helper_a", "helper_b", "entry_fn"]);
        assert_eq!(out.scan_results, ["SCAN_FAIL", "SCAN_SUCCEED", "SCAN_OTHER"]);
        assert_eq!(out.steps, [1, 2]);
        let expected = r#"#line 6 "mm/test.c"
enum scan_result {
	SCAN_FAIL,
	SCAN_SUCCEED,
	SCAN_OTHER, /* a comment, with a comma */
};
#line 17 "mm/test.c"
static int helper_a(int x)
{
	return x ? helper_b(x - 1) : 0;
}
#line 22 "mm/test.c"
static inline int
helper_b(int x)
{
	char c = '{';
	return helper_a(x) + (c == '}');
}
#line 40 "mm/test.c"
int entry_fn(int x)
{
	int ret = SCAN_FAIL;

	/* Step 1: call helpers */ KC_STEP(1);
	ret = helper_a(x) + provided_helper(x);
	if (ret)
		goto abort;
	/* a comment that is not a step */
	/* step 2 */ KC_STEP(2);
	ops->unused_helper();
	s.unused_helper();
	return ret;
abort: KC_STEP_ABORT();
	return SCAN_FAIL; // done
}
"#;
        assert_eq!(out.c, expected);
    }

    #[test]
    fn provided_filter_takes_no_helper() {
        let out =
            extract(FILE, "mm/test.c", "entry_fn", &|n| n.starts_with("helper") || n == "provided_helper").unwrap();
        assert_eq!(out.functions, ["entry_fn"]);
        let out = extract(FILE, "mm/test.c", "entry_fn", &no_provided).unwrap();
        assert_eq!(out.functions, ["helper_a", "helper_b", "provided_helper", "entry_fn"]);
    }

    #[test]
    fn entry_is_taken_even_when_provided() {
        let out = extract(FILE, "f.c", "helper_b", &|_| true).unwrap();
        assert_eq!(out.functions, ["helper_b"]);
        assert_eq!(out.steps, Vec::<u32>::new());
        // Markers are only added in the entry.
        let out = extract(FILE, "f.c", "helper_a", &no_provided).unwrap();
        assert_eq!(out.functions, ["helper_a", "helper_b"]);
        assert!(!out.c.contains("KC_STEP"));
    }

    #[test]
    fn entry_not_found() {
        let err = extract(FILE, "mm/test.c", "missing_fn", &no_provided).unwrap_err();
        assert!(
            matches!(&err, ExtractError::EntryNotFound { file, function } if file == "mm/test.c" && function == "missing_fn")
        );
        assert!(err.to_string().starts_with(
            "mm/test.c (from --kernel-source, with any --kernel-patch applied): no definition of missing_fn() found"
        ));
        // A declaration is not a definition.
        let decl_only = "enum scan_result { A };\nint f(void);\n";
        assert!(matches!(extract(decl_only, "x.c", "f", &no_provided), Err(ExtractError::EntryNotFound { .. })));
    }

    #[test]
    fn duplicate_definitions() {
        let file = "enum scan_result { A };\n#ifdef X\nint f(void)\n{\n\treturn 1;\n}\n#else\nint f(void)\n{\n\treturn 0;\n}\n#endif\n";
        let err = extract(file, "x.c", "f", &no_provided).unwrap_err();
        assert!(
            matches!(&err, ExtractError::Duplicate { what, lines, .. } if what == "f()" && *lines == [3, 8]),
            "{err:?}"
        );
        assert!(
            err.to_string().contains("f() is defined more than once (lines 3 and 8), probably under #ifdef/#else"),
            "{err}"
        );

        // A helper defined twice is an error only when it is taken.
        let file = format!("{file}static int g(void)\n{{\n\treturn 2;\n}}\nint h(void)\n{{\n\treturn g();\n}}\n");
        assert_eq!(extract(&file, "x.c", "h", &no_provided).unwrap().functions, ["g", "h"]);
        let file = file.replace("return g();", "return g() + f();");
        assert!(matches!(extract(&file, "x.c", "h", &no_provided), Err(ExtractError::Duplicate { .. })));
        assert_eq!(extract(&file, "x.c", "h", &|n| n == "f").unwrap().functions, ["g", "h"]);
    }

    #[test]
    fn scan_result_errors() {
        let err = extract("int f(void)\n{\n}\n", "x.c", "f", &no_provided).unwrap_err();
        assert!(matches!(err, ExtractError::NoScanResult { .. }), "{err:?}");

        let zero = "enum scan_result { S_A = 0, S_B };\nint f(void)\n{\n}\n";
        assert_eq!(extract(zero, "x.c", "f", &no_provided).unwrap().scan_results, ["S_A", "S_B"]);

        let valued = "enum scan_result {\n\tS_A,\n\tS_B = 5,\n};\nint f(void)\n{\n}\n";
        let err = extract(valued, "x.c", "f", &no_provided).unwrap_err();
        assert!(
            matches!(&err, ExtractError::ScanResultValue { line: 3, constant, .. } if constant == "S_B"),
            "{err:?}"
        );
        assert!(err.to_string().starts_with("x.c:3 (from --kernel-source"), "{err}");

        let first_one = "enum scan_result { S_A = 1 };\nint f(void)\n{\n}\n";
        assert!(matches!(extract(first_one, "x.c", "f", &no_provided), Err(ExtractError::ScanResultValue { .. })));
    }

    #[test]
    fn syntax_errors() {
        let err = extract("int f(void)\n{\n", "x.c", "f", &no_provided).unwrap_err();
        assert!(
            matches!(&err, ExtractError::Syntax { line: 2, message, .. } if message.contains("never closed")),
            "{err:?}"
        );
        let err = extract("int f(void)\n{\n}\n}\n", "x.c", "f", &no_provided).unwrap_err();
        assert!(matches!(err, ExtractError::Syntax { line: 4, .. }), "{err:?}");
        let err = extract("/* open\n\n", "x.c", "f", &no_provided).unwrap_err();
        assert!(matches!(err, ExtractError::Syntax { line: 1, .. }), "{err:?}");
        let err = extract("int a;\nchar *s = \"open\n", "x.c", "f", &no_provided).unwrap_err();
        assert!(matches!(err, ExtractError::Syntax { line: 2, .. }), "{err:?}");
    }

    #[test]
    fn declarations_of_many_shapes() {
        let file = "\
enum scan_result { A };
struct s { int (*fn)(void); } var = { .fn = 0 };
static int (*table[2])(void) = { 0, 0 };
#error don't stop at this quote
#define MULTI(a) \\
	/* continued */ (a)
__printf(1, 2) static int
	logf(const char *fmt, ...) __attribute__((cold))
{
	return 0;
}
void f(void) __releases(lock)
{
	logf(\"x\");
}
";
        let out = extract(file, "x.c", "f", &no_provided).unwrap();
        assert_eq!(out.functions, ["logf", "f"]);
        assert!(out.c.contains("#line 7 \"x.c\"\n__printf(1, 2) static int\n\tlogf("), "{}", out.c);
        assert!(out.c.contains("#line 12 \"x.c\"\nvoid f(void) __releases(lock)\n{"), "{}", out.c);
    }

    #[test]
    fn markers_only_at_statements() {
        let file = "enum scan_result { A };\nint f(int x)\n{\n\t/*\n\t * Step 3: a long\n\t * comment\n\t */\n\tx = x ? abort : 1;\n\tgoto abort;\nabort:\n\treturn x;\n}\n";
        let out = extract(file, "x.c", "f", &no_provided).unwrap();
        assert_eq!(out.steps, [3]);
        assert!(
            out.c.contains("\t */ KC_STEP(3);\n\tx = x ? abort : 1;\n\tgoto abort;\nabort: KC_STEP_ABORT();\n"),
            "{}",
            out.c
        );
        assert_eq!(out.c.matches("KC_STEP_ABORT").count(), 1);
    }

    #[test]
    fn step_numbers() {
        assert_eq!(step_number(" step 1: check "), Some(1));
        assert_eq!(step_number(" STEP 12 "), Some(12));
        assert_eq!(step_number("\n * Step 4"), Some(4));
        assert_eq!(step_number(" steps 1-3 "), None);
        assert_eq!(step_number(" step: "), None);
        assert_eq!(step_number(" the step 1 "), None);
    }
}
