//! An in-memory forge for tests of the stages above: it keeps issues, pull
//! requests and comments, records every call, and lets a test play the
//! humans (close, merge, comment).

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::{Comment, Forge, ForgeError, Issue, NewIssue, NewPull, Permission, PullRequest, State};

#[derive(Debug, Default)]
struct Inner {
    next_number: u64,
    next_comment: u64,
    issues: BTreeMap<u64, Issue>,
    pulls: BTreeMap<u64, PullRequest>,
    comments: BTreeMap<u64, Vec<Comment>>,
    reviews: BTreeMap<u64, Vec<Comment>>,
    calls: Vec<String>,
    now: i64,
    permission: Option<Permission>,
}

#[derive(Debug)]
pub struct MemoryForge {
    login: String,
    inner: Mutex<Inner>,
}

impl MemoryForge {
    pub fn new(login: &str) -> MemoryForge {
        MemoryForge {
            login: login.to_owned(),
            inner: Mutex::new(Inner {
                next_number: 1,
                next_comment: 1,
                ..Inner::default()
            }),
        }
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The clock stamped on new comments.
    pub fn set_now(&self, now: i64) {
        self.inner().now = now;
    }

    /// Every write made so far, as `create_issue #1`, `comment #1`, ...
    pub fn calls(&self) -> Vec<String> {
        self.inner().calls.clone()
    }

    pub fn issues(&self) -> Vec<Issue> {
        self.inner().issues.values().cloned().collect()
    }

    pub fn pulls(&self) -> Vec<PullRequest> {
        self.inner().pulls.values().cloned().collect()
    }

    /// A human comments.
    pub fn human_comment(&self, number: u64, author: &str, body: &str) {
        let mut inner = self.inner();
        let id = inner.next_comment;
        inner.next_comment += 1;
        let created_at = inner.now;
        inner.comments.entry(number).or_default().push(Comment {
            id,
            author: author.to_owned(),
            body: body.to_owned(),
            created_at,
        });
    }

    /// A human closes a pull request without merging, or merges it.
    pub fn human_closes_pull(&self, number: u64, merged: bool) {
        let mut inner = self.inner();
        if let Some(pull) = inner.pulls.get_mut(&number) {
            pull.state = State::Closed;
            pull.merged = merged;
        }
        if let Some(issue) = inner.issues.get_mut(&number) {
            issue.state = State::Closed;
        }
    }

    /// A human opens a pull request.
    pub fn human_opens_pull(&self, author: &str, title: &str) -> u64 {
        let mut inner = self.inner();
        let number = inner.next_number;
        inner.next_number += 1;
        inner.pulls.insert(
            number,
            PullRequest {
                number,
                title: title.to_owned(),
                body: String::new(),
                state: State::Open,
                merged: false,
                head: format!("{author}:patch-{number}"),
                base: "master".into(),
                author: author.to_owned(),
                url: format!("https://github.invalid/pull/{number}"),
                labels: Vec::new(),
            },
        );
        number
    }

    /// The token's role (triage unless set): labels stick from triage up.
    pub fn set_permission(&self, permission: Permission) {
        self.inner().permission = Some(permission);
    }

    fn may_label(&self) -> bool {
        self.inner()
            .permission
            .unwrap_or(Permission::Triage)
            .may_label()
    }

    /// A human with triage rights labels an issue or pull request.
    pub fn human_labels(&self, number: u64, label: &str) {
        let mut inner = self.inner();
        if let Some(issue) = inner.issues.get_mut(&number) {
            issue.labels.push(label.to_owned());
        }
        if let Some(pull) = inner.pulls.get_mut(&number) {
            pull.labels.push(label.to_owned());
        }
    }
}

fn as_issue(p: &PullRequest) -> Issue {
    Issue {
        number: p.number,
        title: p.title.clone(),
        body: p.body.clone(),
        state: p.state,
        labels: p.labels.clone(),
        author: p.author.clone(),
        url: p.url.clone(),
        is_pull_request: true,
        closed_by: None,
        state_reason: None,
    }
}

impl Forge for MemoryForge {
    async fn whoami(&self) -> Result<String, ForgeError> {
        Ok(self.login.clone())
    }

    async fn permission(&self) -> Result<Permission, ForgeError> {
        Ok(self.inner().permission.unwrap_or(Permission::Triage))
    }

    async fn items_by(&self, creator: &str) -> Result<Vec<Issue>, ForgeError> {
        let inner = self.inner();
        let mut items: Vec<Issue> = inner
            .issues
            .values()
            .cloned()
            .chain(inner.pulls.values().map(as_issue))
            .filter(|i| i.author == creator)
            .collect();
        items.sort_by_key(|i| i.number);
        Ok(items)
    }

    async fn issue(&self, number: u64) -> Result<Issue, ForgeError> {
        self.inner()
            .issues
            .get(&number)
            .cloned()
            .ok_or(ForgeError::NotFound {
                what: "issue",
                number,
            })
    }

    async fn create_issue(&self, new: &NewIssue) -> Result<Issue, ForgeError> {
        let labels = if self.may_label() {
            new.labels.clone()
        } else {
            Vec::new()
        };
        let mut inner = self.inner();
        let number = inner.next_number;
        inner.next_number += 1;
        let issue = Issue {
            number,
            title: new.title.clone(),
            body: new.body.clone(),
            state: State::Open,
            labels,
            author: self.login.clone(),
            url: format!("https://github.invalid/issues/{number}"),
            is_pull_request: false,
            closed_by: None,
            state_reason: None,
        };
        inner.issues.insert(number, issue.clone());
        inner.calls.push(format!("create_issue #{number}"));
        Ok(issue)
    }

    async fn edit_issue(
        &self,
        number: u64,
        body: Option<&str>,
        state: Option<State>,
    ) -> Result<Issue, ForgeError> {
        let mut inner = self.inner();
        let issue = inner.issues.get_mut(&number).ok_or(ForgeError::NotFound {
            what: "issue",
            number,
        })?;
        if let Some(body) = body {
            issue.body = body.to_owned();
        }
        if let Some(state) = state {
            issue.state = state;
            issue.closed_by = (state == State::Closed).then(|| issue.author.clone());
        }
        let issue = issue.clone();
        inner.calls.push(format!("edit_issue #{number}"));
        Ok(issue)
    }

    async fn comment(&self, number: u64, body: &str) -> Result<Comment, ForgeError> {
        let login = self.login.clone();
        self.human_comment(number, &login, body);
        let mut inner = self.inner();
        inner.calls.push(format!("comment #{number}"));
        Ok(inner.comments[&number]
            .last()
            .cloned()
            .expect("just pushed"))
    }

    async fn edit_comment(&self, id: u64, body: &str) -> Result<Comment, ForgeError> {
        let mut inner = self.inner();
        let comment = inner
            .comments
            .values_mut()
            .flatten()
            .find(|c| c.id == id)
            .ok_or(ForgeError::NotFound {
                what: "comment",
                number: id,
            })?;
        comment.body = body.to_owned();
        let comment = comment.clone();
        inner.calls.push(format!("edit_comment {id}"));
        Ok(comment)
    }

    async fn comments(&self, number: u64) -> Result<Vec<Comment>, ForgeError> {
        Ok(self
            .inner()
            .comments
            .get(&number)
            .cloned()
            .unwrap_or_default())
    }

    async fn review_comments(&self, number: u64) -> Result<Vec<Comment>, ForgeError> {
        Ok(self
            .inner()
            .reviews
            .get(&number)
            .cloned()
            .unwrap_or_default())
    }

    /// The newest, as GitHub lists them.
    async fn pull_by_head(&self, head: &str) -> Result<Option<PullRequest>, ForgeError> {
        Ok(self
            .inner()
            .pulls
            .values()
            .rev()
            .find(|p| p.head == head)
            .cloned())
    }

    async fn newest_pull_from_branch(
        &self,
        branch: &str,
    ) -> Result<Option<PullRequest>, ForgeError> {
        // The in-memory forge has one repository and no forks: a branch's
        // pull requests are those whose head names it and nobody else's.
        Ok(self
            .inner()
            .pulls
            .values()
            .rev()
            .find(|p| p.head.split_once(':').map_or(p.head.as_str(), |(_, b)| b) == branch)
            .cloned())
    }

    async fn pull(&self, number: u64) -> Result<PullRequest, ForgeError> {
        self.inner()
            .pulls
            .get(&number)
            .cloned()
            .ok_or(ForgeError::NotFound {
                what: "pull request",
                number,
            })
    }

    async fn create_pull(
        &self,
        new: &NewPull,
        labels: &[String],
    ) -> Result<PullRequest, ForgeError> {
        let labels = if self.may_label() {
            labels.to_vec()
        } else {
            Vec::new()
        };
        let mut inner = self.inner();
        let number = inner.next_number;
        inner.next_number += 1;
        let pull = PullRequest {
            number,
            title: new.title.clone(),
            body: new.body.clone(),
            state: State::Open,
            merged: false,
            head: new.head.clone(),
            base: new.base.clone(),
            author: self.login.clone(),
            url: format!("https://github.invalid/pull/{number}"),
            labels,
        };
        inner.pulls.insert(number, pull.clone());
        inner.calls.push(format!("create_pull #{number}"));
        Ok(pull)
    }

    async fn close_pull(&self, number: u64) -> Result<PullRequest, ForgeError> {
        let mut inner = self.inner();
        let pull = inner.pulls.get_mut(&number).ok_or(ForgeError::NotFound {
            what: "pull request",
            number,
        })?;
        pull.state = State::Closed;
        let pull = pull.clone();
        inner.calls.push(format!("close_pull #{number}"));
        Ok(pull)
    }

    async fn open_pulls_mentioning(&self, text: &str) -> Result<Vec<Issue>, ForgeError> {
        Ok(self
            .inner()
            .pulls
            .values()
            .filter(|p| p.state == State::Open && p.title.contains(text))
            .map(as_issue)
            .collect())
    }
}
