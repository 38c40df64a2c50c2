//! The workspace's shape stays as the README describes it: inside every crate, no module
//! imports one that imports it back (directly or around a longer circle). Pure file reading.
//!
//! A module's imports are the `crate::a::b` paths and `super::x` paths of its file (code
//! after `#[cfg(test)]` and comment lines left out), each resolved to the longest module path
//! that exists. Circles are the strongly connected groups of that graph.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Module = Vec<String>;

fn crates_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().map(Result::unwrap) {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `src/proxy/http/mod.rs` is `proxy::http`, `src/dns/message.rs` is `dns::message`;
/// `lib.rs` and `main.rs` are the crate root, left out.
fn module_of(src: &Path, file: &Path) -> Option<Module> {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Module = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    match parts.as_slice() {
        [] => None,
        [only] if only == "lib" || only == "main" => None,
        _ => Some(parts),
    }
}

/// The code of a file that counts: before its tests, without comment lines.
fn code(text: &str) -> String {
    let before_tests = text.split("#[cfg(test)]").next().unwrap_or_default();
    before_tests
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The path segments following `prefix` at each place it appears: `crate::a::b::C` gives
/// `[a, b]` (segments end at the first that is not a lowercase identifier).
fn paths_after<'a>(code: &'a str, prefix: &str) -> Vec<Vec<&'a str>> {
    let mut found = Vec::new();
    for (at, _) in code.match_indices(prefix) {
        let before = code[..at].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let rest = &code[at + prefix.len()..];
        let segments: Vec<&str> = rest
            .split("::")
            .map(|s| {
                let end = s
                    .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
                    .unwrap_or(s.len());
                &s[..end]
            })
            .take_while(|s| !s.is_empty())
            .collect();
        if !segments.is_empty() {
            found.push(segments);
        }
    }
    found
}

fn graph(src: &Path) -> BTreeMap<Module, BTreeSet<Module>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let modules: BTreeMap<Module, PathBuf> = files
        .iter()
        .filter_map(|f| module_of(src, f).map(|m| (m, f.clone())))
        .collect();
    let known: BTreeSet<&Module> = modules.keys().collect();
    let longest_known = |segments: Vec<String>| {
        (1..=segments.len())
            .rev()
            .map(|n| segments[..n].to_vec())
            .find(|candidate| known.contains(candidate))
    };
    let mut edges = BTreeMap::new();
    for (module, file) in &modules {
        let code = code(&std::fs::read_to_string(file).unwrap());
        let mut targets = BTreeSet::new();
        for segments in paths_after(&code, "crate::") {
            let segments = segments.iter().map(|s| (*s).to_owned()).collect();
            targets.extend(longest_known(segments));
        }
        for segments in paths_after(&code, "super::") {
            let mut full = module[..module.len() - 1].to_vec();
            full.extend(segments.iter().map(|s| (*s).to_owned()));
            targets.extend(longest_known(full));
        }
        // A module may name its own submodules or itself; that is no circle.
        targets.retain(|t| !t.starts_with(module));
        edges.insert(module.clone(), targets);
    }
    edges
}

/// The strongly connected groups of more than one module (Tarjan's algorithm).
fn circles(edges: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<Vec<Module>> {
    struct State<'a> {
        edges: &'a BTreeMap<Module, BTreeSet<Module>>,
        index: BTreeMap<&'a Module, usize>,
        low: BTreeMap<&'a Module, usize>,
        stack: Vec<&'a Module>,
        on_stack: BTreeSet<&'a Module>,
        found: Vec<Vec<Module>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a Module) {
        let i = s.index.len();
        s.index.insert(v, i);
        s.low.insert(v, i);
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in s.edges.get(v).into_iter().flatten() {
            let Some((w, _)) = s.edges.get_key_value(w) else {
                continue;
            };
            if !s.index.contains_key(w) {
                visit(s, w);
                let low = s.low[v].min(s.low[w]);
                s.low.insert(v, low);
            } else if s.on_stack.contains(w) {
                let low = s.low[v].min(s.index[w]);
                s.low.insert(v, low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut group = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                group.push(w.clone());
                if w == v {
                    break;
                }
            }
            if group.len() > 1 {
                group.sort();
                s.found.push(group);
            }
        }
    }
    let mut state = State {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for v in edges.keys() {
        if !state.index.contains_key(v) {
            visit(&mut state, v);
        }
    }
    state.found
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let mut problems = Vec::new();
    let mut crates: Vec<PathBuf> = std::fs::read_dir(crates_dir())
        .unwrap()
        .map(|e| e.unwrap().path().join("src"))
        .filter(|src| src.is_dir())
        .collect();
    crates.sort();
    assert!(crates.len() >= 8, "found the crates: {crates:?}");
    for src in &crates {
        let edges = graph(src);
        for group in circles(&edges) {
            let names: Vec<String> = group.iter().map(|m| m.join("::")).collect();
            let arrows: Vec<String> = group
                .iter()
                .flat_map(|from| {
                    edges[from]
                        .iter()
                        .filter(|to| group.contains(to))
                        .map(move |to| format!("{} -> {}", from.join("::"), to.join("::")))
                })
                .collect();
            problems.push(format!(
                "{}: modules {{{}}} import each other ({}); move what both need into a \
                 module both can import downward",
                src.parent().unwrap().file_name().unwrap().to_string_lossy(),
                names.join(", "),
                arrows.join("; ")
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "import circles:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_circle_finder_finds_a_circle_and_only_one() {
    let m = |s: &str| -> Module { s.split("::").map(str::to_owned).collect() };
    let mut edges = BTreeMap::new();
    edges.insert(m("a"), BTreeSet::from([m("b")]));
    edges.insert(m("b"), BTreeSet::from([m("c")]));
    edges.insert(m("c"), BTreeSet::from([m("a"), m("d")]));
    edges.insert(m("d"), BTreeSet::new());
    assert_eq!(circles(&edges), vec![vec![m("a"), m("b"), m("c")]]);
    edges.insert(m("c"), BTreeSet::from([m("d")]));
    assert!(circles(&edges).is_empty());

    let code = code("use crate::proxy::http::Connection;\n// use crate::gone;\nsuper::peers::X");
    assert_eq!(paths_after(&code, "crate::"), vec![vec!["proxy", "http"]]);
    assert_eq!(paths_after(&code, "super::"), vec![vec!["peers"]]);
}
