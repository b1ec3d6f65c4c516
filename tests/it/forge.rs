//! The real GitHub client (octocrab underneath) against a GitHub look-alike
//! on loopback.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hydra_sentinel::forge::{
    ContentBudget, Forge, ForgeError, GitHub, GitHubSettings, NewIssue, NewPull, Permission,
    Secret, Sleeper, State, user_agent,
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

/// A client whose waits are recorded and run 60 000 times faster (a minute
/// takes a millisecond).
fn timed_github(fake: &FakeGitHub) -> (GitHub, Arc<Mutex<Vec<Duration>>>) {
    let mut settings = GitHubSettings::new(
        fake.url().parse().unwrap(),
        "NixOS/nixpkgs",
        Secret::new(TOKEN),
    );
    settings.min_write_interval = Duration::ZERO;
    settings.max_rate_limit_wait = Duration::from_secs(3600);
    let (sleeper, waits) = Sleeper::recording(60_000);
    settings.sleeper = sleeper;
    (GitHub::new(settings).expect("a GitHub client"), waits)
}

fn secs(waits: &Arc<Mutex<Vec<Duration>>>) -> Vec<u64> {
    waits
        .lock()
        .unwrap()
        .iter()
        .map(Duration::as_secs)
        .collect()
}

/// Requests the look-alike saw for `method` on `path`.
fn seen(fake: &FakeGitHub, method: &str, path: &str) -> usize {
    fake.requests()
        .iter()
        .filter(|r| r.method == method && r.target.split('?').next() == Some(path))
        .count()
}

#[test]
fn every_request_names_hydra_sentinel_its_contact_and_the_api_version() {
    let _turn = one_at_a_time();
    let fake = FakeGitHub::start("NixOS/nixpkgs", "sentinel-bot", TOKEN).unwrap();
    let agent = user_agent(Some("https://example.org/sentinel-ops"));
    assert_eq!(
        agent,
        format!(
            "hydra-sentinel/{} (+https://example.org/sentinel-ops)",
            env!("CARGO_PKG_VERSION")
        )
    );
    runtime().block_on(async {
        let mut settings = GitHubSettings::new(
            fake.url().parse().unwrap(),
            "NixOS/nixpkgs",
            Secret::new(TOKEN),
        );
        settings.user_agent = agent.clone();
        settings.min_write_interval = Duration::ZERO;
        let gh = GitHub::new(settings).unwrap();
        gh.whoami().await.unwrap();
        let issue = gh.create_issue(&new_issue("grafx")).await.unwrap();
        gh.comment(issue.number, "hello").await.unwrap();
        gh.comments(issue.number).await.unwrap();
    });
    let requests = fake.requests();
    assert!(requests.len() >= 4, "{requests:?}");
    for request in &requests {
        // One User-Agent, ours: a second one would arrive comma-joined.
        assert_eq!(
            request.user_agent.as_deref(),
            Some(agent.as_str()),
            "{} {}",
            request.method,
            request.target
        );
        assert_eq!(
            request.api_version.as_deref(),
            Some("2022-11-28"),
            "{} {}",
            request.method,
            request.target
        );
    }
}

#[test]
fn with_pull_access_issues_and_pull_requests_are_opened_without_labels_and_without_a_403() {
    let _turn = one_at_a_time();
    let fake = FakeGitHub::start("NixOS/nixpkgs", "sentinel-bot", TOKEN).unwrap();
    fake.set_role("pull");
    runtime().block_on(async {
        let gh = github(&fake, TOKEN);
        assert_eq!(gh.permission().await.unwrap(), Permission::Pull);
        let issue = gh.create_issue(&new_issue("grafx")).await.unwrap();
        assert!(issue.labels.is_empty(), "{issue:?}");
        let pull = gh
            .create_pull(
                &NewPull {
                    title: "grafx: mark broken".into(),
                    head: "sentinel-bot:b".into(),
                    base: "master".into(),
                    body: "evidence".into(),
                },
                &["hydra-sentinel".to_owned()],
            )
            .await
            .unwrap();
        assert!(pull.labels.is_empty(), "{pull:?}");
    });
    let refused: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.status >= 400)
        .collect();
    assert!(refused.is_empty(), "nothing is refused: {refused:?}");
    assert!(
        !fake
            .requests()
            .iter()
            .any(|r| r.target.ends_with("/labels") || r.body.contains("labels")),
        "no label is even asked for"
    );
    assert_eq!(
        seen(&fake, "GET", "/repos/NixOS/nixpkgs"),
        1,
        "the role is learned once per client"
    );
}

#[test]
fn with_triage_access_existing_labels_are_applied_and_a_missing_one_is_only_a_warning() {
    let _turn = one_at_a_time();
    let fake = FakeGitHub::start("NixOS/nixpkgs", "sentinel-bot", TOKEN).unwrap();
    fake.set_role("triage");
    fake.create_label("hydra-sentinel");
    runtime().block_on(async {
        let gh = github(&fake, TOKEN);
        assert_eq!(gh.permission().await.unwrap(), Permission::Triage);
        let labelled = gh.create_issue(&new_issue("grafx")).await.unwrap();
        assert_eq!(labelled.labels, ["hydra-sentinel"]);
        assert_eq!(fake.labels_of(labelled.number), ["hydra-sentinel"]);

        let mut missing = new_issue("frob");
        missing.labels = vec!["no such label".into()];
        let unlabelled = gh
            .create_issue(&missing)
            .await
            .expect("the issue is opened although its label was refused");
        assert!(fake.labels_of(unlabelled.number).is_empty());
    });
    let refused: Vec<(String, u16)> = fake
        .requests()
        .into_iter()
        .filter(|r| r.status >= 400)
        .map(|r| (r.target, r.status))
        .collect();
    assert_eq!(
        refused,
        [("/repos/NixOS/nixpkgs/issues/2/labels".to_owned(), 403)],
        "only the missing label is refused, as GitHub refuses a triager creating one"
    );
}

#[test]
fn items_of_deleted_accounts_are_read_as_ghost() {
    let _turn = one_at_a_time();
    let fake = FakeGitHub::start("NixOS/nixpkgs", "sentinel-bot", TOKEN).unwrap();
    runtime().block_on(async {
        let gh = github(&fake, TOKEN);
        let issue = gh.create_issue(&new_issue("grafx")).await.unwrap();
        fake.ghost_comments(issue.number, "I fixed it once");
        fake.human_comments(issue.number, "alice", "thanks");
        let authors: Vec<String> = gh
            .comments(issue.number)
            .await
            .expect("a comment by a deleted account decodes")
            .into_iter()
            .map(|c| c.author)
            .collect();
        assert_eq!(authors, ["ghost", "alice"]);

        let theirs = fake.ghost_opens_pull("grafx: 1.2 -> 1.3");
        let found = gh
            .open_pulls_mentioning("grafx:")
            .await
            .expect("a search hit by a deleted account decodes");
        let ghost = found.iter().find(|i| i.number == theirs).unwrap();
        assert_eq!(ghost.author, "ghost");
        let pull = gh.pull(theirs).await.unwrap();
        assert_eq!(pull.author, "ghost");
    });
}

/// Each rate-limit shape GitHub documents, its waits, and its attempts.
#[test]
fn every_shape_of_rate_limit_is_waited_out_as_github_asks() {
    let _turn = one_at_a_time();
    let cases: Vec<(&str, Vec<GitHubFault>, std::ops::RangeInclusive<u64>)> = vec![
        (
            "primary, with x-ratelimit-reset",
            vec![GitHubFault::PrimaryRateLimit {
                reset_in_secs: Some(90),
            }],
            89..=90,
        ),
        (
            "primary, without a reset",
            vec![GitHubFault::PrimaryRateLimit {
                reset_in_secs: None,
            }],
            60..=60,
        ),
        (
            "secondary, with retry-after",
            vec![GitHubFault::SecondaryRateLimit {
                retry_after_secs: 7,
            }],
            7..=7,
        ),
        (
            "secondary, without headers",
            vec![GitHubFault::SecondaryRateLimitWithoutHeaders],
            60..=60,
        ),
        (
            "429, with retry-after",
            vec![GitHubFault::TooManyRequests {
                retry_after_secs: Some(3),
            }],
            3..=3,
        ),
        (
            "429, without headers",
            vec![GitHubFault::TooManyRequests {
                retry_after_secs: None,
            }],
            60..=60,
        ),
    ];
    for (shape, faults, expected) in cases {
        let fake = FakeGitHub::start("NixOS/nixpkgs", "sentinel-bot", TOKEN).unwrap();
        for fault in faults {
            fake.inject("POST", "/repos/NixOS/nixpkgs/issues", fault);
        }
        let (gh, waits) = runtime().block_on(async {
            let (gh, waits) = timed_github(&fake);
            gh.create_issue(&new_issue("x"))
                .await
                .unwrap_or_else(|e| panic!("{shape}: {e}"));
            (gh, waits)
        });
        drop(gh);
        let waits = secs(&waits);
        assert_eq!(waits.len(), 1, "{shape}: {waits:?}");
        assert!(expected.contains(&waits[0]), "{shape}: waited {waits:?}");
        assert_eq!(
            seen(&fake, "POST", "/repos/NixOS/nixpkgs/issues"),
            2,
            "{shape}: the limited request, then the real one"
        );
        assert_eq!(fake.items().len(), 1, "{shape}: exactly one issue");
    }
}

#[test]
fn a_secondary_limit_that_persists_backs_off_exponentially_then_fails_with_its_reason() {
    let _turn = one_at_a_time();
    let fake = FakeGitHub::start("NixOS/nixpkgs", "sentinel-bot", TOKEN).unwrap();
    for _ in 0..10 {
        fake.inject(
            "POST",
            "/repos/NixOS/nixpkgs/issues",
            GitHubFault::SecondaryRateLimitWithoutHeaders,
        );
    }
    let (error, waits) = runtime().block_on(async {
        let (gh, waits) = timed_github(&fake);
        (gh.create_issue(&new_issue("x")).await.unwrap_err(), waits)
    });
    assert_eq!(
        secs(&waits),
        [60, 120, 240, 480],
        "at least a minute, then doubling"
    );
    assert_eq!(
        seen(&fake, "POST", "/repos/NixOS/nixpkgs/issues"),
        5,
        "five tries by default"
    );
    match &error {
        ForgeError::RateLimited {
            attempts, reason, ..
        } => {
            assert_eq!(*attempts, 5);
            assert!(reason.contains("secondary"), "{reason}");
        }
        other => panic!("expected a rate-limit failure, got {other}"),
    }
    assert!(!error.is_ambiguous(), "a limited request was not processed");
    assert!(fake.items().is_empty());
}

#[test]
fn a_wait_longer_than_the_cycle_can_bear_fails_at_once() {
    let _turn = one_at_a_time();
    let fake = FakeGitHub::start("NixOS/nixpkgs", "sentinel-bot", TOKEN).unwrap();
    fake.inject(
        "GET",
        "/user",
        GitHubFault::PrimaryRateLimit {
            reset_in_secs: Some(7200),
        },
    );
    let (error, waits) = runtime().block_on(async {
        let (gh, waits) = timed_github(&fake);
        (gh.whoami().await.unwrap_err(), waits)
    });
    assert!(secs(&waits).is_empty(), "nothing was waited");
    assert!(
        matches!(error, ForgeError::RateLimited { attempts: 1, .. }),
        "{error}"
    );
    assert!(error.to_string().contains("primary"), "{error}");
}

/// GitHub refuses a body over 65,536 characters with a 422; ours are cut to
/// fit, keep their marker and say so, and nothing is refused.
#[test]
fn an_oversized_body_is_cut_to_fit_instead_of_refused() {
    let _turn = one_at_a_time();
    let fake = FakeGitHub::start("NixOS/nixpkgs", "sentinel-bot", TOKEN).unwrap();
    runtime().block_on(async {
        let gh = github(&fake, TOKEN);
        let huge = format!(
            "<!-- hydra-sentinel:notify:big -->\n{}",
            "| a row of evidence |\n".repeat(5_000)
        );
        let issue = gh
            .create_issue(&NewIssue {
                title: "Build failure: big".into(),
                body: huge.clone(),
                labels: vec![],
            })
            .await
            .expect("the create is accepted");
        gh.comment(issue.number, &huge)
            .await
            .expect("the comment too");
        gh.edit_issue(issue.number, Some(&huge), None)
            .await
            .expect("and the edit");
    });
    let refused: Vec<u16> = fake
        .requests()
        .iter()
        .map(|r| r.status)
        .filter(|s| *s >= 400)
        .collect();
    assert!(refused.is_empty(), "GitHub refused: {refused:?}");
    let body = fake.body_of(1).expect("the issue");
    assert!(
        body.chars().count() <= 65_536,
        "{} characters",
        body.chars().count()
    );
    assert!(body.starts_with("<!-- hydra-sentinel:notify:big -->"));
    assert!(
        body.contains("characters were cut to fit GitHub's limit"),
        "{body:.200}"
    );
}

/// The look-alike is as strict as GitHub: a raw oversized body is refused.
#[test]
fn the_look_alike_refuses_an_oversized_body_as_github_does() {
    let fake = FakeGitHub::start("NixOS/nixpkgs", "sentinel-bot", TOKEN).unwrap();
    let body = serde_json::json!({"title": "t", "body": "x".repeat(65_537)}).to_string();
    let status = ureq_post(&fake.url(), "/repos/NixOS/nixpkgs/issues", &body);
    assert_eq!(status, 422);
}

/// A plain HTTP/1.1 POST over loopback, answering the status code.
fn ureq_post(base: &str, path: &str, body: &str) -> u16 {
    use std::io::{Read, Write};
    let addr = base.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {answer:.200}"))
}

/// Listing requests of the bot's items (with their answers), in order.
fn listings(fake: &FakeGitHub) -> Vec<(String, u16)> {
    fake.requests_to("GET", "/repos/NixOS/nixpkgs/issues")
        .into_iter()
        .map(|r| (r.target, r.status))
        .collect()
}

#[test]
fn the_next_client_lists_only_what_changed_and_an_unchanged_listing_costs_no_quota() {
    let _turn = one_at_a_time();
    let fake = FakeGitHub::start("NixOS/nixpkgs", "sentinel-bot", TOKEN).unwrap();
    for i in 0..150 {
        fake.existing_issue(
            "sentinel-bot",
            &format!("old {i}"),
            &format!("<!-- hydra-sentinel:notify:old-{i} -->"),
        );
    }
    let rt = runtime();
    let memo = rt.block_on(async {
        let first = github(&fake, TOKEN);
        assert_eq!(first.items_by("sentinel-bot").await.unwrap().len(), 150);
        assert_eq!(
            first.items_by("sentinel-bot").await.unwrap().len(),
            150,
            "listed once per client"
        );
        first.take_memo()
    });
    let full = listings(&fake);
    assert_eq!(full.len(), 2, "two pages of 100, once: {full:?}");
    assert!(full.iter().all(|(target, _)| !target.contains("since=")));

    // A human comments on one issue; the next client asks only what changed.
    fake.human_comments(7, "alice", "@hydra-sentinel snooze 30d");
    let memo = rt.block_on(async {
        let second = github(&fake, TOKEN).with_memo(memo);
        let items = second.items_by("sentinel-bot").await.unwrap();
        assert_eq!(items.len(), 150, "the memo still holds the rest");
        let said = second.comments(7).await.unwrap();
        assert_eq!(said.len(), 1);
        second.take_memo()
    });
    let since: Vec<_> = listings(&fake).into_iter().skip(2).collect();
    assert_eq!(since.len(), 1, "{since:?}");
    assert!(since[0].0.contains("since="), "{since:?}");

    // Nothing changed: the same question, answered 304, costs no quota.
    let quota = fake.quota_used();
    rt.block_on(async {
        let third = github(&fake, TOKEN).with_memo(memo);
        assert_eq!(third.items_by("sentinel-bot").await.unwrap().len(), 150);
        assert_eq!(third.comments(7).await.unwrap().len(), 1, "from the memo");
        assert_eq!(third.comments(8).await.unwrap().len(), 0);
    });
    let last = listings(&fake).into_iter().skip(3).collect::<Vec<_>>();
    assert_eq!(last.len(), 1);
    assert_eq!(last[0].1, 304, "{last:?}");
    assert_eq!(
        fake.quota_used() - quota,
        1,
        "only the comments of #8, never read before, cost quota"
    );
}

#[test]
fn requests_and_errors_are_counted_in_the_metrics_by_endpoint_and_kind() {
    let _turn = one_at_a_time();
    let fake = FakeGitHub::start("NixOS/nixpkgs", "sentinel-bot", TOKEN).unwrap();
    fake.inject("GET", "/user", GitHubFault::Status(404));
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::with_local_recorder(&recorder, || {
        runtime().block_on(async {
            let gh = github(&fake, TOKEN);
            assert!(gh.whoami().await.is_err());
            gh.items_by("sentinel-bot").await.unwrap();
        })
    });
    let text = handle.render();
    for series in [
        r#"hydra_sentinel_github_requests_total{endpoint="user",answer="4xx"} 1"#,
        r#"hydra_sentinel_github_requests_total{endpoint="issues",answer="2xx"} 1"#,
        r#"hydra_sentinel_github_errors_total{kind="4xx"} 1"#,
    ] {
        assert!(text.contains(series), "{series} missing from:\n{text}");
    }
}

#[test]
fn from_an_organisation_s_fork_a_pull_request_is_opened_without_maintainer_edits_and_says_so() {
    let _turn = one_at_a_time();
    let fake = FakeGitHub::start("NixOS/nixpkgs", "sentinel-bot", TOKEN).unwrap();
    let new = |branch: &str| NewPull {
        title: "grafx: mark broken".into(),
        head: format!("sentinel-org:{branch}"),
        base: "master".into(),
        body: "evidence".into(),
    };
    runtime().block_on(async {
        let gh = github(&fake, TOKEN);
        let usual = gh.create_pull(&new("a"), &[]).await.unwrap();
        assert!(
            !fake.body_of(usual.number).unwrap().contains("cannot push"),
            "said only when true"
        );
        fake.make_fork_an_organisations();
        let pull = gh.create_pull(&new("b"), &[]).await.unwrap();
        let body = fake.body_of(pull.number).unwrap();
        assert!(body.starts_with("evidence"), "{body}");
        assert!(
            body.contains(hydra_sentinel::forge::NO_MAINTAINER_EDITS),
            "{body}"
        );
    });
    let creates: Vec<(String, u16)> = fake
        .requests_to("POST", "/repos/NixOS/nixpkgs/pulls")
        .into_iter()
        .map(|r| (r.body, r.status))
        .collect();
    assert_eq!(creates.len(), 3, "{creates:?}");
    assert_eq!(creates[1].1, 422);
    assert!(creates[1].0.contains(r#""maintainer_can_modify":true"#));
    assert_eq!(creates[2].1, 201, "asked once more, without it");
    assert!(creates[2].0.contains(r#""maintainer_can_modify":false"#));
}

#[test]
fn refusals_are_told_apart_from_what_is_worth_another_try() {
    use hydra_sentinel::forge::{Failure, Refusal};
    let _turn = one_at_a_time();
    let fake = FakeGitHub::start("NixOS/nixpkgs", "sentinel-bot", TOKEN).unwrap();
    runtime().block_on(async {
        let gh = github(&fake, TOKEN);
        let issue = gh.create_issue(&new_issue("grafx")).await.unwrap();
        fake.lock(issue.number);
        let locked = gh.comment(issue.number, "hello").await.unwrap_err();
        assert_eq!(
            locked.failure(),
            Failure::Refused(Refusal::Locked),
            "{locked}"
        );
        fake.inject(
            "POST",
            "/repos/NixOS/nixpkgs/issues",
            GitHubFault::Status(502),
        );
        let flaky = gh.create_issue(&new_issue("x")).await.unwrap_err();
        assert_eq!(flaky.failure(), Failure::Transient, "{flaky}");
        fake.make_token_read_only();
        let refused = gh.create_issue(&new_issue("y")).await.unwrap_err();
        assert_eq!(
            refused.failure(),
            Failure::Refused(Refusal::Token),
            "{refused}"
        );
        assert!(
            refused.to_string().contains("Resource not accessible"),
            "{refused}"
        );
    });
}

/// A client on a simulated clock shared with a strict look-alike, with
/// `budget` as its content budget and no spacing of its own.
fn budgeted_github(
    fake: &FakeGitHub,
    budget: ContentBudget,
) -> (GitHub, hydra_sentinel::forge::SimulatedClock) {
    let clock = hydra_sentinel::forge::SimulatedClock::at(1_800_000_000);
    let seen = clock.clone();
    fake.use_clock(move || seen.now_millis());
    fake.strict();
    let mut settings = GitHubSettings::new(
        fake.url().parse().unwrap(),
        "NixOS/nixpkgs",
        Secret::new(TOKEN),
    );
    settings.min_write_interval = Duration::ZERO;
    settings.content_budget = budget;
    settings.sleeper = Sleeper::simulated(&clock);
    (GitHub::new(settings).expect("a GitHub client"), clock)
}

/// GitHub allows 80 writes a minute: the strict look-alike refuses the
/// 81st with a secondary limit, which a client with a budget above
/// GitHub's meets; the default budget (20 a minute) never does.
#[test]
fn the_content_budget_keeps_below_github_s_content_limit_which_the_strict_look_alike_enforces() {
    let _turn = one_at_a_time();
    let rt = runtime();
    // The client is built inside the runtime.
    let _inside = rt.enter();
    for (budget, refused) in [
        (
            ContentBudget {
                per_minute: 1000,
                per_hour: 1000,
            },
            true,
        ),
        (ContentBudget::default(), false),
    ] {
        let fake = FakeGitHub::start("NixOS/nixpkgs", "sentinel-bot", TOKEN).unwrap();
        let issue = fake.existing_issue("sentinel-bot", "busy", "<!-- busy -->");
        let (github, clock) = budgeted_github(&fake, budget);
        rt.block_on(async {
            for i in 0..90 {
                github
                    .comment(issue, &format!("comment {i}"))
                    .await
                    .unwrap_or_else(|e| panic!("comment {i} with {budget:?}: {e}"));
            }
        });
        let limited: Vec<u16> = fake
            .requests()
            .iter()
            .map(|r| r.status)
            .filter(|s| *s == 403)
            .collect();
        let (per_minute, _) = fake.most_writes_within(Duration::from_secs(60));
        assert_eq!(fake.writes(), 90, "{budget:?}");
        assert!(per_minute <= 80, "the look-alike let {per_minute} through");
        if refused {
            assert_eq!(
                limited.len(),
                1,
                "the 81st write meets GitHub's limit: {limited:?}"
            );
            assert_eq!(clock.take_waits(), [Duration::from_secs(60)]);
        } else {
            assert!(limited.is_empty(), "{limited:?}");
            assert_eq!(per_minute, 20, "{budget:?}");
        }
    }
}
