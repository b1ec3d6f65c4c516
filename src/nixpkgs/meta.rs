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
    binding_path, binding_value, end, entries, inherit_names, line_col, pos_at, select_path, start,
    unparen,
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
                    // `inherit meta;` of a `let` in this file: the `let` is what to fix.
                    let refusal = match (from, meta_bound_in_enclosing_let(&node)) {
                        (None, Some(binding)) => Refusal::MetaInLet {
                            pos: pos_at(text, start(&binding), file),
                        },
                        (from, _) => Refusal::InheritedMeta {
                            from: from.unwrap_or_else(|| "the enclosing scope".to_string()),
                            pos: pos_at(text, start(&node), file),
                        },
                    };
                    candidates.push(candidate(&node, Err(refusal)));
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

/// The `meta = ...` binding of the innermost `let` around `node` that binds `meta`.
fn meta_bound_in_enclosing_let(node: &SyntaxNode) -> Option<SyntaxNode> {
    node.ancestors()
        .filter(|a| {
            matches!(
                a.kind(),
                SyntaxKind::NODE_LET_IN | SyntaxKind::NODE_LEGACY_LET
            )
        })
        .find_map(|scope| {
            entries(&scope).find(|e| {
                binding_path(e).is_some_and(|p| p == ["meta".to_string()])
                    || inherit_names(e).1.iter().any(|n| n == "meta")
            })
        })
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
    Refusal::OpaqueMeta {
        pos,
        expression: snippet(&expression),
    }
}

/// Functions of nixpkgs' `lib` and of `builtins` that apply a function once per
/// element: a package built inside a function passed to one of them is one of several.
const ITERATORS: &[&str] = &[
    "map",
    "imap0",
    "imap1",
    "concatMap",
    "forEach",
    "genList",
    "genAttrs",
    "listToAttrs",
    "mapAttrs",
    "mapAttrs'",
    "mapAttrsToList",
    "mapAttrsRecursive",
    "concatMapAttrs",
    "foldl",
    "foldl'",
    "foldr",
    "zipListsWith",
    "cartesianProduct",
    "mapCartesianProduct",
];

/// How deep [`shared_by_several`] follows a function to where it is called.
const MAX_CALL_DEPTH: usize = 16;

/// Whether the package's meta (`site`) is built more than once by this file: it sits in a
/// function or value bound in a `let` (or a `rec` set) that the file uses for more than one
/// package, or in a function handed to `map`, `genAttrs` and the like, or is reached through
/// one. One `broken` there would mark every package the file builds with it, so the edit
/// is refused. Names are matched as text, without scoping: a name bound twice counts for
/// both (a refusal a human reads, never a wrong edit).
pub(crate) fn shared_by_several(
    root: &SyntaxNode,
    site: &MetaSite,
    text: &str,
    file: &Path,
) -> Option<Refusal> {
    let pos = pos_at(text, start(site.node()), file);
    // Start at the `meta = ...` binding itself (its name is no use), or at the set that
    // holds the dotted `meta.*` bindings.
    let from = match site {
        MetaSite::Set { binding, .. } => binding,
        MetaSite::Dotted { parent, .. } => parent,
    };
    shared_from(root, from, 0).map(|function| Refusal::SharedFunction { function, pos })
}

/// The first reason, walking up from `node`, that what `node` builds is built several times.
fn shared_from(root: &SyntaxNode, node: &SyntaxNode, depth: usize) -> Option<SharedBy> {
    if depth > MAX_CALL_DEPTH {
        return Some(SharedBy::TooDeep);
    }
    let mut child = node.clone();
    while let Some(parent) = child.parent() {
        if let Some(over) = iterator_argument(&parent, &child) {
            return Some(SharedBy::Iterator { over });
        }
        let scope = parent.parent();
        let in_let = matches!(
            scope.as_ref().map(SyntaxNode::kind),
            Some(SyntaxKind::NODE_LET_IN | SyntaxKind::NODE_LEGACY_LET)
        );
        // A `rec` set's binding is a package of its own besides every use.
        let exported = scope.as_ref().is_some_and(is_rec_set);
        if parent.kind() == SyntaxKind::NODE_ATTRPATH_VALUE
            && (in_let || exported)
            && let Some([name]) = binding_path(&parent).as_deref()
            && let Some(value) = binding_value(&parent)
        {
            let uses = uses_of(root, name, &value);
            let packages = uses.len() + usize::from(exported);
            if packages > 1 {
                return Some(SharedBy::Name {
                    name: name.clone(),
                    uses: packages,
                });
            }
            if let [only] = uses.as_slice()
                && let Some(shared) = shared_from(root, only, depth + 1)
            {
                return Some(shared);
            }
        }
        child = parent;
    }
    None
}

/// Why a meta is built several times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SharedBy {
    /// Bound to `name`, which the file uses for `uses` packages (a `rec` set's binding
    /// is one of them itself).
    Name { name: String, uses: usize },
    /// Inside a function handed to `over` (`map`, `genAttrs`, ...).
    Iterator { over: String },
    /// Reached through more functions than the editor follows.
    TooDeep,
    /// A file that these other files of its folder call (`./generic.nix`).
    CalledBy { files: Vec<std::path::PathBuf> },
}

impl std::fmt::Display for SharedBy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SharedBy::Name { name, uses } => {
                write!(f, "`{name}`, which the file uses for {uses} packages")
            }
            SharedBy::Iterator { over } => {
                write!(
                    f,
                    "a function handed to `{over}`, which applies it to every element"
                )
            }
            SharedBy::TooDeep => write!(f, "more nested function calls than the editor follows"),
            SharedBy::CalledBy { files } => {
                let files: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
                write!(f, "a file that {} call", files.join(", "))
            }
        }
    }
}

/// `child` is an argument (not the function) of the application `parent`, whose function
/// is one of [`ITERATORS`]: its name.
fn iterator_argument(parent: &SyntaxNode, child: &SyntaxNode) -> Option<String> {
    if parent.kind() != SyntaxKind::NODE_APPLY || parent.children().next().as_ref() == Some(child) {
        return None;
    }
    let mut head = unparen(parent.children().next()?);
    while head.kind() == SyntaxKind::NODE_APPLY {
        head = unparen(head.children().next()?);
    }
    let path = select_path(&head)?;
    let last = path.last()?;
    ITERATORS.contains(&last.as_str()).then(|| last.clone())
}

fn is_rec_set(node: &SyntaxNode) -> bool {
    node.kind() == SyntaxKind::NODE_ATTR_SET
        && node
            .children_with_tokens()
            .any(|c| c.kind() == SyntaxKind::TOKEN_REC)
}

/// Selections that make another package of a package (`foo.overrideAttrs …`); any other
/// selection only reads it (`self.version`).
const VARIANTS: &[&str] = &[
    "override",
    "overrideAttrs",
    "overrideDerivation",
    "overridePythonAttrs",
    "overrideScope",
];

/// Every place outside `own_value` (the binding's own value: a package referring to itself
/// builds nothing more) where the file uses `name` for a package: calls it, names it, makes
/// a variant of it (`foo.overrideAttrs`), or inherits it. Reading an attribute
/// (`self.version`, `self ? x`), depending on it (a list element) and putting its path in a
/// string (`${self}/bin`) are not such uses; neither are the places that bind the name.
fn uses_of(root: &SyntaxNode, name: &str, own_value: &SyntaxNode) -> Vec<SyntaxNode> {
    let own = own_value.text_range();
    root.descendants()
        .filter(|n| n.kind() == SyntaxKind::NODE_IDENT && n.text() == name)
        .filter(|n| !own.contains_range(n.text_range()))
        .filter(|n| {
            let Some(parent) = n.parent() else {
                return true;
            };
            match parent.kind() {
                SyntaxKind::NODE_ATTRPATH
                | SyntaxKind::NODE_PAT_ENTRY
                | SyntaxKind::NODE_IDENT_PARAM
                | SyntaxKind::NODE_PAT_BIND
                | SyntaxKind::NODE_HAS_ATTR
                | SyntaxKind::NODE_LIST
                | SyntaxKind::NODE_INTERPOL => false,
                SyntaxKind::NODE_SELECT if parent.children().next().as_ref() == Some(n) => parent
                    .children()
                    .find(|c| c.kind() == SyntaxKind::NODE_ATTRPATH)
                    .and_then(|path| super::syntax::attrpath_names(&path).into_iter().next())
                    .flatten()
                    .is_some_and(|first| VARIANTS.contains(&first.as_str())),
                _ => true,
            }
        })
        .collect()
}

/// Longest expression quoted whole in a refusal.
const SNIPPET_CHARS: usize = 60;

/// An expression as a refusal quotes it: its first line, cut at a word before
/// [`SNIPPET_CHARS`], with `…` where anything was left out.
fn snippet(expression: &str) -> String {
    let expression = expression.trim();
    let first_line = expression.lines().next().unwrap_or_default().trim_end();
    let mut cut = first_line.len() < expression.len();
    let mut out = first_line;
    if out.chars().count() > SNIPPET_CHARS {
        let limit = out
            .char_indices()
            .nth(SNIPPET_CHARS)
            .map_or(out.len(), |(i, _)| i);
        out = match out[..limit].rfind(' ') {
            Some(space) if space > 0 => &out[..space],
            _ => &out[..limit],
        };
        cut = true;
    }
    if cut {
        format!("{} …", out.trim_end())
    } else {
        out.to_string()
    }
}
