//! What a failed GitHub request means for whoever sent it.
//!
//! Owns: the classification of every [`ForgeError`] as transient (try again
//! next cycle), rate-limited (stop sending this cycle), or refused for good
//! — by the token as a whole (it may not write here: every further write
//! would be refused too) or for this one thing (a locked conversation, a
//! validation error). The answers GitHub gives for each, as GitHub and the
//! bots that met them describe them:
//!
//! - a fine-grained token writing where it may not: 403 "Resource not
//!   accessible by personal access token"; a bad token 401 "Bad
//!   credentials"; a repository the token cannot see answers 404;
//! - a comment on a locked issue: 403 "Unable to create comment because
//!   issue is locked." (probot/stale#25, renovatebot/renovate#6215);
//! - a validation error: 422 "Validation Failed" with `errors`, such as
//!   `fork_collab` "Fork collab can't be granted by someone without
//!   permission" when `maintainer_can_modify` is asked from an
//!   organisation's fork (PyGithub/PyGithub#1921), which the forge answers
//!   by asking once without it.
//!
//! Must never: call a refusal transient (it would be sent again every
//! cycle, and GitHub warns that repeated invalid requests can get an
//! integration suspended), or call a rate limit a refusal.

use super::ForgeError;

/// What a failure means (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// A network error or a 5xx: worth another try later.
    Transient,
    /// GitHub asked us to slow down: nothing more this cycle.
    RateLimited,
    Refused(Refusal),
}

/// Why GitHub refused, for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The token may not do this here (401, 403, 404 on the repository):
    /// every write would be refused alike until someone fixes the setup.
    Token,
    /// The conversation is locked: only its repository's members may speak.
    Locked,
    /// This request is invalid (422 and other 4xx): sending it again
    /// changes nothing.
    Validation,
}

impl ForgeError {
    /// What this failure means for the caller.
    pub fn failure(&self) -> Failure {
        match self {
            ForgeError::Transport { .. } | ForgeError::Decode { .. } => Failure::Transient,
            ForgeError::RateLimited { .. } => Failure::RateLimited,
            ForgeError::Token { .. } | ForgeError::Settings(_) => Failure::Refused(Refusal::Token),
            ForgeError::NotFound { .. } | ForgeError::TooManyPages { .. } => {
                Failure::Refused(Refusal::Validation)
            }
            ForgeError::Status {
                status, message, ..
            } => match status {
                500.. => Failure::Transient,
                403 if message.to_ascii_lowercase().contains("locked") => {
                    Failure::Refused(Refusal::Locked)
                }
                401 | 403 | 404 => Failure::Refused(Refusal::Token),
                // 408 Request Timeout, 409 a conflicting concurrent change.
                408 | 409 => Failure::Transient,
                _ => Failure::Refused(Refusal::Validation),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(status: u16, message: &str) -> ForgeError {
        ForgeError::Status {
            method: "POST",
            path: "repos/NixOS/nixpkgs/issues".into(),
            status,
            message: message.into(),
        }
    }

    #[test]
    fn each_answer_github_gives_is_classified_as_its_docs_and_bots_describe_it() {
        let cases = [
            (status(502, "Bad Gateway"), Failure::Transient),
            (status(409, "Conflict"), Failure::Transient),
            (
                status(403, "Unable to create comment because issue is locked."),
                Failure::Refused(Refusal::Locked),
            ),
            (
                status(403, "Resource not accessible by personal access token"),
                Failure::Refused(Refusal::Token),
            ),
            (
                status(401, "Bad credentials"),
                Failure::Refused(Refusal::Token),
            ),
            (status(404, "Not Found"), Failure::Refused(Refusal::Token)),
            (
                status(422, "Validation Failed: body is too long"),
                Failure::Refused(Refusal::Validation),
            ),
            (
                ForgeError::RateLimited {
                    method: "POST",
                    path: "x".into(),
                    attempts: 5,
                    wait: std::time::Duration::from_secs(60),
                    reason: "secondary",
                },
                Failure::RateLimited,
            ),
        ];
        for (error, expected) in cases {
            assert_eq!(error.failure(), expected, "{error}");
        }
    }
}
