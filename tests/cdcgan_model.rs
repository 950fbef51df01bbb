//! The conditional generator shipped in models/cdcgan32 (trained by sketches/gan_cdcgan.rhai
//! on three Truchet families) keeps every class alive: by `easel eval`, each class's
//! samples are recognised as that class by the project's classifier (fidelity) and vary
//! about as much as that class's real images do (diversity) — the triangles class that
//! collapsed under the old recipe included.

use std::path::Path;
use std::process::Command;

/// `(class, fidelity, diversity)` from `easel eval`'s per-class lines, e.g.
/// `  class arcs: SWD 29.7, diversity 0.96, fidelity 1.00`.
fn class_lines(text: &str) -> Vec<(String, f64, f64)> {
    let number = |line: &str, key: &str| -> f64 {
        let at = line
            .find(key)
            .unwrap_or_else(|| panic!("no {key} in {line}"))
            + key.len();
        line[at..]
            .split(|c: char| c == ',' || c.is_whitespace())
            .find(|t| !t.is_empty())
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(|| panic!("no number after {key} in {line}"))
    };
    text.lines()
        .filter_map(|l| l.strip_prefix("  class "))
        .map(|l| {
            let name = l.split(':').next().unwrap().to_string();
            (name, number(l, "fidelity "), number(l, "diversity "))
        })
        .collect()
}

#[test]
fn the_shipped_conditional_generator_keeps_every_class_alive() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(env!("CARGO_BIN_EXE_easel"))
        .args(["eval", "models/cdcgan32", "-n", "384"])
        .current_dir(root)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let classes = class_lines(&text);
    let names: Vec<&str> = classes.iter().map(|c| c.0.as_str()).collect();
    assert_eq!(names, ["arcs", "maze", "triangles"], "{text}");
    for (name, fidelity, diversity) in &classes {
        assert!(
            *fidelity >= 0.9 && *diversity >= 0.8,
            "class {name}: fidelity {fidelity}, diversity {diversity}\n{text}"
        );
    }
}

#[test]
fn class_lines_are_read_as_eval_writes_them() {
    let text = "SWD 86.5  (…)\n  class arcs: SWD 29.7, diversity 0.96, fidelity 1.00\n  class tri: SWD 231.5, diversity 0.34, fidelity 0.50  low diversity: collapsing?\nclass check: …";
    assert_eq!(
        class_lines(text),
        vec![("arcs".into(), 1.0, 0.96), ("tri".into(), 0.5, 0.34)]
    );
}
