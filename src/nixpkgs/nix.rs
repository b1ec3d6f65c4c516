//! Asking real Nix: where a package's meta is, whether a text parses, what an expression
//! evaluates to.
//!
//! Owns: running `nix-instantiate` as a subprocess with arguments passed as data (attribute
//! paths are validated and quoted, paths go through `--argstr`), so no input can inject Nix
//! code. Must never be required: every caller works without Nix, which only adds checks.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::error::NixpkgsError;
use super::locate::validate_attr_path;

/// Where Nix says `meta.description` of a package is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NixPosition {
    /// Relative to the checkout.
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
}

/// Something that can tell where a package's meta is (Nix, or a fake in tests).
pub trait MetaPositionOracle {
    /// `Ok(None)` when the attribute has no `meta.description` position.
    fn meta_position(&self, attr: &str) -> Result<Option<NixPosition>, NixpkgsError>;
}

/// `nix-instantiate`, found on `PATH` or given explicitly.
#[derive(Debug, Clone)]
pub struct NixInstantiate {
    program: PathBuf,
}

impl NixInstantiate {
    pub fn new(program: impl Into<PathBuf>) -> Self {
        NixInstantiate {
            program: program.into(),
        }
    }

    /// `nix-instantiate` from `PATH`, if there is one.
    pub fn from_path() -> Option<Self> {
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path)
            .map(|dir| dir.join("nix-instantiate"))
            .find(|candidate| candidate.is_file())
            .map(NixInstantiate::new)
    }

    /// `nix-instantiate` set up to evaluate without any store or shared state:
    /// the dummy store (parsing and evaluating never need to write one, so no
    /// `/nix` has to exist or be writable, as under a hardened service or a
    /// normal user's test run), and a state folder private to this user, since
    /// one shared by several users makes Nix fail on the other's profiles.
    pub fn command(&self) -> Command {
        let mut command = Command::new(&self.program);
        command
            .args(["--store", "dummy://"])
            .env("NIX_STATE_DIR", private_state_dir());
        command
    }

    fn run(
        &self,
        args: &[&str],
        stdin: Option<&str>,
        context: &str,
    ) -> Result<String, NixpkgsError> {
        let mut child = self
            .command()
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| NixpkgsError::Nix {
                context: context.to_string(),
                message: format!("cannot run {}: {e}", self.program.display()),
            })?;
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(input.as_bytes())
                .map_err(|e| NixpkgsError::Nix {
                    context: context.to_string(),
                    message: e.to_string(),
                })?;
        }
        let output = child.wait_with_output().map_err(|e| NixpkgsError::Nix {
            context: context.to_string(),
            message: e.to_string(),
        })?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let message: String = stderr.lines().take(8).collect::<Vec<_>>().join("\n");
            return Err(NixpkgsError::Nix {
                context: context.to_string(),
                message,
            });
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// `nix-instantiate --parse` on `text`.
    pub fn check_parse(&self, text: &str, file: &Path) -> Result<(), NixpkgsError> {
        self.run(
            &["--parse", "-"],
            Some(text),
            &format!("--parse {}", file.display()),
        )
        .map(|_| ())
    }

    /// Evaluate `expr` (a function of `{ nixpkgs, system }`) strictly to JSON.
    pub fn eval_json(
        &self,
        nixpkgs: &Path,
        system: &str,
        expr: &str,
    ) -> Result<serde_json::Value, NixpkgsError> {
        // Nix takes a path from a string only when it is absolute
        // (`--nixpkgs .` would fail with "string '.' doesn't represent an
        // absolute path").
        let absolute = std::path::absolute(nixpkgs).map_err(|e| NixpkgsError::io(nixpkgs, e))?;
        let dir = absolute.to_string_lossy();
        let out = self.run(
            &[
                "--eval", "--strict", "--json", "--argstr", "nixpkgs", &dir, "--argstr", "system",
                system, "-E", expr,
            ],
            None,
            "eval",
        )?;
        serde_json::from_str(&out).map_err(|e| NixpkgsError::Nix {
            context: "eval".into(),
            message: format!("unexpected output: {e}"),
        })
    }
}

/// `hydra-sentinel-nix-state-<uid>` in the temporary folder.
fn private_state_dir() -> PathBuf {
    use std::os::unix::fs::MetadataExt;
    // The owner of /proc/self is this process's effective uid.
    let uid = std::fs::metadata("/proc/self").map_or(0, |m| m.uid());
    std::env::temp_dir().join(format!("hydra-sentinel-nix-state-{uid}"))
}

/// Nix asked about one checkout.
#[derive(Debug, Clone)]
pub struct NixOracle {
    pub nix: NixInstantiate,
    /// The checkout, as given; positions are made relative to it.
    pub nixpkgs: PathBuf,
}

/// `pkgs.a.b` as a Nix selection with every component quoted.
pub(crate) fn quoted_selection(attr: &str) -> Result<String, NixpkgsError> {
    Ok(validate_attr_path(attr)?
        .iter()
        .map(|c| format!("\"{c}\""))
        .collect::<Vec<_>>()
        .join("."))
}

impl MetaPositionOracle for NixOracle {
    fn meta_position(&self, attr: &str) -> Result<Option<NixPosition>, NixpkgsError> {
        let selection = quoted_selection(attr)?;
        let expr = format!(
            "{{ nixpkgs, system }}: let pkgs = import nixpkgs {{ inherit system; }}; \
             in builtins.unsafeGetAttrPos \"description\" (pkgs.{selection}.meta or {{ }})"
        );
        let value = self.nix.eval_json(&self.nixpkgs, "x86_64-linux", &expr)?;
        if value.is_null() {
            return Ok(None);
        }
        let file = value.get("file").and_then(|f| f.as_str());
        let line = value.get("line").and_then(serde_json::Value::as_u64);
        let column = value.get("column").and_then(serde_json::Value::as_u64);
        let (Some(file), Some(line), Some(column)) = (file, line, column) else {
            return Err(NixpkgsError::Nix {
                context: format!("position of {attr}"),
                message: format!("unexpected answer {value}"),
            });
        };
        let root =
            std::fs::canonicalize(&self.nixpkgs).map_err(|e| NixpkgsError::io(&self.nixpkgs, e))?;
        let file = Path::new(file);
        let relative = file
            .strip_prefix(&root)
            .or_else(|_| file.strip_prefix(&self.nixpkgs))
            .map(Path::to_path_buf)
            .unwrap_or_else(|_| file.to_path_buf());
        Ok(Some(NixPosition {
            file: relative,
            line: usize::try_from(line).unwrap_or(usize::MAX),
            column: usize::try_from(column).unwrap_or(usize::MAX),
        }))
    }
}
