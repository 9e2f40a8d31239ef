//! The daemon's layout, checked: folders follow the pipeline, each imports
//! only from the layers below it, and no two modules import each other
//! (directly or round a longer loop). ARCHITECTURE.md explains the order.
//!
//! Test code (`#[cfg(test)] mod tests` and `tests.rs` files) may use fakes
//! from above what it tests, so it is left out; so are comments.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, lowest first; a module may use its own layer and those
/// before it. `lib.rs` and `main.rs` wire everything and are exempt.
const LAYERS: [&str; 10] = [
    "base", "config", "v4l2", "source", "encoder", "audio", "sim", "pipeline", "sink", "control",
];

type Module = Vec<String>;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `src/sink/srt/mod.rs` → `["sink", "srt"]`.
fn module_of(file: &Path) -> Module {
    let rel = file.strip_prefix(src()).unwrap().with_extension("");
    let mut m: Module = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if m.last().is_some_and(|l| l == "mod") {
        m.pop();
    }
    if m == ["lib"] || m == ["main"] {
        m.clear();
    }
    m
}

/// The file's code without comments and without its test module.
fn product_code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Paths after `prefix` (`crate::` or `super::`), as segments.
fn paths_after(code: &str, prefix: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(i) = code[from..].find(prefix).map(|i| i + from) {
        let before = code[..i].chars().last();
        from = i + prefix.len();
        let rest = &code[from..];
        // Part of a longer name, or the second `super::` of a chain.
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        let mut segs = Vec::new();
        let mut s = rest;
        loop {
            let end = s
                .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
                .unwrap_or(s.len());
            if end == 0 {
                break;
            }
            segs.push(s[..end].to_string());
            match s[end..].strip_prefix("::") {
                Some(next) => s = next,
                None => break,
            }
        }
        out.push(segs);
    }
    out
}

/// Every module's product code and the modules it uses.
fn graph() -> BTreeMap<Module, BTreeSet<Module>> {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let modules: BTreeSet<Module> = files.iter().map(|f| module_of(f)).collect();
    let longest_known = |path: &[String]| -> Option<Module> {
        (1..=path.len())
            .rev()
            .map(|k| path[..k].to_vec())
            .find(|m| modules.contains(m))
    };
    let mut g = BTreeMap::new();
    for f in &files {
        if f.file_name().is_some_and(|n| n == "tests.rs") {
            continue;
        }
        let me = module_of(f);
        let code = product_code(&std::fs::read_to_string(f).unwrap());
        let mut uses = BTreeSet::new();
        for p in paths_after(&code, "crate::") {
            if let Some(m) = longest_known(&p) {
                uses.insert(m);
            }
        }
        for p in paths_after(&code, "super::") {
            // `super::super::x` arrives as ["super", "x"].
            let ups = 1 + p.iter().take_while(|s| *s == "super").count();
            let rest = &p[ups - 1..];
            let parent = me[..me.len().saturating_sub(ups)].to_vec();
            let full: Vec<String> = parent.iter().chain(rest).cloned().collect();
            uses.insert(longest_known(&full).unwrap_or(parent));
        }
        uses.remove(&me);
        uses.remove(&Vec::new());
        g.insert(me, uses);
    }
    g
}

#[test]
fn at_most_twelve_entries_at_the_top_of_src() {
    let n = std::fs::read_dir(src()).unwrap().count();
    assert!(n <= 12, "src/ has {n} entries");
    for layer in LAYERS {
        let folder = src().join(layer);
        assert!(
            folder.is_dir() || folder.with_extension("rs").is_file(),
            "{layer} is missing"
        );
    }
}

#[test]
fn each_layer_uses_only_the_layers_below_it() {
    let rank = |m: &Module| {
        LAYERS
            .iter()
            .position(|l| m.first().is_some_and(|f| f == l))
    };
    let mut wrong = Vec::new();
    for (m, uses) in graph() {
        let Some(mine) = rank(&m) else { continue };
        for u in uses {
            match rank(&u) {
                Some(theirs) if theirs <= mine => {}
                _ => wrong.push(format!("{} uses {}", m.join("::"), u.join("::"))),
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports from above:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn no_import_cycles() {
    let g = graph();
    // Depth-first search; a module met again on the current path is a loop.
    fn visit(
        m: &Module,
        g: &BTreeMap<Module, BTreeSet<Module>>,
        path: &mut Vec<Module>,
        done: &mut BTreeSet<Module>,
    ) -> Option<Vec<Module>> {
        if let Some(i) = path.iter().position(|p| p == m) {
            return Some(path[i..].to_vec());
        }
        if done.contains(m) {
            return None;
        }
        path.push(m.clone());
        for u in g.get(m).into_iter().flatten() {
            if let Some(c) = visit(u, g, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(m.clone());
        None
    }
    let mut done = BTreeSet::new();
    for m in g.keys() {
        if let Some(c) = visit(m, &g, &mut Vec::new(), &mut done) {
            let names: Vec<String> = c.iter().map(|m| m.join("::")).collect();
            panic!("import cycle: {} → back", names.join(" → "));
        }
    }
}

#[test]
fn the_checker_sees_paths() {
    let code = "use crate::base::bus::{FrameBus, lock};\nlet x = super::super::output::State;";
    assert_eq!(paths_after(code, "crate::")[0], ["base", "bus"]);
    assert_eq!(paths_after(code, "super::"), [["super", "output"]]);
    assert!(product_code("a // crate::x\n#[cfg(test)]\nmod tests { crate::y }").trim() == "a");
}
