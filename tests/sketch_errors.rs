//! Every kind of bad sketch gives a located error (file:line:col), never a panic or a hang.

use std::path::Path;
use std::time::{Duration, Instant};

use easel::sketch::SketchError;
use easel::spec;

/// Loads and renders; returns the first error.
fn error_of(src: &str) -> SketchError {
    let result = spec::load_source(Path::new("sketches/bad.rhai"), src.to_string())
        .and_then(|s| s.spec.render());
    match result {
        Ok(_) => panic!("expected an error for:\n{src}"),
        Err(e) => e,
    }
}

fn assert_error(src: &str, line: usize, col: Option<usize>, needle: &str) {
    let e = error_of(src);
    let text = e.to_string();
    assert!(text.starts_with("sketches/bad.rhai:"), "no file in: {text}");
    assert_eq!(e.line, line, "wrong line in: {text}");
    if let Some(c) = col {
        assert_eq!(e.col, c, "wrong column in: {text}");
    }
    assert!(text.contains(needle), "expected {needle:?} in: {text}");
}

#[test]
fn unknown_family_names_the_value_and_the_choices() {
    let src = "// arcs sketch\n#{\n    kind: \"truchet\",\n    family: \"arc\",\n}\n";
    assert_error(
        src,
        4,
        Some(13),
        "unknown tile family \"arc\"; expected one of triangles, arcs, diagonals, multiscale",
    );
    assert_eq!(
        error_of(src).to_string(),
        "sketches/bad.rhai:4:13: unknown tile family \"arc\"; expected one of triangles, arcs, diagonals, multiscale"
    );
}

#[test]
fn wrong_types_are_reported_where_written() {
    assert_error(
        "#{\n kind: \"truchet\",\n tile: \"big\",\n}",
        3,
        Some(8),
        "\"tile\" must be an integer, got a string (\"big\")",
    );
    assert_error(
        "#{ kind: \"truchet\",\n antialias: 1 }",
        2,
        None,
        "\"antialias\" must be true or false",
    );
    assert_error(
        "#{ kind: \"truchet\",\n  foreground: \"#12345\" }",
        2,
        None,
        "bad hex colour",
    );
    assert_error(
        "#{ kind: \"truchet\",\n  rule: 4 }",
        2,
        None,
        "\"rule\" must be a closure",
    );
}

#[test]
fn out_of_range_values_are_errors_not_panics() {
    assert_error(
        "#{ kind: \"truchet\",\n size: -5 }",
        2,
        None,
        "must be positive",
    );
    assert_error(
        "#{ kind: \"truchet\",\n size: [100000, 100000] }",
        2,
        None,
        "too large",
    );
    assert_error(
        "#{ kind: \"truchet\",\n tile: 0 }",
        2,
        None,
        "\"tile\" must be from 2 to 4096, got 0",
    );
    assert_error(
        "#{ kind: \"truchet\", family: \"multiscale\",\n subdivide: 1.5 }",
        2,
        None,
        "must be from 0 to 1",
    );
    assert_error(
        "#{ kind: \"truchet\", family: \"multiscale\", levels: 3,\n tile: 30 }",
        2,
        None,
        "cannot be halved",
    );
    assert_error(
        "#{ kind: \"truchet\",\n channels: 2 }",
        2,
        None,
        "1 (grayscale) or 3 (RGB)",
    );
}

#[test]
fn missing_kind_and_unknown_keys_are_explained() {
    assert_error(
        "#{ size: 64 }",
        0,
        None,
        "missing key \"kind\"; expected one of truchet, cppn",
    );
    assert_error(
        "#{ kind: \"truchet\",\n\n   tilesize: 8 }",
        3,
        Some(4),
        "unknown key \"tilesize\"",
    );
    assert_error(
        "#{ kind: \"truchet\", foregound: \"#000\" }",
        1,
        Some(21),
        "unknown key \"foregound\"; did you mean \"foreground\"?",
    );
    assert_error(
        "#{ kind: \"painting\" }",
        1,
        None,
        "unknown sketch kind \"painting\"",
    );
}

#[test]
fn a_sketch_must_evaluate_to_a_map() {
    assert_error("let x = 1;\n42", 2, None, "must evaluate to a map");
}

#[test]
fn syntax_and_runtime_errors_keep_rhai_positions() {
    assert_error("#{ kind: \"truchet\",\n  size: 64 +,\n}", 2, None, "");
    assert_error(
        "let a = 1;\nlet b = a / 0;\n#{ kind: \"truchet\" }",
        2,
        None,
        "Division by zero",
    );
    assert_error("#{ kind: \"truchet\", size: 64,\n rule: |i, j, rng| {\n   let x = undefined_thing;\n   0 } }", 3, None, "undefined_thing");
}

#[test]
fn a_bad_rule_result_names_the_cell_and_the_rule() {
    assert_error(
        "#{ kind: \"truchet\", size: 64, tile: 16,\n rule: |i, j, rng| if i == 2 { \"up\" } else { 0 } }",
        2,
        None,
        "rule at cell (2, 0): expected a rotation (0–3) or #{ tile: …, rotation: … }, got a string (\"up\")",
    );
    assert_error(
        "#{ kind: \"truchet\", size: 64, tile: 16,\n rule: |i, j, rng| #{ tile: 3, rotation: 0 } }",
        2,
        None,
        "tile must be an integer 0–0",
    );
}

#[test]
fn runaway_loops_end_with_an_error_within_a_second() {
    for src in [
        "let n = 0;\nloop { n += 1; }\n#{ kind: \"truchet\" }",
        "#{ kind: \"truchet\", size: 64, tile: 16,\n rule: |i, j, rng| { while true { } 0 } }",
        "fn f(n) { f(n + 1) }\nf(0)",
    ] {
        let started = Instant::now();
        let e = error_of(src);
        let took = started.elapsed();
        assert!(took < Duration::from_millis(1000), "took {took:?}: {e}");
        assert!(e.line > 0, "no line in {e} ({took:?})");
    }
}

#[test]
fn scripts_cannot_reach_files_or_eval_strings() {
    let e = error_of("import \"secrets\" as s;\n#{ kind: \"truchet\" }");
    assert!(e.to_string().contains("secrets"), "{e}");
    let e = error_of("let x = eval(\"40 + 2\");\n#{ kind: \"truchet\" }");
    assert_eq!(e.line, 1, "{e}");
}

#[test]
fn a_script_defined_rule_function_is_used() {
    let src = "fn rule(i, j, rng) { 1 }\n#{ kind: \"truchet\", size: 64, tile: 32 }";
    let a = spec::load_source(Path::new("a.rhai"), src.into())
        .unwrap()
        .spec
        .render()
        .unwrap();
    let b = spec::load_source(Path::new("b.rhai"), src.replace("{ 1 }", "{ 2 }"))
        .unwrap()
        .spec
        .render()
        .unwrap();
    assert_ne!(a.as_bytes(), b.as_bytes());
}

#[test]
fn out_of_range_rule_results_name_the_cell_the_value_and_the_rule() {
    // Rotations are 0–3: 7 or 10^18 are mistakes, not turns to wrap around.
    assert_error(
        "#{ kind: \"truchet\", size: 64, tile: 16,\n  rule: |i, j, rng| if i == 3 && j == 1 { 7 } else { 0 } }",
        2,
        Some(9),
        "rule at cell (3, 1): rotation must be an integer 0–3, got i64 7",
    );
    assert_error(
        "#{ kind: \"truchet\", size: 64, tile: 16,\n  rule: |i, j, rng| 1000000000000000000 }",
        2,
        Some(9),
        "rule at cell (0, 0): rotation must be an integer 0–3, got i64 1000000000000000000",
    );
    assert_error(
        "#{ kind: \"truchet\", size: 64, tile: 16,\n  rule: |i, j, rng| -1 }",
        2,
        Some(9),
        "rule at cell (0, 0): rotation must be an integer 0–3, got i64 -1",
    );
    assert_error(
        "#{ kind: \"truchet\", size: 64, tile: 16,\n  rule: |i, j, rng| #{ rotation: 4 } }",
        2,
        Some(9),
        "rule at cell (0, 0): rotation must be an integer 0–3, got i64 4",
    );
    // Tile indices index `tiles` (here three motifs: 0–2).
    assert_error(
        "#{ kind: \"truchet\", family: \"multiscale\", size: 64, tile: 32, levels: 2,\n  tiles: [\"arcs\", \"line\", \"dots\"],\n  rule: |i, j, rng| #{ tile: i + j * 2, rotation: 0 } }",
        3,
        Some(9),
        "rule at cell (1, 1): tile must be an integer 0–2, got i64 3",
    );
    // A script-level `fn rule` is located at its body.
    assert_error(
        "fn rule(i, j, rng) {\n  i * 5\n}\n#{ kind: \"truchet\", size: 64, tile: 16 }",
        1,
        Some(20),
        "rule at cell (1, 0): rotation must be an integer 0–3, got i64 5",
    );
}

#[test]
fn empty_classes_are_an_error() {
    assert_error(
        "#{ kind: \"truchet\",\n  classes: #{} }",
        2,
        Some(12),
        "\"classes\" is empty",
    );
}

// ---- knobs (`params`) ------------------------------------------------------------------

#[test]
fn a_knob_with_min_above_max_is_located() {
    let src = "#{\n    kind: \"truchet\",\n    params: #{\n        tile: [64, 8, 32],\n    },\n}\n";
    assert_error(src, 4, Some(9), "knob \"tile\": min 64 is above max 8");
}

#[test]
fn a_default_outside_its_range_points_at_the_default() {
    let src = "#{\n    kind: \"truchet\",\n    params: #{ hue: [0.0, 1.0, 1.5] },\n}\n";
    assert_error(
        src,
        3,
        Some(32),
        "knob \"hue\": default 1.5 is outside its range 0.0..=1.0",
    );
}

#[test]
fn a_knob_that_is_not_three_numbers_is_located() {
    for (decl, col) in [
        ("hue: [0.0, 1.0]", 16),
        ("hue: [0.0, \"1\", 0.5]", 16),
        ("hue: 0.5", 16),
        ("hue: [0.0, 1.0, 0.2 + 0.3]", 16),
    ] {
        let src = format!("#{{\n    kind: \"truchet\",\n    params: #{{ {decl} }},\n}}\n");
        assert_error(
            &src,
            3,
            Some(col),
            "knob \"hue\" must be [min, max, default] written as numbers",
        );
    }
    let src = "let p = #{ hue: [0.0, 1.0, 0.5] };\n#{\n    kind: \"truchet\",\n    params: p,\n}\n";
    assert_error(
        src,
        4,
        Some(5),
        "\"params\" must be a map of knobs written out",
    );
}

#[test]
fn the_script_reads_knobs_anywhere_and_a_set_value_is_checked() {
    let src = "let side = params.tile * 4;\n#{\n    kind: \"truchet\",\n    params: #{ tile: [8, 64, 32], fill: [0.0, 1.0, 0.5] },\n    size: side,\n    tile: params.tile,\n    rule: |i, j, rng| if rng.float() < params.fill { 1 } else { 0 },\n}\n";
    let path = Path::new("k.rhai");
    let s = spec::load_source(path, src.to_string()).unwrap();
    assert_eq!(s.spec.size(), (128, 128));
    assert_eq!(s.knobs["tile"], 32.0);
    let set = |name: &str, v: f64| {
        spec::load_knobs(path, src.to_string(), &[(name.to_string(), v)].into())
    };
    assert_eq!(set("tile", 16.0).unwrap().spec.size(), (64, 64));
    // The rule's closure sees the value it was loaded with.
    let all = set("fill", 1.0).unwrap().spec.render().unwrap();
    let none = set("fill", 0.0).unwrap().spec.render().unwrap();
    assert_ne!(all.as_bytes(), none.as_bytes());
    let err = |name: &str, v: f64| set(name, v).unwrap_err().to_string();
    assert_eq!(
        err("tile", 65.0),
        "k.rhai: knob tile = 65 is out of its range 8..=64"
    );
    assert_eq!(
        err("tile", 9.5),
        "k.rhai: knob tile takes whole numbers (8..=64), got 9.5"
    );
    assert_eq!(
        err("size", 1.0),
        "k.rhai: no knob named \"size\"; this sketch has tile, fill"
    );
}

#[test]
fn a_bad_value_from_a_knob_points_at_the_sketch_key_not_the_declaration() {
    // The knob allows 2, the Truchet tile does not: the error is the `tile:` of the map.
    let src = "#{\n    kind: \"truchet\",\n    params: #{\n        tile: [0, 64, 0],\n    },\n    tile: params.tile,\n}\n";
    let e = error_of(src);
    assert_eq!(e.line, 6, "{e}");
    assert!(e.to_string().contains("\"tile\""), "{e}");
}

#[test]
fn knobs_declared_twice_are_an_error() {
    let src = "#{\n    kind: \"truchet\",\n    params: #{ a: [0, 1, 0] },\n    classes: #{ big: #{ params: #{ b: [0, 1, 0] } } },\n}\n";
    assert_error(
        src,
        4,
        Some(25),
        "\"params\" is declared twice (first on line 3)",
    );
}
