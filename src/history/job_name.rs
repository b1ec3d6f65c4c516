//! Splitting Hydra job names (`python3Packages.foo.x86_64-linux`) into an
//! attribute path and a system, and refusing names that are not plausible
//! attribute paths: a job name later becomes part of file lookups, branch
//! names and Markdown, so anything odd is rejected here, once.

use std::fmt;

/// Longest job name we accept. Real nixpkgs job names stay well under 200
/// bytes; anything longer is garbage or an attack on our output.
const MAX_JOB_NAME_LEN: usize = 512;

/// A validated job name: an attribute path and the system it was built for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct JobName {
    /// The attribute path, e.g. `python3Packages.foo`.
    pub attr: String,
    /// The platform, e.g. `x86_64-linux`.
    pub system: String,
    /// Whether the Hydra job name carries `.system` at its end. nixpkgs jobs do;
    /// a few aggregate jobs (`tested`, `manual`) do not.
    pub suffixed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobNameError {
    #[error("job name is empty")]
    Empty,
    #[error("job name is {0} bytes long, longer than {MAX_JOB_NAME_LEN}")]
    TooLong(usize),
    #[error("system {0:?} is not of the form arch-os")]
    BadSystem(String),
    #[error("attribute path segment {segment:?} is not a Nix identifier")]
    BadSegment { segment: String },
}

impl JobName {
    /// Parse a Hydra `job` using the build's `system` field to find the suffix.
    pub fn parse(job: &str, system: &str) -> Result<JobName, JobNameError> {
        if job.is_empty() {
            return Err(JobNameError::Empty);
        }
        if job.len() > MAX_JOB_NAME_LEN {
            return Err(JobNameError::TooLong(job.len()));
        }
        if !is_plausible_system(system) {
            return Err(JobNameError::BadSystem(system.to_owned()));
        }
        let (attr, suffixed) = match job.strip_suffix(system) {
            Some(rest) if rest.ends_with('.') && rest.len() > 1 => (&rest[..rest.len() - 1], true),
            _ => (job, false),
        };
        for segment in attr.split('.') {
            if !is_nix_identifier(segment) {
                return Err(JobNameError::BadSegment {
                    segment: segment.to_owned(),
                });
            }
        }
        Ok(JobName {
            attr: attr.to_owned(),
            system: system.to_owned(),
            suffixed,
        })
    }

    /// The job name as Hydra spells it, for links.
    pub fn hydra_job(&self) -> String {
        if self.suffixed {
            format!("{}.{}", self.attr, self.system)
        } else {
            self.attr.clone()
        }
    }
}

impl fmt::Display for JobName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} on {}", self.attr, self.system)
    }
}

/// A Nix identifier as the lexer accepts it: `[a-zA-Z_][a-zA-Z0-9_'-]*`.
pub fn is_nix_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '\'' | '-'))
}

/// `x86_64-linux`, `aarch64-darwin`, `i686-linux`, `riscv64-linux`, ...
pub fn is_plausible_system(s: &str) -> bool {
    let Some((arch, os)) = s.split_once('-') else {
        return false;
    };
    let ok = |p: &str| {
        !p.is_empty()
            && p.len() <= 32
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    };
    ok(arch) && ok(os) && s.len() <= 64
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn splits_a_nested_attribute_from_its_system() {
        let name = JobName::parse("python3Packages.foo.x86_64-linux", "x86_64-linux").unwrap();
        assert_eq!(name.attr, "python3Packages.foo");
        assert_eq!(name.system, "x86_64-linux");
        assert!(name.suffixed);
        assert_eq!(name.hydra_job(), "python3Packages.foo.x86_64-linux");
    }

    #[test]
    fn keeps_primes_and_dashes_that_nix_allows() {
        let name = JobName::parse(
            "haskellPackages.foo'.bar-baz.aarch64-darwin",
            "aarch64-darwin",
        )
        .unwrap();
        assert_eq!(name.attr, "haskellPackages.foo'.bar-baz");
    }

    #[test]
    fn an_unsuffixed_aggregate_job_keeps_its_whole_name() {
        let name = JobName::parse("tested", "x86_64-linux").unwrap();
        assert_eq!(name.attr, "tested");
        assert!(!name.suffixed);
        assert_eq!(name.hydra_job(), "tested");
    }

    #[test]
    fn refuses_hostile_names() {
        for job in [
            "",
            "../../etc/passwd.x86_64-linux",
            "foo bar.x86_64-linux",
            "@everyone.x86_64-linux",
            "foo.[link](http://x).x86_64-linux",
            "foo..bar.x86_64-linux",
            ".x86_64-linux",
            "1password.x86_64-linux",
            "foo\nbar.x86_64-linux",
            "foo`rm`.x86_64-linux",
        ] {
            assert!(
                JobName::parse(job, "x86_64-linux").is_err(),
                "accepted {job:?}"
            );
        }
        assert!(JobName::parse(&"a".repeat(600), "x86_64-linux").is_err());
        assert!(JobName::parse("hello.x86_64-linux", "x86 64").is_err());
    }

    proptest! {
        #[test]
        fn an_accepted_name_round_trips_and_is_safe(job in ".{0,80}", system in "[a-z0-9_]{1,8}-[a-z]{1,8}") {
            if let Ok(name) = JobName::parse(&job, &system) {
                prop_assert_eq!(name.hydra_job(), job);
                prop_assert!(name.attr.chars().all(|c| c.is_ascii_alphanumeric() || "._'-".contains(c)));
            }
        }

        #[test]
        fn every_identifier_path_is_accepted(segments in prop::collection::vec("[a-zA-Z_][a-zA-Z0-9_'-]{0,12}", 1..5)) {
            let attr = segments.join(".");
            let job = format!("{attr}.x86_64-linux");
            let name = JobName::parse(&job, "x86_64-linux").unwrap();
            prop_assert_eq!(name.attr, attr);
        }
    }
}
