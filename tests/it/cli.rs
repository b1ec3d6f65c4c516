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
        stderr.contains(&format!(
            "{}:3:1: unknown field `timeout`",
            config.display()
        )),
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

/// A folder holding one file with `text`; returns both.
fn file_with(name: &str, text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

/// Run and require the error exit (2); returns stderr.
fn run_refused(args: &[&str]) -> String {
    let output = hydra_sentinel(args);
    assert_eq!(output.status.code(), Some(2), "{}", describe(args, &output));
    assert!(output.stdout.is_empty(), "{}", describe(args, &output));
    String::from_utf8(output.stderr).expect("UTF-8 errors")
}

#[test]
fn config_check_says_ok_for_the_shipped_example_and_for_the_policy_file_it_names() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/hydra-sentinel.toml");
    assert_eq!(
        run_ok(&["config", "check", example]),
        format!("ok: {example}\n")
    );

    let policy = concat!(env!("CARGO_MANIFEST_DIR"), "/policies/nixpkgs.toml");
    let (_dir, config) = file_with("c.toml", &format!("[policy]\nfile = {policy:?}\n"));
    let config = config.to_str().unwrap();
    assert_eq!(
        run_ok(&["config", "check", config]),
        format!("ok: {config}\nok: {policy} (its [policy] file)\n")
    );
}

#[test]
fn config_check_refuses_a_bad_value_naming_file_line_and_column() {
    let (_dir, config) = file_with("bad.toml", "[hydra]\nmax_in_flight = 9\n");
    let config = config.to_str().unwrap();
    assert_eq!(
        run_refused(&["config", "check", config]),
        format!(
            "hydra-sentinel: {config}:2:17: hydra.max_in_flight must be 1 or 2 (Hydra is a shared service), not 9\n"
        )
    );
}

#[test]
fn config_check_refuses_an_unknown_key_naming_its_place_in_one_line() {
    let (_dir, config) = file_with(
        "typo.toml",
        "[hydra]\nurl = \"https://hydra.nixos.org\"\nurll = \"x\"\n",
    );
    let config = config.to_str().unwrap();
    let stderr = run_refused(&["config", "check", config]);
    assert!(
        stderr.starts_with(&format!(
            "hydra-sentinel: {config}:3:1: unknown field `urll`, expected one of `url`,"
        )),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "said once, no excerpt: {stderr}");
}

#[test]
fn config_check_refuses_a_config_whose_policy_file_is_bad_naming_the_policy_s_place() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, "[ladder]\nnotify_after = \"3 days\"\n").unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(&config, format!("[policy]\nfile = {policy:?}\n")).unwrap();
    let stderr = run_refused(&["config", "check", config.to_str().unwrap()]);
    assert!(
        stderr.starts_with(&format!(
            "hydra-sentinel: {}:2:16: notify_after: \"3 days\": unknown unit",
            policy.display()
        )),
        "{stderr}"
    );

    std::fs::remove_file(&policy).unwrap();
    let stderr = run_refused(&["config", "check", config.to_str().unwrap()]);
    assert!(
        stderr.contains(&format!("cannot read the policy {}", policy.display())),
        "{stderr}"
    );
}

/// The subcommands `hydra-sentinel help` lists, `help` itself aside.
fn subcommands() -> Vec<String> {
    let help = run_ok(&["help"]);
    let commands: Vec<String> = help
        .split_once("Commands:\n")
        .expect("a Commands: section in the help")
        .1
        .lines()
        .take_while(|line| line.starts_with("  "))
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect();
    for expected in ["run", "once", "mark-broken", "config", "completions", "man"] {
        assert!(commands.iter().any(|c| c == expected), "{commands:?}");
    }
    commands
}

#[test]
fn completion_scripts_name_every_subcommand_for_bash_zsh_and_fish() {
    let commands = subcommands();
    for shell in ["bash", "zsh", "fish"] {
        let script = run_ok(&["completions", shell]);
        for command in &commands {
            assert!(
                script.contains(command.as_str()),
                "{shell} completions lack {command}"
            );
        }
    }
    let bash = run_ok(&["completions", "bash"]);
    assert!(
        bash.contains("complete -F _hydra__sentinel"),
        "the script registers itself for hydra-sentinel:\n{bash}"
    );
}

/// What bash offers after `words` (the last one being completed).
fn bash_completes(script: &std::path::Path, words: &[&str]) -> Vec<String> {
    let line = words
        .iter()
        .map(|w| format!("'{w}'"))
        .collect::<Vec<_>>()
        .join(" ");
    let program = format!(
        "source {script:?}\nCOMP_WORDS=({line})\nCOMP_CWORD={cword}\n\
         _hydra__sentinel hydra-sentinel '{cur}' '{prev}'\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"",
        cword = words.len() - 1,
        cur = words[words.len() - 1],
        prev = words[words.len() - 2],
    );
    let output = Command::new("bash")
        .args(["-c", &program])
        .output()
        .expect("running bash");
    assert!(
        output.status.success(),
        "bash: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn bash_completes_subcommands_and_their_options() {
    let has_compgen = Command::new("bash")
        .args(["-c", "type compgen"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_compgen {
        eprintln!("skipped: this bash has no programmable completion (compgen)");
        return;
    }
    let (_dir, script) = file_with("hydra-sentinel.bash", &run_ok(&["completions", "bash"]));
    assert_eq!(
        bash_completes(&script, &["hydra-sentinel", "co"]),
        ["config", "completions"]
    );
    // A subcommand's own options: what clap_complete alone gets wrong for a
    // name with a hyphen.
    let options = bash_completes(&script, &["hydra-sentinel", "mark-broken", "--"]);
    for option in ["--nixpkgs", "--systems", "--write", "--config"] {
        assert!(options.iter().any(|o| o == option), "{options:?}");
    }
    assert!(
        bash_completes(&script, &["hydra-sentinel", "config", "ch"]) == ["check"],
        "config's own subcommand"
    );
    assert_eq!(
        bash_completes(&script, &["hydra-sentinel", "completions", "f"]),
        ["fish"]
    );
}

#[test]
fn the_man_page_opens_with_its_title_and_names_every_subcommand() {
    let page = run_ok(&["man"]);
    // clap_mangen puts two lines defining a quote string before the title.
    let first_request = page
        .lines()
        .find(|line| line.starts_with(".TH") || line.starts_with(".SH"))
        .expect("roff requests");
    assert!(
        first_request.starts_with(".TH hydra-sentinel 1 "),
        "{first_request}"
    );
    assert!(
        page.lines().take(3).all(|l| l.starts_with('.')),
        "nothing but roff before the title:\n{page}"
    );
    assert!(page.contains("\n.SH SUBCOMMANDS\n"), "{page}");
    for command in subcommands() {
        let reference = format!("hydra\\-sentinel\\-{}(1)", command.replace('-', "\\-"));
        assert!(page.contains(&reference), "no {reference} in\n{page}");
    }
}

#[test]
fn man_writes_a_page_per_subcommand_that_groff_renders_without_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_ok(&["man", "--out-dir", dir.path().to_str().unwrap()]);
    assert_eq!(out, "", "pages go to the folder, not stdout");
    let mut pages: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    pages.sort();
    for page in std::iter::once("hydra-sentinel.1".to_owned())
        .chain(
            subcommands()
                .iter()
                .map(|c| format!("hydra-sentinel-{c}.1")),
        )
        .chain(
            [
                "hydra-sentinel-config-check.1",
                "hydra-sentinel-policy-check.1",
            ]
            .map(String::from),
        )
    {
        assert!(pages.contains(&page), "{page} missing from {pages:?}");
    }
    if Command::new("groff").arg("--version").output().is_err() {
        eprintln!("skipped rendering: groff is not installed");
        return;
    }
    for page in &pages {
        let output = Command::new("groff")
            .args(["-man", "-Tutf8", "-ww", "-z"])
            .arg(dir.path().join(page))
            .output()
            .expect("running groff");
        assert!(
            output.status.success() && output.stderr.is_empty(),
            "groff on {page}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
