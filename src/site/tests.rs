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
