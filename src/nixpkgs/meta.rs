//! Finding the package's own `meta` in a Nix file.
//!
//! Owns: deciding which literal attribute set (or which group of dotted `meta.*` bindings)
//! is the package's meta, and refusing when that cannot be proven: meta inherited from
//! another package, bound in a `let`, merged with an opaque expression, absent, or
//! ambiguous. Must never pick "the first one" when there are several.

use std::collections::BTreeMap;
use std::path::Path;

use rnix::{SyntaxKind, SyntaxNode};

use super::error::{Refusal, SourcePos};
use super::syntax::{
    binding_path, binding_value, end, entries, inherit_names, line_col, pos_at, start, unparen,
};

/// Where the package's meta lives.
#[derive(Debug, Clone)]
pub(crate) enum MetaSite {
    /// A literal attribute set: `meta = { ... }`, `meta = with lib; { ... }`, or the right
    /// operand of `meta = x // { ... }`. `binding` is the `meta = ...` binding.
    Set {
        binding: SyntaxNode,
        set: SyntaxNode,
    },
    /// Dotted bindings `meta.description = ...;` in the derivation's attribute set.
    Dotted {
        parent: SyntaxNode,
        bindings: Vec<SyntaxNode>,
    },
}

impl MetaSite {
    /// The syntax node whose range bounds every edit of meta.
    pub(crate) fn node(&self) -> &SyntaxNode {
        match self {
            MetaSite::Set { set, .. } => set,
            MetaSite::Dotted { parent, .. } => parent,
        }
    }

    /// The existing `broken` binding, if any.
    pub(crate) fn broken_binding(&self) -> Result<Option<SyntaxNode>, SyntaxNode> {
        match self {
            MetaSite::Set { set, .. } => {
                for entry in entries(set) {
                    if entry.kind() == SyntaxKind::NODE_INHERIT {
                        if inherit_names(&entry).1.iter().any(|n| n == "broken") {
                            return Err(entry);
                        }
                    } else if binding_path(&entry).as_deref() == Some(&["broken".to_string()]) {
                        return Ok(Some(entry));
                    }
                }
                Ok(None)
            }
            MetaSite::Dotted { bindings, .. } => Ok(bindings
                .iter()
                .find(|b| binding_path(b).is_some_and(|p| p.len() == 2 && p[1] == "broken"))
                .cloned()),
        }
    }

    /// Bindings of meta (`name = value` inside the set, or `meta.name = value`), with the
    /// name relative to meta.
    pub(crate) fn bindings(&self) -> Vec<(Vec<String>, SyntaxNode)> {
        match self {
            MetaSite::Set { set, .. } => entries(set)
                .filter_map(|e| binding_path(&e).map(|p| (p, e)))
                .collect(),
            MetaSite::Dotted { bindings, .. } => bindings
                .iter()
                .filter_map(|b| binding_path(b).map(|p| (p[1..].to_vec(), b.clone())))
                .collect(),
        }
    }
}

struct Candidate {
    first_line: usize,
    last_line: usize,
    outcome: Result<MetaSite, Refusal>,
}

/// Find the package's meta in `root` (parsed from `text`). `line_hint`, when Nix told us
/// the line of `meta.description`, selects among several candidates.
pub(crate) fn find_meta(
    root: &SyntaxNode,
    text: &str,
    file: &Path,
    line_hint: Option<usize>,
) -> Result<MetaSite, Refusal> {
    let mut candidates: Vec<Candidate> = Vec::new();
    let mut dotted: BTreeMap<usize, (SyntaxNode, Vec<SyntaxNode>)> = BTreeMap::new();
    let candidate = |node: &SyntaxNode, outcome| Candidate {
        first_line: line_col(text, start(node)).0,
        last_line: line_col(text, end(node)).0,
        outcome,
    };

    for node in root.descendants() {
        let Some(parent) = node.parent() else {
            continue;
        };
        match node.kind() {
            SyntaxKind::NODE_ATTRPATH_VALUE => {
                let Some(path) = binding_path(&node) else {
                    continue;
                };
                if path.first().map(String::as_str) != Some("meta") {
                    continue;
                }
                if matches!(
                    parent.kind(),
                    SyntaxKind::NODE_LET_IN | SyntaxKind::NODE_LEGACY_LET
                ) {
                    let pos = pos_at(text, start(&node), file);
                    candidates.push(candidate(&node, Err(Refusal::MetaInLet { pos })));
                } else if parent.kind() == SyntaxKind::NODE_ATTR_SET {
                    if path.len() == 1 {
                        let outcome = resolve_meta_value(&node, text, file);
                        candidates.push(candidate(&node, outcome));
                    } else {
                        dotted
                            .entry(start(&parent))
                            .or_insert_with(|| (parent.clone(), Vec::new()))
                            .1
                            .push(node.clone());
                    }
                }
            }
            SyntaxKind::NODE_INHERIT if parent.kind() == SyntaxKind::NODE_ATTR_SET => {
                let (from, names) = inherit_names(&node);
                if names.iter().any(|n| n == "meta") {
                    let pos = pos_at(text, start(&node), file);
                    let from = from.unwrap_or_else(|| "the enclosing scope".to_string());
                    candidates.push(candidate(&node, Err(Refusal::InheritedMeta { from, pos })));
                }
            }
            _ => {}
        }
    }

    for (parent, bindings) in dotted.into_values() {
        // Dotted meta.* next to a `meta = { ... }` in the same set belongs to that meta.
        let has_literal =
            entries(&parent).any(|e| binding_path(&e).is_some_and(|p| p == ["meta".to_string()]));
        if has_literal {
            continue;
        }
        let (Some(first), Some(last)) = (bindings.first(), bindings.last()) else {
            continue;
        };
        candidates.push(Candidate {
            first_line: line_col(text, start(first)).0,
            last_line: line_col(text, end(last)).0,
            outcome: Ok(MetaSite::Dotted {
                parent: parent.clone(),
                bindings: bindings.clone(),
            }),
        });
    }

    if let Some(line) = line_hint {
        let mut matching: Vec<Candidate> = candidates
            .into_iter()
            .filter(|c| c.first_line <= line && line <= c.last_line)
            .collect();
        // The innermost candidate wins when candidates nest.
        matching.sort_by_key(|c| c.last_line - c.first_line);
        return match matching.into_iter().next() {
            Some(c) => c.outcome,
            None => Err(Refusal::NoMeta {
                file: file.to_path_buf(),
            }),
        };
    }

    match candidates.len() {
        0 => Err(Refusal::NoMeta {
            file: file.to_path_buf(),
        }),
        1 => candidates.remove(0).outcome,
        _ => {
            // Report the most telling reason: a refusal found on one of the candidates.
            let rank = |r: &Refusal| match r {
                Refusal::InheritedMeta { .. } => 0,
                Refusal::MetaInLet { .. } => 1,
                _ => 2,
            };
            if let Some(refusal) = candidates
                .iter()
                .filter_map(|c| c.outcome.as_ref().err())
                .min_by_key(|r| rank(r))
            {
                return Err(refusal.clone());
            }
            Err(Refusal::AmbiguousMeta {
                file: file.to_path_buf(),
                lines: candidates.iter().map(|c| c.first_line).collect(),
            })
        }
    }
}

/// Look through `with`, parentheses and `//` chains for the literal set to edit.
fn resolve_meta_value(binding: &SyntaxNode, text: &str, file: &Path) -> Result<MetaSite, Refusal> {
    let Some(value) = binding_value(binding) else {
        return Err(Refusal::NoMeta {
            file: file.to_path_buf(),
        });
    };
    let pos = pos_at(text, start(&value), file);
    let mut operands = Vec::new();
    flatten_update(strip_with(value), &mut operands);
    for operand in operands.iter().rev() {
        if operand.kind() == SyntaxKind::NODE_ATTR_SET {
            return Ok(MetaSite::Set {
                binding: binding.clone(),
                set: operand.clone(),
            });
        }
        if !is_see_through(operand) {
            return Err(opaque_or_inherited(operand, pos));
        }
    }
    match operands.first() {
        Some(first) => Err(opaque_or_inherited(first, pos)),
        None => Err(Refusal::NoMeta {
            file: file.to_path_buf(),
        }),
    }
}

fn strip_with(node: SyntaxNode) -> SyntaxNode {
    let mut node = unparen(node);
    while node.kind() == SyntaxKind::NODE_WITH {
        match node.children().last() {
            Some(body) => node = unparen(body),
            None => break,
        }
    }
    node
}

fn flatten_update(node: SyntaxNode, out: &mut Vec<SyntaxNode>) {
    let node = strip_with(node);
    let is_update = node.kind() == SyntaxKind::NODE_BIN_OP
        && node
            .children_with_tokens()
            .any(|c| c.kind() == SyntaxKind::TOKEN_UPDATE);
    if is_update {
        for operand in node.children() {
            flatten_update(operand, out);
        }
    } else {
        out.push(node);
    }
}

/// `lib.optionalAttrs cond { ... }` whose literal set has no `broken`: a `broken` added to
/// the operand on its left cannot be overridden by it.
fn is_see_through(node: &SyntaxNode) -> bool {
    if node.kind() != SyntaxKind::NODE_APPLY {
        return false;
    }
    let Some(argument) = node.children().last().map(strip_with) else {
        return false;
    };
    argument.kind() == SyntaxKind::NODE_ATTR_SET
        && !entries(&argument).any(|e| {
            binding_path(&e).is_some_and(|p| p.first().map(String::as_str) == Some("broken"))
                || inherit_names(&e).1.iter().any(|n| n == "broken")
        })
}

fn opaque_or_inherited(operand: &SyntaxNode, pos: SourcePos) -> Refusal {
    let expression = operand.text().to_string();
    if let Some(path) = super::syntax::select_path(operand)
        && path.len() >= 2
        && path.last().map(String::as_str) == Some("meta")
    {
        return Refusal::InheritedMeta {
            from: path[..path.len() - 1].join("."),
            pos,
        };
    }
    let short: String = expression.chars().take(60).collect();
    Refusal::OpaqueMeta {
        pos,
        expression: short,
    }
}
