//! The HTML report: a static site maintainers can look at.
//!
//! Owns: the site's pages (an index of failing packages pre-rendered in
//! three sort orders, one page per package with a history strip per
//! platform and the policy's next step, one page per maintainer, the roots
//! with their victims), its templates (`templates/`, embedded, HTML
//! auto-escaping on), its one stylesheet, the file names of its pages (a
//! sanitized slug plus a short hash of the exact name), and writing it
//! atomically (render beside the target, then swap), writing only the
//! files whose bytes changed (`write.rs`).
//!
//! A page says what it is from: the newest eval stored at the moment it
//! describes, and the day its next steps were planned; not the moment it
//! was rendered, which would change every page every cycle. So a cycle
//! with nothing new writes no page, a new eval rewrites the pages that
//! show it (every history strip gains a cell), and a page a day old says
//! so even when Hydra had no new eval.
//!
//! Its cost per cycle does not grow with the history: [`load`] reads what a
//! plan reads ([`Store::plan_facts`]) and, of every job of a package the
//! plan lists, the runs its strip shows ([`MAX_CELLS`] evals), which renders
//! byte for byte the site of the whole history (tested in `tests.rs`).
//!
//! Must never: query anything beyond the read-only [`load`] step (the store's
//! facts and ledger, maintainers from the checkout as it is, without
//! fetching); decide anything (the policy engine decides; this module renders
//! its assessment and plan); build markup by string concatenation or print a
//! name unescaped; let a name choose a path; write outside the target
//! directory (except its temporary siblings `.NAME.new-*`, gone on return,
//! and removed when an interrupted write left them an hour ago); change a
//! file of the live site in place (unchanged files are shared with the new
//! site by hard links); replace a directory it did not write; or need
//! JavaScript.

mod model;
pub mod names;
mod write;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use minijinja::{AutoEscape, Environment, Value, context};
use serde::Serialize;

use crate::config::Config;
use crate::policy::{self, Facts, Ledger, Policy};
use crate::store::{PlanScope, Store, StoreError};

pub use model::{MAX_CELLS, Model, maintainer_href, package_href};
pub use write::{MARKER, SiteFile, WriteStats, write_site};

#[derive(Debug, thiserror::Error)]
pub enum SiteError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot render {page}")]
    Render {
        page: String,
        #[source]
        source: minijinja::Error,
    },
    #[error("{path}: {what}")]
    Io {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{0} exists and is neither empty nor a site written by hydra-sentinel (it has no {MARKER}): refusing to replace it"
    )]
    NotOurs(PathBuf),
    #[error("{0} cannot be the site's directory: give a path ending in a folder name")]
    BadDirectory(PathBuf),
    #[error("refusing to write {0:?}: not a plain file name inside the site")]
    UnsafePath(String),
}

/// What the site is made of, read once.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub policy: Policy,
    pub facts: Facts,
    pub ledger: Ledger,
    /// The moment the site describes (Unix seconds).
    pub now: i64,
}

/// The read-only load step: the ledger, the facts a plan reads with the runs
/// the pages show ([`PlanScope::shown`] with [`MAX_CELLS`]: every job of a
/// listed package over the evals of its history strips, so the cost follows
/// the failures, not the length of the history; the whole history when
/// `now` is before a jobset's newest eval), and maintainers from
/// `maintainers` or else, when the configuration names a nixpkgs checkout,
/// from that checkout as it is (no fetch).
pub fn load(
    store: &Store,
    config: &Config,
    policy: Policy,
    maintainers: Option<BTreeMap<String, Vec<String>>>,
    now: i64,
) -> Result<Snapshot, SiteError> {
    let scope = PlanScope::new(now, &policy.streak).shown(MAX_CELLS as u32);
    let mut facts = store.plan_facts(&config.hydra.url, config.repository(), scope)?;
    let ledger = store.ledger()?;
    facts.maintainers = match maintainers {
        Some(m) => m,
        None => match crate::act::cycle::publisher(config, None)
            .map(|p| p.maintainers_offline(&crate::act::failing_attrs(&facts, &policy)))
        {
            Some(Ok(maintainers)) => maintainers,
            // The report still shows everything else; it just links nobody.
            Some(Err(e)) => {
                tracing::warn!(
                    error = %crate::error_chain(&e),
                    "cannot read the nixpkgs checkout: the report names no maintainers"
                );
                BTreeMap::new()
            }
            None => BTreeMap::new(),
        },
    };
    Ok(Snapshot {
        policy,
        facts,
        ledger,
        now,
    })
}

const STYLE: &str = include_str!("templates/style.css");

const TEMPLATES: [(&str, &str); 6] = [
    ("base.html", include_str!("templates/base.html")),
    ("index.html", include_str!("templates/index.html")),
    ("package.html", include_str!("templates/package.html")),
    ("maintainer.html", include_str!("templates/maintainer.html")),
    (
        "maintainers.html",
        include_str!("templates/maintainers.html"),
    ),
    ("roots.html", include_str!("templates/roots.html")),
];

fn environment() -> Result<Environment<'static>, SiteError> {
    let mut env = Environment::new();
    // Auto-escaping by extension (the default): every `.html` template
    // escapes every value it prints.
    env.set_auto_escape_callback(minijinja::default_auto_escape_callback);
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    let syntax = minijinja::syntax::SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .build()
        .map_err(|source| SiteError::Render {
            page: "the template syntax".into(),
            source,
        })?;
    env.set_syntax(syntax);
    env.set_formatter(|out, state, value| match value.as_str() {
        Some(text) if *state.auto_escape() == AutoEscape::Html && !value.is_safe() => {
            out.write_str(&escape_html(text))?;
            Ok(())
        }
        _ => minijinja::escape_formatter(out, state, value),
    });
    for (name, source) in TEMPLATES {
        env.add_template(name, source)
            .map_err(|source| SiteError::Render {
                page: name.to_owned(),
                source,
            })?;
    }
    Ok(env)
}

/// The index's sort orders: file, column key, label.
const SORTS: [(&str, &str); 3] = [
    ("index.html", "age"),
    ("by-platforms.html", "platforms"),
    ("by-blast-radius.html", "blast_radius"),
];

#[derive(Serialize)]
struct Common<'a> {
    results: &'a str,
    planned: &'a str,
    policy: &'a str,
    hydra: &'a str,
    hold: Option<&'a str>,
    /// From this page to the top of the site: `` or `../`.
    root: &'static str,
    /// Which navigation entry is this page.
    section: &'static str,
    packages: usize,
}

/// Text for HTML element content and quoted attribute values: `&`, `<`,
/// `>`, `"` and `'` become entities (minijinja's own escaping also turns
/// every `/` into `&#x2f;`, which is safe but doubles the size of links).
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
    out
}

fn ser<T: Serialize>(value: &T) -> Value {
    Value::from(minijinja::value::Serde(value))
}

/// Render every page of the model.
pub fn render_model(model: &Model) -> Result<Vec<SiteFile>, SiteError> {
    let env = environment()?;
    let common = |root: &'static str, section: &'static str| Common {
        results: &model.results,
        planned: &model.planned,
        policy: &model.policy,
        hydra: &model.hydra,
        hold: model.hold.as_deref(),
        root,
        section,
        packages: model.rows.len(),
    };
    let render = |template: &str, path: String, ctx: Value| -> Result<SiteFile, SiteError> {
        let text = env
            .get_template(template)
            .and_then(|t| t.render(ctx))
            .map_err(|source| SiteError::Render {
                page: path.clone(),
                source,
            })?;
        Ok(SiteFile {
            path,
            bytes: text.into_bytes(),
        })
    };
    let mut files = vec![SiteFile {
        path: "style.css".into(),
        bytes: STYLE.as_bytes().to_vec(),
    }];
    for (file, key) in SORTS {
        let mut rows: Vec<&model::Row> = model.rows.iter().collect();
        match key {
            "platforms" => rows.sort_by(|x, y| {
                (y.platforms, x.since_ts, &x.attr).cmp(&(x.platforms, y.since_ts, &y.attr))
            }),
            "blast_radius" => rows.sort_by(|x, y| {
                (y.blast_radius, x.since_ts, &x.attr).cmp(&(x.blast_radius, y.since_ts, &y.attr))
            }),
            _ => {}
        }
        files.push(render(
            "index.html",
            file.to_owned(),
            context! { common => ser(&common("", "index")), rows => ser(&rows), sort => key },
        )?);
    }
    files.push(render(
        "roots.html",
        "roots.html".into(),
        context! { common => ser(&common("", "roots")), roots => ser(&model.roots) },
    )?);
    files.push(render(
        "maintainers.html",
        "maintainers.html".into(),
        context! {
            common => ser(&common("", "maintainers")),
            maintainers => ser(&model.maintainers),
            unknown => model.unknown.len(),
            unknown_href => model::UNKNOWN_MAINTAINERS,
        },
    )?);
    for page in &model.maintainer_pages {
        files.push(render(
            "maintainer.html",
            maintainer_href(&page.login),
            context! { common => ser(&common("../", "maintainers")), page => ser(page), unknown => false },
        )?);
    }
    files.push(render(
        "maintainer.html",
        model::UNKNOWN_MAINTAINERS.to_owned(),
        context! {
            common => ser(&common("../", "maintainers")),
            page => ser(&model::MaintainerPage {
                login: "Unknown maintainers".into(),
                profile: None,
                rows: model.unknown.clone(),
            }),
            unknown => true,
        },
    )?);
    for (attr, page) in &model.packages {
        files.push(render(
            "package.html",
            package_href(attr),
            context! { common => ser(&common("../", "package")), page => ser(page) },
        )?);
    }
    Ok(files)
}

/// The model of a snapshot: the engine's assessment and plan, as the
/// pages show them.
pub fn model(snapshot: &Snapshot) -> Model {
    let assessment = policy::assess(
        &snapshot.policy,
        &snapshot.facts,
        &snapshot.ledger,
        snapshot.now,
    );
    let plan = policy::plan_from(
        &snapshot.policy,
        &snapshot.facts,
        &snapshot.ledger,
        &assessment,
    );
    model::Builder {
        policy: &snapshot.policy,
        facts: &snapshot.facts,
        assessment: &assessment,
        plan: &plan,
    }
    .build()
}

/// What a write produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// The files of the site.
    pub files: usize,
    pub failing: usize,
    /// Of them, what was written (only what changed).
    pub write: WriteStats,
}

/// Render `snapshot` and make it the whole content of `dir`, writing only
/// the files that changed ([`write_site`]).
pub fn publish(dir: &Path, snapshot: &Snapshot) -> Result<Written, SiteError> {
    let model = model(snapshot);
    let files = render_model(&model)?;
    let write = write_site(dir, &files)?;
    Ok(Written {
        files: files.len(),
        failing: model.rows.len(),
        write,
    })
}

#[cfg(test)]
mod tests;
