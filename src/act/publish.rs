//! Turning planned edits into a branch on the bot's fork.
//!
//! The nixpkgs checkout is the daemon's own clone. Each publication fetches
//! the base branch from `origin`, builds the edits on top of it from git
//! objects alone (the checkout's working tree is never touched), commits on
//! a deterministic branch and force-pushes it to the fork: publishing the
//! same plan twice gives the same branch, so a retry after a crash is safe.

use std::collections::BTreeMap;
use std::path::PathBuf;

use git2::Repository;

use crate::nixpkgs::changes::{Change, ChangeSet};
use crate::nixpkgs::git::{
    CommitSpec, GitTree, Token, check_branch_is_ours, commit_change_set, push_branch,
};
use crate::nixpkgs::maintainers::{MaintainerDirectory, meta_maintainers};
use crate::nixpkgs::mark_broken::{Evidence as EditEvidence, MarkBrokenRequest, mark_attr_broken};
use crate::nixpkgs::retire::{Date, RetireRequest, plan_retirement};
use crate::nixpkgs::source::TreeSource;
use crate::nixpkgs::{Index, NixpkgsError, Platforms, System, locate};

/// One package edit of a pull request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    MarkBroken {
        attr: String,
        /// Empty: every platform.
        systems: Vec<String>,
        since: Option<String>,
        build_url: Option<String>,
    },
    Retire {
        attr: String,
        reason: String,
        /// `YYYY-MM-DD`, for the alias comment.
        date: String,
    },
}

impl Edit {
    pub fn attr(&self) -> &str {
        match self {
            Edit::MarkBroken { attr, .. } | Edit::Retire { attr, .. } => attr,
        }
    }
}

/// The result of a publication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The commit pushed; `None` when nothing needed changing.
    pub commit: Option<String>,
    /// Edits that changed nothing (the package is already marked), by attribute.
    pub unchanged: Vec<String>,
    /// Edits the editor refused, by attribute, with its reason: they have to
    /// be made by hand. The other edits are published without them.
    pub refused: Vec<(String, String)>,
}

/// A package's file, as the survey found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageFile {
    /// Relative to the checkout.
    pub path: String,
    /// Whether it carries the policy's opt-out marker comment.
    pub marked: bool,
}

/// What the package files of some attributes say, at the base branch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Survey {
    /// GitHub logins of each attribute's maintainers, where resolved.
    pub maintainers: BTreeMap<String, Vec<String>>,
    /// Every attribute located; one that cannot be is left out (nothing is
    /// known about its marker, so nothing changes).
    pub files: BTreeMap<String, PackageFile>,
    /// Attributes whose file or maintainers could not be read, and why.
    pub unresolved: BTreeMap<String, String>,
}

/// Whether a package file carries the opt-out `marker` (a one-line Nix
/// comment, `# hydra-sentinel: do not mark broken` by default), on a line
/// of its own or after code.
pub fn carries_marker(text: &str, marker: &str) -> bool {
    let marker = marker.trim();
    !marker.is_empty() && text.lines().any(|line| line.contains(marker))
}

/// The package's own file named by an editor's refusal, if any (see
/// [`crate::nixpkgs::Refusal::package_file`]).
fn refused_package_file(e: &NixpkgsError) -> Option<&std::path::Path> {
    match e {
        NixpkgsError::Refused { reason, .. } => reason.package_file(),
        _ => None,
    }
}

/// Where pull request branches come from. The real one uses git; tests of
/// the stages above may use a fake.
pub trait Publisher {
    /// Build `edits` on top of the base branch as one commit on `branch`
    /// and push it to the fork. Idempotent.
    fn publish(
        &self,
        branch: &str,
        message: &str,
        edits: &[Edit],
    ) -> Result<Published, NixpkgsError>;

    /// Locate each attribute's file at the base branch: its maintainers and
    /// whether it carries the opt-out `marker`. An error when the checkout
    /// cannot be read at all; attributes that cannot be located are listed
    /// in `unresolved`.
    fn survey(&self, attrs: &[String], marker: &str) -> Result<Survey, NixpkgsError>;

    /// GitHub logins of each attribute's maintainers, where they can be
    /// resolved; attributes that cannot be located are left out.
    fn maintainers(&self, attrs: &[String]) -> Result<BTreeMap<String, Vec<String>>, NixpkgsError> {
        Ok(self.survey(attrs, "")?.maintainers)
    }
}

/// Publishes from a nixpkgs checkout with git2.
pub struct GitPublisher {
    pub checkout: PathBuf,
    /// The remote the base branch is fetched from (`origin`).
    pub upstream: String,
    pub base_branch: String,
    /// The fork's push URL.
    pub push_url: String,
    pub token: Option<Token>,
    /// Attic folder relative to the checkout.
    pub attic: PathBuf,
    pub author_name: String,
    pub author_email: String,
}

impl GitPublisher {
    fn repo(&self) -> Result<Repository, NixpkgsError> {
        Repository::open(&self.checkout)
            .map_err(|e| NixpkgsError::git(format!("open {}", self.checkout.display()), &e))
    }

    fn base_ref(&self) -> String {
        format!("{}/{}", self.upstream, self.base_branch)
    }

    /// Bring `origin/<base>` up to date.
    fn fetch(&self, repo: &Repository) -> Result<(), NixpkgsError> {
        let mut remote = repo
            .find_remote(&self.upstream)
            .map_err(|e| NixpkgsError::git(format!("remote {}", self.upstream), &e))?;
        let refspec = format!(
            "+refs/heads/{0}:refs/remotes/{1}/{0}",
            self.base_branch, self.upstream
        );
        remote.fetch(&[refspec.as_str()], None, None).map_err(|e| {
            NixpkgsError::git(
                format!("fetch {} from {}", self.base_branch, self.upstream),
                &e,
            )
        })
    }
}

fn platforms(systems: &[String]) -> Result<Platforms, NixpkgsError> {
    if systems.is_empty() {
        return Ok(Platforms::all());
    }
    let parsed: Result<Vec<System>, _> = systems.iter().map(|s| s.parse::<System>()).collect();
    let parsed = parsed
        .map_err(|_| NixpkgsError::InvalidInput(format!("unknown system among {systems:?}")))?;
    Platforms::new(parsed).ok_or_else(|| NixpkgsError::InvalidInput("no systems".into()))
}

/// The change set of a publication's edits, and what became of each edit.
#[derive(Debug, Default)]
pub struct PlannedEdits {
    pub changes: ChangeSet,
    /// Attributes whose edit changed nothing.
    pub unchanged: Vec<String>,
    /// Attributes whose edit the editor refused, with the reason.
    pub refused: Vec<(String, String)>,
}

/// Compute the change set of all edits against one tree. Edits of the same
/// file are applied one after the other. An edit the editor refuses (a
/// property of the package's source, which retrying does not change) is set
/// aside with its reason; any other error fails the whole publication.
pub fn plan_edits(
    index: &Index,
    source: &dyn TreeSource,
    attic: &std::path::Path,
    edits: &[Edit],
) -> Result<PlannedEdits, NixpkgsError> {
    let overlay = Overlay {
        base: source,
        written: std::cell::RefCell::new(BTreeMap::new()),
    };
    let mut all = ChangeSet::default();
    let mut unchanged = Vec::new();
    let mut refused = Vec::new();
    for edit in edits {
        let planned = match edit {
            Edit::MarkBroken {
                attr,
                systems,
                since,
                build_url,
            } => {
                let request = MarkBrokenRequest {
                    platforms: platforms(systems)?,
                    evidence: EditEvidence {
                        since: since.clone(),
                        build_url: build_url.clone(),
                        note: None,
                    },
                    meta_line: None,
                };
                mark_attr_broken(index, &overlay, None, attr, &request).map(|m| m.2)
            }
            Edit::Retire { attr, reason, date } => {
                let request = RetireRequest {
                    attic: attic.to_owned(),
                    date: Date::parse(date)?,
                    reason: reason.clone(),
                    reference: None,
                };
                plan_retirement(index, &overlay, attr, &request).map(|r| r.changes)
            }
        };
        let changes = match planned {
            Ok(changes) => changes,
            Err(e) if e.is_refusal() => {
                refused.push((edit.attr().to_owned(), e.to_string()));
                continue;
            }
            Err(e) => return Err(e),
        };
        if changes.is_empty() {
            unchanged.push(edit.attr().to_owned());
        }
        for change in changes.changes {
            overlay.record(&change);
            all.changes.push(change);
        }
    }
    Ok(PlannedEdits {
        changes: merge_writes(all),
        unchanged,
        refused,
    })
}

/// Several writes of one file become one write from the first old text to
/// the last new text.
fn merge_writes(set: ChangeSet) -> ChangeSet {
    let mut out: Vec<Change> = Vec::new();
    for change in set.changes {
        if let Change::Write { path, new, .. } = &change
            && let Some(Change::Write { new: earlier, .. }) = out
                .iter_mut()
                .find(|c| matches!(c, Change::Write { path: p, .. } if p == path))
        {
            *earlier = new.clone();
            continue;
        }
        out.push(change);
    }
    ChangeSet { changes: out }
}

/// A tree with this publication's earlier writes laid over it, so two edits
/// of one file (a batch) build on each other.
struct Overlay<'a> {
    base: &'a dyn TreeSource,
    written: std::cell::RefCell<BTreeMap<PathBuf, String>>,
}

impl Overlay<'_> {
    fn record(&self, change: &Change) {
        if let Change::Write { path, new, .. } = change {
            self.written.borrow_mut().insert(path.clone(), new.clone());
        }
    }
}

impl TreeSource for Overlay<'_> {
    fn read(&self, path: &std::path::Path) -> Result<Option<String>, NixpkgsError> {
        if let Some(text) = self.written.borrow().get(path) {
            return Ok(Some(text.clone()));
        }
        self.base.read(path)
    }

    fn list_dir(&self, path: &std::path::Path) -> Result<Vec<String>, NixpkgsError> {
        self.base.list_dir(path)
    }

    fn is_dir(&self, path: &std::path::Path) -> bool {
        self.base.is_dir(path)
    }

    fn is_file(&self, path: &std::path::Path) -> bool {
        self.written.borrow().contains_key(path) || self.base.is_file(path)
    }

    fn files_under(&self, path: &std::path::Path) -> Result<Vec<PathBuf>, NixpkgsError> {
        self.base.files_under(path)
    }
}

impl Publisher for GitPublisher {
    fn publish(
        &self,
        branch: &str,
        message: &str,
        edits: &[Edit],
    ) -> Result<Published, NixpkgsError> {
        let repo = self.repo()?;
        self.fetch(&repo)?;
        let base = self.base_ref();
        let PlannedEdits {
            changes,
            unchanged,
            refused,
        } = {
            let tree = GitTree::open(&repo, &base)?;
            let index = Index::build(&tree)?;
            plan_edits(&index, &tree, &self.attic, edits)?
        };
        if changes.is_empty() {
            return Ok(Published {
                commit: None,
                unchanged,
                refused,
            });
        }
        let spec = CommitSpec {
            branch: branch.to_owned(),
            base,
            message: message.to_owned(),
            author_name: self.author_name.clone(),
            author_email: self.author_email.clone(),
            force: true,
        };
        check_branch_is_ours(
            &repo,
            &self.push_url,
            branch,
            self.token.as_ref(),
            &self.author_email,
        )?;
        let commit = commit_change_set(&repo, &changes, &spec)?;
        push_branch(&repo, &self.push_url, branch, self.token.as_ref(), true)?;
        Ok(Published {
            commit: Some(commit.to_string()),
            unchanged,
            refused,
        })
    }

    fn survey(&self, attrs: &[String], marker: &str) -> Result<Survey, NixpkgsError> {
        self.survey_checkout(attrs, marker, true)
    }
}

impl GitPublisher {
    /// Maintainers as the checkout's `origin/<base>` already says, without
    /// fetching (the HTML report reads; it never touches the network).
    pub fn maintainers_offline(
        &self,
        attrs: &[String],
    ) -> Result<BTreeMap<String, Vec<String>>, NixpkgsError> {
        Ok(self.survey_checkout(attrs, "", false)?.maintainers)
    }

    /// Locate each attribute in `origin/<base>` (fetched first when
    /// `fetch`): its file, whether that carries `marker`, its maintainers'
    /// GitHub logins. A checkout that cannot be read is an error: nothing is
    /// known then, and nothing may be assumed (no mentions would mean
    /// notices nobody is told of). A failed fetch is logged and the last
    /// fetched state is used. A package the editor refuses to edit is read
    /// from its own file when the refusal names one. An attribute that
    /// cannot be located, or whose maintainers cannot be read, is left out
    /// with the reason in `unresolved`.
    fn survey_checkout(
        &self,
        attrs: &[String],
        marker: &str,
        fetch: bool,
    ) -> Result<Survey, NixpkgsError> {
        let mut found = Survey::default();
        let repo = self.repo()?;
        if fetch && let Err(e) = self.fetch(&repo) {
            tracing::warn!(error = %e, "fetching nixpkgs failed; using the last fetched state");
            metrics::counter!("hydra_sentinel_nixpkgs_fetch_failures_total").increment(1);
        }
        let tree = GitTree::open(&repo, &self.base_ref())?;
        let index = Index::build(&tree)?;
        let directory = MaintainerDirectory::load(&tree)?;
        for attr in attrs {
            // A package the editor refuses to edit still has a file whose
            // marker and maintainers count: a notice tells them to add the
            // marker there.
            let file = match locate(&index, &tree, None, attr) {
                Ok(located) => located.location.file,
                Err(e) => match refused_package_file(&e) {
                    Some(file) => file.to_path_buf(),
                    None => {
                        found.unresolved.insert(attr.clone(), e.to_string());
                        continue;
                    }
                },
            };
            let file = &file;
            let text = match tree.read(file) {
                Ok(Some(text)) => text,
                Ok(None) => {
                    found
                        .unresolved
                        .insert(attr.clone(), format!("{} is missing", file.display()));
                    continue;
                }
                Err(e) => {
                    found.unresolved.insert(attr.clone(), e.to_string());
                    continue;
                }
            };
            found.files.insert(
                attr.clone(),
                PackageFile {
                    path: file.display().to_string(),
                    marked: carries_marker(&text, marker),
                },
            );
            match meta_maintainers(&text, file, None) {
                Ok(meta) => {
                    let logins = directory.resolve(&meta).github_logins();
                    if !logins.is_empty() {
                        found.maintainers.insert(attr.clone(), logins);
                    }
                }
                Err(e) => {
                    found.unresolved.insert(attr.clone(), e.to_string());
                }
            }
        }
        if !found.unresolved.is_empty() {
            tracing::info!(
                count = found.unresolved.len(),
                examples = ?found.unresolved.iter().take(3).collect::<Vec<_>>(),
                "attributes whose file or maintainers could not be read"
            );
            metrics::counter!("hydra_sentinel_unresolved_attrs_total")
                .increment(found.unresolved.len() as u64);
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::carries_marker;

    const MARKER: &str = "# hydra-sentinel: do not mark broken";

    #[test]
    fn the_marker_counts_on_its_own_line_or_after_code() {
        assert!(carries_marker(
            "{ lib }:\n  # hydra-sentinel: do not mark broken\n{ }",
            MARKER
        ));
        assert!(carries_marker(
            "  meta.broken = false; # hydra-sentinel: do not mark broken, please\n",
            MARKER
        ));
    }

    #[test]
    fn a_near_miss_or_an_empty_marker_is_no_opt_out() {
        assert!(!carries_marker(
            "# hydra-sentinel: do mark broken\n",
            MARKER
        ));
        assert!(!carries_marker("# anything\n", "  "));
    }
}
