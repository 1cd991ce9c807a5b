//! The gateway's modules depend on each other one way: no module reaches,
//! directly or through others, back to itself, and no room names a room it
//! may not (the data plane never names the control plane). Read from the
//! source (every `crate::<path>` a module names outside its tests), so a
//! new cycle or trespass fails here with its path. `cargo test -p gateway --test modules --
//! --nocapture` prints the graph.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Every module (`proxy::upstream`, `control::admin::releases`, ...) with
/// the modules it names.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    let mut pending = vec![src.clone()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("src dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    let module_of = |file: &Path| -> String {
        let relative = file.strip_prefix(&src).expect("under src");
        let mut parts: Vec<String> = relative
            .components()
            .filter_map(|c| c.as_os_str().to_str())
            .map(|c| c.trim_end_matches(".rs").to_owned())
            .collect();
        if parts.last().is_some_and(|p| p == "mod") {
            parts.pop();
        }
        parts.join("::")
    };
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(f)).collect();
    // `crate::a::b::Item` names the longest module that is a prefix of it.
    let resolve = |path: &str| -> Option<String> {
        let parts: Vec<&str> = path.split("::").collect();
        (1..=parts.len())
            .rev()
            .map(|n| parts[..n].join("::"))
            .find(|candidate| modules.contains(candidate))
    };
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let module = module_of(file);
        if module == "lib" || module == "main" {
            continue;
        }
        let text = std::fs::read_to_string(file).expect("source");
        let code = text
            .split("#[cfg(test)]\nmod tests")
            .next()
            .unwrap_or_default();
        let uses = graph.entry(module.clone()).or_default();
        let mut named = Vec::new();
        for (at, _) in code.match_indices("crate::") {
            let path: String = code[at + "crate::".len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            named.push(path.trim_end_matches(':').to_owned());
        }
        // `use crate::{a, b::c}` lists.
        for (at, _) in code.match_indices("use crate::{") {
            let list = &code[at + "use crate::{".len()..];
            let list = &list[..list.find('}').unwrap_or(0)];
            named.extend(list.split(',').map(|item| item.trim().to_owned()));
        }
        for path in named {
            if let Some(target) = resolve(&path).filter(|t| *t != module) {
                uses.insert(target);
            }
        }
    }
    graph
}

/// The room a module is in: `proxy`, `control`, `contract`, or the shared
/// top-level module itself.
fn room(module: &str) -> &str {
    module.split("::").next().unwrap_or(module)
}

/// The rooms a room may not name: the data plane reaches the control plane
/// only through the published routing snapshot; the contract knows no
/// serving; the shared modules (the snapshot, metrics, the body type)
/// belong to neither plane.
fn forbidden(from: &str) -> &'static [&'static str] {
    match from {
        "proxy" => &["control", "server"],
        "contract" => &["proxy", "control", "server", "routing", "config"],
        "routing" | "metrics" | "boxed" => &["proxy", "control", "server", "contract"],
        _ => &[],
    }
}

fn trespasses(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let mut found = Vec::new();
    for (module, uses) in graph {
        for target in uses {
            if forbidden(room(module)).contains(&room(target)) {
                found.push(format!("{module} -> {target}"));
            }
        }
    }
    found
}

/// A path from `start` back to itself, if there is one.
fn cycle_through(graph: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    let mut stack = vec![(start.to_owned(), vec![start.to_owned()])];
    let mut seen = BTreeSet::new();
    while let Some((at, path)) = stack.pop() {
        for next in graph.get(&at).into_iter().flatten() {
            if next == start {
                let mut found = path.clone();
                found.push(start.to_owned());
                return Some(found);
            }
            if seen.insert(next.clone()) {
                let mut longer = path.clone();
                longer.push(next.clone());
                stack.push((next.clone(), longer));
            }
        }
    }
    None
}

#[test]
fn modules_depend_on_each_other_one_way() {
    let graph = graph();
    for (module, uses) in &graph {
        let uses: Vec<&str> = uses.iter().map(String::as_str).collect();
        println!("{module} -> {}", uses.join(", "));
    }
    let cycles: Vec<String> = graph
        .keys()
        .filter_map(|m| cycle_through(&graph, m))
        .map(|path| path.join(" -> "))
        .collect();
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

#[test]
fn each_room_names_only_what_it_may() {
    let graph = graph();
    assert!(graph.contains_key("proxy::upstream") && graph.contains_key("control::admin"));
    let found = trespasses(&graph);
    assert!(
        found.is_empty(),
        "imports across a wall:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_checker_finds_a_trespass() {
    let mut graph = BTreeMap::new();
    graph.insert(
        "proxy::grpc".to_owned(),
        BTreeSet::from(["routing".to_owned(), "control::source".to_owned()]),
    );
    graph.insert(
        "control::admin".to_owned(),
        BTreeSet::from(["proxy::state".to_owned()]),
    );
    assert_eq!(trespasses(&graph), vec!["proxy::grpc -> control::source"]);
}

#[test]
fn the_checker_finds_a_cycle() {
    let mut graph = BTreeMap::new();
    graph.insert("a".to_owned(), BTreeSet::from(["b".to_owned()]));
    graph.insert("b".to_owned(), BTreeSet::from(["c".to_owned()]));
    graph.insert("c".to_owned(), BTreeSet::from(["a".to_owned()]));
    graph.insert("d".to_owned(), BTreeSet::from(["a".to_owned()]));
    assert_eq!(
        cycle_through(&graph, "a").map(|p| p.join(" -> ")),
        Some("a -> b -> c -> a".to_owned())
    );
    assert_eq!(cycle_through(&graph, "d"), None);
}
