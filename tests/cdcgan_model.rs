//! The conditional generator shipped in models/cdcgan32 (sketches/gan_cdcgan.rhai: the
//! Keras article's conditional DCGAN with class-conditional norm in G and R1 in D, on
//! three Truchet families) keeps every class alive: `easel eval` scores each class's
//! samples against that class's pictures, and every class must be recognised by the
//! shipped classifier of the real classes (fidelity ≥ 0.9) and vary nearly as much as its
//! pictures do (diversity ≥ 0.8).

use std::path::Path;
use std::process::Command;

/// (class, diversity, fidelity) from `easel eval`'s lines
/// `  class NAME: SWD a, diversity b, fidelity c`.
fn class_figures(text: &str) -> Vec<(String, f64, f64)> {
    text.lines()
        .filter_map(|line| {
            let rest = line.trim().strip_prefix("class ")?;
            let (name, figures) = rest.split_once(": ")?;
            let figure = |key: &str| -> Option<f64> {
                figures
                    .split(", ")
                    .find_map(|f| f.strip_prefix(key))?
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()
            };
            Some((
                name.to_string(),
                figure("diversity ")?,
                figure("fidelity ")?,
            ))
        })
        .collect()
}

#[test]
fn the_class_line_parser_reads_what_eval_prints() {
    let text = "SWD 51.0 (…)\n  class arcs: SWD 29.9, diversity 1.00, fidelity 1.00\n  class triangles: SWD 201.3, diversity 0.60, fidelity 0.95  low diversity: collapsing?\nclass check: …";
    assert_eq!(
        class_figures(text),
        vec![
            ("arcs".to_string(), 1.0, 1.0),
            ("triangles".to_string(), 0.6, 0.95)
        ]
    );
}

#[test]
fn every_class_of_the_shipped_conditional_generator_is_recognised_and_varied() {
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
    let classes = class_figures(&text);
    let names: Vec<&str> = classes.iter().map(|c| c.0.as_str()).collect();
    assert_eq!(names, ["arcs", "maze", "triangles"], "{text}");
    for (name, diversity, fidelity) in &classes {
        assert!(
            *fidelity >= 0.9,
            "class {name}: fidelity {fidelity} below 0.9\n{text}"
        );
        assert!(
            *diversity >= 0.8,
            "class {name}: diversity {diversity} below 0.8\n{text}"
        );
    }
}
