//! Marking a package broken in its Nix file, losslessly.
//!
//! Owns: the pure edit `text → text` that inserts or merges `broken` in the package's own
//! meta and, when a platform condition needs it, adds `stdenv` to the file's argument set.
//! Must never change a byte outside those two places, never write a second `broken`
//! binding, never return text that does not parse, and never touch the file system: callers
//! read and write files.

use std::path::Path;

use rnix::{SyntaxKind, SyntaxNode};

use super::changes::{Change, ChangeSet};
use super::error::{NixpkgsError, Refusal};
use super::generated::generated_reason;
use super::locate::{Index, Located, locate};
use super::meta::{MetaSite, find_meta};
use super::nix::MetaPositionOracle;
use super::platform::Platforms;
use super::source::TreeSource;
use super::syntax::{
    Splice, apply_splices, binding_value, end, entries, indentation_at, inherit_names, line_col,
    line_indentation, one_line, parse, pos_at, range, start, unparen,
};

/// Why the package is being marked: goes into the one-line comment above `broken`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Evidence {
    /// Since when it fails, e.g. `2026-01-12`.
    pub since: Option<String>,
    /// A Hydra build link.
    pub build_url: Option<String>,
    /// Free text from a human (`--reason`).
    pub note: Option<String>,
}

impl Evidence {
    /// The comment text (without `#`), or `None` when there is nothing to say.
    pub fn comment(&self) -> Option<String> {
        let hydra = match (&self.since, &self.build_url) {
            (Some(since), Some(url)) => Some(format!("failing on Hydra since {since}, {url}")),
            (Some(since), None) => Some(format!("failing on Hydra since {since}")),
            (None, Some(url)) => Some(format!("failing on Hydra, {url}")),
            (None, None) => None,
        };
        let text = match (&self.note, hydra) {
            (Some(note), Some(hydra)) => format!("{note}; {hydra}"),
            (Some(note), None) => note.clone(),
            (None, Some(hydra)) => hydra,
            (None, None) => return None,
        };
        let text = one_line(&text);
        (!text.is_empty()).then_some(text)
    }
}

/// What to mark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkBrokenRequest {
    pub platforms: Platforms,
    pub evidence: Evidence,
    /// Line of `meta.description` as reported by Nix, to choose among several metas.
    pub meta_line: Option<usize>,
}

impl MarkBrokenRequest {
    pub fn everywhere(evidence: Evidence) -> Self {
        MarkBrokenRequest {
            platforms: Platforms::all(),
            evidence,
            meta_line: None,
        }
    }
}

/// How `broken` was set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokenChange {
    /// A new `broken` binding.
    Inserted,
    /// An existing `broken` binding got a new value; `previous` is its old expression.
    Merged { previous: String },
}

/// A successful edit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkBrokenEdit {
    pub text: String,
    /// The expression now bound to `broken`.
    pub expression: String,
    /// 1-based line of the `broken` binding in the new text.
    pub line: usize,
    pub change: BrokenChange,
    /// `stdenv` was added to the file's argument set.
    pub added_stdenv: bool,
}

/// The result of asking to mark a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MarkBrokenOutcome {
    Edited(MarkBrokenEdit),
    /// The existing `broken` already covers the requested platforms; nothing to do.
    AlreadyBroken {
        line: usize,
        expression: String,
    },
}

/// Mark the package defined in `text` broken. `file` is used for messages and for the
/// generated-file check only.
pub fn mark_broken(
    text: &str,
    file: &Path,
    request: &MarkBrokenRequest,
) -> Result<MarkBrokenOutcome, NixpkgsError> {
    let subject = file.display().to_string();
    if let Some(why) = generated_reason(file, Some(text)) {
        return Err(NixpkgsError::refused(
            subject,
            Refusal::GeneratedFile {
                file: file.to_path_buf(),
                why,
            },
        ));
    }
    let root = parse(text, file)?;
    let site = find_meta(&root, text, file, request.meta_line)
        .map_err(|r| NixpkgsError::refused(&subject, r))?;

    let existing = site.broken_binding().map_err(|inherit| {
        NixpkgsError::refused(
            &subject,
            Refusal::InheritedBroken {
                pos: pos_at(text, start(&inherit), file),
            },
        )
    })?;

    let mut splices = Vec::new();
    let (expression, change, anchor) = match existing {
        Some(binding) => {
            let Some(value) = binding_value(&binding) else {
                return Err(NixpkgsError::InvalidNix {
                    pos: pos_at(text, start(&binding), file),
                    message: "`broken` has no value".into(),
                });
            };
            let Some(expression) = merged_condition(&value, &request.platforms) else {
                return Ok(MarkBrokenOutcome::AlreadyBroken {
                    line: line_col(text, start(&binding)).0,
                    expression: value.text().to_string(),
                });
            };
            splices.push(Splice {
                range: range(&value),
                text: expression.clone(),
            });
            if let Some(comment) = request.evidence.comment() {
                splices.push(comment_above(text, &binding, &comment));
            }
            let previous = value.text().to_string();
            (
                expression,
                BrokenChange::Merged { previous },
                start(&binding),
            )
        }
        None => {
            let expression = request.platforms.condition();
            let (splice, anchor) =
                insert_broken(text, &site, &expression, request.evidence.comment());
            splices.push(splice);
            (expression, BrokenChange::Inserted, anchor)
        }
    };

    let mut added_stdenv = false;
    if expression.contains("stdenv.") && !in_scope(site.node(), "stdenv") {
        let splice = add_argument(&root, "stdenv").ok_or_else(|| {
            NixpkgsError::refused(
                &subject,
                Refusal::StdenvUnavailable {
                    file: file.to_path_buf(),
                },
            )
        })?;
        splices.push(splice);
        added_stdenv = true;
    }

    let new_text =
        apply_splices(text, &splices).ok_or_else(|| NixpkgsError::EditWouldNotParse {
            file: file.to_path_buf(),
            message: "overlapping edits".into(),
        })?;
    // Where the anchor moved to: the splices before it changed the length of the text.
    let before_anchor: isize = splices
        .iter()
        .filter(|s| s.range.start < anchor)
        .map(|s| s.text.len() as isize - s.range.len() as isize)
        .sum();
    let near = anchor.saturating_add_signed(before_anchor);
    verify(&new_text, file, &expression)?;
    let line = broken_line(&new_text, file, near)?;
    Ok(MarkBrokenOutcome::Edited(MarkBrokenEdit {
        text: new_text,
        expression,
        line,
        change,
        added_stdenv,
    }))
}

/// The new value for an existing `broken` bound to `value`, or `None` when it already
/// covers `wanted`. The old expression is read as a chain of `||` alternatives and kept as
/// written; the systems of `wanted` that its pure platform conditions do not cover are added
/// as one more alternative. The old conditions are never rewritten from the four Hydra
/// systems they cover there: `isx86_64` is also true on x86_64-freebsd and false on
/// riscv64-linux, which a rewrite from Hydra's systems alone would change. Only when
/// every Hydra system is broken does the value become `true` (a mark "on every platform").
fn merged_condition(value: &SyntaxNode, wanted: &Platforms) -> Option<String> {
    let mut alternatives = Vec::new();
    or_alternatives(value.clone(), &mut alternatives);
    let mut covered = std::collections::BTreeSet::new();
    for alternative in &alternatives {
        if let Some(systems) = Platforms::recognise(alternative) {
            covered.extend(systems);
        }
    }
    let missing = Platforms::from_set(wanted.systems().filter(|s| !covered.contains(s)).collect())?;
    covered.extend(wanted.systems());
    if Platforms::from_set(covered).is_some_and(|every| every.is_all()) {
        return Some("true".to_string());
    }
    let mut parts: Vec<String> = alternatives.iter().map(alternative_text).collect();
    parts.push(missing.condition());
    Some(parts.join(" || "))
}

/// Flatten `a || b || c` into its alternatives.
fn or_alternatives(node: SyntaxNode, out: &mut Vec<SyntaxNode>) {
    let is_or = node.kind() == SyntaxKind::NODE_BIN_OP
        && node
            .children_with_tokens()
            .any(|c| c.kind() == SyntaxKind::TOKEN_OR_OR);
    if is_or {
        for operand in node.children() {
            or_alternatives(operand, out);
        }
    } else {
        out.push(node);
    }
}

/// An alternative's text, parenthesised when it binds more loosely than `||`.
fn alternative_text(node: &SyntaxNode) -> String {
    let text = node.text().to_string();
    let tight = matches!(
        node.kind(),
        SyntaxKind::NODE_IDENT
            | SyntaxKind::NODE_SELECT
            | SyntaxKind::NODE_APPLY
            | SyntaxKind::NODE_UNARY_OP
            | SyntaxKind::NODE_HAS_ATTR
            | SyntaxKind::NODE_PAREN
            | SyntaxKind::NODE_LITERAL
    ) || (node.kind() == SyntaxKind::NODE_BIN_OP
        && !node.children_with_tokens().any(|c| {
            matches!(
                c.kind(),
                SyntaxKind::TOKEN_IMPLICATION
                    | SyntaxKind::TOKEN_PIPE_LEFT
                    | SyntaxKind::TOKEN_PIPE_RIGHT
            )
        }));
    if tight { text } else { format!("({text})") }
}

/// A comment line directly above `binding` (below any comment already there).
fn comment_above(text: &str, binding: &SyntaxNode, comment: &str) -> Splice {
    let at = start(binding);
    let inserted = match indentation_at(text, at) {
        Some(indent) => format!("# {comment}\n{indent}"),
        None => format!("/* {} */ ", comment.replace("*/", "* /")),
    };
    Splice {
        range: at..at,
        text: inserted,
    }
}

/// Where and what to insert for a new `broken` binding; also returns the offset (in the old
/// text) where the binding goes, to find its line afterwards.
fn insert_broken(
    text: &str,
    site: &MetaSite,
    expression: &str,
    comment: Option<String>,
) -> (Splice, usize) {
    let (key, last, container) = match site {
        MetaSite::Set { set, .. } => ("broken", entries(set).last(), set.clone()),
        MetaSite::Dotted { parent, bindings } => {
            ("meta.broken", bindings.last().cloned(), parent.clone())
        }
    };
    let binding = format!("{key} = {expression};");
    let inline_comment = comment
        .as_ref()
        .map(|c| format!("/* {} */ ", c.replace("*/", "* /")))
        .unwrap_or_default();

    let Some(last) = last else {
        // Empty set `{ }` (only possible for MetaSite::Set).
        let l = container
            .children_with_tokens()
            .find(|c| c.kind() == SyntaxKind::TOKEN_L_BRACE)
            .map_or(start(&container) + 1, |t| usize::from(t.text_range().end()));
        let r = container
            .children_with_tokens()
            .filter(|c| c.kind() == SyntaxKind::TOKEN_R_BRACE)
            .last()
            .map_or(end(&container) - 1, |t| usize::from(t.text_range().start()));
        let inner = &text[l..r];
        if inner.contains('\n') && inner.trim().is_empty() {
            let indent = format!("{}  ", line_indentation(text, start(&container)));
            let comment_line = comment
                .map(|c| format!("\n{indent}# {c}"))
                .unwrap_or_default();
            return (
                Splice {
                    range: l..l,
                    text: format!("{comment_line}\n{indent}{binding}"),
                },
                l,
            );
        }
        return (
            Splice {
                range: l..r,
                text: format!(" {inline_comment}{binding} "),
            },
            l,
        );
    };

    // Insert after the last entry and its trailing same-line comment.
    let mut at = end(&last);
    let mut sibling = last.next_sibling_or_token();
    let mut newline_follows = false;
    while let Some(element) = sibling {
        match element.kind() {
            SyntaxKind::TOKEN_WHITESPACE => {
                if element.to_string().contains('\n') {
                    newline_follows = true;
                    break;
                }
            }
            SyntaxKind::TOKEN_COMMENT => {
                let comment_text = element.to_string();
                at = usize::from(element.text_range().end());
                if comment_text.starts_with('#') {
                    newline_follows = true;
                    break;
                }
            }
            _ => break,
        }
        sibling = element.next_sibling_or_token();
    }

    if !newline_follows {
        // One-line set: `{ a = 1; /* evidence */ broken = true; }`.
        return (
            Splice {
                range: at..at,
                text: format!(" {inline_comment}{binding}"),
            },
            at,
        );
    }
    // Indented like the last entry; one level deeper than its line when it shares the
    // line with the opening brace.
    let indent = indentation_at(text, start(&last)).map_or_else(
        || format!("{}  ", line_indentation(text, start(&last))),
        str::to_string,
    );
    let comment_line = comment
        .map(|c| format!("\n{indent}# {c}"))
        .unwrap_or_default();
    (
        Splice {
            range: at..at,
            text: format!("{comment_line}\n{indent}{binding}"),
        },
        at,
    )
}

/// Whether `name` is bound by an enclosing function argument, `let` or `rec` set.
pub(crate) fn in_scope(node: &SyntaxNode, name: &str) -> bool {
    node.ancestors().any(|ancestor| match ancestor.kind() {
        SyntaxKind::NODE_LAMBDA => ancestor.children().next().is_some_and(|param| {
            param.descendants().any(|d| {
                matches!(
                    d.kind(),
                    SyntaxKind::NODE_IDENT_PARAM
                        | SyntaxKind::NODE_PAT_ENTRY
                        | SyntaxKind::NODE_PAT_BIND
                ) && d
                    .children()
                    .find(|c| c.kind() == SyntaxKind::NODE_IDENT)
                    .and_then(|i| super::syntax::attr_name(&i))
                    .as_deref()
                    == Some(name)
            })
        }),
        SyntaxKind::NODE_LET_IN | SyntaxKind::NODE_LEGACY_LET => binds(&ancestor, name),
        SyntaxKind::NODE_ATTR_SET => {
            ancestor
                .children_with_tokens()
                .any(|c| c.kind() == SyntaxKind::TOKEN_REC)
                && binds(&ancestor, name)
        }
        _ => false,
    })
}

fn binds(container: &SyntaxNode, name: &str) -> bool {
    entries(container).any(|e| {
        super::syntax::binding_path(&e).is_some_and(|p| p.first().map(String::as_str) == Some(name))
            || inherit_names(&e).1.iter().any(|n| n == name)
    })
}

/// Add `name` to the argument set of the function the file evaluates to, following the
/// set's separator style. `None` when the file is not a function of an argument set.
pub(crate) fn add_argument(root: &SyntaxNode, name: &str) -> Option<Splice> {
    let lambda = unparen(root.children().next()?);
    if lambda.kind() != SyntaxKind::NODE_LAMBDA {
        return None;
    }
    let pattern = lambda.children().next()?;
    if pattern.kind() != SyntaxKind::NODE_PATTERN {
        return None;
    }
    let pat_entries: Vec<SyntaxNode> = pattern
        .children()
        .filter(|c| c.kind() == SyntaxKind::NODE_PAT_ENTRY)
        .collect();
    let Some(anchor) = pat_entries
        .iter()
        .find(|e| {
            e.children()
                .next()
                .and_then(|i| super::syntax::attr_name(&i))
                .as_deref()
                == Some("lib")
        })
        .or(pat_entries.last())
    else {
        // `{ ... }:` or `{ }:`
        let l = pattern
            .children_with_tokens()
            .find(|c| c.kind() == SyntaxKind::TOKEN_L_BRACE)?;
        let at = usize::from(l.text_range().end());
        let has_ellipsis = pattern
            .children_with_tokens()
            .any(|c| c.kind() == SyntaxKind::TOKEN_ELLIPSIS);
        let text = if has_ellipsis {
            format!(" {name},")
        } else {
            format!(" {name}")
        };
        return Some(Splice {
            range: at..at,
            text,
        });
    };

    // Look at what follows the anchor: whitespace, then `,` or `}`.
    let mut ws_before = String::new();
    let mut element = anchor.next_sibling_or_token();
    while let Some(e) = element.clone() {
        if e.kind() == SyntaxKind::TOKEN_WHITESPACE || e.kind() == SyntaxKind::TOKEN_COMMENT {
            ws_before.push_str(&e.to_string());
            element = e.next_sibling_or_token();
        } else {
            break;
        }
    }
    let next = element?;
    let anchor_end = end(anchor);
    let root_text = root.text().to_string();
    if next.kind() == SyntaxKind::TOKEN_COMMA {
        if ws_before.contains('\n') {
            // Leading-comma style: `lib\n, foo`.
            let ws = ws_before
                .rsplit_once('\n')
                .map_or(String::from("\n"), |(_, indent)| format!("\n{indent}"));
            return Some(Splice {
                range: anchor_end..anchor_end,
                text: format!("{ws}, {name}"),
            });
        }
        let comma_end = usize::from(next.text_range().end());
        let after_comma = next
            .next_sibling_or_token()
            .filter(|e| e.kind() == SyntaxKind::TOKEN_WHITESPACE)
            .map(|e| e.to_string())
            .unwrap_or_default();
        let text = if after_comma.contains('\n') {
            let indent = indentation_at(&root_text, start(anchor))
                .map_or_else(|| "  ".to_string(), str::to_string);
            format!("\n{indent}{name},")
        } else {
            format!(" {name},")
        };
        return Some(Splice {
            range: comma_end..comma_end,
            text,
        });
    }
    Some(Splice {
        range: anchor_end..anchor_end,
        text: format!(", {name}"),
    })
}

/// The edited text must parse and contain the `broken` we meant.
fn verify(new_text: &str, file: &Path, expression: &str) -> Result<(), NixpkgsError> {
    let parsed = rnix::Root::parse(new_text);
    if let Some(err) = parsed.errors().first() {
        return Err(NixpkgsError::EditWouldNotParse {
            file: file.to_path_buf(),
            message: err.to_string(),
        });
    }
    if !new_text.contains(expression) {
        return Err(NixpkgsError::EditWouldNotParse {
            file: file.to_path_buf(),
            message: "the new broken expression is missing after the edit".into(),
        });
    }
    Ok(())
}

/// Find the line of the single `broken` binding of the meta at `near` in the new text.
fn broken_line(new_text: &str, file: &Path, near: usize) -> Result<usize, NixpkgsError> {
    let root = parse(new_text, file)?;
    let hint = Some(line_col(new_text, near).0);
    let site = find_meta(&root, new_text, file, hint)
        .or_else(|_| find_meta(&root, new_text, file, None))
        .map_err(|r| NixpkgsError::refused(file.display().to_string(), r))?;
    let count = site
        .bindings()
        .iter()
        .filter(|(p, _)| p.first().map(String::as_str) == Some("broken"))
        .count();
    match (site.broken_binding(), count) {
        (Ok(Some(binding)), 1) => Ok(line_col(new_text, start(&binding)).0),
        _ => Err(NixpkgsError::EditWouldNotParse {
            file: file.to_path_buf(),
            message: "expected exactly one `broken` binding after the edit".into(),
        }),
    }
}

/// Locate `attr`, read its file and mark it broken: the whole operation a caller needs.
/// The change set is empty when the package is already broken on those platforms.
pub fn mark_attr_broken(
    index: &Index,
    source: &dyn TreeSource,
    oracle: Option<&dyn MetaPositionOracle>,
    attr: &str,
    request: &MarkBrokenRequest,
) -> Result<(Located, MarkBrokenOutcome, ChangeSet), NixpkgsError> {
    let located = locate(index, source, oracle, attr)?;
    let file = located.location.file.clone();
    let text = source
        .read(&file)?
        .ok_or_else(|| NixpkgsError::InvalidInput(format!("{} vanished", file.display())))?;
    let mut request = request.clone();
    request.meta_line = request.meta_line.or(located.nix_line);
    let outcome = mark_broken(&text, &file, &request).map_err(|e| match e {
        NixpkgsError::Refused { reason, .. } => NixpkgsError::refused(attr, reason),
        other => other,
    })?;
    let changes = match &outcome {
        MarkBrokenOutcome::Edited(edit) => ChangeSet {
            changes: vec![Change::Write {
                path: file,
                old: Some(text),
                new: edit.text.clone(),
            }],
        },
        MarkBrokenOutcome::AlreadyBroken { .. } => ChangeSet::default(),
    };
    Ok((located, outcome, changes))
}
