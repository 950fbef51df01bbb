//! Imports run one way. Each top-level module of `src/` may use only modules in layers
//! below its own (or beside it, where the table says so); a new `use crate::…` that
//! points upwards fails here, naming the file.

use std::collections::BTreeMap;
use std::path::Path;

/// Bottom to top. Data flows file → sketch → spec → renderer/trainer → image/run → studio.
const LAYERS: &[&[&str]] = &[
    &["sketch", "noise", "alloc", "device", "ranks"],
    &["recipe"],
    &["run"],
    &["truchet", "cppn"],
    // A CPPN-GAN's generator is a CPPN: gan builds on cppn's coordinates and renderer.
    &["gan"],
    // The upscaler runs its convolutions on gan's CPU kernels.
    &["upscale"],
    &["spec"],
    &["studio"],
    &["cli"],
];

/// Known upward edges, each with the reason it is still there (none now: `gan::data`
/// gets a sketch-made training set's loader from its caller instead of calling `spec`).
const EXCEPTIONS: &[(&str, &str, &str)] = &[];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

fn visit(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            visit(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn no_module_imports_a_layer_above_its_own() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = vec![];
    visit(&src, &mut files);
    let mut upward: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for file in files {
        let rel = file.strip_prefix(&src).unwrap();
        let top = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if top == "lib" || top == "main" {
            continue;
        }
        let Some(own) = layer_of(&top) else {
            panic!("src/{top} is in no layer: add it to LAYERS in tests/layers.rs");
        };
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for part in code.split("crate::").skip(1) {
                let used: String = part
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if used == top || used.is_empty() {
                    continue;
                }
                let Some(theirs) = layer_of(&used) else {
                    panic!("{}:{}: crate::{used} is in no layer", rel.display(), n + 1);
                };
                let allowed = EXCEPTIONS.iter().any(|(a, b, _)| *a == top && *b == used);
                if theirs >= own && !allowed {
                    upward
                        .entry(format!("{top} → {used}"))
                        .or_default()
                        .push(format!("src/{}:{}", rel.display(), n + 1));
                }
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports that point up or sideways: {upward:#?}"
    );
}

/// Model internals the studio reaches only through `spec` (`spec::Upscaling`,
/// `spec::CppnNetwork`), so a model's modules can change without touching the studio.
/// (Its render worker still calls the renderers `cppn::render`, `truchet` and the GAN
/// sampler `gan::saved` directly.)
const STUDIO_FORBIDDEN: &[&str] = &["crate::upscale", "crate::cppn::net"];

#[test]
fn the_studio_reaches_the_upscaler_and_cppn_weights_through_spec() {
    let studio = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/studio");
    let mut files = vec![];
    visit(&studio, &mut files);
    let mut found = vec![];
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for f in STUDIO_FORBIDDEN {
                if code.contains(f) {
                    found.push(format!("{}:{}: {f}", file.display(), n + 1));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "model internals in the studio: {found:#?}"
    );
}
