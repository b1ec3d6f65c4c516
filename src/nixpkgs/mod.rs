//! The nixpkgs editor: find an attribute's file, mark it broken losslessly (per platform),
//! read its maintainers, retire it to the attic, and commit the change with git.
//!
//! Owns: everything that reads or writes a nixpkgs checkout. The edits themselves are pure
//! functions from text to text (`mark_broken`, `retire::plan_retirement`); file system, git
//! and `nix-instantiate` are reached only through the small edges in `source`, `fs`, `git`
//! and `nix`.
//!
//! Must never: edit by regex; change a byte outside the package's own `meta` set (and, for
//! a platform condition, the function's argument set); write a file that does not parse;
//! edit generated files or `haskellPackages`; read the clock (dates are arguments); touch
//! the user's working tree when committing; log or return a push token.

pub mod changes;
pub mod cli;
pub mod error;
pub mod generated;
pub mod git;
pub mod locate;
pub mod maintainers;
pub mod mark_broken;
mod meta;
pub mod nix;
pub mod platform;
pub mod retire;
pub mod source;
mod syntax;

pub use error::{NixpkgsError, Refusal, SourcePos};
pub use locate::{Index, Located, Location, locate};
pub use mark_broken::{
    BrokenChange, Evidence, MarkBrokenEdit, MarkBrokenOutcome, MarkBrokenRequest, mark_attr_broken,
    mark_broken,
};
pub use meta::SharedBy;
pub use platform::{Platforms, System};
