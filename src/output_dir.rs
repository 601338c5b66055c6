//! Replacing an output directory as a whole.
//!
//! `report` writes a dozen files that belong together. [`replace_dir`]
//! builds them in a staging directory beside the output
//! (`.NAME.staging-PID`, so on the same filesystem), hard-links into it
//! whatever else the output directory holds (nothing there is lost or
//! copied), and then swaps the two directories in one step: Linux's
//! `renameat2(RENAME_EXCHANGE)`, or a plain rename when there is no
//! output yet. Whatever stops the command — Ctrl-C, SIGKILL, a full disk —
//! the output directory holds either the whole earlier report or the whole
//! new one, and no half-written file.
//!
//! A staging directory left behind by a killed run holds only new files
//! and links to files that are still in the output: the next run writing
//! to the same output removes it (when its process is gone).
//!
//! Where the exchange is not available (not Linux, or a filesystem that
//! does not support it) the files are renamed into the output one by one:
//! each file is whole, but a run killed during the renames leaves old and
//! new files side by side.

use crate::cli::CliError;
use std::path::{Path, PathBuf};

/// The staging directories of `out`: `.NAME.staging-` then a process id.
fn staging_prefix(out: &Path) -> String {
    format!(".{}.staging-", out.file_name().map_or_else(|| "out".into(), |n| n.to_string_lossy()))
}

/// Whether process `pid` is running (Linux: `/proc/PID`; elsewhere it is
/// assumed to be, so nothing is removed).
fn alive(pid: u32) -> bool {
    !Path::new("/proc/self").exists() || Path::new(&format!("/proc/{pid}")).exists()
}

/// Remove the staging directories of `out` whose process is gone.
/// Returns the ones removed.
pub fn remove_leftovers(out: &Path) -> Vec<PathBuf> {
    let Some(parent) = parent_of(out) else { return vec![] };
    let prefix = staging_prefix(out);
    let Ok(entries) = std::fs::read_dir(&parent) else { return vec![] };
    let mut removed = vec![];
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix(&prefix).and_then(|p| p.parse::<u32>().ok()) else { continue };
        if pid != std::process::id() && !alive(pid) && std::fs::remove_dir_all(entry.path()).is_ok() {
            removed.push(entry.path());
        }
    }
    removed
}

/// The directory `out` lives in (`.` for a bare name).
fn parent_of(out: &Path) -> Option<PathBuf> {
    let abs = std::path::absolute(out).ok()?;
    abs.parent().map(Path::to_path_buf)
}

/// Replace the directory `out` by what `build` writes into the staging
/// directory it is given, in one step (see the module docs). `build`
/// returns the names of the files it wrote; an error from it leaves `out`
/// untouched and removes the staging directory.
pub fn replace_dir(out: &Path, build: impl FnOnce(&Path) -> Result<Vec<String>, CliError>) -> Result<(), CliError> {
    let failed = |what: String, e: std::io::Error| CliError::Failed(format!("{what}: {e}"));
    let out = std::path::absolute(out).map_err(|e| failed(format!("--out {}", out.display()), e))?;
    if out.file_name().is_none() {
        return Err(CliError::Usage(format!(
            "--out: `{}` names no directory; give one, e.g. collapse-report",
            out.display()
        )));
    }
    if out.exists() && !out.is_dir() {
        return Err(CliError::Usage(format!("--out: {} exists and is not a directory", out.display())));
    }
    let parent = parent_of(&out).expect("an absolute path with a file name has a parent");
    std::fs::create_dir_all(&parent).map_err(|e| failed(format!("creating {}", parent.display()), e))?;
    remove_leftovers(&out);
    let staging = parent.join(format!("{}{}", staging_prefix(&out), std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir(&staging).map_err(|e| failed(format!("creating {}", staging.display()), e))?;
    let swapped = build(&staging).and_then(|files| {
        if !out.exists() {
            return std::fs::rename(&staging, &out)
                .map_err(|e| failed(format!("moving the report to {}", out.display()), e));
        }
        link_others(&out, &staging, &files)
            .map_err(|e| failed(format!("linking the other files of {}", out.display()), e))?;
        match exchange(&staging, &out) {
            Ok(()) => Ok(()),
            Err(_) => rename_each(&staging, &out, &files),
        }
    });
    // After the exchange the staging path holds the earlier report (its
    // other files are linked into the new one); else what was not moved.
    let _ = std::fs::remove_dir_all(&staging);
    swapped
}

/// Hard-link every entry of `out` that `files` does not replace into
/// `staging`, recreating subdirectories (and symbolic links) as they are.
fn link_others(out: &Path, staging: &Path, files: &[String]) -> std::io::Result<()> {
    for entry in std::fs::read_dir(out)? {
        let entry = entry?;
        let name = entry.file_name();
        if files.iter().any(|f| *f == *name.to_string_lossy()) {
            continue;
        }
        link_tree(&entry.path(), &staging.join(&name))?;
    }
    Ok(())
}

fn link_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    let kind = std::fs::symlink_metadata(from)?.file_type();
    if kind.is_dir() {
        std::fs::create_dir(to)?;
        for entry in std::fs::read_dir(from)? {
            let entry = entry?;
            link_tree(&entry.path(), &to.join(entry.file_name()))?;
        }
        Ok(())
    } else if kind.is_symlink() {
        copy_symlink(from, to)
    } else {
        std::fs::hard_link(from, to)
    }
}

#[cfg(unix)]
fn copy_symlink(from: &Path, to: &Path) -> std::io::Result<()> {
    std::os::unix::fs::symlink(std::fs::read_link(from)?, to)
}

#[cfg(not(unix))]
fn copy_symlink(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::copy(from, to).map(|_| ())
}

/// Swap two directories atomically.
#[cfg(target_os = "linux")]
fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| CString::new(p.as_os_str().as_bytes()).map_err(std::io::Error::other);
    let (a, b) = (c(a)?, c(b)?);
    // SAFETY: two NUL-terminated paths that live across the call.
    let rc = unsafe { libc::renameat2(libc::AT_FDCWD, a.as_ptr(), libc::AT_FDCWD, b.as_ptr(), libc::RENAME_EXCHANGE) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn exchange(_a: &Path, _b: &Path) -> std::io::Result<()> {
    Err(std::io::Error::from(std::io::ErrorKind::Unsupported))
}

/// The fallback: rename `files` from `staging` into `out` one by one.
fn rename_each(staging: &Path, out: &Path, files: &[String]) -> Result<(), CliError> {
    for f in files {
        std::fs::rename(staging.join(f), out.join(f))
            .map_err(|e| CliError::Failed(format!("moving {f} into {}: {e}", out.display())))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("cb-output-dir-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn write(dir: &Path, files: &[(&str, &str)]) -> Vec<String> {
        for (name, text) in files {
            std::fs::write(dir.join(name), text).unwrap();
        }
        files.iter().map(|f| f.0.to_owned()).collect()
    }

    #[test]
    fn replaces_the_report_and_keeps_other_files() {
        let dir = scratch("replace");
        let out = dir.join("report");
        replace_dir(&out, |s| Ok(write(s, &[("report.txt", "one"), ("old.svg", "x")]))).unwrap();
        std::fs::create_dir(out.join("notes")).unwrap();
        std::fs::write(out.join("notes/mine.txt"), "keep").unwrap();
        replace_dir(&out, |s| Ok(write(s, &[("report.txt", "two")]))).unwrap();
        assert_eq!(std::fs::read_to_string(out.join("report.txt")).unwrap(), "two");
        assert_eq!(std::fs::read_to_string(out.join("old.svg")).unwrap(), "x", "not replaced: kept");
        assert_eq!(std::fs::read_to_string(out.join("notes/mine.txt")).unwrap(), "keep");
        let names: Vec<String> =
            std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        assert_eq!(names, ["report"], "no staging directory left");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_failed_build_leaves_the_output_untouched() {
        let dir = scratch("failed");
        let out = dir.join("report");
        replace_dir(&out, |s| Ok(write(s, &[("report.txt", "one")]))).unwrap();
        let e = replace_dir(&out, |s| {
            write(s, &[("report.txt", "half")]);
            Err(CliError::Failed("disk full".into()))
        })
        .unwrap_err();
        assert_eq!(e.to_string(), "disk full");
        assert_eq!(std::fs::read_to_string(out.join("report.txt")).unwrap(), "one");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1, "no staging directory left");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_dead_run_s_staging_directory_is_removed() {
        let dir = scratch("leftover");
        let out = dir.join("report");
        // No process has this id (above the kernel's pid_max limit).
        let dead = dir.join(".report.staging-4194305");
        std::fs::create_dir(&dead).unwrap();
        std::fs::write(dead.join("report.txt"), "half").unwrap();
        assert_eq!(remove_leftovers(&out), std::slice::from_ref(&dead));
        assert!(!dead.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
