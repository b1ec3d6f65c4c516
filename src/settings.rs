//! The configuration layer: the service configuration and the policy file
//! it names, read from disk and validated, as one value.
//!
//! Owns: reading both files (the only place a policy file is read; the
//! policy module parses and validates text and does no I/O), and the pair
//! the service runs with and reloads on SIGHUP as a whole.
//!
//! Must never: interpret what it reads ([`crate::config`] and
//! [`crate::policy`] validate their own text), or hand out half a pair: a
//! bad file of either kind is an error naming that file.

use std::path::{Path, PathBuf};

use crate::config::{Config, ConfigError};
use crate::policy::{Policy, PolicyError};

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot read the policy {path}")]
    ReadPolicy {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Policy(#[from] PolicyError),
}

/// Everything that SIGHUP reloads, validated as a whole before it replaces
/// the running one: a bad policy file is refused exactly like a bad
/// configuration, and the running pair stays.
#[derive(Debug, Clone)]
pub struct Settings {
    pub config: Config,
    pub policy: Policy,
}

impl Settings {
    /// The configuration at `path` (the embedded defaults without one) and
    /// the policy file it names (the built-in policy without one), each
    /// validated. The service reads its settings only through this, and
    /// `hydra-sentinel config check` validates a file through it, so that a
    /// file the check accepts is one the service accepts.
    pub fn load(path: Option<&Path>) -> Result<Settings, SettingsError> {
        let config = match path {
            Some(path) => Config::load(path)?,
            None => Config::embedded_default(),
        };
        let policy = policy_of(&config, None)?;
        Ok(Settings { config, policy })
    }
}

/// The policy in the file at `path`, validated.
pub fn read_policy(path: &Path) -> Result<Policy, SettingsError> {
    let text = std::fs::read_to_string(path).map_err(|source| SettingsError::ReadPolicy {
        path: path.to_owned(),
        source,
    })?;
    Ok(Policy::parse(&text, path)?)
}

/// The policy a command runs with: the file it was given (`file`), else the
/// one the configuration names, else the built-in policy.
pub fn policy_of(config: &Config, file: Option<&Path>) -> Result<Policy, SettingsError> {
    match file.or(config.policy_file.as_deref()) {
        Some(path) => read_policy(path),
        None => Ok(Policy::nixpkgs()),
    }
}
