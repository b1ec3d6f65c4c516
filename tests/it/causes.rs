//! Own versus propagated failures, learned from the look-alike's build pages
//! over loopback: the real client, the real store, the real engine.

use std::collections::HashMap;

use hydra_sentinel::history::StatusClass;
use hydra_sentinel::policy::{Ledger, Policy, Rule, assess};
use hydra_sentinel::sim::{FakeHydra, SimHydra};

use crate::helpers::{Sandbox, small_spec};

const LINUX: &str = "x86_64-linux";
const WHEN: i64 = 1_761_000_000;

/// The look-alike with some of the newest eval's Linux builds failed as
/// Hydra fails them: a root that timed out on its own (7) and two victims
/// that got its 7 copied, a root whose output is a cached failure (8) and a
/// victim that got the 8, and a package that timed out on its own.
struct Planted {
    hydra: FakeHydra,
    timeout_root: String,
    timeout_victims: [String; 2],
    cached_root: String,
    cached_victim: String,
    own_timeout: String,
    /// Attribute → its build in the newest eval.
    builds: HashMap<String, i64>,
}

fn planted() -> Planted {
    let sim = SimHydra::generate(&small_spec(40, 5));
    let newest = sim.evals.last().expect("evals").clone();
    let mut linux: Vec<(String, i64)> = newest
        .builds
        .iter()
        .map(|id| &sim.builds[id])
        .filter(|b| b.system == LINUX && b.status == Some(0) && !b.job.contains('<'))
        .map(|b| {
            let attr = b.job.strip_suffix(".x86_64-linux").unwrap_or(&b.job);
            (attr.to_owned(), b.id)
        })
        .collect();
    linux.sort();
    assert!(linux.len() >= 6, "too few Linux builds: {linux:?}");
    let pick: Vec<(String, i64)> = linux.into_iter().take(6).collect();
    let hydra = FakeHydra::start(sim).expect("starting the look-alike");
    let [timeout_root, v1, v2, cached_root, cached_victim, own] =
        [0, 1, 2, 3, 4, 5].map(|i| pick[i].clone());
    let root_of = |root: &(String, i64)| hydra.hydra().builds[&root.1].clone();
    hydra.edit_build(timeout_root.1, |b| b.finish(7, WHEN));
    for victim in [&v1, &v2] {
        let root = root_of(&timeout_root);
        hydra.edit_build(victim.1, |b| b.fail_from(&root, WHEN));
    }
    hydra.edit_build(cached_root.1, |b| b.fail_cached(WHEN));
    let root = root_of(&cached_root);
    hydra.edit_build(cached_victim.1, |b| b.fail_from(&root, WHEN));
    hydra.edit_build(own.1, |b| b.finish(7, WHEN));
    Planted {
        builds: pick.iter().cloned().collect(),
        timeout_root: timeout_root.0,
        timeout_victims: [v1.0, v2.0],
        cached_root: cached_root.0,
        cached_victim: cached_victim.0,
        own_timeout: own.0,
        hydra,
    }
}

fn linux_class(sandbox: &Sandbox, attr: &str) -> StatusClass {
    sandbox
        .store()
        .jobs_by_attr(attr, &Policy::nixpkgs().streak)
        .expect("reading a job")
        .into_iter()
        .find(|r| r.name.system == LINUX)
        .unwrap_or_else(|| panic!("{attr} has a Linux job"))
        .history
        .class
}

fn linux_rule(a: &hydra_sentinel::policy::Assessment, attr: &str) -> Rule {
    a.attr(attr)
        .unwrap_or_else(|| panic!("{attr} is assessed"))
        .jobs
        .iter()
        .find(|j| j.system == LINUX)
        .unwrap_or_else(|| panic!("{attr} has a Linux job"))
        .rule
        .clone()
}

#[test]
fn victims_of_a_timed_out_or_cached_failure_root_are_dependency_failures_charged_to_it() {
    let p = planted();
    let sandbox = Sandbox::new(&p.hydra, "");
    sandbox.pass(Some(10));

    for victim in p.timeout_victims.iter().chain([&p.cached_victim]) {
        assert_eq!(
            linux_class(&sandbox, victim),
            StatusClass::DependencyFailed,
            "{victim} got its root's status copied; its page says whose it is"
        );
    }
    assert_eq!(linux_class(&sandbox, &p.timeout_root), StatusClass::Failing);
    assert_eq!(linux_class(&sandbox, &p.cached_root), StatusClass::Failing);
    assert_eq!(
        linux_class(&sandbox, &p.own_timeout),
        StatusClass::Failing,
        "a timeout of the package itself stays its own"
    );

    let facts = sandbox
        .store()
        .policy_facts(&sandbox.config.hydra.url, sandbox.config.repository())
        .expect("facts");
    let charged = &facts.jobsets[0].propagated_from;
    for (victim, root) in [
        (&p.timeout_victims[0], &p.timeout_root),
        (&p.timeout_victims[1], &p.timeout_root),
        (&p.cached_victim, &p.cached_root),
    ] {
        assert_eq!(
            charged.get(&p.builds[victim]),
            Some(&p.builds[root]),
            "{victim} is charged to {root}'s build: {charged:?}"
        );
    }

    let newest = facts.jobsets[0].evals.last().expect("evals").timestamp;
    let a = assess(
        &Policy::nixpkgs(),
        &facts,
        &Ledger::default(),
        newest + 3600,
    );
    for (victim, root) in [
        (&p.timeout_victims[0], &p.timeout_root),
        (&p.cached_victim, &p.cached_root),
    ] {
        assert_eq!(
            linux_rule(&a, victim),
            Rule::Victim {
                root: Some(root.clone()),
                candidates: vec![],
                root_build: Some(p.builds[root]),
            }
        );
    }
    let timeout_root = a
        .roots
        .iter()
        .find(|r| r.attr == p.timeout_root)
        .unwrap_or_else(|| panic!("{} is a root: {:?}", p.timeout_root, a.roots));
    let mut victims = p.timeout_victims.to_vec();
    victims.sort();
    assert_eq!(timeout_root.victims, victims);
    assert!(
        !matches!(
            linux_rule(&a, &p.own_timeout),
            Rule::Victim { .. } | Rule::AwaitingCause
        ),
        "an own timeout is the package's own failure: {:?}",
        linux_rule(&a, &p.own_timeout)
    );
}

#[test]
fn build_pages_stay_within_the_budget_and_are_never_read_twice_across_restarts() {
    let p = planted();
    let sandbox = Sandbox::new(&p.hydra, "\n[ingest]\ncause_pages_per_pass = 2\n");
    let pages = || p.hydra.counters().requests("build_page");

    sandbox.pass(Some(10));
    assert_eq!(pages(), 2, "the first pass reads two pages");
    // Until its page is read, a copied timeout is no one's failure yet.
    let unread: Vec<&String> = p
        .timeout_victims
        .iter()
        .chain([&p.cached_victim, &p.own_timeout])
        .filter(|attr| {
            let view = sandbox
                .store()
                .jobs_by_attr(attr, &Policy::nixpkgs().streak)
                .expect("reading a job");
            view.iter()
                .any(|r| r.name.system == LINUX && r.history.awaiting_cause)
        })
        .collect();
    assert!(
        !unread.is_empty(),
        "with 6 failures and 2 pages, some wait for their page"
    );

    // Each pass is a fresh process on the same database (a restart).
    for pass in 2..=4 {
        sandbox.pass(Some(10));
        assert!(
            pages() <= 2 * pass,
            "pass {pass}: at most two pages a pass, {} so far",
            pages()
        );
    }
    let read = sandbox.count("SELECT count(*) FROM build_causes");
    assert_eq!(read, 6, "every planted failure has been read");
    let before = pages();
    sandbox.pass(Some(10));
    assert_eq!(pages(), before, "nothing is read again after a restart");

    let mut asked: HashMap<String, usize> = HashMap::new();
    for r in p.hydra.requests() {
        if r.path.starts_with("/build/") && !r.accept.as_deref().is_some_and(|a| a.contains("json"))
        {
            *asked.entry(r.path).or_default() += 1;
        }
    }
    assert!(
        asked.values().all(|n| *n == 1),
        "each page is asked for once: {asked:?}"
    );
    assert_eq!(
        linux_class(&sandbox, &p.cached_victim),
        StatusClass::DependencyFailed
    );
}

fn run_ok(args: &[&str]) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_hydra-sentinel"))
        .args(args)
        .env_remove("HYDRA_SENTINEL_CONFIG")
        .env("HYDRA_SENTINEL_LOG", "warn")
        .output()
        .expect("running hydra-sentinel");
    assert!(
        output.status.success(),
        "hydra-sentinel {}: {}\n{}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

#[test]
fn history_names_the_root_hydra_named_and_a_failure_whose_page_is_unread() {
    let p = planted();
    let sandbox = Sandbox::new(&p.hydra, "\n[ingest]\ncause_pages_per_pass = 1\n");
    let config = sandbox.config_path.to_str().unwrap();
    let mut attrs: Vec<&String> = p
        .timeout_victims
        .iter()
        .chain([
            &p.cached_victim,
            &p.own_timeout,
            &p.timeout_root,
            &p.cached_root,
        ])
        .collect();
    attrs.sort();
    let histories = || -> (String, usize) {
        let mut texts = String::new();
        let mut awaiting = 0;
        for attr in &attrs {
            let json: serde_json::Value =
                serde_json::from_str(&run_ok(&["--config", config, "history", attr, "--json"]))
                    .expect("history JSON");
            let linux = json["jobs"]
                .as_array()
                .expect("jobs")
                .iter()
                .find(|j| j["system"] == LINUX)
                .expect("a Linux job")
                .clone();
            awaiting += usize::from(linux["awaiting_cause"] == true);
            texts.push_str(&run_ok(&["--config", config, "history", attr]));
        }
        (texts.replace(&p.hydra.url(), "http://hydra"), awaiting)
    };

    // One page a pass: the first failure in line is read, the rest wait.
    run_ok(&["--config", config, "ingest"]);
    let (one_page, awaiting) = histories();
    assert_eq!(awaiting, 5, "one of six failures read:\n{one_page}");
    insta::assert_snapshot!("history_after_one_page", one_page);

    for _ in 0..5 {
        run_ok(&["--config", config, "ingest"]);
    }
    let (all_read, awaiting) = histories();
    assert_eq!(awaiting, 0, "six passes read six pages:\n{all_read}");
    insta::assert_snapshot!("history_with_every_page_read", all_read);
}

#[test]
fn a_kill_while_pages_are_read_keeps_what_was_read_and_the_next_run_reads_only_the_rest() {
    let p = planted();
    // Each answer takes a while, so the kill lands among the page reads.
    p.hydra
        .set_latency(Some(std::time::Duration::from_millis(150)));
    let sandbox = Sandbox::new(&p.hydra, "");
    let config = sandbox.config_path.to_str().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_hydra-sentinel"))
        .args(["--config", config, "ingest"])
        .env("HYDRA_SENTINEL_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("starting hydra-sentinel");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while p.hydra.counters().requests("build_page") < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "the pages were never asked for"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().expect("killing hydra-sentinel");
    child.wait().expect("reaping hydra-sentinel");
    let kept = sandbox.count("SELECT count(*) FROM build_causes");
    assert!(
        (2..6).contains(&kept),
        "the pages answered before the kill are kept: {kept}"
    );

    p.hydra.set_latency(None);
    run_ok(&["--config", config, "ingest"]);
    assert_eq!(sandbox.count("SELECT count(*) FROM build_causes"), 6);
    let mut asked: HashMap<String, usize> = HashMap::new();
    for r in p.hydra.requests() {
        if r.path.starts_with("/build/") && !r.accept.as_deref().is_some_and(|a| a.contains("json"))
        {
            *asked.entry(r.path).or_default() += 1;
        }
    }
    let again: Vec<_> = asked.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        again.len() <= 1 && again.iter().all(|(_, n)| **n == 2),
        "only the page in flight at the kill may be asked for again: {asked:?}"
    );
    assert_eq!(
        linux_class(&sandbox, &p.timeout_victims[0]),
        StatusClass::DependencyFailed
    );
}

#[test]
fn page_reads_come_out_of_the_pass_request_budget() {
    let p = planted();
    let sandbox = Sandbox::new(&p.hydra, "\n[ingest]\nrequests_per_pass = 10\n");
    let total = || -> usize {
        p.hydra
            .counters()
            .endpoints
            .values()
            .map(|e| e.requests)
            .sum()
    };
    let mut passes = 0;
    let read = || sandbox.count("SELECT count(*) FROM build_causes");
    while passes == 0 || read() < 6 {
        passes += 1;
        assert!(passes <= 30, "the pages are read within 30 passes");
        let before = total();
        let report = sandbox.pass(Some(10));
        let sent = total() - before;
        assert!(
            sent <= 10,
            "pass {passes}: {sent} requests, pages included, for a budget of 10: {report:?}"
        );
    }
    assert!(
        p.hydra.counters().requests("build_page") == 6,
        "each page once: {:?}",
        p.hydra.counters()
    );
}
