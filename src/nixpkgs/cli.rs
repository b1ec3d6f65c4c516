//! The editor's commands for committers: `locate`, `mark-broken`, `retire`.
//!
//! Owns: argument structs (`clap::Args`, to be mounted as subcommands by the binary) and the
//! command bodies, which print to the writer they are given. Must never write a file without
//! `--write`, and must exit non-zero (via [`Outcome::Refused`]) when it refuses.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::changes::{Change, ChangeSet};
use super::error::NixpkgsError;
use super::locate::{Index, locate};
use super::mark_broken::{
    Evidence, MarkBrokenOutcome, MarkBrokenRequest, mark_attr_broken, mark_broken,
};
use super::nix::{MetaPositionOracle, NixInstantiate, NixOracle};
use super::platform::Platforms;
use super::retire::{Date, RetireRequest, plan_retirement};
use super::source::FsTree;

/// How a command ended when it did not fail: the binary maps this to the exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// At least one attribute was refused (reasons were printed).
    Refused,
}

impl Outcome {
    pub fn exit_code(self) -> u8 {
        match self {
            Outcome::Success => 0,
            Outcome::Refused => 3,
        }
    }
}

impl From<Outcome> for std::process::ExitCode {
    fn from(outcome: Outcome) -> Self {
        std::process::ExitCode::from(outcome.exit_code())
    }
}

/// `locate --nixpkgs DIR ATTR...`
#[derive(Debug, Clone, clap::Args)]
pub struct LocateArgs {
    /// nixpkgs checkout.
    #[arg(long, value_name = "DIR")]
    pub nixpkgs: PathBuf,
    /// Also ask nix-instantiate and cross-check (needs Nix on PATH).
    #[arg(long)]
    pub nix: bool,
    /// Attribute paths (`hello`, `python3Packages.requests`).
    #[arg(required = true, value_name = "ATTR")]
    pub attrs: Vec<String>,
}

/// `mark-broken (--nixpkgs DIR ATTR | --file FILE) [--systems s1,s2] [--write]`
#[derive(Debug, Clone, clap::Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["nixpkgs", "file"])))]
pub struct MarkBrokenArgs {
    /// nixpkgs checkout (with ATTR).
    #[arg(long, value_name = "DIR", requires = "attr")]
    pub nixpkgs: Option<PathBuf>,
    /// A single Nix file to edit instead of an attribute.
    #[arg(long, value_name = "FILE", conflicts_with = "nixpkgs")]
    pub file: Option<PathBuf>,
    /// Attribute path, with --nixpkgs.
    #[arg(value_name = "ATTR")]
    pub attr: Option<String>,
    /// Failing systems, comma-separated (default: all four Hydra systems).
    #[arg(long, value_name = "S1,S2")]
    pub systems: Option<String>,
    /// One-line reason, written as a comment above `broken`.
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
    /// Since when it fails (YYYY-MM-DD), for the comment.
    #[arg(long, value_name = "DATE")]
    pub since: Option<String>,
    /// Hydra build link, for the comment.
    #[arg(long, value_name = "URL")]
    pub build_url: Option<String>,
    /// Write the file (default: print a unified diff).
    #[arg(long)]
    pub write: bool,
    /// Cross-check the location with nix-instantiate, and check the result with
    /// `nix-instantiate --parse` before writing.
    #[arg(long)]
    pub nix: bool,
}

/// `retire --nixpkgs DIR ATTR [--write]`
#[derive(Debug, Clone, clap::Args)]
pub struct RetireArgs {
    #[arg(long, value_name = "DIR")]
    pub nixpkgs: PathBuf,
    #[arg(value_name = "ATTR")]
    pub attr: String,
    /// Attic folder, relative to the checkout.
    #[arg(long, default_value = "attic", value_name = "DIR")]
    pub attic: PathBuf,
    /// Date for `# Added` (default: today, UTC).
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub date: Option<String>,
    /// Why, completing "'foo' has been removed because ...".
    #[arg(
        long,
        default_value = "it has been broken for a long time",
        value_name = "TEXT"
    )]
    pub reason: String,
    /// A link to the PR or issue, added to the alias message.
    #[arg(long, value_name = "URL")]
    pub reference: Option<String>,
    /// Apply the changes (default: print them).
    #[arg(long)]
    pub write: bool,
}

fn io_err(e: std::io::Error) -> NixpkgsError {
    NixpkgsError::io("<output>", e)
}

fn nix_if(wanted: bool) -> Result<Option<NixInstantiate>, NixpkgsError> {
    if !wanted {
        return Ok(None);
    }
    NixInstantiate::from_path()
        .map(Some)
        .ok_or_else(|| NixpkgsError::Nix {
            context: "--nix".into(),
            message: "nix-instantiate is not on PATH".into(),
        })
}

/// Print each attribute's file, or why it is refused.
pub fn run_locate(args: &LocateArgs, out: &mut dyn Write) -> Result<Outcome, NixpkgsError> {
    let tree = FsTree::new(&args.nixpkgs);
    let index = Index::build(&tree)?;
    let oracle = nix_if(args.nix)?.map(|nix| NixOracle {
        nix,
        nixpkgs: args.nixpkgs.clone(),
    });
    let oracle_ref = oracle.as_ref().map(|o| o as &dyn MetaPositionOracle);
    let mut outcome = Outcome::Success;
    for attr in &args.attrs {
        match locate(&index, &tree, oracle_ref, attr) {
            Ok(located) => writeln!(
                out,
                "{attr}\t{}\t(meta at line {})",
                located.location.file.display(),
                located.meta_line
            )
            .map_err(io_err)?,
            Err(NixpkgsError::Refused { reason, .. }) => {
                outcome = Outcome::Refused;
                writeln!(out, "{attr}\trefused: {reason}").map_err(io_err)?;
            }
            Err(NixpkgsError::InvalidAttrPath(a)) => {
                outcome = Outcome::Refused;
                writeln!(out, "{a}\trefused: not a valid attribute path").map_err(io_err)?;
            }
            Err(other) => return Err(other),
        }
    }
    Ok(outcome)
}

/// Print (or, with `--write`, apply) the edit that marks an attribute or a file broken.
pub fn run_mark_broken(
    args: &MarkBrokenArgs,
    out: &mut dyn Write,
) -> Result<Outcome, NixpkgsError> {
    let platforms = match &args.systems {
        Some(list) => Platforms::parse_list(list)?,
        None => Platforms::all(),
    };
    let request = MarkBrokenRequest {
        platforms,
        evidence: Evidence {
            since: args
                .since
                .as_deref()
                .map(|since| Date::parse(since).map(|date| date.as_str().to_owned()))
                .transpose()?,
            build_url: args.build_url.clone(),
            note: args.reason.clone(),
        },
        meta_line: None,
    };
    let nix = nix_if(args.nix)?;
    let (root, result) = match (&args.nixpkgs, &args.file, &args.attr) {
        (Some(dir), _, Some(attr)) => {
            let tree = FsTree::new(dir);
            let index = Index::build(&tree)?;
            let oracle = nix.clone().map(|nix| NixOracle {
                nix,
                nixpkgs: dir.clone(),
            });
            let oracle_ref = oracle.as_ref().map(|o| o as &dyn MetaPositionOracle);
            let result = mark_attr_broken(&index, &tree, oracle_ref, attr, &request)
                .map(|(_, outcome, changes)| (outcome, changes));
            (dir.clone(), result)
        }
        (None, Some(file), _) => {
            let text = std::fs::read_to_string(file).map_err(|e| NixpkgsError::io(file, e))?;
            let result = mark_broken(&text, file, &request).map(|outcome| {
                let changes = match &outcome {
                    MarkBrokenOutcome::Edited(edit) => ChangeSet {
                        changes: vec![Change::Write {
                            path: file.clone(),
                            old: Some(text),
                            new: edit.text.clone(),
                        }],
                    },
                    MarkBrokenOutcome::AlreadyBroken { .. } => ChangeSet::default(),
                };
                (outcome, changes)
            });
            (PathBuf::new(), result)
        }
        _ => {
            return Err(NixpkgsError::InvalidInput(
                "give --nixpkgs DIR ATTR or --file FILE".into(),
            ));
        }
    };
    let (outcome, changes) = match result {
        Ok(ok) => ok,
        Err(NixpkgsError::Refused { subject, reason }) => {
            writeln!(out, "{subject}: refused: {reason}").map_err(io_err)?;
            return Ok(Outcome::Refused);
        }
        Err(other) => return Err(other),
    };
    if let MarkBrokenOutcome::AlreadyBroken { line, expression } = &outcome {
        writeln!(
            out,
            "already broken on those platforms (line {line}: broken = {expression};); nothing to do"
        )
        .map_err(io_err)?;
        return Ok(Outcome::Success);
    }
    finish(&changes, &root, args.write, nix.as_ref(), out)
}

/// Print (or, with `--write`, apply) the retirement of an attribute to the attic.
pub fn run_retire(args: &RetireArgs, out: &mut dyn Write) -> Result<Outcome, NixpkgsError> {
    let date = match &args.date {
        Some(date) => Date::parse(date)?,
        None => Date::parse(&chrono::Utc::now().format("%Y-%m-%d").to_string())?,
    };
    let tree = FsTree::new(&args.nixpkgs);
    let index = Index::build(&tree)?;
    let request = RetireRequest {
        attic: args.attic.clone(),
        date,
        reason: args.reason.clone(),
        reference: args.reference.clone(),
    };
    match plan_retirement(&index, &tree, &args.attr, &request) {
        Ok(retirement) => finish(&retirement.changes, &args.nixpkgs, args.write, None, out),
        Err(NixpkgsError::Refused { subject, reason }) => {
            writeln!(out, "{subject}: refused: {reason}").map_err(io_err)?;
            Ok(Outcome::Refused)
        }
        Err(other) => Err(other),
    }
}

fn finish(
    changes: &ChangeSet,
    root: &Path,
    write: bool,
    nix: Option<&NixInstantiate>,
    out: &mut dyn Write,
) -> Result<Outcome, NixpkgsError> {
    if write {
        changes.apply_to_dir(root, nix)?;
        for change in &changes.changes {
            match change {
                Change::Write { path, .. } => writeln!(out, "wrote {}", root.join(path).display()),
                Change::Move { from, to } => {
                    writeln!(out, "moved {} to {}", from.display(), to.display())
                }
            }
            .map_err(io_err)?;
        }
    } else {
        out.write_all(changes.unified_diff().as_bytes())
            .map_err(io_err)?;
    }
    Ok(Outcome::Success)
}
