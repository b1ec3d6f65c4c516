//! `completions` and `man`: shell completion scripts and the man page,
//! generated from the clap definitions of [`Cli`], for packagers to install.
//!
//! Owns: turning the command-line definition into those texts on stdout.
//!
//! Must never: read the configuration or anything else on disk (a package
//! build runs it before anything is set up), write anywhere but stdout or
//! the folder it is given, or keep a hand-written copy of the command line
//! that could drift from the real one.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::CommandFactory;
use clap_complete::Shell;

use super::Cli;

/// The completion script for `shell`.
pub fn completions(shell: Shell, out: &mut dyn Write) -> Result<ExitCode> {
    let mut command = Cli::command();
    let name = command.get_name().to_owned();
    let mut text = Vec::new();
    clap_complete::generate(shell, &mut command, name.clone(), &mut text);
    if shell == Shell::Bash {
        text = mend_bash_state_labels(&name, text);
    }
    emit(&text, out).context("writing the completion script")
}

/// clap_complete's bash script tracks the subcommand typed so far in a
/// state variable and dispatches on it with `case`; for a binary name with a
/// hyphen it spells the state `hydra__sentinel__subcmd__plan` in the loop
/// but `hydra__subcmd__sentinel__subcmd__plan` in the `case` arms, so no
/// subcommand's options ever complete (clap-rs/clap#6421, open). Spell the
/// arms like the loop. A no-op once clap_complete is fixed.
fn mend_bash_state_labels(name: &str, text: Vec<u8>) -> Vec<u8> {
    let text = String::from_utf8_lossy(&text);
    let wrong = format!("{}__subcmd__", name.replace('-', "__subcmd__"));
    let right = format!("{}__subcmd__", name.replace('-', "__"));
    text.replace(&wrong, &right).into_bytes()
}

/// The man page of `hydra-sentinel` (section 1, roff) on `out`; or, with
/// `out_dir`, one page per command into that folder (`hydra-sentinel.1`,
/// `hydra-sentinel-plan.1`, `hydra-sentinel-policy-check.1`, …), which is
/// what the main page's SUBCOMMANDS section refers to.
pub fn man(out_dir: Option<&Path>, out: &mut dyn Write) -> Result<ExitCode> {
    // As clap_mangen::generate_to has it: `help` is no page of its own.
    let command = Cli::command().disable_help_subcommand(true);
    if let Some(dir) = out_dir {
        clap_mangen::generate_to(command, dir)
            .with_context(|| format!("writing the man pages into {}", dir.display()))?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut text = Vec::new();
    clap_mangen::Man::new(command)
        .render(&mut text)
        .context("rendering the man page")?;
    emit(&text, out).context("writing the man page")
}

/// Write the whole text; a reader that stops early (`| head`) is not an
/// error. Generated in memory first because `clap_complete` panics on a
/// failed write.
fn emit(text: &[u8], out: &mut dyn Write) -> std::io::Result<ExitCode> {
    match out.write_all(text).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e),
        _ => Ok(ExitCode::SUCCESS),
    }
}
