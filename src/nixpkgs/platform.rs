//! The four Hydra systems and the `stdenv.hostPlatform` conditions that describe sets of them.
//!
//! Owns: turning a set of failing systems into a `broken` expression (both darwins collapse to
//! `isDarwin`, both linuxes to `isLinux`, all four to `true`) and recognising such expressions
//! in existing files. Must never guess: an expression it does not fully understand is
//! reported as unknown, not approximated.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use rnix::{SyntaxKind, SyntaxNode};

use super::error::NixpkgsError;
use super::syntax::{select_path, unparen};

/// A system Hydra builds nixpkgs for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum System {
    X86_64Linux,
    Aarch64Linux,
    X86_64Darwin,
    Aarch64Darwin,
}

impl System {
    pub const ALL: [System; 4] = [
        System::X86_64Linux,
        System::Aarch64Linux,
        System::X86_64Darwin,
        System::Aarch64Darwin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            System::X86_64Linux => "x86_64-linux",
            System::Aarch64Linux => "aarch64-linux",
            System::X86_64Darwin => "x86_64-darwin",
            System::Aarch64Darwin => "aarch64-darwin",
        }
    }

    fn is_linux(self) -> bool {
        matches!(self, System::X86_64Linux | System::Aarch64Linux)
    }

    fn is_aarch64(self) -> bool {
        matches!(self, System::Aarch64Linux | System::Aarch64Darwin)
    }
}

impl fmt::Display for System {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for System {
    type Err = NixpkgsError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        System::ALL
            .into_iter()
            .find(|sys| sys.as_str() == s.trim())
            .ok_or_else(|| NixpkgsError::UnknownSystem(s.to_string()))
    }
}

/// A non-empty set of systems on which a package is broken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platforms(BTreeSet<System>);

impl Platforms {
    pub fn all() -> Self {
        Platforms(System::ALL.into_iter().collect())
    }

    /// `None` when `systems` is empty.
    pub fn new(systems: impl IntoIterator<Item = System>) -> Option<Self> {
        let set: BTreeSet<System> = systems.into_iter().collect();
        (!set.is_empty()).then_some(Platforms(set))
    }

    /// Parse `x86_64-linux,aarch64-darwin`.
    pub fn parse_list(list: &str) -> Result<Self, NixpkgsError> {
        let systems = list
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(System::from_str)
            .collect::<Result<Vec<_>, _>>()?;
        Platforms::new(systems).ok_or_else(|| NixpkgsError::UnknownSystem(list.to_string()))
    }

    pub fn is_all(&self) -> bool {
        self.0.len() == System::ALL.len()
    }

    pub fn systems(&self) -> impl Iterator<Item = System> + '_ {
        self.0.iter().copied()
    }

    pub fn union(&self, other: &Platforms) -> Platforms {
        Platforms(self.0.union(&other.0).copied().collect())
    }

    pub fn is_superset(&self, other: &Platforms) -> bool {
        self.0.is_superset(&other.0)
    }

    /// `x86_64-linux, aarch64-darwin` for titles and comments.
    pub fn label(&self) -> String {
        self.0
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The `broken` expression for exactly these systems.
    pub fn condition(&self) -> String {
        if self.is_all() {
            return "true".to_string();
        }
        const P: &str = "stdenv.hostPlatform";
        let mut terms = Vec::new();
        for (os, is_linux) in [("isLinux", true), ("isDarwin", false)] {
            let of_os: Vec<System> = self
                .systems()
                .filter(|s| s.is_linux() == is_linux)
                .collect();
            match of_os.as_slice() {
                [] => {}
                [single] => {
                    let arch = if single.is_aarch64() {
                        "isAarch64"
                    } else {
                        "isx86_64"
                    };
                    terms.push((format!("{P}.{os} && {P}.{arch}"), true));
                }
                _ => terms.push((format!("{P}.{os}"), false)),
            }
        }
        if terms.len() == 1 {
            return terms.remove(0).0;
        }
        terms
            .into_iter()
            .map(|(t, compound)| if compound { format!("({t})") } else { t })
            .collect::<Vec<_>>()
            .join(" || ")
    }

    /// The systems on which `expr` is true, when `expr` is built only from `true`, `false`,
    /// `stdenv.hostPlatform.is*` / `stdenv.is*` predicates, `&&`, `||`, `!` and parentheses.
    pub(crate) fn recognise(expr: &SyntaxNode) -> Option<BTreeSet<System>> {
        let expr = unparen(expr.clone());
        let all: BTreeSet<System> = System::ALL.into_iter().collect();
        match expr.kind() {
            SyntaxKind::NODE_IDENT | SyntaxKind::NODE_SELECT => {
                let path = select_path(&expr)?;
                let names: Vec<&str> = path.iter().map(String::as_str).collect();
                let predicate = match names.as_slice() {
                    ["true"] => return Some(all),
                    ["false"] => return Some(BTreeSet::new()),
                    ["stdenv", "hostPlatform", p] | ["stdenv", p] => *p,
                    _ => return None,
                };
                let test: fn(System) -> bool = match predicate {
                    "isLinux" => System::is_linux,
                    "isDarwin" => |s| !s.is_linux(),
                    "isAarch64" => System::is_aarch64,
                    "isx86_64" => |s| !s.is_aarch64(),
                    _ => return None,
                };
                Some(System::ALL.into_iter().filter(|s| test(*s)).collect())
            }
            SyntaxKind::NODE_UNARY_OP => {
                let inner = expr.children().next()?;
                let set = Platforms::recognise(&inner)?;
                Some(all.difference(&set).copied().collect())
            }
            SyntaxKind::NODE_BIN_OP => {
                let mut operands = expr.children();
                let lhs = Platforms::recognise(&operands.next()?)?;
                let rhs = Platforms::recognise(&operands.next()?)?;
                let op = expr
                    .children_with_tokens()
                    .filter_map(|c| c.into_token())
                    .find(|t| {
                        matches!(
                            t.kind(),
                            SyntaxKind::TOKEN_AND_AND | SyntaxKind::TOKEN_OR_OR
                        )
                    })?;
                Some(if op.kind() == SyntaxKind::TOKEN_AND_AND {
                    lhs.intersection(&rhs).copied().collect()
                } else {
                    lhs.union(&rhs).copied().collect()
                })
            }
            _ => None,
        }
    }

    pub(crate) fn from_set(set: BTreeSet<System>) -> Option<Platforms> {
        Platforms::new(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn platforms(list: &str) -> Platforms {
        Platforms::parse_list(list).unwrap()
    }

    #[test]
    fn one_system_is_an_os_and_arch_conjunction() {
        assert_eq!(
            platforms("aarch64-darwin").condition(),
            "stdenv.hostPlatform.isDarwin && stdenv.hostPlatform.isAarch64"
        );
    }

    #[test]
    fn both_darwins_collapse_to_is_darwin() {
        assert_eq!(
            platforms("aarch64-darwin,x86_64-darwin").condition(),
            "stdenv.hostPlatform.isDarwin"
        );
    }

    #[test]
    fn both_linuxes_and_one_darwin_are_joined_with_or() {
        assert_eq!(
            platforms("aarch64-linux,x86_64-linux,x86_64-darwin").condition(),
            "stdenv.hostPlatform.isLinux || (stdenv.hostPlatform.isDarwin && stdenv.hostPlatform.isx86_64)"
        );
    }

    #[test]
    fn all_four_is_true() {
        assert_eq!(Platforms::all().condition(), "true");
    }

    #[test]
    fn unknown_systems_are_rejected() {
        assert!(Platforms::parse_list("riscv64-linux").is_err());
    }

    #[test]
    fn recognises_every_generated_condition() {
        for mask in 1u8..16 {
            let systems: Vec<System> = System::ALL
                .into_iter()
                .enumerate()
                .filter(|(i, _)| mask & (1 << i) != 0)
                .map(|(_, s)| s)
                .collect();
            let p = Platforms::new(systems).unwrap();
            let root = rnix::Root::parse(&p.condition()).syntax();
            let expr = root.children().next().unwrap();
            assert_eq!(
                Platforms::recognise(&expr),
                Some(p.0.clone()),
                "{}",
                p.condition()
            );
        }
    }

    #[test]
    fn does_not_recognise_feature_conditions() {
        let root = rnix::Root::parse("stdenv.hostPlatform.isDarwin && withArpack").syntax();
        let expr = root.children().next().unwrap();
        assert_eq!(Platforms::recognise(&expr), None);
    }
}
