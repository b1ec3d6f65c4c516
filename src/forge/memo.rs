//! What GitHub last told us, so that the next cycle asks only what changed.
//!
//! Owns: a mirror of the bot's own issues and pull requests (with GitHub's
//! `updated_at` of each), the comments, reviews and pull requests read for
//! them, and the ETags of the listing's pages. The caller keeps it between
//! cycles (the store holds it as JSON) and hands it to the next client.
//!
//! Why it is safe: everything cached is keyed by the `updated_at` GitHub
//! gave the item it belongs to. A comment, a review, a label, a close or a
//! merge moves an item's `updated_at`, the next listing (asked `since` the
//! newest `updated_at` seen) returns that item, and what was cached for it
//! is read again. A lost or unreadable memo only costs one full listing.
//!
//! Must never: decide anything, or be trusted for an item it has not seen
//! listed (such reads go to GitHub).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Comment, Issue, PullRequest, State};

/// A full listing is done at least this often, to drop items that were
/// deleted or transferred (a `since` listing never shows those).
pub const FULL_LISTING_EVERY_SECS: i64 = 7 * 24 * 3600;

/// Something read for an item, valid while the item's `updated_at` is `as_of`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Seen<T> {
    pub as_of: DateTime<Utc>,
    pub value: T,
}

/// The comments of an item, and the newest `updated_at` among them: the
/// next read asks only for comments updated since.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SeenComments {
    pub as_of: DateTime<Utc>,
    pub newest: Option<DateTime<Utc>>,
    pub comments: Vec<Comment>,
}

/// An ETag GitHub gave a page of the listing, and how many items the page
/// held (a full page means the listing goes on).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PageTag {
    pub etag: String,
    pub items: usize,
}

/// The forge's memory (see the module documentation).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Memo {
    /// Whose items are mirrored (the token's login).
    pub(crate) creator: Option<String>,
    /// The bot's items by number, as of their `updated_at`.
    pub(crate) items: BTreeMap<u64, Seen<Issue>>,
    /// The newest `updated_at` seen in a listing: the next one asks `since` it.
    pub(crate) watermark: Option<DateTime<Utc>>,
    /// When the last full listing was done (Unix seconds).
    pub(crate) full_at: Option<i64>,
    /// ETags of the last incremental listing's pages, by request target.
    pub(crate) pages: BTreeMap<String, PageTag>,
    pub(crate) comments: BTreeMap<u64, SeenComments>,
    pub(crate) reviews: BTreeMap<u64, Seen<Vec<Comment>>>,
    pub(crate) pulls: BTreeMap<u64, Seen<PullRequest>>,
    /// The newest pull request from each pre-merge branch, with the ETag of
    /// the answer that told it.
    #[serde(default)]
    pub(crate) branch_pulls: BTreeMap<String, Tagged<Option<PullRequest>>>,
}

/// An answer and its ETag: asked again conditionally.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Tagged<T> {
    pub etag: String,
    pub value: T,
}

impl Memo {
    /// Read a memo saved by [`Memo::to_json`]; an unreadable one (an older
    /// shape, a damaged row) is forgotten: it only costs a full listing.
    pub fn from_json(text: &str) -> Memo {
        serde_json::from_str(text).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "the saved GitHub memo is unreadable; listing everything again");
            Memo::default()
        })
    }

    /// The memo to save, without what closed items no longer need.
    pub fn to_json(&self) -> String {
        let mut kept = self.clone();
        let open = |n: &u64| {
            self.items
                .get(n)
                .is_some_and(|i| i.value.state == State::Open)
        };
        kept.comments.retain(|n, _| open(n));
        kept.reviews.retain(|n, _| open(n));
        kept.pulls.retain(|n, _| open(n));
        serde_json::to_string(&kept).unwrap_or_default()
    }

    /// Whether the next listing must be a full one.
    pub(crate) fn needs_full_listing(&self, creator: &str, now: i64) -> bool {
        self.creator.as_deref() != Some(creator)
            || self.watermark.is_none()
            || self
                .full_at
                .is_none_or(|at| now - at >= FULL_LISTING_EVERY_SECS)
    }

    /// The `updated_at` of item `number`, when it was listed.
    pub(crate) fn updated_at(&self, number: u64) -> Option<DateTime<Utc>> {
        self.items.get(&number).map(|i| i.as_of)
    }

    /// Item `number` as we changed or created it (its new `updated_at`).
    pub(crate) fn remember_item(&mut self, issue: Issue, updated_at: DateTime<Utc>) {
        if self
            .items
            .get(&issue.number)
            .is_some_and(|old| old.as_of > updated_at)
        {
            return;
        }
        self.items.insert(
            issue.number,
            Seen {
                as_of: updated_at,
                value: issue,
            },
        );
    }

    /// The listed items, by number.
    pub(crate) fn listed(&self) -> Vec<Issue> {
        self.items.values().map(|i| i.value.clone()).collect()
    }

    /// Comments, merged by id (an edited comment replaces its old text).
    pub(crate) fn merge_comments(
        &mut self,
        number: u64,
        as_of: DateTime<Utc>,
        fresh: Vec<(Comment, Option<DateTime<Utc>>)>,
    ) -> Vec<Comment> {
        let entry = self.comments.entry(number).or_insert(SeenComments {
            as_of,
            newest: None,
            comments: Vec::new(),
        });
        entry.as_of = as_of;
        for (comment, updated) in fresh {
            if let Some(updated) = updated {
                entry.newest = Some(entry.newest.map_or(updated, |n| n.max(updated)));
            }
            match entry.comments.iter_mut().find(|c| c.id == comment.id) {
                Some(old) => *old = comment,
                None => entry.comments.push(comment),
            }
        }
        entry.comments.sort_by_key(|c| (c.created_at, c.id));
        entry.comments.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(secs, 0).unwrap()
    }

    fn issue(number: u64, state: State) -> Issue {
        Issue {
            number,
            title: format!("#{number}"),
            body: String::new(),
            state,
            labels: vec![],
            author: "bot".into(),
            url: String::new(),
            is_pull_request: false,
            closed_by: None,
            state_reason: None,
        }
    }

    fn comment(id: u64, body: &str) -> Comment {
        Comment {
            id,
            author: "alice".into(),
            body: body.into(),
            created_at: id as i64,
        }
    }

    #[test]
    fn an_edited_comment_replaces_its_old_text_and_the_newest_time_only_grows() {
        let mut memo = Memo::default();
        memo.merge_comments(1, at(10), vec![(comment(1, "a"), Some(at(5)))]);
        let merged = memo.merge_comments(
            1,
            at(20),
            vec![
                (comment(1, "a, edited"), Some(at(15))),
                (comment(2, "b"), Some(at(12))),
            ],
        );
        let bodies: Vec<&str> = merged.iter().map(|c| c.body.as_str()).collect();
        assert_eq!(bodies, ["a, edited", "b"]);
        assert_eq!(memo.comments[&1].newest, Some(at(15)));
        assert_eq!(memo.comments[&1].as_of, at(20));
    }

    #[test]
    fn a_saved_memo_keeps_only_what_open_items_need_and_reads_back() {
        let mut memo = Memo::default();
        memo.remember_item(issue(1, State::Open), at(1));
        memo.remember_item(issue(2, State::Closed), at(2));
        memo.merge_comments(1, at(1), vec![(comment(1, "open"), None)]);
        memo.merge_comments(2, at(2), vec![(comment(2, "closed"), None)]);
        let back = Memo::from_json(&memo.to_json());
        assert_eq!(
            back.items.len(),
            2,
            "items stay: they are how we find our work"
        );
        assert_eq!(back.comments.keys().copied().collect::<Vec<_>>(), [1]);
        assert_eq!(Memo::from_json("{not json"), Memo::default());
    }

    #[test]
    fn a_full_listing_is_due_for_another_login_without_a_watermark_or_after_a_week() {
        let mut memo = Memo {
            creator: Some("bot".into()),
            watermark: Some(at(1)),
            full_at: Some(1000),
            ..Memo::default()
        };
        assert!(!memo.needs_full_listing("bot", 1000 + 3600));
        assert!(memo.needs_full_listing("other-bot", 1000 + 3600));
        assert!(memo.needs_full_listing("bot", 1000 + FULL_LISTING_EVERY_SECS));
        memo.watermark = None;
        assert!(memo.needs_full_listing("bot", 1000));
    }
}
