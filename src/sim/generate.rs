//! Generating a nixpkgs-like history of evaluations.

use std::collections::BTreeMap;

use super::Rng;

const NIX_BASE32: &[u8] = b"0123456789abcdfghijklmnpqrsvwxyz";

/// What to generate.
#[derive(Debug, Clone)]
pub struct SimSpec {
    pub seed: u64,
    pub project: String,
    pub jobset: String,
    /// Packages besides the planted scenarios; each is built on every system
    /// it supports (a tenth are Linux-only).
    pub packages: usize,
    pub systems: Vec<String>,
    pub evals: usize,
    pub first_eval_id: i64,
    pub first_build_id: i64,
    pub start_time: i64,
    /// Seconds between evals.
    pub eval_interval: i64,
    /// Share of ordinary jobs whose derivation changes in an eval (new build, same result).
    pub rebuild_rate: f64,
    /// Share of ordinary jobs whose result flips in an eval (new build, other result).
    pub flip_rate: f64,
    /// Share of new builds in an eval that hit an infra problem (status 3, 4 or 9).
    pub noise_rate: f64,
    /// Share of the newest eval's new builds still queued.
    pub pending_share: f64,
    /// Plant the named scenarios (long failures, platform-only failures, a
    /// root with dependency victims, a flaky job, a mass breakage, ...).
    pub scenarios: bool,
    /// Add jobs whose names are not attribute paths.
    pub hostile_jobs: bool,
    /// Extra packages that fail (status 1) from an eval on, on some systems
    /// (all when empty): to drive the later stages on packages that exist
    /// in a nixpkgs tree under test.
    pub planted: Vec<PlantedFailure>,
    /// Index of an eval in which every job gets a new build (a mass rebuild,
    /// as after a stdenv change): all its build ids are new.
    pub mass_rebuild_at: Option<usize>,
}

/// A package that starts failing at an eval (and may build again later).
#[derive(Debug, Clone, Default)]
pub struct PlantedFailure {
    pub attr: String,
    /// Index of the first failing eval (0 is the oldest).
    pub since: usize,
    pub systems: Vec<String>,
    /// More systems it starts failing on later: (system, first failing eval).
    pub spreads_to: Vec<(String, usize)>,
    /// Index of the first eval in which it builds again (a fix landed);
    /// `None`: it keeps failing.
    pub until: Option<usize>,
    /// Packages that depend on it: "dependency failed" (propagated from its
    /// build) whenever it fails.
    pub victims: Vec<String>,
}

impl SimSpec {
    /// The demo's history: three weeks of trunk, three evals a day.
    pub fn demo() -> SimSpec {
        SimSpec {
            seed: 2026,
            project: "nixpkgs".into(),
            jobset: "trunk".into(),
            packages: 400,
            systems: [
                "x86_64-linux",
                "aarch64-linux",
                "x86_64-darwin",
                "aarch64-darwin",
            ]
            .map(String::from)
            .to_vec(),
            evals: 63,
            first_eval_id: 1_820_000,
            first_build_id: 310_000_000,
            start_time: 1_761_955_200, // 2025-11-01T00:00:00Z
            eval_interval: 8 * 3600,
            rebuild_rate: 0.04,
            flip_rate: 0.0,
            noise_rate: 0.01,
            pending_share: 0.3,
            scenarios: true,
            hostile_jobs: true,
            planted: Vec::new(),
            mass_rebuild_at: None,
        }
    }

    /// One eval the size of nixpkgs trunk (about 300,000 builds on 4 systems),
    /// then `evals - 1` more in which 1% of jobs change result.
    pub fn nixpkgs_sized(evals: usize) -> SimSpec {
        SimSpec {
            packages: 76_000,
            evals,
            rebuild_rate: 0.0,
            flip_rate: 0.01,
            noise_rate: 0.0,
            pending_share: 0.0,
            scenarios: false,
            hostile_jobs: false,
            ..SimSpec::demo()
        }
    }
}

/// One build as Hydra would serve it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimBuild {
    pub id: i64,
    pub job: String,
    pub system: String,
    pub nixname: String,
    pub drv_hash: String,
    pub out_hash: String,
    pub finished: bool,
    pub status: Option<i64>,
    pub timestamp: i64,
    pub stoptime: Option<i64>,
    /// Evals that contain this build, ascending.
    pub evals: Vec<i64>,
    /// The build whose failed step this build's failure was copied from
    /// (Hydra's build page: "propagated from build N").
    pub propagated_from: Option<i64>,
}

/// The status Hydra gives a build that depends on a failed step: the
/// step's own status, except that a plain failure (1) becomes "dependency
/// failed" (2). NixOS/hydra `hydra-queue-runner/src/state/mod.rs`
/// `inner_fail_job`: `if b.drv_path != step.drv_path && step_status ==
/// Failed { DepFailed } else { step_status }`, so a timeout (7) or a cached
/// failure (8) reaches the dependents unchanged.
pub fn propagated_status(step_status: i64) -> i64 {
    if step_status == 1 { 2 } else { step_status }
}

impl SimBuild {
    /// Make the build unfinished with no status (the look-alike's older,
    /// simpler restart; Hydra keeps the old status: see
    /// [`SimBuild::restart_like_hydra`]).
    pub fn restart(&mut self) {
        self.finished = false;
        self.status = None;
        self.stoptime = None;
    }

    /// Restart as Hydra does: `finished = 0` and nothing else, so the old
    /// `buildstatus` and times stay until it finishes again (NixOS/hydra
    /// `Helper/Nix.pm` `restartBuilds`: `update({ finished => 0,
    /// iscachedbuild => 0 })`).
    pub fn restart_like_hydra(&mut self) {
        self.finished = false;
    }

    /// Point the build at a new derivation with the same output, as a 2026
    /// Hydra does when an eval reuses a build by output path: same id, new
    /// `drvpath`, `finished = 0`, status null, old times (NixOS/hydra
    /// `script/hydra-eval-jobset` `applyDrvPathRepoints`).
    pub fn repoint(&mut self, drv_hash: &str) {
        self.drv_hash = drv_hash.to_owned();
        self.finished = false;
        self.status = None;
    }

    /// Fail without building: the output is in Hydra's failed-paths cache
    /// (a derivation that failed before), status 8, "cached failure". The
    /// queue runner writes it onto the build and, unchanged, onto its
    /// dependents (`inner_fail_job`: `step_status == CachedFailure`).
    pub fn fail_cached(&mut self, time: i64) {
        self.finish(8, time);
        self.propagated_from = None;
    }

    /// Fail because a step of `root` failed with `root`'s status.
    pub fn fail_from(&mut self, root: &SimBuild, time: i64) {
        self.finish(propagated_status(root.status.unwrap_or(1)), time);
        self.propagated_from = Some(root.id);
    }

    /// Finish the build with `status` at `time`.
    pub fn finish(&mut self, status: i64, time: i64) {
        self.finished = true;
        self.status = Some(status);
        self.stoptime = Some(time);
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimEval {
    pub id: i64,
    pub timestamp: i64,
    pub revision: String,
    pub builds: Vec<i64>,
}

/// A generated history.
#[derive(Debug, Clone)]
pub struct SimHydra {
    pub project: String,
    pub jobset: String,
    /// Oldest first.
    pub evals: Vec<SimEval>,
    pub builds: BTreeMap<i64, SimBuild>,
    /// Planted scenarios: attribute path → what was planted.
    pub scenarios: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
enum Plan {
    Normal,
    /// Own failure on `systems` (all when empty) from eval `since`, until `until`.
    Failing {
        since: usize,
        until: Option<usize>,
        systems: Vec<String>,
        status: i64,
        /// Systems it starts failing on later, and from which eval.
        spreads_to: Vec<(String, usize)>,
    },
    /// Fails when `root` fails, with status 2.
    Victim {
        root: String,
    },
    /// Fails in every other eval, each time with a new derivation.
    Flaky,
    /// Gone from the jobset from eval `at`.
    Removed {
        at: usize,
    },
}

struct Package {
    attr: String,
    version: String,
    plan: Plan,
    linux_only: bool,
}

impl SimHydra {
    pub fn generate(spec: &SimSpec) -> SimHydra {
        let mut rng = Rng::new(spec.seed);
        let mut packages = Vec::new();
        let mut scenarios = BTreeMap::new();
        let evals = spec.evals.max(1);
        let mass_breakage = (spec.scenarios && evals > 10).then_some(evals * 2 / 3);
        if spec.scenarios {
            let at = |share: f64| ((evals as f64) * share) as usize;
            let mut plant = |attr: &str, plan: Plan, what: String| {
                scenarios.insert(attr.to_owned(), what);
                packages.push(Package {
                    attr: attr.into(),
                    version: "1.0".into(),
                    plan,
                    linux_only: false,
                });
            };
            plant(
                "grafx",
                Plan::Failing {
                    since: 1,
                    until: None,
                    systems: Vec::new(),
                    status: 1,
                    spreads_to: Vec::new(),
                },
                "fails on every platform since the second eval".into(),
            );
            plant(
                "libfoo",
                Plan::Failing {
                    since: at(0.3),
                    until: None,
                    systems: Vec::new(),
                    status: 1,
                    spreads_to: Vec::new(),
                },
                "a root failure with dependency victims".into(),
            );
            for victim in ["foo-gui", "foo-cli", "python3Packages.foo-bindings"] {
                plant(
                    victim,
                    Plan::Victim {
                        root: "libfoo".into(),
                    },
                    "a victim of libfoo (status 2)".into(),
                );
            }
            plant(
                "iterm-tools",
                Plan::Failing {
                    since: at(0.2),
                    until: None,
                    systems: vec!["x86_64-darwin".into(), "aarch64-darwin".into()],
                    status: 1,
                    spreads_to: Vec::new(),
                },
                "fails on both darwins only".into(),
            );
            plant(
                "simdjson-fast",
                Plan::Failing {
                    since: at(0.4),
                    until: None,
                    systems: vec!["aarch64-linux".into()],
                    status: 1,
                    spreads_to: Vec::new(),
                },
                "fails on aarch64-linux only".into(),
            );
            plant(
                "chromium-huge",
                Plan::Failing {
                    since: at(0.5),
                    until: None,
                    systems: vec!["x86_64-linux".into()],
                    status: 7,
                    spreads_to: Vec::new(),
                },
                "times out on x86_64-linux".into(),
            );
            plant(
                "python3Packages.flaky-net-tests",
                Plan::Flaky,
                "alternates between failing and building".into(),
            );
            plant(
                "zlib-ng-compat",
                Plan::Failing {
                    since: at(0.1),
                    until: Some(at(0.25)),
                    systems: Vec::new(),
                    status: 1,
                    spreads_to: Vec::new(),
                },
                "failed for a while, then recovered".into(),
            );
            plant(
                "oldtool",
                Plan::Removed { at: at(0.6) },
                "disappears from the jobset".into(),
            );
        }
        for planted in &spec.planted {
            scenarios.insert(
                planted.attr.clone(),
                match planted.until {
                    Some(until) => format!(
                        "planted: fails from eval index {} until {until}",
                        planted.since
                    ),
                    None => format!("planted: fails from eval index {}", planted.since),
                },
            );
            packages.push(Package {
                attr: planted.attr.clone(),
                version: "1.0".into(),
                plan: Plan::Failing {
                    since: planted.since,
                    until: planted.until,
                    systems: planted.systems.clone(),
                    status: 1,
                    spreads_to: planted.spreads_to.clone(),
                },
                linux_only: false,
            });
            for victim in &planted.victims {
                scenarios.insert(
                    victim.clone(),
                    format!("planted: a victim of {}", planted.attr),
                );
                packages.push(Package {
                    attr: victim.clone(),
                    version: "1.0".into(),
                    plan: Plan::Victim {
                        root: planted.attr.clone(),
                    },
                    linux_only: false,
                });
            }
        }
        let mut seen = std::collections::HashSet::new();
        for p in &packages {
            seen.insert(p.attr.clone());
        }
        while packages.len() < spec.packages + scenarios.len() {
            let attr = package_name(&mut rng);
            if seen.insert(attr.clone()) {
                packages.push(Package {
                    attr,
                    version: format!("{}.{}.{}", rng.below(5), rng.below(20), rng.below(10)),
                    plan: Plan::Normal,
                    linux_only: rng.chance(0.1),
                });
            }
        }
        if spec.hostile_jobs {
            for attr in ["bad name", "@everyone", "x](http://evil.example)"] {
                packages.push(Package {
                    attr: attr.into(),
                    version: "0".into(),
                    plan: Plan::Normal,
                    linux_only: true,
                });
            }
        }

        let mut builds: BTreeMap<i64, SimBuild> = BTreeMap::new();
        let mut current: BTreeMap<(usize, usize), i64> = BTreeMap::new();
        let mut next_build = spec.first_build_id;
        let mut sim_evals = Vec::new();
        for e in 0..evals {
            let eval_id = spec.first_eval_id + (e as i64) * 7 + rng.below(5) as i64;
            let time = spec.start_time + e as i64 * spec.eval_interval;
            let newest = e + 1 == evals;
            let mass_now = mass_breakage == Some(e);
            let mass_after = mass_breakage.is_some_and(|m| e == m + 1);
            let mass_rebuild = spec.mass_rebuild_at == Some(e);
            let mut eval_builds = Vec::new();
            for (pi, package) in packages.iter().enumerate() {
                if matches!(package.plan, Plan::Removed { at } if e >= at) {
                    continue;
                }
                for (si, system) in spec.systems.iter().enumerate() {
                    if package.linux_only && !system.ends_with("-linux") {
                        continue;
                    }
                    let wanted = wanted_status(&package.plan, &packages, e, system);
                    let wanted =
                        if mass_now && matches!(package.plan, Plan::Normal) && rng.chance(0.35) {
                            2
                        } else {
                            wanted
                        };
                    let existing = current.get(&(pi, si)).and_then(|id| builds.get(id));
                    let flip =
                        e > 0 && matches!(package.plan, Plan::Normal) && rng.chance(spec.flip_rate);
                    let rebuild = match existing {
                        None => true,
                        Some(_) if mass_rebuild => true,
                        Some(b) => {
                            flip || mass_now
                                || mass_after
                                || matches!(package.plan, Plan::Flaky)
                                || rng.chance(spec.rebuild_rate)
                                || (b.status.is_some_and(|s| s != wanted)
                                    && !matches!(b.status, Some(3 | 4 | 9)))
                        }
                    };
                    let id = if rebuild {
                        let mut status = if flip {
                            if wanted == 0 { 1 } else { 0 }
                        } else {
                            wanted
                        };
                        if status == 0 && rng.chance(spec.noise_rate) {
                            status = *rng.pick(&[3, 4, 9]);
                        }
                        let queued = newest && e > 0 && rng.chance(spec.pending_share);
                        let id = next_build;
                        next_build += 1;
                        let stop = time + 600 + rng.below(20_000) as i64;
                        let propagated_from = match (&package.plan, status) {
                            (Plan::Victim { root }, s) if s != 0 => packages
                                .iter()
                                .position(|p| &p.attr == root)
                                .and_then(|ri| current.get(&(ri, si)).copied()),
                            _ => None,
                        };
                        builds.insert(
                            id,
                            SimBuild {
                                id,
                                job: format!("{}.{}", package.attr, system),
                                system: system.clone(),
                                nixname: format!(
                                    "{}-{}",
                                    package.attr.rsplit('.').next().unwrap_or(&package.attr),
                                    package.version
                                ),
                                drv_hash: hash(&mut rng),
                                out_hash: hash(&mut rng),
                                finished: !queued,
                                status: (!queued).then_some(status),
                                timestamp: time + 30,
                                stoptime: (!queued).then_some(stop),
                                evals: Vec::new(),
                                propagated_from,
                            },
                        );
                        current.insert((pi, si), id);
                        id
                    } else {
                        current[&(pi, si)]
                    };
                    builds
                        .get_mut(&id)
                        .expect("just inserted or current")
                        .evals
                        .push(eval_id);
                    eval_builds.push(id);
                }
            }
            sim_evals.push(SimEval {
                id: eval_id,
                timestamp: time,
                revision: format!(
                    "{:016x}{:016x}{:08x}",
                    rng.next_u64(),
                    rng.next_u64(),
                    rng.next_u64() as u32
                ),
                builds: eval_builds,
            });
        }
        if let Some(m) = mass_breakage {
            scenarios.insert(
                "(mass breakage)".into(),
                format!(
                    "eval {} has a third of all jobs failing; the next eval fixes it",
                    sim_evals[m].id
                ),
            );
        }
        SimHydra {
            project: spec.project.clone(),
            jobset: spec.jobset.clone(),
            evals: sim_evals,
            builds,
            scenarios,
        }
    }

    pub fn eval(&self, id: i64) -> Option<&SimEval> {
        self.evals.iter().find(|e| e.id == id)
    }

    /// The build of `job` in the newest eval.
    pub fn newest_build_of(&self, job: &str) -> Option<&SimBuild> {
        self.build_of(self.evals.len().checked_sub(1)?, job)
    }

    /// The build of `job` in the eval at `index` (0 is the oldest).
    pub fn build_of(&self, index: usize, job: &str) -> Option<&SimBuild> {
        let eval = self.evals.get(index)?;
        eval.builds
            .iter()
            .filter_map(|id| self.builds.get(id))
            .find(|b| b.job == job)
    }
}

fn wanted_status(plan: &Plan, packages: &[Package], e: usize, system: &str) -> i64 {
    match plan {
        Plan::Normal | Plan::Removed { .. } => 0,
        Plan::Failing {
            since,
            until,
            systems,
            status,
            spreads_to,
        } => {
            let active = e >= *since && until.is_none_or(|u| e < u);
            let here = systems.is_empty() || systems.iter().any(|s| s == system);
            let spread = spreads_to.iter().any(|(s, from)| s == system && e >= *from);
            if active && (here || spread) {
                *status
            } else {
                0
            }
        }
        Plan::Victim { root } => {
            let root_plan = packages.iter().find(|p| &p.attr == root).map(|p| &p.plan);
            match root_plan.map(|p| wanted_status(p, packages, e, system)) {
                Some(0) | None => 0,
                Some(status) => propagated_status(status),
            }
        }
        Plan::Flaky => (e % 2) as i64,
    }
}

fn hash(rng: &mut Rng) -> String {
    (0..32)
        .map(|_| NIX_BASE32[rng.below(32) as usize] as char)
        .collect()
}

fn package_name(rng: &mut Rng) -> String {
    const SYLLABLES: &[&str] = &[
        "ka", "lo", "mi", "nu", "pe", "ra", "si", "to", "vu", "xe", "zo", "bar", "qt", "gtk",
        "lib", "net", "py", "rs", "go", "ml", "fs", "db", "io", "x", "jet", "sky", "ion", "arc",
        "dns", "ssl",
    ];
    let n = 2 + rng.below(3) as usize;
    let mut name: String = (0..n).map(|_| *rng.pick(SYLLABLES)).collect();
    if rng.chance(0.3) {
        name.push('-');
        let suffix: &&str = rng.pick(SYLLABLES);
        name.push_str(suffix);
    }
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        name.insert(0, 'x');
    }
    match rng.below(20) {
        0..=3 => format!("python3Packages.{name}"),
        4 | 5 => format!("haskellPackages.{name}"),
        6 => format!("perlPackages.{name}"),
        _ => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_history() {
        let a = SimHydra::generate(&SimSpec::demo());
        let b = SimHydra::generate(&SimSpec::demo());
        assert_eq!(a.evals, b.evals);
        assert_eq!(a.builds, b.builds);
    }

    #[test]
    fn unchanged_jobs_reuse_their_build_across_evals() {
        let sim = SimHydra::generate(&SimSpec::demo());
        let reused = sim.builds.values().filter(|b| b.evals.len() > 10).count();
        assert!(
            reused > 100,
            "only {reused} builds were reused across more than 10 evals"
        );
    }

    #[test]
    fn a_dependency_failure_names_the_build_it_was_propagated_from() {
        let sim = SimHydra::generate(&SimSpec::demo());
        let settled = sim.evals.len() - 2;
        let victim = sim.build_of(settled, "foo-gui.x86_64-linux").unwrap();
        let root = sim.build_of(settled, "libfoo.x86_64-linux").unwrap();
        assert_eq!(victim.status, Some(2));
        assert_eq!(victim.propagated_from, Some(root.id));
        let ok = sim.build_of(0, "foo-gui.x86_64-linux").unwrap();
        assert_eq!((ok.status, ok.propagated_from), (Some(0), None));
    }

    #[test]
    fn only_a_plain_failure_becomes_a_dependency_failure_when_propagated() {
        assert_eq!(propagated_status(1), 2);
        for status in [3, 4, 6, 7, 8, 9, 10, 11] {
            assert_eq!(propagated_status(status), status);
        }
    }

    #[test]
    fn a_mass_rebuild_eval_has_only_new_build_ids() {
        let spec = SimSpec {
            mass_rebuild_at: Some(3),
            rebuild_rate: 0.0,
            ..SimSpec::demo()
        };
        let sim = SimHydra::generate(&spec);
        let before: std::collections::HashSet<i64> = sim.evals[..3]
            .iter()
            .flat_map(|e| e.builds.clone())
            .collect();
        assert!(sim.evals[3].builds.iter().all(|id| !before.contains(id)));
        let reused = sim.evals[4]
            .builds
            .iter()
            .filter(|id| sim.evals[3].builds.contains(id))
            .count();
        assert!(
            reused > sim.evals[4].builds.len() / 2,
            "after it, builds are reused again"
        );
    }

    #[test]
    fn restarts_and_repointing_change_a_build_as_hydra_does() {
        let sim = SimHydra::generate(&SimSpec::demo());
        let mut build = sim.build_of(5, "grafx.x86_64-linux").unwrap().clone();
        assert_eq!(build.status, Some(1));
        build.restart_like_hydra();
        assert_eq!((build.finished, build.status), (false, Some(1)));
        let stop = build.stoptime;
        build.repoint("0000000000000000000000000000000z");
        assert_eq!(
            (build.finished, build.status, build.stoptime),
            (false, None, stop)
        );
    }

    #[test]
    fn a_cached_failure_reaches_dependents_unchanged() {
        let sim = SimHydra::generate(&SimSpec::demo());
        let mut root = sim.build_of(5, "grafx.x86_64-linux").unwrap().clone();
        let mut victim = sim.build_of(5, "foo-gui.x86_64-linux").unwrap().clone();
        root.fail_cached(1_800_000_000);
        victim.fail_from(&root, 1_800_000_000);
        assert_eq!(root.status, Some(8));
        assert_eq!(
            (victim.status, victim.propagated_from),
            (Some(8), Some(root.id))
        );
    }

    #[test]
    fn a_planted_failure_with_an_end_builds_again_from_that_eval() {
        let spec = SimSpec {
            evals: 8,
            pending_share: 0.0,
            noise_rate: 0.0,
            packages: 3,
            scenarios: false,
            hostile_jobs: false,
            planted: vec![PlantedFailure {
                attr: "frobnicate".into(),
                since: 2,
                systems: vec!["x86_64-darwin".into()],
                until: Some(5),
                spreads_to: vec![],
                victims: vec![],
            }],
            ..SimSpec::demo()
        };
        let sim = SimHydra::generate(&spec);
        let status = |e: usize, job: &str| sim.build_of(e, job).and_then(|b| b.status);
        let darwin: Vec<Option<i64>> = (0..8)
            .map(|e| status(e, "frobnicate.x86_64-darwin"))
            .collect();
        assert_eq!(
            darwin,
            [0, 0, 1, 1, 1, 0, 0, 0].map(Some),
            "fails in evals 2..5 only"
        );
        assert_eq!(status(3, "frobnicate.x86_64-linux"), Some(0));
    }

    #[test]
    fn plants_a_platform_only_failure() {
        let sim = SimHydra::generate(&SimSpec::demo());
        // The newest eval still has queued builds; the one before is settled.
        let settled = sim.evals.len() - 2;
        let status = |job: &str| sim.build_of(settled, job).and_then(|b| b.status);
        assert_eq!(status("iterm-tools.aarch64-darwin"), Some(1));
        assert_eq!(status("iterm-tools.x86_64-darwin"), Some(1));
        assert_eq!(status("iterm-tools.x86_64-linux"), Some(0));
        assert_eq!(status("foo-gui.x86_64-linux"), Some(2));
        assert_eq!(status("libfoo.x86_64-linux"), Some(1));
    }
}
