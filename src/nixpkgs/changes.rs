//! A set of file changes to a nixpkgs tree, shown as a diff, written to disk, or turned
//! into a git commit (see `git`).
//!
//! Owns: the one representation every editor operation produces, and the disk edge:
//! atomic writes (temp file + rename) after a final parse check. Must never write a Nix
//! file that does not parse, nor move a directory onto an existing path.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use super::error::NixpkgsError;
use super::nix::NixInstantiate;

/// One change to the tree. Paths are relative to the tree root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Replace (or create, when `old` is `None`) a file's content.
    Write {
        path: PathBuf,
        old: Option<String>,
        new: String,
    },
    /// Move a file or directory.
    Move { from: PathBuf, to: PathBuf },
}

/// Changes that belong together (one commit).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChangeSet {
    pub changes: Vec<Change>,
}

impl ChangeSet {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// A unified diff (`a/` and `b/` prefixes) of the writes, and rename headers for moves.
    pub fn unified_diff(&self) -> String {
        let mut out = String::new();
        for change in &self.changes {
            match change {
                Change::Write { path, old, new } => {
                    let old_text = old.as_deref().unwrap_or("");
                    let shown = path.display();
                    let diff = similar::TextDiff::from_lines(old_text, new.as_str());
                    let a = if old.is_some() {
                        format!("a/{shown}")
                    } else {
                        "/dev/null".into()
                    };
                    out.push_str(&format!("diff --git a/{shown} b/{shown}\n"));
                    out.push_str(
                        &diff
                            .unified_diff()
                            .context_radius(3)
                            .header(&a, &format!("b/{shown}"))
                            .to_string(),
                    );
                }
                Change::Move { from, to } => {
                    out.push_str(&format!(
                        "diff --git a/{f} b/{t}\nrename from {f}\nrename to {t}\n",
                        f = from.display(),
                        t = to.display()
                    ));
                }
            }
        }
        out
    }

    /// Apply to a checkout on disk. Every Nix file is parsed again (and, with `nix`, checked
    /// with `nix-instantiate --parse`) before anything is written.
    pub fn apply_to_dir(
        &self,
        root: &Path,
        nix: Option<&NixInstantiate>,
    ) -> Result<(), NixpkgsError> {
        for change in &self.changes {
            match change {
                Change::Write { path, new, .. } => check_nix(path, new, nix)?,
                Change::Move { to, .. } => {
                    if root.join(to).exists() {
                        return Err(NixpkgsError::InvalidInput(format!(
                            "{} already exists",
                            to.display()
                        )));
                    }
                }
            }
        }
        for change in &self.changes {
            match change {
                Change::Write { path, new, .. } => write_atomically(&root.join(path), new)?,
                Change::Move { from, to } => {
                    let (from, to) = (root.join(from), root.join(to));
                    if let Some(parent) = to.parent() {
                        std::fs::create_dir_all(parent).map_err(|e| NixpkgsError::io(parent, e))?;
                    }
                    std::fs::rename(&from, &to).map_err(|e| NixpkgsError::io(&from, e))?;
                }
            }
        }
        Ok(())
    }
}

/// Parse check before a Nix file is written anywhere.
pub(crate) fn check_nix(
    path: &Path,
    text: &str,
    nix: Option<&NixInstantiate>,
) -> Result<(), NixpkgsError> {
    if path.extension().is_none_or(|e| e != "nix") {
        return Ok(());
    }
    if let Some(err) = rnix::Root::parse(text).errors().first() {
        return Err(NixpkgsError::EditWouldNotParse {
            file: path.to_path_buf(),
            message: err.to_string(),
        });
    }
    if let Some(nix) = nix {
        nix.check_parse(text, path)
            .map_err(|e| NixpkgsError::EditWouldNotParse {
                file: path.to_path_buf(),
                message: e.to_string(),
            })?;
    }
    Ok(())
}

/// Write through a temporary file in the same directory, then rename over the target.
pub fn write_atomically(path: &Path, text: &str) -> Result<(), NixpkgsError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| NixpkgsError::io(dir, e))?;
    tmp.write_all(text.as_bytes())
        .map_err(|e| NixpkgsError::io(tmp.path(), e))?;
    if let Ok(meta) = std::fs::metadata(path) {
        // Keep the file's permissions.
        let _ = std::fs::set_permissions(tmp.path(), meta.permissions());
    }
    tmp.persist(path)
        .map_err(|e| NixpkgsError::io(path, e.error))?;
    Ok(())
}
