//! Own or inherited: what Hydra's build page said about a failed build.
//!
//! Hydra copies a failed step's status onto every build that depends on it,
//! unchanged except that 1 becomes 2 (NixOS/hydra
//! `subprojects/hydra-queue-runner/src/state/mod.rs` `inner_fail_job`), and
//! writes 8 (cached failure) the same way. So 2 always means "a dependency",
//! 1 always means "its own derivation" (1 is never copied; a cached failure
//! of the build's own derivation is also 1, `handle_previous_failure`), but
//! any other failure code may be either, until the build page says which.

use serde::Serialize;

/// What the build page of a failed build said, if it was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case", tag = "cause")]
pub enum Cause {
    /// Not read (yet), or not needed.
    #[default]
    Unread,
    /// A step of the build's own derivation failed.
    Own,
    /// Copied from a failed step of build `from` (the root).
    Propagated { from: i64 },
    /// Read, but the page lists no failed step: the status stands as it is.
    Unknown,
}

impl Cause {
    /// Whether the page has been read.
    pub fn is_read(self) -> bool {
        self != Cause::Unread
    }

    /// The build Hydra names as the one that really failed.
    pub fn root(self) -> Option<i64> {
        match self {
            Cause::Propagated { from } => Some(from),
            _ => None,
        }
    }
}

/// Whether a failure with this code may have been copied from a dependency
/// (so that only the build page tells whose it is). Not 0, 1 (never
/// copied), 2 (always a dependency's), the noise codes 3, 4 and 9 (noise
/// either way), nor 6 (Hydra's page lists no failed steps for it:
/// `build.tt` shows them when `buildstatus` is not 0, 4 or 6).
pub fn may_be_inherited(code: i64) -> bool {
    !matches!(code, 0..=4 | 6 | 9)
}

/// Whether reading a build's page is worth a request: a failure that may be
/// inherited (to know whose it is), or a dependency failure (to learn its
/// root).
pub fn worth_reading(code: i64) -> bool {
    code == 2 || may_be_inherited(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_codes_hydra_copies_unchanged_wait_for_the_page() {
        for code in [7, 8, 10, 11, 12, 5, 13, 99] {
            assert!(may_be_inherited(code), "{code}");
        }
        for code in [0, 1, 2, 3, 4, 6, 9] {
            assert!(!may_be_inherited(code), "{code}");
        }
        assert!(worth_reading(2));
        assert!(!worth_reading(1));
    }
}
