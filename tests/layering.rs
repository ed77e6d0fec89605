//! The layers of `src/` point one way: each top-level module may use only the modules below it.
//!
//! ```text
//! wire, config → base → session, sinks, flow → modules → pipeline → ingest → control, send
//! ```
//!
//! `base` is the vocabulary every layer shares, and `modules` (with `base`) is the API a user's own
//! module builds on, so nothing inside `pipeline` or above can reach a user's module by a change of
//! its own. This test reads every `crate::` path in the library's code (comments left out) and
//! fails on a reference that goes up or sideways, and on a top-level module it does not know, so
//! that a new one has to be given its place here.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Each top-level module's layer; a module may use modules of lower layers only.
const LAYERS: &[(&str, u32)] = &[
    ("wire", 0),
    ("config", 0),
    ("base", 1),
    ("session", 2),
    ("sinks", 2),
    ("flow", 2),
    ("modules", 3),
    ("pipeline", 4),
    ("ingest", 5),
    ("control", 6),
    ("send", 6),
];

fn layer(module: &str) -> Option<u32> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, l)| *l)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src/ is readable") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to: `src/base/packet.rs` → `base`, `src/config.rs` →
/// `config`; `None` for the crate roots.
fn top_module(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    match first {
        "lib.rs" | "main.rs" => None,
        f => Some(f.trim_end_matches(".rs").to_owned()),
    }
}

/// The top-level modules named by `crate::…` paths in `text`: in code, and in doc comments (`///`,
/// `//!`), whose intra-doc links rustdoc resolves as real paths — a link up the layers is as much
/// a cycle as a `use`. Plain `//` comments are prose and left out.
fn references(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        let code = if trimmed.starts_with("///") || trimmed.starts_with("//!") {
            trimmed
        } else {
            line.split("//").next().unwrap_or("")
        };
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let name: String = rest[at + 7..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.insert(name);
            }
            rest = &rest[at + 7..];
        }
    }
    found
}

#[test]
fn layers_point_one_way() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut wrong = Vec::new();
    let mut seen = BTreeSet::new();
    for file in &files {
        let Some(module) = top_module(&src, file) else {
            continue;
        };
        seen.insert(module.clone());
        let Some(own) = layer(&module) else {
            wrong.push(format!(
                "{}: top-level module `{module}` has no layer in tests/layering.rs",
                file.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(file).expect("source is readable");
        for used in references(&text) {
            if used == module {
                continue;
            }
            match layer(&used) {
                Some(l) if l < own => {}
                Some(l) => wrong.push(format!(
                    "{}: `{module}` (layer {own}) uses `crate::{used}` (layer {l})",
                    file.display()
                )),
                None => wrong.push(format!(
                    "{}: `crate::{used}` is not a known top-level module",
                    file.display()
                )),
            }
        }
    }
    assert!(wrong.is_empty(), "layering broken:\n{}", wrong.join("\n"));
    // The check must have looked at the real tree, not at nothing.
    for expected in ["wire", "base", "modules", "pipeline", "control"] {
        assert!(seen.contains(expected), "no files found for `{expected}`");
    }
}

#[test]
fn the_reference_scanner_reads_code_and_doc_links_and_skips_comments() {
    let text = "use crate::base::{Packet, Timestamp};\n\
                let x = crate::pipeline::steer::shard_of(1, 2); // crate::control here is a comment\n\
                /// [`crate::ingest`] in a doc comment\n";
    let found: Vec<_> = references(text).into_iter().collect();
    assert_eq!(found, ["base", "ingest", "pipeline"]);
}
