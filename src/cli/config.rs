//! `config check`: validate a service configuration, and the policy file it
//! names, exactly as the service would read them.
//!
//! Owns: nothing but the wording on stdout; validation is
//! [`Settings::load`], the service's own loader.
//!
//! Must never: open the database, read the GitHub token, or touch the
//! network: packagers run it at build time (the NixOS module checks its
//! rendered file in a sandbox) and operators run it before a reload.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;

use hydra_sentinel::settings::Settings;

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate a configuration file and the policy file it names; errors
    /// name the file, line and column. Reads nothing else.
    Check { file: PathBuf },
}

pub fn config_command(command: &ConfigCommand, out: &mut dyn Write) -> Result<ExitCode> {
    match command {
        ConfigCommand::Check { file } => {
            let settings = Settings::load(Some(file))?;
            writeln!(out, "ok: {}", file.display())?;
            if let Some(policy) = &settings.config.policy_file {
                writeln!(out, "ok: {} (its [policy] file)", policy.display())?;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
