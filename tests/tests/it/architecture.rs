//! The architecture invariants of ARCHITECTURE.md, checked over the source tree: each is an
//! absence, so a grep over the files proves it.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Every `.rs` file under `dir` (relative to the repo), with its contents.
fn sources(dir: &str) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut stack = vec![repo().join(dir)];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                if !path.ends_with("target") {
                    stack.push(path);
                }
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                out.push((path, text));
            }
        }
    }
    assert!(!out.is_empty(), "no sources under {dir}");
    out
}

const LIBRARY_CRATES: [&str; 6] = [
    "proto",
    "common",
    "lockservice",
    "tabletserver",
    "master",
    "client",
];

#[test]
fn master_and_tabletserver_never_depend_on_each_other() {
    let manifest = |c: &str| std::fs::read_to_string(repo().join(c).join("Cargo.toml")).unwrap();
    assert!(!manifest("master").contains("tabula-tabletserver"));
    assert!(!manifest("tabletserver").contains("tabula-master"));
}

#[test]
fn only_the_cli_has_a_main() {
    for krate in LIBRARY_CRATES {
        for (path, text) in sources(&format!("{krate}/src")) {
            assert!(!path.ends_with("main.rs"), "{} is a main", path.display());
            assert!(
                !text.contains("fn main("),
                "{} has a main function",
                path.display()
            );
        }
    }
}

#[test]
fn no_std_fs_outside_the_storage_root_and_the_lock_log_store() {
    let allowed = |p: &Path| {
        p.ends_with("common/src/storage.rs")
            || p.to_string_lossy().contains("lockservice/src/store/")
    };
    for krate in LIBRARY_CRATES {
        for (path, text) in sources(&format!("{krate}/src")) {
            let name = path.file_name().unwrap().to_string_lossy();
            if allowed(&path) || ["tests.rs", "testutil.rs", "proptests.rs"].contains(&&*name) {
                continue;
            }
            // Test modules of library files may damage files on purpose; the rule is about the
            // code that serves. Comments may name the rule.
            let code = text.split("#[cfg(test)]").next().unwrap_or("");
            let uses = code
                .lines()
                .any(|l| !l.trim_start().starts_with("//") && l.contains("std::fs"));
            assert!(!uses, "{} uses std::fs", path.display());
        }
    }
}

#[test]
fn the_storage_engine_holds_no_proto_types() {
    for (path, text) in sources("tabletserver/src/engine") {
        assert!(
            !text.contains("tabula_proto"),
            "{} uses proto types",
            path.display()
        );
    }
}
