//! Mapping an attribute path to the Nix file that defines its meta.
//!
//! Owns: the static index of a checkout (by-name directories, `callPackage` call sites in
//! `all-packages.nix` and `python-packages.nix`), lookups in it, the content checks that
//! decide whether a located file's meta is the package's own, and the optional cross-check
//! with Nix. Must never guess: an attribute it cannot prove is refused with a reason.

use std::collections::{BTreeSet, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};

use rnix::{SyntaxKind, SyntaxNode};

use super::error::{NixpkgsError, Refusal};
use super::generated::generated_reason;
use super::meta::{SharedBy, find_meta, shared_by_several};
use super::nix::MetaPositionOracle;
use super::source::{TreeSource, normalize};
use super::syntax::{
    binding_path, binding_value, end, entries, file_body, inherit_names, line_col, parse,
    select_path, start, unparen,
};

pub const ALL_PACKAGES: &str = "pkgs/top-level/all-packages.nix";
pub const PYTHON_PACKAGES: &str = "pkgs/top-level/python-packages.nix";
pub const BY_NAME: &str = "pkgs/by-name";

/// Which package set an attribute belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PackageSet {
    TopLevel,
    /// `python3Packages.X` and friends; `name` is `X`.
    Python,
}

/// A binding in a package list file that calls the package's file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallSite {
    /// The list file (`pkgs/top-level/all-packages.nix`, ...).
    pub list_file: PathBuf,
    /// Byte range of the whole binding (`foo = callPackage ... ;`) in the list file.
    pub range: Range<usize>,
    pub line: usize,
    /// The file `callPackage` is called on (directories resolved to `default.nix`).
    pub target: PathBuf,
    /// Whether `callPackage` is called on a directory (so the directory is the package's).
    pub target_is_dir: bool,
}

/// Where an attribute is defined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The attribute as asked for.
    pub attr: String,
    pub set: PackageSet,
    /// The name inside its set (`X` of `python3Packages.X`).
    pub name: String,
    /// The file defining the package, relative to the checkout.
    pub file: PathBuf,
    /// The call site, when there is one (by-name packages without override have none).
    pub call_site: Option<CallSite>,
    /// `pkgs/by-name/<shard>/<name>`, for by-name packages.
    pub by_name_dir: Option<PathBuf>,
}

#[derive(Debug, Clone)]
enum Entry {
    Call(CallSite),
    OverrideOf(String),
    /// `foo = with python3Packages; toPythonApplication foo;`
    PythonApplication(String),
}

/// Static index of one checkout revision. Build once, look up many times.
#[derive(Debug, Default)]
pub struct Index {
    by_name: HashMap<String, PathBuf>,
    top_level: HashMap<String, Entry>,
    python: HashMap<String, Entry>,
    /// file → the attributes whose definition it is.
    users: HashMap<PathBuf, BTreeSet<String>>,
}

impl Index {
    /// Index a checkout: list `pkgs/by-name`, parse the package list files.
    pub fn build(source: &dyn TreeSource) -> Result<Index, NixpkgsError> {
        let mut index = Index::default();
        let by_name = Path::new(BY_NAME);
        for shard in source.list_dir(by_name)? {
            for name in source.list_dir(&by_name.join(&shard))? {
                let file = by_name.join(&shard).join(&name).join("package.nix");
                if source.is_file(&file) {
                    index.by_name.insert(name, file);
                }
            }
        }
        index.top_level = index_list_file(source, Path::new(ALL_PACKAGES))?;
        index.python = index_list_file(source, Path::new(PYTHON_PACKAGES))?;

        let mut users: HashMap<PathBuf, BTreeSet<String>> = HashMap::new();
        for (name, file) in &index.by_name {
            users.entry(file.clone()).or_default().insert(name.clone());
        }
        for (name, entry) in &index.top_level {
            match entry {
                Entry::Call(site) => {
                    users
                        .entry(site.target.clone())
                        .or_default()
                        .insert(name.clone());
                }
                Entry::PythonApplication(py) => {
                    if let Some(Entry::Call(site)) = index.python.get(py) {
                        users
                            .entry(site.target.clone())
                            .or_default()
                            .insert(name.clone());
                    }
                }
                Entry::OverrideOf(_) => {}
            }
        }
        for (name, entry) in &index.python {
            if let Entry::Call(site) = entry {
                users
                    .entry(site.target.clone())
                    .or_default()
                    .insert(format!("python3Packages.{name}"));
            }
        }
        index.users = users;
        Ok(index)
    }

    /// Number of indexed attributes.
    pub fn len(&self) -> usize {
        self.top_level.len() + self.python.len() + self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Where `attr` is defined, by the static index only.
    pub fn lookup(&self, attr: &str) -> Result<Location, NixpkgsError> {
        let refuse = |reason| NixpkgsError::refused(attr, reason);
        let parsed = parse_attr(attr)?;
        let location = match parsed {
            AttrRef::Haskell => return Err(refuse(Refusal::HaskellPackage)),
            AttrRef::OtherSet(set) => return Err(refuse(Refusal::UnsupportedPackageSet { set })),
            AttrRef::Python(name) => match self.python.get(&name) {
                Some(Entry::Call(site)) => Location {
                    attr: attr.to_string(),
                    set: PackageSet::Python,
                    name,
                    file: site.target.clone(),
                    call_site: Some(site.clone()),
                    by_name_dir: None,
                },
                Some(Entry::OverrideOf(base)) => {
                    return Err(refuse(Refusal::OverrideOf { base: base.clone() }));
                }
                _ => return Err(refuse(Refusal::NotFound)),
            },
            AttrRef::TopLevel(name) => match self.top_level.get(&name) {
                Some(Entry::OverrideOf(base)) => {
                    return Err(refuse(Refusal::OverrideOf { base: base.clone() }));
                }
                Some(Entry::PythonApplication(py)) => match self.python.get(py) {
                    Some(Entry::Call(site)) => Location {
                        attr: attr.to_string(),
                        set: PackageSet::TopLevel,
                        name,
                        file: site.target.clone(),
                        call_site: None,
                        by_name_dir: None,
                    },
                    _ => return Err(refuse(Refusal::NotFound)),
                },
                Some(Entry::Call(site)) => {
                    let by_name_dir = self
                        .by_name
                        .get(&name)
                        .filter(|f| **f == site.target)
                        .and_then(|f| f.parent().map(Path::to_path_buf));
                    Location {
                        attr: attr.to_string(),
                        set: PackageSet::TopLevel,
                        name,
                        file: site.target.clone(),
                        call_site: Some(site.clone()),
                        by_name_dir,
                    }
                }
                None => match self.by_name.get(&name) {
                    Some(file) => Location {
                        attr: attr.to_string(),
                        set: PackageSet::TopLevel,
                        name,
                        file: file.clone(),
                        call_site: None,
                        by_name_dir: file.parent().map(Path::to_path_buf),
                    },
                    None => return Err(refuse(Refusal::NotFound)),
                },
            },
        };
        if let Some(why) = generated_reason(&location.file, None) {
            return Err(refuse(Refusal::GeneratedFile {
                file: location.file,
                why,
            }));
        }
        if let Some(users) = self.users.get(&location.file)
            && users.len() > 1
        {
            return Err(refuse(Refusal::SharedMeta {
                file: location.file,
                attrs: users.iter().cloned().collect(),
            }));
        }
        Ok(location)
    }

    /// Attributes other than `location`'s own whose call site points into `dir`.
    pub fn other_users_under(&self, dir: &Path, location: &Location) -> Vec<String> {
        let own = self.users.get(&location.file);
        self.users
            .iter()
            .filter(|(file, _)| file.starts_with(dir))
            .flat_map(|(_, attrs)| attrs.iter())
            .filter(|a| own.is_none_or(|own| !own.contains(*a)))
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    }
}

/// A located attribute whose file was read and whose meta is proven to be its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    pub location: Location,
    /// 1-based line of the meta binding (or first dotted `meta.*`).
    pub meta_line: usize,
    /// Line of `meta.description` reported by Nix, when Nix was asked.
    pub nix_line: Option<usize>,
}

/// Locate `attr` and check its file: static index, then (when `oracle` is given) Nix's
/// position of `meta.description` as cross-check, then the file's content.
pub fn locate(
    index: &Index,
    source: &dyn TreeSource,
    oracle: Option<&dyn MetaPositionOracle>,
    attr: &str,
) -> Result<Located, NixpkgsError> {
    let refuse = |reason| NixpkgsError::refused(attr, reason);
    let static_location = index.lookup(attr);
    let nix_position = match oracle {
        Some(oracle) => oracle.meta_position(attr)?,
        None => None,
    };
    let (location, nix_only) = match (static_location, &nix_position) {
        (Ok(location), Some(pos)) if pos.file != location.file => {
            return Err(refuse(Refusal::NixDisagrees {
                static_file: location.file,
                nix_file: pos.file.clone(),
            }));
        }
        (Ok(location), _) => (location, false),
        (Err(err), Some(pos)) if err.refusal() == Some(&Refusal::NotFound) => {
            // Nix alone knows the attribute: the file must still be its alone.
            if let Some(others) = index.users.get(&pos.file) {
                let mut attrs = others.clone();
                attrs.insert(attr.to_string());
                return Err(refuse(Refusal::SharedMeta {
                    file: pos.file.clone(),
                    attrs: attrs.into_iter().collect(),
                }));
            }
            let location = Location {
                attr: attr.to_string(),
                set: PackageSet::TopLevel,
                name: attr.to_string(),
                file: pos.file.clone(),
                call_site: None,
                by_name_dir: None,
            };
            (location, true)
        }
        (Err(err), _) => return Err(err),
    };
    let text = source.read(&location.file)?.ok_or_else(|| {
        refuse(Refusal::NoMeta {
            file: location.file.clone(),
        })
    })?;
    if let Some(why) = generated_reason(&location.file, Some(&text)) {
        return Err(refuse(Refusal::GeneratedFile {
            file: location.file,
            why,
        }));
    }
    let root = parse(&text, &location.file)?;
    let nix_line = nix_position.map(|p| p.line);
    let site = find_meta(&root, &text, &location.file, nix_line).map_err(refuse)?;
    if let Some(shared) = shared_by_several(&root, &site, &text, &location.file) {
        return Err(refuse(shared));
    }
    // A builder file other files of its folder call (`./generic.nix` of `29.nix` and
    // `30.nix`) builds a package for each. The attribute found through the index reaches
    // it by its own call site, so one such file is one package more; found through Nix
    // alone, it may be reaching it through that file.
    let callers = sibling_callers(source, &location.file)?;
    if callers.len() > 1 || (!nix_only && !callers.is_empty()) {
        return Err(refuse(Refusal::SharedFunction {
            function: SharedBy::CalledBy { files: callers },
            pos: super::syntax::pos_at(&text, start(site.node()), &location.file),
        }));
    }
    let meta_line = line_col(&text, start(site.node())).0;
    let meta_line = match &site {
        super::meta::MetaSite::Set { binding, .. } => line_col(&text, start(binding)).0,
        super::meta::MetaSite::Dotted { .. } => meta_line,
    };
    Ok(Located {
        location,
        meta_line,
        nix_line,
    })
}

/// The other `.nix` files of `file`'s folder that refer to it as `./NAME`. A folder's
/// `default.nix` is referred to by its folder's name instead, and is not looked for.
fn sibling_callers(source: &dyn TreeSource, file: &Path) -> Result<Vec<PathBuf>, NixpkgsError> {
    let (Some(dir), Some(name)) = (file.parent(), file.file_name().and_then(|n| n.to_str())) else {
        return Ok(Vec::new());
    };
    if name == "default.nix" {
        return Ok(Vec::new());
    }
    let needle = format!("./{name}");
    let mut callers = Vec::new();
    for entry in source.list_dir(dir)? {
        if entry == name || !entry.ends_with(".nix") {
            continue;
        }
        let path = dir.join(&entry);
        let Some(text) = source.read(&path)? else {
            continue;
        };
        let refers = text.match_indices(&needle).any(|(at, _)| {
            // `../NAME` is another folder's file.
            let before = text[..at].chars().next_back();
            !before.is_some_and(|c| c == '.' || c == '/' || c.is_alphanumeric())
        });
        if refers {
            callers.push(path);
        }
    }
    callers.sort();
    Ok(callers)
}

enum AttrRef {
    TopLevel(String),
    Python(String),
    Haskell,
    OtherSet(String),
}

fn valid_component(c: &str) -> bool {
    !c.is_empty()
        && c.chars()
            .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '_' | '-' | '\'' | '+'))
}

/// Check `attr` is a plain dotted attribute path (so it is safe to put into a Nix
/// expression or a path) and split it.
pub fn validate_attr_path(attr: &str) -> Result<Vec<&str>, NixpkgsError> {
    let parts: Vec<&str> = attr.split('.').collect();
    if attr.len() > 200 || !parts.iter().all(|p| valid_component(p)) {
        return Err(NixpkgsError::InvalidAttrPath(attr.to_string()));
    }
    Ok(parts)
}

fn is_python3_set(first: &str, second: Option<&str>) -> Option<bool> {
    // python3Packages, python313Packages → (true: needs no `.pkgs`)
    let digits = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
    if let Some(rest) = first.strip_prefix("python3") {
        if let Some(version) = rest.strip_suffix("Packages")
            && (version.is_empty() || digits(version))
        {
            return Some(true);
        }
        if (rest.is_empty() || digits(rest)) && second == Some("pkgs") {
            return Some(false);
        }
    }
    None
}

fn parse_attr(attr: &str) -> Result<AttrRef, NixpkgsError> {
    let parts = validate_attr_path(attr)?;
    match parts.as_slice() {
        [name] => Ok(AttrRef::TopLevel((*name).to_string())),
        ["haskellPackages", ..] | ["haskell", "packages", ..] => Ok(AttrRef::Haskell),
        [first, rest @ ..] => match is_python3_set(first, rest.first().copied()) {
            Some(true) if rest.len() == 1 => Ok(AttrRef::Python(rest[0].to_string())),
            Some(false) if rest.len() == 2 => Ok(AttrRef::Python(rest[1].to_string())),
            _ => Ok(AttrRef::OtherSet((*first).to_string())),
        },
        [] => Err(NixpkgsError::InvalidAttrPath(attr.to_string())),
    }
}

/// Index the top-level bindings of a package list file.
fn index_list_file(
    source: &dyn TreeSource,
    list_file: &Path,
) -> Result<HashMap<String, Entry>, NixpkgsError> {
    let mut out = HashMap::new();
    let Some(text) = source.read(list_file)? else {
        return Ok(out);
    };
    let root = parse(&text, list_file)?;
    let Some(body) = file_body(&root) else {
        return Ok(out);
    };
    let sets: Vec<SyntaxNode> = if body.kind() == SyntaxKind::NODE_ATTR_SET {
        vec![body]
    } else {
        // `{ ... } // { ... }` chains of sets.
        body.descendants()
            .filter(|n| n.kind() == SyntaxKind::NODE_ATTR_SET)
            .filter(|n| {
                n.parent()
                    .is_some_and(|p| p.kind() == SyntaxKind::NODE_BIN_OP)
            })
            .collect()
    };
    let list_dir = list_file.parent().unwrap_or(Path::new(""));
    for set in sets {
        for binding in entries(&set) {
            if binding.kind() == SyntaxKind::NODE_INHERIT {
                // `inherit (callPackages ../x { }) a b;`: each name is a package of
                // that one file, so the file is theirs together (see `users`).
                let from = binding
                    .children()
                    .find(|c| c.kind() == SyntaxKind::NODE_INHERIT_FROM)
                    .and_then(|from| from.children().next());
                let Some(from) = from else { continue };
                if let Some(entry @ Entry::Call(_)) =
                    classify(&from, source, list_file, list_dir, &text, &binding)
                {
                    for name in inherit_names(&binding).1 {
                        out.insert(name, entry.clone());
                    }
                }
                continue;
            }
            let Some(path) = binding_path(&binding) else {
                continue;
            };
            let [name] = path.as_slice() else { continue };
            let Some(value) = binding_value(&binding) else {
                continue;
            };
            if let Some(entry) = classify(&value, source, list_file, list_dir, &text, &binding) {
                out.insert(name.clone(), entry);
            }
        }
    }
    Ok(out)
}

fn classify(
    value: &SyntaxNode,
    source: &dyn TreeSource,
    list_file: &Path,
    list_dir: &Path,
    text: &str,
    binding: &SyntaxNode,
) -> Option<Entry> {
    let value = unparen(value.clone());
    // `with python3Packages; toPythonApplication foo`
    if value.kind() == SyntaxKind::NODE_WITH {
        let namespace = value.children().next().and_then(|n| select_path(&n))?;
        let body = unparen(value.children().last()?);
        let is_python = namespace
            .first()
            .is_some_and(|f| is_python3_set(f, namespace.get(1).map(String::as_str)).is_some());
        if is_python && body.kind() == SyntaxKind::NODE_APPLY {
            let (head, args) = apply_parts(&body);
            let head = select_path(&head)?;
            if head.last().map(String::as_str) == Some("toPythonApplication")
                && let [arg] = args.as_slice()
            {
                let arg = select_path(arg)?;
                return arg.last().cloned().map(Entry::PythonApplication);
            }
        }
        return None;
    }
    if value.kind() != SyntaxKind::NODE_APPLY {
        return None;
    }
    let (head, args) = apply_parts(&value);
    let head_path = select_path(&head)?;
    let last = head_path.last()?.as_str();
    if matches!(last, "callPackage" | "callPackages") {
        let target = args.first().map(|a| unparen(a.clone()))?;
        if target.kind() != SyntaxKind::NODE_PATH_REL || target.children_with_tokens().count() != 1
        {
            return None;
        }
        let raw = target.text().to_string();
        let joined = normalize(&list_dir.join(&raw))?;
        let (target, target_is_dir) = if source.is_dir(&joined) {
            (joined.join("default.nix"), true)
        } else {
            (joined, false)
        };
        return Some(Entry::Call(CallSite {
            list_file: list_file.to_path_buf(),
            range: start(binding)..end(binding),
            line: line_col(text, start(binding)).0,
            target,
            target_is_dir,
        }));
    }
    if matches!(
        last,
        "override" | "overrideAttrs" | "overridePythonAttrs" | "overrideDerivation"
    ) && head_path.len() >= 2
    {
        return Some(Entry::OverrideOf(
            head_path[..head_path.len() - 1].join("."),
        ));
    }
    // Wrappers such as `lowPrio (callPackage ...)` or `lib.recurseIntoAttrs (...)`.
    if let [arg] = args.as_slice() {
        return classify(arg, source, list_file, list_dir, text, binding);
    }
    None
}

/// `f a b c` → (`f`, [a, b, c]).
fn apply_parts(apply: &SyntaxNode) -> (SyntaxNode, Vec<SyntaxNode>) {
    let mut args = Vec::new();
    let mut node = apply.clone();
    while node.kind() == SyntaxKind::NODE_APPLY {
        let mut children = node.children();
        let (Some(function), Some(argument)) = (children.next(), children.next()) else {
            break;
        };
        args.push(argument);
        node = unparen(function);
    }
    args.reverse();
    (node, args)
}
