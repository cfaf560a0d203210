//! What masstockctl says: data on stdout, talk on stderr, colour only where it can be seen.
//!
//! `anstream` strips the styles when stderr is not a terminal, or `NO_COLOR` is set.

use std::io::Write as _;

use anstyle::{AnsiColor, Style};

use crate::config::Diagnostic;
use crate::error::CommandError;

const ERROR: Style = AnsiColor::Red.on_default().bold();
const WARNING: Style = AnsiColor::Yellow.on_default().bold();

/// The output settings of one invocation.
#[derive(Debug, Clone)]
pub struct Ui {
    pub json: bool,
    /// -1 with `-q`, 0 by default, 1 and more with `-v`.
    pub verbosity: i8,
    pub progress: bool,
}

impl Ui {
    /// The settings of `-v` given `verbose` times and `-q` given `quiet` times, `--json` and
    /// whether progress may be drawn.
    #[must_use]
    pub fn new(json: bool, verbose: u8, quiet: u8, progress: bool) -> Self {
        let verbosity = i8::try_from(verbose).unwrap_or(i8::MAX) - i8::try_from(quiet).unwrap_or(i8::MAX);
        Self { json, verbosity, progress }
    }

    /// A line of talk on stderr, unless `-q`.
    /// Rendered files on stdout, for a command's `--print`: `{"units":[{"name","contents"}]}` with
    /// `--json`, else each file after a `# <path>` line.
    pub fn rendered_units(&self, units: &[crate::render::RenderedFile]) {
        if self.json {
            let units: Vec<_> =
                units.iter().map(|unit| serde_json::json!({ "name": unit.path, "contents": unit.contents })).collect();
            self.json_document(&serde_json::json!({ "units": units }));
        } else {
            let text: Vec<String> =
                units.iter().map(|unit| format!("# {}\n{}", unit.path.display(), unit.contents)).collect();
            self.data(&text.join("\n"));
        }
    }

    pub fn info(&self, message: impl std::fmt::Display) {
        if self.verbosity >= 0 {
            let _ = writeln!(anstream::stderr(), "{message}");
        }
    }

    /// A detail shown with `-v`.
    pub fn detail(&self, message: impl std::fmt::Display) {
        if self.verbosity > 0 {
            let _ = writeln!(anstream::stderr(), "{message}");
        }
    }

    /// Data on stdout. A closed pipe (`| head`) is not an error.
    pub fn data(&self, text: &str) {
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush());
    }

    /// One JSON document on stdout.
    pub fn json_document(&self, value: &serde_json::Value) {
        let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| "null".to_owned());
        self.data(&format!("{text}\n"));
    }

    /// What failed, on stderr, even with `-q`: an operator must see why a command exits 1.
    pub fn failure(&self, message: impl std::fmt::Display) {
        let severity = format!("{ERROR}error{ERROR:#}");
        let _ = writeln!(anstream::stderr(), "{severity}: {message}");
    }

    pub fn warning(&self, diagnostic: &Diagnostic) {
        if self.verbosity >= 0 {
            let severity = format!("{WARNING}warning{WARNING:#}");
            let _ = write!(anstream::stderr(), "{}", diagnostic.render(&severity));
        }
    }

    /// Reports a failed command: located diagnostics first, then the error, its causes and hints.
    /// With `--json`, stdout also gets `{"error": ...}` so it still holds one document.
    pub fn command_error(&self, error: &CommandError) {
        let severity = format!("{ERROR}error{ERROR:#}");
        let mut stderr = anstream::stderr();
        for diagnostic in &error.diagnostics {
            let _ = writeln!(stderr, "{}", diagnostic.render(&severity));
        }
        let chain = error.chain();
        let _ = writeln!(stderr, "{severity}: {}", chain[0]);
        for cause in &chain[1..] {
            let _ = writeln!(stderr, "  caused by: {cause}");
        }
        for hint in &error.hints {
            let _ = writeln!(stderr, "  hint: {hint}");
        }
        if self.json {
            self.json_document(&serde_json::json!({
                "error": {
                    "message": chain[0],
                    "causes": &chain[1..],
                    "hints": error.hints,
                    "diagnostics": error.diagnostics,
                }
            }));
        }
    }
}

/// A short duration: `42s`, `5m07s`, `3h12m`, `2d04h`.
#[must_use]
pub fn short_duration(seconds: u64) -> String {
    let (minutes, hours, days) = (seconds / 60, seconds / 3600, seconds / 86_400);
    if days > 0 {
        format!("{days}d{:02}h", hours % 24)
    } else if hours > 0 {
        format!("{hours}h{:02}m", minutes % 60)
    } else if minutes > 0 {
        format!("{minutes}m{:02}s", seconds % 60)
    } else {
        format!("{seconds}s")
    }
}

/// Columns padded to their widest cell; the columns flagged in `numeric` are aligned right.
#[must_use]
pub fn table(headers: &[&str], numeric: &[bool], rows: &[Vec<String>]) -> String {
    use std::fmt::Write as _;
    let mut widths: Vec<usize> = headers.iter().map(|header| header.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    let header_row: Vec<String> = headers.iter().map(|header| (*header).to_owned()).collect();
    for row in std::iter::once(&header_row).chain(rows) {
        let mut line = String::new();
        for (index, cell) in row.iter().enumerate() {
            let width = widths[index];
            if index > 0 {
                line.push_str("  ");
            }
            if numeric.get(index).copied().unwrap_or(false) {
                let _ = write!(line, "{cell:>width$}");
            } else {
                let _ = write!(line, "{cell:<width$}");
            }
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_are_short() {
        assert_eq!(short_duration(0), "0s");
        assert_eq!(short_duration(59), "59s");
        assert_eq!(short_duration(307), "5m07s");
        assert_eq!(short_duration(7200), "2h00m");
        assert_eq!(short_duration(2 * 86_400 + 4 * 3600 + 59), "2d04h");
    }

    #[test]
    fn tables_align() {
        let rows = vec![vec!["a".to_owned(), "1".to_owned()], vec!["long".to_owned(), "100".to_owned()]];
        assert_eq!(table(&["NAME", "N"], &[false, true], &rows), "NAME    N\na       1\nlong  100\n");
    }
}
