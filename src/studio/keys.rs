//! The studio's keys, in one table: key handling, the footer and the help overlay all
//! read it, so a key cannot work without being listed, or be listed without working.

use crossterm::event::KeyCode;

/// What a key asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Up,
    Down,
    First,
    Last,
    Rerender,
    Favourite,
    Train,
    PauseResume,
    Stop,
    Play,
    RawChart,
    LogChart,
    SwdChart,
    NextSeed,
    PreviousSeed,
    NextKnob,
    PreviousKnob,
    KnobUp,
    KnobDown,
    KnobUpCoarse,
    KnobDownCoarse,
    WriteKnobs,
    Fullscreen,
    Variations,
    Pick,
    Back,
    Stronger,
    Weaker,
    CloseVariations,
    Export,
    Upscale,
    Help,
    Quit,
}

/// One row of the table.
pub struct Binding {
    pub action: Action,
    pub codes: &'static [KeyCode],
    /// Keys as the help shows them.
    pub keys: &'static str,
    pub help: &'static str,
    /// (key, word) in the footer, if it is there.
    pub hint: Option<(&'static str, &'static str)>,
    /// Footer hints go first-dropped-first on narrow terminals (0: never dropped).
    pub drop_order: u8,
    /// Only over a folder of sketches (not when watching one run).
    pub studio_only: bool,
    /// When the footer offers it (the help always lists it).
    pub shown: Shown,
}

/// The footer offers a key only where it does something: run keys beside the run
/// panels, seed and knob keys beside a picture (knob keys only when there are knobs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shown {
    Always,
    Runs,
    Pictures,
    Knobs,
    /// While the grid of variations is open.
    Grid,
    /// While a grid of mutations (a CPPN's) is open: seeds have no strength.
    Mutations,
    /// Beside a run whose process is alive (pause and stop act on it).
    ActiveRun,
    /// When a pick can be undone.
    History,
    /// Beside a picture that has a latent loop to play (a CPPN with an animation).
    Animation,
}

/// What the screen shows now, for the footer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Showing {
    /// Over a folder of sketches (not `easel watch`).
    pub studio: bool,
    /// The run and loss panels are up.
    pub runs: bool,
    /// The selected sketch has knobs.
    pub knobs: bool,
    /// The grid of variations is open.
    pub grid: bool,
    /// That grid holds mutations of a CPPN (not other seeds).
    pub mutations: bool,
    /// The run shown is alive: running, paused or starting.
    pub run_active: bool,
    /// Backspace has a pick to undo.
    pub history: bool,
    /// The picture shown has a latent loop to play.
    pub animation: bool,
}

impl Shown {
    fn offered(self, now: Showing) -> bool {
        match self {
            Shown::Always => true,
            Shown::Runs => now.runs,
            // The grid has keys of its own; n, space and e act on the current picture.
            Shown::Pictures => !now.runs && !now.grid,
            Shown::Knobs => !now.runs && now.knobs && !now.grid,
            Shown::Grid => now.grid,
            Shown::Mutations => now.grid && now.mutations,
            Shown::ActiveRun => now.runs && now.run_active,
            Shown::History => now.history,
            Shown::Animation => !now.runs && !now.grid && now.animation,
        }
    }
}

const fn row(
    action: Action,
    codes: &'static [KeyCode],
    keys: &'static str,
    help: &'static str,
) -> Binding {
    Binding {
        action,
        codes,
        keys,
        help,
        hint: None,
        drop_order: 0,
        studio_only: false,
        shown: Shown::Always,
    }
}

impl Binding {
    const fn hint(mut self, key: &'static str, word: &'static str, drop_order: u8) -> Self {
        self.hint = Some((key, word));
        self.drop_order = drop_order;
        self
    }

    const fn studio_only(mut self) -> Self {
        self.studio_only = true;
        self
    }

    const fn shown(mut self, shown: Shown) -> Self {
        self.shown = shown;
        self
    }
}

use Action::*;
use KeyCode::{Backspace, Char, Down as ArrowDown, End, Enter, Esc, Home, Up as ArrowUp};

/// In the order the help lists them (and the footer shows its hints).
pub const KEYS: &[Binding] = &[
    row(
        Up,
        &[ArrowUp, Char('k')],
        "↑ ↓  j k",
        "select a sketch (renders it)",
    )
    .hint("↑↓", "select", 0)
    .studio_only(),
    row(Down, &[ArrowDown, Char('j')], "", "").studio_only(),
    row(First, &[Home, Char('g')], "", "").studio_only(),
    row(Last, &[End, Char('G')], "", "").studio_only(),
    row(
        Rerender,
        &[Enter],
        "enter",
        "render the selected sketch again",
    ),
    row(
        Favourite,
        &[Char('s')],
        "s",
        "save a favourite: PNG + recipe in favourites/",
    )
    .hint("s", "save", 9),
    row(
        NextSeed,
        &[Char('n')],
        "n  N",
        "next / previous seed (GAN: other noise)",
    )
    .hint("n", "seed", 8)
    .studio_only()
    .shown(Shown::Pictures),
    row(PreviousSeed, &[Char('N')], "", "").studio_only(),
    row(
        NextKnob,
        &[Char(']')],
        "[] -= _+",
        "pick a knob; turn it (GAN: truncation)",
    )
    .hint("[]", "knob", 7)
    .studio_only()
    .shown(Shown::Knobs),
    row(PreviousKnob, &[Char('[')], "", "").studio_only(),
    row(KnobUp, &[Char('=')], "-  =", "")
        .hint("-=", "turn", 7)
        .studio_only()
        .shown(Shown::Knobs),
    row(KnobDown, &[Char('-')], "", "").studio_only(),
    row(KnobUpCoarse, &[Char('+')], "_  +", "").studio_only(),
    row(KnobDownCoarse, &[Char('_')], "", "").studio_only(),
    row(
        WriteKnobs,
        &[Char('w')],
        "w",
        "write the knobs into the file as its defaults",
    )
    .studio_only(),
    row(
        Variations,
        &[Char('v')],
        "v  esc",
        "9 variations (seeds; CPPN: mutations); esc closes",
    )
    .hint("v", "vary", 8)
    .studio_only()
    .shown(Shown::Pictures),
    row(
        Pick,
        &[
            Char('1'),
            Char('2'),
            Char('3'),
            Char('4'),
            Char('5'),
            Char('6'),
            Char('7'),
            Char('8'),
            Char('9'),
        ],
        "1-9",
        "pick one: the new current (v breeds from it)",
    )
    .hint("1-9", "pick", 0)
    .studio_only()
    .shown(Shown::Grid),
    row(Weaker, &[Char('<')], "<  >", "mutation strength down / up")
        .hint("<>", "strength", 5)
        .studio_only()
        .shown(Shown::Mutations),
    row(Stronger, &[Char('>')], "", "").studio_only(),
    row(CloseVariations, &[Esc], "esc", "")
        .hint("esc", "close", 4)
        .studio_only()
        .shown(Shown::Grid),
    row(Back, &[Backspace], "backspace", "undo the last pick")
        .hint("⌫", "back", 5)
        .studio_only()
        .shown(Shown::History),
    row(
        Export,
        &[Char('e')],
        "e  u",
        "export (4096, 3840x2160, gif) / upscale (ESRGAN)",
    )
    .hint("e", "export", 6)
    .studio_only()
    .shown(Shown::Pictures),
    // Documented in the export row of the help.
    row(Upscale, &[Char('u')], "u", "")
        .hint("u", "upscale", 6)
        .shown(Shown::Pictures),
    row(
        Fullscreen,
        &[Char('f')],
        "f",
        "full-screen preview (f again: back)",
    )
    .hint("f", "full", 6),
    row(
        Train,
        &[Char('t')],
        "t",
        "train the selected GAN sketch (or resume it)",
    )
    .hint("t", "train", 0)
    .studio_only()
    .shown(Shown::Runs),
    row(
        PauseResume,
        &[Char('p')],
        "p  x",
        "pause / resume, stop the training (t resumes)",
    )
    .hint("p", "pause", 4)
    .shown(Shown::ActiveRun),
    row(Stop, &[Char('x')], "x", "")
        .hint("x", "stop", 3)
        .shown(Shown::ActiveRun),
    row(
        Play,
        &[Char(' ')],
        "space",
        "play / pause a CPPN's latent loop",
    )
    .hint("space", "play", 5)
    .studio_only()
    .shown(Shown::Animation),
    row(
        RawChart,
        &[Char('r')],
        "r  l  c",
        "charts: raw losses, log scale, SWD (lower: better)",
    )
    .hint("r", "raw", 2)
    .shown(Shown::Runs),
    row(LogChart, &[Char('l')], "l", "")
        .hint("l", "log", 1)
        .shown(Shown::Runs),
    row(SwdChart, &[Char('c')], "c", ""),
    row(Help, &[Char('?')], "?", "this help").hint("?", "help", 0),
    row(
        Quit,
        &[Char('q')],
        "q  ctrl-c",
        "quit (training keeps going)",
    )
    .hint("q", "quit", 0),
];

/// The action of a key press, if the key means one.
pub fn action(code: KeyCode) -> Option<Action> {
    KEYS.iter()
        .find(|b| b.codes.contains(&code))
        .map(|b| b.action)
}

/// The rows the help shows (those with text), for the studio or for watching a run.
pub fn help_rows(studio: bool) -> impl Iterator<Item = &'static Binding> {
    KEYS.iter()
        .filter(move |b| !b.help.is_empty() && (studio || !b.studio_only))
}

/// The footer's hints that fit in `width` columns: the least needed are dropped first;
/// help and quit always stay.
pub fn footer_hints(now: Showing, width: usize) -> Vec<(&'static str, &'static str)> {
    let mut shown: Vec<&Binding> = KEYS
        .iter()
        .filter(|b| b.hint.is_some() && (now.studio || !b.studio_only) && b.shown.offered(now))
        .collect();
    let used = |shown: &[&Binding]| -> usize {
        shown
            .iter()
            .filter_map(|b| b.hint)
            .map(|(key, word)| key.chars().count() + word.chars().count() + 3)
            .sum()
    };
    while used(&shown) > width {
        let Some(drop) = shown
            .iter()
            .filter(|b| b.drop_order > 0)
            .min_by_key(|b| b.drop_order)
            .map(|b| b.action)
        else {
            break;
        };
        shown.retain(|b| b.action != drop);
    }
    shown.iter().filter_map(|b| b.hint).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_key_means_two_things() {
        let mut seen = vec![];
        for b in KEYS {
            for c in b.codes {
                assert!(!seen.contains(c), "{c:?} is bound twice");
                seen.push(*c);
            }
        }
    }

    #[test]
    fn every_footer_hint_names_a_key_of_its_row() {
        for b in KEYS {
            if let Some((key, _)) = b.hint {
                assert!(b.keys.contains(key.chars().next().unwrap()) || ["↑↓", "⌫"].contains(&key));
            }
        }
    }

    /// The footer offers `space play` only beside a latent loop, and `u` beside pictures.
    #[test]
    fn play_is_offered_only_where_there_is_a_loop() {
        let keys = |now: Showing| -> Vec<&str> {
            footer_hints(now, 200).into_iter().map(|(k, _)| k).collect()
        };
        let truchet = Showing {
            studio: true,
            ..Showing::default()
        };
        assert!(!keys(truchet).contains(&"space"));
        assert!(keys(truchet).contains(&"u"));
        let cppn = Showing {
            animation: true,
            ..truchet
        };
        assert!(keys(cppn).contains(&"space"));
        let training = Showing { runs: true, ..cppn };
        assert!(!keys(training).contains(&"space") && !keys(training).contains(&"u"));
    }

    /// Pause and stop only beside a live run; mutation strength only over mutations;
    /// back only when a pick can be undone.
    #[test]
    fn run_and_grid_keys_are_offered_only_where_they_act() {
        let keys = |now: Showing| -> Vec<&str> {
            footer_hints(now, 200).into_iter().map(|(k, _)| k).collect()
        };
        let finished = Showing {
            runs: true,
            ..Showing::default()
        };
        assert!(!keys(finished).contains(&"p") && !keys(finished).contains(&"x"));
        let live = Showing {
            run_active: true,
            ..finished
        };
        assert!(keys(live).contains(&"p") && keys(live).contains(&"x"));
        let seeds = Showing {
            studio: true,
            grid: true,
            ..Showing::default()
        };
        assert!(!keys(seeds).contains(&"<>") && !keys(seeds).contains(&"⌫"));
        let mutations = Showing {
            mutations: true,
            history: true,
            ..seeds
        };
        assert!(keys(mutations).contains(&"<>") && keys(mutations).contains(&"⌫"));
    }
}
