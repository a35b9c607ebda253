//! The daemon's top-level modules point one way (issue 17): no two import
//! each other, directly or through others, and `config` imports none, so it
//! can be read, tested and fuzzed alone. Read from the source, as
//! `crate::<module>` paths outside comments and test modules.

use std::collections::{BTreeMap, BTreeSet};

fn source_without_tests(path: &std::path::Path) -> String {
    let text = std::fs::read_to_string(path).expect("read source");
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => &text[..],
    };
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn rust_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// How many modules deep a file is below the crate root: `src/m.rs` and
/// `src/m/mod.rs` are 1, `src/m/sub.rs` is 2. That many `super::` reach the root.
fn depth(src: &std::path::Path, file: &std::path::Path) -> usize {
    let rel = file.strip_prefix(src).unwrap_or(file);
    let parts = rel.components().count();
    if rel.file_name().is_some_and(|n| n == "mod.rs") {
        parts - 1
    } else {
        parts
    }
}

/// The first path segment of each item in a use tree's top level:
/// `device` for `device::X`, `a` and `b` for `{a::{x, y}, b}`.
fn first_segments(tree: &str) -> Vec<String> {
    let ident = |t: &str| -> String {
        t.trim_start()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let Some(inner) = tree.trim_start().strip_prefix('{') else {
        return vec![ident(tree)];
    };
    let (mut depth, mut start, mut out) = (0usize, 0usize, Vec::new());
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => {
                out.push(ident(&inner[start..i]));
                break;
            }
            '}' => depth -= 1,
            ',' if depth == 0 => {
                out.push(ident(&inner[start..i]));
                start = i + 1;
            }
            _ => {}
        }
    }
    out
}

/// module → the other top-level modules it names, through `crate::` paths
/// (grouped ones included) and `super::` chains that reach the crate root.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let src = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/src"));
    let mut modules = BTreeMap::new();
    for e in std::fs::read_dir(src).expect("src").flatten() {
        let p = e.path();
        let name = p
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        if name == "lib" || name == "main" {
            continue;
        }
        let mut files = Vec::new();
        if p.is_dir() {
            rust_files(&p, &mut files);
        } else {
            files.push(p);
        }
        modules.insert(name, files);
    }
    let names: BTreeSet<String> = modules.keys().cloned().collect();
    modules
        .iter()
        .map(|(m, files)| {
            let mut uses = BTreeSet::new();
            for f in files {
                let text = source_without_tests(f);
                let root = format!(
                    "{}::",
                    "super::".repeat(depth(src, f)).trim_end_matches("::")
                );
                let mut named = Vec::new();
                for prefix in ["crate::", root.as_str()] {
                    for part in text.split(prefix).skip(1) {
                        named.extend(first_segments(part));
                    }
                }
                uses.extend(named.into_iter().filter(|n| names.contains(n) && n != m));
            }
            (m.clone(), uses)
        })
        .collect()
}

#[test]
fn grouped_and_relative_paths_are_read_too() {
    assert_eq!(first_segments("device::Devices"), ["device"]);
    assert_eq!(
        first_segments("{config::X, event::{Bus, Filter}}"),
        ["config", "event"]
    );
    let src = std::path::Path::new("/s/src");
    assert_eq!(depth(src, std::path::Path::new("/s/src/api/mod.rs")), 1);
    assert_eq!(depth(src, std::path::Path::new("/s/src/api/guard.rs")), 2);
    assert_eq!(depth(src, std::path::Path::new("/s/src/event.rs")), 1);
}

#[test]
fn no_two_top_level_modules_import_each_other() {
    let graph = imports();
    for start in graph.keys() {
        let mut seen = BTreeSet::new();
        let mut todo: Vec<&String> = graph[start].iter().collect();
        while let Some(m) = todo.pop() {
            assert_ne!(m, start, "{start} reaches itself: {graph:?}");
            if seen.insert(m.clone()) {
                todo.extend(graph.get(m).into_iter().flatten());
            }
        }
    }
    assert!(
        graph["config"].is_empty(),
        "config imports {:?}",
        graph["config"]
    );
}
