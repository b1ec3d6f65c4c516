//! Small builders for fixtures, and assertions whose messages carry enough
//! context to debug a failure seen only in CI.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use hydra_sentinel::config::Config;
use hydra_sentinel::hydra::HydraClient;
use hydra_sentinel::ingest::{IngestError, Ingestor, JobsetReport, PassOptions};
use hydra_sentinel::sim::{FakeGitHub, FakeHydra, PlantedFailure, SimHydra, SimSpec, paced_policy};
use hydra_sentinel::store::Store;

/// A small, settled history: `packages` packages on two systems, `evals`
/// evals, no planted scenarios, nothing pending.
pub fn small_spec(packages: usize, evals: usize) -> SimSpec {
    SimSpec {
        packages,
        evals,
        systems: vec!["x86_64-linux".into(), "aarch64-darwin".into()],
        rebuild_rate: 0.05,
        flip_rate: 0.0,
        noise_rate: 0.0,
        pending_share: 0.0,
        scenarios: false,
        hostile_jobs: false,
        ..SimSpec::demo()
    }
}

/// `attr` failing from eval `since` on every system, nothing else planted.
pub fn planted(attr: &str, since: usize) -> PlantedFailure {
    PlantedFailure {
        attr: attr.into(),
        since,
        ..Default::default()
    }
}

/// A fresh folder (mode 0755) whose every ancestor lets others through. The
/// system's temporary folder usually qualifies; when `TMPDIR` is private, the
/// usual world-writable places are tried before giving up with a reason.
pub fn folder_everyone_can_reach() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let candidates = [
        std::env::temp_dir(),
        PathBuf::from("/tmp"),
        PathBuf::from("/var/tmp"),
        PathBuf::from("/dev/shm"),
    ];
    let base = candidates
        .iter()
        .find(|base| traversable_by_others(base))
        .unwrap_or_else(|| {
            panic!("none of {candidates:?} can be traversed by other users (o+x on every ancestor)")
        });
    let dir = tempfile::tempdir_in(base)
        .unwrap_or_else(|e| panic!("creating a folder in {}: {e}", base.display()));
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("opening the folder to everyone");
    dir
}

/// Whether a user other than the owner (and outside its group) can reach
/// entries under `path`: every ancestor, `path` included, has o+x.
fn traversable_by_others(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let Ok(path) = path.canonicalize() else {
        return false;
    };
    path.ancestors().all(|dir| {
        std::fs::metadata(dir).is_ok_and(|m| m.is_dir() && m.permissions().mode() & 0o001 != 0)
    })
}

/// Set to `1` to let the tests that need root (mounting a tmpfs) skip,
/// visibly, where they cannot run; unset, they fail instead.
pub const SKIP_ROOT_TESTS: &str = "HYDRA_SENTINEL_SKIP_ROOT_TESTS";
/// Set to `1` to let the tests that need `systemd-analyze` skip, visibly.
pub const SKIP_SYSTEMD_TESTS: &str = "HYDRA_SENTINEL_SKIP_SYSTEMD_TESTS";

/// A test whose precondition this machine does not meet: a failure that
/// says what is missing, unless `skip_var=1` asks to skip such tests; then
/// the skip is printed (`cargo test -- --nocapture` shows it) and the test
/// returns. CI runs as root with systemd installed, so it never skips.
pub fn unmet_precondition(test: &str, skip_var: &str, missing: &str) {
    if std::env::var(skip_var).is_ok_and(|v| v == "1") {
        eprintln!("SKIPPED {test}: {missing} ({skip_var}=1)");
        return;
    }
    panic!("{test} cannot run here: {missing}. CI runs it; to skip it knowingly, set {skip_var}=1");
}

pub fn start(spec: &SimSpec) -> FakeHydra {
    FakeHydra::start(SimHydra::generate(spec)).expect("starting the fake Hydra")
}

/// A test's private folder with a config pointing at `hydra`.
pub struct Sandbox {
    /// Removed with the sandbox.
    _dir: tempfile::TempDir,
    pub config_path: PathBuf,
    pub config: Config,
}

/// Tests not about the request budget get one that never binds (one pass
/// learns everything served); a test that sets `requests_per_pass` keeps it.
fn with_unbinding_budget(extra: &str) -> String {
    const UNBINDING: &str = "requests_per_pass = 100000000\n";
    if extra.contains("requests_per_pass") {
        extra.to_owned()
    } else if extra.contains("[ingest]\n") {
        extra.replacen("[ingest]\n", &format!("[ingest]\n{UNBINDING}"), 1)
    } else {
        format!("{extra}\n[ingest]\n{UNBINDING}")
    }
}

impl Sandbox {
    pub fn new(hydra: &FakeHydra, extra: &str) -> Sandbox {
        Sandbox::new_in(
            tempfile::tempdir().expect("a temporary folder"),
            hydra,
            extra,
        )
    }

    /// A sandbox in a folder that any user can reach, for tests that run the
    /// binary under another uid: the clone (and so `target/`) may sit in a
    /// private folder such as a `mktemp -d` as root.
    pub fn reachable_by_everyone(hydra: &FakeHydra, extra: &str) -> Sandbox {
        Sandbox::new_in(folder_everyone_can_reach(), hydra, extra)
    }

    fn new_in(dir: tempfile::TempDir, hydra: &FakeHydra, extra: &str) -> Sandbox {
        let db = dir.path().join("state.sqlite");
        let extra = with_unbinding_budget(extra);
        let text = format!(
            "[hydra]\nurl = \"{}\"\nretries = 3\nretry_initial_delay_ms = 10\nretry_max_delay_ms = 50\n\n\
             [[jobsets]]\nproject = \"nixpkgs\"\njobset = \"trunk\"\n\n[database]\npath = {:?}\n{extra}",
            hydra.url(),
            db.display().to_string()
        );
        let config_path = dir.path().join("hydra-sentinel.toml");
        std::fs::write(&config_path, &text).expect("writing the config");
        let config = Config::load(&config_path)
            .unwrap_or_else(|e| panic!("test config is invalid: {e}\n{text}"));
        Sandbox {
            _dir: dir,
            config_path,
            config,
        }
    }

    pub fn db(&self) -> &Path {
        &self.config.database
    }

    /// The sandbox's own folder (it holds the config and the database).
    pub fn dir(&self) -> &Path {
        self._dir.path()
    }

    /// A copy of the binary under test inside the sandbox, in a folder of its
    /// own (mode 0755), so that a process under another uid can run it
    /// wherever the clone lives.
    pub fn private_binary(&self) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let bin = self.dir().join("bin");
        std::fs::create_dir_all(&bin).expect("creating the sandbox's bin folder");
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755))
            .expect("opening the sandbox's bin folder to everyone");
        let copy = bin.join("hydra-sentinel");
        std::fs::copy(env!("CARGO_BIN_EXE_hydra-sentinel"), &copy)
            .unwrap_or_else(|e| panic!("copying the binary to {}: {e}", copy.display()));
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755))
            .expect("making the copied binary executable by everyone");
        copy
    }

    /// One ingest pass at `now`, through the library.
    pub fn pass_at(
        &self,
        max_evals: Option<usize>,
        now: i64,
    ) -> (Vec<JobsetReport>, Option<IngestError>) {
        let store = Store::open(self.db()).expect("opening the store");
        let client = HydraClient::new(&self.config.hydra).expect("a client");
        let ingestor = Ingestor::new(&self.config, client, store);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(ingestor.pass(&self.config.jobsets, &PassOptions { max_evals, now }))
    }

    /// One pass that must succeed.
    pub fn pass(&self, max_evals: Option<usize>) -> JobsetReport {
        let (mut reports, error) = self.pass_at(max_evals, 2_000_000_000);
        if let Some(e) = error {
            panic!("ingest failed: {}", hydra_sentinel::error_chain(&e));
        }
        reports.remove(0)
    }

    pub fn sql(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.db()).expect("opening the database with plain SQLite")
    }

    pub fn count(&self, sql: &str) -> i64 {
        self.sql()
            .query_row(sql, [], |r| r.get(0))
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    pub fn store(&self) -> Store {
        Store::open_read_only(self.db()).expect("opening the store read-only")
    }
}

/// Every stored eval is whole: each of its member jobs is covered by exactly
/// one span, and no span points past the newest eval.
pub fn assert_evals_complete(conn: &rusqlite::Connection) {
    let mut stmt = conn
        .prepare(
            "SELECT e.id, e.nr_builds,
                    (SELECT count(*) FROM spans s JOIN jobs j ON j.id = s.job_id
                     WHERE j.jobset_id = e.jobset_id AND s.first_seq <= e.seq
                       AND coalesce(s.last_seq, e.seq) >= e.seq)
             FROM evals e ORDER BY e.seq",
        )
        .unwrap();
    let rows: Vec<(i64, i64, i64)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for (eval, members, covered) in &rows {
        assert_eq!(
            members, covered,
            "eval {eval} records {members} builds but spans cover {covered}; all evals: {rows:?}"
        );
    }
    let dangling: i64 = conn
        .query_row(
            "SELECT count(*) FROM spans s WHERE s.first_seq > (SELECT coalesce(max(seq), 0) FROM evals)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        dangling, 0,
        "spans start after the newest eval: a half-written eval"
    );
    let integrity: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
}

/// Everything that should come out the same however often ingest was killed.
pub fn fingerprint(sandbox: &Sandbox) -> Vec<i64> {
    [
        "SELECT count(*) FROM evals",
        "SELECT count(*) FROM jobs",
        "SELECT count(*) FROM builds",
        "SELECT count(*) FROM spans",
        "SELECT count(*) FROM spans WHERE last_seq IS NULL",
        "SELECT coalesce(sum(nr_builds), 0) FROM evals",
        "SELECT count(*) FROM builds WHERE status != 0",
    ]
    .iter()
    .map(|sql| sandbox.count(sql))
    .collect()
}

/// The small nixpkgs tree the acting tests check out.
pub(crate) const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/nixpkgs");

/// Under `root`, nixpkgs as an acting test needs it: an upstream (bare,
/// `upstream.git`) made from the fixture as `edit` leaves it, the daemon's
/// clone of it (`checkout`), and the bot's fork (bare, `fork.git`), whose
/// path is returned.
pub(crate) fn nixpkgs_with_fork(root: &Path, edit: impl FnOnce(&Path)) -> PathBuf {
    let seed = root.join("seed");
    copy_tree(Path::new(FIXTURE), &seed);
    edit(&seed);
    git(&seed, &["init", "-q"]);
    git(&seed, &["add", "-A"]);
    git(&seed, &["commit", "-q", "-m", "nixpkgs"]);
    git(root, &["clone", "-q", "--bare", "seed", "upstream.git"]);
    git(root, &["clone", "-q", "upstream.git", "checkout"]);
    git(root, &["init", "-q", "--bare", "fork.git"]);
    root.join("fork.git")
}

/// The service configuration of a test that acts on GitHub, written to
/// `root/hydra-sentinel.toml` (its path is returned), with `token` in
/// `root/token`: the look-alikes, and under `root` the database, the
/// nixpkgs checkout and the fork (see [`nixpkgs_with_fork`]). Acting is
/// enabled; `extra` follows the `[act]` section's first key, so it may add
/// keys to it before sections of its own.
pub(crate) fn acting_config(
    root: &Path,
    hydra: &FakeHydra,
    github: &FakeGitHub,
    token: &str,
    extra: &str,
) -> PathBuf {
    std::fs::write(root.join("token"), format!("{token}\n")).unwrap();
    let config = root.join("hydra-sentinel.toml");
    std::fs::write(
        &config,
        format!(
            r#"[hydra]
url = "{hydra}"
retry_initial_delay_ms = 10
[database]
path = "{root}/state.sqlite"
[nixpkgs]
checkout = "{root}/checkout"
[github]
api_url = "{github}"
repo = "NixOS/nixpkgs"
fork = "sentinel-bot/nixpkgs"
push_url = "{root}/fork.git"
token_file = "{root}/token"
[act]
enabled = true
{extra}"#,
            hydra = hydra.url(),
            github = github.url(),
            root = root.display()
        ),
    )
    .unwrap();
    config
}

/// The real binary on the configuration at `config` with `args`, its
/// logs at debug level (on stderr).
pub(crate) fn run_binary(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hydra-sentinel"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env("HYDRA_SENTINEL_LOG", "debug")
        .output()
        .unwrap()
}

/// What a run of the binary with `args` printed on stdout; it must have
/// succeeded and printed `token` nowhere.
pub(crate) fn stdout_of_success(output: &Output, args: &[&str], token: &str) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{args:?} failed:\n{stdout}\n{stderr}"
    );
    assert!(
        !stdout.contains(token) && !stderr.contains(token),
        "the token leaked"
    );
    stdout
}

/// The issues on the GitHub look-alike that are not weekly digests:
/// (number, title, state).
pub(crate) fn issues_but_digests(github: &FakeGitHub) -> Vec<(u64, String, String)> {
    github
        .items()
        .into_iter()
        .filter(|i| !i.3 && !i.1.contains("weekly digest"))
        .map(|i| (i.0, i.1, i.2))
        .collect()
}

/// What a test that ingests and plans adds to [`acting_config`]: the policy
/// it writes to `root/policy.toml`, and passes that read every eval served
/// and recheck at once.
pub(crate) fn planning_sections(root: &Path) -> String {
    format!(
        "[policy]\nfile = \"{root}/policy.toml\"\n[ingest]\nmax_evals_per_pass = 100\nrecheck_after_secs = 0\n",
        root = root.display()
    )
}

/// The production policy with a ladder measured in days, and no overrides.
pub(crate) fn quick_policy() -> String {
    paced_policy(&[
        ("notify_after", "\"1d\""),
        ("remind_before_mark", "[]"),
        ("mark_broken_after", "\"4d\""),
        ("min_notice", "\"1d\""),
        ("mark_min_derivations", "1"),
    ])
}

/// Run git in `dir` as a test author; it must succeed.
pub(crate) fn git(dir: &Path, args: &[&str]) {
    let output = Command::new("git")
        .args([
            "-c",
            "user.name=Test",
            "-c",
            "user.email=test@example.org",
            "-c",
            "init.defaultBranch=master",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("running git");
    assert!(
        output.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// What git prints in `dir`.
pub(crate) fn git_out(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Copy a folder's files and subfolders.
pub(crate) fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
