//! Helpers shared by the nixpkgs editor's integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The nixpkgs-shaped fixture tree.
pub fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/nixpkgs")
}

/// A writable copy of the fixture tree.
pub fn fixture_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_dir(&fixture(), dir.path());
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// `nix-instantiate` must be on PATH for these tests (CI installs nix-bin).
pub fn nix_instantiate() -> PathBuf {
    hydra_sentinel::nixpkgs::nix::NixInstantiate::from_path()
        .map(|_| PathBuf::from("nix-instantiate"))
        .expect("nix-instantiate on PATH (apt-get install nix-bin)")
}

/// Evaluate `expr` with `pkgs` bound to the tree at `dir` for `system`; JSON result.
pub fn eval(dir: &Path, system: &str, expr: &str) -> Result<serde_json::Value, String> {
    let full = format!(
        "let pkgs = import {} {{ system = \"{system}\"; }}; in {expr}",
        dir.display()
    );
    let out = hydra_sentinel::nixpkgs::nix::NixInstantiate::new(nix_instantiate())
        .command()
        .args(["--eval", "--strict", "--json", "-E", &full])
        .output()
        .expect("run nix-instantiate");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())
}

pub const SYSTEMS: [&str; 4] = [
    "x86_64-linux",
    "aarch64-linux",
    "x86_64-darwin",
    "aarch64-darwin",
];

/// On which systems `attr.meta.broken` is true.
pub fn broken_on(dir: &Path, attr: &str) -> Vec<&'static str> {
    SYSTEMS
        .into_iter()
        .filter(|sys| {
            eval(dir, sys, &format!("pkgs.{attr}.meta.broken or false"))
                .unwrap_or_else(|e| panic!("eval {attr} on {sys}: {e}"))
                == serde_json::Value::Bool(true)
        })
        .collect()
}
