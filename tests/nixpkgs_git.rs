//! Committing editor changes with git2 on a real repository, and pushing to a bare remote.

mod nixpkgs_common;

use std::path::Path;

use git2::Repository;
use hydra_sentinel::nixpkgs::git::{
    CommitSpec, GitTree, Token, commit_change_set, commit_message, mark_broken_title, push_branch,
    retire_title,
};
use hydra_sentinel::nixpkgs::retire::{Date, RetireRequest, plan_retirement};
use hydra_sentinel::nixpkgs::source::TreeSource;
use hydra_sentinel::nixpkgs::{
    Evidence, Index, MarkBrokenRequest, NixpkgsError, Platforms, mark_attr_broken,
};
use nixpkgs_common::fixture_copy;

/// A repository holding the fixture tree in one commit on `master`.
fn repo_with_fixture() -> (tempfile::TempDir, Repository) {
    let dir = fixture_copy();
    let repo = Repository::init(dir.path()).unwrap();
    {
        let mut index = repo.index().unwrap();
        index
            .add_all(["*"], git2::IndexAddOption::DEFAULT, None)
            .unwrap();
        index.write().unwrap();
        let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
        let sig = git2::Signature::now("Test", "test@example.org").unwrap();
        repo.commit(Some("HEAD"), &sig, &sig, "init", &tree, &[])
            .unwrap();
    }
    (dir, repo)
}

fn spec(branch: &str, message: String) -> CommitSpec {
    CommitSpec {
        branch: branch.into(),
        base: "HEAD".into(),
        message,
        author_name: "hydra-sentinel".into(),
        author_email: "sentinel@example.org".into(),
        force: false,
    }
}

fn mark_hello_on_branch(repo: &Repository, branch: &str) -> git2::Oid {
    let tree = GitTree::open(repo, "HEAD").unwrap();
    let index = Index::build(&tree).unwrap();
    let platforms = Platforms::parse_list("aarch64-darwin").unwrap();
    let request = MarkBrokenRequest {
        platforms: platforms.clone(),
        evidence: Evidence {
            since: Some("2026-01-12".into()),
            build_url: Some("https://hydra.nixos.org/build/1".into()),
            note: None,
        },
        meta_line: None,
    };
    let (_, _, changes) = mark_attr_broken(&index, &tree, None, "hello", &request).unwrap();
    let message = commit_message(
        &mark_broken_title("hello", &platforms),
        &["Failing on Hydra since 2026-01-12: https://hydra.nixos.org/build/1".into()],
    );
    commit_change_set(repo, &changes, &spec(branch, message)).unwrap()
}

#[test]
fn commits_on_a_branch_without_touching_the_working_tree_or_head() {
    let (dir, repo) = repo_with_fixture();
    let file = dir.path().join("pkgs/by-name/he/hello/package.nix");
    std::fs::write(&file, "# local uncommitted change\n").unwrap();
    let head_before = repo.head().unwrap().target();

    let commit = mark_hello_on_branch(&repo, "sentinel/hello");

    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "# local uncommitted change\n"
    );
    assert_eq!(repo.head().unwrap().target(), head_before);
    let branch_tree = GitTree::open(&repo, "sentinel/hello").unwrap();
    let text = branch_tree
        .read(Path::new("pkgs/by-name/he/hello/package.nix"))
        .unwrap()
        .unwrap();
    assert!(
        text.contains("broken = stdenv.hostPlatform.isDarwin && stdenv.hostPlatform.isAarch64;")
    );
    let commit = repo.find_commit(commit).unwrap();
    assert_eq!(
        commit.summary().unwrap(),
        Some("hello: mark broken on aarch64-darwin")
    );
    assert!(
        commit
            .message()
            .unwrap()
            .contains("https://hydra.nixos.org/build/1")
    );
    assert_eq!(commit.parent_id(0).unwrap(), head_before.unwrap());
}

#[test]
fn a_retirement_commit_moves_files_in_the_tree() {
    let (_dir, repo) = repo_with_fixture();
    let tree = GitTree::open(&repo, "HEAD").unwrap();
    let index = Index::build(&tree).unwrap();
    let request = RetireRequest {
        attic: "attic".into(),
        date: Date::parse("2026-05-03").unwrap(),
        reason: "it has been broken since 2025-03-01".into(),
        reference: None,
    };
    let retirement = plan_retirement(&index, &tree, "oldtool", &request).unwrap();
    commit_change_set(
        &repo,
        &retirement.changes,
        &spec(
            "sentinel/oldtool",
            commit_message(&retire_title("oldtool"), &[]),
        ),
    )
    .unwrap();

    let after = GitTree::open(&repo, "sentinel/oldtool").unwrap();
    assert!(after.is_file(Path::new("attic/pkgs/tools/misc/oldtool/fix-build.patch")));
    assert!(after.is_file(Path::new("attic/pkgs/tools/misc/oldtool/default.nix")));
    assert!(!after.is_dir(Path::new("pkgs/tools/misc/oldtool")));
    assert!(after.is_file(Path::new("pkgs/tools/misc/frobnicate/default.nix")));
}

#[test]
fn refuses_to_move_the_checked_out_branch() {
    let (_dir, repo) = repo_with_fixture();
    let head = repo.head().unwrap().shorthand().unwrap().to_string();
    let err =
        commit_change_set(&repo, &Default::default(), &spec(&head, "x\n".into())).unwrap_err();
    assert!(err.to_string().contains("checked out"), "{err}");
}

#[test]
fn pushes_the_branch_to_a_bare_remote() {
    let (_dir, repo) = repo_with_fixture();
    let remote_dir = tempfile::tempdir().unwrap();
    let remote = Repository::init_bare(remote_dir.path()).unwrap();
    let commit = mark_hello_on_branch(&repo, "sentinel/hello");

    push_branch(
        &repo,
        remote_dir.path().to_str().unwrap(),
        "sentinel/hello",
        Some(&Token::new("s3cret")),
        false,
    )
    .unwrap();

    let pushed = remote.find_reference("refs/heads/sentinel/hello").unwrap();
    assert_eq!(pushed.target(), Some(commit));
}

#[test]
fn a_non_fast_forward_push_is_reported_as_rejected_without_the_token() {
    let (_dir, repo) = repo_with_fixture();
    let remote_dir = tempfile::tempdir().unwrap();
    Repository::init_bare(remote_dir.path()).unwrap();
    let url = remote_dir.path().to_str().unwrap();
    mark_hello_on_branch(&repo, "sentinel/hello");
    push_branch(&repo, url, "sentinel/hello", None, false).unwrap();

    // Rewrite the branch locally with an unrelated commit, then push without force.
    let mut other = spec("sentinel/hello", "hello: something else\n".into());
    other.force = true;
    commit_change_set(&repo, &Default::default(), &other).unwrap();
    let err = push_branch(
        &repo,
        url,
        "sentinel/hello",
        Some(&Token::new("s3cret")),
        false,
    )
    .unwrap_err();

    assert!(matches!(err, NixpkgsError::PushRejected { .. }), "{err:?}");
    assert!(!err.to_string().contains("s3cret"));
    assert!(!format!("{err:?}").contains("s3cret"));
}
