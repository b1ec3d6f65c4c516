//! Locating attributes in the fixture checkout: static index, refusals, Nix cross-check.

mod nixpkgs_common;

use std::path::{Path, PathBuf};

use hydra_sentinel::nixpkgs::nix::{NixInstantiate, NixOracle};
use hydra_sentinel::nixpkgs::source::FsTree;
use hydra_sentinel::nixpkgs::{Index, NixpkgsError, Refusal, locate};
use nixpkgs_common::fixture;

fn located_file(attr: &str) -> PathBuf {
    let tree = FsTree::new(fixture());
    let index = Index::build(&tree).unwrap();
    match locate(&index, &tree, None, attr) {
        Ok(located) => located.location.file,
        Err(e) => panic!("{attr}: {e}"),
    }
}

fn refusal_for(attr: &str) -> Refusal {
    let tree = FsTree::new(fixture());
    let index = Index::build(&tree).unwrap();
    match locate(&index, &tree, None, attr) {
        Err(NixpkgsError::Refused { reason, .. }) => reason,
        other => panic!("{attr}: expected a refusal, got {other:?}"),
    }
}

#[test]
fn finds_a_by_name_package() {
    assert_eq!(
        located_file("hello"),
        Path::new("pkgs/by-name/he/hello/package.nix")
    );
}

#[test]
fn follows_a_wrapped_multi_line_call_package_to_the_directory_default_nix() {
    assert_eq!(
        located_file("frobnicate"),
        Path::new("pkgs/tools/misc/frobnicate/default.nix")
    );
}

#[test]
fn follows_a_call_package_on_a_file() {
    assert_eq!(
        located_file("ghidra"),
        Path::new("pkgs/tools/security/ghidra/build.nix")
    );
}

#[test]
fn finds_python_modules_under_every_spelling_of_the_python_set() {
    for attr in [
        "python3Packages.aioamqp",
        "python313Packages.aioamqp",
        "python3.pkgs.aioamqp",
    ] {
        assert_eq!(
            located_file(attr),
            Path::new("pkgs/development/python-modules/aioamqp/default.nix"),
            "{attr}"
        );
    }
}

#[test]
fn finds_dotted_meta_packages() {
    assert_eq!(
        located_file("dotted"),
        Path::new("pkgs/tools/misc/dotted/default.nix")
    );
}

#[test]
fn refuses_haskell_packages() {
    assert_eq!(
        refusal_for("haskellPackages.ShellCheck"),
        Refusal::HaskellPackage
    );
}

#[test]
fn refuses_meta_inherited_from_another_package() {
    assert!(
        matches!(refusal_for("shellcheck"), Refusal::InheritedMeta { from, .. } if from == "ShellCheck")
    );
}

#[test]
fn refuses_a_by_name_file_reused_by_an_override_and_names_both_attributes() {
    match refusal_for("alacritty") {
        Refusal::SharedMeta { attrs, .. } => assert_eq!(attrs, ["alacritty", "alacritty-graphics"]),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        refusal_for("alacritty-graphics"),
        Refusal::SharedMeta { .. }
    ));
}

#[test]
fn refuses_a_python_module_also_exposed_as_an_application() {
    match refusal_for("python3Packages.pycowsay") {
        Refusal::SharedMeta { attrs, .. } => {
            assert_eq!(attrs, ["pycowsay", "python3Packages.pycowsay"])
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn refuses_meta_bound_in_a_let() {
    assert!(matches!(refusal_for("discord"), Refusal::MetaInLet { .. }));
}

#[test]
fn refuses_overrides_naming_the_base_package() {
    assert_eq!(
        refusal_for("frobnicate-unstable"),
        Refusal::OverrideOf {
            base: "frobnicate".into()
        }
    );
}

#[test]
fn refuses_packages_without_meta() {
    assert!(matches!(refusal_for("foo-wrapped"), Refusal::NoMeta { .. }));
}

#[test]
fn refuses_unknown_attributes_and_unsupported_sets() {
    assert_eq!(refusal_for("no-such-package"), Refusal::NotFound);
    assert_eq!(
        refusal_for("nodePackages.foo"),
        Refusal::UnsupportedPackageSet {
            set: "nodePackages".into()
        }
    );
}

#[test]
fn rejects_attribute_paths_that_could_inject_nix_code() {
    let tree = FsTree::new(fixture());
    let index = Index::build(&tree).unwrap();
    for attr in ["foo; builtins.abort 1", "a..b", "${x}", "../etc"] {
        assert!(
            matches!(
                locate(&index, &tree, None, attr),
                Err(NixpkgsError::InvalidAttrPath(_))
            ),
            "{attr}"
        );
    }
}

#[test]
fn nix_agrees_with_the_static_index_and_gives_the_description_line() {
    nixpkgs_common::nix_instantiate();
    let tree = FsTree::new(fixture());
    let index = Index::build(&tree).unwrap();
    let oracle = NixOracle {
        nix: NixInstantiate::from_path().unwrap(),
        nixpkgs: fixture(),
    };
    for (attr, line) in [
        ("hello", 24),
        ("frobnicate", 13),
        ("python3Packages.aioamqp", 23),
    ] {
        let located = locate(&index, &tree, Some(&oracle), attr).unwrap();
        assert_eq!(located.nix_line, Some(line), "{attr}");
    }
}
