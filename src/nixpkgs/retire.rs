//! Retiring a long-broken package to the attic.
//!
//! Owns: planning the retirement as a [`ChangeSet`]: move the package's folder into an attic
//! folder nothing evaluates, remove its call site from `all-packages.nix` /
//! `python-packages.nix`, and add a `throw` alias at its sorted place in `aliases.nix` /
//! `python-aliases.nix` with `# Added YYYY-MM-DD` on the same line. Pure: reads through a
//! [`TreeSource`], takes the date as an argument, writes nothing.

use std::cmp::Ordering;
use std::path::{Path, PathBuf};

use rnix::{SyntaxKind, SyntaxNode};

use super::changes::{Change, ChangeSet};
use super::error::{NixpkgsError, Refusal, SourcePos};
use super::locate::{Index, Location, PackageSet};
use super::source::TreeSource;
use super::syntax::{binding_path, end, entries, line_col, nix_string_escape, parse, start};

pub const ALIASES: &str = "pkgs/top-level/aliases.nix";
pub const PYTHON_ALIASES: &str = "pkgs/top-level/python-aliases.nix";

/// A calendar date `YYYY-MM-DD`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Date(String);

impl Date {
    pub fn parse(text: &str) -> Result<Date, NixpkgsError> {
        let bad = || NixpkgsError::InvalidDate(text.to_string());
        let parts: Vec<&str> = text.split('-').collect();
        let [y, m, d] = parts.as_slice() else {
            return Err(bad());
        };
        let digits = |s: &str, n: usize| s.len() == n && s.chars().all(|c| c.is_ascii_digit());
        if !(digits(y, 4) && digits(m, 2) && digits(d, 2)) {
            return Err(bad());
        }
        let (month, day): (u32, u32) =
            (m.parse().map_err(|_| bad())?, d.parse().map_err(|_| bad())?);
        if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
            return Err(bad());
        }
        Ok(Date(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What to retire and how to explain it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetireRequest {
    /// Attic folder, relative to the checkout root (nothing may import it).
    pub attic: PathBuf,
    pub date: Date,
    /// Why, in words: "it has been broken since 2025-01-02".
    pub reason: String,
    /// A link to the removal PR or an issue, when known.
    pub reference: Option<String>,
}

/// The planned retirement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retirement {
    pub changes: ChangeSet,
    /// Where the code now lives.
    pub moved_to: PathBuf,
    /// The alias line added.
    pub alias_line: String,
}

/// The attic must be a folder of the checkout, named by plain components (no `..`, not
/// absolute: the code would leave the repository and the alias would point outside it), and
/// not inside the package it receives (the move would put the folder into itself).
fn check_attic(attic: &Path, package_path: &Path) -> Result<(), NixpkgsError> {
    use std::path::Component;
    let plain = attic.components().next().is_some()
        && attic
            .components()
            .all(|c| matches!(c, Component::Normal(_)));
    if !plain {
        return Err(NixpkgsError::InvalidInput(format!(
            "the attic `{}` must be a folder inside the checkout, relative to its top, without `..`",
            attic.display()
        )));
    }
    if attic.starts_with(package_path) {
        return Err(NixpkgsError::InvalidInput(format!(
            "the attic `{}` is inside `{}`, the folder it would receive",
            attic.display(),
            package_path.display()
        )));
    }
    Ok(())
}

/// Plan the retirement of `attr`.
pub fn plan_retirement(
    index: &Index,
    source: &dyn TreeSource,
    attr: &str,
    request: &RetireRequest,
) -> Result<Retirement, NixpkgsError> {
    let refuse = |reason| NixpkgsError::refused(attr, reason);
    let location = index.lookup(attr)?;
    let package_path = package_path(index, source, &location).map_err(refuse)?;
    check_attic(&request.attic, &package_path)?;
    let moved_to = request.attic.join(&package_path);
    if source.is_dir(&moved_to) || source.is_file(&moved_to) {
        return Err(NixpkgsError::InvalidInput(format!(
            "{} already exists",
            moved_to.display()
        )));
    }

    let mut changes = vec![Change::Move {
        from: package_path.clone(),
        to: moved_to.clone(),
    }];
    let mut removed: Option<(PathBuf, std::ops::Range<usize>)> = None;

    if let Some(site) = &location.call_site {
        let old = source.read(&site.list_file)?.unwrap_or_default();
        let new = remove_binding_lines(&old, site.range.clone()).ok_or_else(|| {
            refuse(Refusal::UnsupportedCallSite {
                file: site.list_file.clone(),
                line: site.line,
                why: "the binding shares its lines with other code".into(),
            })
        })?;
        removed = Some((site.list_file.clone(), site.range.clone()));
        changes.push(Change::Write {
            path: site.list_file.clone(),
            old: Some(old),
            new,
        });
    } else if location.by_name_dir.is_none() {
        return Err(refuse(Refusal::UnsupportedCallSite {
            file: location.file.clone(),
            line: 1,
            why: "no call site to remove".into(),
        }));
    }

    let places = still_used(source, &location.name, &package_path, removed.as_ref())?;
    if !places.is_empty() {
        return Err(refuse(Refusal::StillUsed {
            name: location.name.clone(),
            places,
        }));
    }

    let aliases_file = PathBuf::from(match location.set {
        PackageSet::TopLevel => ALIASES,
        PackageSet::Python => PYTHON_ALIASES,
    });
    let aliases = source.read(&aliases_file)?.ok_or_else(|| {
        NixpkgsError::InvalidInput(format!("{} does not exist", aliases_file.display()))
    })?;
    let message = alias_message(&location, &moved_to, request);
    let alias_line = format!(
        "{} = throw \"{}\"; # Added {}",
        nix_attr_name(&location.name),
        nix_string_escape(&message),
        request.date.as_str()
    );
    let new_aliases = insert_alias(&aliases, &aliases_file, &location.name, &alias_line).map_err(
        |e| match e {
            InsertError::Exists(line) => refuse(Refusal::AliasExists {
                file: aliases_file.clone(),
                line,
            }),
            InsertError::Nix(e) => e,
        },
    )?;
    changes.push(Change::Write {
        path: aliases_file,
        old: Some(aliases),
        new: new_aliases,
    });

    Ok(Retirement {
        changes: ChangeSet { changes },
        moved_to,
        alias_line,
    })
}

/// Where code of `pkgs/` outside the package (and outside the alias files) still uses `name`
/// once the retirement removed its binding (`removed`: its file and bytes in the package
/// list): an identifier by that name as a value or in an `inherit`, an attribute selected by
/// that name (`pkgs.NAME`, `python3Packages.NAME`), or a function argument of that name (what
/// `callPackage` fills in). Such code would fail to evaluate without it, so it has to go
/// first (nixpkgs' own rule: `rg NAME` finds nothing left). Conservative: a local binding of
/// the same name counts too, and a human looks at it.
fn still_used(
    source: &dyn TreeSource,
    name: &str,
    package_path: &Path,
    removed: Option<&(PathBuf, std::ops::Range<usize>)>,
) -> Result<Vec<SourcePos>, NixpkgsError> {
    let mut places = Vec::new();
    for file in source.files_under(Path::new("pkgs"))? {
        let skipped = file.extension().is_none_or(|e| e != "nix")
            || file.starts_with(package_path)
            || file == Path::new(ALIASES)
            || file == Path::new(PYTHON_ALIASES);
        if skipped {
            continue;
        }
        let Some(text) = source.read(&file)? else {
            continue;
        };
        if !text.contains(name) {
            continue;
        }
        let gone = removed
            .filter(|(list, _)| *list == file)
            .map_or(0..0, |(_, range)| range.clone());
        let root = rnix::Root::parse(&text).syntax();
        for node in root.descendants() {
            // A function argument (`{ NAME, ... }:`) is an identifier too.
            let used = node.kind() == SyntaxKind::NODE_IDENT
                && node.text() == name
                && match node.parent() {
                    // A binding's own name (`NAME = ...;`, `meta.NAME = ...;`) is no use of it.
                    Some(parent) if parent.kind() == SyntaxKind::NODE_ATTRPATH => parent
                        .parent()
                        .is_some_and(|p| p.kind() != SyntaxKind::NODE_ATTRPATH_VALUE),
                    _ => true,
                };
            if used && !gone.contains(&start(&node)) {
                let (line, column) = line_col(&text, start(&node));
                places.push(SourcePos {
                    file: file.clone(),
                    line,
                    column,
                });
            }
        }
    }
    Ok(places)
}

/// The folder (or single file) that holds the package.
fn package_path(
    index: &Index,
    source: &dyn TreeSource,
    location: &Location,
) -> Result<PathBuf, Refusal> {
    if let Some(dir) = &location.by_name_dir {
        return Ok(dir.clone());
    }
    let Some(site) = &location.call_site else {
        return Err(Refusal::UnsupportedCallSite {
            file: location.file.clone(),
            line: 1,
            why: "no call site to remove".into(),
        });
    };
    let dir = site.target.parent().unwrap_or(Path::new("")).to_path_buf();
    let others = index.other_users_under(&dir, location);
    // The folder is the package's own when `callPackage` was called on it, or when the file
    // is its `default.nix`/`package.nix`, or when the folder is named after the package.
    let file_name = site.target.file_name().and_then(|n| n.to_str());
    let own_folder = site.target_is_dir
        || matches!(file_name, Some("default.nix" | "package.nix"))
        || dir.file_name().and_then(|n| n.to_str()) == Some(location.name.as_str());
    if others.is_empty() && own_folder && source.is_dir(&dir) {
        return Ok(dir);
    }
    if site.target_is_dir {
        return Err(Refusal::SharedMeta {
            file: dir,
            attrs: others,
        });
    }
    Ok(site.target.clone())
}

fn alias_message(location: &Location, moved_to: &Path, request: &RetireRequest) -> String {
    let mut message = format!(
        "'{}' has been removed because {}; its code was moved to {} in nixpkgs",
        location.name,
        request.reason.trim().trim_end_matches('.'),
        moved_to.display()
    );
    if let Some(reference) = &request.reference {
        message.push_str(&format!(", see {reference}"));
    }
    super::syntax::one_line(&message)
}

fn nix_attr_name(name: &str) -> String {
    let mut chars = name.chars();
    let plain = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '\''));
    if plain {
        name.to_string()
    } else {
        format!("\"{}\"", nix_string_escape(name))
    }
}

/// Remove the lines holding `range` (a binding). `None` if other code shares those lines.
fn remove_binding_lines(text: &str, range: std::ops::Range<usize>) -> Option<String> {
    let line_start = text[..range.start].rfind('\n').map_or(0, |i| i + 1);
    if !text[line_start..range.start].trim().is_empty() {
        return None;
    }
    let line_end = text[range.end..]
        .find('\n')
        .map_or(text.len(), |i| range.end + i + 1);
    let rest_of_line = text[range.end..line_end].trim();
    if !(rest_of_line.is_empty() || rest_of_line.starts_with('#')) {
        return None;
    }
    let mut end = line_end;
    // Drop one blank line too when the binding stood between two blank lines (or a blank
    // line and the closing brace).
    let before_blank = text[..line_start].ends_with("\n\n");
    let after = &text[end..];
    if before_blank && after.starts_with('\n') {
        end += 1;
    } else if before_blank && after.trim_start().starts_with('}') {
        let mut out = text[..line_start - 1].to_string();
        out.push_str(&text[end..]);
        return Some(out);
    }
    let mut out = text[..line_start].to_string();
    out.push_str(&text[end..]);
    Some(out)
}

enum InsertError {
    Exists(usize),
    Nix(NixpkgsError),
}

/// Insert `line` for `name` into the aliases attribute set, at its keep-sorted place
/// (case-insensitive, numbers compared as numbers, comment lines attached to the entry
/// below them).
fn insert_alias(text: &str, file: &Path, name: &str, line: &str) -> Result<String, InsertError> {
    let root = parse(text, file).map_err(InsertError::Nix)?;
    let Some(set) = root
        .descendants()
        .filter(|n| n.kind() == SyntaxKind::NODE_ATTR_SET)
        .max_by_key(|n| entries(n).count())
    else {
        return Err(InsertError::Nix(NixpkgsError::InvalidInput(format!(
            "{}: no alias set found",
            file.display()
        ))));
    };
    let (region_start, region_end) = keep_sorted_region(&set);
    let bindings: Vec<(String, SyntaxNode)> = entries(&set)
        .filter(|e| start(e) >= region_start && end(e) <= region_end)
        .filter_map(|e| {
            binding_path(&e)
                .and_then(|p| p.first().cloned())
                .map(|n| (n, e))
        })
        .collect();
    if let Some((_, existing)) = bindings.iter().find(|(n, _)| n == name) {
        return Err(InsertError::Exists(line_col(text, start(existing)).0));
    }
    let indent_of =
        |node: &SyntaxNode| super::syntax::line_indentation(text, start(node)).to_string();
    let next = bindings
        .iter()
        .find(|(n, _)| keep_sorted_cmp(n, name) == Ordering::Greater);
    let (at, indent) = match next {
        Some((_, node)) => (block_start(text, node), indent_of(node)),
        None => match bindings.last() {
            Some((_, node)) => {
                let line_end = text[end(node)..]
                    .find('\n')
                    .map_or(text.len(), |i| end(node) + i + 1);
                (line_end, indent_of(node))
            }
            None => {
                let brace = set
                    .children_with_tokens()
                    .find(|c| c.kind() == SyntaxKind::TOKEN_L_BRACE)
                    .map_or(start(&set) + 1, |t| usize::from(t.text_range().end()));
                let line_end = text[brace..]
                    .find('\n')
                    .map_or(text.len(), |i| brace + i + 1);
                (line_end, "  ".to_string())
            }
        },
    };
    let mut out = String::with_capacity(text.len() + line.len() + indent.len() + 1);
    out.push_str(&text[..at]);
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(&indent);
    out.push_str(line);
    out.push('\n');
    out.push_str(&text[at..]);
    Ok(out)
}

/// Byte range between `# keep-sorted start` and `# keep-sorted end` in `set`, or the whole set.
fn keep_sorted_region(set: &SyntaxNode) -> (usize, usize) {
    let comments: Vec<(usize, String)> = set
        .children_with_tokens()
        .filter(|c| c.kind() == SyntaxKind::TOKEN_COMMENT)
        .map(|c| (usize::from(c.text_range().start()), c.to_string()))
        .collect();
    let region_start = comments
        .iter()
        .find(|(_, t)| t.contains("keep-sorted start"))
        .map_or(start(set), |(o, _)| *o);
    let region_end = comments
        .iter()
        .find(|(o, t)| *o > region_start && t.contains("keep-sorted end"))
        .map_or(end(set), |(o, _)| *o);
    (region_start, region_end)
}

/// Start of the line of `node`, moved up over comment lines directly above it.
fn block_start(text: &str, node: &SyntaxNode) -> usize {
    let mut at = text[..start(node)].rfind('\n').map_or(0, |i| i + 1);
    while at > 0 {
        let prev_start = text[..at - 1].rfind('\n').map_or(0, |i| i + 1);
        let prev = text[prev_start..at].trim();
        if prev.starts_with('#') && !prev.contains("keep-sorted") {
            at = prev_start;
        } else {
            break;
        }
    }
    at
}

/// keep-sorted's `case=no numeric=yes` order.
fn keep_sorted_cmp(a: &str, b: &str) -> Ordering {
    fn chunks(s: &str) -> Vec<(bool, String)> {
        let mut out: Vec<(bool, String)> = Vec::new();
        for c in s.to_lowercase().chars() {
            let digit = c.is_ascii_digit();
            match out.last_mut() {
                Some((d, chunk)) if *d == digit => chunk.push(c),
                _ => out.push((digit, c.to_string())),
            }
        }
        out
    }
    let (ca, cb) = (chunks(a), chunks(b));
    for (x, y) in ca.iter().zip(cb.iter()) {
        let ord = match (x, y) {
            ((true, nx), (true, ny)) => {
                let (tx, ty) = (nx.trim_start_matches('0'), ny.trim_start_matches('0'));
                tx.len().cmp(&ty.len()).then_with(|| tx.cmp(ty))
            }
            ((_, sx), (_, sy)) => sx.cmp(sy),
        };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    ca.len().cmp(&cb.len()).then_with(|| a.cmp(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_case_insensitively_and_numbers_as_numbers() {
        assert_eq!(keep_sorted_cmp("Ardour", "aalib"), Ordering::Greater);
        assert_eq!(keep_sorted_cmp("foo2", "foo10"), Ordering::Less);
        assert_eq!(keep_sorted_cmp("oldtool", "pacup"), Ordering::Less);
    }

    #[test]
    fn dates_must_be_well_formed() {
        assert!(Date::parse("2026-05-03").is_ok());
        for bad in ["2026-5-3", "2026-13-01", "yesterday", "2026-05-03; rm"] {
            assert!(Date::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn removing_a_binding_between_blank_lines_leaves_one_blank_line() {
        let text = "{\n  a = 1;\n\n  b = 2;\n\n  c = 3;\n}\n";
        let b = text.find("b = 2;").unwrap();
        assert_eq!(
            remove_binding_lines(text, b..b + 6).as_deref(),
            Some("{\n  a = 1;\n\n  c = 3;\n}\n")
        );
    }

    #[test]
    fn a_binding_sharing_its_line_is_not_removed() {
        let text = "{ a = 1; b = 2; }\n";
        let b = text.find("b = 2;").unwrap();
        assert_eq!(remove_binding_lines(text, b..b + 6), None);
    }
}
