//! Reading meta.maintainers / meta.teams and resolving them against the fixture's lists.

mod nixpkgs_common;

use std::path::Path;

use hydra_sentinel::nixpkgs::maintainers::{MaintainerDirectory, meta_maintainers};
use hydra_sentinel::nixpkgs::source::FsTree;
use nixpkgs_common::fixture;

fn resolved(file: &str) -> hydra_sentinel::nixpkgs::maintainers::ResolvedMaintainers {
    let tree = FsTree::new(fixture());
    let directory = MaintainerDirectory::load(&tree).unwrap();
    let text = std::fs::read_to_string(fixture().join(file)).unwrap();
    let meta = meta_maintainers(&text, Path::new(file), None).unwrap();
    directory.resolve(&meta)
}

#[test]
fn reads_the_maintainer_list_with_quoted_and_underscored_handles() {
    let tree = FsTree::new(fixture());
    let directory = MaintainerDirectory::load(&tree).unwrap();
    assert_eq!(
        directory.maintainers["abbe"].github.as_deref(),
        Some("wahjava")
    );
    assert_eq!(directory.maintainers["_0x4A6F"].github_id, Some(9675338));
    assert_eq!(
        directory.maintainers["carol"].github.as_deref(),
        Some("carol")
    );
    assert_eq!(directory.maintainers["noGithub"].github, None);
    assert_eq!(directory.teams["security-tools"].members, ["bob", "carol"]);
    assert_eq!(directory.teams["gnome"].github.as_deref(), Some("gnome"));
}

#[test]
fn resolves_with_lib_maintainers_and_teams_by_github_login() {
    let r = resolved("pkgs/by-name/he/hello/package.nix");
    assert_eq!(
        r.people.iter().map(|p| p.github_id).collect::<Vec<_>>(),
        [Some(285829)]
    );
    assert_eq!(r.teams[0].team.name, "gnome");
    assert_eq!(r.github_logins(), ["stv0g", "alice-gh"]);
    assert!(r.unknown.is_empty());
}

#[test]
fn resolves_explicit_lib_maintainers_selections_where_handle_and_login_differ() {
    let r = resolved("pkgs/by-name/um/umurmur/package.nix");
    assert_eq!(r.github_logins(), ["wahjava", "0x4A6F"]);
}

#[test]
fn reports_unknown_handles_instead_of_guessing_in_legacy_with_lib_meta() {
    let r = resolved("pkgs/tools/misc/frobnicate/default.nix");
    assert_eq!(r.github_logins(), ["alice-gh", "bob", "carol"]);
    assert_eq!(r.unknown, ["nosuchperson"]);
}

#[test]
fn an_empty_list_means_unmaintained() {
    let r = resolved("pkgs/tools/misc/oldtool/default.nix");
    assert!(r.people.is_empty() && r.teams.is_empty() && r.unknown.is_empty());
}

#[test]
fn team_members_concatenated_into_maintainers_count_as_the_team() {
    let src = "{ lib, stdenv }:\nstdenv.mkDerivation {\n  meta = with lib; {\n    maintainers = teams.gnome.members ++ [ maintainers.bob ] ++ someFunction x;\n  };\n}\n";
    let meta = meta_maintainers(src, Path::new("p.nix"), None).unwrap();
    assert_eq!(meta.teams, ["gnome"]);
    assert_eq!(meta.handles, ["bob"]);
    assert_eq!(meta.unrecognised, ["someFunction x"]);
}
