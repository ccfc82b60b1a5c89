//! The code's layout (ARCHITECTURE.md, "Dependencies point one way"):
//!
//! - within a crate, no file imports another that imports it back, directly
//!   or through a loop;
//! - nothing imports from the `meterflow` crate (the command line), and it
//!   holds well under 15 % of the code.
//!
//! A file's imports are the modules of its own crate it names through
//! `crate::`, `super::` or a sibling path; a `pub use` (a re-export in a
//! facade) and a glob `use super::*` (which only brings the parent's
//! re-exports of siblings) are not imports, nor is the `mod` line that
//! declares a child, nor anything inside a `#[cfg(test)] mod tests`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::support::repo;

/// Module path (`""` for the crate root, `"config/site"`) of a source file.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap_or(file).with_extension("");
    let parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    match parts.last().map(String::as_str) {
        Some("lib" | "main") if parts.len() == 1 => String::new(),
        Some("mod") => parts[..parts.len() - 1].join("/"),
        _ => parts.join("/"),
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The code that counts: comments, re-exports, globs of the parent and
/// the test module removed.
fn code(text: &str) -> String {
    let mut body = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => text[..i].to_string(),
        None => text.to_string(),
    };
    body = body
        .lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    // Drop `pub use …;` statements (they may span lines) and `use super::*;`.
    let mut out = String::new();
    let mut rest = body.as_str();
    while let Some(i) = rest.find("pub use ") {
        out.push_str(&rest[..i]);
        match rest[i..].find(';') {
            Some(j) => rest = &rest[i + j + 1..],
            None => rest = "",
        }
    }
    out.push_str(rest);
    out.replace("use super::*;", "")
}

/// The paths that follow `prefix` (`crate::a::b::C` gives `[a, b, C]`);
/// a `{…}` group gives one path per item (`crate::a::{b::C, D}` gives
/// `[a, b, C]` and `[a, D]`).
fn paths_after(code: &str, prefix: &str) -> Vec<Vec<String>> {
    fn segments(s: &str) -> (Vec<String>, &str) {
        let mut segs = Vec::new();
        let mut rest = s;
        loop {
            let ident: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if ident.is_empty() {
                break;
            }
            rest = &rest[ident.len()..];
            segs.push(ident);
            match rest.strip_prefix("::") {
                Some(r) if !r.starts_with('{') => rest = r,
                Some(r) => {
                    rest = r;
                    break;
                }
                None => break,
            }
        }
        (segs, rest)
    }
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(i) = code[at..].find(prefix) {
        let start = at + i + prefix.len();
        let before = code[..at + i].chars().next_back();
        at = start;
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        let (head, rest) = segments(&code[start..]);
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let (tail, _) = segments(item.trim());
                let mut p = head.clone();
                p.extend(tail);
                if !p.is_empty() {
                    out.push(p);
                }
            }
        } else if !head.is_empty() {
            out.push(head);
        }
    }
    out
}

/// The deepest module of `modules` that `base` + `path` names, or `base`.
fn resolve(modules: &BTreeMap<String, String>, base: &str, path: &[String]) -> String {
    let mut best = base.to_string();
    let mut cur = base.to_string();
    for seg in path {
        cur = if cur.is_empty() {
            seg.clone()
        } else {
            format!("{cur}/{seg}")
        };
        if modules.contains_key(&cur) {
            best = cur.clone();
        } else {
            break;
        }
    }
    best
}

/// The import graph of one crate's files: module → modules it imports.
fn graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let modules: BTreeMap<String, String> = files
        .iter()
        .filter_map(|f| Some((module_of(src, f), code(&std::fs::read_to_string(f).ok()?))))
        .collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (m, body) in &modules {
        let parent = m
            .rsplit_once('/')
            .map_or(String::new(), |(p, _)| p.to_string());
        let mut to = BTreeSet::new();
        for p in paths_after(body, "crate::") {
            to.insert(resolve(&modules, "", &p));
        }
        for p in paths_after(body, "super::") {
            to.insert(resolve(&modules, &parent, &p));
        }
        // A parent naming its child (`child::…`) beyond its `mod child;`.
        for child in modules.keys() {
            let leaf = if m.is_empty() {
                Some(child.as_str())
            } else {
                child.strip_prefix(&format!("{m}/"))
            };
            let Some(leaf) = leaf else {
                continue;
            };
            if leaf.is_empty() || leaf.contains('/') {
                continue;
            }
            for p in paths_after(body, &format!("{leaf}::")) {
                let mut full = vec![leaf.to_string()];
                full.extend(p);
                to.insert(resolve(&modules, m, &full));
            }
        }
        to.remove(m);
        to.retain(|t| modules.contains_key(t));
        edges.insert(m.clone(), to);
    }
    edges
}

/// Every loop of the graph, as module paths (`lib` for the root).
fn loops(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    fn visit(
        u: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
        out: &mut Vec<String>,
    ) {
        state.insert(u.to_string(), 1);
        stack.push(u.to_string());
        for v in edges.get(u).into_iter().flatten() {
            match state.get(v.as_str()) {
                Some(1) => {
                    let from = stack.iter().position(|s| s == v).unwrap_or(0);
                    let mut cycle: Vec<&str> = stack[from..].iter().map(String::as_str).collect();
                    cycle.push(v);
                    let named: Vec<&str> = cycle
                        .iter()
                        .map(|m| if m.is_empty() { "lib" } else { m })
                        .collect();
                    out.push(named.join(" -> "));
                }
                Some(_) => {}
                None => visit(v, edges, state, stack, out),
            }
        }
        stack.pop();
        state.insert(u.to_string(), 2);
    }
    let mut state = BTreeMap::new();
    let mut out = Vec::new();
    for u in edges.keys() {
        if !state.contains_key(u) {
            visit(u, edges, &mut state, &mut Vec::new(), &mut out);
        }
    }
    out
}

#[test]
fn no_crate_has_an_import_loop_between_its_files() {
    let crates = repo().join("crates");
    let mut found = Vec::new();
    let mut checked = 0;
    for e in std::fs::read_dir(&crates).expect("crates/").flatten() {
        let src = e.path().join("src");
        if !src.is_dir() {
            continue;
        }
        checked += 1;
        for l in loops(&graph(&src)) {
            found.push(format!("{}: {l}", e.file_name().to_string_lossy()));
        }
    }
    assert!(checked >= 15, "only {checked} crates found");
    assert!(found.is_empty(), "import loops:\n{}", found.join("\n"));
}

#[test]
fn the_loop_check_finds_a_planted_loop_and_ignores_facades() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("config")).expect("mkdir");
    let write = |p: &str, t: &str| std::fs::write(src.join(p), t).expect("write");
    // A facade root: `mod` lines and re-exports only.
    write(
        "lib.rs",
        "mod a;\nmod b;\nmod config;\npub use a::A;\npub use b::{B, b2};\n",
    );
    // a → b → config/x → a: a loop of three.
    write("a.rs", "use crate::b::B;\npub struct A;\n");
    write(
        "b.rs",
        "pub struct B;\npub fn b2() { crate::config::x::go(); }\n",
    );
    write("config.rs", "pub mod x;\npub use x::go;\n");
    write(
        "config/x.rs",
        "use super::*;\n// crate::b in a comment is no import\npub fn go() { let _ = crate::a::A; }\n#[cfg(test)]\nmod tests {\n    use crate::b::B;\n}\n",
    );
    let g = graph(&src);
    assert_eq!(g["config/x"], BTreeSet::from(["a".to_string()]));
    assert!(g[""].is_empty(), "a facade imports nothing: {:?}", g[""]);
    assert_eq!(loops(&g), vec!["a -> b -> config/x -> a".to_string()]);
    // Break it: x no longer names a.
    write("config/x.rs", "pub fn go() {}\n");
    assert!(loops(&graph(&src)).is_empty());
}

#[test]
fn nothing_imports_from_the_command_line_crate_and_it_stays_thin() {
    let root = repo();
    let mut users = Vec::new();
    let mut all = Vec::new();
    for dir in ["crates", "tests", "benches"] {
        rust_files(&root.join(dir), &mut all);
    }
    let mut cli_lines = 0usize;
    let mut total_lines = 0usize;
    for f in &all {
        let Ok(text) = std::fs::read_to_string(f) else {
            continue;
        };
        let rel = f
            .strip_prefix(&root)
            .unwrap_or(f)
            .to_string_lossy()
            .into_owned();
        if rel.starts_with("crates/") {
            total_lines += text.lines().count();
            if rel.starts_with("crates/meterflow/") {
                cli_lines += text.lines().count();
                continue;
            }
        }
        // The e2e binary's main is the one allowed use: it runs the CLI.
        if rel == "tests/src/main.rs" || rel == "tests/layout.rs" {
            continue;
        }
        for (i, line) in text.lines().enumerate() {
            if line.contains("meterflow::") && !line.contains("\"meterflow::") {
                users.push(format!("{rel}:{}: {}", i + 1, line.trim()));
            }
        }
    }
    assert!(
        users.is_empty(),
        "imports from the CLI crate:\n{}",
        users.join("\n")
    );
    let share = cli_lines as f64 / total_lines as f64;
    assert!(
        share < 0.15,
        "the CLI crate holds {cli_lines} of {total_lines} lines ({:.1} %)",
        share * 100.0
    );
}
