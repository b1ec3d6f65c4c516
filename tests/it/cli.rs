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

/// One step of a package in the demo's story: (kind, step, systems, every
/// platform, state).
type StoryStep = (String, Option<String>, Vec<String>, bool, String);

fn story_steps(story: &serde_json::Value, attr: &str) -> Vec<StoryStep> {
    story["packages"][attr]
        .as_array()
        .unwrap_or_else(|| panic!("no steps for {attr} in the story"))
        .iter()
        .map(|s| {
            (
                s["kind"].as_str().unwrap().to_owned(),
                s["step"].as_str().map(str::to_owned),
                s["systems"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_str().unwrap().to_owned())
                    .collect(),
                s["all_platforms"].as_bool().unwrap(),
                s["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn step_day(story: &serde_json::Value, attr: &str, kind: &str, step: Option<&str>) -> i64 {
    story["packages"][attr]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["kind"] == kind && s["step"].as_str() == step)
        .unwrap_or_else(|| panic!("no {kind} {step:?} for {attr}"))["day"]
        .as_i64()
        .unwrap()
}

fn scheduled_day(schedule: &serde_json::Value, kind: &str) -> chrono::NaiveDate {
    let at = schedule
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} in {schedule}"))["at"]
        .as_str()
        .unwrap();
    chrono::NaiveDate::parse_from_str(&at[..10], "%Y-%m-%d").unwrap()
}

#[test]
fn the_demo_tells_the_whole_story_and_its_database_holds_it() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let db = dir.path().join("demo.sqlite");
    let json = run_ok(&["demo", "--json", "--database", db.to_str().unwrap()]);
    let story: serde_json::Value = serde_json::from_str(&json).expect("the story as JSON");
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<String>>();
    let step = |kind: &str, step: Option<&str>, systems: &[&str], all: bool, state: &str| {
        (
            kind.to_owned(),
            step.map(str::to_owned),
            s(systems),
            all,
            state.to_owned(),
        )
    };
    let every = [
        "aarch64-darwin",
        "aarch64-linux",
        "x86_64-darwin",
        "x86_64-linux",
    ];
    let darwins = ["aarch64-darwin", "x86_64-darwin"];

    // Only the packages that failed were spoken of: three on trunk, and a
    // root and its victim on staging-next.
    let attrs: Vec<&String> = story["packages"].as_object().unwrap().keys().collect();
    assert_eq!(
        attrs,
        [
            "frobnicate",
            "hello",
            "python3Packages.aioamqp",
            "python3Packages.pamqp",
            "umurmur"
        ],
        "{json}"
    );

    // umurmur fails everywhere: notice, reminder, a mark on every platform
    // that a committer merges, the last warning, then the attic.
    assert_eq!(
        story_steps(&story, "umurmur"),
        [
            step("notify", Some("notice"), &every, false, "done"),
            step("remind", Some("remind-3d"), &every, false, "done"),
            step("mark_broken", None, &every, true, "merged"),
            step("remind", Some("retire-warning"), &every, true, "done"),
            step("retire", None, &every, true, "open"),
        ],
        "{json}"
    );
    let retirement = &story["retirement"];
    assert_eq!(retirement["attr"], "umurmur", "{json}");
    let alias = retirement["alias"].as_str().unwrap_or_default();
    assert!(
        alias.starts_with("umurmur = throw ") && alias.contains("# Added "),
        "the retirement adds a throw alias: {alias:?}"
    );
    let files = retirement["files"].as_array().unwrap();
    assert!(
        files.iter().any(|f| f[0] == "renamed"
            && f[1] == "pkgs/by-name/um/umurmur/package.nix"
            && f[2]
                .as_str()
                .is_some_and(|p| p.ends_with("attic/pkgs/by-name/um/umurmur/package.nix"))),
        "the package moves to the attic: {files:?}"
    );
    assert_eq!(story["merged"]["pr"], story["packages"]["umurmur"][2]["pr"]);

    // frobnicate fails on both darwins: its maintainer snoozes it, the dates
    // move by the snooze, it is marked on the darwins only, and when it
    // builds again the bot closes its pull request.
    assert_eq!(
        story_steps(&story, "frobnicate"),
        [
            step("notify", Some("notice"), &darwins, false, "done"),
            step("remind", Some("remind-3d"), &darwins, false, "done"),
            step("mark_broken", None, &darwins, false, "closed"),
            step("close_pr", None, &darwins, false, "done"),
        ],
        "{json}"
    );
    let snooze = &story["snooze"];
    assert_eq!(snooze["attr"], "frobnicate");
    assert!(
        snooze["reply"]
            .as_str()
            .is_some_and(|r| r.starts_with("@bob understood")),
        "{snooze}"
    );
    let days = snooze["days"].as_i64().unwrap();
    for kind in ["remind", "mark_broken"] {
        let before = scheduled_day(&snooze["schedule_before"], kind);
        let after = scheduled_day(&snooze["schedule_after"], kind);
        assert_eq!(
            (after - before).num_days(),
            days,
            "the snooze moved {kind} by its length: {snooze}"
        );
    }
    let mark_day = step_day(&story, "frobnicate", "mark_broken", None);
    let planned_mark = scheduled_day(&snooze["schedule_after"], "mark_broken");
    let start =
        chrono::NaiveDate::parse_from_str(&story["from"].as_str().unwrap()[..10], "%Y-%m-%d")
            .unwrap();
    assert_eq!(
        start + chrono::Days::new(mark_day as u64),
        planned_mark,
        "marked on the moved date"
    );
    let recovered = &story["recovered"];
    assert_eq!(recovered["attr"], "frobnicate", "{json}");
    assert_eq!(recovered["state_at_end"], "closed");
    assert_eq!(recovered["merged"], false);
    assert_eq!(recovered["pr"], story["packages"]["frobnicate"][2]["pr"]);

    // hello fails on aarch64-linux only; its maintainer closes the pull
    // request, which is never reopened nor proposed again.
    assert_eq!(
        story_steps(&story, "hello"),
        [
            step("notify", Some("notice"), &["aarch64-linux"], false, "done"),
            step(
                "remind",
                Some("remind-3d"),
                &["aarch64-linux"],
                false,
                "done"
            ),
            step("mark_broken", None, &["aarch64-linux"], false, "closed"),
        ],
        "{json}"
    );
    let closed = &story["human_closed"];
    assert_eq!(closed["state_at_end"], "closed", "{json}");
    assert!(closed["days_after"].as_i64().unwrap() > 60, "{closed}");
    let pulls = story["pull_requests"].as_array().unwrap();
    let about_hello = pulls
        .iter()
        .filter(|p| p["title"].as_str().unwrap().starts_with("hello:"))
        .count();
    assert_eq!(about_hello, 1, "{pulls:?}");

    // pamqp breaks on staging-next only: warned once while the branch's pull
    // request is open, edited as evals come in, closed when it builds on
    // the branch again; never marked.
    for attr in ["python3Packages.pamqp", "python3Packages.aioamqp"] {
        let steps = story_steps(&story, attr);
        let (first, rest) = steps.split_first().expect("a warning");
        assert_eq!(
            *first,
            step("warn", Some("notice"), &every, false, "done"),
            "{attr}: {steps:?}"
        );
        let (last, updates) = rest.split_last().expect("more than the notice");
        assert_eq!(
            *last,
            step("warn", Some("close"), &every, false, "done"),
            "{attr}: {steps:?}"
        );
        assert!(
            !updates.is_empty()
                && updates.iter().all(|u| u.0 == "warn"
                    && u.1.as_deref().is_some_and(|s| s.starts_with("update-"))
                    && u.4 == "done"),
            "{attr}: between notice and close, edits only: {steps:?}"
        );
    }
    let warning = &story["early_warning"];
    let notice = warning["notice"].as_str().expect("the warning's text");
    assert!(
        notice.contains(&format!(
            "The branch's pull request: [#{pull}](https://github.com/NixOS/nixpkgs/pull/{pull}) (staging-next 2026-02-15) into `master` is open",
            pull = warning["pull"]
        )),
        "{notice}"
    );
    assert!(notice.contains("cc @alice-gh"), "{notice}");
    assert_eq!(warning["state_at_end"], "closed", "{warning}");

    // One digest a week, each closed when the next came.
    let digests = story["digests"].as_array().unwrap();
    let weeks = (story["days"].as_i64().unwrap() + 6) / 7;
    assert_eq!(digests.len() as i64, weeks, "{digests:?}");
    let open: Vec<_> = digests.iter().filter(|d| d["state"] == "open").collect();
    assert_eq!(open.len(), 1, "{digests:?}");
    assert_eq!(open[0]["number"], digests.last().unwrap()["number"]);

    // The kept database holds the same ledger.
    let store = hydra_sentinel::store::Store::open_read_only(&db).unwrap();
    let ledger = store.ledger().unwrap();
    let marks: Vec<(String, Vec<String>, bool)> = ledger
        .actions
        .iter()
        .filter(|r| r.kind == hydra_sentinel::policy::ActionKind::MarkBroken)
        .map(|r| (r.attr.clone().unwrap(), r.systems.clone(), r.all_platforms))
        .collect();
    assert_eq!(
        marks,
        [
            ("umurmur".to_owned(), s(&every), true),
            ("frobnicate".to_owned(), s(&darwins), false),
            ("hello".to_owned(), s(&["aarch64-linux"]), false),
        ]
    );
}

#[test]
fn the_demo_refuses_an_existing_database_rather_than_mix_two_stories() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let db = dir.path().join("demo.sqlite");
    std::fs::write(&db, "").unwrap();
    let output = hydra_sentinel(&["demo", "--database", db.to_str().unwrap()]);
    assert!(!output.status.success(), "{}", describe(&["demo"], &output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("already exists"),
        "{}",
        describe(&["demo"], &output)
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
