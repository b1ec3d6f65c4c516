//! A year of a trunk-like jobset written straight into a store with the
//! store's own writer (no HTTP: at trunk's size that would take hours), for
//! the cost of a plan as history grows (`benches/plan_year.rs`) and for
//! tests that compare what a plan reads with the whole history.
//!
//! Each eval, a share of the jobs (`churn`) gets a new build: a job that
//! builds breaks with `break_rate`, a failing one is fixed with `fix_rate`.
//! At each of `mass_breakages` a large share of the jobs fails at once
//! ("dependency failed", as a broken stdenv or compiler makes it) and is
//! fixed a few evals later. A few jobs leave the jobset and new ones come.

use crate::config::JobsetRef;
use crate::history::JobName;
use crate::store::{BuildRow, KnownBuild, NewEval, Store, StoreError};

use super::Rng;

const SYSTEMS: [&str; 4] = [
    "x86_64-linux",
    "aarch64-linux",
    "x86_64-darwin",
    "aarch64-darwin",
];
const NIX_BASE32: &[u8] = b"0123456789abcdfghijklmnpqrsvwxyz";

/// The shape of the simulated year.
#[derive(Debug, Clone)]
pub struct YearSpec {
    pub jobs: usize,
    /// Share of jobs with a new build in each eval.
    pub churn: f64,
    /// Chance that a new build of a job that builds fails.
    pub break_rate: f64,
    /// Chance that a new build of a failing job builds.
    pub fix_rate: f64,
    /// Evals (0-based) at which a mass breakage begins.
    pub mass_breakages: Vec<usize>,
    /// Share of jobs a mass breakage breaks.
    pub mass_share: f64,
    /// Evals a mass breakage lasts before it is fixed.
    pub mass_evals: usize,
    /// Jobs that leave the jobset each eval (as many new ones come).
    pub turnover: usize,
    /// Seconds between evals.
    pub interval: i64,
    /// Unix time of the first eval.
    pub start: i64,
    pub seed: u64,
    /// Added to every eval and build id, so that several simulated jobsets
    /// share one store.
    pub id_base: i64,
}

impl YearSpec {
    /// `nixpkgs:trunk` over a year: about 700 evals (one every 12.5
    /// hours), 1% of jobs with a new build each eval, four mass breakages.
    pub fn trunk(jobs: usize) -> YearSpec {
        YearSpec {
            jobs,
            churn: 0.01,
            // About 4% of jobs fail at any time (break / (break + fix)).
            break_rate: 0.01,
            fix_rate: 0.25,
            mass_breakages: vec![120, 330, 520, 650],
            mass_share: 0.08,
            mass_evals: 3,
            turnover: 10,
            interval: 45_000,
            start: 1_735_689_600, // 2025-01-01
            seed: 2025,
            id_base: 0,
        }
    }
}

struct Job {
    name: JobName,
    build: i64,
    status: i64,
    /// The store's id of the job, once stored.
    job_id: Option<i64>,
    /// Its build is not stored yet.
    fresh: bool,
    /// A mass breakage's victim until this eval.
    broken_until: Option<usize>,
    gone: bool,
}

/// `nixpkgs:trunk` and `nixpkgs:staging-next` (whose failures are early
/// warnings) written side by side, `evals` evals each, from `spec(1)` and
/// `spec(2)` (a seed for each). Returns the two writers, trunk's first.
pub fn write_trunk_and_staging_next(
    store: &mut Store,
    evals: usize,
    spec: impl Fn(u64) -> YearSpec,
) -> Result<(YearWriter, YearWriter), StoreError> {
    let mut trunk = YearWriter::new(spec(1));
    let mut staging_next = YearWriter::new(spec(2));
    for _ in 0..evals {
        for (year, jobset) in [(&mut trunk, "trunk"), (&mut staging_next, "staging-next")] {
            let jobset = JobsetRef {
                project: "nixpkgs".into(),
                jobset: jobset.into(),
            };
            year.write_eval(store, &jobset)?;
        }
    }
    Ok((trunk, staging_next))
}

/// Writes the simulated year eval by eval into a store.
pub struct YearWriter {
    spec: YearSpec,
    rng: Rng,
    jobs: Vec<Job>,
    next_build: i64,
    next_attr: usize,
    written: usize,
}

impl YearWriter {
    pub fn new(spec: YearSpec) -> YearWriter {
        let mut writer = YearWriter {
            rng: Rng::new(spec.seed),
            jobs: Vec::with_capacity(spec.jobs),
            next_build: spec.id_base + 1,
            next_attr: 0,
            written: 0,
            spec,
        };
        while writer.jobs.len() < writer.spec.jobs {
            writer.add_job();
        }
        writer
    }

    /// Evals written so far.
    pub fn written(&self) -> usize {
        self.written
    }

    /// The time of the newest eval written.
    pub fn newest_time(&self) -> i64 {
        self.spec.start + self.spec.interval * (self.written as i64 - 1).max(0)
    }

    fn add_job(&mut self) {
        let n = self.next_attr;
        self.next_attr += 1;
        let attr = match n % 5 {
            0 => format!("python3Packages.pkg{}", n / 4),
            1 => format!("haskellPackages.pkg{}", n / 4),
            _ => format!("pkg{}", n / 4),
        };
        // New jobs fail as often as jobs do in the long run.
        let failing = self.spec.break_rate / (self.spec.break_rate + self.spec.fix_rate).max(1e-9);
        let status = i64::from(self.rng.chance(failing));
        let build = self.take_build();
        self.jobs.push(Job {
            name: JobName {
                attr,
                system: SYSTEMS[n % SYSTEMS.len()].to_owned(),
                suffixed: true,
            },
            build,
            status,
            job_id: None,
            fresh: true,
            broken_until: None,
            gone: false,
        });
    }

    fn take_build(&mut self) -> i64 {
        let id = self.next_build;
        self.next_build += 1;
        id
    }

    /// Write the next eval of `jobset` (one transaction).
    pub fn write_eval(&mut self, store: &mut Store, jobset: &JobsetRef) -> Result<(), StoreError> {
        let e = self.written;
        self.evolve(e);
        let jobset_id = store.jobset_id(jobset)?;
        let eval = NewEval {
            id: self.spec.id_base + 100_000 + e as i64,
            timestamp: self.spec.start + self.spec.interval * e as i64,
            revision: Some(format!("{:040x}", 0xabc0_0000_u64 + e as u64)),
            checkout_time: None,
            eval_time: None,
            strategy: "eval-builds",
        };
        let name = jobset.to_string();
        let mut writer = store.begin_eval(jobset_id, &name, eval)?;
        let mut added = Vec::new();
        for (i, job) in self.jobs.iter().enumerate().filter(|(_, j)| !j.gone) {
            match job.job_id.filter(|_| !job.fresh) {
                Some(job_id) => writer.add_known(
                    job.build,
                    &KnownBuild::Stored {
                        job_id,
                        finished: true,
                        status: Some(job.status),
                        version: 1,
                    },
                )?,
                None => {
                    writer.add_build(BuildRow {
                        id: job.build,
                        hydra_job: job.name.hydra_job(),
                        job: job.name.clone(),
                        finished: true,
                        status: Some(job.status),
                        stoptime: Some(self.spec.start + self.spec.interval * e as i64),
                        drv_hash: drv_hash(job.build),
                        nixname: job.name.attr.replace('.', "-"),
                    })?;
                    added.push(i);
                }
            }
        }
        writer.commit()?;
        // A new build is "known" from the next eval on, like ingest sees it;
        // the job's id is looked up once, when the job is new.
        for i in added {
            self.jobs[i].fresh = false;
            if self.jobs[i].job_id.is_none() {
                self.jobs[i].job_id = store.job_id(jobset_id, &self.jobs[i].name)?;
            }
        }
        self.written += 1;
        Ok(())
    }

    /// Decide what changes in eval `e`: new builds, breakages, turnover.
    fn evolve(&mut self, e: usize) {
        if e == 0 {
            return;
        }
        let spec = self.spec.clone();
        let mass = spec.mass_breakages.contains(&e);
        for j in 0..self.jobs.len() {
            if self.jobs[j].gone {
                continue;
            }
            let new_status = if self.jobs[j].broken_until == Some(e) {
                self.jobs[j].broken_until = None;
                Some(0)
            } else if self.jobs[j].broken_until.is_some() {
                None
            } else if mass && self.jobs[j].status == 0 && self.rng.chance(spec.mass_share) {
                self.jobs[j].broken_until = Some(e + spec.mass_evals);
                Some(2)
            } else if self.rng.chance(spec.churn) {
                Some(if self.jobs[j].status == 0 {
                    i64::from(self.rng.chance(spec.break_rate))
                } else {
                    i64::from(!self.rng.chance(spec.fix_rate))
                })
            } else {
                None
            };
            if let Some(status) = new_status {
                let build = self.take_build();
                let job = &mut self.jobs[j];
                job.build = build;
                job.status = status;
                job.fresh = true;
            }
        }
        for _ in 0..spec.turnover {
            let j = self.rng.below(self.jobs.len() as u64) as usize;
            self.jobs[j].gone = true;
            self.add_job();
        }
    }
}

/// A valid-looking derivation hash for a build id.
fn drv_hash(build: i64) -> String {
    let mut rng = Rng::new(build as u64);
    (0..32)
        .map(|_| NIX_BASE32[rng.below(32) as usize] as char)
        .collect()
}
