//! Writing the site atomically: render into a fresh directory next to the
//! target, then swap the two in one `renameat2(RENAME_EXCHANGE)` (Linux), so
//! a web server sees either the whole old site or the whole new one. Where
//! the file system cannot exchange, the old site is renamed aside and the new
//! one into place: two renames, a moment without a site, never a half one.
//!
//! Only what changed is written. The site is rewritten after every cycle
//! (every 15 minutes or so) but between two evals most of its 11,000 pages
//! come out byte for byte the same, so each new page is compared with the
//! live site's file of that name: a site whose every file is the same (and
//! nothing else in it) is left alone (nothing written, no swap); otherwise
//! the staging directory gets a hard link to each live file whose bytes are
//! the same (compared through the link, so that a page another writer
//! swapped in meanwhile is never kept by mistake) and a new file only for
//! the others, and is swapped in as before. Comparing with the live site
//! itself, rather than with a fingerprint of the inputs kept beside it,
//! needs no state that could
//! disagree with the site (after a crash, a hand edit, a lost file: what
//! differs is written), and sees every change whatever caused it (the
//! pages depend on the moment through the plan, to the second). A live
//! file is only ever replaced, never changed in place, so sharing its inode
//! is safe, and a page kept keeps its modification time (web caches keep
//! it too).

use std::collections::HashMap;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Component, Path, PathBuf};

use super::SiteError;
use super::names::is_safe_file_name;

/// A file marking a directory as a site this program wrote; only such a
/// directory (or an empty one) is ever replaced.
pub const MARKER: &str = ".hydra-sentinel-site";

/// The folders pages may go in, besides the top.
const FOLDERS: [&str; 2] = ["packages", "maintainers"];

/// A file of the site: a path relative to its top, and its bytes.
#[derive(Debug, Clone)]
pub struct SiteFile {
    pub path: String,
    pub bytes: Vec<u8>,
}

fn io(path: &Path, what: &'static str) -> impl FnOnce(std::io::Error) -> SiteError {
    let path = path.to_owned();
    move |source| SiteError::Io { path, what, source }
}

/// `path` as components that stay inside the site: `name` or
/// `folder/name`, with a known folder and a safe name.
fn checked(path: &str) -> Result<PathBuf, SiteError> {
    let unsafe_path = || SiteError::UnsafePath(path.to_owned());
    let parts: Vec<&str> = Path::new(path)
        .components()
        .map(|c| match c {
            Component::Normal(p) => p.to_str().ok_or_else(unsafe_path),
            _ => Err(unsafe_path()),
        })
        .collect::<Result<_, _>>()?;
    match parts.as_slice() {
        [name] if is_safe_file_name(name) => Ok(PathBuf::from(name)),
        [folder, name] if FOLDERS.contains(folder) && is_safe_file_name(name) => {
            Ok(Path::new(folder).join(name))
        }
        _ => Err(unsafe_path()),
    }
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), SiteError> {
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(io(path, "creating a page"))?;
    out.write_all(bytes).map_err(io(path, "writing a page"))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))
        .map_err(io(path, "setting permissions"))
}

/// Whether `dir` may be replaced: absent, empty, or marked as ours.
fn replaceable(dir: &Path) -> Result<bool, SiteError> {
    match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io(dir, "inspecting the output directory")(e)),
        Ok(meta) if !meta.is_dir() => Err(SiteError::NotOurs(dir.to_owned())),
        Ok(_) => {
            let empty = std::fs::read_dir(dir)
                .map_err(io(dir, "reading the output directory"))?
                .next()
                .is_none();
            if empty || dir.join(MARKER).is_file() {
                Ok(true)
            } else {
                Err(SiteError::NotOurs(dir.to_owned()))
            }
        }
    }
}

/// What a write did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// Files written, new or changed, and their bytes.
    pub written: usize,
    pub bytes: u64,
    /// Files kept as they were (hard links to the live site's).
    pub kept: usize,
    /// Whether a new site was put in place (not when every file was the same).
    pub replaced: bool,
}

/// The live site's files that can be reused, by path relative to its top:
/// regular files (not links) of mode 0644 in the site's own folders, with
/// their sizes.
struct Live {
    files: HashMap<String, u64>,
    /// Nothing else is in the site: the marker, the folders (0755) and
    /// those files only.
    tidy: bool,
}

impl Live {
    /// What `dir`, known to be replaceable, holds.
    fn read(dir: &Path) -> Result<Live, SiteError> {
        let mut live = Live {
            files: HashMap::new(),
            tidy: true,
        };
        let is_site_folder =
            |meta: &std::fs::Metadata| meta.is_dir() && meta.permissions().mode() & 0o7777 == 0o755;
        match std::fs::symlink_metadata(dir) {
            Ok(meta) => live.tidy = is_site_folder(&meta),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                live.tidy = false;
                return Ok(live);
            }
            Err(e) => return Err(io(dir, "inspecting the output directory")(e)),
        }
        let mut marker = false;
        for entry in std::fs::read_dir(dir).map_err(io(dir, "reading the output directory"))? {
            let entry = entry.map_err(io(dir, "reading the output directory"))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let meta = entry
                .metadata()
                .map_err(io(&entry.path(), "inspecting the site"))?;
            if FOLDERS.contains(&name.as_str()) && is_site_folder(&meta) {
                live.read_folder(&entry.path(), &name)?;
            } else if name == MARKER && meta.is_file() && meta.len() == 0 {
                marker = true;
            } else if !live.add(name, &meta) {
                live.tidy = false;
            }
        }
        live.tidy &= marker;
        Ok(live)
    }

    fn read_folder(&mut self, path: &Path, folder: &str) -> Result<(), SiteError> {
        for entry in std::fs::read_dir(path).map_err(io(path, "reading the site"))? {
            let entry = entry.map_err(io(path, "reading the site"))?;
            let name = format!("{folder}/{}", entry.file_name().to_string_lossy());
            let meta = entry
                .metadata()
                .map_err(io(&entry.path(), "inspecting the site"))?;
            if !self.add(name, &meta) {
                self.tidy = false;
            }
        }
        Ok(())
    }

    /// Count a page that can be reused; false for anything else.
    fn add(&mut self, path: String, meta: &std::fs::Metadata) -> bool {
        // `DirEntry::metadata` does not follow links: a link is not a file.
        let reusable = meta.is_file() && meta.permissions().mode() & 0o7777 == 0o644;
        if reusable {
            self.files.insert(path, meta.len());
        }
        reusable
    }

    /// Whether the live file at `path` (checked) holds exactly `bytes`.
    fn holds(&self, dir: &Path, path: &str, relative: &Path, bytes: &[u8]) -> bool {
        self.files.get(path) == Some(&(bytes.len() as u64))
            && std::fs::File::open(dir.join(relative)).is_ok_and(|file| same_bytes(file, bytes))
    }
}

/// Link the live file `live` as `staged` if it holds exactly `bytes`; false
/// (and nothing at `staged`) otherwise. The bytes are compared through the
/// link, so the file kept is the very file compared: another writer (a
/// `report` run by hand beside the service) may swap its own site in at any
/// moment, and a page of its render must not slip into this one. A link can
/// also fail where writing would not (a file system without hard links, a
/// live file removed meanwhile).
fn link_if_same(live: &Path, staged: &Path, bytes: &[u8]) -> bool {
    if std::fs::hard_link(live, staged).is_err() {
        return false;
    }
    let same = std::fs::symlink_metadata(staged)
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o7777 == 0o644)
        && std::fs::File::open(staged).is_ok_and(|file| same_bytes(file, bytes));
    if !same {
        let _ = std::fs::remove_file(staged);
    }
    same
}

/// Whether `file` holds exactly `bytes`, read in pieces up to the first
/// difference: after a new eval most pages differ in their header already.
fn same_bytes(mut file: std::fs::File, bytes: &[u8]) -> bool {
    use std::io::Read as _;
    let mut buffer = [0; 16 * 1024];
    let mut rest = bytes;
    loop {
        match file.read(&mut buffer) {
            Ok(0) => return rest.is_empty(),
            Ok(n) if n <= rest.len() && buffer[..n] == rest[..n] => rest = &rest[n..],
            Ok(_) => return false,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
}

/// Write `files` as the whole content of `dir`, replacing what was there,
/// writing only the files whose bytes changed (see the module's comment).
/// Nothing is written outside `dir` except the temporary folders beside it
/// (`.NAME.new-*`), which are gone when this returns.
pub fn write_site(dir: &Path, files: &[SiteFile]) -> Result<WriteStats, SiteError> {
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|_| !matches!(dir.components().next_back(), Some(Component::ParentDir)))
        .ok_or_else(|| SiteError::BadDirectory(dir.to_owned()))?;
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let exists = replaceable(dir)?;
    let relative: Vec<PathBuf> = files
        .iter()
        .map(|f| checked(&f.path))
        .collect::<Result<_, _>>()?;
    let live = if exists {
        Live::read(dir)?
    } else {
        Live {
            files: HashMap::new(),
            tidy: false,
        }
    };
    let mut stats = WriteStats::default();
    if live.tidy
        && live.files.len() == files.len()
        && files
            .iter()
            .zip(&relative)
            .all(|(f, r)| live.holds(dir, &f.path, r, &f.bytes))
    {
        stats.kept = files.len();
        return Ok(stats);
    }

    std::fs::create_dir_all(&parent).map_err(io(&parent, "creating the parent directory"))?;
    remove_leftovers(&parent, name);
    let staging = tempfile::Builder::new()
        .prefix(&format!(".{name}.new-"))
        .tempdir_in(&parent)
        .map_err(io(&parent, "creating a staging directory"))?;
    let top = staging.path();
    // The site is public: readable by a web server whatever the umask
    // (the units set 0077).
    let dir_mode = std::fs::Permissions::from_mode(0o755);
    for folder in FOLDERS {
        let path = top.join(folder);
        std::fs::create_dir(&path).map_err(io(&path, "creating a folder"))?;
        std::fs::set_permissions(&path, dir_mode.clone())
            .map_err(io(&path, "setting permissions"))?;
    }
    for (file, relative) in files.iter().zip(&relative) {
        let path = top.join(relative);
        // Most pages that changed differ in their first lines already (the
        // eval they are from): read the live file up to there, and link and
        // compare again only a page that looks the same.
        if live.holds(dir, &file.path, relative, &file.bytes)
            && link_if_same(&dir.join(relative), &path, &file.bytes)
        {
            stats.kept += 1;
        } else {
            write_file(&path, &file.bytes)?;
            stats.written += 1;
            stats.bytes += file.bytes.len() as u64;
        }
    }
    write_file(&top.join(MARKER), b"")?;
    std::fs::set_permissions(top, dir_mode).map_err(io(top, "setting permissions"))?;
    stats.replaced = true;

    if !exists {
        let top = staging.keep();
        return std::fs::rename(&top, dir).map(|()| stats).map_err(|e| {
            let _ = std::fs::remove_dir_all(&top);
            io(dir, "moving the new site into place")(e)
        });
    }
    match rustix::fs::renameat_with(
        rustix::fs::CWD,
        top,
        rustix::fs::CWD,
        dir,
        rustix::fs::RenameFlags::EXCHANGE,
    ) {
        // The staging directory now holds the old site; dropping it removes it.
        Ok(()) => Ok(stats),
        Err(e)
            if e == rustix::io::Errno::INVAL
                || e == rustix::io::Errno::NOSYS
                || e == rustix::io::Errno::OPNOTSUPP =>
        {
            swap_by_renames(dir, &parent, name, staging).map(|()| stats)
        }
        Err(e) => Err(io(dir, "swapping in the new site")(e.into())),
    }
}

/// How old a staging or set-aside folder must be to count as left behind
/// by a killed writer: a write takes seconds.
const LEFTOVER_AGE: std::time::Duration = std::time::Duration::from_secs(3600);

/// Remove the folders a killed writer left beside the site (`.NAME.new-*`,
/// `.NAME.old-*`, as `tempfile` names them: six more letters or digits)
/// once they are [`LEFTOVER_AGE`] old; a younger one may be another
/// writer's at work. They never spoil a site (each write stages in a fresh
/// folder), but a site's worth of disk each.
fn remove_leftovers(parent: &Path, name: &str) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    let prefixes = [format!(".{name}.new-"), format!(".{name}.old-")];
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(suffix) = file_name
            .to_str()
            .and_then(|n| prefixes.iter().find_map(|p| n.strip_prefix(p.as_str())))
        else {
            continue;
        };
        if suffix.len() != 6 || !suffix.chars().all(|c| c.is_ascii_alphanumeric()) {
            continue;
        }
        // Not followed if it is a link: only a real folder is removed.
        let Ok(meta) = entry.metadata() else {
            continue;
        };
        let abandoned = meta
            .modified()
            .ok()
            .and_then(|m| m.elapsed().ok())
            .is_some_and(|age| age >= LEFTOVER_AGE);
        if meta.is_dir() && abandoned {
            match std::fs::remove_dir_all(entry.path()) {
                Ok(()) => {
                    tracing::info!(path = %entry.path().display(), "removed a folder an interrupted site write left")
                }
                Err(e) => {
                    tracing::warn!(path = %entry.path().display(), error = %e, "cannot remove a folder an interrupted site write left")
                }
            }
        }
    }
}

/// Without an atomic exchange: old site aside, new one in, old one removed.
fn swap_by_renames(
    dir: &Path,
    parent: &Path,
    name: &str,
    staging: tempfile::TempDir,
) -> Result<(), SiteError> {
    let aside = tempfile::Builder::new()
        .prefix(&format!(".{name}.old-"))
        .tempdir_in(parent)
        .map_err(io(parent, "creating a directory for the old site"))?;
    let old = aside.path().join("site");
    std::fs::rename(dir, &old).map_err(io(dir, "moving the old site aside"))?;
    if let Err(e) = std::fs::rename(staging.path(), dir) {
        if std::fs::rename(&old, dir).is_ok() {
            return Err(io(dir, "moving the new site into place")(e));
        }
        // Neither site is in place: keep both rather than remove them with
        // their folders; the next write puts a site in place and removes
        // them once an hour old (`remove_leftovers`).
        let (old, new) = (aside.keep(), staging.keep());
        tracing::error!(old = %old.display(), new = %new.display(), "neither the new site nor the old one could be put in place; both are kept beside it");
        return Err(io(
            dir,
            "moving the new site into place (nor could the old one be put back: both are kept beside it)",
        )(e));
    }
    drop(staging);
    drop(aside);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(path: &str, text: &str) -> SiteFile {
        SiteFile {
            path: path.into(),
            bytes: text.as_bytes().to_vec(),
        }
    }

    fn siblings(parent: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(parent)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_live_page_is_kept_only_if_the_very_file_linked_holds_the_new_bytes() {
        use std::os::unix::fs::MetadataExt as _;
        let tmp = tempfile::tempdir().unwrap();
        let live = |name: &str, text: &str, mode: u32| {
            let path = tmp.path().join(name);
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            path
        };
        let staged = |name: &str| tmp.path().join(format!("staged-{name}"));

        let same = live("same.html", "new bytes", 0o644);
        assert!(link_if_same(&same, &staged("same"), b"new bytes"));
        assert_eq!(
            std::fs::metadata(staged("same")).unwrap().ino(),
            std::fs::metadata(&same).unwrap().ino(),
            "the live file is shared, not copied"
        );

        // What another writer swapped in after the live site was read: the
        // same size, other bytes.
        let other = live("other.html", "old bytes", 0o644);
        assert!(!link_if_same(&other, &staged("other"), b"new bytes"));
        assert!(!staged("other").exists(), "no link is left behind");

        let edited = live("edited.html", "new bytes", 0o600);
        assert!(!link_if_same(&edited, &staged("edited"), b"new bytes"));
        assert!(
            !staged("edited").exists(),
            "a page made private is not shared"
        );

        let gone = tmp.path().join("gone.html");
        assert!(!link_if_same(&gone, &staged("gone"), b"new bytes"));
    }

    #[test]
    fn a_site_is_written_then_replaced_whole_leaving_nothing_beside_it() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("site");
        write_site(
            &dir,
            &[page("index.html", "one"), page("packages/a-1.html", "a")],
        )
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join("index.html")).unwrap(),
            "one"
        );
        write_site(&dir, &[page("index.html", "two")]).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join("index.html")).unwrap(),
            "two"
        );
        assert!(!dir.join("packages/a-1.html").exists(), "old pages go");
        assert!(dir.join(MARKER).is_file());
        assert_eq!(siblings(tmp.path()), vec!["site"]);
        let mode = std::fs::metadata(dir.join("index.html"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o644);
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o755);
    }

    /// Every file of a site by path: its inode and bytes.
    fn files_of(dir: &Path) -> std::collections::BTreeMap<String, (u64, Vec<u8>)> {
        use std::os::unix::fs::MetadataExt as _;
        let mut files = std::collections::BTreeMap::new();
        for folder in ["", "packages", "maintainers"] {
            for entry in std::fs::read_dir(dir.join(folder)).unwrap() {
                let entry = entry.unwrap();
                let meta = entry.metadata().unwrap();
                if !meta.is_dir() {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    let path = if folder.is_empty() {
                        name
                    } else {
                        format!("{folder}/{name}")
                    };
                    files.insert(path, (meta.ino(), std::fs::read(entry.path()).unwrap()));
                }
            }
        }
        files
    }

    fn inode(path: &Path) -> u64 {
        use std::os::unix::fs::MetadataExt as _;
        std::fs::symlink_metadata(path).unwrap().ino()
    }

    fn three_pages() -> Vec<SiteFile> {
        vec![
            page("index.html", "index"),
            page("packages/a-1.html", "a"),
            page("packages/b-2.html", "b"),
            page("maintainers/m-3.html", "m"),
        ]
    }

    #[test]
    fn a_site_written_again_with_the_same_pages_is_left_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("site");
        let first = write_site(&dir, &three_pages()).unwrap();
        assert_eq!((first.written, first.kept, first.replaced), (4, 0, true));
        assert_eq!(first.bytes, 8);
        let before = files_of(&dir);
        let top = inode(&dir);
        let again = write_site(&dir, &three_pages()).unwrap();
        assert_eq!(
            again,
            WriteStats {
                written: 0,
                bytes: 0,
                kept: 4,
                replaced: false
            }
        );
        assert_eq!(files_of(&dir), before, "no file was replaced");
        assert_eq!(inode(&dir), top, "the site was not swapped");
        assert_eq!(siblings(tmp.path()), vec!["site"]);
    }

    #[test]
    fn only_the_pages_that_changed_are_written_and_the_others_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("site");
        write_site(&dir, &three_pages()).unwrap();
        let before = files_of(&dir);
        let top = inode(&dir);
        let next = [
            page("index.html", "index"),
            page("packages/a-1.html", "A"),
            page("packages/c-4.html", "new"),
            page("maintainers/m-3.html", "m"),
        ];
        let stats = write_site(&dir, &next).unwrap();
        assert_eq!(
            stats,
            WriteStats {
                written: 2,
                bytes: 4,
                kept: 2,
                replaced: true
            }
        );
        assert_ne!(inode(&dir), top, "a new site was swapped in");
        let after = files_of(&dir);
        let names: Vec<&str> = after.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                MARKER,
                "index.html",
                "maintainers/m-3.html",
                "packages/a-1.html",
                "packages/c-4.html"
            ],
            "the whole site, and nothing of the old one's else"
        );
        for kept in ["index.html", "maintainers/m-3.html"] {
            assert_eq!(after[kept], before[kept], "{kept} is the same file");
        }
        assert_ne!(after["packages/a-1.html"].0, before["packages/a-1.html"].0);
        assert_eq!(after["packages/a-1.html"].1, b"A");
        assert_eq!(siblings(tmp.path()), vec!["site"]);
        // The old site's files, removed with it, are not the new site's.
        let old_a = before["packages/a-1.html"].0;
        assert!(after.values().all(|(ino, _)| *ino != old_a));
    }

    #[test]
    fn a_change_at_the_end_of_a_long_page_is_seen() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("site");
        let long = |last: &str| page("index.html", &("x".repeat(100_000) + last));
        write_site(&dir, &[long("a")]).unwrap();
        let same = write_site(&dir, &[long("a")]).unwrap();
        assert_eq!((same.written, same.replaced), (0, false));
        let changed = write_site(&dir, &[long("b")]).unwrap();
        assert_eq!((changed.written, changed.bytes), (1, 100_001));
        assert!(
            std::fs::read_to_string(dir.join("index.html"))
                .unwrap()
                .ends_with('b')
        );
    }

    #[test]
    fn a_damaged_site_is_repaired_by_the_next_write() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("site");
        write_site(&dir, &three_pages()).unwrap();
        // A file changed in place (same size), one lost, one loosened, one
        // added by hand, one page replaced by a link to the same bytes
        // elsewhere.
        std::fs::write(dir.join("index.html"), "INDEX").unwrap();
        std::fs::remove_file(dir.join("packages/a-1.html")).unwrap();
        std::fs::set_permissions(
            dir.join("maintainers/m-3.html"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        std::fs::write(dir.join("packages/stray.html"), "x").unwrap();
        let outside = tmp.path().join("b-elsewhere");
        std::fs::write(&outside, "b").unwrap();
        std::fs::remove_file(dir.join("packages/b-2.html")).unwrap();
        std::os::unix::fs::symlink(&outside, dir.join("packages/b-2.html")).unwrap();

        let stats = write_site(&dir, &three_pages()).unwrap();
        assert_eq!((stats.written, stats.kept), (4, 0), "{stats:?}");
        let after = files_of(&dir);
        let expected: Vec<(String, Vec<u8>)> = std::iter::once((MARKER.to_owned(), vec![]))
            .chain(three_pages().into_iter().map(|f| (f.path, f.bytes)))
            .collect::<std::collections::BTreeMap<_, _>>()
            .into_iter()
            .collect();
        let got: Vec<(String, Vec<u8>)> = after.into_iter().map(|(p, (_, b))| (p, b)).collect();
        assert_eq!(got, expected);
        let b = std::fs::symlink_metadata(dir.join("packages/b-2.html")).unwrap();
        assert!(b.is_file(), "a link in the site is replaced by a file");
        let m = std::fs::metadata(dir.join("maintainers/m-3.html")).unwrap();
        assert_eq!(m.permissions().mode() & 0o777, 0o644);
        let again = write_site(&dir, &three_pages()).unwrap();
        assert!(
            !again.replaced,
            "repaired, the site is left alone: {again:?}"
        );
    }

    #[test]
    fn folders_an_interrupted_write_left_are_removed_once_old() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("site");
        write_site(&dir, &three_pages()).unwrap();
        let leftover = |name: &str, age: u64| {
            let path = tmp.path().join(name);
            std::fs::create_dir_all(path.join("packages")).unwrap();
            std::fs::write(path.join("packages/a-1.html"), "half").unwrap();
            let when = std::time::SystemTime::now() - std::time::Duration::from_secs(age);
            std::fs::File::open(&path)
                .unwrap()
                .set_modified(when)
                .unwrap();
        };
        leftover(".site.new-Ab12Cd", 7200);
        leftover(".site.old-Zz9900", 7200);
        leftover(".site.new-Ef34Gh", 60);
        leftover(".site.new-x.new-Ab12Cd", 7200);
        leftover(".other.new-Ab12Cd", 7200);
        // A changed page, so that a write happens.
        let mut pages = three_pages();
        pages[0] = page("index.html", "changed");
        write_site(&dir, &pages).unwrap();
        assert_eq!(
            siblings(tmp.path()),
            vec![
                ".other.new-Ab12Cd",
                ".site.new-Ef34Gh",
                ".site.new-x.new-Ab12Cd",
                "site"
            ],
            "the old ones of this site's own go; a young one may be another writer's"
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("packages/a-1.html")).unwrap(),
            "a"
        );
    }

    #[test]
    fn paths_outside_the_site_are_refused_and_nothing_is_left_behind() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("site");
        for bad in [
            "../evil.html",
            "/etc/passwd",
            "packages/../../evil.html",
            "other/x.html",
            "packages/.hidden",
            "packages/x/y.html",
            "UPPER.html",
            "",
        ] {
            let err = write_site(&dir, &[page(bad, "x")]).unwrap_err();
            assert!(matches!(err, SiteError::UnsafePath(_)), "{bad:?}: {err}");
        }
        assert!(
            siblings(tmp.path()).is_empty(),
            "{:?}",
            siblings(tmp.path())
        );
    }

    #[test]
    fn a_directory_that_is_not_ours_is_never_replaced() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("home");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("thesis.tex"), "years of work").unwrap();
        let err = write_site(&dir, &[page("index.html", "x")]).unwrap_err();
        assert!(matches!(err, SiteError::NotOurs(_)), "{err}");
        assert!(dir.join("thesis.tex").exists());
        let file = tmp.path().join("file");
        std::fs::write(&file, "x").unwrap();
        assert!(matches!(
            write_site(&file, &[]).unwrap_err(),
            SiteError::NotOurs(_)
        ));
        assert!(matches!(
            write_site(Path::new("/"), &[]).unwrap_err(),
            SiteError::BadDirectory(_)
        ));
        assert!(matches!(
            write_site(&tmp.path().join(".."), &[]).unwrap_err(),
            SiteError::BadDirectory(_)
        ));
    }

    #[test]
    fn the_fallback_swap_replaces_the_site_too() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("site");
        write_site(&dir, &[page("index.html", "one")]).unwrap();
        let staging = tempfile::Builder::new()
            .prefix(".site.new-")
            .tempdir_in(tmp.path())
            .unwrap();
        std::fs::write(staging.path().join("index.html"), "two").unwrap();
        swap_by_renames(&dir, tmp.path(), "site", staging).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join("index.html")).unwrap(),
            "two"
        );
        assert_eq!(siblings(tmp.path()), vec!["site"]);
    }
}
