//! The ingest benchmark: one nixpkgs-sized eval (about 290,000 builds on four
//! systems, ~200 MB of JSON) served from loopback and ingested by the real
//! release binary, then a second eval in which 1% of jobs change result,
//! compared with sqlite3's own bulk load of the same rows.
//!
//! Run with `cargo bench --bench ingest` (needs the `sqlite3` command).
//! `INGEST_BENCH_RUNS` (default 3) rounds, each into a fresh database; every
//! figure is printed per round and as the median. `INGEST_BENCH_KEEP=DIR`
//! keeps the last round's databases and CSV there (for `perf`, `EXPLAIN`).
//! `INGEST_BENCH_WRITER_ONLY=N` runs only the store's writer, N times, and
//! prints what it wrote to the database and its write-ahead log.
//! `INGEST_BENCH_BINARY=PATH` runs another build of `hydra-sentinel` (an
//! older commit's, say) against the same eval, to compare two builds under
//! the same load.
//!
//! The target (throughput within 2x of sqlite3's) is read on the ratio of
//! wall times; the ratio of CPU times is printed beside it as the cost, and
//! because the neighbours on a shared machine move it far less (the same
//! binary's wall ratio once measured 2.9x and 7.5x minutes apart). Beside them, the writer alone and the parsing
//! side alone, each on one thread of this process, and the floor of the
//! wall ratio they imply: ingest is no faster than either, nor than all its
//! CPU time spread over the cores.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use hydra_sentinel::config::JobsetRef;
use hydra_sentinel::history::JobName;
use hydra_sentinel::sim::{FakeHydra, SimHydra, SimSpec};
use hydra_sentinel::store::{BuildRow, NewEval, Store};

/// What one round measured.
struct Round {
    first: Run,
    second: Run,
    baseline: Run,
    db_after_first: u64,
    db_after_second: u64,
    /// The store's writer alone, in this process, on rows already checked.
    writer_cpu: Duration,
    /// Ingest's parsing side alone, in this process: gunzip, parse and
    /// check eval 1's body.
    parse_cpu: Duration,
}

fn main() {
    // `cargo bench` passes --bench; accept and ignore harness flags.
    let runs: usize = std::env::var("INGEST_BENCH_RUNS")
        .ok()
        .map(|v| v.parse().expect("INGEST_BENCH_RUNS is a number"))
        .unwrap_or(3)
        .max(1);
    let keep = std::env::var_os("INGEST_BENCH_KEEP").map(std::path::PathBuf::from);
    let spec = SimSpec::nixpkgs_sized(2);
    eprintln!("generating a nixpkgs-sized history ...");
    let sim = SimHydra::generate(&spec);
    let first = sim.evals[0].clone();
    let second = sim.evals[1].clone();
    let builds = first.builds.len();
    let csv_rows: Vec<String> = first
        .builds
        .iter()
        .map(|id| {
            let b = &sim.builds[id];
            let (attr, system) = b
                .job
                .rsplit_once(&format!(".{}", b.system))
                .map_or((b.job.as_str(), ""), |(a, _)| (a, b.system.as_str()));
            format!(
                "{},{},{},{},{},{},{},{}",
                b.id,
                attr,
                system,
                i64::from(b.finished),
                b.status.map(|s| s.to_string()).unwrap_or_default(),
                b.stoptime.map(|s| s.to_string()).unwrap_or_default(),
                b.drv_hash,
                b.nixname
            )
        })
        .collect();
    let rows: Vec<BuildRow> = first
        .builds
        .iter()
        .map(|id| {
            let b = &sim.builds[id];
            BuildRow {
                id: b.id,
                hydra_job: b.job.clone(),
                job: JobName::parse(&b.job, &b.system).expect("a generated job name is plausible"),
                finished: b.finished,
                status: b.status,
                stoptime: b.stoptime,
                drv_hash: b.drv_hash.clone(),
                nixname: b.nixname.clone(),
            }
        })
        .collect();
    let changed = second
        .builds
        .iter()
        .filter(|id| !first.builds.contains(id))
        .count();

    if let Some(times) = std::env::var_os("INGEST_BENCH_WRITER_ONLY") {
        writer_only(&times, first.id, &rows);
        return;
    }

    let hydra = FakeHydra::start(sim).expect("starting the fake Hydra");
    hydra.publish(1);
    let plain_bytes = body_size(&hydra, first.id);
    let gzipped = gzipped_body(&hydra, first.id);

    let mut rounds = Vec::new();
    for round in 1..=runs {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("state.sqlite");
        let config = dir.path().join("bench.toml");
        std::fs::write(
            &config,
            format!(
                // The writer's throughput on the streamed path: a local Hydra
                // answers `/eval/{id}/builds` for any size (hydra.nixos.org's
                // gateway would not; see `ingest::WHOLE_EVAL_MAX_BUILDS`).
                "[hydra]\nurl = \"{}\"\n[[jobsets]]\nproject = \"nixpkgs\"\njobset = \"trunk\"\n[database]\npath = {:?}\n[ingest]\nwhole_eval_max_builds = 1000000\n",
                hydra.url(),
                db.display().to_string()
            ),
        )
        .unwrap();
        hydra.publish(1);
        eprintln!("round {round}/{runs}: rendering eval 1's builds array ...");
        hydra.prepare(first.id, true);
        eprintln!(
            "round {round}/{runs}: ingesting eval 1 ({builds} builds, {:.0} MB of JSON) ...",
            plain_bytes as f64 / 1e6
        );
        let first_run = ingest(&config);
        let db_after_first = std::fs::metadata(&db).unwrap().len();
        if let Some(keep) = &keep {
            std::fs::create_dir_all(keep).unwrap();
            copy_database(&db, &keep.join("first.sqlite"));
        }

        hydra.publish(2);
        hydra.prepare(second.id, true);
        let second_run = ingest(&config);
        let db_after_second = std::fs::metadata(&db).unwrap().len();

        let baseline = sqlite3_import(dir.path(), &csv_rows);
        let writer_cpu = write_alone(dir.path(), first.id, &rows);
        let parse_cpu = parse_alone(&gzipped, builds);
        if let Some(keep) = &keep {
            copy_database(&db, &keep.join("second.sqlite"));
            std::fs::copy(dir.path().join("rows.csv"), keep.join("rows.csv")).unwrap();
        }
        eprintln!(
            "round {round}/{runs}: eval 1 {:.2} s ({:.2} s CPU), sqlite3 {:.2} s ({:.2} s CPU)",
            first_run.wall.as_secs_f64(),
            first_run.cpu.as_secs_f64(),
            baseline.wall.as_secs_f64(),
            baseline.cpu.as_secs_f64()
        );
        rounds.push(Round {
            first: first_run,
            second: second_run,
            baseline,
            db_after_first,
            db_after_second,
            writer_cpu,
            parse_cpu,
        });
    }
    report(&rounds, builds, plain_bytes, changed);
    if let Some(keep) = &keep {
        eprintln!(
            "kept the last round's databases and CSV in {}",
            keep.display()
        );
    }
}

/// The median of `values` (the lower middle one for an even count) and
/// every value, for a line of the report.
fn median(values: impl IntoIterator<Item = f64>) -> (f64, Vec<f64>) {
    let values: Vec<f64> = values.into_iter().collect();
    let mut sorted = values.clone();
    sorted.sort_by(f64::total_cmp);
    (sorted[(sorted.len() - 1) / 2], values)
}

/// One figure: its median, then every round's value.
fn line(out: &mut impl Write, label: &str, unit: &str, decimals: usize, values: Vec<f64>) {
    let (mid, all) = median(values);
    let all: Vec<String> = all.iter().map(|v| format!("{v:.decimals$}")).collect();
    let _ = writeln!(
        out,
        "  {label:<26}{mid:>9.decimals$} {unit:<3} ({})",
        all.join(", ")
    );
}

fn report(rounds: &[Round], builds: usize, plain_bytes: usize, changed: usize) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "ingest benchmark ({} builds, {:.1} MB JSON, gzip over loopback; median of {} rounds, each round in brackets)",
        builds,
        plain_bytes as f64 / 1e6,
        rounds.len()
    );
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let _ = writeln!(
        out,
        "  load average at the end   {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let secs = |d: Duration| d.as_secs_f64();
    line(
        &mut out,
        "first eval ingest, wall",
        "s",
        2,
        rounds.iter().map(|r| secs(r.first.wall)).collect(),
    );
    line(
        &mut out,
        "  CPU time (all threads)",
        "s",
        2,
        rounds.iter().map(|r| secs(r.first.cpu)).collect(),
    );
    line(
        &mut out,
        "  builds per second (wall)",
        "",
        0,
        rounds
            .iter()
            .map(|r| builds as f64 / secs(r.first.wall))
            .collect(),
    );
    line(
        &mut out,
        "  peak RSS",
        "MB",
        1,
        rounds
            .iter()
            .map(|r| r.first.peak_rss_kib as f64 / 1024.0)
            .collect(),
    );
    line(
        &mut out,
        "  database after eval 1",
        "MB",
        1,
        rounds
            .iter()
            .map(|r| r.db_after_first as f64 / 1e6)
            .collect(),
    );
    line(
        &mut out,
        "sqlite3 .import, wall",
        "s",
        2,
        rounds.iter().map(|r| secs(r.baseline.wall)).collect(),
    );
    line(
        &mut out,
        "  CPU time",
        "s",
        2,
        rounds.iter().map(|r| secs(r.baseline.cpu)).collect(),
    );
    line(
        &mut out,
        "ratio of CPU times",
        "x",
        2,
        rounds
            .iter()
            .map(|r| secs(r.first.cpu) / secs(r.baseline.cpu))
            .collect(),
    );
    line(
        &mut out,
        "ratio of wall times",
        "x",
        2,
        rounds
            .iter()
            .map(|r| secs(r.first.wall) / secs(r.baseline.wall))
            .collect(),
    );
    let _ = writeln!(
        out,
        "  (target: a wall ratio of at most 2; the CPU times move far less with a busy machine)"
    );
    type Part = fn(&Round) -> Duration;
    let parts: [(&str, Part); 2] = [
        ("the store's writer alone, CPU", |r| r.writer_cpu),
        ("the parsing side alone, CPU", |r| r.parse_cpu),
    ];
    for (label, cpu) in parts {
        line(
            &mut out,
            label,
            "s",
            2,
            rounds.iter().map(|r| secs(cpu(r))).collect(),
        );
        line(
            &mut out,
            "  its ratio to sqlite3's",
            "x",
            2,
            rounds
                .iter()
                .map(|r| secs(cpu(r)) / secs(r.baseline.cpu))
                .collect(),
        );
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    line(
        &mut out,
        &format!("floor of the wall ratio, {cores} cores"),
        "x",
        2,
        rounds
            .iter()
            .map(|r| {
                let spread = secs(r.first.cpu) / cores as f64;
                spread.max(secs(r.writer_cpu)).max(secs(r.parse_cpu)) / secs(r.baseline.wall)
            })
            .collect(),
    );
    let _ = writeln!(
        out,
        "  (the best this design allows: no faster than its writer alone, its parser alone,\n   or all its CPU time spread over every core; against sqlite3's wall time)"
    );
    let _ = writeln!(
        out,
        "second eval ({changed} new builds, 1% of jobs changed result)"
    );
    line(
        &mut out,
        "  ingest, wall",
        "s",
        2,
        rounds.iter().map(|r| secs(r.second.wall)).collect(),
    );
    line(
        &mut out,
        "  CPU time (all threads)",
        "s",
        2,
        rounds.iter().map(|r| secs(r.second.cpu)).collect(),
    );
    line(
        &mut out,
        "  database growth",
        "MB",
        3,
        rounds
            .iter()
            .map(|r| (r.db_after_second as f64 - r.db_after_first as f64) / 1e6)
            .collect(),
    );
    let _ = writeln!(out, "  (target for the growth: under 1 MB)");
}

/// `INGEST_BENCH_WRITER_ONLY=N`: only the store's writer, N times, each
/// into a fresh database, with what it wrote to the database and its
/// write-ahead log (pages spilled before the commit are written twice): the
/// quick loop for work on the writer.
fn writer_only(times: &std::ffi::OsStr, eval: i64, rows: &[BuildRow]) {
    let times: usize = times
        .to_str()
        .and_then(|t| t.parse().ok())
        .expect("INGEST_BENCH_WRITER_ONLY is a number");
    let mut cpu = Vec::new();
    for round in 1..=times.max(1) {
        let dir = tempfile::tempdir().unwrap();
        let written = write_alone_keeping(dir.path(), eval, rows);
        eprintln!(
            "writer alone {round}: {:.2} s CPU; database {:.1} MB, write-ahead log {:.1} MB",
            written.cpu.as_secs_f64(),
            written.database_bytes as f64 / 1e6,
            written.wal_bytes as f64 / 1e6
        );
        cpu.push(written.cpu.as_secs_f64());
    }
    let mut out = std::io::stdout().lock();
    line(&mut out, "the store's writer alone, CPU", "s", 2, cpu);
}

/// What the store's writer alone cost and wrote.
struct Written {
    cpu: Duration,
    database_bytes: u64,
    /// The log's size once the eval committed: every page frame the
    /// transaction wrote, including pages spilled and written again.
    wal_bytes: u64,
}

/// The store's writer alone (see [`write_alone_keeping`]): its CPU time.
fn write_alone(dir: &Path, eval: i64, rows: &[BuildRow]) -> Duration {
    let written = write_alone_keeping(dir, eval, rows);
    let _ = std::fs::remove_file(dir.join("writer-alone.sqlite"));
    written.cpu
}

/// Write eval 1's rows, checked already, with the store's own writer in this
/// thread into a fresh database: what ingest's writing thread does, without
/// the download and parse that overlap it. Returns this thread's CPU time
/// and the sizes of the database and its log, left in `dir`.
fn write_alone_keeping(dir: &Path, eval: i64, rows: &[BuildRow]) -> Written {
    let db = dir.join("writer-alone.sqlite");
    let mut store = Store::open(&db).expect("opening a fresh store");
    let jobset = JobsetRef {
        project: "nixpkgs".into(),
        jobset: "trunk".into(),
    };
    let jobset_id = store.jobset_id(&jobset).expect("registering the jobset");
    // The rows are cloned before the clock starts: ingest's writer gets them
    // made by the parsing thread.
    let rows = rows.to_vec();
    let start = common::thread_cpu();
    let new_eval = NewEval {
        id: eval,
        timestamp: 0,
        revision: None,
        checkout_time: None,
        eval_time: None,
        strategy: "eval-builds",
    };
    let mut writer = store
        .begin_eval(jobset_id, "nixpkgs:trunk", new_eval)
        .expect("starting the eval");
    writer.reserve(rows.len()).expect("preparing for the eval");
    for row in rows {
        writer.add_build(row).expect("writing a build");
    }
    writer.commit().expect("committing the eval");
    let cpu = common::thread_cpu() - start;
    let size = |path: &Path| std::fs::metadata(path).map_or(0, |m| m.len());
    let wal_bytes = size(&dir.join("writer-alone.sqlite-wal"));
    drop(store);
    Written {
        cpu,
        database_bytes: size(&db),
        wal_bytes,
    }
}

/// A consistent copy of a database in WAL mode (its file alone may miss
/// the newest transactions).
fn copy_database(from: &Path, to: &Path) {
    let _ = std::fs::remove_file(to);
    let status = Command::new("sqlite3")
        .arg(from)
        .arg(format!("VACUUM INTO '{}'", to.display()))
        .status()
        .expect("running sqlite3");
    assert!(status.success(), "copying {}", from.display());
}

/// Ingest's parsing thread alone (see `ingest::whole_eval`): inflate the
/// gzipped body, parse each build and check it (job name, store path) as
/// `ingest::check` does, on this thread. Returns this thread's CPU time.
fn parse_alone(gzipped: &[u8], builds: usize) -> Duration {
    let start = common::thread_cpu();
    let mut rows = 0usize;
    let parsed =
        hydra_sentinel::hydra::for_each_build(flate2::read::GzDecoder::new(gzipped), |build| {
            let job = JobName::parse(&build.job, &build.system);
            let drv = hydra_sentinel::hydra::StorePath::parse(&build.drvpath);
            if let (Ok(job), Ok(drv)) = (job, drv) {
                let row = BuildRow {
                    id: build.id,
                    job,
                    finished: build.finished,
                    status: build.buildstatus,
                    stoptime: build.stoptime,
                    drv_hash: drv.hash.to_owned(),
                    nixname: build.nixname.map(|n| n.into_owned()).unwrap_or_default(),
                    hydra_job: build.job.into_owned(),
                };
                rows += usize::from(row.id > 0);
            }
            Ok::<(), std::convert::Infallible>(())
        })
        .expect("eval 1's body parses");
    let cpu = common::thread_cpu() - start;
    assert_eq!(
        (parsed, rows),
        (builds, builds),
        "every build parsed and checked"
    );
    cpu
}

/// Eval 1's body as the fake Hydra sends it to ingest: gzipped.
fn gzipped_body(hydra: &FakeHydra, eval: i64) -> Vec<u8> {
    let url = format!("{}/eval/{eval}/builds", hydra.url());
    let output = Command::new("curl")
        .args(["-s", "-H", "Accept-Encoding: gzip", &url])
        .output()
        .expect("running curl");
    assert!(output.status.success(), "fetching {url}");
    output.stdout
}

fn body_size(hydra: &FakeHydra, eval: i64) -> usize {
    let _ = (hydra, eval);
    // The JSON size is reported by the server's prepared body; approximate it
    // by asking for it uncompressed.
    let url = format!("{}/eval/{eval}/builds", hydra.url());
    let output = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{size_download}", &url])
        .output();
    output
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// What running a child process cost.
struct Run {
    wall: Duration,
    /// User and system time of all its threads. On a shared machine the
    /// wall time depends on what else runs; this does much less.
    cpu: Duration,
    /// Peak resident memory (KiB); 0 when not measured.
    peak_rss_kib: u64,
}

/// User plus system time of this process's children that have been
/// waited for (`cutime` and `cstime` in /proc/self/stat, in clock ticks of
/// 1/100 s: Linux's USER_HZ).
fn children_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("reading /proc/self/stat");
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .expect("a command name in /proc/self/stat")
        .1
        .split_whitespace()
        .collect();
    // cutime and cstime are fields 16 and 17; the first after ')' is field 3.
    let ticks: u64 = fields[13].parse::<u64>().unwrap() + fields[14].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

/// Run `hydra-sentinel ingest`; returns its wall time, CPU time and peak RSS.
fn ingest(config: &Path) -> Run {
    let cpu_before = children_cpu();
    let start = Instant::now();
    let binary = std::env::var_os("INGEST_BENCH_BINARY")
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_hydra-sentinel").into());
    let child = Command::new(binary)
        .args([
            "--config",
            config.to_str().unwrap(),
            "ingest",
            "--max-evals",
            "1",
        ])
        .env("HYDRA_SENTINEL_LOG", "warn")
        .spawn()
        .expect("running hydra-sentinel");
    let (status, peak) = common::wait_with_peak_rss(child);
    let elapsed = start.elapsed();
    assert!(status.success(), "ingest failed: {status}");
    Run {
        wall: elapsed,
        cpu: children_cpu() - cpu_before,
        peak_rss_kib: peak,
    }
}

fn sqlite3_import(dir: &Path, rows: &[String]) -> Run {
    let csv = dir.join("rows.csv");
    std::fs::write(&csv, rows.join("\n") + "\n").unwrap();
    let db = dir.join("baseline.sqlite");
    let script = format!(
        "PRAGMA journal_mode=WAL;\nPRAGMA synchronous=NORMAL;\n\
         CREATE TABLE builds (id INTEGER PRIMARY KEY, attr TEXT NOT NULL, system TEXT NOT NULL, finished INTEGER NOT NULL,\n\
           status INTEGER, stoptime INTEGER, drv_hash TEXT NOT NULL, nixname TEXT NOT NULL);\n\
         .mode csv\n.import {} builds\n",
        csv.display()
    );
    let cpu_before = children_cpu();
    let start = Instant::now();
    let output = Command::new("sqlite3")
        .arg(&db)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .and_then(|mut child| {
            child.stdin.take().unwrap().write_all(script.as_bytes())?;
            child.wait()
        })
        .expect("running sqlite3 (apt-get install sqlite3)");
    let wall = start.elapsed();
    assert!(output.success());
    Run {
        wall,
        cpu: children_cpu() - cpu_before,
        peak_rss_kib: 0,
    }
}
