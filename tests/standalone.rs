//! The repository stands alone: no tracked file may point outside it at the
//! team's shared design folder (the sibling directory named `shared`), so a
//! fresh clone with nothing beside it passes its own tests. A reference that
//! comes back fails here; the planted-reference test shows the check finds
//! one.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::repo;

/// What counts as a reference to the shared folder. Built from pieces so that
/// this file does not match itself.
fn needles() -> Vec<String> {
    let shared = ["sha", "red"].concat();
    vec![
        format!("../{shared}"),
        format!("..\\{shared}"),
        format!("{shared}/design/"),
        format!("{shared}/vendor/"),
        format!("\"{shared}\" / \"vendor\""),
        format!("\"{shared}\" / \"design\""),
    ]
}

/// Tracked (and new, not ignored) files under `root`: from git when `root`
/// is a checkout, else every file outside `target/` and `.git/`.
fn files_of(root: &Path) -> Vec<PathBuf> {
    let git = Command::new("git")
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .current_dir(root)
        .output();
    if let Ok(o) = git
        && o.status.success()
        && !o.stdout.is_empty()
    {
        return o
            .stdout
            .split(|b| *b == 0)
            .filter(|p| !p.is_empty())
            .map(|p| root.join(String::from_utf8_lossy(p).as_ref()))
            .filter(|p| p.is_file())
            .collect();
    }
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            let name = e.file_name();
            if name == "target" || name == ".git" {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Every `path:line: text` under `root` that refers to the shared folder.
fn references(root: &Path) -> Vec<String> {
    let needles = needles();
    let mut found = Vec::new();
    for f in files_of(root) {
        let Ok(bytes) = std::fs::read(&f) else {
            continue;
        };
        let text = String::from_utf8_lossy(&bytes);
        for (i, line) in text.lines().enumerate() {
            if needles.iter().any(|n| line.contains(n.as_str())) {
                let rel = f.strip_prefix(root).unwrap_or(&f);
                found.push(format!("{}:{}: {}", rel.display(), i + 1, line.trim()));
            }
        }
    }
    found
}

#[test]
fn no_tracked_file_refers_to_the_shared_folder() {
    let found = references(&repo());
    assert!(
        found.is_empty(),
        "these lines depend on a folder outside the repository; vendor what they need \
         into it instead:\n{}",
        found.join("\n")
    );
}

#[test]
fn a_planted_reference_is_found() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("tests/peers")).expect("mkdir");
    let shared = ["sha", "red"].concat();
    std::fs::write(
        dir.path().join("tests/peers/check.py"),
        format!("import json\nSCHEMA = ROOT.parent / \"{shared}\" / \"vendor\" / \"x.json\"\n"),
    )
    .expect("write");
    std::fs::write(
        dir.path().join("NOTES.md"),
        format!("clean line\nsee ../{shared}/design/domain.md\n"),
    )
    .expect("write");
    std::fs::write(dir.path().join("clean.rs"), "fn main() {}\n").expect("write");
    let mut found = references(dir.path());
    found.sort();
    assert_eq!(
        found,
        vec![
            format!("NOTES.md:2: see ../{shared}/design/domain.md"),
            format!(
                "tests/peers/check.py:2: SCHEMA = ROOT.parent / \"{shared}\" / \"vendor\" / \"x.json\""
            ),
        ]
    );
}

#[test]
fn the_vendored_grafana_schema_carries_its_source_and_licence() {
    let dir = repo().join("tests/vendor/grafana");
    let schema = std::fs::read_to_string(dir.join("dashboard.jsonschema.json")).expect("schema");
    let v: serde_json::Value = serde_json::from_str(&schema).expect("schema is JSON");
    assert_eq!(v["$ref"], "#/definitions/Dashboard");
    let readme = std::fs::read_to_string(dir.join("README.md")).expect("README");
    assert!(readme.contains("grafana/grafana-foundation-sdk"));
    assert!(readme.contains("jsonschema/dashboard.jsonschema.json"));
    let licence = std::fs::read_to_string(dir.join("LICENSE")).expect("LICENSE");
    assert!(licence.contains("Apache License") && licence.contains("Version 2.0"));
}
