//! Knobs: `params: #{ hue: [0.0, 1.0, 0.3], tile: [8, 64, 32] }` in a sketch's map
//! declares named values (min, max, default) that the script reads as `params.hue`.
//!
//! The declaration is read from the script's syntax tree, not by running it: the script
//! needs `params` defined *before* it runs (it may read `params.tile` in its first line),
//! and the studio's `w` rewrites the default numbers in place, so they must be literals
//! in the file anyway. The script then runs with the chosen values bound as a constant.

use std::collections::BTreeMap;
use std::path::Path;

use rhai::{ASTNode, Dynamic, Expr, Map, Position, AST};

use super::error::SketchError;

/// The value of each knob, by name (int knobs hold whole numbers).
pub type Knobs = BTreeMap<String, f64>;

/// One declared knob.
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    pub name: String,
    pub min: f64,
    pub max: f64,
    pub default: f64,
    /// All three numbers were integers: the script gets an integer, steps are whole.
    pub int: bool,
    /// Where the default number is written (for `w`, which rewrites it).
    pub default_pos: Position,
}

impl Param {
    /// `value` moved into the knob's range, and to a whole number for an int knob.
    pub fn clamp(&self, value: f64) -> f64 {
        let v = value.clamp(self.min, self.max);
        if self.int {
            v.round().clamp(self.min, self.max)
        } else {
            v
        }
    }

    /// The small step (`-`/`=` in the studio): a hundredth of the range, or 1.
    pub fn fine_step(&self) -> f64 {
        if self.int {
            1.0
        } else {
            (self.max - self.min) / 100.0
        }
    }

    /// The big step (`_`/`+`): a tenth of the range (whole for an int knob).
    pub fn coarse_step(&self) -> f64 {
        let tenth = (self.max - self.min) / 10.0;
        if self.int {
            tenth.round().max(1.0)
        } else {
            tenth
        }
    }

    /// `value` moved by `steps` of `step`, kept in range. Floats are rounded to 6
    /// decimals so that nudging 0.3 up by 0.01 gives 0.31, not 0.31000000000000005.
    pub fn nudge(&self, value: f64, step: f64, steps: i32) -> f64 {
        let moved = value + step * steps as f64;
        let moved = if self.int {
            moved
        } else {
            (moved * 1e6).round() / 1e6
        };
        self.clamp(moved)
    }

    /// The value as the script sees it: an integer for an int knob.
    pub fn dynamic(&self, value: f64) -> Dynamic {
        if self.int {
            Dynamic::from_int(value.round() as i64)
        } else {
            Dynamic::from_float(value)
        }
    }

    /// The value as a Rhai literal (and in messages): `32`, `0.3`, `1.0`.
    pub fn literal(&self, value: f64) -> String {
        if self.int {
            format!("{}", value.round() as i64)
        } else {
            // `{:?}` keeps a float a float: 1.0, not 1.
            format!("{value:?}")
        }
    }

    /// The range as messages write it: `8..=64`.
    pub fn range_text(&self) -> String {
        format!("{}..={}", self.literal(self.min), self.literal(self.max))
    }
}

/// The knobs a sketch declares, in the order written.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Params(pub Vec<Param>);

impl Params {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn get(&self, name: &str) -> Option<&Param> {
        self.0.iter().find(|p| p.name == name)
    }

    pub fn names(&self) -> String {
        self.0
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Every knob at its default.
    pub fn defaults(&self) -> Knobs {
        self.0.iter().map(|p| (p.name.clone(), p.default)).collect()
    }

    /// The defaults with `set` on top, checked: a knob the sketch does not declare, a
    /// value outside its range or a fraction for an int knob is an error naming the
    /// knob, the value and the range (`easel render --set`, a favourite's recipe).
    pub fn resolve(&self, set: &Knobs) -> Result<Knobs, String> {
        let mut values = self.defaults();
        for (name, &value) in set {
            let Some(p) = self.get(name) else {
                return Err(if self.is_empty() {
                    format!("no knob named \"{name}\": this sketch declares no params")
                } else {
                    format!("no knob named \"{name}\"; this sketch has {}", self.names())
                });
            };
            if !value.is_finite() || value < p.min || value > p.max {
                return Err(format!(
                    "knob {name} = {value} is out of its range {}",
                    p.range_text()
                ));
            }
            if p.int && value.fract() != 0.0 {
                return Err(format!(
                    "knob {name} takes whole numbers ({}), got {value}",
                    p.range_text()
                ));
            }
            values.insert(name.clone(), value);
        }
        Ok(values)
    }

    /// The `params` constant the script runs with.
    pub fn constant(&self, values: &Knobs) -> Map {
        self.0
            .iter()
            .map(|p| {
                let v = values.get(&p.name).copied().unwrap_or(p.default);
                (p.name.as_str().into(), p.dynamic(v))
            })
            .collect()
    }

    /// Reads the `params: #{ ... }` declaration from the script (none: no knobs). Each
    /// knob must be written as `[min, max, default]` with number literals, min ≤ default
    /// ≤ max.
    pub fn declared(file: &Path, ast: &AST) -> Result<Params, SketchError> {
        let mut found: Vec<(Position, Expr)> = vec![];
        ast.walk(&mut |path: &[ASTNode]| {
            if let Some(ASTNode::Expr(Expr::Map(map, _))) = path.last() {
                for (ident, value) in map.0.iter() {
                    if ident.name == "params" {
                        found.push((ident.pos, value.clone()));
                    }
                }
            }
            true
        });
        if let [(first, _), (second, _), ..] = &found[..] {
            return Err(SketchError::new(
                file,
                *second,
                format!(
                    "\"params\" is declared twice (first on line {}); declare the knobs once, in the sketch's map",
                    first.line().unwrap_or(0)
                ),
            ));
        }
        let Some((key_pos, decl)) = found.into_iter().next() else {
            return Ok(Params::default());
        };
        let Expr::Map(entries, _) = &decl else {
            return Err(SketchError::new(
                file,
                key_pos,
                "\"params\" must be a map of knobs written out, like params: #{ hue: [0.0, 1.0, 0.3], tile: [8, 64, 32] }",
            ));
        };
        let mut params = vec![];
        for (ident, value) in entries.0.iter() {
            params.push(declared_param(file, &ident.name, ident.pos, value)?);
        }
        Ok(Params(params))
    }
}

fn declared_param(
    file: &Path,
    name: &str,
    pos: Position,
    value: &Expr,
) -> Result<Param, SketchError> {
    let shape = || {
        SketchError::new(
            file,
            pos,
            format!(
                "knob \"{name}\" must be [min, max, default] written as numbers, e.g. {name}: [0.0, 1.0, 0.5] or {name}: [8, 64, 32]"
            ),
        )
    };
    let Expr::Array(items, _) = value else {
        return Err(shape());
    };
    let mut numbers = vec![];
    for item in items.iter() {
        match item {
            Expr::IntegerConstant(i, p) => numbers.push((*i as f64, true, *p)),
            Expr::FloatConstant(f, p) => numbers.push((**f, false, *p)),
            _ => return Err(shape()),
        }
    }
    let [(min, min_int, _), (max, max_int, _), (default, default_int, default_pos)] = numbers[..]
    else {
        return Err(shape());
    };
    let param = Param {
        name: name.to_string(),
        min,
        max,
        default,
        int: min_int && max_int && default_int,
        default_pos,
    };
    if !(min.is_finite() && max.is_finite() && default.is_finite()) {
        return Err(SketchError::new(
            file,
            pos,
            format!("knob \"{name}\": the numbers must be finite"),
        ));
    }
    if min > max {
        return Err(SketchError::new(
            file,
            pos,
            format!(
                "knob \"{name}\": min {} is above max {}",
                param.literal(min),
                param.literal(max)
            ),
        ));
    }
    if default < min || default > max {
        return Err(SketchError::new(
            file,
            default_pos,
            format!(
                "knob \"{name}\": default {} is outside its range {}",
                param.literal(default),
                param.range_text()
            ),
        ));
    }
    Ok(param)
}

/// `source` with the default number of each knob in `values` replaced by its value,
/// and nothing else touched (comments, spacing, other numbers). `params` must have been
/// declared from this very source (the positions point into it).
pub fn rewrite_defaults(source: &str, params: &Params, values: &Knobs) -> Result<String, String> {
    // (byte range of the literal, new text), replaced from the end so that earlier
    // ranges stay valid.
    let mut edits: Vec<(std::ops::Range<usize>, String)> = vec![];
    for p in &params.0 {
        let Some(&value) = values.get(&p.name) else {
            continue;
        };
        let range = number_at(source, p.default_pos)
            .ok_or_else(|| format!("cannot find the default of knob \"{}\" in the file", p.name))?;
        edits.push((range, p.literal(p.clamp(value))));
    }
    edits.sort_by_key(|(r, _)| std::cmp::Reverse(r.start));
    let mut out = source.to_string();
    for (range, text) in edits {
        out.replace_range(range, &text);
    }
    Ok(out)
}

/// The byte range of the number literal (with its sign) that starts at `pos`.
fn number_at(source: &str, pos: Position) -> Option<std::ops::Range<usize>> {
    let (line, col) = (pos.line()?, pos.position()?);
    let line_start: usize = source
        .split_inclusive('\n')
        .take(line - 1)
        .map(str::len)
        .sum();
    let text = &source[line_start..];
    // Rhai counts columns in characters.
    let start = line_start + text.char_indices().nth(col - 1)?.0;
    let rest = &source[start..];
    let mut len = 0;
    for (i, c) in rest.char_indices() {
        let sign = (c == '-' || c == '+') && (i == 0 || rest[..i].ends_with(['e', 'E']));
        if c.is_ascii_digit() || c == '.' || c == '_' || c == 'e' || c == 'E' || sign {
            len = i + c.len_utf8();
        } else {
            break;
        }
    }
    let literal = &rest[..len];
    literal
        .replace('_', "")
        .parse::<f64>()
        .ok()
        .map(|_| start..start + len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn declared(source: &str) -> Result<Params, SketchError> {
        let script = crate::sketch::Script::compile(source).unwrap();
        Params::declared(Path::new("k.rhai"), &script.ast)
    }

    #[test]
    fn knobs_are_int_only_when_all_three_numbers_are() {
        let p = declared(
            "#{ params: #{ hue: [0.0, 1.0, 0.3], tile: [8, 64, 32], mix: [0, 10, 2.5] } }",
        )
        .unwrap();
        let kinds: Vec<(&str, bool)> = p.0.iter().map(|p| (p.name.as_str(), p.int)).collect();
        assert_eq!(kinds, vec![("hue", false), ("tile", true), ("mix", false)]);
        assert_eq!(p.get("tile").unwrap().default, 32.0);
    }

    #[test]
    fn negative_defaults_are_found_and_rewritten() {
        let src = "#{ params: #{ x: [-2.0, 2.0, -1.5] } }";
        let p = declared(src).unwrap();
        let out = rewrite_defaults(src, &p, &Knobs::from([("x".into(), 0.25)])).unwrap();
        assert_eq!(out, "#{ params: #{ x: [-2.0, 2.0, 0.25] } }");
    }
}
