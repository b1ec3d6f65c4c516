//! Locating attributes in the fixture checkout: static index, refusals, Nix cross-check.

mod nixpkgs_common;

use std::path::{Path, PathBuf};

use hydra_sentinel::nixpkgs::nix::{NixInstantiate, NixOracle};
use hydra_sentinel::nixpkgs::source::FsTree;
use hydra_sentinel::nixpkgs::{Index, NixpkgsError, Refusal, SharedBy, locate};
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

/// The fixture checkout, its static index, and real Nix to ask.
fn fixture_with_nix() -> (FsTree, Index, NixOracle) {
    nixpkgs_common::nix_instantiate();
    let tree = FsTree::new(fixture());
    let index = Index::build(&tree).unwrap();
    let oracle = NixOracle {
        nix: NixInstantiate::from_path().unwrap(),
        nixpkgs: fixture(),
    };
    (tree, index, oracle)
}

#[test]
fn nix_agrees_with_the_static_index_and_gives_the_description_line() {
    let (tree, index, oracle) = fixture_with_nix();
    for (attr, line) in [
        ("hello", 24),
        ("frobnicate", 13),
        ("python3Packages.aioamqp", 23),
    ] {
        let located = locate(&index, &tree, Some(&oracle), attr).unwrap();
        assert_eq!(located.nix_line, Some(line), "{attr}");
    }
}

#[test]
fn refuses_packages_inherited_together_from_one_call_and_names_them() {
    assert_eq!(
        refusal_for("twin-a"),
        Refusal::SharedMeta {
            file: "pkgs/tools/misc/twins/default.nix".into(),
            attrs: vec!["twin-a".into(), "twin-b".into()],
        }
    );
}

#[test]
fn finds_the_one_package_inherited_from_a_call() {
    assert_eq!(
        located_file("solo"),
        Path::new("pkgs/tools/misc/solo/default.nix")
    );
}

/// Locate `attr` with Nix's help: only Nix knows these attributes.
fn refusal_with_nix(attr: &str) -> Refusal {
    let (tree, index, oracle) = fixture_with_nix();
    assert_eq!(
        refusal_for(attr),
        Refusal::NotFound,
        "{attr} is one the static index does not know"
    );
    match locate(&index, &tree, Some(&oracle), attr) {
        Err(NixpkgsError::Refused { reason, .. }) => reason,
        other => panic!("{attr}: expected a refusal, got {other:?}"),
    }
}

#[test]
fn refuses_a_meta_in_a_function_the_file_calls_for_several_packages() {
    match refusal_with_nix("pair-small") {
        Refusal::SharedFunction { function, pos } => {
            assert_eq!(
                function,
                SharedBy::Name {
                    name: "common".into(),
                    uses: 2
                }
            );
            assert_eq!(
                (pos.file.as_path(), pos.line),
                (Path::new("pkgs/tools/misc/pair/default.nix"), 11)
            );
        }
        other => panic!("pair-small: {other:?}"),
    }
}

#[test]
fn refuses_a_meta_in_a_function_handed_to_map_attrs() {
    match refusal_with_nix("versions_1") {
        Refusal::SharedFunction { function, .. } => assert_eq!(
            function,
            SharedBy::Iterator {
                over: "mapAttrs".into()
            }
        ),
        other => panic!("versions_1: {other:?}"),
    }
}

/// Locate `attr` in a checkout made of `files` (path, text), by the static index.
fn locate_in(files: &[(&str, &str)], attr: &str) -> Result<PathBuf, Refusal> {
    let dir = tempfile::tempdir().unwrap();
    for (path, text) in files {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    let tree = FsTree::new(dir.path());
    let index = Index::build(&tree).unwrap();
    match locate(&index, &tree, None, attr) {
        Ok(located) => Ok(located.location.file),
        Err(NixpkgsError::Refused { reason, .. }) => Err(reason),
        Err(e) => panic!("{attr}: {e}"),
    }
}

const LIST_HEAD: &str = "pkgs/top-level/all-packages.nix";

#[test]
fn a_package_that_refers_to_itself_is_still_its_files_only_package() {
    let package = r#"{ lib, stdenv, testers }:
let
  self = stdenv.mkDerivation {
    pname = "selfish";
    version = "1.0";
    passthru.tests.version = testers.testVersion { package = self; };
    postInstall = "ln -s ${self}/bin $out/sbin";
    meta = {
      description = "Refers to itself";
      license = lib.licenses.mit;
    };
  };
in
assert self ? pname -> self.version != "";
self
"#;
    assert_eq!(
        locate_in(
            &[("pkgs/by-name/se/selfish/package.nix", package)],
            "selfish"
        ),
        Ok(PathBuf::from("pkgs/by-name/se/selfish/package.nix"))
    );
}

#[test]
fn dotted_meta_in_a_function_called_twice_is_refused() {
    let file = r#"{ lib, stdenv }:
let
  generic =
    version:
    stdenv.mkDerivation {
      pname = "twice";
      inherit version;
      meta.description = "Built twice";
      meta.license = lib.licenses.mit;
    };
in
{
  twice_1 = generic "1";
  twice_2 = generic "2";
}
"#;
    let list = "{ lib }:\nres: pkgs:\nwith pkgs;\n{\n  inherit (callPackage ../tools/twice { }) twice_1;\n}\n";
    let refusal = locate_in(
        &[(LIST_HEAD, list), ("pkgs/tools/twice/default.nix", file)],
        "twice_1",
    );
    assert!(
        matches!(&refusal, Err(Refusal::SharedFunction { function: SharedBy::Name { name, uses: 2 }, .. }) if name == "generic"),
        "{refusal:?}"
    );
}

#[test]
fn a_package_of_a_rec_set_and_its_override_share_their_meta() {
    let file = r#"{ lib, stdenv }:
rec {
  base = stdenv.mkDerivation {
    pname = "base";
    version = "1";
    meta.description = "The base";
  };
  base-full = base.overrideAttrs { pname = "base-full"; };
}
"#;
    let list =
        "{ lib }:\nres: pkgs:\nwith pkgs;\n{\n  inherit (callPackage ../tools/set { }) base;\n}\n";
    let files = [(LIST_HEAD, list), ("pkgs/tools/set/default.nix", file)];
    let refusal = locate_in(&files, "base");
    assert!(
        matches!(&refusal, Err(Refusal::SharedFunction { function: SharedBy::Name { name, uses: 2 }, .. }) if name == "base"),
        "the package and its variant: {refusal:?}"
    );
}

#[test]
fn a_builder_file_that_version_files_call_is_refused_with_its_callers() {
    let generic = "{ lib, stdenv, version }:\nstdenv.mkDerivation {\n  pname = \"proto\";\n  inherit version;\n  meta.description = \"Built per version\";\n}\n";
    let v1 =
        "{ callPackage, ... }@args:\ncallPackage ./generic.nix ({ version = \"1\"; } // args)\n";
    let v2 =
        "{ callPackage, ... }@args:\ncallPackage ./generic.nix ({ version = \"2\"; } // args)\n";
    let other = "{ callPackage }:\ncallPackage ../generic.nix { }\n";
    let list = "{ lib }:\nres: pkgs:\nwith pkgs;\n{\n  proto = callPackage ../tools/proto/generic.nix { version = \"0\"; };\n  lone = callPackage ../tools/lone/generic.nix { };\n}\n";
    let files = [
        (LIST_HEAD, list),
        ("pkgs/tools/proto/generic.nix", generic),
        ("pkgs/tools/proto/1.nix", v1),
        ("pkgs/tools/proto/2.nix", v2),
        ("pkgs/tools/lone/generic.nix", generic),
        ("pkgs/tools/lone/up.nix", other),
    ];
    match locate_in(&files, "proto") {
        Err(Refusal::SharedFunction {
            function: SharedBy::CalledBy { files },
            ..
        }) => assert_eq!(
            files,
            [
                PathBuf::from("pkgs/tools/proto/1.nix"),
                PathBuf::from("pkgs/tools/proto/2.nix")
            ]
        ),
        other => panic!("proto: {other:?}"),
    }
    assert_eq!(
        locate_in(&files, "lone"),
        Ok(PathBuf::from("pkgs/tools/lone/generic.nix")),
        "`../generic.nix` is another folder's file"
    );
}
