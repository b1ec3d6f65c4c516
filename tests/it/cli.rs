//! The real binary, as a user runs it.

use std::process::{Command, Output};

use crate::helpers::{Sandbox, small_spec, start};

fn hydra_sentinel(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hydra-sentinel"))
        .args(args)
        .env_remove("HYDRA_SENTINEL_CONFIG")
        .env("HYDRA_SENTINEL_LOG", "warn")
        .output()
        .expect("running hydra-sentinel")
}

fn describe(args: &[&str], output: &Output) -> String {
    format!(
        "hydra-sentinel {}\nstatus: {}\nstdout:\n{}\nstderr:\n{}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Run and require success; returns stdout.
fn run_ok(args: &[&str]) -> String {
    let output = hydra_sentinel(args);
    assert!(output.status.success(), "{}", describe(args, &output));
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

#[test]
fn ingest_then_status_json_has_the_documented_shape() {
    let hydra = start(&small_spec(20, 3));
    let sandbox = Sandbox::new(&hydra, "");
    let config = sandbox.config_path.to_str().unwrap();
    let out = run_ok(&["--config", config, "ingest"]);
    assert!(out.contains("nixpkgs:trunk: 3 new evals"), "{out}");

    let status: serde_json::Value =
        serde_json::from_str(&run_ok(&["--config", config, "status", "--json"])).unwrap();
    let jobset = &status["jobsets"][0];
    assert_eq!(jobset["project"], "nixpkgs");
    assert_eq!(jobset["jobset"], "trunk");
    assert_eq!(jobset["evals"], 3);
    assert_eq!(jobset["latest_eval"]["id"], hydra.hydra().evals[2].id);
    let total: i64 = ["ok", "failing", "dependency_failed", "noise", "pending"]
        .iter()
        .map(|k| {
            jobset["jobs"][k]
                .as_i64()
                .unwrap_or_else(|| panic!("jobs.{k} missing in {status}"))
        })
        .sum();
    assert_eq!(total, hydra.hydra().evals[2].builds.len() as i64);
}

#[test]
fn the_config_can_come_from_the_environment() {
    let hydra = start(&small_spec(5, 1));
    let sandbox = Sandbox::new(&hydra, "");
    let output = Command::new(env!("CARGO_BIN_EXE_hydra-sentinel"))
        .args(["ingest", "--max-evals", "1"])
        .env("HYDRA_SENTINEL_CONFIG", &sandbox.config_path)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        describe(&["ingest"], &output)
    );
    assert!(sandbox.db().exists());
}

#[test]
fn history_json_explains_a_failing_job_with_links() {
    // Every eval rebuilds everything, so the newest build is new and the
    // one before it succeeded.
    let hydra = start(&hydra_sentinel::sim::SimSpec {
        rebuild_rate: 1.0,
        ..small_spec(5, 3)
    });
    let sim = hydra.hydra();
    let newest = sim.evals.last().unwrap();
    let victim = sim.builds[&newest.builds[0]].clone();
    hydra.edit_build(victim.id, |b| b.finish(1, 1_800_000_000));
    let sandbox = Sandbox::new(&hydra, "");
    let config = sandbox.config_path.to_str().unwrap();
    run_ok(&["--config", config, "ingest"]);
    let attr = victim
        .job
        .strip_suffix(&format!(".{}", victim.system))
        .unwrap();
    let history: serde_json::Value =
        serde_json::from_str(&run_ok(&["--config", config, "history", attr, "--json"])).unwrap();
    let job = history["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["system"] == victim.system.as_str())
        .unwrap_or_else(|| panic!("no {} in {history}", victim.system));
    assert_eq!(job["class"], "failing", "{job}");
    let streak = &job["streak"];
    for key in ["since", "since_eval", "evals", "distinct_drvs"] {
        assert!(!streak[key].is_null(), "streak.{key} missing: {job}");
    }
    assert_eq!(job["last_success"]["eval"], sim.evals[1].id, "{job}");
    assert_eq!(
        job["last_success"]["revision"],
        sim.evals[1].revision.as_str(),
        "{job}"
    );
    assert!(job["last_success"]["time"].is_string(), "{job}");
    assert_eq!(streak["since_eval"], newest.id, "{job}");
    assert_eq!(streak["evals"], 1, "{job}");
    assert_eq!(
        job["links"]["latest_build"],
        format!("{}/build/{}", hydra.url(), victim.id)
    );

    let text = run_ok(&["--config", config, "history", attr]);
    assert!(text.contains("failing since"), "{text}");
}

#[test]
fn history_of_an_unknown_attribute_exits_non_zero() {
    let hydra = start(&small_spec(3, 1));
    let sandbox = Sandbox::new(&hydra, "");
    let config = sandbox.config_path.to_str().unwrap();
    run_ok(&["--config", config, "ingest"]);
    let output = hydra_sentinel(&["--config", config, "history", "no-such-package"]);
    assert_eq!(
        output.status.code(),
        Some(1),
        "{}",
        describe(&["history"], &output)
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("no job for attribute"));
}

#[test]
fn a_bad_config_is_refused_with_file_line_and_column_and_touches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.sqlite");
    let config = dir.path().join("bad.toml");
    std::fs::write(
        &config,
        format!(
            "[database]\npath = {:?}\n\n[hydra]\nmax_in_flight = 9\n",
            db.display().to_string()
        ),
    )
    .unwrap();
    let output = hydra_sentinel(&["--config", config.to_str().unwrap(), "ingest"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains(&format!("{}:5:17:", config.display())),
        "{stderr}"
    );
    assert!(
        !db.exists(),
        "a refused config must not create the database"
    );

    std::fs::write(
        &config,
        "[hydra]\nurl = \"https://hydra.nixos.org\"\ntimeout = 3\n",
    )
    .unwrap();
    let output = hydra_sentinel(&["--config", config.to_str().unwrap(), "status"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("line 3") && stderr.contains("timeout"),
        "{stderr}"
    );
}

#[test]
fn status_before_any_ingest_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!(
            "[database]\npath = {:?}\n",
            dir.path().join("s.sqlite").display().to_string()
        ),
    )
    .unwrap();
    let output = hydra_sentinel(&["--config", config.to_str().unwrap(), "status"]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("run `hydra-sentinel ingest` first"));
}

#[test]
fn the_demo_plans_the_planted_failures_and_prints_that_plan() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let db = dir.path().join("demo.sqlite");
    let out = run_ok(&["demo", "--database", db.to_str().unwrap()]);

    // The kept database holds the whole generated history...
    let config = dir.path().join("demo.toml");
    std::fs::write(
        &config,
        format!("[database]\npath = {:?}\n", db.display().to_string()),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let status: serde_json::Value =
        serde_json::from_str(&run_ok(&["--config", config, "status", "--json"])).unwrap();
    let sim = hydra_sentinel::sim::SimHydra::generate(&hydra_sentinel::sim::SimSpec::demo());
    assert_eq!(status["jobsets"][0]["evals"], sim.evals.len(), "{status}");

    // ...and the demo's plan, as of an hour after the newest eval, is one
    // notice per planted own failure on its failing systems, libfoo's
    // carrying its three victims; nothing for the victims, the flaky job,
    // the recovered, the removed or the hostile names.
    let newest = sim.evals.last().expect("the demo has evals").timestamp;
    let now = hydra_sentinel::report::time(newest + 3600);
    let json = run_ok(&["--config", config, "plan", "--json", "--now", &now]);
    let plan: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    assert_eq!(
        crate::policy::planned_in_json(&plan),
        crate::policy::planted_plan(),
        "{json}"
    );
    let libfoo = plan["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["attr"] == "libfoo")
        .unwrap_or_else(|| panic!("no libfoo in {json}"));
    assert_eq!(libfoo["evidence"]["blast_radius"], 3, "{libfoo}");
    assert_eq!(plan["deferred"], serde_json::json!([]), "{json}");

    // What the demo printed is that plan, word for word.
    let text = run_ok(&["--config", config, "plan", "--now", &now]);
    let heading = format!("$ hydra-sentinel plan --now {now}   (dry run, built-in policy)\n");
    let printed = out
        .split_once(&heading)
        .map(|(_, rest)| rest)
        .unwrap_or_else(|| panic!("the demo printed no plan:\n{out}"));
    assert!(
        printed.starts_with(&text),
        "the demo printed another plan than `plan --now {now}`:\n{text}\n---\n{printed}"
    );
}
