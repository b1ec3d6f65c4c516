//! Writing the site atomically: render into a fresh directory next to the
//! target, then swap the two in one `renameat2(RENAME_EXCHANGE)` (Linux), so
//! a web server sees either the whole old site or the whole new one. Where
//! the file system cannot exchange, the old site is renamed aside and the new
//! one into place: two renames, a moment without a site, never a half one.

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

/// Write `files` as the whole content of `dir`, replacing what was there.
/// Nothing is written outside `dir` except the temporary folders beside it
/// (`.NAME.new-*`), which are gone when this returns.
pub fn write_site(dir: &Path, files: &[SiteFile]) -> Result<(), SiteError> {
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
    std::fs::create_dir_all(&parent).map_err(io(&parent, "creating the parent directory"))?;
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
    for file in files {
        write_file(&top.join(checked(&file.path)?), &file.bytes)?;
    }
    write_file(&top.join(MARKER), b"")?;
    std::fs::set_permissions(top, dir_mode).map_err(io(top, "setting permissions"))?;

    if !exists {
        let top = staging.keep();
        return std::fs::rename(&top, dir).map_err(|e| {
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
        Ok(()) => Ok(()),
        Err(e)
            if e == rustix::io::Errno::INVAL
                || e == rustix::io::Errno::NOSYS
                || e == rustix::io::Errno::OPNOTSUPP =>
        {
            swap_by_renames(dir, &parent, name, staging)
        }
        Err(e) => Err(io(dir, "swapping in the new site")(e.into())),
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
        let _ = std::fs::rename(&old, dir);
        return Err(io(dir, "moving the new site into place")(e));
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
