//! Committing editor changes on a branch and pushing it, with git2.
//!
//! Owns: reading a commit as a [`TreeSource`], building a commit from a [`ChangeSet`]
//! purely through blobs and trees (the working tree and index are never touched), the
//! nixpkgs-style commit messages, and pushing with token credentials while detecting refs
//! the remote rejected. Must never: update the branch that is checked out, put the token
//! in a URL, a log line or an error.

use std::cell::RefCell;
use std::fmt;
use std::path::{Path, PathBuf};

use git2::{FileMode, ObjectType, Oid, Repository, Tree, TreeWalkMode, TreeWalkResult};

use super::changes::{Change, ChangeSet, check_nix};
use super::error::NixpkgsError;
use super::platform::Platforms;
use super::source::TreeSource;

/// A push token. `Debug` and `Display` never show it.
#[derive(Clone)]
pub struct Token(String);

impl Token {
    pub fn new(secret: impl Into<String>) -> Self {
        Token(secret.into().trim().to_string())
    }

    /// Read a token from a file (systemd credential or a 0600 file).
    pub fn from_file(path: &Path) -> Result<Self, NixpkgsError> {
        let text = std::fs::read_to_string(path).map_err(|e| NixpkgsError::io(path, e))?;
        Ok(Token::new(text))
    }

    fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// A commit's tree, read through git2.
pub struct GitTree<'r> {
    repo: &'r Repository,
    tree: Tree<'r>,
}

impl<'r> GitTree<'r> {
    /// The tree of `revspec` (`HEAD`, `origin/master`, a commit id...).
    pub fn open(repo: &'r Repository, revspec: &str) -> Result<Self, NixpkgsError> {
        let commit = repo
            .revparse_single(revspec)
            .and_then(|o| o.peel_to_commit())
            .map_err(|e| NixpkgsError::git(format!("resolve {revspec}"), &e))?;
        let tree = commit
            .tree()
            .map_err(|e| NixpkgsError::git("read tree", &e))?;
        Ok(GitTree { repo, tree })
    }

    fn entry(&self, rel: &Path) -> Option<git2::TreeEntry<'static>> {
        if rel.as_os_str().is_empty() {
            return None;
        }
        self.tree.get_path(rel).ok()
    }

    fn subtree(&self, rel: &Path) -> Option<Tree<'r>> {
        if rel.as_os_str().is_empty() {
            return Some(self.tree.clone());
        }
        let entry = self.entry(rel)?;
        if entry.kind() != Some(ObjectType::Tree) {
            return None;
        }
        self.repo.find_tree(entry.id()).ok()
    }
}

impl TreeSource for GitTree<'_> {
    fn read(&self, rel: &Path) -> Result<Option<String>, NixpkgsError> {
        let Some(entry) = self.entry(rel) else {
            return Ok(None);
        };
        if entry.kind() != Some(ObjectType::Blob) {
            return Ok(None);
        }
        let blob = self
            .repo
            .find_blob(entry.id())
            .map_err(|e| NixpkgsError::git(format!("read {}", rel.display()), &e))?;
        Ok(Some(String::from_utf8_lossy(blob.content()).into_owned()))
    }

    fn list_dir(&self, rel: &Path) -> Result<Vec<String>, NixpkgsError> {
        Ok(self
            .subtree(rel)
            .map(|t| {
                t.iter()
                    .filter_map(|e| e.name().ok().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default())
    }

    fn is_dir(&self, rel: &Path) -> bool {
        self.subtree(rel).is_some()
    }

    fn is_file(&self, rel: &Path) -> bool {
        self.entry(rel)
            .is_some_and(|e| e.kind() == Some(ObjectType::Blob))
    }

    fn files_under(&self, rel: &Path) -> Result<Vec<PathBuf>, NixpkgsError> {
        if self.is_file(rel) {
            return Ok(vec![rel.to_path_buf()]);
        }
        let Some(tree) = self.subtree(rel) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        tree.walk(TreeWalkMode::PreOrder, |dir, entry| {
            if entry.kind() == Some(ObjectType::Blob)
                && let Ok(name) = entry.name()
            {
                out.push(rel.join(dir).join(name));
            }
            TreeWalkResult::Ok
        })
        .map_err(|e| NixpkgsError::git("walk tree", &e))?;
        out.sort();
        Ok(out)
    }
}

/// What to commit and where.
#[derive(Debug, Clone)]
pub struct CommitSpec {
    /// Branch to create or update (`refs/heads/<branch>`).
    pub branch: String,
    /// The commit to build on (`HEAD`, `origin/master`, ...).
    pub base: String,
    pub message: String,
    pub author_name: String,
    pub author_email: String,
    /// Replace the branch if it exists (the bot's branches are deterministic).
    pub force: bool,
}

/// Create a commit holding `changes` on top of `spec.base` and point `spec.branch` at it.
/// Only objects and one ref are written; the working tree and the index are not touched.
pub fn commit_change_set(
    repo: &Repository,
    changes: &ChangeSet,
    spec: &CommitSpec,
) -> Result<Oid, NixpkgsError> {
    let refname = format!("refs/heads/{}", spec.branch);
    if !git2::Reference::is_valid_name(&refname) {
        return Err(NixpkgsError::InvalidInput(format!(
            "`{}` is not a valid branch name",
            spec.branch
        )));
    }
    if let Ok(head) = repo.head()
        && head.name().ok() == Some(refname.as_str())
    {
        return Err(NixpkgsError::InvalidInput(format!(
            "branch `{}` is checked out; refusing to move it under the working tree",
            spec.branch
        )));
    }
    let base = repo
        .revparse_single(&spec.base)
        .and_then(|o| o.peel_to_commit())
        .map_err(|e| NixpkgsError::git(format!("resolve {}", spec.base), &e))?;
    let base_tree = base
        .tree()
        .map_err(|e| NixpkgsError::git("read tree", &e))?;
    let source = GitTree {
        repo,
        tree: base_tree.clone(),
    };

    let mut update = git2::build::TreeUpdateBuilder::new();
    for change in &changes.changes {
        match change {
            Change::Write { path, new, .. } => {
                check_nix(path, new, None)?;
                let blob = repo
                    .blob(new.as_bytes())
                    .map_err(|e| NixpkgsError::git("write blob", &e))?;
                let mode = source.entry(path).map_or(FileMode::Blob, |e| {
                    if e.filemode() == i32::from(FileMode::BlobExecutable) {
                        FileMode::BlobExecutable
                    } else {
                        FileMode::Blob
                    }
                });
                update.upsert(git_path(path)?, blob, mode);
            }
            Change::Move { from, to } => {
                let files = source.files_under(from)?;
                if files.is_empty() {
                    return Err(NixpkgsError::InvalidInput(format!(
                        "{} does not exist in {}",
                        from.display(),
                        spec.base
                    )));
                }
                for file in files {
                    let Some(entry) = source.entry(&file) else {
                        continue;
                    };
                    let relative = file.strip_prefix(from).unwrap_or(&file);
                    let target = if relative.as_os_str().is_empty() {
                        to.clone()
                    } else {
                        to.join(relative)
                    };
                    let mode = if entry.filemode() == i32::from(FileMode::BlobExecutable) {
                        FileMode::BlobExecutable
                    } else {
                        FileMode::Blob
                    };
                    update.upsert(git_path(&target)?, entry.id(), mode);
                    update.remove(git_path(&file)?);
                }
            }
        }
    }
    let tree_id = update
        .create_updated(repo, &base_tree)
        .map_err(|e| NixpkgsError::git("build tree", &e))?;
    let tree = repo
        .find_tree(tree_id)
        .map_err(|e| NixpkgsError::git("find tree", &e))?;
    let signature = git2::Signature::now(&spec.author_name, &spec.author_email)
        .map_err(|e| NixpkgsError::git("signature", &e))?;
    let commit = repo
        .commit(None, &signature, &signature, &spec.message, &tree, &[&base])
        .map_err(|e| NixpkgsError::git("commit", &e))?;
    repo.reference(
        &refname,
        commit,
        spec.force,
        &format!("hydra-sentinel: {}", first_line(&spec.message)),
    )
    .map_err(|e| NixpkgsError::git(format!("update {refname}"), &e))?;
    Ok(commit)
}

fn git_path(path: &Path) -> Result<String, NixpkgsError> {
    path.to_str()
        .map(|p| p.replace('\\', "/"))
        .ok_or_else(|| NixpkgsError::InvalidInput(format!("{} is not UTF-8", path.display())))
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("")
}

/// `<attr>: mark broken` or `<attr>: mark broken on aarch64-darwin`.
pub fn mark_broken_title(attr: &str, platforms: &Platforms) -> String {
    if platforms.is_all() {
        format!("{attr}: mark broken")
    } else {
        format!("{attr}: mark broken on {}", platforms.label())
    }
}

/// `<attr>: move to attic`.
pub fn retire_title(attr: &str) -> String {
    format!("{attr}: move to attic")
}

/// Title, blank line, evidence lines.
pub fn commit_message(title: &str, evidence: &[String]) -> String {
    let mut message = title.to_string();
    if !evidence.is_empty() {
        message.push_str("\n\n");
        message.push_str(&evidence.join("\n"));
    }
    message.push('\n');
    message
}

/// Push `refs/heads/<branch>` to `remote` (a URL or a configured remote name). With a
/// token, HTTPS authentication uses it as the password. A ref the remote refuses becomes
/// [`NixpkgsError::PushRejected`].
/// Whether `branch` on `remote` may be (force-)pushed by us: it does not
/// exist there, or its head is the commit we last made for it (our local
/// `refs/heads/<branch>`), or — after a lost checkout — a commit authored by
/// `our_email`. Anything else is someone else's work.
pub fn check_branch_is_ours(
    repo: &Repository,
    remote: &str,
    branch: &str,
    token: Option<&Token>,
    our_email: &str,
) -> Result<(), NixpkgsError> {
    let mut handle = match repo.find_remote(remote) {
        Ok(r) => r,
        Err(_) => repo
            .remote_anonymous(remote)
            .map_err(|e| NixpkgsError::git(format!("remote {remote}"), &e))?,
    };
    let refname = format!("refs/heads/{branch}");
    let credentials = |token: Option<&Token>| {
        let mut callbacks = git2::RemoteCallbacks::new();
        let mut attempts = 0;
        let token = token.cloned();
        callbacks.credentials(move |_url, username, _allowed| {
            attempts += 1;
            match &token {
                Some(token) if attempts <= 1 => git2::Cred::userpass_plaintext(
                    username.unwrap_or("x-access-token"),
                    token.expose(),
                ),
                _ => Err(git2::Error::from_str("no usable credentials")),
            }
        });
        callbacks
    };
    let shown = redact_url(handle.url().unwrap_or(remote));
    let remote_head = {
        let connection = handle
            .connect_auth(git2::Direction::Fetch, Some(credentials(token)), None)
            .map_err(|e| NixpkgsError::git(format!("list branches of {shown}"), &e))?;
        connection
            .list()
            .map_err(|e| NixpkgsError::git(format!("list branches of {shown}"), &e))?
            .iter()
            .find(|h| h.name() == refname)
            .map(|h| h.oid())
    };
    let Some(remote_head) = remote_head else {
        return Ok(());
    };
    if repo.refname_to_id(&refname).ok() == Some(remote_head) {
        return Ok(());
    }
    // Not what we last pushed from here: look at who made it.
    let mut options = git2::FetchOptions::new();
    options.remote_callbacks(credentials(token));
    let probe = format!("refs/hydra-sentinel/fork/{branch}");
    handle
        .fetch(
            &[format!("+{refname}:{probe}").as_str()],
            Some(&mut options),
            None,
        )
        .map_err(|e| NixpkgsError::git(format!("fetch {branch} from {shown}"), &e))?;
    let commit = repo
        .find_commit(remote_head)
        .map_err(|e| NixpkgsError::git(format!("read {branch} of {shown}"), &e))?;
    let author = commit.author();
    if author.email().ok() == Some(our_email) {
        return Ok(());
    }
    Err(NixpkgsError::BranchTakenOver {
        branch: branch.to_owned(),
        commit: remote_head.to_string().chars().take(12).collect(),
        author: author.name().unwrap_or("someone").to_owned(),
    })
}

pub fn push_branch(
    repo: &Repository,
    remote: &str,
    branch: &str,
    token: Option<&Token>,
    force: bool,
) -> Result<(), NixpkgsError> {
    let mut handle = match repo.find_remote(remote) {
        Ok(r) => r,
        Err(_) => repo
            .remote_anonymous(remote)
            .map_err(|e| NixpkgsError::git(format!("remote {remote}"), &e))?,
    };
    let shown_remote = redact_url(handle.url().unwrap_or(remote));
    let rejected: RefCell<Vec<(String, String)>> = RefCell::new(Vec::new());
    let mut callbacks = git2::RemoteCallbacks::new();
    let mut attempts = 0;
    callbacks.credentials(|_url, username, _allowed| {
        attempts += 1;
        match token {
            Some(token) if attempts <= 1 => {
                git2::Cred::userpass_plaintext(username.unwrap_or("x-access-token"), token.expose())
            }
            _ => Err(git2::Error::from_str("no usable credentials")),
        }
    });
    callbacks.push_update_reference(|refname, status| {
        if let Some(message) = status {
            rejected
                .borrow_mut()
                .push((refname.to_string(), message.to_string()));
        }
        Ok(())
    });
    let mut options = git2::PushOptions::new();
    options.remote_callbacks(callbacks);
    let plus = if force { "+" } else { "" };
    let refspec = format!("{plus}refs/heads/{branch}:refs/heads/{branch}");
    let result = handle.push(&[refspec.as_str()], Some(&mut options));
    if let Some((refname, message)) = rejected.borrow().first() {
        return Err(NixpkgsError::PushRejected {
            remote: shown_remote,
            refname: refname.clone(),
            message: message.clone(),
        });
    }
    result.map_err(|e| {
        let message = e.message().to_string();
        let message = match token {
            Some(token) if !token.expose().is_empty() => {
                message.replace(token.expose(), "<redacted>")
            }
            _ => message,
        };
        if e.class() == git2::ErrorClass::Reference || message.contains("fast-forward") {
            NixpkgsError::PushRejected {
                remote: shown_remote.clone(),
                refname: format!("refs/heads/{branch}"),
                message,
            }
        } else {
            NixpkgsError::Git {
                context: format!("push to {shown_remote}"),
                message,
            }
        }
    })
}

/// Drop any `user:password@` part of a URL before showing it.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_never_show_in_debug_output() {
        assert_eq!(
            format!("{:?}", Token::new("ghp_secret")),
            "Token(<redacted>)"
        );
    }

    #[test]
    fn credentials_in_urls_are_redacted() {
        assert_eq!(
            redact_url("https://x:ghp_1@github.com/a/b"),
            "https://github.com/a/b"
        );
        assert_eq!(redact_url("/tmp/remote.git"), "/tmp/remote.git");
    }

    #[test]
    fn titles_follow_nixpkgs_style() {
        assert_eq!(
            mark_broken_title("hello", &Platforms::all()),
            "hello: mark broken"
        );
        let some = Platforms::parse_list("aarch64-darwin").unwrap();
        assert_eq!(
            mark_broken_title("python3Packages.foo", &some),
            "python3Packages.foo: mark broken on aarch64-darwin"
        );
        assert_eq!(retire_title("oldtool"), "oldtool: move to attic");
    }
}
