//! Read access to a nixpkgs tree: a directory on disk or a git commit.
//!
//! Owns: the small trait the index, the locator and retirement read through, so that the
//! same code can work on a working tree or on a commit (to build a branch without touching
//! the user's working tree). Must never write.

use std::path::{Path, PathBuf};

use super::error::NixpkgsError;

/// Read-only view of a nixpkgs tree. Paths are relative to the tree's root, `/`-separated.
pub trait TreeSource {
    /// A file's text, `None` when it does not exist.
    fn read(&self, rel: &Path) -> Result<Option<String>, NixpkgsError>;
    /// Names of the entries of a directory (empty when it does not exist).
    fn list_dir(&self, rel: &Path) -> Result<Vec<String>, NixpkgsError>;
    fn is_dir(&self, rel: &Path) -> bool;
    fn is_file(&self, rel: &Path) -> bool;
    /// Every file below `rel`, relative to the tree root, sorted.
    fn files_under(&self, rel: &Path) -> Result<Vec<PathBuf>, NixpkgsError>;
}

/// A checkout on disk.
#[derive(Debug, Clone)]
pub struct FsTree {
    root: PathBuf,
}

impl FsTree {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        FsTree { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
}

impl TreeSource for FsTree {
    fn read(&self, rel: &Path) -> Result<Option<String>, NixpkgsError> {
        let path = self.root.join(rel);
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(NixpkgsError::io(path, e)),
        }
    }

    fn list_dir(&self, rel: &Path) -> Result<Vec<String>, NixpkgsError> {
        let path = self.root.join(rel);
        if !path.is_dir() {
            // Absent, or a file such as `pkgs/by-name/README.md`.
            return Ok(Vec::new());
        }
        let entries = match std::fs::read_dir(&path) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(NixpkgsError::io(path, e)),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| NixpkgsError::io(&path, e))?;
            if let Some(name) = entry.file_name().to_str() {
                names.push(name.to_string());
            }
        }
        names.sort();
        Ok(names)
    }

    fn is_dir(&self, rel: &Path) -> bool {
        self.root.join(rel).is_dir()
    }

    fn is_file(&self, rel: &Path) -> bool {
        self.root.join(rel).is_file()
    }

    fn files_under(&self, rel: &Path) -> Result<Vec<PathBuf>, NixpkgsError> {
        let mut out = Vec::new();
        if self.is_file(rel) {
            out.push(rel.to_path_buf());
            return Ok(out);
        }
        let mut stack = vec![rel.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for name in self.list_dir(&dir)? {
                let child = dir.join(name);
                if self.is_dir(&child) {
                    stack.push(child);
                } else {
                    out.push(child);
                }
            }
        }
        out.sort();
        Ok(out)
    }
}

/// Normalise `a/b/../c/./d` without touching the file system. `None` when `..` climbs
/// above the root.
pub(crate) fn normalize(path: &Path) -> Option<PathBuf> {
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for component in path.components() {
        match component {
            std::path::Component::Normal(p) => parts.push(p),
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                parts.pop()?;
            }
            _ => return None,
        }
    }
    Some(parts.iter().collect())
}
