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
//!
//! The directory holds one report: [`MANIFEST`] lists the files the tool
//! wrote, and the next report drops those it does not write again (an
//! earlier report's plots of another workload), while every file the
//! user put there is kept. The directory keeps its own permissions
//! across the exchange. `--out` naming a symbolic link replaces the
//! directory the link points to; the link stays.

use crate::cli::CliError;
use crate::output_file::{absent, writable_dir};
use std::path::{Path, PathBuf};

/// The file in an output directory that lists the files the tool wrote
/// there, one name a line, after a comment line.
pub const MANIFEST: &str = "manifest.txt";

/// The output directory `out`, checked before any work: resolved through
/// symbolic links, either a directory or a name that does not exist yet,
/// in a directory where this process may create one (exit 2 naming
/// `flag` otherwise). Returns the real path to replace.
pub fn check_out_dir(flag: &str, out: &Path) -> Result<PathBuf, CliError> {
    let bad = |why: String| CliError::Usage(format!("{flag} {}: {why}", out.display()));
    let abs = std::path::absolute(out).map_err(|e| bad(e.to_string()))?;
    if abs.file_name().is_none() {
        return Err(bad("names no directory; give one, e.g. collapse-report".into()));
    }
    let real = match std::fs::metadata(&abs) {
        Ok(meta) if meta.is_dir() => std::fs::canonicalize(&abs).map_err(|e| bad(e.to_string()))?,
        Ok(_) => return Err(bad("exists and is not a directory".into())),
        Err(e) if absent(&e) => {
            if std::fs::symlink_metadata(&abs).is_ok() {
                return Err(bad("is a symbolic link to nothing; create its target or give another name".into()));
            }
            abs
        }
        Err(e) => return Err(bad(e.to_string())),
    };
    writable_dir(&parent_of(&real).unwrap_or_else(|| PathBuf::from("/"))).map_err(bad)?;
    Ok(real)
}

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

/// Replace the directory `out` (as returned by [`check_out_dir`]) by
/// what `build` writes into the staging directory it is given, in one
/// step (see the module docs). `build` returns the names of the files it
/// wrote; they become the new [`MANIFEST`]. An error from `build` leaves
/// `out` untouched and removes the staging directory.
pub fn replace_dir(out: &Path, build: impl FnOnce(&Path) -> Result<Vec<String>, CliError>) -> Result<(), CliError> {
    let failed = |what: String, e: std::io::Error| CliError::Failed(format!("{what}: {e}"));
    let parent = parent_of(out).expect("a checked output directory has a parent");
    remove_leftovers(out);
    let staging = parent.join(format!("{}{}", staging_prefix(out), std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir(&staging).map_err(|e| failed(format!("creating {}", staging.display()), e))?;
    let swapped = build(&staging).and_then(|mut files| {
        files.push(MANIFEST.to_owned());
        write_manifest(&staging, &files).map_err(|e| failed(format!("writing {MANIFEST}"), e))?;
        if !out.exists() {
            return std::fs::rename(&staging, out)
                .map_err(|e| failed(format!("moving the report to {}", out.display()), e));
        }
        let earlier = read_manifest(out);
        link_others(out, &staging, &files, &earlier)
            .map_err(|e| failed(format!("linking the other files of {}", out.display()), e))?;
        let mode = std::fs::metadata(out).map_err(|e| failed(format!("reading {}", out.display()), e))?;
        std::fs::set_permissions(&staging, mode.permissions())
            .map_err(|e| failed(format!("setting the mode of {}", staging.display()), e))?;
        match exchange(&staging, out) {
            Ok(()) => Ok(()),
            Err(_) => rename_each(&staging, out, &files, &earlier),
        }
    });
    // After the exchange the staging path holds the earlier report (its
    // other files are linked into the new one); else what was not moved.
    let _ = std::fs::remove_dir_all(&staging);
    swapped
}

/// Write the [`MANIFEST`] of `files` into `dir`.
fn write_manifest(dir: &Path, files: &[String]) -> std::io::Result<()> {
    let mut text = String::from("# files written by collapse-bench report; the next report replaces them\n");
    for f in files {
        text.push_str(f);
        text.push('\n');
    }
    std::fs::write(dir.join(MANIFEST), text)
}

/// The files an earlier report listed in `dir`'s [`MANIFEST`] (none when
/// it has none: a directory from before manifests keeps every file).
fn read_manifest(dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(dir.join(MANIFEST)).unwrap_or_default();
    // Only plain names in `dir`: a manifest never reaches outside it.
    let plain = |l: &&str| !l.is_empty() && !l.starts_with('#') && !l.contains('/') && *l != "." && *l != "..";
    text.lines().filter(plain).map(str::to_owned).collect()
}

/// Hard-link into `staging` every entry of `out` that is not one of the
/// new `files` nor one of the `earlier` report's, recreating
/// subdirectories (and symbolic links) as they are.
fn link_others(out: &Path, staging: &Path, files: &[String], earlier: &[String]) -> std::io::Result<()> {
    for entry in std::fs::read_dir(out)? {
        let entry = entry?;
        let name = entry.file_name();
        let name_str = name.to_string_lossy();
        if files.iter().chain(earlier).any(|f| *f == *name_str) {
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

/// Swap two directories atomically: `renameat2(RENAME_EXCHANGE)`. An
/// error (a filesystem without the flag says EINVAL) leaves both as they
/// were.
#[cfg(target_os = "linux")]
fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    use rustix::fs::{renameat_with, RenameFlags, CWD};
    renameat_with(CWD, a, CWD, b, RenameFlags::EXCHANGE).map_err(std::io::Error::from)
}

#[cfg(not(target_os = "linux"))]
fn exchange(_a: &Path, _b: &Path) -> std::io::Result<()> {
    Err(std::io::Error::from(std::io::ErrorKind::Unsupported))
}

/// The fallback: rename `files` from `staging` into `out` one by one,
/// then remove the `earlier` report's files that were not replaced.
fn rename_each(staging: &Path, out: &Path, files: &[String], earlier: &[String]) -> Result<(), CliError> {
    for f in files {
        std::fs::rename(staging.join(f), out.join(f))
            .map_err(|e| CliError::Failed(format!("moving {f} into {}: {e}", out.display())))?;
    }
    for f in earlier.iter().filter(|f| !files.contains(f)) {
        let _ = std::fs::remove_file(out.join(f));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output_file::tests::{names, scratch};

    fn write(dir: &Path, files: &[(&str, &str)]) -> Vec<String> {
        for (name, text) in files {
            std::fs::write(dir.join(name), text).unwrap();
        }
        files.iter().map(|f| f.0.to_owned()).collect()
    }

    #[test]
    fn replaces_the_report_drops_its_old_files_and_keeps_the_user_s() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = scratch("replace");
        let out = dir.join("report");
        replace_dir(&out, |s| Ok(write(s, &[("report.txt", "one"), ("old.svg", "x")]))).unwrap();
        std::fs::create_dir(out.join("notes")).unwrap();
        std::fs::write(out.join("notes/mine.txt"), "keep").unwrap();
        std::fs::write(out.join("mine.txt"), "keep").unwrap();
        std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o555)).unwrap();
        replace_dir(&out, |s| Ok(write(s, &[("report.txt", "two")]))).unwrap();
        assert_eq!(std::fs::read_to_string(out.join("report.txt")).unwrap(), "two");
        assert_eq!(names(&out), [MANIFEST, "mine.txt", "notes", "report.txt"], "the earlier report's old.svg is gone");
        assert_eq!(std::fs::read_to_string(out.join("notes/mine.txt")).unwrap(), "keep");
        assert_eq!(std::fs::metadata(&out).unwrap().permissions().mode() & 0o777, 0o555, "the mode is kept");
        assert_eq!(names(&dir), ["report"], "no staging directory left");
        std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_exchange_swaps_two_directories() {
        let dir = scratch("exchange");
        let (a, b) = (dir.join("a"), dir.join("b"));
        std::fs::create_dir(&a).unwrap();
        std::fs::create_dir(&b).unwrap();
        write(&a, &[("one", "")]);
        write(&b, &[("two", "")]);
        if exchange(&a, &b).is_ok() {
            assert_eq!((names(&a), names(&b)), (vec!["two".to_owned()], vec!["one".to_owned()]));
        }
        assert!(exchange(&a, &dir.join("missing")).is_err(), "both must exist; nothing moved");
        assert_eq!(names(&dir), ["a", "b"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn without_the_exchange_the_files_are_renamed_in_one_by_one() {
        let dir = scratch("fallback");
        let (staging, out) = (dir.join("staging"), dir.join("out"));
        std::fs::create_dir(&staging).unwrap();
        std::fs::create_dir(&out).unwrap();
        let files = write(&staging, &[("report.txt", "new"), (MANIFEST, "")]);
        write(&out, &[("report.txt", "old"), ("old.svg", ""), ("mine.txt", "keep")]);
        let earlier = ["report.txt".to_owned(), "old.svg".to_owned()];
        rename_each(&staging, &out, &files, &earlier).unwrap();
        assert_eq!(std::fs::read_to_string(out.join("report.txt")).unwrap(), "new");
        assert_eq!(names(&out), [MANIFEST, "mine.txt", "report.txt"], "the earlier report's old.svg is gone");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_manifest_names_only_files_inside_the_directory() {
        let dir = scratch("manifest");
        std::fs::write(dir.join(MANIFEST), "# comment\nreport.txt\n../victim\n/etc/passwd\n..\n\nplot.svg\n").unwrap();
        assert_eq!(read_manifest(&dir), ["report.txt", "plot.svg"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_output_is_checked_before_any_work() {
        let dir = scratch("check");
        std::fs::write(dir.join("file"), "").unwrap();
        std::fs::create_dir(dir.join("real")).unwrap();
        std::os::unix::fs::symlink("real", dir.join("link")).unwrap();
        std::os::unix::fs::symlink("nowhere", dir.join("dangling")).unwrap();
        assert_eq!(
            check_out_dir("--out", &dir.join("link")).unwrap(),
            std::fs::canonicalize(dir.join("real")).unwrap()
        );
        assert_eq!(check_out_dir("--out", &dir.join("new")).unwrap(), dir.join("new"));
        for (path, why) in [
            (dir.join("file"), "is not a directory"),
            (dir.join("missing/report"), "does not exist"),
            (dir.join("file/report"), "is not a directory"),
            (dir.join("dangling"), "symbolic link to nothing"),
        ] {
            let e = check_out_dir("--out", &path).unwrap_err();
            assert_eq!(e.exit_code(), 2);
            assert!(e.to_string().starts_with("--out ") && e.to_string().contains(why), "{path:?}: {e}");
        }
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
