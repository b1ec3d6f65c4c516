//! Property tests of the mark-broken editor: no byte outside meta (and the argument set)
//! changes, marking twice is a no-op, and no input makes it panic.

use std::path::Path;

use hydra_sentinel::nixpkgs::{
    Evidence, MarkBrokenOutcome, MarkBrokenRequest, Platforms, System, mark_broken,
};
use proptest::prelude::*;

/// A generated package file, with the pieces kept apart so we know where meta is.
#[derive(Debug, Clone)]
struct File {
    args: String,
    between: String,
    meta: String,
    after: String,
}

impl File {
    fn text(&self) -> String {
        format!("{}{}{}{}", self.args, self.between, self.meta, self.after)
    }
}

fn arg_set() -> impl Strategy<Value = String> {
    let names = prop::sample::subsequence(
        vec!["fetchurl", "pkg-config", "zlib", "withGui ? false"],
        0..4,
    );
    (names, any::<bool>(), 0..3usize).prop_map(|(names, with_stdenv, style)| {
        let mut all = vec!["lib"];
        if with_stdenv {
            all.push("stdenv");
        }
        all.extend(names);
        match style {
            0 => format!(
                "{{\n{}}}:\n\n",
                all.iter().map(|n| format!("  {n},\n")).collect::<String>()
            ),
            1 => format!("{{ {}\n}}:\n\n", all.join("\n, ")),
            _ => format!("{{ {} }}:\n\n", all.join(", ")),
        }
    })
}

fn entry() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("description = \"A package; with { braces } and ; semicolons\";".to_string()),
        Just("license = lib.licenses.mit;".to_string()),
        Just("longDescription = ''\n      Multi-line };\n      text\n    '';".to_string()),
        Just("maintainers = with lib.maintainers; [ alice bob ];".to_string()),
        Just("identifiers.cpeParts.vendor = \"gnu\";".to_string()),
        Just("platforms = lib.platforms.unix; # trailing comment".to_string()),
        Just("# a comment line".to_string()),
        Just("inherit (src.meta) homepage;".to_string()),
    ]
}

fn existing_broken() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        Just(Some("broken = true;".to_string())),
        Just(Some("broken = stdenv.hostPlatform.isDarwin;".to_string())),
        Just(Some("# explains why\n    broken = stdenv.hostPlatform.isDarwin && stdenv.hostPlatform.isAarch64;".to_string())),
        Just(Some("broken = withGui;".to_string())),
    ]
}

fn meta_value() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(entry(), 0..6),
        existing_broken(),
        0..4usize,
    )
        .prop_map(|(mut entries, broken, style)| {
            if let Some(b) = broken {
                entries.push(b);
            }
            let multi = entries
                .iter()
                .map(|e| format!("    {e}\n"))
                .collect::<String>();
            let one_line: Vec<String> = entries
                .iter()
                .filter(|e| !e.contains('#') && !e.contains('\n'))
                .cloned()
                .collect();
            match style {
                0 => format!("{{\n{multi}  }}"),
                1 => format!("with lib; {{\n{multi}  }}"),
                2 => format!("{{ {} }}", one_line.join(" ")),
                _ => format!(
                    "{{\n{multi}  }} // lib.optionalAttrs withGui {{ mainProgram = \"x\"; }}"
                ),
            }
        })
}

fn file() -> impl Strategy<Value = File> {
    let before = prop::sample::subsequence(
        vec![
            "  pname = \"p\";\n",
            "  version = \"1\";\n",
            "  passthru.tests = { };\n",
        ],
        0..3,
    );
    let after = prop::sample::subsequence(vec!["  doCheck = false;\n", "  # trailing\n"], 0..2);
    (arg_set(), before, meta_value(), after).prop_map(|(args, before, meta, after)| File {
        args,
        between: format!("stdenv.mkDerivation {{\n{}  meta = ", before.concat()),
        meta,
        after: format!(";\n{}}}\n", after.concat()),
    })
}

fn platforms() -> impl Strategy<Value = Platforms> {
    (1u8..16).prop_map(|mask| {
        Platforms::new(
            System::ALL
                .into_iter()
                .enumerate()
                .filter(|(i, _)| mask & (1 << i) != 0)
                .map(|(_, s)| s),
        )
        .expect("non-empty mask")
    })
}

fn request(platforms: Platforms) -> MarkBrokenRequest {
    MarkBrokenRequest {
        platforms,
        evidence: Evidence {
            since: Some("2026-01-12".into()),
            ..Evidence::default()
        },
        meta_line: None,
    }
}

/// The characters of `inserted` that are not part of `original` when `original` is read as
/// a subsequence of `inserted` (greedy), or `None` if it is not a subsequence.
fn insertions(original: &str, inserted: &str) -> Option<String> {
    let mut extra = String::new();
    let mut want = original.chars().peekable();
    for c in inserted.chars() {
        if want.peek() == Some(&c) {
            want.next();
        } else {
            extra.push(c);
        }
    }
    want.peek().is_none().then_some(extra)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn no_byte_outside_meta_and_the_argument_set_changes(f in file(), p in platforms()) {
        let original = f.text();
        let outcome = mark_broken(&original, Path::new("p.nix"), &request(p));
        let edit = match outcome {
            Ok(MarkBrokenOutcome::Edited(edit)) => edit,
            Ok(MarkBrokenOutcome::AlreadyBroken { .. }) => return Ok(()),
            Err(e) => return Err(TestCaseError::fail(format!("{e}\n{original}"))),
        };
        let new = edit.text;
        let at = new.find(&f.between).ok_or_else(|| TestCaseError::fail(format!("prefix lost:\n{new}")))?;
        let new_args = &new[..at];
        prop_assert!(new[at + f.between.len()..].ends_with(&f.after), "suffix changed:\n{}", new);
        if edit.added_stdenv {
            let extra = insertions(&f.args, new_args).unwrap_or_default();
            let extra: String = extra.chars().filter(|c| !c.is_whitespace() && *c != ',').collect();
            prop_assert_eq!(extra, "stdenv");
        } else {
            prop_assert_eq!(new_args, f.args.as_str());
        }
        prop_assert_eq!(new.matches("broken =").count(), 1, "{}", new);
        prop_assert!(rnix::Root::parse(&new).errors().is_empty(), "does not parse:\n{}", new);
    }

    #[test]
    fn marking_twice_changes_nothing_the_second_time(f in file(), p in platforms()) {
        let req = request(p);
        if let Ok(MarkBrokenOutcome::Edited(edit)) = mark_broken(&f.text(), Path::new("p.nix"), &req) {
            let again = mark_broken(&edit.text, Path::new("p.nix"), &req);
            prop_assert!(matches!(again, Ok(MarkBrokenOutcome::AlreadyBroken { .. })), "{:?}\n{}", again, edit.text);
        }
    }

    #[test]
    fn never_panics_on_arbitrary_text(text in ".{0,400}") {
        let _ = mark_broken(&text, Path::new("p.nix"), &request(Platforms::all()));
    }

    #[test]
    fn never_panics_on_damaged_package_files(f in file(), cut in 0usize..2000, len in 0usize..20) {
        let text = f.text();
        let mut bytes = text.into_bytes();
        let start = cut.min(bytes.len());
        let end = (start + len).min(bytes.len());
        bytes.drain(start..end);
        let damaged = String::from_utf8_lossy(&bytes).into_owned();
        let _ = mark_broken(&damaged, Path::new("p.nix"), &request(Platforms::parse_list("aarch64-linux").expect("valid")));
    }
}
