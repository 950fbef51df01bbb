//! Colours in sketches: `#rrggbb`, `#rgb`, a few names, or `[r, g, b]`.

pub type Rgb = [u8; 3];

const NAMED: &[(&str, Rgb)] = &[
    ("black", [0, 0, 0]),
    ("white", [255, 255, 255]),
    ("gray", [128, 128, 128]),
    ("grey", [128, 128, 128]),
    ("red", [220, 40, 40]),
    ("green", [40, 170, 80]),
    ("blue", [40, 90, 220]),
    ("yellow", [245, 205, 50]),
    ("orange", [245, 140, 40]),
    ("purple", [130, 60, 180]),
    ("pink", [240, 130, 170]),
    ("cyan", [40, 200, 220]),
    ("magenta", [210, 50, 180]),
    ("navy", [20, 30, 80]),
    ("teal", [20, 128, 128]),
    ("cream", [250, 243, 224]),
];

pub fn parse_color(text: &str) -> Result<Rgb, String> {
    let t = text.trim().to_ascii_lowercase();
    if let Some(hex) = t.strip_prefix('#') {
        let digits: Option<Vec<u8>> = hex
            .chars()
            .map(|c| c.to_digit(16).map(|d| d as u8))
            .collect();
        return match digits.as_deref() {
            Some([r, g, b]) => Ok([r * 17, g * 17, b * 17]),
            Some([r1, r0, g1, g0, b1, b0]) => Ok([r1 * 16 + r0, g1 * 16 + g0, b1 * 16 + b0]),
            _ => Err(format!(
                "bad hex colour \"{text}\"; expected #rrggbb or #rgb"
            )),
        };
    }
    NAMED
        .iter()
        .find(|(n, _)| *n == t)
        .map(|(_, c)| *c)
        .ok_or_else(|| {
            let names: Vec<&str> = NAMED.iter().map(|(n, _)| *n).collect();
            format!(
                "unknown colour \"{text}\"; use #rrggbb or one of {}",
                names.join(", ")
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hex_short_hex_and_names() {
        assert_eq!(parse_color("#ff8000"), Ok([255, 128, 0]));
        assert_eq!(parse_color("#F80"), Ok([255, 136, 0]));
        assert_eq!(parse_color("White"), Ok([255, 255, 255]));
        assert!(parse_color("#ff80").is_err());
        assert!(parse_color("chartreuse")
            .unwrap_err()
            .contains("unknown colour"));
    }
}
