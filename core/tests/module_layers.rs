//! The top-level modules of `kstreams-core` form layers, and a module only imports modules of
//! layers below its own (docs/decisions.md, "Module layers"). This test reads the sources and
//! fails on any `crate::` (or `super::` up to the crate root) path that points sideways or up.
//!
//! Comments (doc links included) are not imports and are not checked. Test modules are: a unit
//! test that needs a higher layer belongs in that layer or under `core/tests/`.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// The layers, bottom first. A module may import any module of a lower layer, none of its own
/// layer (other than itself) or above. A new top-level module must be placed here.
const LAYERS: &[&[&str]] = &[
    // Leaves: identifiers, record types, serdes, the default partitioner, time, the Kafka wire codec.
    &["ids", "partitioner", "record", "serde", "time", "wire"],
    &["error"],
    &["state"],
    // The processor API and the graph its processors run in (context, run state, punctuation).
    &["processor"],
    &["topology"],
    &["task"],
    &["client", "testing"],
    &["engine"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

/// One `crate::<module>` path found in a source file.
#[derive(Debug)]
struct Import {
    file: PathBuf,
    line: usize,
    to: String,
}

#[test]
fn top_level_modules_only_import_lower_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let modules = top_level_modules(&src);
    for module in modules.keys() {
        assert!(
            layer_of(module).is_some(),
            "core/src/{module} is not in LAYERS of core/tests/module_layers.rs: place it in the \
             layer above everything it imports"
        );
    }
    for layer in LAYERS.iter().flat_map(|l| l.iter()) {
        assert!(
            modules.contains_key(*layer),
            "LAYERS names `{layer}`, which is not a module of core/src any more"
        );
    }

    let mut violations = Vec::new();
    for (module, files) in &modules {
        let own = layer_of(module).expect("checked above");
        for file in files {
            for import in imports(&src, file, &modules) {
                if import.to == *module {
                    continue;
                }
                let to = layer_of(&import.to).expect("checked above");
                if to >= own {
                    violations.push(format!(
                        "core/src/{}:{}: `{module}` (layer {own}) imports `{}` (layer {to})",
                        import.file.display(),
                        import.line,
                        import.to
                    ));
                }
            }
        }
    }
    assert!(
        violations.is_empty(),
        "imports that go sideways or up the module layers:\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_import_scanner_sees_grouped_and_super_paths() {
    let modules: BTreeMap<String, Vec<PathBuf>> = ["task", "error", "state"]
        .iter()
        .map(|m| (m.to_string(), Vec::new()))
        .collect();
    let text = "use crate::{\n    error::X,\n    state::{A, B},\n};\n// use crate::task::T;\n\
                fn f() -> $crate::task::T {}\nuse super::task::U;\nlet s = my_crate::task;\n";
    let found = scan(text, Path::new("x.rs"), 1, &modules);
    let found: Vec<(usize, &str)> = found.iter().map(|i| (i.line, i.to.as_str())).collect();
    assert_eq!(
        found,
        vec![(2, "error"), (3, "state"), (6, "task"), (7, "task")]
    );
}

/// Top-level module name → its source files.
fn top_level_modules(src: &Path) -> BTreeMap<String, Vec<PathBuf>> {
    let mut modules = BTreeMap::new();
    for entry in fs::read_dir(src).expect("read core/src") {
        let path = entry.expect("read core/src entry").path();
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("source file names are UTF-8")
            .to_owned();
        if path.is_dir() {
            let mut files = Vec::new();
            rust_files(&path, &mut files);
            modules.insert(name, files);
        } else if path.extension().is_some_and(|e| e == "rs") && name != "lib" {
            modules.insert(name, vec![path]);
        }
    }
    modules
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("read source directory") {
        let path = entry.expect("read source directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level modules `file` names through `crate::` or through `super::` up to the root.
fn imports(src: &Path, file: &Path, modules: &BTreeMap<String, Vec<PathBuf>>) -> Vec<Import> {
    let text = fs::read_to_string(file).expect("read source file");
    let rel = file.strip_prefix(src).expect("file under core/src");
    // Module depth of the file: `a.rs` and `a/mod.rs` are 1, `a/b.rs` is 2. Inline `mod`
    // blocks are deeper than this, which can only make `super::` chains look shorter.
    let components = rel.components().count();
    let depth = if rel.file_name().is_some_and(|n| n == "mod.rs") {
        components - 1
    } else {
        components
    };
    scan(&text, rel, depth, modules)
}

fn scan(
    text: &str,
    file: &Path,
    depth: usize,
    modules: &BTreeMap<String, Vec<PathBuf>>,
) -> Vec<Import> {
    // Comments out, line breaks kept so byte offsets still give line numbers.
    let code: String = text
        .lines()
        .map(|line| line.find("//").map_or(line, |i| &line[..i]))
        .collect::<Vec<_>>()
        .join("\n");
    let line_at = |offset: usize| code[..offset].matches('\n').count() + 1;
    let mut found = Vec::new();
    let mut push = |offset: usize, name: &str| {
        if modules.contains_key(name) {
            found.push(Import {
                file: file.to_owned(),
                line: line_at(offset),
                to: name.to_owned(),
            });
        }
    };
    let bytes = code.as_bytes();
    let mut i = 0;
    while i < code.len() {
        let rest = &code[i..];
        let starts_word = i == 0 || !is_ident(bytes[i - 1]);
        let after = if starts_word && rest.starts_with("crate::") {
            Some(i + "crate::".len())
        } else if starts_word && rest.starts_with("super::") {
            let mut end = i;
            let mut supers = 0;
            while code[end..].starts_with("super::") {
                end += "super::".len();
                supers += 1;
            }
            if supers == depth {
                Some(end)
            } else {
                i = end;
                continue;
            }
        } else {
            None
        };
        let Some(start) = after else {
            i += rest.chars().next().map_or(1, char::len_utf8);
            continue;
        };
        if code[start..].starts_with('{') {
            // `crate::{a::X, b::{Y, Z}}`: the first segment of each top-level item.
            let mut level = 0;
            let mut item_start = true;
            let mut j = start;
            while j < code.len() {
                match bytes[j] {
                    b'{' => {
                        level += 1;
                        item_start = level == 1;
                    }
                    b'}' => {
                        level -= 1;
                        if level == 0 {
                            break;
                        }
                    }
                    b',' if level == 1 => item_start = true,
                    c if item_start && is_ident(c) => {
                        let name = ident_at(&code, j);
                        push(j, name);
                        item_start = false;
                        j += name.len();
                        continue;
                    }
                    _ => {}
                }
                j += 1;
            }
            i = j;
        } else {
            let name = ident_at(&code, start);
            push(start, name);
            i = start + name.len().max(1);
        }
    }
    found
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn ident_at(code: &str, start: usize) -> &str {
    let len = code.as_bytes()[start..]
        .iter()
        .take_while(|&&b| is_ident(b))
        .count();
    &code[start..start + len]
}
