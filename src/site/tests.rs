//! The site from hand-made facts: one package page as a snapshot, and
//! hostile names escaped everywhere.

use std::collections::BTreeMap;

use url::Url;

use super::*;
use crate::history::EvalPoint;
use crate::policy::{JobFacts, Run};

const DAY: i64 = 86_400;
const START: i64 = 1_762_000_000;

fn run(first: u32, last: u32, build: i64, status: i64, drv: u64) -> Run {
    Run {
        first,
        last,
        build,
        finished: true,
        status: Some(status),
        drv,
        cause: crate::history::Cause::Own,
    }
}

fn job(attr: &str, system: &str, runs: Vec<Run>) -> JobFacts {
    JobFacts {
        attr: attr.into(),
        system: system.into(),
        suffixed: true,
        runs,
    }
}

const HOSTILE: &str = "<img src=x onerror=alert(1)>";

/// Eight daily evals: `libfoo` fails on both systems from eval 2 (two
/// derivations), `app` has failed with "dependency failed" since then, a
/// package with a hostile name fails on one system, and `fine` builds.
fn snapshot() -> Snapshot {
    let evals: Vec<EvalPoint> = (0..8)
        .map(|i| EvalPoint {
            id: 1000 + i,
            seq: i + 1,
            timestamp: START + i * DAY,
            revision: Some(format!("{:040x}", 0xabc0 + i)),
        })
        .collect();
    let jobs = vec![
        job(
            "app",
            "x86_64-linux",
            vec![run(0, 1, 10, 0, 1), run(2, 7, 20, 2, 2)],
        ),
        job("fine", "x86_64-linux", vec![run(0, 7, 11, 0, 3)]),
        job(
            "libfoo",
            "aarch64-linux",
            vec![
                run(0, 1, 12, 0, 4),
                run(2, 4, 21, 1, 5),
                run(5, 7, 31, 1, 6),
            ],
        ),
        job(
            "libfoo",
            "x86_64-linux",
            vec![
                run(0, 1, 13, 0, 7),
                run(2, 5, 22, 1, 8),
                run(6, 7, 32, 1, 9),
            ],
        ),
        job(
            HOSTILE,
            "x86_64-linux",
            vec![run(0, 2, 14, 0, 10), run(3, 7, 23, 1, 11)],
        ),
    ];
    let mut maintainers = BTreeMap::new();
    maintainers.insert(
        "libfoo".to_owned(),
        vec!["alice".to_owned(), "\"><b>bob".to_owned()],
    );
    maintainers.insert(HOSTILE.to_owned(), vec!["alice".to_owned()]);
    Snapshot {
        policy: Policy::nixpkgs(),
        facts: Facts {
            hydra_url: Url::parse("https://hydra.example.org").unwrap(),
            maintainers,
            ..Facts::trunk(evals, jobs)
        },
        ledger: Ledger::default(),
        now: START + 7 * DAY + 3600,
    }
}

fn page<'a>(files: &'a [SiteFile], path: &str) -> &'a str {
    let file = files.iter().find(|f| f.path == path).unwrap_or_else(|| {
        panic!(
            "no {path} among {:?}",
            files.iter().map(|f| &f.path).collect::<Vec<_>>()
        )
    });
    std::str::from_utf8(&file.bytes).unwrap()
}

#[test]
fn a_package_page_shows_history_next_step_and_victims() {
    let files = render_model(&model(&snapshot())).unwrap();
    let html = page(&files, &package_href("libfoo"));
    insta::assert_snapshot!("package_page_libfoo", html);
}

#[test]
fn every_page_says_how_fresh_each_jobset_is() {
    let mut snapshot = snapshot();
    let trunk = snapshot.facts.jobsets[0].clone();
    // staging-next's newest eval is five days older than trunk's: Hydra
    // stopped evaluating it, which a stamp naming only the newest of all
    // would hide.
    let staging = crate::policy::JobsetFacts {
        jobset: crate::config::JobsetRef {
            project: "nixpkgs".into(),
            jobset: "staging-next".into(),
        },
        evals: trunk.evals[..3]
            .iter()
            .map(|e| EvalPoint {
                id: e.id + 1000,
                ..e.clone()
            })
            .collect(),
        jobs: vec![job("fine", "x86_64-linux", vec![run(0, 2, 40, 0, 12)])],
        ..trunk
    };
    snapshot.facts.jobsets.push(staging);
    let files = render_model(&model(&snapshot)).unwrap();
    for file in files.iter().filter(|f| f.path.ends_with(".html")) {
        let html = std::str::from_utf8(&file.bytes).unwrap();
        assert!(
            html.contains(
                "up to eval 1007 of nixpkgs:trunk (2025-11-08T12:26:40Z); \
                 eval 2002 of nixpkgs:staging-next (2025-11-03T12:26:40Z) ·"
            ),
            "{}: each jobset's newest eval is named: {html}",
            file.path
        );
    }
}

#[test]
fn the_index_comes_in_three_sort_orders_and_links_them() {
    let files = render_model(&model(&snapshot())).unwrap();
    for name in ["index.html", "by-platforms.html", "by-blast-radius.html"] {
        let html = page(&files, name);
        assert_eq!(html.matches("class=\"package-row\"").count(), 2, "{html}");
        for other in ["index.html", "by-platforms.html", "by-blast-radius.html"] {
            assert!(
                html.contains(&format!("href=\"{other}\"")),
                "{name}: {html}"
            );
        }
    }
    let by_age = page(&files, "index.html");
    assert!(by_age.find(">libfoo<").unwrap() < by_age.find("&lt;img").unwrap());
    let by_platforms = page(&files, "by-platforms.html");
    assert!(by_platforms.find(">libfoo<").unwrap() < by_platforms.find("&lt;img").unwrap());
    let roots = page(&files, "roots.html");
    assert!(roots.contains(">libfoo</a>"), "{roots}");
    assert!(
        roots.contains("<li>app</li>"),
        "a victim is listed, without a page of its own: {roots}"
    );
    assert!(files.iter().all(|f| f.path != package_href("app")));
}

#[test]
fn hostile_names_are_escaped_on_every_page_and_never_choose_a_path() {
    let files = render_model(&model(&snapshot())).unwrap();
    for f in &files {
        let text = std::str::from_utf8(&f.bytes).unwrap();
        assert!(!text.contains("<img"), "{}: {text}", f.path);
        assert!(!text.contains("<b>"), "{}: {text}", f.path);
        assert!(!text.contains("<script"), "{}", f.path);
        assert!(
            f.path
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-./".contains(c)),
            "{}",
            f.path
        );
    }
    let hostile = page(&files, &package_href(HOSTILE));
    assert!(
        hostile.contains("&lt;img src=x onerror=alert(1)&gt;"),
        "{hostile}"
    );
    let bob = page(&files, &maintainer_href("\"><b>bob"));
    assert!(bob.contains("&quot;&gt;&lt;b&gt;bob"), "{bob}");
    assert!(
        !bob.contains("github.com/"),
        "no profile link for an implausible login: {bob}"
    );
}

mod republished {
    //! The site published again, as each cycle does, into real files: only
    //! the pages whose bytes changed are written.

    use std::collections::BTreeMap;
    use std::os::unix::fs::MetadataExt as _;
    use std::path::Path;

    use super::*;

    /// Every page of the site at `dir` by path, with its inode.
    fn inodes(dir: &Path) -> BTreeMap<String, u64> {
        let mut pages = BTreeMap::new();
        for folder in ["", "packages", "maintainers"] {
            for entry in std::fs::read_dir(dir.join(folder)).unwrap() {
                let entry = entry.unwrap();
                let meta = entry.metadata().unwrap();
                if meta.is_file() && entry.file_name() != MARKER {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    let path = Path::new(folder).join(name);
                    pages.insert(path.to_string_lossy().into_owned(), meta.ino());
                }
            }
        }
        pages
    }

    /// The pages of `after` that are not byte for byte those of `before`.
    fn changed(before: &Snapshot, after: &Snapshot) -> Vec<String> {
        let old = render_model(&model(before)).unwrap();
        let new = render_model(&model(after)).unwrap();
        new.iter()
            .filter(|n| !old.iter().any(|o| o.path == n.path && o.bytes == n.bytes))
            .map(|n| n.path.clone())
            .collect()
    }

    #[test]
    fn a_cycle_later_with_nothing_new_stored_writes_no_page() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("site");
        let first = publish(&dir, &snapshot()).unwrap();
        assert_eq!(first.write.written, first.files);
        let before = inodes(&dir);
        let later = Snapshot {
            now: snapshot().now + 900,
            ..snapshot()
        };
        let again = publish(&dir, &later).unwrap();
        assert_eq!(
            (again.write.written, again.write.bytes, again.write.replaced),
            (0, 0, false),
            "{again:?}"
        );
        assert_eq!(inodes(&dir), before);
        let index = std::fs::read_to_string(dir.join("index.html")).unwrap();
        assert!(
            index.contains("up to eval 1007 of nixpkgs:trunk (2025-11-08T12:26:40Z)"),
            "the pages say what their results are from: {index}"
        );
    }

    #[test]
    fn an_hour_later_past_the_hour_a_failure_began_writes_no_page() {
        // libfoo began failing at 12:26:40 on day 2; from 12:00 to 13:00 on
        // day 8 no eval comes, and the day counts turn over only at midnight.
        let at = |hour: i64| Snapshot {
            now: START.div_euclid(DAY) * DAY + 8 * DAY + hour * 3600,
            ..snapshot()
        };
        let files = render_model(&model(&at(12))).unwrap();
        let libfoo = page(&files, &package_href("libfoo"));
        assert!(
            libfoo.contains("for 6 days"),
            "libfoo's planned step counts calendar days: {libfoo}"
        );
        assert_eq!(changed(&at(12), &at(13)), Vec::<String>::new());
    }

    #[test]
    fn a_day_later_every_page_says_the_day_its_steps_were_planned() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("site");
        publish(&dir, &snapshot()).unwrap();
        let before = inodes(&dir);
        let next_day = Snapshot {
            now: snapshot().now + DAY,
            ..snapshot()
        };
        let written = publish(&dir, &next_day).unwrap();
        let after = inodes(&dir);
        assert_eq!(
            after.keys().collect::<Vec<_>>(),
            before.keys().collect::<Vec<_>>()
        );
        for (path, inode) in &after {
            let text = std::fs::read_to_string(dir.join(path)).unwrap();
            if path == "style.css" {
                assert_eq!(*inode, before[path], "the stylesheet is kept");
            } else {
                assert_ne!(*inode, before[path], "{path} is rewritten");
                assert!(
                    text.contains("next steps as planned on <time>2025-11-09</time>")
                        && text.contains("up to eval 1007 of nixpkgs:trunk"),
                    "{path}: a day on, with no new eval, the page says both: {text}"
                );
            }
        }
        assert_eq!(written.write.written, written.files - 1);
    }

    #[test]
    fn a_changed_package_page_is_rewritten_and_the_others_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("site");
        let before_snapshot = snapshot();
        publish(&dir, &before_snapshot).unwrap();
        let before = inodes(&dir);
        // bob no longer maintains libfoo.
        let mut after_snapshot = snapshot();
        after_snapshot
            .facts
            .maintainers
            .insert("libfoo".into(), vec!["alice".into()]);
        let changed = changed(&before_snapshot, &after_snapshot);
        let libfoo = package_href("libfoo");
        let hostile = package_href(HOSTILE);
        assert!(changed.contains(&libfoo), "{changed:?}");
        assert!(!changed.contains(&hostile), "{changed:?}");
        let written = publish(&dir, &after_snapshot).unwrap();
        assert_eq!(written.write.written, changed.len(), "{changed:?}");
        assert_eq!(written.write.kept, written.files - changed.len());
        let after = inodes(&dir);
        for (path, inode) in &after {
            if changed.contains(path) {
                assert_ne!(Some(inode), before.get(path), "{path} is written");
            } else {
                assert_eq!(Some(inode), before.get(path), "{path} is kept");
            }
        }
        assert!(!after.contains_key(&maintainer_href("\"><b>bob")));
        let page = std::fs::read_to_string(dir.join(&libfoo)).unwrap();
        assert!(!page.contains("bob"), "{page}");
    }
}

mod stored {
    //! The site of a stored history: read as a plan reads it, with the
    //! runs the pages show, it is the site of the whole history.

    use std::collections::BTreeMap;

    use super::super::*;
    use crate::config::Config;
    use crate::history::StatusClass;
    use crate::policy::{ActionKind, OptOutKind, RecordState};
    use crate::sim::YearSpec;
    use crate::store::{ActionResult, NewAction, NewOptOut, Store};

    const EVALS: usize = MAX_CELLS + 110;

    /// Trunk and staging-next over more evals than a strip shows: jobs
    /// that flip (flaky), streaks longer than a strip, two mass breakages,
    /// jobs leaving and coming every eval.
    fn write_history(store: &mut Store) -> i64 {
        let spec = |seed| {
            let mut spec = YearSpec::trunk(1_500);
            spec.churn = 0.05;
            spec.break_rate = 0.05;
            spec.fix_rate = 0.15;
            spec.mass_breakages = vec![30, EVALS - 20];
            spec.mass_share = 0.1;
            spec.turnover = 3;
            spec.seed = seed;
            spec.id_base = seed as i64 * 1_000_000_000;
            spec
        };
        let (trunk, staging_next) =
            crate::sim::write_trunk_and_staging_next(store, EVALS, spec).unwrap();
        trunk.newest_time().max(staging_next.newest_time())
    }

    fn record(store: &Store, kind: ActionKind, attr: &str, at: i64, state: RecordState) {
        let id = store
            .record_intent(
                &NewAction {
                    kind,
                    attr: Some(attr.to_owned()),
                    systems: vec!["x86_64-linux".into()],
                    all_platforms: kind == ActionKind::MarkBroken,
                    step: (kind == ActionKind::Notify).then(|| "notice".into()),
                    batch: None,
                    pinged: vec!["alice".into()],
                    pr: None,
                },
                at,
            )
            .unwrap();
        store
            .record_result(
                id,
                &ActionResult {
                    state,
                    at,
                    pr: (kind == ActionKind::MarkBroken).then_some(4242),
                    issue: Some(7),
                    error: None,
                    refused: None,
                },
            )
            .unwrap();
    }

    /// The ledger speaks of a package failing since before the strips
    /// begin, of one marked broken then that builds now, of one marked
    /// broken that fails, and of one opted out.
    fn write_ledger(store: &Store, whole: &Facts, now: i64) -> Vec<String> {
        let trunk = whole
            .jobsets
            .iter()
            .find(|js| js.jobset.jobset == "trunk")
            .unwrap();
        // Not the Haskell set, which the policy only watches; not gone.
        let newest = trunk.evals.len() as u32 - 1;
        let acted_on = || {
            trunk.jobs.iter().filter(move |j| {
                !j.attr.starts_with("haskell") && j.runs.last().unwrap().last == newest
            })
        };
        let strip_start = (trunk.evals.len() - MAX_CELLS) as u32;
        let old_failing = acted_on().find(|j| {
            j.runs[0].first + 1 < strip_start
                && j.runs
                    .iter()
                    .filter(|r| r.last + 1 >= strip_start)
                    .all(|r| r.class() == StatusClass::Failing)
        });
        let recovered = acted_on().find(|j| {
            j.runs.last().unwrap().class() == StatusClass::Ok
                && j.runs
                    .iter()
                    .any(|r| r.class() == StatusClass::Failing && r.last < strip_start)
        });
        let failing: Vec<_> = acted_on()
            .filter(|j| j.runs.last().unwrap().class() == StatusClass::Failing)
            .collect();
        let (Some(old_failing), Some(recovered), [.., marked, opted_out]) =
            (old_failing, recovered, failing.as_slice())
        else {
            panic!("the history has no old streak, no recovery or too few failures");
        };
        let long_ago = now - 86_400 * 50;
        record(
            store,
            ActionKind::Notify,
            &old_failing.attr,
            long_ago,
            RecordState::Done,
        );
        record(
            store,
            ActionKind::Notify,
            &recovered.attr,
            long_ago,
            RecordState::Done,
        );
        record(
            store,
            ActionKind::MarkBroken,
            &marked.attr,
            long_ago,
            RecordState::Merged,
        );
        store
            .record_opt_out(&NewOptOut {
                attr: opted_out.attr.clone(),
                kind: OptOutKind::Marker,
                recorded_at: long_ago,
                until: None,
                by: Some("bob".into()),
                note: "pkgs/by-name/pk/pkg/package.nix".into(),
            })
            .unwrap();
        vec![
            old_failing.attr.clone(),
            recovered.attr.clone(),
            marked.attr.clone(),
            opted_out.attr.clone(),
        ]
    }

    /// The first page and line where `got` is not `expected`.
    fn first_difference(expected: &[SiteFile], got: &[SiteFile]) -> Option<String> {
        let names = |files: &[SiteFile]| files.iter().map(|f| f.path.clone()).collect::<Vec<_>>();
        if names(expected) != names(got) {
            let diff =
                similar::TextDiff::from_lines(&names(expected).join("\n"), &names(got).join("\n"))
                    .unified_diff()
                    .to_string();
            return Some(format!("other pages:\n{diff}"));
        }
        for (e, g) in expected.iter().zip(got) {
            if e.bytes == g.bytes {
                continue;
            }
            let (e_text, g_text) = (
                String::from_utf8_lossy(&e.bytes),
                String::from_utf8_lossy(&g.bytes),
            );
            let (n, (e_line, g_line)) = e_text
                .lines()
                .chain(std::iter::repeat("<end of page>"))
                .zip(g_text.lines().chain(std::iter::repeat("<end of page>")))
                .enumerate()
                .find(|(_, (e, g))| e != g)
                .unwrap_or((0, ("", "")));
            // Lines can be long (a strip is one): show where they part.
            let at = e_line
                .bytes()
                .zip(g_line.bytes())
                .position(|(a, b)| a != b)
                .unwrap_or(e_line.len().min(g_line.len()));
            let excerpt = |line: &str| {
                let bytes = &line.as_bytes()[at.saturating_sub(80).min(line.len())..];
                String::from_utf8_lossy(&bytes[..bytes.len().min(240)]).into_owned()
            };
            return Some(format!(
                "{} differs first at line {}, column {}:\n  whole history: …{}…\n  scoped read:   …{}…",
                e.path,
                n + 1,
                at + 1,
                excerpt(e_line),
                excerpt(g_line)
            ));
        }
        None
    }

    #[test]
    fn the_site_read_as_a_plan_reads_is_the_site_of_the_whole_history() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("s.sqlite")).unwrap();
        let newest = write_history(&mut store);
        let config = Config::embedded_default();
        let (hydra, repository) = (&config.hydra.url, config.repository());
        let before = store.policy_facts(hydra, repository).unwrap();
        let named = write_ledger(&store, &before, newest);
        let maintainers: BTreeMap<String, Vec<String>> = named
            .iter()
            .enumerate()
            .map(|(i, attr)| (attr.clone(), vec![["alice", "bob"][i % 2].to_owned()]))
            .collect();
        let policy = Policy::nixpkgs();
        let ledger = store.ledger().unwrap();
        for now in [newest + 3600, newest + 86_400 * 9] {
            let whole = Snapshot {
                policy: policy.clone(),
                facts: Facts {
                    maintainers: maintainers.clone(),
                    ..store.policy_facts(hydra, repository).unwrap()
                },
                ledger: ledger.clone(),
                now,
            };
            let scoped = load(
                &store,
                &config,
                policy.clone(),
                Some(maintainers.clone()),
                now,
            )
            .unwrap();
            let expected = render_model(&model(&whole)).unwrap();
            let pages = |prefix: &str| {
                expected
                    .iter()
                    .filter(|f| f.path.starts_with(prefix))
                    .count()
            };
            assert!(
                pages("packages/") > 50 && pages("maintainers/") >= 3,
                "the site has {} package pages and {} maintainer pages",
                pages("packages/"),
                pages("maintainers/")
            );
            for attr in &named {
                assert!(
                    expected.iter().any(|f| f.path == package_href(attr)),
                    "{attr}, which the ledger names, has a page (of {named:?})"
                );
            }
            let got = render_model(&model(&scoped)).unwrap();
            if let Some(difference) = first_difference(&expected, &got) {
                panic!(
                    "as of {now}, the site read as a plan reads is not the whole history's: {difference}"
                );
            }
            assert!(
                expected.iter().any(
                    |f| String::from_utf8_lossy(&f.bytes).contains("gone from the newest eval")
                ),
                "a package page shows a job that left"
            );
            assert!(
                scoped.facts.runs_read() * 3 < whole.facts.runs_read() * 2,
                "the site reads {} of the history's {} runs",
                scoped.facts.runs_read(),
                whole.facts.runs_read()
            );
        }
    }
}
