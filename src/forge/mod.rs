//! The forge: GitHub, as hydra-sentinel needs it.
//!
//! Owns: the few GitHub operations the bot performs (its own issues and
//! comments, pull requests from its fork, reading comments for commands),
//! their wire models, rate-limit handling, and the [`Forge`] trait with a
//! real implementation ([`GitHub`], through octocrab). Tests drive that
//! real client against the GitHub look-alike ([`crate::sim::FakeGitHub`]),
//! which models GitHub's limits, permissions and odd shapes over loopback
//! HTTP; an in-memory fake that skipped the client was removed as unused.
//!
//! Must never: retry a create blindly (a 5xx on `POST` may have created the
//! thing: the caller reconciles by looking for its own marker or branch
//! first), put the token in a log line, an error or a URL, or decide *what*
//! to do — that is the policy's job.
//!
//! What is safe to retry: reads, and any request GitHub answered with a rate
//! limit (403/429 with `Retry-After` or an exhausted `x-ratelimit-remaining`):
//! such a request was not processed.
//!
//! Labels are for people, never for finding our own work (hidden markers and
//! branch names do that): a forge applies them only where they stick — the
//! token holds triage rights or more on the repository ([`Permission`]) —
//! and a refused label never fails the issue or pull request it was for.

mod failure;
mod github;
mod memo;

pub use failure::{Failure, Refusal};
pub use github::{
    ContentBudget, ForkProbe, GitHub, GitHubSettings, NO_MAINTAINER_EDITS, Probe, SimulatedClock,
    Sleeper, user_agent,
};
pub use memo::Memo;

use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A secret (the GitHub token). `Debug` and `Display` never show it.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(secret: impl Into<String>) -> Secret {
        Secret(secret.into().trim().to_owned())
    }

    /// Read a token from a file (a systemd credential or a 0600 file).
    pub fn from_file(path: &Path) -> Result<Secret, ForgeError> {
        let text = std::fs::read_to_string(path).map_err(|source| ForgeError::Token {
            path: path.display().to_string(),
            source,
        })?;
        let secret = Secret::new(text);
        if secret.0.is_empty() {
            return Err(ForgeError::Token {
                path: path.display().to_string(),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "the token file is empty",
                ),
            });
        }
        Ok(secret)
    }

    /// The prefix GitHub gives each kind of token (`ghp_`, `github_pat_`,
    /// ...), or "" for none known: never more of the secret.
    pub fn kind_prefix(&self) -> &'static str {
        ["github_pat_", "ghp_", "gho_", "ghu_", "ghs_", "ghr_"]
            .into_iter()
            .find(|p| self.0.starts_with(p))
            .unwrap_or("")
    }

    pub(crate) fn expose(&self) -> &str {
        &self.0
    }

    /// The same secret as git push credentials.
    pub fn git_token(&self) -> crate::nixpkgs::git::Token {
        crate::nixpkgs::git::Token::new(self.0.clone())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ForgeError {
    #[error("cannot read the GitHub token from {path}")]
    Token {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid GitHub settings: {0}")]
    Settings(String),
    #[error("{method} {path} failed before GitHub answered")]
    Transport {
        method: &'static str,
        path: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{method} {path} answered {status}: {message}")]
    Status {
        method: &'static str,
        path: String,
        status: u16,
        message: String,
    },
    #[error(
        "{method} {path} is still rate-limited after {attempts} attempts ({reason}); the next try is {wait:?} away"
    )]
    RateLimited {
        method: &'static str,
        path: String,
        /// Requests sent, the last one included.
        attempts: usize,
        /// The wait GitHub asked for last.
        wait: Duration,
        /// Which limit: `primary`, `secondary`, ...
        reason: &'static str,
    },
    #[error("{method} {path} returned JSON we could not read")]
    Decode {
        method: &'static str,
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("no such {what} #{number}")]
    NotFound { what: &'static str, number: u64 },
    #[error(
        "GET {path} has more than {pages} pages of 100; refusing to act on a partial list (far more items than any repository we know of: is the token's login the bot's?)"
    )]
    TooManyPages { path: String, pages: usize },
}

impl ForgeError {
    /// Whether the outcome is unknown: the request may have been processed.
    /// A create that ends like this must be reconciled, not repeated.
    pub fn is_ambiguous(&self) -> bool {
        match self {
            ForgeError::Transport { .. } => true,
            ForgeError::Status { status, .. } => *status >= 500,
            // A write whose answer could not be read may well have happened.
            ForgeError::Decode { method, .. } => *method != "GET",
            _ => false,
        }
    }
}

/// The token's role on the repository, weakest first (GitHub's
/// `permissions` object of `GET /repos/{owner}/{repo}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Permission {
    /// Nothing known (fine-grained tokens and apps get no `permissions` object).
    None,
    Pull,
    Triage,
    Push,
    Maintain,
    Admin,
}

impl Permission {
    /// Whether labels the bot adds stick: applying labels to issues and pull
    /// requests needs triage or more. (Creating a label that does not exist
    /// yet needs write access; a triager's refused label is only a warning.)
    pub fn may_label(self) -> bool {
        self >= Permission::Triage
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::None => "none",
            Permission::Pull => "pull",
            Permission::Triage => "triage",
            Permission::Push => "push",
            Permission::Maintain => "maintain",
            Permission::Admin => "admin",
        }
    }
}

impl std::str::FromStr for Permission {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            Permission::None,
            Permission::Pull,
            Permission::Triage,
            Permission::Push,
            Permission::Maintain,
            Permission::Admin,
        ]
        .into_iter()
        .find(|p| p.as_str() == s)
        .ok_or_else(|| format!("unknown permission {s:?}"))
    }
}

/// The login GitHub shows for a deleted account (its items keep `user: null`).
pub const GHOST: &str = "ghost";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Open,
    Closed,
}

/// An issue (or a pull request seen through the issues API).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Issue {
    pub number: u64,
    pub title: String,
    pub body: String,
    pub state: State,
    pub labels: Vec<String>,
    pub author: String,
    pub url: String,
    pub is_pull_request: bool,
    /// Who closed it, when GitHub says: only reading one issue tells
    /// (`GET /repos/{owner}/{repo}/issues/{number}`), a listing does not.
    #[serde(default)]
    pub closed_by: Option<String>,
    /// `completed`, `not_planned` or `reopened`, when GitHub says.
    #[serde(default)]
    pub state_reason: Option<String>,
}

impl Issue {
    /// Whether someone other than `bot` closed it: a human's "no". Our own
    /// close (a recovery, a superseded digest) never is; a close GitHub
    /// does not attribute is taken as a human's, the safer reading.
    pub fn closed_by_someone_but(&self, bot: &str) -> bool {
        self.state == State::Closed
            && !self
                .closed_by
                .as_deref()
                .is_some_and(|by| by.eq_ignore_ascii_case(bot))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Comment {
    pub id: u64,
    pub author: String,
    pub body: String,
    /// Unix seconds.
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullRequest {
    pub number: u64,
    pub title: String,
    pub body: String,
    pub state: State,
    pub merged: bool,
    /// `owner:branch` of the head.
    pub head: String,
    /// The branch it goes into (`master`); empty when an older memo did
    /// not record it.
    #[serde(default)]
    pub base: String,
    pub author: String,
    pub url: String,
    pub labels: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewIssue {
    pub title: String,
    pub body: String,
    /// Applied only where they stick (see the module documentation).
    pub labels: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewPull {
    pub title: String,
    /// `owner:branch` (a fork's branch) or a branch of the repository.
    pub head: String,
    pub base: String,
    pub body: String,
}

/// What hydra-sentinel does on a forge. Everything is scoped to one repository.
#[allow(async_fn_in_trait)]
pub trait Forge {
    /// The login the token belongs to: the bot's own name, to find its own work.
    async fn whoami(&self) -> Result<String, ForgeError>;
    /// The token's role on the repository (learned once per client).
    async fn permission(&self) -> Result<Permission, ForgeError>;
    /// Issues and pull requests opened by `creator`, any state, with their
    /// labels. Labels are not trusted to find them: GitHub drops labels a
    /// token may not set, and anyone with triage rights can remove one;
    /// callers match the hidden markers in the bodies instead.
    async fn items_by(&self, creator: &str) -> Result<Vec<Issue>, ForgeError>;
    /// Issues (not pull requests) opened by `creator`, any state.
    async fn issues_by(&self, creator: &str) -> Result<Vec<Issue>, ForgeError> {
        Ok(self
            .items_by(creator)
            .await?
            .into_iter()
            .filter(|i| !i.is_pull_request)
            .collect())
    }
    async fn issue(&self, number: u64) -> Result<Issue, ForgeError>;
    async fn create_issue(&self, issue: &NewIssue) -> Result<Issue, ForgeError>;
    async fn edit_issue(
        &self,
        number: u64,
        body: Option<&str>,
        state: Option<State>,
    ) -> Result<Issue, ForgeError>;
    async fn comment(&self, number: u64, body: &str) -> Result<Comment, ForgeError>;
    /// Replace the text of one of the bot's own comments (by its id): a
    /// warning edited as evidence comes in, instead of a new post.
    async fn edit_comment(&self, id: u64, body: &str) -> Result<Comment, ForgeError>;
    /// Comments on an issue or pull request, oldest first.
    async fn comments(&self, number: u64) -> Result<Vec<Comment>, ForgeError>;
    /// The reviews and review comments of pull request `number`, as comments
    /// (a review's text, a comment on a line of the diff). Their ids are
    /// tagged ([`REVIEW_ID`], [`REVIEW_COMMENT_ID`]) so they never equal an
    /// issue comment's.
    async fn review_comments(&self, number: u64) -> Result<Vec<Comment>, ForgeError>;
    /// The pull request (any state) whose head is `owner:branch`, if any.
    async fn pull_by_head(&self, head: &str) -> Result<Option<PullRequest>, ForgeError>;
    /// The newest pull request (any state) from the repository's own branch
    /// `branch` (e.g. `staging-next` into `master`): how close a pre-merge
    /// branch is to landing. Asked at most once per cycle and branch, and
    /// conditionally where the forge can (an unchanged answer costs no quota).
    async fn newest_pull_from_branch(
        &self,
        branch: &str,
    ) -> Result<Option<PullRequest>, ForgeError>;
    async fn pull(&self, number: u64) -> Result<PullRequest, ForgeError>;
    async fn create_pull(
        &self,
        pull: &NewPull,
        labels: &[String],
    ) -> Result<PullRequest, ForgeError>;
    async fn close_pull(&self, number: u64) -> Result<PullRequest, ForgeError>;
    /// Open pull requests whose title mentions `text` (to pause for a human's work).
    async fn open_pulls_mentioning(&self, text: &str) -> Result<Vec<Issue>, ForgeError>;
}

/// Tags on the ids of reviews and review comments: GitHub numbers them
/// apart from issue comments, and the ledger of handled commands keys on one
/// id.
pub const REVIEW_ID: u64 = 1 << 62;
pub const REVIEW_COMMENT_ID: u64 = 1 << 61;

/// GitHub refuses an issue, pull request or comment body over this many
/// characters (422 "body is too long (maximum is 65536 characters)").
pub const BODY_LIMIT: usize = 65_536;

/// `body` cut to fit [`BODY_LIMIT`] at a line boundary, with a note saying
/// so and where the rest is; unchanged when it fits. The hidden marker that
/// identifies our texts is on the first line, so it always survives.
pub fn fit_body(body: &str) -> std::borrow::Cow<'_, str> {
    let chars = body.chars().count();
    if chars <= BODY_LIMIT {
        return std::borrow::Cow::Borrowed(body);
    }
    let note_room = 300;
    let keep_chars = BODY_LIMIT - note_room;
    let cut = body
        .char_indices()
        .nth(keep_chars)
        .map_or(body.len(), |(i, _)| i);
    let cut = body[..cut].rfind('\n').unwrap_or(cut);
    let left_out = chars - body[..cut].chars().count();
    std::borrow::Cow::Owned(format!(
        "{}\n\n*… {left_out} characters were cut to fit GitHub's limit of {BODY_LIMIT}; \
         `hydra-sentinel plan --json` and `hydra-sentinel explain` show everything.*\n",
        &body[..cut]
    ))
}

#[cfg(test)]
mod body_tests {
    use super::*;

    #[test]
    fn a_body_over_the_limit_is_cut_at_a_line_with_a_note_and_keeps_its_marker() {
        let line = "| x | y |\n";
        let body = format!("<!-- hydra-sentinel:pr:k -->\n{}", line.repeat(10_000));
        let fitted = fit_body(&body);
        assert!(fitted.chars().count() <= BODY_LIMIT, "{}", fitted.len());
        assert!(fitted.starts_with("<!-- hydra-sentinel:pr:k -->"));
        assert!(fitted.contains("characters were cut to fit GitHub's limit"));
        let kept = fitted.split("\n\n*…").next().unwrap();
        assert!(kept.ends_with("| x | y |"), "cut at a line boundary");
        assert_eq!(fit_body("short"), "short");
    }
}
