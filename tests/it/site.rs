//! The HTML report in a real headless browser: `report --html DIR` from a
//! database the Hydra look-alike filled, loaded by Chromium from disk
//! (`--dump-dom` for the DOM as the browser built it, `--screenshot` for
//! pixels), with a hostile job name and hostile maintainer names; and the
//! site written by `once` and by the daemon when `[report] html_dir` is set.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hydra_sentinel::sim::SimSpec;
use hydra_sentinel::site::{MARKER, maintainer_href, package_href};

use crate::helpers::{Sandbox, start};

const HOSTILE_ATTR: &str = "<img src=x onerror=alert(1)>";
const HOSTILE_LOGIN: &str = "\"><script>alert(2)</script>";

fn chromium() -> PathBuf {
    for name in ["chromium", "chromium-browser"] {
        let found = std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(name))
                .find(|p| p.is_file())
        });
        if let Some(path) = found {
            return path;
        }
    }
    panic!(
        "chromium is not installed, and the HTML report is tested in a real headless browser. \
         `.ci/run` installs it; by hand: apt-get install -y --no-install-recommends chromium"
    );
}

/// Run Chromium headless on `page` with `extra` arguments, in a fresh
/// profile, killed if it takes longer than a minute. Returns its stdout
/// (collected in a file: a big DOM would fill a pipe nobody reads yet).
fn browse(page: &Path, extra: &[&str]) -> Vec<u8> {
    let profile = tempfile::tempdir().expect("a profile folder");
    let stdout_path = profile.path().join("stdout");
    let stderr_path = profile.path().join("stderr");
    let stdout = std::fs::File::create(&stdout_path).unwrap();
    let stderr = std::fs::File::create(&stderr_path).unwrap();
    let url = format!("file://{}", page.display());
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1200,900",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(&url)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .expect("starting chromium");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for chromium") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "chromium did not finish within a minute on {url} (an alert() from an injected \
                 name blocks headless Chromium: is a name printed unescaped?)\nstderr:\n{}",
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        status.success(),
        "chromium failed on {url}: {status}\nstderr:\n{}",
        std::fs::read_to_string(&stderr_path).unwrap_or_default()
    );
    std::fs::read(&stdout_path).expect("chromium's output")
}

/// The DOM as Chromium built it from `page`.
fn dom(page: &Path) -> String {
    let dom = String::from_utf8(browse(page, &["--dump-dom"])).expect("UTF-8 DOM");
    assert!(
        dom.contains("</html>"),
        "no document from {}: {dom}",
        page.display()
    );
    dom
}

fn hydra_sentinel(config: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_hydra-sentinel"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env("HYDRA_SENTINEL_LOG", "warn")
        .output()
        .expect("running hydra-sentinel");
    assert!(
        out.status.success(),
        "hydra-sentinel {args:?}: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The demo's planted scenarios among a few ordinary packages.
fn spec() -> SimSpec {
    SimSpec {
        packages: 30,
        pending_share: 0.0,
        ..SimSpec::demo()
    }
}

/// No element made from a name: no image, no script, nothing that runs.
fn assert_inert(dom: &str, page: &str) {
    for tag in ["<img", "<script", "<iframe", "onerror=\"", "<b>"] {
        assert!(!dom.contains(tag), "{page}: {tag} in the DOM:\n{dom}");
    }
}

#[test]
fn the_report_renders_in_a_headless_browser_with_hostile_names_as_text() {
    let chromium = chromium();
    let hydra = start(&spec());
    let sandbox = Sandbox::new(&hydra, "");
    sandbox.pass(Some(100));
    // Ingest refuses names that are not attribute paths; a database written
    // otherwise (an older version, a hand edit) must still render safely.
    let renamed = sandbox
        .sql()
        .execute(
            "UPDATE jobs SET attr = ?1 WHERE attr = 'chromium-huge'",
            [HOSTILE_ATTR],
        )
        .unwrap();
    assert!(renamed > 0, "the demo plants chromium-huge");
    let maintainers = sandbox.config_path.with_file_name("maintainers.json");
    std::fs::write(
        &maintainers,
        serde_json::json!({
            "grafx": ["alice", HOSTILE_LOGIN],
            "libfoo": ["alice"],
            HOSTILE_ATTR: ["bob"],
        })
        .to_string(),
    )
    .unwrap();
    let newest = hydra.hydra().evals.last().unwrap().timestamp;
    let now = hydra_sentinel::report::time(newest + 3600);
    let parent = tempfile::tempdir().unwrap();
    let site = parent.path().join("site");
    let out = hydra_sentinel(
        &sandbox.config_path,
        &[
            "report",
            "--html",
            site.to_str().unwrap(),
            "--now",
            &now,
            "--maintainers",
            maintainers.to_str().unwrap(),
        ],
    );
    assert!(out.contains("5 failing packages"), "{out}");
    let beside: Vec<_> = std::fs::read_dir(parent.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(beside, vec!["site"], "nothing but the site next to it");
    assert!(site.join(MARKER).is_file());

    // The index, as the browser built it: one row per failing package, in
    // each of the three sort orders.
    for name in ["index.html", "by-platforms.html", "by-blast-radius.html"] {
        let dom = dom(&site.join(name));
        assert_eq!(
            dom.matches("class=\"package-row\"").count(),
            5,
            "{name}:\n{dom}"
        );
        for attr in ["grafx", "libfoo", "iterm-tools", "simdjson-fast"] {
            assert!(
                dom.contains(&format!(">{attr}</a>")),
                "{name}: no {attr}:\n{dom}"
            );
        }
        assert!(
            dom.contains("&lt;img src=x onerror=alert(1)&gt;"),
            "{name}: the hostile name is not shown as text:\n{dom}"
        );
        assert_inert(&dom, name);
    }
    let by_blast = dom(&site.join("by-blast-radius.html"));
    let first_row = &by_blast[by_blast.find("class=\"package-row\"").unwrap()..];
    assert!(
        first_row[..first_row.find("</tr>").unwrap()].contains(">libfoo<"),
        "libfoo, the root with victims, comes first by blast radius:\n{by_blast}"
    );

    // The hostile package's own page: its name as text, its file inside.
    let hostile = site.join(package_href(HOSTILE_ATTR));
    assert!(
        hostile.starts_with(site.join("packages")),
        "{}",
        hostile.display()
    );
    let dom_hostile = dom(&hostile);
    assert!(
        dom_hostile.contains("<h1 class=\"attr\">&lt;img src=x onerror=alert(1)&gt;</h1>"),
        "{dom_hostile}"
    );
    assert_inert(&dom_hostile, "the hostile package page");

    // A package page: one cell per eval per platform, each linked to Hydra
    // with a tooltip, and the plan's next step.
    let grafx = dom(&site.join(package_href("grafx")));
    let evals = hydra
        .hydra()
        .evals
        .len()
        .min(hydra_sentinel::site::MAX_CELLS);
    assert_eq!(
        grafx.matches("<li class=\"cell ").count(),
        4 * evals,
        "{grafx}"
    );
    assert!(
        grafx.contains("<li class=\"cell failing\"><a href=\"http://"),
        "{grafx}"
    );
    assert!(grafx.contains("title=\"eval "), "{grafx}");
    assert!(grafx.contains("notify (notice) on <time>"), "{grafx}");
    assert_inert(&grafx, "grafx");

    // Roots and their victims.
    let roots = dom(&site.join("roots.html"));
    assert!(roots.contains(">libfoo</a>"), "{roots}");
    for victim in ["foo-cli", "foo-gui", "python3Packages.foo-bindings"] {
        assert!(
            roots.contains(&format!("<li>{victim}</li>")),
            "{victim}: {roots}"
        );
    }

    // Maintainer pages, the hostile login's included.
    let alice = dom(&site.join(maintainer_href("alice")));
    assert_eq!(alice.matches("class=\"package-row\"").count(), 2, "{alice}");
    assert!(alice.contains("/log\">"), "links to Hydra logs: {alice}");
    let login = site.join(maintainer_href(HOSTILE_LOGIN));
    assert!(login.starts_with(site.join("maintainers")));
    let dom_login = dom(&login);
    assert!(
        dom_login.contains("&lt;script&gt;alert(2)&lt;/script&gt;"),
        "{dom_login}"
    );
    assert_inert(&dom_login, "the hostile maintainer page");

    // Pixels: a real PNG of a real page.
    let shot = parent.path().join("index.png");
    let arg = format!("--screenshot={}", shot.display());
    browse(&site.join("index.html"), &[&arg]);
    let png = std::fs::read(&shot)
        .unwrap_or_else(|e| panic!("{} wrote no screenshot: {e}", chromium.display()));
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert!(png.len() > 10_000, "a blank page? {} bytes", png.len());
}

#[test]
fn once_writes_the_configured_site_and_rewrites_it_whole() {
    let hydra = start(&spec());
    let parent = tempfile::tempdir().unwrap();
    let site = parent.path().join("www").join("sentinel");
    let sandbox = Sandbox::new(
        &hydra,
        &format!(
            "\n[ingest]\nmax_evals_per_pass = 100\n\n[report]\nhtml_dir = {:?}\n",
            site.display().to_string()
        ),
    );
    let out = hydra_sentinel(&sandbox.config_path, &["once"]);
    assert!(out.contains("report: wrote"), "{out}");
    let index = std::fs::read_to_string(site.join("index.html")).unwrap();
    assert!(index.contains(">grafx</a>"), "{index}");
    let stale = site.join("packages").join("stale-0000000000.html");
    std::fs::write(&stale, "old").unwrap();
    hydra_sentinel(&sandbox.config_path, &["once"]);
    assert!(!stale.exists(), "the second cycle replaced the site whole");
    assert!(site.join("index.html").is_file());
}

#[test]
fn a_site_that_cannot_be_written_does_not_fail_the_cycle() {
    let hydra = start(&spec());
    let parent = tempfile::tempdir().unwrap();
    // Someone's own folder: never replaced.
    let theirs = parent.path().join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    std::fs::write(theirs.join("notes.txt"), "mine").unwrap();
    let sandbox = Sandbox::new(
        &hydra,
        &format!(
            "\n[ingest]\nmax_evals_per_pass = 100\n\n[report]\nhtml_dir = {:?}\n",
            theirs.display().to_string()
        ),
    );
    let out = Command::new(env!("CARGO_BIN_EXE_hydra-sentinel"))
        .arg("--config")
        .arg(&sandbox.config_path)
        .arg("once")
        .env("HYDRA_SENTINEL_LOG", "warn")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("could not write the HTML report"),
        "{stderr}"
    );
    assert!(
        sandbox.count("SELECT count(*) FROM evals") > 0,
        "ingest kept"
    );
    assert_eq!(
        std::fs::read_to_string(theirs.join("notes.txt")).unwrap(),
        "mine"
    );
}
