//! Who maintains a package: `meta.maintainers` / `meta.teams` resolved against
//! `maintainers/maintainer-list.nix` and `maintainers/team-list.nix`.
//!
//! Owns: reading those files and the package's meta with rnix (no evaluation needed) and
//! resolving handles to GitHub login and id. Must never guess: a handle that is not in the
//! list, or an expression it does not understand, is reported as unknown.

use std::collections::BTreeMap;
use std::path::Path;

use rnix::{SyntaxKind, SyntaxNode};

use super::error::NixpkgsError;
use super::meta::find_meta;
use super::source::TreeSource;
use super::syntax::{
    binding_path, binding_value, entries, file_body, parse, select_path, static_string, unparen,
};

pub const MAINTAINER_LIST: &str = "maintainers/maintainer-list.nix";
pub const TEAM_LIST: &str = "maintainers/team-list.nix";

/// One entry of `maintainer-list.nix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Maintainer {
    pub handle: String,
    pub name: Option<String>,
    /// GitHub login, to mention. Logins change; key state by `github_id`.
    pub github: Option<String>,
    pub github_id: Option<u64>,
}

/// One entry of `team-list.nix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Team {
    pub name: String,
    pub short_name: Option<String>,
    /// GitHub team slug, when the team is synced with GitHub.
    pub github: Option<String>,
    pub github_id: Option<u64>,
    /// Member handles.
    pub members: Vec<String>,
}

/// The maintainer and team lists of a checkout.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MaintainerDirectory {
    pub maintainers: BTreeMap<String, Maintainer>,
    pub teams: BTreeMap<String, Team>,
}

/// What a package's meta says, before resolution.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetaMaintainers {
    pub handles: Vec<String>,
    pub teams: Vec<String>,
    /// Expressions the reader did not understand (reported, not guessed).
    pub unrecognised: Vec<String>,
}

/// A team with its members resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedTeam {
    pub team: Team,
    pub members: Vec<Maintainer>,
}

/// Maintainers and teams resolved against the directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvedMaintainers {
    pub people: Vec<Maintainer>,
    pub teams: Vec<ResolvedTeam>,
    /// Handles or teams not in the lists, and expressions not understood.
    pub unknown: Vec<String>,
}

impl ResolvedMaintainers {
    /// Distinct GitHub logins of people and team members, people first.
    pub fn github_logins(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let members = self.teams.iter().flat_map(|t| t.members.iter());
        for person in self.people.iter().chain(members) {
            if let Some(login) = &person.github
                && !out.contains(login)
            {
                out.push(login.clone());
            }
        }
        out
    }
}

impl MaintainerDirectory {
    /// Parse the two list files' texts.
    pub fn parse(maintainer_list: &str, team_list: Option<&str>) -> Result<Self, NixpkgsError> {
        let mut directory = MaintainerDirectory::default();
        let file = Path::new(MAINTAINER_LIST);
        let root = parse(maintainer_list, file)?;
        if let Some(set) = file_body(&root).filter(|b| b.kind() == SyntaxKind::NODE_ATTR_SET) {
            for entry in entries(&set) {
                let (Some(path), Some(value)) = (binding_path(&entry), binding_value(&entry))
                else {
                    continue;
                };
                let [handle] = path.as_slice() else { continue };
                let fields = Fields::of(&value);
                directory.maintainers.insert(
                    handle.clone(),
                    Maintainer {
                        handle: handle.clone(),
                        name: fields.string("name"),
                        github: fields.string("github"),
                        github_id: fields.integer("githubId"),
                    },
                );
            }
        }
        if let Some(team_list) = team_list {
            let file = Path::new(TEAM_LIST);
            let root = parse(team_list, file)?;
            if let Some(set) = file_body(&root).filter(|b| b.kind() == SyntaxKind::NODE_ATTR_SET) {
                for entry in entries(&set) {
                    let (Some(path), Some(value)) = (binding_path(&entry), binding_value(&entry))
                    else {
                        continue;
                    };
                    let [name] = path.as_slice() else { continue };
                    let fields = Fields::of(&value);
                    let mut members = MetaMaintainers::default();
                    if let Some(list) = fields.get("members") {
                        collect(&list, &[Scope::Maintainers], &mut members);
                    }
                    directory.teams.insert(
                        name.clone(),
                        Team {
                            name: name.clone(),
                            short_name: fields.string("shortName"),
                            github: fields.string("github"),
                            github_id: fields.integer("githubId"),
                            members: members.handles,
                        },
                    );
                }
            }
        }
        Ok(directory)
    }

    /// Read both lists from a checkout.
    pub fn load(source: &dyn TreeSource) -> Result<Self, NixpkgsError> {
        let maintainers = source.read(Path::new(MAINTAINER_LIST))?.unwrap_or_default();
        let teams = source.read(Path::new(TEAM_LIST))?;
        MaintainerDirectory::parse(&maintainers, teams.as_deref())
    }

    pub fn resolve(&self, meta: &MetaMaintainers) -> ResolvedMaintainers {
        let mut out = ResolvedMaintainers {
            unknown: meta.unrecognised.clone(),
            ..ResolvedMaintainers::default()
        };
        for handle in &meta.handles {
            match self.maintainers.get(handle) {
                Some(m) => out.people.push(m.clone()),
                None => out.unknown.push(handle.clone()),
            }
        }
        for name in &meta.teams {
            match self.teams.get(name) {
                Some(team) => {
                    let mut members = Vec::new();
                    for handle in &team.members {
                        match self.maintainers.get(handle) {
                            Some(m) => members.push(m.clone()),
                            None => out
                                .unknown
                                .push(format!("{handle} (member of team {name})")),
                        }
                    }
                    out.teams.push(ResolvedTeam {
                        team: team.clone(),
                        members,
                    });
                }
                None => out.unknown.push(format!("team {name}")),
            }
        }
        out
    }
}

/// Read `meta.maintainers` and `meta.teams` of the package defined in `text`.
pub fn meta_maintainers(
    text: &str,
    file: &Path,
    meta_line: Option<usize>,
) -> Result<MetaMaintainers, NixpkgsError> {
    let root = parse(text, file)?;
    let site = find_meta(&root, text, file, meta_line)
        .map_err(|r| NixpkgsError::refused(file.display().to_string(), r))?;
    let mut out = MetaMaintainers::default();
    for (path, binding) in site.bindings() {
        let Some(value) = binding_value(&binding) else {
            continue;
        };
        match path.as_slice() {
            [name] if name == "maintainers" => collect(&value, &[], &mut out),
            [name] if name == "teams" => collect(&value, &[Scope::Teams], &mut out),
            _ => {}
        }
    }
    Ok(out)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    Maintainers,
    Teams,
    Other,
}

/// Walk a maintainers/teams expression.
fn collect(expr: &SyntaxNode, scopes: &[Scope], out: &mut MetaMaintainers) {
    let expr = unparen(expr.clone());
    match expr.kind() {
        SyntaxKind::NODE_WITH => {
            let namespace = expr.children().next().and_then(|n| select_path(&n));
            let scope = match namespace
                .as_ref()
                .and_then(|p| p.last())
                .map(String::as_str)
            {
                Some("maintainers") => Scope::Maintainers,
                Some("teams") => Scope::Teams,
                _ => Scope::Other,
            };
            let mut inner = scopes.to_vec();
            inner.push(scope);
            if let Some(body) = expr.children().last() {
                collect(&body, &inner, out);
            }
        }
        SyntaxKind::NODE_LIST => {
            for element in expr.children() {
                element_of(&element, scopes, out);
            }
        }
        SyntaxKind::NODE_BIN_OP => {
            for operand in expr.children() {
                collect(&operand, scopes, out);
            }
        }
        SyntaxKind::NODE_SELECT => {
            // `teams.foo.members` or `lib.teams.foo.members`
            match select_path(&expr) {
                Some(path)
                    if path.len() >= 3
                        && path[path.len() - 3] == "teams"
                        && path[path.len() - 1] == "members" =>
                {
                    out.teams.push(path[path.len() - 2].clone());
                }
                _ => out.unrecognised.push(expr.text().to_string()),
            }
        }
        _ => out.unrecognised.push(expr.text().to_string()),
    }
}

fn element_of(element: &SyntaxNode, scopes: &[Scope], out: &mut MetaMaintainers) {
    let Some(path) = select_path(element) else {
        out.unrecognised.push(element.text().to_string());
        return;
    };
    let names: Vec<&str> = path.iter().map(String::as_str).collect();
    match names.as_slice() {
        [.., "maintainers", handle] => out.handles.push((*handle).to_string()),
        [.., "teams", team] | [.., "teams", team, "members"] => out.teams.push((*team).to_string()),
        [name] => match scopes.iter().rev().find(|s| **s != Scope::Other) {
            Some(Scope::Maintainers) => out.handles.push((*name).to_string()),
            Some(Scope::Teams) => out.teams.push((*name).to_string()),
            _ => out.unrecognised.push((*name).to_string()),
        },
        _ => out.unrecognised.push(element.text().to_string()),
    }
}

/// Static fields of an attribute-set literal.
struct Fields(BTreeMap<String, SyntaxNode>);

impl Fields {
    fn of(value: &SyntaxNode) -> Fields {
        let value = unparen(value.clone());
        let mut map = BTreeMap::new();
        if value.kind() == SyntaxKind::NODE_ATTR_SET {
            for entry in entries(&value) {
                if let (Some(path), Some(v)) = (binding_path(&entry), binding_value(&entry))
                    && let [name] = path.as_slice()
                {
                    map.insert(name.clone(), v);
                }
            }
        }
        Fields(map)
    }

    fn get(&self, name: &str) -> Option<SyntaxNode> {
        self.0.get(name).cloned()
    }

    fn string(&self, name: &str) -> Option<String> {
        self.0.get(name).and_then(static_string)
    }

    fn integer(&self, name: &str) -> Option<u64> {
        let node = self.0.get(name)?;
        if node.kind() != SyntaxKind::NODE_LITERAL {
            return None;
        }
        node.text().to_string().parse().ok()
    }
}
