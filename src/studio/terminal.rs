//! Which graphics protocol `--graphics auto` draws with, decided from what the terminal
//! says about itself (issue #14).
//!
//! ratatui-image's own detection picks kitty whenever the terminal answers a kitty
//! graphics query, but its kitty protocol always places images with unicode
//! placeholders, which kitty understands only from 0.28 on: kitty 0.26.5 (Debian 12)
//! shows a wall of placeholder glyphs. So the studio asks the terminal its name and
//! version (XTVERSION) and its device attributes (DA1, where a `4` means sixel) and
//! decides here, in a pure function.

use std::time::Duration;

use ratatui_image::picker::ProtocolType;

/// The first kitty that draws unicode placeholders.
const KITTY_PLACEHOLDERS_SINCE: (u32, u32) = (0, 28);

/// What the environment says about the terminal.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TermEnv {
    pub term: String,
    pub term_program: String,
    pub kitty_window_id: bool,
    pub tmux: bool,
    pub konsole: bool,
}

impl TermEnv {
    pub fn from_env() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Self {
        let set = |name: &str| var(name).is_some_and(|v| !v.is_empty());
        TermEnv {
            term: var("TERM").unwrap_or_default(),
            term_program: var("TERM_PROGRAM").unwrap_or_default(),
            kitty_window_id: set("KITTY_WINDOW_ID"),
            tmux: set("TMUX"),
            konsole: set("KONSOLE_VERSION"),
        }
    }

    /// Inside tmux or screen the answers come from the multiplexer (or, passed through,
    /// from a terminal that may change under a reattach): the studio does not ask.
    pub fn multiplexed(&self) -> bool {
        self.tmux
            || self.term.starts_with("screen")
            || self.term.starts_with("tmux")
            || self.term_program == "tmux"
    }
}

/// The terminal's replies to [`QUERY`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answers {
    /// The XTVERSION text, e.g. `kitty(0.26.5)` or `XTerm(379)`.
    pub xtversion: Option<String>,
    /// The DA1 parameters, e.g. `[63, 1, 2, 4, 6, 9, 15, 22]`.
    pub da1: Option<Vec<u32>>,
    /// Pixels per cell (width, height), from `CSI 6 ; h ; w t`.
    pub cell_size: Option<(u16, u16)>,
    /// The device status report came back: every answer before it is in.
    pub complete: bool,
}

/// XTVERSION, DA1, the cell size in pixels, and a device status report last: every
/// terminal answers that one, and in order, so its reply marks the end.
pub const QUERY: &str = "\x1b[>0q\x1b[c\x1b[16t\x1b[5n";

/// Reads the replies to [`QUERY`] out of what the terminal sent; anything else (a key
/// typed meanwhile, a reply to something else) is skipped.
pub fn parse_answers(bytes: &[u8]) -> Answers {
    let mut answers = Answers::default();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != 0x1b || i + 1 >= bytes.len() {
            i += 1;
            continue;
        }
        match bytes[i + 1] {
            // DCS > | text ST (ST is ESC \ or BEL)
            b'P' => {
                let body = i + 2;
                let end = (body..bytes.len()).find(|&k| {
                    bytes[k] == 0x07 || (bytes[k] == 0x1b && bytes.get(k + 1) == Some(&b'\\'))
                });
                let Some(end) = end else { break };
                if let Some(text) = bytes[body..end].strip_prefix(b">|") {
                    answers.xtversion = Some(String::from_utf8_lossy(text).trim().to_string());
                }
                i = end + 1;
            }
            b'[' => {
                let body = i + 2;
                // A CSI ends at its first byte in 0x40..=0x7e.
                let Some(end) = (body..bytes.len()).find(|&k| (0x40..=0x7e).contains(&bytes[k]))
                else {
                    break;
                };
                let params = &bytes[body..end];
                let numbers = |p: &[u8]| -> Option<Vec<u32>> {
                    std::str::from_utf8(p)
                        .ok()?
                        .split(';')
                        // kitty ends its DA1 with `;`: an empty parameter is skipped.
                        .filter(|n| !n.is_empty())
                        .map(|n| n.parse().ok())
                        .collect()
                };
                match (bytes[end], params.first()) {
                    (b'c', Some(b'?')) => answers.da1 = numbers(&params[1..]),
                    (b't', Some(b'6')) => {
                        if let Some([6, h, w]) = numbers(params).as_deref() {
                            let (w, h) = (u16::try_from(*w).ok(), u16::try_from(*h).ok());
                            if let (Some(w @ 1..), Some(h @ 1..)) = (w, h) {
                                answers.cell_size = Some((w, h));
                            }
                        }
                    }
                    (b'n', _) if params == b"0" || params == b"3" => answers.complete = true,
                    _ => {}
                }
                i = end + 1;
            }
            _ => i += 1,
        }
    }
    answers
}

/// `kitty(0.26.5)` → (0, 26); `None` for any other terminal.
fn kitty_version(xtversion: &str) -> Option<(u32, u32)> {
    let rest = xtversion.strip_prefix("kitty")?;
    let version = rest.trim_start_matches(['(', ' ']).trim_end_matches(')');
    let mut parts = version.split('.').map(|p| p.parse::<u32>().ok());
    Some((parts.next()??, parts.next()??))
}

/// The protocol for `--graphics auto`, or `None` under tmux/screen: there the studio
/// keeps ratatui-image's own detection, which knows tmux's passthrough.
///
/// - kitty ≥ 0.28 → kitty (unicode placeholders);
/// - an older kitty → half-blocks (ratatui-image's kitty protocol always uses
///   placeholders, and kitty has no sixel);
/// - a `4` in DA1 → sixel (not in Konsole, whose sixel ratatui-image marks as broken);
/// - anything else, or no answer → half-blocks, which work everywhere.
///
/// XTVERSION wins over the environment: `KITTY_WINDOW_ID` is inherited by an xterm
/// started from kitty, so it alone never selects kitty.
pub fn choose_protocol(answers: &Answers, env: &TermEnv) -> Option<ProtocolType> {
    if env.multiplexed() {
        return None;
    }
    let name = answers.xtversion.as_deref().unwrap_or("");
    if let Some(version) = kitty_version(name) {
        return Some(if version >= KITTY_PLACEHOLDERS_SINCE {
            ProtocolType::Kitty
        } else {
            ProtocolType::Halfblocks
        });
    }
    // A kitty that did not say its version is too old to trust with placeholders.
    let unnamed_kitty =
        answers.xtversion.is_none() && (env.kitty_window_id || env.term == "xterm-kitty");
    let konsole = env.konsole || name.starts_with("Konsole");
    let sixel = answers.da1.as_ref().is_some_and(|p| p.contains(&4));
    Some(if sixel && !konsole && !unnamed_kitty {
        ProtocolType::Sixel
    } else {
        ProtocolType::Halfblocks
    })
}

/// Sends [`QUERY`] and collects the replies for at most `timeout`, stopping as soon as
/// the status report arrives. The terminal must already be in raw mode. `None` when
/// stdin cannot be polled or nothing came back.
#[cfg(unix)]
pub fn ask_terminal(timeout: Duration) -> Option<Answers> {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    use std::time::Instant;

    let mut out = std::io::stdout();
    out.write_all(QUERY.as_bytes()).ok()?;
    out.flush().ok()?;
    let fd = std::io::stdin().as_raw_fd();
    let deadline = Instant::now() + timeout;
    let mut received = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let mut poll = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // poll, not a blocking read in a thread: a read left waiting after the timeout
        // would steal the first keys typed into the studio.
        let ready = unsafe { libc::poll(&mut poll, 1, left.as_millis().max(1) as libc::c_int) };
        if ready <= 0 {
            break;
        }
        let mut buf = [0u8; 256];
        // One read(2) per poll, straight from the descriptor: std's buffered stdin could
        // keep bytes the poll no longer sees, and that crossterm would never get.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        match usize::try_from(n) {
            Ok(0) | Err(_) => break,
            Ok(n) => received.extend_from_slice(&buf[..n]),
        }
        if parse_answers(&received).complete {
            break;
        }
    }
    let answers = parse_answers(&received);
    (answers != Answers::default()).then_some(answers)
}

#[cfg(not(unix))]
pub fn ask_terminal(_timeout: Duration) -> Option<Answers> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answers(reply: &str) -> Answers {
        parse_answers(reply.as_bytes())
    }

    fn plain_env() -> TermEnv {
        TermEnv {
            term: "xterm-256color".into(),
            ..Default::default()
        }
    }

    fn kitty_env() -> TermEnv {
        TermEnv {
            term: "xterm-kitty".into(),
            kitty_window_id: true,
            ..Default::default()
        }
    }

    #[test]
    fn replies_are_parsed_among_other_bytes() {
        let a = answers("x\x1bP>|kitty(0.26.5)\x1b\\\x1b[?62;c\x1b[6;20;10t\x1b[0n");
        assert_eq!(a.xtversion.as_deref(), Some("kitty(0.26.5)"));
        assert_eq!(a.da1, Some(vec![62]));
        assert_eq!(a.cell_size, Some((10, 20)));
        assert!(a.complete);
        let xterm = answers("\x1bP>|XTerm(379)\x1b\\\x1b[?63;1;2;4;6;9;15;22c\x1b[0n");
        assert_eq!(xterm.xtversion.as_deref(), Some("XTerm(379)"));
        assert_eq!(xterm.da1, Some(vec![63, 1, 2, 4, 6, 9, 15, 22]));
        assert_eq!(xterm.cell_size, None);
        // Cut off mid-reply: what came whole is kept, nothing panics.
        let cut = answers("\x1b[?64;4c\x1bP>|WezT");
        assert_eq!(cut.da1, Some(vec![64, 4]));
        assert_eq!(cut.xtversion, None);
        assert!(!cut.complete);
        assert_eq!(answers(""), Answers::default());
        assert_eq!(answers("\x1b[6;0;0t\x1b[?x;c\x1b"), Answers::default());
    }

    #[test]
    fn kitty_0_26_gets_no_placeholders() {
        let a = answers("\x1bP>|kitty(0.26.5)\x1b\\\x1b[?62;c\x1b[0n");
        assert_eq!(
            choose_protocol(&a, &kitty_env()),
            Some(ProtocolType::Halfblocks)
        );
    }

    #[test]
    fn kitty_0_28_and_later_gets_kitty() {
        for version in ["0.28.0", "0.35.2", "1.0.0"] {
            let a = answers(&format!("\x1bP>|kitty({version})\x1b\\\x1b[?62;c\x1b[0n"));
            assert_eq!(
                choose_protocol(&a, &kitty_env()),
                Some(ProtocolType::Kitty),
                "{version}"
            );
        }
    }

    #[test]
    fn xterm_with_sixel_in_da1_gets_sixel() {
        let a = answers("\x1bP>|XTerm(379)\x1b\\\x1b[?63;1;2;4;6;9;15;22c\x1b[0n");
        assert_eq!(choose_protocol(&a, &plain_env()), Some(ProtocolType::Sixel));
        // The name is not needed: DA1 alone says sixel.
        let a = answers("\x1b[?63;1;2;4;6;9;15;22c\x1b[0n");
        assert_eq!(choose_protocol(&a, &plain_env()), Some(ProtocolType::Sixel));
        // Even when the xterm was started from a kitty (its KITTY_WINDOW_ID inherited).
        let a = answers("\x1bP>|XTerm(379)\x1b\\\x1b[?63;1;2;4;6;9;15;22c\x1b[0n");
        assert_eq!(choose_protocol(&a, &kitty_env()), Some(ProtocolType::Sixel));
    }

    #[test]
    fn wezterm_or_unknown_without_sixel_or_no_reply_get_half_blocks() {
        let wezterm = TermEnv {
            term_program: "WezTerm".into(),
            ..plain_env()
        };
        let a = answers("\x1bP>|WezTerm 20240203-110809-5046fc22\x1b\\\x1b[?65;1;9c\x1b[0n");
        assert_eq!(
            choose_protocol(&a, &wezterm),
            Some(ProtocolType::Halfblocks)
        );
        let a = answers("\x1b[?1;2c\x1b[0n");
        assert_eq!(
            choose_protocol(&a, &plain_env()),
            Some(ProtocolType::Halfblocks)
        );
        let none = Answers::default();
        assert_eq!(
            choose_protocol(&none, &plain_env()),
            Some(ProtocolType::Halfblocks)
        );
        // A kitty that does not say its version: no placeholders.
        assert_eq!(
            choose_protocol(&none, &kitty_env()),
            Some(ProtocolType::Halfblocks)
        );
    }

    #[test]
    fn konsole_sixel_is_not_used() {
        let konsole = TermEnv {
            konsole: true,
            ..plain_env()
        };
        let a = answers("\x1b[?62;4c\x1b[0n");
        assert_eq!(
            choose_protocol(&a, &konsole),
            Some(ProtocolType::Halfblocks)
        );
    }

    #[test]
    fn under_tmux_or_screen_the_library_decides() {
        let a = answers("\x1bP>|kitty(0.26.5)\x1b\\\x1b[0n");
        let tmux = TermEnv::from_lookup(|v| match v {
            "TMUX" => Some("/tmp/tmux-0/default,1,0".into()),
            "TERM" => Some("tmux-256color".into()),
            _ => None,
        });
        assert!(tmux.multiplexed());
        assert_eq!(choose_protocol(&a, &tmux), None);
        let screen = TermEnv {
            term: "screen.xterm-256color".into(),
            ..Default::default()
        };
        assert_eq!(choose_protocol(&a, &screen), None);
        assert!(!TermEnv::from_lookup(|v| (v == "TMUX").then(String::new)).multiplexed());
    }
}
