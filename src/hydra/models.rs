//! Hydra's JSON as it really is. Unknown fields are ignored (Hydra adds some
//! now and then); booleans may come as `0`/`1`.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

/// One build, as in `/build/{id}` and the elements of `/eval/{id}/builds`.
/// Only the fields hydra-sentinel uses are read.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Build {
    pub id: i64,
    pub project: String,
    pub jobset: String,
    pub job: String,
    pub system: String,
    #[serde(default)]
    pub nixname: Option<String>,
    pub drvpath: String,
    #[serde(deserialize_with = "flag")]
    pub finished: bool,
    #[serde(default)]
    pub buildstatus: Option<i64>,
    #[serde(default)]
    pub timestamp: Option<i64>,
    #[serde(default)]
    pub stoptime: Option<i64>,
}

/// A build with the evals that contain it (`jobsetevals` in
/// `Schema/Result/Builds.pm` `as_json`): what learning when a failure began
/// reads. Kept apart from [`Build`] so that ingest never parses those lists.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct BuildInEvals {
    pub id: i64,
    #[serde(deserialize_with = "flag")]
    pub finished: bool,
    #[serde(default)]
    pub buildstatus: Option<i64>,
    /// When the build was queued: when the eval that created it ran.
    #[serde(default)]
    pub timestamp: Option<i64>,
    #[serde(default)]
    pub stoptime: Option<i64>,
    #[serde(default)]
    pub jobsetevals: Vec<i64>,
}

/// A jobset as `/api/jobsets?project=P` lists it (NixOS/hydra
/// `Controller/API.pm` `jobsets`): a few hundred bytes per jobset.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct JobsetOverview {
    pub name: String,
    /// When Hydra last checked the jobset's inputs (and evaluated it when
    /// they changed): no new eval can appear without this moving.
    #[serde(default)]
    pub lastcheckedtime: Option<i64>,
}

/// An eval without its `builds` array: what a page of `/jobset/…/evals` is
/// read into, so that discovering evals never holds 250,000 ids per eval.
/// The ids are counted as they are skipped: the count tells ingest how
/// much work `/eval/{id}/builds` would cost Hydra (each eval object on the
/// page carries its build ids: `Schema/Result/JobsetEvals.pm` `json_hint`,
/// relation `builds`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct EvalHeader {
    pub id: i64,
    /// How many builds the eval has; `None` when the page did not say.
    #[serde(default, rename = "builds", deserialize_with = "count_elements")]
    pub nr_builds: Option<usize>,
    pub timestamp: i64,
    #[serde(default)]
    pub checkouttime: Option<i64>,
    #[serde(default)]
    pub evaltime: Option<i64>,
    #[serde(default)]
    pub flake: Option<String>,
    #[serde(default)]
    pub jobsetevalinputs: BTreeMap<String, EvalInput>,
}

/// The length of a JSON array, without keeping its elements.
fn count_elements<'de, D: Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    struct Count;
    impl<'de> serde::de::Visitor<'de> for Count {
        type Value = Option<usize>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an array")
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            let mut n = 0;
            while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {
                n += 1;
            }
            Ok(Some(n))
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    d.deserialize_any(Count)
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct EvalInput {
    #[serde(default)]
    pub uri: Option<String>,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub revision: Option<String>,
    #[serde(default)]
    pub value: Option<String>,
}

impl EvalHeader {
    /// The nixpkgs revision the eval is of: the `nixpkgs` input's revision,
    /// else the only git input's, else the locked flake reference.
    pub fn revision(&self) -> Option<String> {
        if let Some(rev) = self
            .jobsetevalinputs
            .get("nixpkgs")
            .and_then(|i| i.revision.clone())
        {
            return Some(rev);
        }
        let mut git = self
            .jobsetevalinputs
            .values()
            .filter(|i| i.kind.as_deref() == Some("git"))
            .filter_map(|i| i.revision.clone());
        match (git.next(), git.next()) {
            (Some(rev), None) => Some(rev),
            _ => self.flake.clone(),
        }
    }
}

/// `/eval/{id}`: the header plus every build id of the eval.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Eval {
    #[serde(flatten)]
    pub header: EvalHeader,
    pub builds: Vec<i64>,
}

/// One page of `/jobset/{p}/{j}/evals`, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct EvalsPage {
    pub evals: Vec<EvalHeader>,
    /// A relative link such as `?page=2`, present only when there is more.
    #[serde(default)]
    pub next: Option<String>,
}

/// Hydra serialises booleans as `0`/`1`; accept those, real booleans, and null
/// (as false).
fn flag<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Flag {
        Bool(bool),
        Int(i64),
        Null(()),
    }
    match Flag::deserialize(d)? {
        Flag::Bool(b) => Ok(b),
        Flag::Int(0) | Flag::Null(()) => Ok(false),
        Flag::Int(1) => Ok(true),
        Flag::Int(other) => Err(serde::de::Error::custom(format!(
            "expected 0 or 1 for a flag, got {other}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/hydra");

    fn sample(name: &str) -> String {
        let path = format!("{SAMPLES}/{name}");
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
    }

    #[test]
    fn reads_the_recorded_build_shape() {
        let build: Build = serde_json::from_str(&sample("build.json")).unwrap();
        assert_eq!(build.id, 301944122);
        assert_eq!(
            build.job,
            "python313Packages.pytest-aiohttp-fixture.x86_64-linux"
        );
        assert!(build.finished);
        assert_eq!(build.buildstatus, Some(2));
    }

    #[test]
    fn an_evals_page_counts_each_evals_builds_without_keeping_them() {
        let page: EvalsPage = serde_json::from_str(&sample("evals.json")).unwrap();
        let raw: serde_json::Value = serde_json::from_str(&sample("evals.json")).unwrap();
        for (eval, raw) in page.evals.iter().zip(raw["evals"].as_array().unwrap()) {
            assert_eq!(
                eval.nr_builds,
                Some(raw["builds"].as_array().unwrap().len())
            );
        }
        let without: EvalHeader = serde_json::from_str(r#"{"id": 1, "timestamp": 2}"#).unwrap();
        assert_eq!(without.nr_builds, None);
    }

    #[test]
    fn reads_unfinished_builds_with_null_status() {
        let builds: Vec<Build> = serde_json::from_str(&sample("eval-builds.json")).unwrap();
        let queued = builds
            .iter()
            .find(|b| !b.finished)
            .expect("a queued build in the sample");
        assert_eq!(queued.buildstatus, None);
        assert_eq!(queued.stoptime, None);
    }

    #[test]
    fn reads_an_evals_page_and_its_relative_next_link() {
        let page: EvalsPage = serde_json::from_str(&sample("evals.json")).unwrap();
        assert_eq!(page.evals.len(), 3);
        assert_eq!(page.next.as_deref(), Some("?page=2"));
        assert_eq!(
            page.evals[0].revision().as_deref(),
            Some("e9fbe4231216421ad78c5d0f1d5d84f27deaaa15")
        );
    }

    #[test]
    fn a_flag_must_be_zero_or_one() {
        let bad = r#"{"id":1,"project":"p","jobset":"j","job":"a.x86_64-linux","system":"x86_64-linux","drvpath":"/nix/store/x","finished":7}"#;
        assert!(serde_json::from_str::<Build>(bad).is_err());
        let boolean = bad.replace("\"finished\":7", "\"finished\":true");
        assert!(serde_json::from_str::<Build>(&boolean).unwrap().finished);
    }

    #[test]
    fn a_flake_eval_falls_back_to_the_locked_flake() {
        let json =
            r#"{"id":5,"timestamp":1,"flake":"github:NixOS/nixpkgs/abc","jobsetevalinputs":{}}"#;
        let eval: EvalHeader = serde_json::from_str(json).unwrap();
        assert_eq!(eval.revision().as_deref(), Some("github:NixOS/nixpkgs/abc"));
    }
}
