//! Hydra's JSON as it really is. Unknown fields are ignored (Hydra adds some
//! now and then); booleans may come as `0`/`1`.

use std::borrow::Cow;
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

impl Build {
    /// This build as ingest reads it.
    pub fn as_ref(&self) -> BuildRef<'_> {
        BuildRef {
            id: self.id,
            project: Cow::Borrowed(&self.project),
            jobset: Cow::Borrowed(&self.jobset),
            job: Cow::Borrowed(&self.job),
            system: Cow::Borrowed(&self.system),
            nixname: self.nixname.as_deref().map(Cow::Borrowed),
            drvpath: Cow::Borrowed(&self.drvpath),
            finished: self.finished,
            buildstatus: self.buildstatus,
            stoptime: self.stoptime,
        }
    }
}

/// What ingest reads of a build, its text borrowed from the body where it
/// can be (a string with escapes is copied). An eval's array is ~300,000
/// builds; owning each one's project, jobset, system and store path, only
/// to check them and drop them, was a fifth of the parsing thread's
/// allocations and frees.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct BuildRef<'a> {
    pub id: i64,
    #[serde(borrow)]
    pub project: Cow<'a, str>,
    #[serde(borrow)]
    pub jobset: Cow<'a, str>,
    #[serde(borrow)]
    pub job: Cow<'a, str>,
    #[serde(borrow)]
    pub system: Cow<'a, str>,
    #[serde(borrow, default, deserialize_with = "optional_text")]
    pub nixname: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub drvpath: Cow<'a, str>,
    #[serde(deserialize_with = "flag")]
    pub finished: bool,
    #[serde(default)]
    pub buildstatus: Option<i64>,
    #[serde(default)]
    pub stoptime: Option<i64>,
}

/// serde borrows a `Cow<str>` field only when it is one, not inside an
/// `Option`.
fn optional_text<'de: 'a, 'a, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Cow<'a, str>>, D::Error> {
    #[derive(Deserialize)]
    struct Text<'a>(#[serde(borrow)] Cow<'a, str>);
    Ok(Option::<Text<'a>>::deserialize(d)?.map(|text| text.0))
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

/// An eval as a page of `/jobset/…/evals` lists it. Each eval object on
/// the page carries its build ids (`Schema/Result/JobsetEvals.pm`
/// `json_hint`, relation `builds`): their count tells ingest how much work
/// `/eval/{id}/builds` would cost Hydra, and the ids themselves spare it
/// the request for `/eval/{id}`, which costs Hydra a comparison with the
/// previous eval even for JSON (`Controller/JobsetEval.pm` `view_GET`).
/// Discovery keeps the ids only of the evals it will ingest
/// ([`EvalHeader::forget_build_ids`]): 250,000 ids are 2 MB.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "RawEvalHeader")]
pub struct EvalHeader {
    pub id: i64,
    /// How many builds the eval has; `None` when the page did not say.
    pub nr_builds: Option<usize>,
    /// Its build ids, while kept.
    pub build_ids: Option<Vec<i64>>,
    pub timestamp: i64,
    pub checkouttime: Option<i64>,
    pub evaltime: Option<i64>,
    pub flake: Option<String>,
    pub jobsetevalinputs: BTreeMap<String, EvalInput>,
}

#[derive(Deserialize, Serialize)]
struct RawEvalHeader {
    id: i64,
    #[serde(default)]
    builds: Option<Vec<i64>>,
    timestamp: i64,
    #[serde(default)]
    checkouttime: Option<i64>,
    #[serde(default)]
    evaltime: Option<i64>,
    #[serde(default)]
    flake: Option<String>,
    #[serde(default)]
    jobsetevalinputs: BTreeMap<String, EvalInput>,
}

impl From<&EvalHeader> for RawEvalHeader {
    fn from(eval: &EvalHeader) -> RawEvalHeader {
        RawEvalHeader {
            id: eval.id,
            builds: eval.build_ids.clone(),
            timestamp: eval.timestamp,
            checkouttime: eval.checkouttime,
            evaltime: eval.evaltime,
            flake: eval.flake.clone(),
            jobsetevalinputs: eval.jobsetevalinputs.clone(),
        }
    }
}

impl From<RawEvalHeader> for EvalHeader {
    fn from(raw: RawEvalHeader) -> EvalHeader {
        EvalHeader {
            id: raw.id,
            nr_builds: raw.builds.as_ref().map(Vec::len),
            build_ids: raw.builds,
            timestamp: raw.timestamp,
            checkouttime: raw.checkouttime,
            evaltime: raw.evaltime,
            flake: raw.flake,
            jobsetevalinputs: raw.jobsetevalinputs,
        }
    }
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
    /// The eval in the shape of Hydra's JSON (to keep an eval that is being
    /// learned over several passes without asking for its page again).
    pub fn to_json(&self) -> String {
        serde_json::to_string(&RawEvalHeader::from(self)).expect("an eval header serialises")
    }

    /// Drop the build ids (the count stays): an eval that will not be
    /// ingested in this pass need not hold 2 MB.
    pub fn forget_build_ids(&mut self) {
        self.build_ids = None;
    }

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
///
/// A visitor rather than an untagged enum: an untagged enum buffers the
/// value and builds (and drops) an error for every variant it tries, once
/// per build of a 290,000-build eval.
fn flag<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    struct Flag;

    impl serde::de::Visitor<'_> for Flag {
        type Value = bool;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("0, 1, a boolean or null")
        }

        fn visit_bool<E: serde::de::Error>(self, b: bool) -> Result<bool, E> {
            Ok(b)
        }

        fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<bool, E> {
            match n {
                0 => Ok(false),
                1 => Ok(true),
                other => Err(E::custom(format!(
                    "expected 0 or 1 for a flag, got {other}"
                ))),
            }
        }

        fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<bool, E> {
            match u64::try_from(n) {
                Ok(n) => self.visit_u64(n),
                Err(_) => Err(E::custom(format!("expected 0 or 1 for a flag, got {n}"))),
            }
        }

        fn visit_unit<E: serde::de::Error>(self) -> Result<bool, E> {
            Ok(false)
        }

        fn visit_none<E: serde::de::Error>(self) -> Result<bool, E> {
            Ok(false)
        }
    }

    d.deserialize_any(Flag)
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
    fn an_evals_page_carries_each_evals_build_ids() {
        let page: EvalsPage = serde_json::from_str(&sample("evals.json")).unwrap();
        let raw: serde_json::Value = serde_json::from_str(&sample("evals.json")).unwrap();
        for (eval, raw) in page.evals.iter().zip(raw["evals"].as_array().unwrap()) {
            let ids: Vec<i64> = serde_json::from_value(raw["builds"].clone()).unwrap();
            assert_eq!(eval.nr_builds, Some(ids.len()));
            assert_eq!(eval.build_ids.as_ref(), Some(&ids));
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
        for (text, finished) in [("1", true), ("0", false), ("null", false), ("false", false)] {
            let build = bad.replace("\"finished\":7", &format!("\"finished\":{text}"));
            assert_eq!(
                serde_json::from_str::<Build>(&build).unwrap().finished,
                finished,
                "finished: {text}"
            );
        }
        for text in ["-1", "2", "\"1\"", "1.0"] {
            let build = bad.replace("\"finished\":7", &format!("\"finished\":{text}"));
            assert!(
                serde_json::from_str::<Build>(&build).is_err(),
                "accepted finished: {text}"
            );
        }
    }

    #[test]
    fn a_flake_eval_falls_back_to_the_locked_flake() {
        let json =
            r#"{"id":5,"timestamp":1,"flake":"github:NixOS/nixpkgs/abc","jobsetevalinputs":{}}"#;
        let eval: EvalHeader = serde_json::from_str(json).unwrap();
        assert_eq!(eval.revision().as_deref(), Some("github:NixOS/nixpkgs/abc"));
    }
}
