//! Output files named on the command line (`run --json`, `check --json`,
//! `calibrate --out`), checked before any work starts and written so
//! that a failed or interrupted command never leaves half a file.
//!
//! [`OutputFile::check`] looks at the path as the shell's `>` would and
//! decides how it will be written, once, up front (exit 2 on a path that
//! cannot be written, naming the flag):
//!
//! * a regular file, or a name that does not exist yet in an existing
//!   directory: replaced atomically — a temporary file in the same
//!   directory, then a rename over it (keeping the old file's mode);
//! * a symbolic link: followed, and its final target is what is replaced
//!   (the link stays a link), as `>` writes through a link;
//! * a character device or a FIFO (`/dev/null`, `/dev/stdout`, a pipe
//!   from `>(jq .)`), or a descriptor alias under `/proc` or `/dev/fd`:
//!   opened and written directly, since renaming over a device node
//!   would replace the node itself;
//! * a directory, a block device or a socket: refused. A results file is
//!   never meant for a disk.

use crate::cli::CliError;
use rustix::fs::Access;
use rustix::io::Errno;
use std::io::Write as _;
use std::path::{Component, Path, PathBuf};

/// How many symbolic links a path may go through (Linux's `MAXSYMLINKS`).
const MAX_LINKS: usize = 40;

/// An output path, checked, with how it will be written.
#[derive(Debug, Clone)]
pub struct OutputFile {
    /// The flag that named it, for errors (`--json`).
    flag: &'static str,
    /// The path as given, for messages.
    given: PathBuf,
    how: Method,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Method {
    /// Replace this regular file (or create it) by a rename.
    Replace(PathBuf),
    /// Open this path and write into it (a device, FIFO or descriptor).
    Direct(PathBuf),
}

impl OutputFile {
    /// Check `path` as the output of `flag`, before any work (see the
    /// module docs). Errors are bad input (exit 2) naming the flag.
    pub fn check(flag: &'static str, path: &Path) -> Result<OutputFile, CliError> {
        let bad = |why: String| CliError::Usage(format!("{flag} {}: {why}", path.display()));
        if path.as_os_str().is_empty() {
            return Err(CliError::Usage(format!("{flag}: an empty path; give a file name, e.g. out.json")));
        }
        let target = resolve_links(path).map_err(bad)?;
        let how = match std::fs::metadata(&target) {
            Ok(meta) => {
                use std::os::unix::fs::FileTypeExt as _;
                let kind = meta.file_type();
                if kind.is_dir() {
                    return Err(bad("is a directory; give a file name inside it".into()));
                } else if under_proc(&target) || kind.is_char_device() || kind.is_fifo() {
                    Method::Direct(target)
                } else if kind.is_file() {
                    Method::Replace(target)
                } else if kind.is_block_device() {
                    return Err(bad("is a block device; results are not written to a disk".into()));
                } else {
                    return Err(bad("is a socket or another special file; give a regular file".into()));
                }
            }
            Err(e) if absent(&e) => Method::Replace(target),
            Err(e) => return Err(bad(e.to_string())),
        };
        if let Method::Replace(target) = &how {
            if target.file_name().is_none() {
                return Err(bad("names no file; give a file name, e.g. out.json".into()));
            }
            writable_dir(&dir_of(target)).map_err(bad)?;
        }
        Ok(OutputFile { flag, given: path.to_path_buf(), how })
    }

    /// The path as the user gave it.
    pub fn path(&self) -> &Path {
        &self.given
    }

    /// Write `bytes`: atomically for a regular file, directly otherwise.
    /// An error names the flag and the path (exit 1: the work is done, the
    /// file could not be written).
    pub fn write(&self, bytes: &[u8]) -> Result<(), CliError> {
        let written = match &self.how {
            Method::Replace(target) => replace(target, bytes),
            Method::Direct(target) => {
                std::fs::OpenOptions::new().write(true).truncate(true).open(target).and_then(|mut f| f.write_all(bytes))
            }
        };
        written.map_err(|e| CliError::Failed(format!("{} {}: writing: {e}", self.flag, self.given.display())))
    }
}

/// Follow `path` through symbolic links — in its directories and in its
/// last component — to what it finally names, which may not exist yet.
/// A path that leads into `/proc` (e.g. `/dev/stdout`, a link to
/// `/proc/self/fd/1`) ends the walk there: those links name open files,
/// not paths, and are written directly.
fn resolve_links(path: &Path) -> Result<PathBuf, String> {
    let mut current = std::path::absolute(path).map_err(|e| e.to_string())?;
    for _ in 0..MAX_LINKS {
        let Some(name) = current.file_name().map(ToOwned::to_owned) else { return Ok(current) };
        // A missing directory is reported by the caller's directory check.
        let Ok(dir) = std::fs::canonicalize(dir_of(&current)) else { return Ok(current) };
        current = dir.join(name);
        if under_proc(&current) {
            return Ok(current);
        }
        match std::fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let link = std::fs::read_link(&current).map_err(|e| e.to_string())?;
                current = lexically_normal(&dir.join(link));
            }
            _ => return Ok(current),
        }
    }
    Err(format!("goes through more than {MAX_LINKS} symbolic links (a loop?)"))
}

/// Whether `path` is under `/proc` (after `/dev/fd`, a link to it).
fn under_proc(path: &Path) -> bool {
    path.starts_with("/proc")
}

/// `path` with `.` and `..` taken out without touching the filesystem
/// (a link's target is relative to the link's directory).
fn lexically_normal(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// The directory `path` is in.
fn dir_of(path: &Path) -> PathBuf {
    path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf()
}

/// Whether a path's lookup failed because it is not there: no such file,
/// or a directory on the way that is a file (the directory check that
/// follows names which).
pub fn absent(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::NotFound || e.raw_os_error() == Some(Errno::NOTDIR.raw_os_error())
}

/// `dir` exists, is a directory, and this process may create files in it.
pub fn writable_dir(dir: &Path) -> Result<(), String> {
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => return Err(format!("{} is not a directory", dir.display())),
        Err(e) if e.raw_os_error() == Some(Errno::NOTDIR.raw_os_error()) => {
            return Err(format!("a directory in {} is a file", dir.display()))
        }
        Err(e) if absent(&e) => return Err(format!("directory {} does not exist; create it first", dir.display())),
        Err(e) => return Err(format!("{}: {e}", dir.display())),
    }
    rustix::fs::access(dir, Access::WRITE_OK | Access::EXEC_OK)
        .map_err(|e| format!("cannot create files in {}: {}", dir.display(), std::io::Error::from(e)))
}

/// Replace the regular file `target` (or create it) with `bytes`: a
/// temporary file in the same directory, given the old file's permissions
/// (a new file gets what `>` would give it: 0666 less the umask), synced
/// to disk, then renamed over it, and the directory synced so that the
/// rename is on disk too. On any error before the rename the temporary
/// file is removed and `target` is as it was.
fn replace(target: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let name = target.file_name().map_or_else(|| "out".into(), |n| n.to_string_lossy());
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .permissions(std::fs::Permissions::from_mode(0o666))
        .tempfile_in(dir_of(target))?;
    tmp.write_all(bytes)?;
    if let Ok(meta) = std::fs::metadata(target) {
        tmp.as_file().set_permissions(meta.permissions())?;
    }
    tmp.as_file().sync_all()?;
    tmp.persist(target).map_err(|e| e.error)?;
    sync_dir(&dir_of(target))
}

/// Make the renames done in `dir` durable: fsync the directory. A
/// filesystem that cannot sync a directory (EINVAL) has nothing more to do.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    match std::fs::File::open(dir).and_then(|d| d.sync_all()) {
        Err(e) if e.raw_os_error() == Some(Errno::INVAL.raw_os_error()) => Ok(()),
        done => done,
    }
}

/// Scratch directories for the output modules' tests.
#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An empty directory of this test's own.
    pub(crate) fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("cb-output-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// The names in `dir`, sorted.
    pub(crate) fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> =
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    }

    #[test]
    fn a_regular_file_is_replaced_whole_keeping_its_mode() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = scratch("regular");
        let p = dir.join("r.json");
        OutputFile::check("--json", &p).unwrap().write(b"one").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        OutputFile::check("--json", &p).unwrap().write(b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(names(&dir), ["r.json"], "no temporary left behind");
        let fresh = dir.join("fresh.json");
        OutputFile::check("--json", &fresh).unwrap().write(b"x").unwrap();
        // SAFETY: reading the umask by setting it and putting it back.
        let umask = unsafe {
            let m = libc::umask(0o022);
            libc::umask(m);
            m
        };
        assert_eq!(std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777, 0o666 & !umask as u32);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn links_are_written_through_even_chains_and_dangling_ones() {
        let dir = scratch("links");
        std::fs::create_dir(dir.join("sub")).unwrap();
        std::os::unix::fs::symlink("sub/real.json", dir.join("a.json")).unwrap();
        std::os::unix::fs::symlink("a.json", dir.join("b.json")).unwrap();
        OutputFile::check("--json", &dir.join("b.json")).unwrap().write(b"x").unwrap();
        assert!(std::fs::symlink_metadata(dir.join("b.json")).unwrap().file_type().is_symlink());
        assert!(std::fs::symlink_metadata(dir.join("a.json")).unwrap().file_type().is_symlink());
        assert_eq!(std::fs::read(dir.join("sub/real.json")).unwrap(), b"x");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn paths_that_cannot_be_written_are_refused_naming_the_flag() {
        let dir = scratch("refused");
        std::fs::write(dir.join("file"), "").unwrap();
        std::os::unix::fs::symlink("loop", dir.join("loop")).unwrap();
        let cases = [
            (dir.join("missing/x.json"), "does not exist"),
            (dir.join("file/x.json"), "is not a directory"),
            (dir.clone(), "is a directory"),
            (dir.join("loop"), "symbolic links"),
        ];
        for (path, why) in cases {
            let e = OutputFile::check("--json", &path).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{e}");
            let text = e.to_string();
            assert!(text.starts_with("--json ") && text.contains(why), "{path:?}: {text}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn stdout_aliases_and_character_devices_are_written_directly() {
        let null = OutputFile::check("--json", Path::new("/dev/null")).unwrap();
        assert_eq!(null.how, Method::Direct("/dev/null".into()));
        null.write(b"x").unwrap();
        assert!(matches!(OutputFile::check("--json", Path::new("/dev/stdout")).unwrap().how, Method::Direct(_)));
    }
}
