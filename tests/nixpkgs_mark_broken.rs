//! Snapshot tests of `mark_broken` on each shape of `meta` found in nixpkgs
//! (nixpkgs-conventions.md §7), plus the merge, style and error cases.

use std::path::Path;

use hydra_sentinel::nixpkgs::{
    Evidence, MarkBrokenOutcome, MarkBrokenRequest, NixpkgsError, Platforms, Refusal, mark_broken,
};

fn evidence() -> Evidence {
    Evidence {
        since: Some("2026-01-12".into()),
        build_url: Some("https://hydra.nixos.org/build/301234567".into()),
        note: None,
    }
}

fn request(systems: Option<&str>) -> MarkBrokenRequest {
    MarkBrokenRequest {
        platforms: systems.map_or_else(Platforms::all, |s| Platforms::parse_list(s).unwrap()),
        evidence: evidence(),
        meta_line: None,
    }
}

/// Mark `src` broken (on `systems`, or everywhere) and return the new text.
fn marked(src: &str, systems: Option<&str>) -> String {
    marked_in("pkgs/by-name/xx/example/package.nix", src, systems)
}

fn marked_in(file: &str, src: &str, systems: Option<&str>) -> String {
    match mark_broken(src, Path::new(file), &request(systems)) {
        Ok(MarkBrokenOutcome::Edited(edit)) => edit.text,
        other => panic!("expected an edit of {file}, got {other:?}"),
    }
}

fn refusal(file: &str, src: &str) -> Refusal {
    match mark_broken(src, Path::new(file), &request(None)) {
        Err(NixpkgsError::Refused { reason, .. }) => reason,
        other => panic!("expected a refusal for {file}, got {other:?}"),
    }
}

const HELLO: &str = r#"{
  callPackage,
  lib,
  stdenv,
  fetchurl,
  nixos,
  testers,
  versionCheckHook,
  hello,
}:

stdenv.mkDerivation (finalAttrs: {
  pname = "hello";
  version = "2.12.2";

  src = fetchurl {
    url = "mirror://gnu/hello/hello-${finalAttrs.version}.tar.gz";
    hash = "sha256-WpqZbcKSzCTc9BHO6H6S9qrluNE72caBm0x6nc4IGKs=";
  };

  doCheck = true;

  passthru.tests = {
    version = testers.testVersion { package = hello; };
  };

  meta = {
    description = "Program that produces a familiar, friendly greeting";
    longDescription = ''
      GNU Hello is a program that prints "Hello, world!" when you run it.
      It is fully customizable. };
    '';
    homepage = "https://www.gnu.org/software/hello/manual/";
    changelog = "https://git.savannah.gnu.org/cgit/hello.git/plain/NEWS?h=v${finalAttrs.version}";
    license = lib.licenses.gpl3Plus;
    maintainers = with lib.maintainers; [ stv0g ];
    mainProgram = "hello";
    platforms = lib.platforms.all;
    identifiers.cpeParts.vendor = "gnu";
  };
})
"#;

#[test]
fn shape_1_plain_meta_gets_broken_as_its_last_binding() {
    insta::assert_snapshot!(marked(HELLO, None));
}

#[test]
fn shape_1_plain_meta_on_one_platform() {
    insta::assert_snapshot!(marked(HELLO, Some("aarch64-darwin")));
}

const AIOAMQP: &str = r#"{ lib
, buildPythonPackage
, fetchPypi
, pythonOlder
, pamqp
}:

buildPythonPackage rec {
  pname = "aioamqp";
  version = "0.15.0";
  format = "setuptools";

  disabled = pythonOlder "3.6";

  src = fetchPypi {
    inherit pname version;
    hash = "sha256-D3k3U8ZQ1z2xUd0Ib1Bb1pGXYQJqK9hbBQZeyUSVtEI=";
  };

  propagatedBuildInputs = [ pamqp ];

  meta = with lib; {
    description = "AMQP implementation using asyncio";
    homepage = "https://github.com/polyconseil/aioamqp";
    license = licenses.bsd3;
    maintainers = with maintainers; [ ];
  };
}
"#;

#[test]
fn shape_2_with_lib_meta_in_a_python_module_gets_stdenv_added_for_a_platform_condition() {
    insta::assert_snapshot!(marked_in(
        "pkgs/development/python-modules/aioamqp/default.nix",
        AIOAMQP,
        Some("aarch64-darwin")
    ));
}

#[test]
fn shape_2_unconditional_mark_needs_no_stdenv() {
    let out = marked(AIOAMQP, None);
    assert!(out.contains("    broken = true;\n  };"));
    assert!(!out.contains("stdenv"));
}

const TRAILING_COMMA_ARGS: &str = r#"{
  lib,
  buildPythonPackage,
  fetchPypi,
}:

buildPythonPackage {
  pname = "x";
  version = "1";
  meta = {
    description = "x";
  };
}
"#;

#[test]
fn stdenv_follows_lib_in_a_trailing_comma_argument_set() {
    insta::assert_snapshot!(marked(
        TRAILING_COMMA_ARGS,
        Some("x86_64-darwin,aarch64-darwin")
    ));
}

#[test]
fn stdenv_joins_a_one_line_argument_set() {
    let src = "{ lib, buildPythonPackage }:\nbuildPythonPackage {\n  meta = {\n    description = \"x\";\n  };\n}\n";
    let out = marked(src, Some("aarch64-linux"));
    assert!(
        out.starts_with("{ lib, stdenv, buildPythonPackage }:\n"),
        "{out}"
    );
}

const UMURMUR: &str = r#"{
  lib,
  stdenv,
  fetchFromGitHub,
  autoreconfHook,
  openssl,
  libconfig,
  protobufc,
}:

stdenv.mkDerivation rec {
  pname = "umurmur";
  version = "0.3.1";

  src = fetchFromGitHub {
    owner = "umurmur";
    repo = "umurmur";
    rev = version;
    sha256 = "sha256-q5k1Lv+/Kz602QFcdb/FoWWaH9peAQIf7u1NTCWKTBM=";
  };

  nativeBuildInputs = [ autoreconfHook ];
  buildInputs = [
    openssl
    libconfig
    protobufc
  ];

  meta = {
    description = "Minimalistic Murmur (Mumble server)";
    license = lib.licenses.bsd3;
    homepage = "https://github.com/umurmur/umurmur";
    platforms = lib.platforms.all;
    mainProgram = "umurmurd";
    # never built on aarch64-darwin since first introduction in nixpkgs
    broken = stdenv.hostPlatform.isDarwin && stdenv.hostPlatform.isAarch64;
  };
}
"#;

#[test]
fn shape_3_existing_conditional_broken_is_merged_keeping_its_comment() {
    insta::assert_snapshot!(marked(UMURMUR, Some("x86_64-darwin")));
}

#[test]
fn shape_3_existing_conditional_broken_becomes_true_when_all_platforms_fail() {
    let out = marked(UMURMUR, None);
    assert!(out.contains(
        "    # never built on aarch64-darwin since first introduction in nixpkgs\n    # failing on Hydra since 2026-01-12, https://hydra.nixos.org/build/301234567\n    broken = true;\n"
    ), "{out}");
    assert_eq!(out.matches("broken =").count(), 1);
}

#[test]
fn marking_an_already_covered_platform_changes_nothing() {
    let outcome = mark_broken(
        UMURMUR,
        Path::new("p.nix"),
        &request(Some("aarch64-darwin")),
    )
    .unwrap();
    assert!(
        matches!(outcome, MarkBrokenOutcome::AlreadyBroken { line: 36, .. }),
        "{outcome:?}"
    );
}

const GHIDRA_BUILD: &str = r#"{
  stdenv,
  fetchFromGitHub,
  lib,
  gradle,
  makeWrapper,
  openjdk21,
}:

let
  pname = "ghidra";
  version = "11.4";
in
stdenv.mkDerivation (finalAttrs: {
  inherit pname version;

  nativeBuildInputs = [ gradle makeWrapper ];

  meta = with lib; {
    changelog = "https://htmlpreview.github.io/?https://github.com/NationalSecurityAgency/ghidra/blob/Ghidra_${finalAttrs.version}_build/Ghidra/Configurations/Public_Release/src/global/docs/ChangeHistory.html";
    description = "Software reverse engineering (SRE) suite of tools";
    mainProgram = "ghidra";
    homepage = "https://ghidra-sre.org/";
    platforms = [
      "x86_64-linux"
      "aarch64-linux"
      "x86_64-darwin"
      "aarch64-darwin"
    ];
    sourceProvenance = with sourceTypes; [
      fromSource
      binaryBytecode # deps
    ];
    license = licenses.asl20;
    maintainers = with maintainers; [
      roblabla
      vringar
    ];
    broken = stdenv.hostPlatform.isDarwin && stdenv.hostPlatform.isx86_64;
  };
})
"#;

#[test]
fn shape_4_sub_build_file_with_conditional_broken_in_with_lib_meta() {
    insta::assert_snapshot!(marked_in(
        "pkgs/tools/security/ghidra/build.nix",
        GHIDRA_BUILD,
        Some("aarch64-linux")
    ));
}

const DISCORD: &str = r#"{
  branch ? "stable",
  callPackage,
  lib,
  stdenv,
}:
let
  versions = { stable = "0.0.90"; ptb = "0.0.135"; };
  version = versions.${branch};
  meta = {
    description = "All-in-one cross-platform voice and text chat for gamers";
    homepage = "https://discordapp.com/";
    license = lib.licenses.unfree;
    platforms = [ "x86_64-linux" "x86_64-darwin" "aarch64-darwin" ];
  };
  package = if stdenv.hostPlatform.isLinux then ./linux.nix else ./darwin.nix;
in
callPackage package {
  inherit version branch;
  meta = meta // { mainProgram = "discord"; };
}
"#;

#[test]
fn shape_5_meta_shared_through_a_let_is_refused() {
    let reason = refusal("pkgs/applications/discord/default.nix", DISCORD);
    insta::assert_snapshot!(reason.to_string());
}

const SHELLCHECK: &str = r#"{
  lib,
  haskell,
  haskellPackages,
  stdenv,
}:

let
  inherit (haskell.lib.compose) overrideCabal;
  ShellCheck = haskellPackages.ShellCheck;
  overrideMeta = drv: overrideFn: drv // { meta = overrideFn drv.meta; };
  bin = haskell.lib.compose.justStaticExecutables ShellCheck;
  src = ShellCheck.src;
in
stdenv.mkDerivation {
  pname = "shellcheck";
  version = bin.version;
  inherit (ShellCheck) meta src;
  installPhase = "true";
}
"#;

#[test]
fn shape_6_meta_inherited_from_another_package_is_refused() {
    let reason = refusal("pkgs/by-name/sh/shellcheck/package.nix", SHELLCHECK);
    insta::assert_snapshot!(reason.to_string());
}

const WRAPPER_WITHOUT_META: &str = r#"{ symlinkJoin, foo, makeWrapper }:
symlinkJoin {
  name = "foo-wrapped";
  paths = [ foo ];
  nativeBuildInputs = [ makeWrapper ];
}
"#;

#[test]
fn shape_7_no_meta_is_refused() {
    let reason = refusal(
        "pkgs/by-name/fo/foo-wrapped/package.nix",
        WRAPPER_WITHOUT_META,
    );
    insta::assert_snapshot!(reason.to_string());
}

const DOTTED: &str = r#"{ lib, stdenv, fetchurl }:

stdenv.mkDerivation {
  pname = "dotted";
  version = "1.0";
  src = fetchurl { url = "https://example.org/dotted-1.0.tar.gz"; hash = ""; };
  meta.description = "Package using dotted meta bindings";
  meta.platforms = lib.platforms.unix; # unix only
  passthru.updateScript = ./update.sh;
}
"#;

#[test]
fn shape_8_dotted_meta_gets_a_dotted_broken() {
    insta::assert_snapshot!(marked(DOTTED, Some("x86_64-linux")));
}

const DOTTED_BROKEN: &str = r#"{ lib, stdenv }:
stdenv.mkDerivation {
  pname = "dotted";
  meta.description = "x";
  meta.broken = stdenv.hostPlatform.isDarwin;
}
"#;

#[test]
fn shape_8_existing_dotted_broken_is_merged() {
    let out = marked(DOTTED_BROKEN, Some("aarch64-linux"));
    insta::assert_snapshot!(out);
}

const OVERRIDE_MERGE: &str = r#"{ lib, foo }:
foo.overrideAttrs (oldAttrs: {
  pname = "foo-unstable";
  meta = oldAttrs.meta // {
    description = "Development snapshot of foo";
  };
})
"#;

#[test]
fn shape_8_update_with_a_literal_right_operand_edits_the_right_operand() {
    insta::assert_snapshot!(marked(OVERRIDE_MERGE, None));
}

const OPTIONAL_ATTRS_MERGE: &str = r#"{ lib, stdenv, withGui ? false }:
stdenv.mkDerivation {
  pname = "bar";
  meta = {
    description = "Bar";
    license = lib.licenses.mit;
  } // lib.optionalAttrs withGui {
    mainProgram = "bar-gui";
  };
}
"#;

#[test]
fn shape_8_optional_attrs_on_the_right_leaves_the_literal_left_operand_to_edit() {
    insta::assert_snapshot!(marked(OPTIONAL_ATTRS_MERGE, None));
}

#[test]
fn shape_8_update_with_an_opaque_right_operand_is_refused() {
    let src = "{ lib, stdenv, extraMeta }:\nstdenv.mkDerivation {\n  meta = { description = \"x\"; } // extraMeta;\n}\n";
    assert!(matches!(refusal("p.nix", src), Refusal::OpaqueMeta { .. }));
}

#[test]
fn shape_9_generated_files_are_refused() {
    let src = "/* hackage-packages.nix is an auto-generated file -- DO NOT EDIT! */\n{ pkgs, lib, callPackage }:\nself: {\n  ShellCheck = { mkDerivation }: mkDerivation { meta = { description = \"x\"; }; };\n}\n";
    let reason = refusal("pkgs/development/haskell-modules/hackage-packages.nix", src);
    insta::assert_snapshot!(reason.to_string());
}

#[test]
fn a_do_not_edit_header_marks_any_file_as_generated() {
    let src = "# Do not edit! This file is generated by update.py\n{ lib }:\n{ meta = { description = \"x\"; }; }\n";
    assert!(matches!(
        refusal("pkgs/misc/x/default.nix", src),
        Refusal::GeneratedFile { .. }
    ));
}

#[test]
fn one_line_meta_gets_an_inline_binding() {
    let src = "{ lib, stdenv }:\nstdenv.mkDerivation {\n  pname = \"tiny\";\n  meta = { description = \"Tiny\"; license = lib.licenses.mit; };\n}\n";
    insta::assert_snapshot!(marked(src, None));
}

#[test]
fn empty_one_line_meta_gets_an_inline_binding() {
    let src = "{ stdenv }:\nstdenv.mkDerivation {\n  pname = \"tiny\";\n  meta = { };\n}\n";
    let out = marked(src, None);
    assert!(out.contains("  meta = { /* failing on Hydra since 2026-01-12, https://hydra.nixos.org/build/301234567 */ broken = true; };\n"), "{out}");
}

#[test]
fn a_trailing_comment_on_the_last_binding_stays_on_its_line() {
    let src = "{ lib, stdenv }:\nstdenv.mkDerivation {\n  meta = {\n    description = \"x\";\n    platforms = lib.platforms.linux; # needs inotify\n  };\n}\n";
    let out = marked(src, None);
    assert!(out.contains("    platforms = lib.platforms.linux; # needs inotify\n    # failing on Hydra since 2026-01-12, https://hydra.nixos.org/build/301234567\n    broken = true;\n  };"), "{out}");
}

#[test]
fn a_feature_conditional_broken_is_combined_with_or() {
    let src = "{ lib, stdenv, withArpack }:\nstdenv.mkDerivation {\n  meta = {\n    description = \"x\";\n    broken = stdenv.hostPlatform.isDarwin && withArpack;\n  };\n}\n";
    let out = marked(src, Some("aarch64-linux"));
    assert!(out.contains("    broken = stdenv.hostPlatform.isDarwin && withArpack || stdenv.hostPlatform.isLinux && stdenv.hostPlatform.isAarch64;\n"), "{out}");
}

#[test]
fn an_if_expression_broken_is_parenthesised_before_combining() {
    let src = "{ lib, stdenv, x }:\nstdenv.mkDerivation {\n  meta = {\n    description = \"x\";\n    broken = if x then true else false;\n  };\n}\n";
    let out = marked(src, Some("x86_64-linux"));
    assert!(
        out.contains("broken = (if x then true else false) || stdenv"),
        "{out}"
    );
}

#[test]
fn several_unrelated_metas_are_ambiguous_without_a_hint_from_nix() {
    let src = "{ stdenv }:\nlet\n  helper = stdenv.mkDerivation { meta = { description = \"helper\"; }; };\nin\nstdenv.mkDerivation {\n  passthru = { inherit helper; };\n  meta = { description = \"main\"; };\n}\n";
    assert!(matches!(
        refusal("p.nix", src),
        Refusal::AmbiguousMeta { .. }
    ));
    let mut req = request(None);
    req.meta_line = Some(7);
    match mark_broken(src, Path::new("p.nix"), &req).unwrap() {
        MarkBrokenOutcome::Edited(edit) => {
            assert!(edit.text.contains("meta = { description = \"main\"; /*"));
            assert!(edit.text.contains("meta = { description = \"helper\"; };"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn invalid_nix_is_an_error_with_file_line_and_column() {
    let err = mark_broken(
        "{ lib }:\n{\n  meta = { description = ; };\n}\n",
        Path::new("bad.nix"),
        &request(None),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "bad.nix:3:26: not valid Nix: unexpected TOKEN_SEMICOLON at 36..37, wanted any of [TOKEN_L_PAREN, TOKEN_REC, TOKEN_L_BRACE, TOKEN_L_BRACK, TOKEN_STRING_START, TOKEN_IDENT]"
    );
}

#[test]
fn reports_the_line_of_the_new_binding_and_whether_stdenv_was_added() {
    match mark_broken(
        AIOAMQP,
        Path::new("a.nix"),
        &request(Some("aarch64-darwin")),
    )
    .unwrap()
    {
        MarkBrokenOutcome::Edited(edit) => {
            assert!(edit.added_stdenv);
            assert_eq!(
                edit.text.lines().nth(edit.line - 1).map(str::trim),
                Some("broken = stdenv.hostPlatform.isDarwin && stdenv.hostPlatform.isAarch64;")
            );
        }
        other => panic!("{other:?}"),
    }
}

/// Platforms beyond Hydra's four, as nixpkgs' `lib.systems` describes them: a merge must
/// not change what an existing condition says about them.
const OTHER_PLATFORMS: [(&str, &str); 7] = [
    (
        "x86_64-linux",
        "isLinux = true; isDarwin = false; isx86_64 = true; isAarch64 = false;",
    ),
    (
        "aarch64-linux",
        "isLinux = true; isDarwin = false; isx86_64 = false; isAarch64 = true;",
    ),
    (
        "x86_64-darwin",
        "isLinux = false; isDarwin = true; isx86_64 = true; isAarch64 = false;",
    ),
    (
        "aarch64-darwin",
        "isLinux = false; isDarwin = true; isx86_64 = false; isAarch64 = true;",
    ),
    (
        "i686-linux",
        "isLinux = true; isDarwin = false; isx86_64 = false; isAarch64 = false;",
    ),
    (
        "riscv64-linux",
        "isLinux = true; isDarwin = false; isx86_64 = false; isAarch64 = false;",
    ),
    (
        "x86_64-freebsd",
        "isLinux = false; isDarwin = false; isx86_64 = true; isAarch64 = false;",
    ),
];

/// `broken`'s value on `platform` (one of [`OTHER_PLATFORMS`]), by real Nix.
fn broken_value(expression: &str, platform: &str) -> bool {
    let attrs = OTHER_PLATFORMS
        .iter()
        .find(|(name, _)| *name == platform)
        .map(|(_, attrs)| attrs)
        .unwrap();
    let program = format!(
        "let stdenv = {{ hostPlatform = {{ {attrs} }}; }}; withArpack = true; in {expression}"
    );
    let out = hydra_sentinel::nixpkgs::nix::NixInstantiate::from_path()
        .expect("nix-instantiate on PATH (apt-get install nix-bin)")
        .command()
        .args(["--eval", "--strict", "-E", &program])
        .output()
        .expect("running nix-instantiate");
    let value = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(
        out.status.success() && (value == "true" || value == "false"),
        "{program}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    value == "true"
}

#[test]
fn a_merged_broken_changes_nothing_but_the_platforms_marked_even_beyond_hydras() {
    for existing in [
        "stdenv.hostPlatform.isx86_64",
        "!stdenv.hostPlatform.isDarwin",
        "stdenv.hostPlatform.isDarwin && stdenv.hostPlatform.isAarch64",
        "stdenv.hostPlatform.isLinux || withArpack",
    ] {
        for wanted in [
            "aarch64-linux",
            "aarch64-linux,x86_64-darwin",
            "x86_64-linux",
        ] {
            let src = format!(
                "{{ lib, stdenv, withArpack }}:\nstdenv.mkDerivation {{\n  meta = {{\n    description = \"x\";\n    broken = {existing};\n  }};\n}}\n"
            );
            let expression = match mark_broken(
                &src,
                Path::new("pkgs/by-name/xx/example/package.nix"),
                &request(Some(wanted)),
            ) {
                Ok(MarkBrokenOutcome::Edited(edit)) => edit.expression,
                Ok(MarkBrokenOutcome::AlreadyBroken { .. }) => existing.to_owned(),
                other => panic!("{existing} + {wanted}: {other:?}"),
            };
            for (platform, _) in OTHER_PLATFORMS {
                let expected =
                    broken_value(existing, platform) || wanted.split(',').any(|w| w == platform);
                assert_eq!(
                    broken_value(&expression, platform),
                    expected,
                    "`{existing}` marked on {wanted} became `{expression}`: wrong on {platform}"
                );
            }
        }
    }
}

#[test]
fn a_file_with_crlf_line_endings_keeps_them_on_every_line() {
    let src = "{ lib, stdenv }:\r\nstdenv.mkDerivation {\r\n  meta = {\r\n    description = \"x\";\r\n    platforms = lib.platforms.linux;\r\n  };\r\n}\r\n";
    let out = marked(src, Some("aarch64-linux"));
    assert!(
        out.contains("    platforms = lib.platforms.linux;\r\n    # failing on Hydra since 2026-01-12, https://hydra.nixos.org/build/301234567\r\n    broken = stdenv.hostPlatform.isLinux && stdenv.hostPlatform.isAarch64;\r\n  };\r\n"),
        "{out:?}"
    );
    assert_eq!(
        out.matches('\n').count(),
        out.matches("\r\n").count(),
        "every line ends in CRLF: {out:?}"
    );
}

#[test]
fn an_inherited_meta_bound_in_a_let_of_the_same_file_is_refused_as_bound_in_a_let() {
    let src = "{ lib, stdenv }:\nlet\n  meta = {\n    description = \"x\";\n  };\nin\nstdenv.mkDerivation {\n  pname = \"p\";\n  inherit meta;\n}\n";
    match refusal("p.nix", src) {
        Refusal::MetaInLet { pos } => assert_eq!(pos.line, 3, "the `let` binding's line"),
        other => panic!("expected MetaInLet, got {other:?}"),
    }
}

#[test]
fn a_refusal_quotes_an_opaque_operand_by_its_first_line() {
    let src = "{ lib, stdenv }:\nstdenv.mkDerivation {\n  meta = {\n    description = \"x\";\n  } // lib.optionalAttrs stdenv.hostPlatform.isLinux {\n    broken = true;\n  };\n}\n";
    assert_eq!(
        refusal("p.nix", src).to_string(),
        "meta at p.nix:3:10 is merged with `lib.optionalAttrs stdenv.hostPlatform.isLinux { …`, whose content the editor cannot see"
    );
}
