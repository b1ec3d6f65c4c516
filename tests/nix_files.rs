//! The Nix packaging (`flake.nix`, `nix/*.nix`) is valid Nix: every file
//! parses with the real `nix-instantiate`, and the flake's inputs evaluate
//! without nixpkgs. Nothing here can build the package or evaluate the module
//! (that needs nixpkgs: `nix flake check` does it); this catches the syntax
//! errors and flake-shape mistakes that `cargo test` alone would miss.
//!
//! `nix-instantiate` must be on PATH (CI installs nix-bin).

use std::path::{Path, PathBuf};
use std::process::Output;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `flake.nix` and every `*.nix` under `nix/`, sorted.
fn packaging_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let entries =
            std::fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "nix") {
                out.push(path);
            }
        }
    }
    let mut files = vec![root().join("flake.nix")];
    walk(&root().join("nix"), &mut files);
    files.sort();
    files
}

fn nix_instantiate(args: &[&str]) -> Output {
    // The dummy store and a per-user state folder: no `/nix` needed, whoever runs it.
    hydra_sentinel::nixpkgs::nix::NixInstantiate::new("nix-instantiate")
        .command()
        .args(args)
        .current_dir(root())
        .output()
        .unwrap_or_else(|e| panic!("running nix-instantiate (apt-get install nix-bin): {e}"))
}

/// What nix said, without the warnings of a daemon-less installation.
fn nix_message(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr)
        .lines()
        .filter(|line| !line.contains("build-users-group"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn every_nix_file_of_the_packaging_parses() {
    let files = packaging_files();
    for expected in ["flake.nix", "nix/package.nix", "nix/module.nix"] {
        assert!(
            files.contains(&root().join(expected)),
            "{expected} missing from {files:?}"
        );
    }
    let failures: Vec<String> = files
        .iter()
        .filter_map(|file| {
            let output = nix_instantiate(&["--parse", file.to_str().expect("a UTF-8 path")]);
            (!output.status.success()).then(|| {
                format!(
                    "{}: nix-instantiate --parse failed:\n{}",
                    file.display(),
                    nix_message(&output)
                )
            })
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// `nix flake` reads `inputs` without evaluating anything else and hands
/// each input to `outputs` by name: they must be plain values and agree.
#[test]
fn the_flake_s_inputs_evaluate_without_nixpkgs_and_match_its_outputs_arguments() {
    let expr = "let flake = import ./flake.nix; in { \
                inputs = builtins.mapAttrs (_: i: i.url) flake.inputs; \
                outputs = builtins.attrNames (builtins.functionArgs flake.outputs); \
                description = flake.description; }";
    let output = nix_instantiate(&["--eval", "--strict", "--json", "-E", expr]);
    assert!(output.status.success(), "{}", nix_message(&output));
    let value: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("nix-instantiate --json prints JSON");
    assert_eq!(
        value["inputs"],
        serde_json::json!({"nixpkgs": "github:NixOS/nixpkgs/nixos-unstable"})
    );
    assert_eq!(value["outputs"], serde_json::json!(["nixpkgs", "self"]));
    assert!(
        value["description"]
            .as_str()
            .is_some_and(|d| d.starts_with("hydra-sentinel")),
        "{value}"
    );
}
