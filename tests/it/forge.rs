//! The real GitHub client (octocrab underneath) against a GitHub look-alike
//! on loopback.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hydra_sentinel::forge::{
    Forge, ForgeError, GitHub, GitHubSettings, NewIssue, NewPull, Secret, State,
};
use hydra_sentinel::sim::{FakeGitHub, GitHubFault};

const TOKEN: &str = "ghp_test_token_that_must_never_leak_0123456789";

/// The forge tests take turns: tracing caches whether a log call site is
/// enabled, and a call site first reached by another thread while the log
/// test's scoped subscriber is being set up can be cached as disabled.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

fn github(fake: &FakeGitHub, token: &str) -> GitHub {
    let mut settings = GitHubSettings::new(
        fake.url().parse().unwrap(),
        "NixOS/nixpkgs",
        Secret::new(token),
    );
    settings.min_write_interval = Duration::from_millis(5);
    settings.retry_base_delay = Duration::from_millis(10);
    settings.read_retries = 3;
    GitHub::new(settings).expect("a GitHub client")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn new_issue(title: &str) -> NewIssue {
    NewIssue {
        title: title.into(),
        body: format!("<!-- hydra-sentinel:{title} -->\nevidence"),
        labels: vec!["hydra-sentinel".into()],
    }
}

#[test]
fn creates_finds_edits_and_comments_on_its_own_issues() {
    let _turn = one_at_a_time();
    let fake = FakeGitHub::start("NixOS/nixpkgs", "sentinel-bot", TOKEN).unwrap();
    runtime().block_on(async {
        let gh = github(&fake, TOKEN);
        assert_eq!(gh.whoami().await.unwrap(), "sentinel-bot");
        let issue = gh
            .create_issue(&new_issue("grafx: fails to build"))
            .await
            .unwrap();
        let found = gh.issues_by("sentinel-bot").await.unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].number, issue.number);
        assert!(found[0].body.contains("<!-- hydra-sentinel:grafx"));

        let edited = gh
            .edit_issue(issue.number, Some("new body"), Some(State::Closed))
            .await
            .unwrap();
        assert_eq!(
            (edited.body.as_str(), edited.state),
            ("new body", State::Closed)
        );
        gh.comment(issue.number, "still failing").await.unwrap();
        fake.human_comments(issue.number, "alice", "@hydra-sentinel snooze 30d");
        let comments = gh.comments(issue.number).await.unwrap();
        let authors: Vec<&str> = comments.iter().map(|c| c.author.as_str()).collect();
        assert_eq!(authors, ["sentinel-bot", "alice"]);
    });
}

#[test]
fn pull_requests_round_trip_and_a_human_merge_is_seen() {
    let _turn = one_at_a_time();
    let fake = FakeGitHub::start("NixOS/nixpkgs", "sentinel-bot", TOKEN).unwrap();
    runtime().block_on(async {
        let gh = github(&fake, TOKEN);
        let new = NewPull {
            title: "grafx: mark broken".into(),
            head: "sentinel-bot:hydra-sentinel/mark-broken/grafx".into(),
            base: "master".into(),
            body: "evidence".into(),
        };
        let pull = gh
            .create_pull(&new, &["hydra-sentinel".to_owned()])
            .await
            .unwrap();
        let again = gh
            .pull_by_head(&new.head)
            .await
            .unwrap()
            .expect("found by its branch");
        assert_eq!(again.number, pull.number);
        assert!(
            gh.pull_by_head("sentinel-bot:other")
                .await
                .unwrap()
                .is_none()
        );

        let second = gh.create_pull(&new, &[]).await.unwrap_err();
        assert!(
            matches!(second, ForgeError::Status { status: 422, .. }),
            "{second}"
        );

        let human = fake.human_opens_pull("alice", "grafx: 1.2 -> 1.3");
        let mentioning = gh.open_pulls_mentioning("grafx:").await.unwrap();
        let numbers: Vec<u64> = mentioning.iter().map(|i| i.number).collect();
        assert_eq!(numbers, [pull.number, human]);

        fake.human_closes(pull.number, true);
        let merged = gh.pull(pull.number).await.unwrap();
        assert!(merged.merged && merged.state == State::Closed, "{merged:?}");
    });
}

#[test]
fn a_secondary_rate_limit_is_waited_out_even_for_a_create() {
    let _turn = one_at_a_time();
    let fake = FakeGitHub::start("NixOS/nixpkgs", "sentinel-bot", TOKEN).unwrap();
    fake.inject(
        "POST",
        "/repos/NixOS/nixpkgs/issues",
        GitHubFault::SecondaryRateLimit {
            retry_after_secs: 1,
        },
    );
    runtime().block_on(async {
        let gh = github(&fake, TOKEN);
        gh.create_issue(&new_issue("x"))
            .await
            .expect("created after waiting");
    });
    assert_eq!(fake.items().len(), 1, "exactly one issue");
    let posts = fake.requests_to("POST", "/repos/NixOS/nixpkgs/issues");
    assert_eq!(
        posts.len(),
        2,
        "the limited request, then the real one: {posts:#?}"
    );
    let waited = posts[1].at - posts[0].at;
    assert!(
        waited >= Duration::from_secs(1),
        "Retry-After: 1 must be waited out, not {waited:?}"
    );
}

#[test]
fn a_server_error_on_a_create_is_reported_as_ambiguous_and_not_repeated() {
    let _turn = one_at_a_time();
    let fake = FakeGitHub::start("NixOS/nixpkgs", "sentinel-bot", TOKEN).unwrap();
    fake.inject(
        "POST",
        "/repos/NixOS/nixpkgs/issues",
        GitHubFault::SucceedThen500,
    );
    let error = runtime().block_on(async {
        github(&fake, TOKEN)
            .create_issue(&new_issue("x"))
            .await
            .unwrap_err()
    });
    assert!(error.is_ambiguous(), "{error}");
    assert_eq!(
        fake.items().len(),
        1,
        "the issue exists although the answer was 500"
    );
    assert_eq!(
        fake.requests_to("POST", "/repos/NixOS/nixpkgs/issues")
            .len(),
        1,
        "a create is never repeated blindly"
    );
}

/// The gaps between consecutive attempts.
fn waits(attempts: &[hydra_sentinel::sim::GitHubRequest]) -> Vec<Duration> {
    attempts.windows(2).map(|w| w[1].at - w[0].at).collect()
}

#[test]
fn reads_are_retried_after_server_errors_with_growing_waits() {
    let _turn = one_at_a_time();
    let fake = FakeGitHub::start("NixOS/nixpkgs", "sentinel-bot", TOKEN).unwrap();
    fake.inject(
        "GET",
        "/repos/NixOS/nixpkgs/issues",
        GitHubFault::Status(502),
    );
    fake.inject(
        "GET",
        "/repos/NixOS/nixpkgs/issues",
        GitHubFault::Status(503),
    );
    let issues = runtime().block_on(async { github(&fake, TOKEN).issues_by("sentinel-bot").await });
    assert_eq!(issues.expect("the third attempt answers"), []);
    let attempts = fake.requests_to("GET", "/repos/NixOS/nixpkgs/issues");
    assert_eq!(
        attempts.len(),
        3,
        "a 502, a 503, then the answer: {attempts:#?}"
    );
    // retry_base_delay is 10 ms, doubled per attempt: 20 ms, then 40 ms.
    let waits = waits(&attempts);
    assert!(
        waits[0] >= Duration::from_millis(20) && waits[1] >= Duration::from_millis(40),
        "the client must back off before each retry, longer each time: {waits:?}"
    );
}

#[test]
fn reads_give_up_after_the_configured_retries() {
    let _turn = one_at_a_time();
    let fake = FakeGitHub::start("NixOS/nixpkgs", "sentinel-bot", TOKEN).unwrap();
    for _ in 0..5 {
        fake.inject(
            "GET",
            "/repos/NixOS/nixpkgs/issues",
            GitHubFault::Status(500),
        );
    }
    let error = runtime()
        .block_on(async { github(&fake, TOKEN).issues_by("sentinel-bot").await })
        .expect_err("five 500s outlast three retries");
    assert!(
        matches!(error, ForgeError::Status { status: 500, .. }),
        "the last answer is reported: {error}"
    );
    let attempts = fake.requests_to("GET", "/repos/NixOS/nixpkgs/issues");
    assert_eq!(
        attempts.len(),
        4,
        "one attempt and read_retries = 3 retries, no more: {attempts:#?}"
    );
    let waits = waits(&attempts);
    let expected = [20, 40, 80].map(Duration::from_millis);
    assert!(
        waits.iter().zip(expected).all(|(w, e)| *w >= e),
        "waits {waits:?} must be at least {expected:?}"
    );
}

/// A tracing writer that keeps everything in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn the_token_never_appears_in_logs_or_errors() {
    let _turn = one_at_a_time();
    let fake = FakeGitHub::start("NixOS/nixpkgs", "sentinel-bot", TOKEN).unwrap();
    fake.inject(
        "GET",
        "/repos/NixOS/nixpkgs/issues",
        GitHubFault::Status(500),
    );
    fake.inject(
        "POST",
        "/repos/NixOS/nixpkgs/issues",
        GitHubFault::SecondaryRateLimit {
            retry_after_secs: 0,
        },
    );
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let mut texts = Vec::new();
    tracing::subscriber::with_default(subscriber, || {
        runtime().block_on(async {
            let gh = github(&fake, TOKEN);
            texts.push(format!("{gh:?}"));
            gh.issues_by("sentinel-bot").await.unwrap();
            gh.create_issue(&new_issue("x")).await.unwrap();
            let refused = github(&fake, "wrong-token").whoami().await.unwrap_err();
            texts.push(format!(
                "{refused} {refused:?} {}",
                hydra_sentinel::error_chain(&refused)
            ));
        });
    });
    texts.push(format!("{:?}", Secret::new(TOKEN)));
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("GitHub request"),
        "nothing was logged; the test would prove nothing:\n{logs}"
    );
    for text in texts.iter().chain([&logs]) {
        assert!(
            !text.contains(TOKEN) && !text.contains("ghp_test_token"),
            "the token leaked into: {text}"
        );
    }
    assert!(
        fake.requests().iter().any(|r| r.authorized),
        "the token was never sent at all"
    );
}
