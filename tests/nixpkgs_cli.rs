//! The editor's command functions, called as the binary calls them.

mod nixpkgs_common;

use clap::Parser;
use hydra_sentinel::nixpkgs::cli::{
    LocateArgs, MarkBrokenArgs, Outcome, RetireArgs, run_locate, run_mark_broken, run_retire,
};
use nixpkgs_common::{fixture, fixture_copy};

#[derive(Parser)]
enum Cmd {
    Locate(LocateArgs),
    MarkBroken(MarkBrokenArgs),
    Retire(RetireArgs),
}

/// Parse a command line and run it; (outcome, stdout).
fn run(args: &[&str]) -> (Result<Outcome, String>, String) {
    let cmd = Cmd::try_parse_from(std::iter::once("hydra-sentinel").chain(args.iter().copied()))
        .unwrap_or_else(|e| panic!("{e}"));
    let mut out = Vec::new();
    let result = match &cmd {
        Cmd::Locate(a) => run_locate(a, &mut out),
        Cmd::MarkBroken(a) => run_mark_broken(a, &mut out),
        Cmd::Retire(a) => run_retire(a, &mut out),
    };
    (
        result.map_err(|e| e.to_string()),
        String::from_utf8(out).unwrap(),
    )
}

#[test]
fn the_argument_definitions_are_consistent() {
    use clap::CommandFactory;
    Cmd::command().debug_assert();
}

#[test]
fn locate_prints_a_file_or_a_refusal_per_attribute_and_exits_non_zero_on_refusal() {
    let dir = fixture();
    let (outcome, out) = run(&[
        "locate",
        "--nixpkgs",
        dir.to_str().unwrap(),
        "hello",
        "haskellPackages.pandoc",
    ]);
    assert_eq!(outcome, Ok(Outcome::Refused));
    assert_eq!(Outcome::Refused.exit_code(), 3);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0],
        "hello\tpkgs/by-name/he/hello/package.nix\t(meta at line 23)"
    );
    assert!(
        lines[1].starts_with("haskellPackages.pandoc\trefused: haskellPackages are marked broken")
    );
}

#[test]
fn mark_broken_prints_a_diff_and_writes_nothing_by_default() {
    let dir = fixture_copy();
    let file = dir.path().join("pkgs/by-name/he/hello/package.nix");
    let before = std::fs::read_to_string(&file).unwrap();
    let (outcome, out) = run(&[
        "mark-broken",
        "--nixpkgs",
        dir.path().to_str().unwrap(),
        "hello",
        "--systems",
        "x86_64-darwin,aarch64-darwin",
        "--reason",
        "linker error on darwin",
    ]);
    assert_eq!(outcome, Ok(Outcome::Success));
    assert!(
        out.contains(
            "+    # linker error on darwin\n+    broken = stdenv.hostPlatform.isDarwin;\n"
        ),
        "{out}"
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), before);
}

#[test]
fn mark_broken_writes_with_write() {
    let dir = fixture_copy();
    let file = dir.path().join("pkgs/tools/misc/dotted/default.nix");
    let (outcome, out) = run(&["mark-broken", "--file", file.to_str().unwrap(), "--write"]);
    assert_eq!(outcome, Ok(Outcome::Success), "{out}");
    assert!(
        std::fs::read_to_string(&file)
            .unwrap()
            .contains("  meta.broken = true;\n")
    );
}

#[test]
fn mark_broken_refuses_with_the_reason_and_a_non_zero_outcome() {
    let dir = fixture();
    let (outcome, out) = run(&["mark-broken", "--nixpkgs", dir.to_str().unwrap(), "discord"]);
    assert_eq!(outcome, Ok(Outcome::Refused));
    assert!(
        out.starts_with("discord: refused: meta is bound in a `let`"),
        "{out}"
    );
}

#[test]
fn mark_broken_on_invalid_nix_is_an_error_naming_the_position() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.nix");
    std::fs::write(&file, "{ lib }:\n{ meta = { description = \"x\" }; }\n").unwrap();
    let (outcome, _) = run(&["mark-broken", "--file", file.to_str().unwrap()]);
    let err = outcome.unwrap_err();
    assert!(err.contains("bad.nix:2:"), "{err}");
}

#[test]
fn unknown_systems_are_an_error() {
    let dir = fixture();
    let (outcome, _) = run(&[
        "mark-broken",
        "--nixpkgs",
        dir.to_str().unwrap(),
        "hello",
        "--systems",
        "i686-linux",
    ]);
    assert!(outcome.unwrap_err().contains("unknown system `i686-linux`"));
}

#[test]
fn retire_prints_the_plan_and_applies_it_with_write() {
    let dir = fixture_copy();
    let root = dir.path().to_str().unwrap();
    let (outcome, out) = run(&[
        "retire",
        "--nixpkgs",
        root,
        "oldtool",
        "--date",
        "2026-05-03",
    ]);
    assert_eq!(outcome, Ok(Outcome::Success));
    assert!(
        out.contains("rename to attic/pkgs/tools/misc/oldtool"),
        "{out}"
    );
    assert!(dir.path().join("pkgs/tools/misc/oldtool").is_dir());

    let (outcome, _) = run(&[
        "retire",
        "--nixpkgs",
        root,
        "oldtool",
        "--date",
        "2026-05-03",
        "--write",
    ]);
    assert_eq!(outcome, Ok(Outcome::Success));
    assert!(
        dir.path()
            .join("attic/pkgs/tools/misc/oldtool/default.nix")
            .is_file()
    );
}

#[test]
fn retire_refuses_a_shared_file() {
    let (outcome, out) = run(&[
        "retire",
        "--nixpkgs",
        fixture().to_str().unwrap(),
        "alacritty",
        "--date",
        "2026-05-03",
    ]);
    assert_eq!(outcome, Ok(Outcome::Refused));
    assert!(out.contains("shared by several attributes"), "{out}");
}

#[test]
fn a_checkout_given_relative_to_the_working_directory_is_asked_of_nix_too() {
    nixpkgs_common::nix_instantiate();
    let dir = fixture();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_hydra-sentinel"))
        .args(["locate", "--nixpkgs", ".", "--nix", "hello"])
        .current_dir(&dir)
        .output()
        .expect("running hydra-sentinel");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.starts_with("hello\tpkgs/by-name/he/hello/package.nix"),
        "locate --nixpkgs . --nix hello in {}: {}\n{stdout}{}",
        dir.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn an_attic_outside_the_checkout_or_inside_the_package_is_refused_before_anything_moves() {
    let dir = fixture_copy();
    let root = dir.path().to_str().unwrap();
    // Beside the checkout, named after it: no other test's folder.
    let name = dir.path().file_name().unwrap().to_str().unwrap();
    let beside = format!("../{name}-escape");
    let outside = dir.path().join(&beside);
    for attic in [
        beside.as_str(),
        outside.to_str().unwrap(),
        "pkgs/tools/misc/oldtool/sub",
    ] {
        let (outcome, _) = run(&[
            "retire",
            "--nixpkgs",
            root,
            "oldtool",
            "--attic",
            attic,
            "--write",
        ]);
        let error = outcome.expect_err(attic);
        assert!(error.contains("attic"), "{attic}: {error}");
        assert!(
            dir.path().join("pkgs/tools/misc/oldtool").is_dir()
                && !dir.path().join("pkgs/tools/misc/oldtool/sub").exists()
                && !outside.exists(),
            "{attic}: nothing moved"
        );
    }
}

#[test]
fn mark_broken_refuses_a_since_that_is_not_a_date() {
    let dir = fixture_copy();
    let (outcome, _) = run(&[
        "mark-broken",
        "--nixpkgs",
        dir.path().to_str().unwrap(),
        "hello",
        "--since",
        "notadate",
        "--write",
    ]);
    let error = outcome.expect_err("a date is required");
    assert!(error.contains("notadate"), "{error}");
    assert!(
        !std::fs::read_to_string(dir.path().join("pkgs/by-name/he/hello/package.nix"))
            .unwrap()
            .contains("broken"),
        "nothing is written"
    );
}

#[test]
fn retire_refuses_a_package_other_code_still_uses_and_says_where() {
    let dir = fixture_copy();
    let root = dir.path().to_str().unwrap();
    let before =
        std::fs::read_to_string(dir.path().join("pkgs/top-level/all-packages.nix")).unwrap();
    for (attr, name, user) in [
        // `frobnicate-unstable = frobnicate.overrideAttrs ...`
        (
            "frobnicate",
            "frobnicate",
            "pkgs/top-level/all-packages.nix:20:",
        ),
        // aioamqp takes `pamqp` as an argument.
        (
            "python3Packages.pamqp",
            "pamqp",
            "pkgs/development/python-modules/aioamqp/default.nix:",
        ),
    ] {
        let (outcome, out) = run(&["retire", "--nixpkgs", root, attr, "--write"]);
        assert_eq!(outcome, Ok(Outcome::Refused), "{attr}: {out}");
        assert!(
            out.contains(&format!("`{name}` is still used at {user}")),
            "{attr}: {out}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(dir.path().join("pkgs/top-level/all-packages.nix")).unwrap(),
        before,
        "nothing is written"
    );
    assert!(dir.path().join("pkgs/tools/misc/frobnicate").is_dir());
}

#[test]
fn mark_broken_edits_the_one_package_a_file_of_packages_exposes_and_nix_agrees() {
    let dir = fixture_copy();
    let (outcome, out) = run(&[
        "mark-broken",
        "--nixpkgs",
        dir.path().to_str().unwrap(),
        "solo",
        "--write",
    ]);
    assert_eq!(outcome, Ok(Outcome::Success), "{out}");
    assert_eq!(
        nixpkgs_common::broken_on(dir.path(), "solo"),
        nixpkgs_common::SYSTEMS.to_vec()
    );
}

#[test]
fn mark_broken_with_nix_leaves_packages_that_share_their_meta_alone() {
    nixpkgs_common::nix_instantiate();
    let dir = fixture_copy();
    for attr in ["pair-small", "versions_1"] {
        let (outcome, out) = run(&[
            "mark-broken",
            "--nixpkgs",
            dir.path().to_str().unwrap(),
            "--nix",
            attr,
            "--write",
        ]);
        assert_eq!(outcome, Ok(Outcome::Refused), "{attr}: {out}");
        assert!(
            out.contains("the file builds several packages with it"),
            "{attr}: {out}"
        );
    }
    for attr in ["pair-small", "pair-large", "versions_1", "versions_2"] {
        assert_eq!(
            nixpkgs_common::broken_on(dir.path(), attr),
            Vec::<&str>::new(),
            "{attr}"
        );
    }
}
