//! Dependencies are chosen, not accumulated: every crate `Cargo.toml` names is used by the code
//! that may use it (the library and binary for `[dependencies]`; tests and benches too for
//! `[dev-dependencies]`). A crate nothing uses fails this test until it is removed.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods,
    reason = "integration test: a failure is a failed test"
)]

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn text_of(dirs: &[&str]) -> String {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in dirs {
        rust_files(&root.join(dir), &mut files);
    }
    files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

fn unused(section: &toml::Table, code: &str) -> Vec<String> {
    section
        .keys()
        .filter(|name| {
            let ident = name.replace('-', "_");
            !(code.contains(&format!("{ident}::")) || code.contains(&format!("use {ident}")))
        })
        .cloned()
        .collect()
}

#[test]
fn every_dependency_is_used() {
    let manifest: toml::Table =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
            .unwrap()
            .parse()
            .unwrap();
    let section = |name: &str| manifest[name].as_table().unwrap().clone();
    let product = text_of(&["src"]);
    let everything = text_of(&["src", "tests", "benches"]);
    assert_eq!(
        unused(&section("dependencies"), &product),
        Vec::<String>::new(),
        "[dependencies] the product does not use"
    );
    assert_eq!(
        unused(&section("dev-dependencies"), &everything),
        Vec::<String>::new(),
        "[dev-dependencies] no test or bench uses"
    );
}
