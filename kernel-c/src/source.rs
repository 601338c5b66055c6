//! Reading the user's kernel source: `mm/khugepaged.c` and the version from
//! the top-level `Makefile`, out of a kernel tree or a source tarball.
//!
//! The project ships no kernel code; the `--kernel-source` option names
//! either a kernel tree (a directory holding `Makefile` and
//! `mm/khugepaged.c`) or a tarball of one, such as Debian's
//! `/usr/src/linux-source-X.Y.tar.xz` (package `linux-source-X.Y`).
//! [`open`] reads the two files and nothing else.
//!
//! Decoding Debian's tarball (145 MiB of xz, 1.5 GiB of tar) takes seconds,
//! so [`open`] keeps the two files it took out of a tarball in a cache
//! directory (see [`default_cache_dir`]), keyed by the tarball's canonical
//! path, size and modification time; a later [`open`] of the same,
//! unchanged tarball reads them from there without decoding it. The cache
//! is an optimisation only: a cache directory that is absent, unwritable
//! or damaged means no caching, never an error. [`open_uncached`] always
//! reads the source itself.

use std::ffi::OsString;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

/// The file the tool compiles, relative to the top of a kernel tree.
pub const KHUGEPAGED_C: &str = "mm/khugepaged.c";

/// The kernel's version, as its top-level `Makefile` states it
/// (`VERSION`, `PATCHLEVEL`, `SUBLEVEL`, `EXTRAVERSION`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KernelVersion {
    pub version: u32,
    pub patchlevel: u32,
    pub sublevel: u32,
    /// As written in the Makefile, e.g. `-rc1`; empty for a release.
    pub extraversion: String,
}

impl fmt::Display for KernelVersion {
    /// `6.12.118`, with the extraversion appended as it is: `6.12.0-rc1`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}{}", self.version, self.patchlevel, self.sublevel, self.extraversion)
    }
}

impl KernelVersion {
    /// Reads the version from the text of a kernel's top-level `Makefile`:
    /// the first `VERSION = 6`, `PATCHLEVEL = 12`, `SUBLEVEL = 118` and
    /// (optional, empty when absent) `EXTRAVERSION =` assignments at the
    /// start of a line. `None` when one of the three numbers is missing or
    /// is not a number.
    pub fn from_makefile(text: &str) -> Option<KernelVersion> {
        let mut version = None;
        let mut patchlevel = None;
        let mut sublevel = None;
        let mut extraversion = None;
        for line in text.lines() {
            let Some((name, value)) = line.split_once('=') else {
                continue;
            };
            // `VERSION := 6` or `VERSION ?= 6` are not how the kernel
            // writes it, but cost nothing to accept.
            let name = name.trim_end().trim_end_matches([':', '?']).trim_end();
            let value = value.trim();
            let slot = match name {
                "VERSION" => &mut version,
                "PATCHLEVEL" => &mut patchlevel,
                "SUBLEVEL" => &mut sublevel,
                "EXTRAVERSION" => {
                    extraversion.get_or_insert_with(|| value.to_owned());
                    continue;
                }
                _ => continue,
            };
            if slot.is_none() {
                *slot = Some(value.parse::<u32>().ok()?);
            }
            if version.is_some() && patchlevel.is_some() && sublevel.is_some() && extraversion.is_some() {
                break;
            }
        }
        Some(KernelVersion {
            version: version?,
            patchlevel: patchlevel?,
            sublevel: sublevel?,
            extraversion: extraversion.unwrap_or_default(),
        })
    }
}

/// What [`open`] read from a kernel source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelTree {
    /// The tree or tarball it was read from, made canonical (absolute, no
    /// symbolic links) where that is possible, else as given.
    pub origin: PathBuf,
    pub version: KernelVersion,
    /// The text of `mm/khugepaged.c`.
    pub khugepaged_c: String,
}

/// Why a kernel source could not be read. The messages name the
/// `--kernel-source` option and the path, and say what would work.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("--kernel-source {}: no such file or directory; give a kernel tree or a source tarball such as Debian's /usr/src/linux-source-X.Y.tar.xz (apt-get install linux-source-X.Y)", path.display())]
    Missing { path: PathBuf },

    #[error("--kernel-source {}: not a kernel tree: {missing} not found; expected a kernel tree (a directory with Makefile and mm/khugepaged.c) or Debian's /usr/src/linux-source-X.Y.tar.xz", path.display())]
    NotKernelTree {
        path: PathBuf,
        /// What is missing, e.g. `mm/khugepaged.c`, or
        /// `mm/khugepaged.c in the archive`.
        missing: String,
    },

    #[error("--kernel-source {}: unsupported file type; expected a kernel tree directory or a tarball ending in .tar.xz, .txz or .tar", path.display())]
    UnsupportedArchive { path: PathBuf },

    #[error("--kernel-source {}: {makefile} has no VERSION, PATCHLEVEL and SUBLEVEL lines; is this the top-level Makefile of a Linux tree?", path.display())]
    NoVersion { path: PathBuf, makefile: String },

    #[error("--kernel-source {}: {file} is not UTF-8 text", path.display())]
    NotUtf8 { path: PathBuf, file: String },

    #[error("--kernel-source {}: {source}; is the file complete and not damaged?", path.display())]
    Io { path: PathBuf, source: io::Error },
}

/// Reads `mm/khugepaged.c` and the version from a kernel tree or tarball,
/// using the cache directory [`default_cache_dir`] for tarballs.
///
/// `path` is either a directory holding `Makefile` and `mm/khugepaged.c`,
/// or a tarball ending in `.tar.xz`, `.txz` or `.tar` whose tree sits at
/// its root or under one top directory (`linux-source-6.12/...`).
pub fn open(path: &Path) -> Result<KernelTree, SourceError> {
    open_with_cache(path, default_cache_dir().as_deref())
}

/// As [`open`], but always reads the source itself: no cache is read or
/// written.
pub fn open_uncached(path: &Path) -> Result<KernelTree, SourceError> {
    open_with_cache(path, None)
}

/// As [`open`], with the cache directory given: `None` for no cache. The
/// directory is created when missing; one that cannot be created or
/// written means no caching.
pub fn open_with_cache(path: &Path, cache_dir: Option<&Path>) -> Result<KernelTree, SourceError> {
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(SourceError::Missing { path: path.to_owned() }),
        Err(e) => return Err(io_err(path, e)),
    };
    let origin = fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    if meta.is_dir() {
        let (makefile, khugepaged) = read_tree(path)?;
        return finish(path, origin, "Makefile", &makefile, khugepaged);
    }
    let kind = archive_kind(path).ok_or_else(|| SourceError::UnsupportedArchive { path: path.to_owned() })?;

    let cache = cache_dir.and_then(|dir| CacheEntry::locate(dir, &origin, &meta));
    if let Some(entry) = &cache {
        if let Some((makefile, khugepaged)) = entry.read() {
            // A cached Makefile without a version would only come from a
            // damaged cache: read the tarball then.
            if let Some(version) = KernelVersion::from_makefile(&makefile) {
                return Ok(KernelTree { origin, version, khugepaged_c: khugepaged });
            }
        }
    }

    let found = read_archive(path, kind)?;
    let tree = finish(path, origin, &found.makefile_name, &found.makefile, found.khugepaged)?;
    if let Some(entry) = &cache {
        // Only the Makefile's version lines matter, but the whole file is
        // small: it is kept as the tree holds it.
        entry.write(&found.makefile, &tree.khugepaged_c);
    }
    Ok(tree)
}

/// The cache directory [`open`] uses: `$COLLAPSE_BENCH_CACHE` if set and not
/// empty, else `$XDG_CACHE_HOME/collapse-bench` (when that is an absolute
/// path), else `$HOME/.cache/collapse-bench`; `None` when none of these is
/// set.
pub fn default_cache_dir() -> Option<PathBuf> {
    cache_dir_from(|name| std::env::var_os(name))
}

/// [`default_cache_dir`] with the environment given as a function.
fn cache_dir_from(env: impl Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    let set = |name: &str| env(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = set("COLLAPSE_BENCH_CACHE") {
        return Some(dir);
    }
    // The XDG base directory specification says to ignore a relative path.
    if let Some(dir) = set("XDG_CACHE_HOME").filter(|d| d.is_absolute()) {
        return Some(dir.join("collapse-bench"));
    }
    set("HOME").map(|home| home.join(".cache").join("collapse-bench"))
}

fn io_err(path: &Path, source: io::Error) -> SourceError {
    SourceError::Io { path: path.to_owned(), source }
}

/// Turns the two files' bytes into a [`KernelTree`].
fn finish(
    path: &Path,
    origin: PathBuf,
    makefile_name: &str,
    makefile: &[u8],
    khugepaged: Vec<u8>,
) -> Result<KernelTree, SourceError> {
    // The Makefile is only searched for its version lines: bytes that are
    // not UTF-8 elsewhere in it do not matter.
    let version = KernelVersion::from_makefile(&String::from_utf8_lossy(makefile))
        .ok_or_else(|| SourceError::NoVersion { path: path.to_owned(), makefile: makefile_name.to_owned() })?;
    let khugepaged_c = String::from_utf8(khugepaged)
        .map_err(|_| SourceError::NotUtf8 { path: path.to_owned(), file: KHUGEPAGED_C.to_owned() })?;
    Ok(KernelTree { origin, version, khugepaged_c })
}

fn read_tree(dir: &Path) -> Result<(Vec<u8>, Vec<u8>), SourceError> {
    let read = |rel: &str| match fs::read(dir.join(rel)) {
        Ok(bytes) => Ok(bytes),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            Err(SourceError::NotKernelTree { path: dir.to_owned(), missing: rel.to_owned() })
        }
        Err(e) => Err(io_err(&dir.join(rel), e)),
    };
    let makefile = read("Makefile")?;
    let khugepaged = read(KHUGEPAGED_C)?;
    Ok((makefile, khugepaged))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ArchiveKind {
    Tar,
    TarXz,
}

fn archive_kind(path: &Path) -> Option<ArchiveKind> {
    let name = path.file_name()?.to_str()?.to_ascii_lowercase();
    if name.ends_with(".tar.xz") || name.ends_with(".txz") {
        Some(ArchiveKind::TarXz)
    } else if name.ends_with(".tar") {
        Some(ArchiveKind::Tar)
    } else {
        None
    }
}

struct FoundInArchive {
    /// The Makefile's name in the archive, for messages.
    makefile_name: String,
    makefile: Vec<u8>,
    khugepaged: Vec<u8>,
}

fn read_archive(path: &Path, kind: ArchiveKind) -> Result<FoundInArchive, SourceError> {
    let file = File::open(path).map_err(|e| io_err(path, e))?;
    match kind {
        ArchiveKind::Tar => scan_tar(path, BufReader::new(file)),
        ArchiveKind::TarXz => {
            let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
            let workers = u32::try_from(workers).unwrap_or(u32::MAX);
            // The multi-threaded reader seeks to the xz index at the end
            // to find the blocks it decodes in parallel.
            let xz = lzma_rust2::XzReaderMt::new(BufReader::new(file), true, workers).map_err(|e| io_err(path, e))?;
            scan_tar(path, xz)
        }
    }
}

/// A tree's top directory inside an archive: `""` for a tree at the root,
/// else `"linux-source-6.12/"`, when `name` is that tree's `rel` file.
/// Only the root and one directory level are looked at, so that
/// `tools/testing/selftests/mm/khugepaged.c` is not taken for a tree.
fn tree_prefix<'a>(name: &'a str, rel: &str) -> Option<&'a str> {
    let prefix = name.strip_suffix(rel)?;
    if prefix.is_empty() {
        return Some(prefix);
    }
    let dir = prefix.strip_suffix('/')?;
    (!dir.is_empty() && !dir.contains('/')).then_some(prefix)
}

/// Reads the archive's entries until both `P/mm/khugepaged.c` and
/// `P/Makefile` of one tree `P` are found, `P/Makefile` holding a kernel
/// version. Makefiles seen before their tree's `mm/khugepaged.c` are kept
/// in memory (only those at the root or one level down: a few dozen small
/// files at most).
fn scan_tar<R: Read>(path: &Path, reader: R) -> Result<FoundInArchive, SourceError> {
    let mut archive = tar::Archive::new(reader);
    let mut makefiles: Vec<(String, Vec<u8>)> = Vec::new();
    let mut khugepaged: Option<(String, Vec<u8>)> = None;
    let entries = archive.entries().map_err(|e| io_err(path, e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| io_err(path, e))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = {
            let raw = entry.path().map_err(|e| io_err(path, e))?;
            let Some(s) = raw.to_str() else { continue };
            s.trim_start_matches("./").to_owned()
        };
        let is_makefile = tree_prefix(&name, "Makefile").is_some();
        let is_khugepaged = khugepaged.is_none() && tree_prefix(&name, KHUGEPAGED_C).is_some();
        if !is_makefile && !is_khugepaged {
            continue;
        }
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).map_err(|e| io_err(path, e))?;
        if is_makefile {
            makefiles.push((name, bytes));
        } else {
            khugepaged = Some((name, bytes));
        }
        if let Some(found) = match_tree(&khugepaged, &makefiles, true) {
            return Ok(found);
        }
    }
    // The end of the archive without a tree whose Makefile holds a
    // version: say what is missing.
    if let Some(found) = match_tree(&khugepaged, &makefiles, false) {
        return Ok(found);
    }
    let missing = match &khugepaged {
        None => format!("{KHUGEPAGED_C} (at the archive's root or under one top directory)"),
        Some((name, _)) => {
            format!(
                "{}Makefile, the top-level Makefile of the tree holding {name},",
                tree_prefix(name, KHUGEPAGED_C).unwrap_or("")
            )
        }
    };
    Err(SourceError::NotKernelTree { path: path.to_owned(), missing: format!("{missing} in the archive") })
}

/// The tree of the `mm/khugepaged.c` found, if its Makefile was found too;
/// with `need_version`, only if that Makefile states a kernel version.
fn match_tree(
    khugepaged: &Option<(String, Vec<u8>)>,
    makefiles: &[(String, Vec<u8>)],
    need_version: bool,
) -> Option<FoundInArchive> {
    let (kname, kbytes) = khugepaged.as_ref()?;
    let prefix = tree_prefix(kname, KHUGEPAGED_C)?;
    let (mname, mbytes) = makefiles.iter().find(|(m, _)| tree_prefix(m, "Makefile") == Some(prefix))?;
    if need_version && KernelVersion::from_makefile(&String::from_utf8_lossy(mbytes)).is_none() {
        return None;
    }
    Some(FoundInArchive { makefile_name: mname.clone(), makefile: mbytes.clone(), khugepaged: kbytes.clone() })
}

/// One tarball's place in the cache: `<cache>/kernel-source-<hex>/`, with
/// the files `Makefile` and `khugepaged.c`.
struct CacheEntry {
    dir: PathBuf,
}

/// Bumped when what is cached, or how, changes.
const CACHE_FORMAT: u32 = 1;

impl CacheEntry {
    fn locate(cache_dir: &Path, canonical: &Path, meta: &fs::Metadata) -> Option<CacheEntry> {
        let mtime = meta.modified().ok()?.duration_since(UNIX_EPOCH).ok()?;
        let mut key = Vec::new();
        key.extend_from_slice(&CACHE_FORMAT.to_le_bytes());
        key.extend_from_slice(canonical.as_os_str().as_encoded_bytes());
        key.push(0);
        key.extend_from_slice(&meta.len().to_le_bytes());
        key.extend_from_slice(&mtime.as_secs().to_le_bytes());
        key.extend_from_slice(&mtime.subsec_nanos().to_le_bytes());
        // FNV-1a: stable across Rust releases, unlike std's DefaultHasher.
        let hash =
            key.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3));
        Some(CacheEntry { dir: cache_dir.join(format!("kernel-source-{hash:016x}")) })
    }

    /// Both files, or `None` for a miss (or anything unreadable).
    fn read(&self) -> Option<(String, String)> {
        let makefile = fs::read_to_string(self.dir.join("Makefile")).ok()?;
        let khugepaged = fs::read_to_string(self.dir.join("khugepaged.c")).ok()?;
        Some((makefile, khugepaged))
    }

    /// Writes both files, each to a temporary file in the entry's directory
    /// renamed over its name when whole; `Makefile` last, so that a reader
    /// that finds it finds a complete `khugepaged.c` too. Failures are
    /// ignored: the next [`open`] reads the tarball again.
    fn write(&self, makefile: &[u8], khugepaged: &str) {
        let write_one = |name: &str, bytes: &[u8]| -> io::Result<()> {
            let mut tmp = tempfile::NamedTempFile::new_in(&self.dir)?;
            tmp.write_all(bytes)?;
            tmp.as_file().sync_all()?;
            tmp.persist(self.dir.join(name)).map_err(|e| e.error)?;
            Ok(())
        };
        let _ = fs::create_dir_all(&self.dir)
            .and_then(|()| write_one("khugepaged.c", khugepaged.as_bytes()))
            .and_then(|()| write_one("Makefile", makefile));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn makefile(version: &str, patchlevel: &str, sublevel: &str, extra: &str) -> String {
        format!(
            "# comment\nVERSION = {version}\nPATCHLEVEL = {patchlevel}\nSUBLEVEL = {sublevel}\nEXTRAVERSION ={extra}\nNAME = Test\n\nall:\n\t@echo VERSION = 9\n"
        )
    }

    const KHUGEPAGED: &str = "/* synthetic */\nint collapse(void)\n{\n\treturn 0;\n}\n";

    #[test]
    fn version_parses_and_displays() {
        let v = KernelVersion::from_makefile(&makefile("6", "12", "118", "")).unwrap();
        assert_eq!(v, KernelVersion { version: 6, patchlevel: 12, sublevel: 118, extraversion: String::new() });
        assert_eq!(v.to_string(), "6.12.118");
        let rc = KernelVersion::from_makefile(&makefile("6", "12", "0", " -rc1")).unwrap();
        assert_eq!(rc.extraversion, "-rc1");
        assert_eq!(rc.to_string(), "6.12.0-rc1");
    }

    #[test]
    fn version_without_extraversion_line_and_with_tabs() {
        let v = KernelVersion::from_makefile("VERSION\t= 5\nPATCHLEVEL =4\nSUBLEVEL= 0\n").unwrap();
        assert_eq!(v.to_string(), "5.4.0");
    }

    #[test]
    fn version_missing_or_bad() {
        assert_eq!(KernelVersion::from_makefile("VERSION = 6\nPATCHLEVEL = 12\n"), None);
        assert_eq!(KernelVersion::from_makefile(&makefile("6", "x", "1", "")), None);
        assert_eq!(KernelVersion::from_makefile(""), None);
    }

    #[test]
    fn cache_dir_from_environment() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| pairs.iter().find(|(n, _)| *n == name).map(|(_, v)| OsString::from(v))
        };
        assert_eq!(
            cache_dir_from(env(&[("COLLAPSE_BENCH_CACHE", "/c"), ("XDG_CACHE_HOME", "/x"), ("HOME", "/h")])),
            Some(PathBuf::from("/c"))
        );
        assert_eq!(
            cache_dir_from(env(&[("COLLAPSE_BENCH_CACHE", ""), ("XDG_CACHE_HOME", "/x"), ("HOME", "/h")])),
            Some(PathBuf::from("/x/collapse-bench"))
        );
        assert_eq!(
            cache_dir_from(env(&[("XDG_CACHE_HOME", "relative"), ("HOME", "/h")])),
            Some(PathBuf::from("/h/.cache/collapse-bench"))
        );
        assert_eq!(cache_dir_from(env(&[])), None);
    }

    fn write_tree(dir: &Path, with_makefile: bool, with_khugepaged: bool) {
        if with_makefile {
            fs::write(dir.join("Makefile"), makefile("6", "1", "158", "")).unwrap();
        }
        if with_khugepaged {
            fs::create_dir_all(dir.join("mm")).unwrap();
            fs::write(dir.join("mm/khugepaged.c"), KHUGEPAGED).unwrap();
        }
    }

    #[test]
    fn tree_directory() {
        let tmp = tempfile::tempdir().unwrap();
        write_tree(tmp.path(), true, true);
        let tree = open_uncached(tmp.path()).unwrap();
        assert_eq!(tree.version.to_string(), "6.1.158");
        assert_eq!(tree.khugepaged_c, KHUGEPAGED);
        assert_eq!(tree.origin, fs::canonicalize(tmp.path()).unwrap());
    }

    #[test]
    fn tree_directory_missing_files() {
        let tmp = tempfile::tempdir().unwrap();
        write_tree(tmp.path(), true, false);
        let err = open_uncached(tmp.path()).unwrap_err();
        assert!(matches!(&err, SourceError::NotKernelTree { missing, .. } if missing == "mm/khugepaged.c"), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!(
                "--kernel-source {}: not a kernel tree: mm/khugepaged.c not found",
                tmp.path().display()
            )),
            "{msg}"
        );
        assert!(msg.contains("/usr/src/linux-source-X.Y.tar.xz"), "{msg}");

        let tmp = tempfile::tempdir().unwrap();
        write_tree(tmp.path(), false, true);
        let err = open_uncached(tmp.path()).unwrap_err();
        assert!(matches!(&err, SourceError::NotKernelTree { missing, .. } if missing == "Makefile"), "{err:?}");
    }

    #[test]
    fn tree_directory_without_version() {
        let tmp = tempfile::tempdir().unwrap();
        write_tree(tmp.path(), false, true);
        fs::write(tmp.path().join("Makefile"), "all:\n\ttrue\n").unwrap();
        let err = open_uncached(tmp.path()).unwrap_err();
        assert!(matches!(&err, SourceError::NoVersion { makefile, .. } if makefile == "Makefile"), "{err:?}");
        assert!(err.to_string().contains("has no VERSION, PATCHLEVEL and SUBLEVEL lines"));
    }

    #[test]
    fn missing_path_and_unsupported_type() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("nope.tar.xz");
        let err = open(&missing).unwrap_err();
        assert!(matches!(&err, SourceError::Missing { path } if *path == missing), "{err:?}");
        assert!(err
            .to_string()
            .starts_with(&format!("--kernel-source {}: no such file or directory", missing.display())));

        let zip = tmp.path().join("linux.tar.gz");
        fs::write(&zip, b"not really").unwrap();
        let err = open(&zip).unwrap_err();
        assert!(matches!(err, SourceError::UnsupportedArchive { .. }), "{err:?}");
        assert!(err.to_string().contains(".tar.xz, .txz or .tar"), "{err}");
    }

    /// A tar of `files` (name, contents), in that order.
    fn tar_bytes(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, data) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_entry_type(tar::EntryType::Regular);
            builder.append_data(&mut header, name, *data).unwrap();
        }
        builder.into_inner().unwrap()
    }

    fn xz_bytes(data: &[u8]) -> Vec<u8> {
        let mut w = lzma_rust2::XzWriter::new(Vec::new(), lzma_rust2::XzOptions::with_preset(1)).unwrap();
        w.write_all(data).unwrap();
        w.finish().unwrap()
    }

    fn standard_tar(top: &str) -> Vec<u8> {
        let mk = makefile("6", "12", "7", "-test");
        let other_mk = b"obj-y += khugepaged.o\n".to_vec();
        tar_bytes(&[
            (&format!("{top}tools/Makefile"), b"all:\n"),
            (&format!("{top}tools/testing/selftests/mm/khugepaged.c"), b"int main(void) { return 1; }\n"),
            (&format!("{top}Makefile"), mk.as_bytes()),
            (&format!("{top}mm/Makefile"), &other_mk),
            (&format!("{top}mm/khugepaged.c"), KHUGEPAGED.as_bytes()),
        ])
    }

    #[test]
    fn tar_with_top_directory_and_at_root() {
        let tmp = tempfile::tempdir().unwrap();
        for (i, top) in ["linux-source-6.12/", "", "./"].iter().enumerate() {
            let path = tmp.path().join(format!("t{i}.tar"));
            fs::write(&path, standard_tar(top)).unwrap();
            let tree = open_uncached(&path).unwrap();
            assert_eq!(tree.version.to_string(), "6.12.7-test", "{top}");
            assert_eq!(tree.khugepaged_c, KHUGEPAGED, "{top}");
        }
    }

    #[test]
    fn tar_xz() {
        let tmp = tempfile::tempdir().unwrap();
        for name in ["linux.tar.xz", "linux.txz"] {
            let path = tmp.path().join(name);
            fs::write(&path, xz_bytes(&standard_tar("linux-6.12/"))).unwrap();
            let tree = open_uncached(&path).unwrap();
            assert_eq!(tree.version.to_string(), "6.12.7-test");
            assert_eq!(tree.khugepaged_c, KHUGEPAGED);
        }
    }

    #[test]
    fn tar_stops_reading_once_both_files_are_found() {
        // Garbage after the two files: reading on would fail.
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("linux.tar");
        let mut bytes = tar_bytes(&[
            ("l/Makefile", makefile("6", "1", "2", "").as_bytes()),
            ("l/mm/khugepaged.c", KHUGEPAGED.as_bytes()),
        ]);
        bytes.truncate(bytes.len() - 1024); // the end-of-archive blocks
        bytes.extend_from_slice(&[0x5a; 512]);
        fs::write(&path, bytes).unwrap();
        assert_eq!(open_uncached(&path).unwrap().version.to_string(), "6.1.2");
    }

    #[test]
    fn tar_not_a_kernel_tree() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("a.tar");
        fs::write(&path, tar_bytes(&[("x/Makefile", makefile("6", "1", "2", "").as_bytes())])).unwrap();
        let err = open_uncached(&path).unwrap_err();
        assert!(
            matches!(&err, SourceError::NotKernelTree { missing, .. }
                if missing == "mm/khugepaged.c (at the archive's root or under one top directory) in the archive"),
            "{err:?}"
        );

        fs::write(&path, tar_bytes(&[("x/mm/khugepaged.c", b"int x;\n"), ("y/Makefile", b"VERSION = 1\n")])).unwrap();
        let err = open_uncached(&path).unwrap_err();
        assert!(
            matches!(&err, SourceError::NotKernelTree { missing, .. }
                if missing == "x/Makefile, the top-level Makefile of the tree holding x/mm/khugepaged.c, in the archive"),
            "{err:?}"
        );

        fs::write(&path, tar_bytes(&[("x/mm/khugepaged.c", b"int x;\n"), ("x/Makefile", b"all:\n")])).unwrap();
        let err = open_uncached(&path).unwrap_err();
        assert!(matches!(&err, SourceError::NoVersion { makefile, .. } if makefile == "x/Makefile"), "{err:?}");
    }

    #[test]
    fn corrupt_archives_are_io_errors_naming_the_path() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("bad.tar.xz");
        fs::write(&path, b"this is not xz data at all, not even close").unwrap();
        let err = open_uncached(&path).unwrap_err();
        assert!(matches!(&err, SourceError::Io { path: p, .. } if *p == path), "{err:?}");
        assert!(err.to_string().starts_with(&format!("--kernel-source {}: ", path.display())));

        // A truncated xz stream.
        let full = xz_bytes(&standard_tar("l/"));
        fs::write(&path, &full[..full.len() / 2]).unwrap();
        assert!(matches!(open_uncached(&path), Err(SourceError::Io { .. })));
    }

    #[test]
    fn cache_hit_does_not_read_the_tarball() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = tmp.path().join("cache");
        let path = tmp.path().join("linux.tar.xz");
        let bytes = xz_bytes(&standard_tar("linux/"));
        fs::write(&path, &bytes).unwrap();
        let mtime = fs::metadata(&path).unwrap().modified().unwrap();

        let first = open_with_cache(&path, Some(&cache)).unwrap();
        let entries: Vec<_> = fs::read_dir(&cache).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(entries.len(), 1);
        let name = entries[0].to_str().unwrap();
        assert!(name.starts_with("kernel-source-") && name.len() == "kernel-source-".len() + 16, "{name}");

        // Same size and modification time, contents garbage: only a read
        // from the cache can succeed.
        fs::write(&path, vec![0x5a; bytes.len()]).unwrap();
        File::options().write(true).open(&path).unwrap().set_modified(mtime).unwrap();
        assert!(matches!(open_uncached(&path), Err(SourceError::Io { .. })));
        let cached = open_with_cache(&path, Some(&cache)).unwrap();
        assert_eq!(cached, first);

        // Another modification time: a different key, so the garbage is read.
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(mtime + std::time::Duration::from_secs(1))
            .unwrap();
        assert!(matches!(open_with_cache(&path, Some(&cache)), Err(SourceError::Io { .. })));
    }

    #[test]
    fn unusable_cache_directory_means_no_cache() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("linux.tar");
        fs::write(&path, standard_tar("")).unwrap();
        // A file where the cache directory should be: nothing can be made
        // under it.
        let blocker = tmp.path().join("blocker");
        fs::write(&blocker, b"").unwrap();
        let tree = open_with_cache(&path, Some(&blocker.join("cache"))).unwrap();
        assert_eq!(tree.version.to_string(), "6.12.7-test");
    }

    #[test]
    fn damaged_cache_entry_is_a_miss() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = tmp.path().join("cache");
        let path = tmp.path().join("linux.tar");
        fs::write(&path, standard_tar("")).unwrap();
        let first = open_with_cache(&path, Some(&cache)).unwrap();
        let entry = fs::read_dir(&cache).unwrap().next().unwrap().unwrap().path();
        fs::write(entry.join("Makefile"), "garbage\n").unwrap();
        assert_eq!(open_with_cache(&path, Some(&cache)).unwrap(), first);
        // Rewritten on that read.
        assert!(fs::read_to_string(entry.join("Makefile")).unwrap().contains("VERSION = 6"));
    }
}
