//! `hydra-sentinel doctor`, the real binary, against the look-alikes: a
//! good setup, and bad ones each named with how to fix them.

use std::path::PathBuf;
use std::process::Command;

use hydra_sentinel::sim::{FakeGitHub, FakeHydra, SimHydra};

use crate::helpers::{acting_config, git, small_spec};

const TOKEN: &str = "ghp_doctor_token_that_must_never_leak_0123";

struct Setup {
    dir: tempfile::TempDir,
    _hydra: FakeHydra,
    github: FakeGitHub,
    config: PathBuf,
}

impl Setup {
    /// What a good setup looks like: the bot's classic token, its fork with
    /// push access, a clone of nixpkgs, Hydra answering.
    fn good() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let upstream = root.join("upstream");
        std::fs::create_dir(&upstream).unwrap();
        git(&upstream, &["init", "-q", "-b", "master"]);
        std::fs::write(upstream.join("default.nix"), "{ }\n").unwrap();
        git(&upstream, &["add", "-A"]);
        git(&upstream, &["commit", "-q", "-m", "nixpkgs"]);
        git(root, &["clone", "-q", "upstream", "checkout"]);
        let hydra = FakeHydra::start(SimHydra::generate(&small_spec(3, 3))).unwrap();
        let github = FakeGitHub::start("NixOS/nixpkgs", "sentinel-bot", TOKEN).unwrap();
        github.add_fork("sentinel-bot/nixpkgs", true);
        let config = acting_config(
            root,
            &hydra,
            &github,
            TOKEN,
            "mention = \"@sentinel-bot\"\n",
        );
        Setup {
            dir,
            _hydra: hydra,
            github,
            config,
        }
    }

    /// `doctor`'s exit status and what it said.
    fn doctor(&self) -> (bool, String) {
        let output = Command::new(env!("CARGO_BIN_EXE_hydra-sentinel"))
            .args(["--config", self.config.to_str().unwrap(), "doctor"])
            .output()
            .unwrap();
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(!said.contains(TOKEN), "the token leaked: {said}");
        (output.status.success(), said)
    }

    fn writes(&self) -> usize {
        self.github
            .requests()
            .iter()
            .filter(|r| r.method != "GET")
            .count()
    }
}

#[test]
fn a_good_setup_passes_every_check_and_writes_nothing() {
    let setup = Setup::good();
    let (ok, said) = setup.doctor();
    assert!(ok, "{said}");
    for line in [
        "ok: the token is a classic personal access token of sentinel-bot",
        "ok: its scopes: public_repo",
        "ok: its role on NixOS/nixpkgs is pull: labels are left off",
        "ok: sentinel-bot/nixpkgs is a fork of NixOS/nixpkgs; its default branch is master",
        "ok: the token may push to sentinel-bot/nixpkgs",
        "ok: @sentinel-bot is the bot",
        "ok: Hydra answers at",
        "has origin/master",
        "ok: nothing to fix",
    ] {
        assert!(said.contains(line), "missing {line:?}:\n{said}");
    }
    assert!(!said.contains("problem:"), "{said}");
    assert_eq!(setup.writes(), 0, "doctor only reads");
}

#[test]
fn a_missing_token_and_a_missing_checkout_are_problems_with_their_fixes() {
    let setup = Setup::good();
    std::fs::remove_file(setup.dir.path().join("token")).unwrap();
    std::fs::remove_dir_all(setup.dir.path().join("checkout")).unwrap();
    let (ok, said) = setup.doctor();
    assert!(!ok, "{said}");
    assert!(
        said.contains("problem: cannot read the GitHub token from")
            && said.contains("fix: write the bot's token to"),
        "{said}"
    );
    assert!(
        said.contains("is not a clone of nixpkgs with origin/master")
            && said.contains("fix: git clone https://github.com/NixOS/nixpkgs"),
        "{said}"
    );
    assert!(said.contains("2 problems to fix"), "{said}");
}

#[test]
fn a_token_without_scope_or_push_and_a_mention_of_someone_else_are_problems() {
    let setup = Setup::good();
    setup.github.set_scopes(Some("read:org"));
    setup.github.add_fork("sentinel-bot/nixpkgs", false);
    setup.github.add_account("hydra-sentinel");
    let config = std::fs::read_to_string(&setup.config).unwrap().replace(
        "mention = \"@sentinel-bot\"",
        "mention = \"@hydra-sentinel\"",
    );
    std::fs::write(&setup.config, config).unwrap();
    let (ok, said) = setup.doctor();
    assert!(!ok, "{said}");
    for line in [
        "problem: the token's scopes (read:org) do not include public_repo",
        "problem: the token may not push to sentinel-bot/nixpkgs",
        "problem: @hydra-sentinel is another account (hydra-sentinel)",
        "fix: set [act] mention to \"@sentinel-bot\"",
        "3 problems to fix",
    ] {
        assert!(said.contains(line), "missing {line:?}:\n{said}");
    }
}

#[test]
fn a_missing_fork_is_a_problem() {
    let setup = Setup::good();
    let config = std::fs::read_to_string(&setup.config).unwrap().replace(
        "fork = \"sentinel-bot/nixpkgs\"",
        "fork = \"sentinel-bot/nixpkgs-typo\"",
    );
    std::fs::write(&setup.config, config).unwrap();
    let (ok, said) = setup.doctor();
    assert!(!ok, "{said}");
    assert!(
        said.contains(
            "problem: sentinel-bot/nixpkgs-typo does not exist or this token cannot see it"
        ) && said.contains("fix: fork NixOS/nixpkgs as sentinel-bot on GitHub"),
        "{said}"
    );
}
