//! The policy end to end: a generated history with planted scenarios,
//! served by the Hydra look-alike, ingested through the real client into
//! SQLite, read back as facts, planned, replayed — and the real binary's
//! `plan`, `explain`, `backtest`, `digest` and `policy check`.

use std::path::Path;
use std::process::Command;

use hydra_sentinel::policy::{Ledger, Policy, Rule, assess, backtest, plan};
use hydra_sentinel::sim::SimSpec;

use crate::helpers::{Sandbox, start};

/// The demo's planted scenarios among a few ordinary packages.
fn spec() -> SimSpec {
    SimSpec {
        packages: 30,
        pending_share: 0.0,
        ..SimSpec::demo()
    }
}

fn ingested() -> (Sandbox, hydra_sentinel::sim::FakeHydra, i64) {
    let hydra = start(&spec());
    let sandbox = Sandbox::new(&hydra, "");
    sandbox.pass(Some(100));
    let newest = hydra.hydra().evals.last().expect("evals").timestamp;
    (sandbox, hydra, newest)
}

const DARWINS: [&str; 2] = ["aarch64-darwin", "x86_64-darwin"];
const EVERY_SYSTEM: [&str; 4] = [
    "aarch64-darwin",
    "aarch64-linux",
    "x86_64-darwin",
    "x86_64-linux",
];

/// What the built-in policy must plan an hour after the newest eval of the
/// demo history: a first notice for each planted own failure, on exactly
/// its failing systems (three weeks is too early for anything more), and
/// nothing for anyone else — (kind, attribute, systems), sorted.
pub(crate) fn planted_plan() -> Vec<(String, String, Vec<String>)> {
    let notify = |attr: &str, systems: &[&str]| {
        (
            "notify".to_owned(),
            attr.to_owned(),
            systems.iter().map(|s| s.to_string()).collect(),
        )
    };
    vec![
        notify("chromium-huge", &["x86_64-linux"]),
        notify("grafx", &EVERY_SYSTEM),
        notify("iterm-tools", &DARWINS),
        notify("libfoo", &EVERY_SYSTEM),
        notify("simdjson-fast", &["aarch64-linux"]),
    ]
}

/// The planted victims of libfoo ("dependency failed" on every system).
const LIBFOO_VICTIMS: [&str; 3] = ["foo-cli", "foo-gui", "python3Packages.foo-bindings"];
const FLAKY: &str = "python3Packages.flaky-net-tests";

#[test]
fn the_planted_scenarios_get_the_actions_the_policy_promises() {
    let (sandbox, _hydra, newest) = ingested();
    let store = sandbox.store();
    let facts = store
        .policy_facts(&sandbox.config.hydra.url, sandbox.config.repository())
        .expect("facts");
    let policy = Policy::nixpkgs();
    let now = newest + 3600;
    let p = plan(&policy, &facts, &Ledger::default(), now);
    let mut planned: Vec<(String, String, Vec<String>)> = p
        .actions
        .iter()
        .map(|a| {
            (
                a.kind.as_str().to_owned(),
                a.attr.clone().unwrap_or_default(),
                a.systems.clone(),
            )
        })
        .collect();
    planned.sort();
    assert_eq!(planned, planted_plan(), "{}", p.to_text());
    assert!(
        !p.held,
        "the demo's breakage is too small for the built-in breaker:\n{}",
        p.to_text()
    );
    assert!(
        p.deferred.is_empty(),
        "nothing is held back:\n{}",
        p.to_text()
    );
    let grafx = p
        .actions
        .iter()
        .find(|a| a.attr.as_deref() == Some("grafx"))
        .expect("grafx is planned");
    assert_eq!(grafx.evidence.jobs.len(), 4, "{:?}", grafx.evidence.jobs);
    assert!(
        grafx.evidence.jobs.iter().all(|j| j
            .compare
            .as_deref()
            .is_some_and(|c| c.starts_with("https://github.com/NixOS/nixpkgs/compare/"))),
        "without a [github] section compare links point to NixOS/nixpkgs: {:?}",
        grafx.evidence.jobs
    );

    let a = assess(&policy, &facts, &Ledger::default(), now);
    let libfoo = a
        .roots
        .iter()
        .find(|r| r.attr == "libfoo")
        .expect("libfoo is a root");
    assert_eq!(libfoo.victims, LIBFOO_VICTIMS, "{libfoo:?}");
    assert_eq!(libfoo.systems, EVERY_SYSTEM, "{libfoo:?}");
    assert_eq!(
        libfoo.victim_jobs, 12,
        "three victims on four systems: {libfoo:?}"
    );
    for victim in LIBFOO_VICTIMS {
        let assessed = a
            .attr(victim)
            .unwrap_or_else(|| panic!("{victim} is assessed"));
        let roots: Vec<(&str, Option<&str>)> = assessed
            .jobs
            .iter()
            .map(|j| {
                let root = match &j.rule {
                    Rule::Victim {
                        root, candidates, ..
                    } if candidates.is_empty() => root.as_deref(),
                    _ => None,
                };
                (j.system.as_str(), root)
            })
            .collect();
        let expected: Vec<(&str, Option<&str>)> =
            EVERY_SYSTEM.iter().map(|s| (*s, Some("libfoo"))).collect();
        assert_eq!(
            roots, expected,
            "{victim} is a victim charged to libfoo on every system"
        );
        assert!(assessed.due.is_empty(), "{victim}: {:?}", assessed.due);
    }
    let flaky = a.attr(FLAKY).expect("the flaky job is assessed");
    assert_eq!(flaky.jobs.len(), 4, "{:?}", flaky.jobs);
    assert!(
        flaky.jobs.iter().all(
            |j| matches!(j.rule, Rule::Flaky { flips } if flips >= policy.streak.flaky_min_flips)
        ),
        "{:?}",
        flaky.jobs.iter().map(|j| &j.rule).collect::<Vec<_>>()
    );
    assert!(
        flaky.due.is_empty(),
        "a flaky job gets nothing: {:?}",
        flaky.due
    );
    assert!(
        p.deferred
            .iter()
            .all(|d| d.action.attr.as_deref() != Some(FLAKY)),
        "{}",
        p.to_text()
    );
    // Recovered and removed packages are not even worth a look now.
    for quiet in ["zlib-ng-compat", "oldtool"] {
        let rules: Vec<&Rule> = a
            .attr(quiet)
            .map(|x| x.jobs.iter().map(|j| &j.rule).collect())
            .unwrap_or_default();
        assert!(
            rules.iter().all(|r| matches!(r, Rule::Ok | Rule::Gone)),
            "{quiet}: {rules:?}"
        );
    }
}

#[test]
fn a_configured_repository_is_where_the_compare_links_point() {
    let hydra = start(&spec());
    let token = tempfile::NamedTempFile::new().expect("a token file");
    let sandbox = Sandbox::new(
        &hydra,
        &format!(
            "\n[github]\nrepo = \"someone/nixpkgs-fork\"\nfork = \"sentinel-bot/nixpkgs\"\n\
             push_url = \"https://github.com/sentinel-bot/nixpkgs.git\"\ntoken_file = {:?}\n",
            token.path().display().to_string()
        ),
    );
    assert_eq!(sandbox.config.repository(), "someone/nixpkgs-fork");
    sandbox.pass(Some(100));
    let newest = hydra.hydra().evals.last().expect("evals").timestamp;
    let now = hydra_sentinel::report::time(newest + 3600);
    let (code, out, err) = hydra_sentinel(&sandbox.config_path, &["plan", "--json", "--now", &now]);
    assert_eq!(code, 0, "{err}");
    let plan: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    let links: Vec<String> = plan["actions"]
        .as_array()
        .expect("actions")
        .iter()
        .flat_map(|a| {
            a["evidence"]["jobs"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|j| j["compare"].as_str().map(str::to_owned))
        .collect();
    // grafx (4), libfoo (4), iterm-tools (2), simdjson-fast and chromium-huge.
    assert_eq!(links.len(), 12, "{out}");
    for link in &links {
        assert!(
            link.starts_with("https://github.com/someone/nixpkgs-fork/compare/"),
            "{link} does not point to the configured repository"
        );
    }
}

#[test]
fn a_backtest_of_the_stored_history_holds_on_the_day_of_the_mass_breakage() {
    let (sandbox, hydra, newest) = ingested();
    let store = sandbox.store();
    let facts = store
        .policy_facts(&sandbox.config.hydra.url, sandbox.config.repository())
        .expect("facts");
    let policy = Policy::parse(
        "[circuit_breaker]\nmin_jobs = 30\nmin_share = 0.2\n",
        Path::new("sensitive.toml"),
    )
    .expect("valid");
    let first = hydra.hydra().evals[0].timestamp;
    let report = backtest(&policy, &facts, &[], first, newest);
    let mass_eval = hydra
        .hydra()
        .scenarios
        .get("(mass breakage)")
        .expect("the demo plants a mass breakage")
        .clone();
    assert_eq!(report.holds.len(), 1, "{}\n{mass_eval}", report.to_text());
    assert_eq!(report.holds[0].day, "2025-11-15", "{}", report.to_text());
    assert!(report.notices >= 5, "{}", report.to_text());
    assert!(report.per_day.iter().any(|d| d.held));
}

/// A JSON plan's actions as (kind, attribute, systems), sorted.
pub(crate) fn planned_in_json(plan: &serde_json::Value) -> Vec<(String, String, Vec<String>)> {
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
    let mut planned: Vec<(String, String, Vec<String>)> = plan["actions"]
        .as_array()
        .unwrap_or_else(|| panic!("no actions in {plan}"))
        .iter()
        .map(|a| {
            (
                text(&a["kind"]),
                text(&a["attr"]),
                a["systems"]
                    .as_array()
                    .map(|s| s.iter().map(text).collect())
                    .unwrap_or_default(),
            )
        })
        .collect();
    planned.sort();
    planned
}

fn hydra_sentinel(config: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hydra-sentinel"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env("HYDRA_SENTINEL_LOG", "warn")
        .output()
        .expect("running hydra-sentinel");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_commands_print_plan_explain_backtest_and_digest() {
    let (sandbox, _hydra, newest) = ingested();
    let config = sandbox.config_path.as_path();
    let now = hydra_sentinel::report::time(newest + 3600);

    let (code, out, err) = hydra_sentinel(config, &["plan", "--json", "--now", &now]);
    assert_eq!(code, 0, "{err}");
    let plan: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(plan["held"], false);
    let actions = plan["actions"].as_array().expect("actions");
    for a in actions {
        for key in ["kind", "attr", "systems", "reason", "evidence"] {
            assert!(a.get(key).is_some(), "{key} missing in {a}");
        }
    }
    assert_eq!(planned_in_json(&plan), planted_plan(), "{out}");

    let (code, out, err) = hydra_sentinel(config, &["explain", "iterm-tools", "--now", &now]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("x86_64-darwin in nixpkgs:trunk") && out.contains("How to stop it"),
        "{out}"
    );
    let (code, _, _) = hydra_sentinel(config, &["explain", "no-such-thing", "--now", &now]);
    assert_eq!(code, 1);

    let (code, out, err) = hydra_sentinel(config, &["backtest", "--json"]);
    assert_eq!(code, 0, "{err}");
    let report: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(report["days"], 21, "{out}");
    assert_eq!(
        report["false_negatives"],
        serde_json::json!([]),
        "three weeks: nothing is past the built-in eight-week mark deadline\n{out}"
    );

    let (code, out, err) = hydra_sentinel(config, &["digest", "--week", "2025-W47", "--now", &now]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("# hydra-sentinel weekly digest 2025-W47"),
        "{out}"
    );
    assert!(
        !out.contains("@everyone") || out.contains("`@everyone`"),
        "{out}"
    );
}

#[test]
fn policy_check_accepts_the_shipped_policy_and_names_the_place_of_a_mistake() {
    let (sandbox, _hydra, _) = ingested();
    let config = sandbox.config_path.as_path();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/nixpkgs.toml");
    let (code, out, err) = hydra_sentinel(config, &["policy", "check", shipped.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("valid"), "{out}");
    assert!(
        out.contains("early warnings: nixpkgs:staging-next, nixpkgs:python-updates, nixpkgs:haskell-updates (off: override 1) landing on nixpkgs:trunk"),
        "{out}"
    );

    let bad = config.with_file_name("bad-policy.toml");
    std::fs::write(
        &bad,
        "[ladder]\nnotify_after = \"3d\"\nmark_broken_after = \"soon\"\n",
    )
    .unwrap();
    let (code, _, err) = hydra_sentinel(config, &["policy", "check", bad.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(
        err.contains("bad-policy.toml:3:21: mark_broken_after"),
        "{err}"
    );

    // A service config naming that file refuses to plan with it.
    let cfg = config.with_file_name("with-policy.toml");
    let text = std::fs::read_to_string(config).unwrap();
    std::fs::write(
        &cfg,
        format!("{text}\n[policy]\nfile = {:?}\n", bad.display().to_string()),
    )
    .unwrap();
    let (code, _, err) = hydra_sentinel(&cfg, &["plan"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("bad-policy.toml:3:21"), "{err}");
}
