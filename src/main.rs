//! hydra-sentinel: watches Hydra for failing nixpkgs jobs.
//!
//! Temporary binary on the `nixpkgs-editor` branch: mounts the nixpkgs editor's commands.
//! The real CLI lives on main; only the two-line wiring per command matters at merge.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use hydra_sentinel::nixpkgs::cli;

#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the file defining each attribute, or why it is refused.
    Locate(cli::LocateArgs),
    /// Mark a package broken (prints a diff unless --write).
    MarkBroken(cli::MarkBrokenArgs),
    /// Move a long-broken package to the attic (prints the change unless --write).
    Retire(cli::RetireArgs),
}

fn main() -> ExitCode {
    let args = Cli::parse();
    let mut stdout = std::io::stdout().lock();
    let result = match &args.command {
        Command::Locate(a) => cli::run_locate(a, &mut stdout),
        Command::MarkBroken(a) => cli::run_mark_broken(a, &mut stdout),
        Command::Retire(a) => cli::run_retire(a, &mut stdout),
    };
    match result {
        Ok(outcome) => outcome.into(),
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(2)
        }
    }
}
