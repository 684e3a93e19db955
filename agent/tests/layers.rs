//! The agent's folders are layers, and imports between them point one way:
//! a file may use its own folder and the layers below it, never above. The
//! leaves do not use each other except the error type.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Bottom up. A module not listed here fails the test: place it.
const LAYERS: &[&[&str]] = &[
    &["error"],
    &["config", "clock", "metrics", "failpoint", "disk"],
    &["core"],
    &["format"],
    &["read"],
    &["log"],
    &["cluster"],
    &["groups"],
    &["upkeep"],
    &["auth"],
    &["service"],
    &["frontend"],
    &["agent", "lib"],
];

fn rank(module: &str) -> usize {
    LAYERS.iter().position(|l| l.contains(&module)).unwrap_or_else(|| panic!("module {module} has no layer"))
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level module a file belongs to (`log/wal.rs` -> `log`).
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel.components().next().unwrap().as_os_str().to_string_lossy().into_owned();
    first.trim_end_matches(".rs").to_string()
}

/// Every `crate::name` a file's code (not its comments) names.
fn uses(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines().map(str::trim_start).filter(|l| !l.starts_with("//")) {
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            if !name.is_empty() {
                out.push(name);
            }
        }
        // `use crate::{a, b}` groups.
        if let Some(group) = line.strip_prefix("use crate::{") {
            for name in group.split([',', '}', ':']).map(str::trim) {
                if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    out.push(name.to_string());
                }
            }
        }
    }
    out
}

#[test]
fn imports_point_down_the_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut all = Vec::new();
    files(&src, &mut all);
    let mut wrong = BTreeMap::new();
    for file in &all {
        let module = module_of(&src, file);
        let text = std::fs::read_to_string(file).unwrap();
        for used in uses(&text) {
            if used == module {
                continue;
            }
            let (from, to) = (rank(&module), rank(&used));
            // Within a layer only the error type is shared; above, anything below.
            if to > from || (to == from && used != "error") {
                wrong.insert(format!("{} uses crate::{used}", file.strip_prefix(&src).unwrap().display()), ());
            }
        }
    }
    assert!(wrong.is_empty(), "imports against the layers:\n{}", wrong.into_keys().collect::<Vec<_>>().join("\n"));
}

#[test]
fn every_module_has_a_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut all = Vec::new();
    files(&src, &mut all);
    for file in &all {
        rank(&module_of(&src, file));
    }
}
