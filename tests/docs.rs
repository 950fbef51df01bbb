//! The README and the pages in docs/ link only to files that exist, and the README stays
//! short (the manual lives in docs/).

use std::path::{Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// README.md and every docs/*.md.
fn markdown_files() -> Vec<PathBuf> {
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .expect("docs/")
        .map(|entry| entry.expect("an entry of docs/").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .collect();
    docs.sort();
    docs.insert(0, root().join("README.md"));
    docs
}

/// (line number, target) of every `[text](target)` and `![alt](target)` outside fenced
/// code blocks and inline code.
fn links(markdown: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    let mut fenced = false;
    for (i, line) in markdown.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        // Every other piece between backticks is inline code.
        let prose: String = line.split('`').step_by(2).collect();
        let mut rest = prose.as_str();
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let end = after.find(')').unwrap_or(after.len());
            // A title may follow the target: `[a](b.md "title")`.
            let target = after[..end].split_whitespace().next().unwrap_or("");
            found.push((i + 1, target.trim_matches(['<', '>']).to_string()));
            rest = &after[end..];
        }
    }
    found
}

/// A link into the repository: not a URL, not an anchor on the same page.
fn is_relative(target: &str) -> bool {
    !(target.starts_with('#')
        || target.starts_with("http://")
        || target.starts_with("https://")
        || target.starts_with("mailto:"))
}

#[test]
fn finds_links_outside_code() {
    let text =
        "See [a](a.md#x) and ![b](img/b.png \"B\").\n```\n[c](c.md)\n```\n`[d](d.md)` [e](#e)\n";
    let found = links(text);
    assert_eq!(
        found,
        vec![
            (1, "a.md#x".to_string()),
            (1, "img/b.png".to_string()),
            (5, "#e".to_string()),
        ]
    );
    assert!(!is_relative("#e") && !is_relative("https://rhai.rs") && is_relative("a.md#x"));
}

#[test]
fn relative_links_point_at_files() {
    let mut broken = Vec::new();
    for file in markdown_files() {
        let text =
            std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let folder = file.parent().expect("a file's folder");
        for (line, target) in links(&text) {
            if !is_relative(&target) {
                continue;
            }
            let path = target.split('#').next().unwrap_or_default();
            if path.is_empty() || !folder.join(path).exists() {
                let name = file.strip_prefix(root()).unwrap_or(&file);
                broken.push(format!("{}:{line}: {target}", name.display()));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "links to files that do not exist (relative to the Markdown file's folder):\n{}",
        broken.join("\n")
    );
}

#[test]
fn readme_is_short() {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    let lines = readme.lines().count();
    assert!(
        lines <= 300,
        "README.md has {lines} lines, at most 300: the manual belongs in docs/"
    );
}
