//! The `hydra-sentinel` binary: parse the command line, run, and print an
//! error chain once.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("hydra-sentinel: {err:#}");
            ExitCode::from(2)
        }
    }
}
