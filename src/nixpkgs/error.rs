//! Error and refusal types of the nixpkgs editor.
//!
//! Owns: the typed failure vocabulary of `crate::nixpkgs`. Every variant carries the context a
//! human needs (file, line, column, attribute). Must never carry a secret: push errors name the
//! remote and the ref, never the token.

use std::fmt;
use std::path::{Path, PathBuf};

/// A place in a Nix file, 1-based line and column (columns count characters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcePos {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for SourcePos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// Why the editor will not touch an attribute or a file. Refusals are expected outcomes
/// (the caller reports them and moves on), not bugs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The attribute is not in the static index (and Nix was not asked, or did not know it).
    NotFound,
    /// `haskellPackages.*`: brokenness is declared in `broken.yaml` by the Haskell team's tooling.
    HaskellPackage,
    /// A package set the static index does not cover (`nodePackages`, `vimPlugins`, ...).
    UnsupportedPackageSet { set: String },
    /// The file is generated; editing it would be overwritten or is forbidden.
    GeneratedFile { file: PathBuf, why: String },
    /// `inherit (other) meta;` or `meta = other.meta;`: the meta is another package's.
    InheritedMeta { from: String, pos: SourcePos },
    /// The attribute is an override of another attribute (`foo = bar.override { ... };`).
    OverrideOf { base: String },
    /// Several attributes share the file, so one `meta` edit would mark all of them.
    SharedMeta { file: PathBuf, attrs: Vec<String> },
    /// `meta` is bound in a `let` and may be used by several derivations.
    MetaInLet { pos: SourcePos },
    /// `meta` is in something the file builds several packages with (a function it calls
    /// twice, one handed to `map`): a `broken` there would mark all of them.
    SharedFunction {
        function: super::meta::SharedBy,
        pos: SourcePos,
    },
    /// No literal `meta` in the file.
    NoMeta { file: PathBuf },
    /// Several `meta` sets in the file and nothing tells which one is the package's.
    AmbiguousMeta { file: PathBuf, lines: Vec<usize> },
    /// `meta` is an expression whose content the editor cannot see (and so cannot prove
    /// that a `broken` it adds is not overridden).
    OpaqueMeta { pos: SourcePos, expression: String },
    /// `broken` is brought in by `inherit`; merging would need to rewrite that.
    InheritedBroken { pos: SourcePos },
    /// A platform condition needs `stdenv`, which is not in scope and cannot be added.
    StdenvUnavailable { file: PathBuf },
    /// The static index and Nix disagree about where the package lives.
    NixDisagrees {
        static_file: PathBuf,
        nix_file: PathBuf,
    },
    /// The call site is not a plain `callPackage` the retirement can remove.
    UnsupportedCallSite {
        file: PathBuf,
        line: usize,
        why: String,
    },
    /// An alias with that name already exists.
    AliasExists { file: PathBuf, line: usize },
    /// Other code still uses the attribute: retiring it would break their evaluation.
    StillUsed {
        name: String,
        places: Vec<SourcePos>,
    },
}

impl Refusal {
    /// The package's own file, when the refusal is about what is in it (a
    /// meta the editor cannot change safely) rather than about where the
    /// package is: such a file can still be read, for the opt-out marker
    /// and the maintainers. `None` for a generated file (its text is many
    /// packages'), a call site, a disagreement about the file, or a package
    /// not found.
    pub fn package_file(&self) -> Option<&Path> {
        match self {
            Refusal::SharedMeta { file, .. }
            | Refusal::NoMeta { file }
            | Refusal::AmbiguousMeta { file, .. }
            | Refusal::StdenvUnavailable { file } => Some(file),
            Refusal::InheritedMeta { pos, .. }
            | Refusal::MetaInLet { pos }
            | Refusal::SharedFunction { pos, .. }
            | Refusal::OpaqueMeta { pos, .. }
            | Refusal::InheritedBroken { pos } => Some(&pos.file),
            Refusal::NotFound
            | Refusal::HaskellPackage
            | Refusal::UnsupportedPackageSet { .. }
            | Refusal::GeneratedFile { .. }
            | Refusal::OverrideOf { .. }
            | Refusal::NixDisagrees { .. }
            | Refusal::UnsupportedCallSite { .. }
            | Refusal::AliasExists { .. }
            | Refusal::StillUsed { .. } => None,
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NotFound => write!(f, "not found in the nixpkgs checkout"),
            Refusal::HaskellPackage => write!(
                f,
                "haskellPackages are marked broken through the Haskell team's broken.yaml process; not edited here"
            ),
            Refusal::UnsupportedPackageSet { set } => {
                write!(f, "package set `{set}` is not supported by the editor")
            }
            Refusal::GeneratedFile { file, why } => {
                write!(
                    f,
                    "{} is a generated file ({why}); never edited by hand",
                    file.display()
                )
            }
            Refusal::InheritedMeta { from, pos } => write!(
                f,
                "meta is inherited from `{from}` at {pos}; it belongs to another package"
            ),
            Refusal::OverrideOf { base } => write!(
                f,
                "defined as an override of `{base}`; its meta is `{base}`'s"
            ),
            Refusal::SharedMeta { file, attrs } => write!(
                f,
                "{} is shared by several attributes ({}); marking it broken or moving it to the attic would do so to all of them",
                file.display(),
                attrs.join(", ")
            ),
            Refusal::MetaInLet { pos } => write!(
                f,
                "meta is bound in a `let` at {pos} and may be shared by several derivations"
            ),
            Refusal::SharedFunction { function, pos } => write!(
                f,
                "meta at {pos} is inside {function}: the file builds several packages with it, and marking one broken there would mark them all"
            ),
            Refusal::NoMeta { file } => {
                write!(f, "{} has no literal meta attribute set", file.display())
            }
            Refusal::AmbiguousMeta { file, lines } => write!(
                f,
                "{} has several meta sets (lines {}); cannot tell which one is the package's",
                file.display(),
                lines
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Refusal::OpaqueMeta { pos, expression } => write!(
                f,
                "meta at {pos} is merged with `{expression}`, whose content the editor cannot see"
            ),
            Refusal::InheritedBroken { pos } => {
                write!(
                    f,
                    "`broken` is inherited at {pos}; not merged automatically"
                )
            }
            Refusal::StdenvUnavailable { file } => write!(
                f,
                "{}: a platform condition needs `stdenv`, which is not in scope and the file has no argument set to add it to",
                file.display()
            ),
            Refusal::NixDisagrees {
                static_file,
                nix_file,
            } => write!(
                f,
                "static index says {} but Nix says {}",
                static_file.display(),
                nix_file.display()
            ),
            Refusal::UnsupportedCallSite { file, line, why } => {
                write!(
                    f,
                    "{}:{line}: call site not removable: {why}",
                    file.display()
                )
            }
            Refusal::AliasExists { file, line } => {
                write!(
                    f,
                    "{}:{line}: an alias with this name already exists",
                    file.display()
                )
            }
            Refusal::StillUsed { name, places } => {
                let shown: Vec<String> = places.iter().take(5).map(|p| p.to_string()).collect();
                let more = places.len().saturating_sub(shown.len());
                write!(
                    f,
                    "`{name}` is still used at {}{}; retiring it would break them, so they go first",
                    shown.join(", "),
                    if more > 0 {
                        format!(" and {more} more")
                    } else {
                        String::new()
                    }
                )
            }
        }
    }
}

/// Every failure of the nixpkgs editor.
#[derive(Debug, thiserror::Error)]
pub enum NixpkgsError {
    /// The input is not valid Nix.
    #[error("{pos}: not valid Nix: {message}")]
    InvalidNix { pos: SourcePos, message: String },
    /// The edit would not parse; nothing was written. Indicates an editor bug.
    #[error("{file}: the edited file would not parse ({message}); nothing was written")]
    EditWouldNotParse { file: PathBuf, message: String },
    /// The editor refuses to act on `subject` (an attribute or a file).
    #[error("{subject}: refused: {reason}")]
    Refused { subject: String, reason: Refusal },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "unknown system `{0}` (expected one of x86_64-linux, aarch64-linux, x86_64-darwin, aarch64-darwin)"
    )]
    UnknownSystem(String),
    #[error("`{0}` is not a valid attribute path")]
    InvalidAttrPath(String),
    #[error("`{0}` is not a date of the form YYYY-MM-DD")]
    InvalidDate(String),
    /// nix-instantiate failed or answered something unexpected.
    #[error("nix-instantiate ({context}): {message}")]
    Nix { context: String, message: String },
    /// A git operation failed.
    #[error("git ({context}): {message}")]
    Git { context: String, message: String },
    /// The remote refused the pushed ref.
    #[error("push to `{remote}` rejected for {refname}: {message}")]
    PushRejected {
        remote: String,
        refname: String,
        message: String,
    },
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// Someone else pushed to the bot's branch on the fork (a maintainer
    /// invited by "maintainers can modify"): it is never force-pushed over.
    #[error(
        "branch `{branch}` on the fork has commit {commit} by {author}, which hydra-sentinel did not push: it will not overwrite it"
    )]
    BranchTakenOver {
        branch: String,
        commit: String,
        author: String,
    },
}

impl NixpkgsError {
    /// The editor declined this edit because of what the package's source
    /// is (a generated file, meta it cannot prove is the package's own, a
    /// result that would not parse): retrying changes nothing, a human has
    /// to make the edit.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            NixpkgsError::Refused { .. }
                | NixpkgsError::EditWouldNotParse { .. }
                | NixpkgsError::InvalidNix { .. }
                | NixpkgsError::BranchTakenOver { .. }
        )
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        NixpkgsError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn refused(subject: impl Into<String>, reason: Refusal) -> Self {
        NixpkgsError::Refused {
            subject: subject.into(),
            reason,
        }
    }

    pub(crate) fn git(context: impl Into<String>, err: &git2::Error) -> Self {
        NixpkgsError::Git {
            context: context.into(),
            message: err.message().to_string(),
        }
    }

    /// The refusal, when this error is one.
    pub fn refusal(&self) -> Option<&Refusal> {
        match self {
            NixpkgsError::Refused { reason, .. } => Some(reason),
            _ => None,
        }
    }
}
