# hydra-sentinel, built from this checkout with the versions in Cargo.lock.
#
#   nix build            (flake.nix at the repository root)
#   nix-build -E 'with import <nixpkgs> { }; callPackage ./nix/package.nix { }'
{
  lib,
  stdenv,
  rustPlatform,
  installShellFiles,
  pkg-config,
  openssl,
  zlib,
  git,
  bashInteractive,
  groff,
}:

let
  cargoToml = lib.importTOML ../Cargo.toml;
in
rustPlatform.buildRustPackage {
  pname = cargoToml.package.name;
  inherit (cargoToml.package) version;

  # What cargo needs to build and test, nothing else: a change to the README,
  # the Nix files or .ci does not rebuild the package.
  src = lib.fileset.toSource {
    root = ../.;
    fileset = lib.fileset.unions [
      ../Cargo.toml
      ../Cargo.lock
      # How the bundled SQLite is compiled (LIBSQLITE3_FLAGS). Cargo merges
      # it with the vendoring config nixpkgs' cargoSetupHook writes one
      # folder up (build-support/rust/hooks/cargo-setup-hook.sh).
      ../.cargo/config.toml
      ../src
      # Compiled into the binary: the schema, the built-in policy and the
      # example configuration (include_str!).
      ../schema.sql
      ../policies
      ../systemd
      # Targets cargo test builds: integration tests with their fixtures and
      # snapshots, the Hydra look-alike example and the benchmarks.
      ../tests
      ../examples
      ../benches
    ];
  };

  cargoLock.lockFile = ../Cargo.lock;

  nativeBuildInputs = [
    installShellFiles
    # openssl-sys and libz-sys find their libraries with it; libgit2-sys
    # builds its vendored copy (git2's exact libgit2 1.9) when pkg-config
    # finds none.
    pkg-config
  ];

  # git2's https transport links OpenSSL; zlib is shared by libgit2 and
  # flate2. SQLite (rusqlite "bundled") and aws-lc (rustls) are compiled from
  # their crates with the C compiler.
  buildInputs = [
    openssl
    zlib
  ];

  nativeCheckInputs = [
    # The act tests prepare nixpkgs checkouts and bare remotes with git.
    git
    # bash_completes_subcommands_and_their_options sources the completion
    # script; stdenv's bash has no programmable completion (compgen).
    bashInteractive
    # man_writes_a_page_per_subcommand_that_groff_renders_without_warnings.
    groff
  ];

  # Everything else runs in the sandbox: the Hydra and GitHub look-alikes
  # listen on loopback, the daemon tests spawn the binary and signal it, the
  # root-only tests (a tiny tmpfs, running as nobody) skip themselves when
  # not root, and the systemd unit test skips without systemd-analyze.
  checkFlags = map (test: "--skip=${test}") [
    # Evaluate the nixpkgs-shaped fixture with nix-instantiate: needs Nix
    # (a store and its state directory) inside the build sandbox.
    "marks_only_the_failing_platform"
    "marks_both_darwins_of_a_python_module_without_stdenv_in_its_arguments"
    "extends_an_existing_conditional_mark"
    "marks_everywhere_in_dotted_and_with_lib_metas"
    "retiring_moves_the_folder_removes_the_call_site_and_adds_a_throwing_alias"
    "retiring_a_python_module_uses_python_aliases"
    "retiring_a_by_name_package_needs_no_call_site"
    "nix_agrees_with_the_static_index_and_gives_the_description_line"
    # Run nix-instantiate on flake.nix and nix/*.nix, which are neither in
    # the source above nor can Nix run inside the sandbox.
    "every_nix_file_of_the_packaging_parses"
    "the_flake_s_inputs_evaluate_without_nixpkgs_and_match_its_outputs_arguments"
  ];

  # Completions and man pages come from running the binary just built, which
  # a cross build cannot do.
  postInstall = lib.optionalString (stdenv.buildPlatform.canExecute stdenv.hostPlatform) ''
    installShellCompletion --cmd hydra-sentinel \
      --bash <($out/bin/hydra-sentinel completions bash) \
      --zsh <($out/bin/hydra-sentinel completions zsh) \
      --fish <($out/bin/hydra-sentinel completions fish)
    mkdir man
    $out/bin/hydra-sentinel man --out-dir man
    installManPage man/*.1
  '';

  meta = {
    description = cargoToml.package.description;
    longDescription = ''
      hydra-sentinel watches Hydra for nixpkgs jobs that keep failing, tracks
      their failure streaks in SQLite, tells the maintainers, and, following a
      policy committers tune in TOML, opens pull requests marking long-failing
      packages broken on the platforms where they fail.
    '';
    license = lib.licenses.mit;
    platforms = lib.platforms.linux;
    mainProgram = "hydra-sentinel";
  };
}
