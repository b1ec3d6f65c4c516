//! Small helpers over the rnix syntax tree shared by the editor's submodules.
//!
//! Owns: parsing with positioned errors, offset → line/column, attribute-path reading and
//! splicing text. Must never mutate trees (rowan 0.17 has no mutable API): edits are text
//! splices at node ranges followed by a reparse.

use std::ops::Range;
use std::path::Path;

use rnix::{NodeOrToken, SyntaxKind, SyntaxNode};

use super::error::{NixpkgsError, SourcePos};

/// Parse `text`, turning the first parse error into [`NixpkgsError::InvalidNix`] with
/// the file, line and column.
pub(crate) fn parse(text: &str, file: &Path) -> Result<SyntaxNode, NixpkgsError> {
    let parsed = rnix::Root::parse(text);
    if let Some(err) = parsed.errors().first() {
        let offset = error_offset(err).unwrap_or(text.len());
        return Err(NixpkgsError::InvalidNix {
            pos: pos_at(text, offset, file),
            message: err.to_string(),
        });
    }
    Ok(parsed.syntax())
}

fn error_offset(err: &rnix::ParseError) -> Option<usize> {
    use rnix::ParseError as E;
    match err {
        E::Unexpected(r)
        | E::UnexpectedExtra(r)
        | E::UnexpectedWanted(_, r, _)
        | E::UnexpectedDoubleBind(r)
        | E::DuplicatedArgs(r, _) => Some(usize::from(r.start())),
        _ => None,
    }
}

/// 1-based line and column (in characters) of byte `offset`.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = floor_char_boundary(text, offset.min(text.len()));
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

fn floor_char_boundary(text: &str, mut i: usize) -> usize {
    while i > 0 && !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

pub(crate) fn pos_at(text: &str, offset: usize, file: &Path) -> SourcePos {
    let (line, column) = line_col(text, offset);
    SourcePos {
        file: file.to_path_buf(),
        line,
        column,
    }
}

pub(crate) fn start(node: &SyntaxNode) -> usize {
    usize::from(node.text_range().start())
}

pub(crate) fn end(node: &SyntaxNode) -> usize {
    usize::from(node.text_range().end())
}

pub(crate) fn range(node: &SyntaxNode) -> Range<usize> {
    start(node)..end(node)
}

/// The components of an attribute path, `None` for a component that is not a plain
/// identifier or a literal string without interpolation.
pub(crate) fn attrpath_names(attrpath: &SyntaxNode) -> Vec<Option<String>> {
    attrpath
        .children()
        .map(|component| attr_name(&component))
        .collect()
}

/// The name of one attribute component (`foo`, `"foo"`), if static.
pub(crate) fn attr_name(component: &SyntaxNode) -> Option<String> {
    match component.kind() {
        SyntaxKind::NODE_IDENT => component
            .first_token()
            .filter(|t| t.kind() == SyntaxKind::TOKEN_IDENT)
            .map(|t| t.text().to_string()),
        SyntaxKind::NODE_STRING => static_string(component),
        _ => None,
    }
}

/// The content of a string literal without interpolation (escapes are left undecoded, which is
/// fine for attribute names and maintainer fields).
pub(crate) fn static_string(node: &SyntaxNode) -> Option<String> {
    if node.kind() != SyntaxKind::NODE_STRING {
        return None;
    }
    let mut out = String::new();
    for child in node.children_with_tokens() {
        match child {
            NodeOrToken::Token(t) => match t.kind() {
                SyntaxKind::TOKEN_STRING_CONTENT => out.push_str(t.text()),
                SyntaxKind::TOKEN_STRING_START | SyntaxKind::TOKEN_STRING_END => {}
                _ => return None,
            },
            NodeOrToken::Node(_) => return None,
        }
    }
    Some(out)
}

/// For a `NODE_ATTRPATH_VALUE`, its attribute path as static names.
pub(crate) fn binding_path(binding: &SyntaxNode) -> Option<Vec<String>> {
    let attrpath = binding
        .children()
        .find(|c| c.kind() == SyntaxKind::NODE_ATTRPATH)?;
    attrpath_names(&attrpath).into_iter().collect()
}

/// For a `NODE_ATTRPATH_VALUE`, its value expression.
pub(crate) fn binding_value(binding: &SyntaxNode) -> Option<SyntaxNode> {
    binding
        .children()
        .find(|c| c.kind() != SyntaxKind::NODE_ATTRPATH)
}

/// Bindings (`NODE_ATTRPATH_VALUE`) and `NODE_INHERIT`s directly inside a set or let.
pub(crate) fn entries(set: &SyntaxNode) -> impl Iterator<Item = SyntaxNode> + use<> {
    set.children().filter(|c| {
        matches!(
            c.kind(),
            SyntaxKind::NODE_ATTRPATH_VALUE | SyntaxKind::NODE_INHERIT
        )
    })
}

/// Names brought in by a `NODE_INHERIT`, and the `(from)` expression text if any.
pub(crate) fn inherit_names(inherit: &SyntaxNode) -> (Option<String>, Vec<String>) {
    let from = inherit
        .children()
        .find(|c| c.kind() == SyntaxKind::NODE_INHERIT_FROM)
        .map(|f| {
            let t = f.text().to_string();
            t.trim_start_matches('(')
                .trim_end_matches(')')
                .trim()
                .to_string()
        });
    let names = inherit
        .children()
        .filter(|c| c.kind() != SyntaxKind::NODE_INHERIT_FROM)
        .filter_map(|c| attr_name(&c))
        .collect();
    (from, names)
}

/// Strip parentheses around an expression.
pub(crate) fn unparen(mut node: SyntaxNode) -> SyntaxNode {
    while node.kind() == SyntaxKind::NODE_PAREN {
        match node.children().next() {
            Some(inner) => node = inner,
            None => break,
        }
    }
    node
}

/// The expression a file evaluates to after stripping function headers, `with`, `let`,
/// `assert` and parentheses: the "body" of `self: super: with self; { ... }` style files.
pub(crate) fn file_body(root: &SyntaxNode) -> Option<SyntaxNode> {
    let mut node = root.children().next()?;
    loop {
        node = unparen(node);
        node = match node.kind() {
            SyntaxKind::NODE_LAMBDA | SyntaxKind::NODE_WITH | SyntaxKind::NODE_ASSERT => {
                node.children().last()?
            }
            SyntaxKind::NODE_LET_IN => node.children().last()?,
            _ => return Some(node),
        };
    }
}

/// Dotted selection as a list of names: `lib.maintainers.foo` → `["lib", "maintainers", "foo"]`.
/// `None` for anything that is not a plain identifier or static select chain.
pub(crate) fn select_path(node: &SyntaxNode) -> Option<Vec<String>> {
    let node = unparen(node.clone());
    match node.kind() {
        SyntaxKind::NODE_IDENT => attr_name(&node).map(|n| vec![n]),
        SyntaxKind::NODE_SELECT => {
            let mut children = node.children();
            let base = children.next()?;
            let attrpath = children.next()?;
            if attrpath.kind() != SyntaxKind::NODE_ATTRPATH {
                return None;
            }
            // `a.b or c` has a default: not a plain path.
            if node
                .children_with_tokens()
                .any(|c| c.kind() == SyntaxKind::TOKEN_OR)
            {
                return None;
            }
            let mut path = select_path(&base)?;
            for name in attrpath_names(&attrpath) {
                path.push(name?);
            }
            Some(path)
        }
        _ => None,
    }
}

/// Indentation of the line that `offset` is on, when only whitespace precedes `offset` on
/// that line.
pub(crate) fn indentation_at(text: &str, offset: usize) -> Option<&str> {
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let prefix = &text[line_start..offset];
    prefix
        .chars()
        .all(|c| c == ' ' || c == '\t')
        .then_some(prefix)
}

/// Indentation of the line containing `offset`, whatever follows it.
pub(crate) fn line_indentation(text: &str, offset: usize) -> &str {
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let rest = &text[line_start..];
    let width = rest.len() - rest.trim_start_matches([' ', '\t']).len();
    &rest[..width]
}

/// One replacement of a byte range by new text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Splice {
    pub range: Range<usize>,
    pub text: String,
}

/// Apply non-overlapping splices. Returns `None` if they overlap or fall outside `text`.
/// The line breaks a splice brings follow the file's: in a file whose lines end in CRLF,
/// each `\n` of a splice not already preceded by `\r` becomes `\r\n`.
pub(crate) fn apply_splices(text: &str, splices: &[Splice]) -> Option<String> {
    let crlf = text.find('\n').is_some_and(|at| text[..at].ends_with('\r'));
    let mut sorted: Vec<&Splice> = splices.iter().collect();
    sorted.sort_by_key(|s| (s.range.start, s.range.end));
    let mut out = String::with_capacity(text.len() + 128);
    let mut cursor = 0;
    for splice in sorted {
        if splice.range.start < cursor || splice.range.end > text.len() {
            return None;
        }
        out.push_str(text.get(cursor..splice.range.start)?);
        if crlf {
            let mut previous = None;
            for c in splice.text.chars() {
                if c == '\n' && previous != Some('\r') {
                    out.push('\r');
                }
                out.push(c);
                previous = Some(c);
            }
        } else {
            out.push_str(&splice.text);
        }
        cursor = splice.range.end;
    }
    out.push_str(text.get(cursor..)?);
    Some(out)
}

/// Escape text for a double-quoted Nix string.
pub(crate) fn nix_string_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '$' if chars.peek() == Some(&'{') => out.push_str("\\$"),
            c => out.push(c),
        }
    }
    out
}

/// Make `text` safe to put on one comment line: control characters become spaces.
pub(crate) fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_line_and_column_of_a_parse_error() {
        let err = parse("{\n  a = ;\n}", Path::new("x.nix")).unwrap_err();
        match err {
            NixpkgsError::InvalidNix { pos, .. } => {
                assert_eq!((pos.line, pos.column), (2, 7));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn escapes_interpolation_and_quotes_in_strings() {
        assert_eq!(
            nix_string_escape(r#"a "b" ${c} $d \"#),
            r#"a \"b\" \${c} $d \\"#
        );
    }

    #[test]
    fn splices_apply_from_the_end() {
        let out = apply_splices(
            "abcdef",
            &[
                Splice {
                    range: 4..4,
                    text: "X".into(),
                },
                Splice {
                    range: 0..1,
                    text: "Y".into(),
                },
            ],
        );
        assert_eq!(out.as_deref(), Some("YbcdXef"));
    }
}
