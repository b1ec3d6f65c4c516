//! End-to-end on a copy of the fixture tree, checked with real Nix: after marking,
//! `meta.broken` is true exactly on the failing platforms; after retiring, the tree still
//! evaluates and the alias throws with its message.

mod nixpkgs_common;

use std::path::Path;

use hydra_sentinel::nixpkgs::nix::NixInstantiate;
use hydra_sentinel::nixpkgs::retire::{Date, RetireRequest, plan_retirement};
use hydra_sentinel::nixpkgs::source::FsTree;
use hydra_sentinel::nixpkgs::{Evidence, Index, MarkBrokenRequest, Platforms, mark_attr_broken};
use nixpkgs_common::{broken_on, eval, fixture_copy};

/// Mark `attr` broken on `systems` in `dir`, writing the files.
fn mark(dir: &Path, attr: &str, systems: &str) {
    let tree = FsTree::new(dir);
    let index = Index::build(&tree).unwrap();
    let request = MarkBrokenRequest {
        platforms: Platforms::parse_list(systems).unwrap(),
        evidence: Evidence {
            since: Some("2026-01-12".into()),
            ..Evidence::default()
        },
        meta_line: None,
    };
    let (_, _, changes) = mark_attr_broken(&index, &tree, None, attr, &request).unwrap();
    let nix = NixInstantiate::from_path().expect("nix-instantiate on PATH");
    changes.apply_to_dir(dir, Some(&nix)).unwrap();
}

#[test]
fn marks_only_the_failing_platform() {
    let dir = fixture_copy();
    assert!(broken_on(dir.path(), "hello").is_empty());
    mark(dir.path(), "hello", "aarch64-darwin");
    assert_eq!(broken_on(dir.path(), "hello"), ["aarch64-darwin"]);
}

#[test]
fn marks_both_darwins_of_a_python_module_without_stdenv_in_its_arguments() {
    let dir = fixture_copy();
    mark(
        dir.path(),
        "python3Packages.aioamqp",
        "x86_64-darwin,aarch64-darwin",
    );
    assert_eq!(
        broken_on(dir.path(), "python3Packages.aioamqp"),
        ["x86_64-darwin", "aarch64-darwin"]
    );
}

#[test]
fn extends_an_existing_conditional_mark() {
    let dir = fixture_copy();
    assert_eq!(broken_on(dir.path(), "umurmur"), ["aarch64-darwin"]);
    mark(dir.path(), "umurmur", "x86_64-linux");
    assert_eq!(
        broken_on(dir.path(), "umurmur"),
        ["x86_64-linux", "aarch64-darwin"]
    );
}

#[test]
fn marks_everywhere_in_dotted_and_with_lib_metas() {
    let dir = fixture_copy();
    mark(
        dir.path(),
        "dotted",
        "x86_64-linux,aarch64-linux,x86_64-darwin,aarch64-darwin",
    );
    mark(
        dir.path(),
        "ghidra",
        "x86_64-linux,aarch64-linux,x86_64-darwin,aarch64-darwin",
    );
    assert_eq!(broken_on(dir.path(), "dotted").len(), 4);
    assert_eq!(broken_on(dir.path(), "ghidra").len(), 4);
}

fn retire(dir: &Path, attr: &str) -> hydra_sentinel::nixpkgs::retire::Retirement {
    let tree = FsTree::new(dir);
    let index = Index::build(&tree).unwrap();
    let request = RetireRequest {
        attic: "attic".into(),
        date: Date::parse("2026-05-03").unwrap(),
        reason: "it has been broken on all platforms since 2025-03-01".into(),
        reference: None,
    };
    let retirement = plan_retirement(&index, &tree, attr, &request).unwrap();
    let nix = NixInstantiate::from_path().expect("nix-instantiate on PATH");
    retirement.changes.apply_to_dir(dir, Some(&nix)).unwrap();
    retirement
}

/// Every attribute that is not an alias still evaluates its meta.
fn whole_tree_evaluates(dir: &Path) {
    let names =
        "builtins.filter (n: (builtins.tryEval pkgs.${n}).success) (builtins.attrNames pkgs)";
    let value = eval(dir, "x86_64-linux", &format!("builtins.length ({names})")).unwrap();
    assert!(value.as_u64().unwrap() > 10, "{value}");
}

#[test]
fn retiring_moves_the_folder_removes_the_call_site_and_adds_a_throwing_alias() {
    let dir = fixture_copy();
    let retirement = retire(dir.path(), "oldtool");
    assert_eq!(
        retirement.moved_to,
        Path::new("attic/pkgs/tools/misc/oldtool")
    );
    assert!(
        dir.path()
            .join("attic/pkgs/tools/misc/oldtool/fix-build.patch")
            .is_file()
    );
    assert!(!dir.path().join("pkgs/tools/misc/oldtool").exists());
    let all_packages =
        std::fs::read_to_string(dir.path().join("pkgs/top-level/all-packages.nix")).unwrap();
    assert!(!all_packages.contains("oldtool"));
    let aliases = std::fs::read_to_string(dir.path().join("pkgs/top-level/aliases.nix")).unwrap();
    insta::assert_snapshot!(aliases);

    whole_tree_evaluates(dir.path());
    let thrown = eval(
        dir.path(),
        "x86_64-linux",
        "(builtins.tryEval pkgs.oldtool).success",
    )
    .unwrap();
    assert_eq!(thrown, serde_json::Value::Bool(false));
}

#[test]
fn retiring_a_python_module_uses_python_aliases() {
    let dir = fixture_copy();
    retire(dir.path(), "python3Packages.oldpy");
    let aliases =
        std::fs::read_to_string(dir.path().join("pkgs/top-level/python-aliases.nix")).unwrap();
    assert!(aliases.contains("  oldpy = throw \"'oldpy' has been removed because it has been broken on all platforms since 2025-03-01; its code was moved to attic/pkgs/development/python-modules/oldpy in nixpkgs\"; # Added 2026-05-03\n  pyfoo ="), "{aliases}");
    whole_tree_evaluates(dir.path());
    let thrown = eval(
        dir.path(),
        "x86_64-linux",
        "(builtins.tryEval pkgs.python3Packages.oldpy).success",
    )
    .unwrap();
    assert_eq!(thrown, serde_json::Value::Bool(false));
}

#[test]
fn retiring_a_by_name_package_needs_no_call_site() {
    let dir = fixture_copy();
    let retirement = retire(dir.path(), "umurmur");
    assert_eq!(retirement.changes.changes.len(), 2);
    assert!(
        dir.path()
            .join("attic/pkgs/by-name/um/umurmur/package.nix")
            .is_file()
    );
    whole_tree_evaluates(dir.path());
}
