//! Errors that point at a place in a sketch file: `file:line:col: message`.

use std::fmt;
use std::path::{Path, PathBuf};

use rhai::{EvalAltResult, ParseError, Position};

/// A problem with a sketch, located in its source file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SketchError {
    pub file: PathBuf,
    /// 1-based line; 0 when the problem has no place (e.g. the file is unreadable).
    pub line: usize,
    /// 1-based column; 0 when unknown.
    pub col: usize,
    pub message: String,
}

impl SketchError {
    pub fn new(file: &Path, pos: Position, message: impl Into<String>) -> Self {
        SketchError {
            file: file.to_path_buf(),
            line: pos.line().unwrap_or(0),
            col: pos.position().unwrap_or(0),
            message: message.into(),
        }
    }

    /// An error with no position in the file (unreadable file, bad override).
    pub fn whole_file(file: &Path, message: impl Into<String>) -> Self {
        Self::new(file, Position::NONE, message)
    }

    /// Names `file` as the place, if the error had none (raised by a spec, which does not
    /// know the file it came from).
    pub fn or_file(mut self, file: &Path) -> Self {
        if self.file.as_os_str().is_empty() {
            self.file = file.to_path_buf();
        }
        self
    }

    pub fn from_parse(file: &Path, err: &ParseError) -> Self {
        Self::new(file, err.1, err.0.to_string())
    }

    /// Rhai runtime errors: unwrap the "in function call" wrappers so the position is
    /// the line that actually failed, not the call site.
    pub fn from_eval(file: &Path, err: &EvalAltResult) -> Self {
        Self::from_eval_at(file, err, Position::NONE)
    }

    /// As [`from_eval`](Self::from_eval), using `fallback` when Rhai gives no position
    /// (it has none for "too many operations", say).
    pub fn from_eval_at(file: &Path, err: &EvalAltResult, fallback: Position) -> Self {
        let inner = err.unwrap_inner();
        let mut pos = inner.position();
        if pos.is_none() {
            pos = err.position();
        }
        if pos.is_none() {
            pos = fallback;
        }
        let message = match inner {
            EvalAltResult::ErrorTerminated(reason, _) => {
                format!(
                    "script stopped: {}",
                    reason.clone().into_string().unwrap_or_default()
                )
            }
            EvalAltResult::ErrorTooManyOperations(_) => {
                "script stopped: too many operations (an endless loop?)".to_string()
            }
            other => strip_position_suffix(&other.to_string()),
        };
        Self::new(file, pos, message)
    }
}

/// Rhai appends " (line L, position C)" to messages; we print the place up front instead.
fn strip_position_suffix(msg: &str) -> String {
    match msg.rfind(" (line ") {
        Some(idx) if msg.ends_with(')') => msg[..idx].to_string(),
        _ => msg.to_string(),
    }
}

impl fmt::Display for SketchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.col) {
            // Raised where no file was known (a spec being rendered): the message alone.
            (0, _) if self.file.as_os_str().is_empty() => write!(f, "{}", self.message),
            (0, _) => write!(f, "{}: {}", self.file.display(), self.message),
            (l, 0) => write!(f, "{}:{}: {}", self.file.display(), l, self.message),
            (l, c) => write!(f, "{}:{}:{}: {}", self.file.display(), l, c, self.message),
        }
    }
}

impl std::error::Error for SketchError {}
