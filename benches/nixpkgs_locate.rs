//! Bench binary: index a synthetic nixpkgs-sized tree (~40,000 files) and time 1,000
//! lookups. Run with `cargo bench --bench nixpkgs_locate`. Not a test: it prints timings.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

use hydra_sentinel::nixpkgs::source::FsTree;
use hydra_sentinel::nixpkgs::{Index, locate};

const BY_NAME: usize = 20_000;
const TOP_LEVEL: usize = 10_000;
const PYTHON: usize = 10_000;

fn package(name: &str) -> String {
    format!(
        "{{ lib, stdenv, fetchurl }}:\n\nstdenv.mkDerivation {{\n  pname = \"{name}\";\n  version = \"1.0\";\n  src = fetchurl {{ url = \"https://example.org/{name}.tar.gz\"; hash = \"\"; }};\n  meta = {{\n    description = \"Package {name}\";\n    license = lib.licenses.mit;\n    maintainers = with lib.maintainers; [ alice ];\n  }};\n}}\n"
    )
}

fn write(path: &Path, text: &str) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("mkdir");
    }
    std::fs::write(path, text).expect("write");
}

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let started = Instant::now();
    for i in 0..BY_NAME {
        let name = format!("pkg{i:05}");
        let shard = &name[..2];
        write(
            &root.join(format!("pkgs/by-name/{shard}/{name}/package.nix")),
            &package(&name),
        );
    }
    let mut all = String::from("{ lib }:\nres: pkgs:\nwith pkgs;\n{\n");
    for i in 0..TOP_LEVEL {
        let name = format!("tool{i:05}");
        write(
            &root.join(format!("pkgs/tools/misc/{name}/default.nix")),
            &package(&name),
        );
        let _ = writeln!(all, "  {name} = callPackage ../tools/misc/{name} {{ }};\n");
    }
    all.push_str("}\n");
    write(&root.join("pkgs/top-level/all-packages.nix"), &all);
    let mut py = String::from("self: super:\nwith self;\n{\n");
    for i in 0..PYTHON {
        let name = format!("py{i:05}");
        write(
            &root.join(format!(
                "pkgs/development/python-modules/{name}/default.nix"
            )),
            &package(&name),
        );
        let _ = writeln!(
            py,
            "  {name} = callPackage ../development/python-modules/{name} {{ }};\n"
        );
    }
    py.push_str("}\n");
    write(&root.join("pkgs/top-level/python-packages.nix"), &py);
    println!(
        "generated {} files in {:?}",
        BY_NAME + TOP_LEVEL + PYTHON + 2,
        started.elapsed()
    );

    let tree = FsTree::new(root);
    let started = Instant::now();
    let index = Index::build(&tree).expect("index");
    println!(
        "indexed {} attributes in {:?}",
        index.len(),
        started.elapsed()
    );

    let attrs: Vec<String> = (0..1000)
        .map(|i| match i % 3 {
            0 => format!("pkg{:05}", (i * 17) % BY_NAME),
            1 => format!("tool{:05}", (i * 13) % TOP_LEVEL),
            _ => format!("python3Packages.py{:05}", (i * 7) % PYTHON),
        })
        .collect();

    let started = Instant::now();
    for attr in &attrs {
        index.lookup(attr).expect("lookup");
    }
    println!("1000 index lookups: {:?}", started.elapsed());

    let started = Instant::now();
    for attr in &attrs {
        locate(&index, &tree, None, attr).expect("locate");
    }
    println!(
        "1000 full locates (read + parse + meta check): {:?}",
        started.elapsed()
    );
}
