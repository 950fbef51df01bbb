//! Typed, checked access to the map a sketch evaluates to. Every complaint names the
//! file, line and column where the offending key or value was written.

use std::collections::BTreeSet;
use std::ops::RangeInclusive;
use std::path::Path;

use rhai::{Dynamic, FnPtr, Map};

use super::color::{parse_color, Rgb};
use super::error::SketchError;
use super::locate::Locator;

pub type Result<T> = std::result::Result<T, SketchError>;

pub struct MapReader<'a> {
    file: &'a Path,
    loc: &'a Locator,
    map: Map,
    asked: BTreeSet<String>,
}

impl<'a> MapReader<'a> {
    pub fn new(file: &'a Path, loc: &'a Locator, map: Map) -> Self {
        MapReader {
            file,
            loc,
            map,
            asked: BTreeSet::new(),
        }
    }

    pub fn file(&self) -> &Path {
        self.file
    }

    pub fn locator(&self) -> &Locator {
        self.loc
    }

    /// An error pointing at where `key`'s value was written.
    pub fn error_at(
        &self,
        key: &str,
        value: Option<&Dynamic>,
        message: impl Into<String>,
    ) -> SketchError {
        let literal = value.map(literal_of);
        SketchError::new(self.file, self.loc.value(key, literal.as_deref()), message)
    }

    pub fn contains(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }

    /// The raw value, marking the key as known.
    pub fn raw(&mut self, key: &str) -> Option<Dynamic> {
        self.asked.insert(key.to_string());
        self.map.get(key).cloned()
    }

    pub fn string(&mut self, key: &str, default: &str) -> Result<String> {
        match self.raw(key) {
            None => Ok(default.to_string()),
            Some(v) if v.is_string() => Ok(v.into_string().unwrap_or_default()),
            Some(v) => Err(self.type_error(key, &v, "a string")),
        }
    }

    /// A string that must be one of `choices`; `what` names it in the message.
    pub fn choice(
        &mut self,
        key: &str,
        what: &str,
        choices: &[&str],
        default: &str,
    ) -> Result<String> {
        let value = self.string(key, default)?;
        if choices.contains(&value.as_str()) {
            return Ok(value);
        }
        let v = Dynamic::from(value.clone());
        Err(self.error_at(
            key,
            Some(&v),
            format!(
                "unknown {what} \"{value}\"; expected one of {}",
                choices.join(", ")
            ),
        ))
    }

    pub fn int(&mut self, key: &str, default: i64, range: RangeInclusive<i64>) -> Result<i64> {
        let value = match self.raw(key) {
            None => return Ok(default),
            Some(v) => v,
        };
        let Some(i) = value.as_int().ok() else {
            return Err(self.type_error(key, &value, "an integer"));
        };
        if !range.contains(&i) {
            return Err(self.error_at(
                key,
                Some(&value),
                format!(
                    "\"{key}\" must be from {} to {}, got {i}",
                    range.start(),
                    range.end()
                ),
            ));
        }
        Ok(i)
    }

    pub fn float(&mut self, key: &str, default: f64, range: RangeInclusive<f64>) -> Result<f64> {
        match self.raw(key) {
            None => Ok(default),
            Some(v) => self.check_float(key, &v, range),
        }
    }

    pub fn check_float(
        &self,
        key: &str,
        value: &Dynamic,
        range: RangeInclusive<f64>,
    ) -> Result<f64> {
        let f = match (value.as_float(), value.as_int()) {
            (Ok(f), _) => f,
            (_, Ok(i)) => i as f64,
            _ => return Err(self.type_error(key, value, "a number")),
        };
        if !f.is_finite() || !range.contains(&f) {
            return Err(self.error_at(
                key,
                Some(value),
                format!(
                    "\"{key}\" must be from {} to {}, got {f}",
                    range.start(),
                    range.end()
                ),
            ));
        }
        Ok(f)
    }

    pub fn bool(&mut self, key: &str, default: bool) -> Result<bool> {
        match self.raw(key) {
            None => Ok(default),
            Some(v) => v
                .as_bool()
                .map_err(|_| self.type_error(key, &v, "true or false")),
        }
    }

    pub fn color(&mut self, key: &str, default: Rgb) -> Result<Rgb> {
        match self.raw(key) {
            None => Ok(default),
            Some(v) => self.check_color(key, &v),
        }
    }

    pub fn check_color(&self, key: &str, v: &Dynamic) -> Result<Rgb> {
        let parsed = if v.is_string() {
            parse_color(&v.clone().into_string().unwrap_or_default())
        } else if v.is_array() {
            let items: Vec<Dynamic> = v.clone().into_array().unwrap_or_default();
            let channels: Vec<i64> = items.iter().filter_map(|d| d.as_int().ok()).collect();
            if items.len() == 3
                && channels.len() == 3
                && channels.iter().all(|c| (0..=255).contains(c))
            {
                Ok([channels[0] as u8, channels[1] as u8, channels[2] as u8])
            } else {
                Err("an array colour must be [r, g, b] with integers 0–255".to_string())
            }
        } else {
            Err(format!(
                "expected a colour like \"#ff8800\", a name or [r, g, b], got {}",
                describe(v)
            ))
        };
        parsed.map_err(|msg| self.error_at(key, Some(v), format!("\"{key}\": {msg}")))
    }

    /// `512` (square) or `[width, height]`, each side within `1..=max_side`, and at most
    /// `max_pixels` in all so a typo cannot ask for gigabytes.
    pub fn size(
        &mut self,
        key: &str,
        default: (u32, u32),
        max_side: u32,
        max_pixels: u64,
    ) -> Result<(u32, u32)> {
        let Some(v) = self.raw(key) else {
            return Ok(default);
        };
        let (w, h) = if let Ok(s) = v.as_int() {
            (s, s)
        } else if v.is_array() {
            let items: Vec<Dynamic> = v.clone().into_array().unwrap_or_default();
            match (
                items.len(),
                items.first().map(|d| d.as_int()),
                items.get(1).map(|d| d.as_int()),
            ) {
                (2, Some(Ok(w)), Some(Ok(h))) => (w, h),
                _ => {
                    return Err(self.error_at(
                        key,
                        Some(&v),
                        format!("\"{key}\" must be an integer or [width, height]"),
                    ))
                }
            }
        } else {
            return Err(self.type_error(key, &v, "an integer or [width, height]"));
        };
        check_size(w, h, max_side, max_pixels)
            .map_err(|msg| self.error_at(key, Some(&v), format!("\"{key}\": {msg}")))
    }

    pub fn fn_ptr(&mut self, key: &str) -> Result<Option<FnPtr>> {
        match self.raw(key) {
            None => Ok(None),
            Some(v) if v.is_fnptr() => Ok(v.try_cast::<FnPtr>()),
            Some(v) => Err(self.type_error(key, &v, "a closure like |i, j, rng| ...")),
        }
    }

    pub fn map(&mut self, key: &str) -> Result<Option<Map>> {
        match self.raw(key) {
            None => Ok(None),
            Some(v) if v.is_map() => Ok(v.try_cast::<Map>()),
            Some(v) => Err(self.type_error(key, &v, "a map #{ ... }")),
        }
    }

    /// Fails on any key nobody asked for: almost always a typo.
    pub fn finish(self) -> Result<()> {
        for key in self.map.keys() {
            if !self.asked.contains(key.as_str()) {
                let known: Vec<&str> = self.asked.iter().map(String::as_str).collect();
                // A typo is usually a letter or two away from the key meant.
                let closest = known
                    .iter()
                    .map(|k| (strsim::damerau_levenshtein(key, k), *k))
                    .filter(|(d, k)| *d <= 2 && *d < k.len())
                    .min();
                let hint = closest
                    .map(|(_, k)| format!("did you mean \"{k}\"? "))
                    .unwrap_or_default();
                return Err(SketchError::new(
                    self.file,
                    self.loc.key(key),
                    format!(
                        "unknown key \"{key}\"; {hint}expected one of {}",
                        known.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }

    pub fn type_error(&self, key: &str, value: &Dynamic, expected: &str) -> SketchError {
        self.error_at(
            key,
            Some(value),
            format!("\"{key}\" must be {expected}, got {}", describe(value)),
        )
    }
}

pub fn check_size(
    w: i64,
    h: i64,
    max_side: u32,
    max_pixels: u64,
) -> std::result::Result<(u32, u32), String> {
    if w < 1 || h < 1 {
        return Err(format!("size {w}x{h} must be positive"));
    }
    if w > max_side as i64 || h > max_side as i64 {
        return Err(format!(
            "size {w}x{h} is too large; each side must be at most {max_side}"
        ));
    }
    if (w as u64) * (h as u64) > max_pixels {
        return Err(format!(
            "size {w}x{h} is too large; at most {max_pixels} pixels"
        ));
    }
    Ok((w as u32, h as u32))
}

/// How a value reads in an error message: its type, and the value when short.
pub fn describe(v: &Dynamic) -> String {
    let t = v.type_name();
    let t = t.rsplit("::").next().unwrap_or(t);
    if v.is_string() {
        format!("a string (\"{}\")", v)
    } else if v.is_int() || v.is_float() || v.is_bool() {
        format!("{t} {v}")
    } else if v.is_unit() {
        "nothing (())".to_string()
    } else {
        format!("a value of type {t}")
    }
}

fn literal_of(v: &Dynamic) -> String {
    v.to_string()
}
