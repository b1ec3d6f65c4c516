//! The cost of a plan as history grows: a simulated year of
//! `nixpkgs:trunk` (300,000 jobs on four systems, about 700 evals, 1% of
//! jobs with a new build each eval, four mass breakages) written straight
//! into a store with the store's own writer, and at 100, 300 and 700 evals:
//!
//! - the plan step (`Store::plan_facts` + the engine) in this process, best
//!   of three after a first plan that keeps what it read of long failures
//!   (the daemon's connection does so every cycle), next to the same plan
//!   on the whole history
//!   (`Store::policy_facts`, what `backtest` reads);
//! - the report step (`site::load`, which reads as a plan does with the
//!   runs the history strips show, then the site modelled, rendered and
//!   written; wall time, CPU time and its parts), next to the same site from
//!   the whole history (what it read before), the two sites checked to be
//!   byte for byte the same;
//! - what publishing the report again writes (the daemon's `site::load` +
//!   `site::publish` into the site just written): (a) a cycle later with
//!   nothing new stored, (b) after one more eval; CPU time, and the files
//!   and bytes written (files of the site that are new inodes: a page kept
//!   as it was is not written);
//! - the real release binary's `plan` (wall time and peak RSS, VmHWM);
//! - the database's size.
//!
//! Run with `cargo bench --bench plan_year`. Targets: the plan step under
//! 1 s and flat in the number of stored evals, peak RSS under 150 MB.
//! `PLAN_YEAR_JOBS` sets the number of jobs (default 300000);
//! `PLAN_YEAR_DB=PATH` keeps the database there, to look into afterwards
//! (`sqlite3 PATH`, `EXPLAIN QUERY PLAN`); `PLAN_YEAR_EVALS=N` stops after
//! the checkpoints up to `N`.
//!
//! Next to wall times it reports the step's CPU time (this thread's, from
//! `/proc/thread-self/schedstat`): on a machine shared with other builds the
//! wall time says as much about the neighbours as about the step.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hydra_sentinel::config::{Config, JobsetRef};
use hydra_sentinel::policy::{self, Policy};
use hydra_sentinel::sim::{YearSpec, YearWriter};
use hydra_sentinel::site::{self, SiteFile, Snapshot};
use hydra_sentinel::store::{PlanScope, Store};

const CHECKPOINTS: [usize; 3] = [100, 300, 700];

fn main() {
    // `cargo bench` passes --bench; accept and ignore harness flags.
    let jobs: usize = std::env::var("PLAN_YEAR_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300_000);
    let last_checkpoint: usize = std::env::var("PLAN_YEAR_EVALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(usize::MAX);
    let dir = tempfile::tempdir().unwrap();
    let db = match std::env::var_os("PLAN_YEAR_DB") {
        Some(path) => {
            let path = std::path::PathBuf::from(path);
            for suffix in ["", "-wal", "-shm"] {
                let mut file = path.clone().into_os_string();
                file.push(suffix);
                let _ = std::fs::remove_file(file);
            }
            path
        }
        None => dir.path().join("state.sqlite"),
    };
    let config = dir.path().join("bench.toml");
    std::fs::write(
        &config,
        format!(
            "[hydra]\nurl = \"https://hydra.nixos.org\"\n[[jobsets]]\nproject = \"nixpkgs\"\njobset = \"trunk\"\n[database]\npath = {:?}\n",
            db.display().to_string()
        ),
    )
    .unwrap();
    let trunk = JobsetRef {
        project: "nixpkgs".into(),
        jobset: "trunk".into(),
    };
    let policy = Policy::nixpkgs();
    let hydra = "https://hydra.nixos.org".parse().unwrap();
    let mut store = Store::open(&db).unwrap();
    let mut year = YearWriter::new(YearSpec::trunk(jobs));

    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "plan benchmark: a simulated year of nixpkgs:trunk, {jobs} jobs, 1% churn, 4 mass breakages"
    );
    let _ = writeln!(
        out,
        "  evals  write (s)  first plan (s)  plan step (s)  its CPU (s)  of it reading (s)  jobs listed  step peak (MB)  whole-history plan (s)  report step (s)  its CPU (s)  reading (s)  model (s)  render (s)  pages  site (MB)  whole-history report (s)  (a) same: CPU (s)  files  MB  (b) one eval: CPU (s)  files  MB  binary plan (s)  binary peak RSS (MB)  database (MB)"
    );
    for checkpoint in CHECKPOINTS.into_iter().filter(|c| *c <= last_checkpoint) {
        let start = Instant::now();
        while year.written() < checkpoint {
            year.write_eval(&mut store, &trunk).unwrap();
        }
        let write = start.elapsed();
        let now = year.newest_time() + 3600;

        // The daemon plans on its own writable connection, which keeps what
        // a plan reads of long failures for the next plan (`history_memo`).
        // The first plan after the evals written here keeps it (in service
        // each cycle keeps the few jobs that changed since the last one).
        let reader = Store::open(&db).unwrap();
        let ledger = reader.ledger().unwrap();
        let first = {
            let start = Instant::now();
            let facts = reader
                .plan_facts(&hydra, "NixOS/nixpkgs", PlanScope::new(now, &policy.streak))
                .unwrap();
            std::hint::black_box(policy::plan(&policy, &facts, &ledger, now));
            start.elapsed()
        };
        // The step's own peak: the high-water mark is reset to what this
        // process holds now (the writer's maps, the generator), so what it
        // reaches during the step is the step's.
        let baseline = status_kb("VmRSS:");
        let _ = std::fs::write("/proc/self/clear_refs", "5");
        let (step, cpu, read, listed) = (0..3)
            .map(|_| {
                let start = Instant::now();
                let cpu_start = common::thread_cpu();
                let facts = reader
                    .plan_facts(&hydra, "NixOS/nixpkgs", PlanScope::new(now, &policy.streak))
                    .unwrap();
                let read = start.elapsed();
                let listed: usize = facts.jobsets.iter().map(|js| js.jobs.len()).sum();
                let plan = policy::plan(&policy, &facts, &ledger, now);
                std::hint::black_box(plan);
                (
                    start.elapsed(),
                    common::thread_cpu() - cpu_start,
                    read,
                    listed,
                )
            })
            .min()
            .unwrap();
        let step_peak = status_kb("VmHWM:").saturating_sub(baseline);
        let whole = {
            let start = Instant::now();
            let facts = reader.policy_facts(&hydra, "NixOS/nixpkgs").unwrap();
            let plan = policy::plan(&policy, &facts, &ledger, now);
            std::hint::black_box(plan);
            start.elapsed()
        };
        let report = report_step(
            &reader,
            &Config::load(&config).unwrap(),
            &policy,
            dir.path(),
            now,
        );
        let loaded = Config::load(&config).unwrap();
        let site = dir.path().join("site");
        // (a) The next cycle, nothing new stored.
        let same = republish(&reader, &loaded, &policy, &site, now + 900);
        drop(reader);
        // Before (b) adds an eval: a plan as of a `now` before the newest
        // eval is a replay, which reads the whole history.
        let (binary, peak_kb) = plan_binary(&config, now);
        let size = file_size(&db) + file_size(&db.with_extension("sqlite-wal"));
        // (b) The cycle after one new eval.
        year.write_eval(&mut store, &trunk).unwrap();
        let reader = Store::open(&db).unwrap();
        let one_eval = republish(&reader, &loaded, &policy, &site, year.newest_time() + 3600);
        drop(reader);
        let _ = writeln!(
            out,
            "  {checkpoint:>5}  {:>9.1}  {:>14.3}  {:>13.3}  {:>11.3}  {:>17.3}  {listed:>11}  {:>14.1}  {:>22.3}  {:>15.3}  {:>11.3}  {:>11.3}  {:>9.3}  {:>10.3}  {:>5}  {:>9.1}  {:>24.3}  {:>17.3}  {:>5}  {:>6.1}  {:>21.3}  {:>5}  {:>6.1}  {:>15.3}  {:>20.1}  {:>13.1}",
            write.as_secs_f64(),
            first.as_secs_f64(),
            step.as_secs_f64(),
            cpu.as_secs_f64(),
            read.as_secs_f64(),
            step_peak as f64 / 1024.0,
            whole.as_secs_f64(),
            report.step.as_secs_f64(),
            report.cpu.as_secs_f64(),
            report.read.as_secs_f64(),
            report.model.as_secs_f64(),
            report.render.as_secs_f64(),
            report.pages,
            report.bytes as f64 / 1e6,
            report.whole.as_secs_f64(),
            same.cpu.as_secs_f64(),
            same.files,
            same.bytes as f64 / 1e6,
            one_eval.cpu.as_secs_f64(),
            one_eval.files,
            one_eval.bytes as f64 / 1e6,
            binary.as_secs_f64(),
            peak_kb as f64 / 1024.0,
            size as f64 / 1e6,
        );
        let _ = out.flush();
    }
}

/// What the report step cost.
struct Report {
    /// `site::load`, then the site modelled, rendered and written.
    step: Duration,
    cpu: Duration,
    read: Duration,
    model: Duration,
    render: Duration,
    /// The same site from the whole history (what the step read before).
    whole: Duration,
    pages: usize,
    bytes: usize,
}

/// The report a cycle writes (`site::load`, then the site modelled,
/// rendered and written into `dir`) by part, and the same site from the
/// whole history: the two must be the same, byte for byte.
fn report_step(store: &Store, config: &Config, policy: &Policy, dir: &Path, now: i64) -> Report {
    let start = Instant::now();
    let cpu_start = common::thread_cpu();
    let snapshot = site::load(store, config, policy.clone(), None, now).unwrap();
    let read = start.elapsed();
    let model = site::model(&snapshot);
    let modelled = start.elapsed();
    let scoped = site::render_model(&model).unwrap();
    let rendered = start.elapsed();
    site::write_site(&dir.join("site"), &scoped).unwrap();
    let (step, cpu) = (start.elapsed(), common::thread_cpu() - cpu_start);
    drop((snapshot, model));

    let start = Instant::now();
    let snapshot = Snapshot {
        policy: policy.clone(),
        facts: store
            .policy_facts(&config.hydra.url, config.repository())
            .unwrap(),
        ledger: store.ledger().unwrap(),
        now,
    };
    let whole = site::render_model(&site::model(&snapshot)).unwrap();
    site::write_site(&dir.join("site-whole"), &whole).unwrap();
    let whole_step = start.elapsed();
    assert_eq!(
        scoped.len(),
        whole.len(),
        "the two sites have as many pages"
    );
    for (s, w) in scoped.iter().zip(&whole) {
        assert!(
            s.path == w.path && s.bytes == w.bytes,
            "the report read as a plan reads differs from the whole history's at {}",
            w.path
        );
    }
    Report {
        step,
        cpu,
        read,
        model: modelled - read,
        render: rendered - modelled,
        whole: whole_step,
        pages: scoped.len(),
        bytes: scoped.iter().map(|f: &SiteFile| f.bytes.len()).sum(),
    }
}

/// What publishing the site again wrote.
struct Republished {
    cpu: Duration,
    /// Files of the new site that are new inodes, and their bytes.
    files: usize,
    bytes: u64,
}

/// The daemon's report step (`site::load`, `site::publish`) into `site`,
/// which holds an earlier site. A file counts as written when its inode is
/// not one the site held before (a page kept as it was keeps its inode).
fn republish(
    store: &Store,
    config: &Config,
    policy: &Policy,
    site: &Path,
    now: i64,
) -> Republished {
    let before: std::collections::HashSet<u64> =
        site_files(site).into_iter().map(|f| f.0).collect();
    let cpu_start = common::thread_cpu();
    let snapshot = site::load(store, config, policy.clone(), None, now).unwrap();
    site::publish(site, &snapshot).unwrap();
    let cpu = common::thread_cpu() - cpu_start;
    let written: Vec<(u64, u64)> = site_files(site)
        .into_iter()
        .filter(|(inode, _)| !before.contains(inode))
        .collect();
    Republished {
        cpu,
        files: written.len(),
        bytes: written.iter().map(|(_, len)| len).sum(),
    }
}

/// The inode and size of every file of a site (its top and its folders).
fn site_files(site: &Path) -> Vec<(u64, u64)> {
    use std::os::unix::fs::MetadataExt as _;
    let mut files = Vec::new();
    for folder in [
        site.to_owned(),
        site.join("packages"),
        site.join("maintainers"),
    ] {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let meta = entry.unwrap().metadata().unwrap();
            if meta.is_file() {
                files.push((meta.ino(), meta.len()));
            }
        }
    }
    files
}

/// A `kB` figure of this process's `/proc/self/status`.
fn status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix(field).map(str::to_owned))
        })
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// Run `hydra-sentinel plan` as of `now`; its wall time and peak RSS (KiB).
fn plan_binary(config: &Path, now: i64) -> (Duration, u64) {
    let now = chrono::DateTime::from_timestamp(now, 0)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let start = Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_hydra-sentinel"))
        .args(["--config", config.to_str().unwrap(), "plan", "--now", &now])
        .env("HYDRA_SENTINEL_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("running hydra-sentinel");
    let (status, peak) = common::wait_with_peak_rss(child);
    let elapsed = start.elapsed();
    assert!(status.success(), "plan failed: {status}");
    (elapsed, peak)
}
