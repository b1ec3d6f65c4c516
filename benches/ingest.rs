//! The ingest benchmark: one nixpkgs-sized eval (about 290,000 builds on four
//! systems, ~100 MB of JSON) served from loopback and ingested by the real
//! release binary, then a second eval in which 1% of jobs change result,
//! compared with sqlite3's own bulk load of the same rows.
//!
//! Run with `cargo bench --bench ingest` (needs the `sqlite3` command).

mod common;

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use hydra_sentinel::sim::{FakeHydra, SimHydra, SimSpec};

fn main() {
    // `cargo bench` passes --bench; accept and ignore harness flags.
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
    let changed = second
        .builds
        .iter()
        .filter(|id| !first.builds.contains(id))
        .count();

    let hydra = FakeHydra::start(sim).expect("starting the fake Hydra");
    hydra.publish(1);
    eprintln!("rendering the eval's builds array ...");
    hydra.prepare(first.id, true);
    hydra.prepare(first.id, false);

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

    let plain_bytes = body_size(&hydra, first.id);
    eprintln!(
        "ingesting eval 1 ({builds} builds, {:.0} MB of JSON) ...",
        plain_bytes as f64 / 1e6
    );
    let first = ingest(&config);
    let db_after_first = std::fs::metadata(&db).unwrap().len();

    hydra.publish(2);
    hydra.prepare(second.id, true);
    let second = ingest(&config);
    let db_after_second = std::fs::metadata(&db).unwrap().len();

    let baseline = sqlite3_import(dir.path(), &csv_rows);
    let (first_time, second_time) = (first.wall, second.wall);

    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "ingest benchmark ({} builds, {:.1} MB JSON, gzip over loopback)",
        builds,
        plain_bytes as f64 / 1e6
    );
    let _ = writeln!(
        out,
        "  first eval ingest       {:>8.2} s",
        first_time.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "  builds per second       {:>8.0}",
        builds as f64 / first_time.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "  CPU time (all threads)  {:>8.2} s",
        first.cpu.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "  peak RSS                {:>8.1} MB",
        first.peak_rss_kib as f64 / 1024.0
    );
    let _ = writeln!(
        out,
        "  database after eval 1   {:>8.1} MB",
        db_after_first as f64 / 1e6
    );
    let _ = writeln!(
        out,
        "  sqlite3 .import         {:>8.2} s  (same rows as CSV; {:.2} s CPU)",
        baseline.wall.as_secs_f64(),
        baseline.cpu.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "  ratio to sqlite3        {:>8.2} x  (target: at most 2)",
        first_time.as_secs_f64() / baseline.wall.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "  ratio of CPU time       {:>8.2} x",
        first.cpu.as_secs_f64() / baseline.cpu.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "  second eval ({changed} new builds, 1% of jobs changed result)"
    );
    let _ = writeln!(
        out,
        "    ingest                {:>8.2} s",
        second_time.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "    database growth       {:>8.3} MB  (target: under 1)",
        (db_after_second as f64 - db_after_first as f64) / 1e6
    );
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
    let child = Command::new(env!("CARGO_BIN_EXE_hydra-sentinel"))
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
