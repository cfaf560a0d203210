//! Where a key of deploy.toml is written: key paths, spans, and diagnostics with a caret snippet.
//!
//! serde reports a key path (`serde_path_to_error`), and `toml_edit`'s spans map that path back to
//! the file. This also works after the environment merge, because the path is looked up first
//! under `[environments.E]` (`Source::locate` prefers the place where the selected environment
//! overrides the key). Unknown keys and values get a "did you mean" hint (Jaro-Winkler similarity
//! above 0.8). `Diagnostic::render` prints the caret snippet.

use std::fmt::{self, Write as _};
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml_edit::{Document, Item};

/// One step of a path into the configuration: a table key or an array index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Key(String),
    Index(usize),
}

/// A path such as `services.api.ports[0].host`, as the user would write it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPath(pub Vec<Segment>);

impl KeyPath {
    pub fn new<I, S>(keys: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self(keys.into_iter().map(|key| Segment::Key(key.into())).collect())
    }

    #[must_use]
    pub fn key(&self, key: impl Into<String>) -> Self {
        let mut path = self.clone();
        path.0.push(Segment::Key(key.into()));
        path
    }

    #[must_use]
    pub fn index(&self, index: usize) -> Self {
        let mut path = self.clone();
        path.0.push(Segment::Index(index));
        path
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (position, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(key) if position == 0 => f.write_str(key)?,
                Segment::Key(key) => write!(f, ".{key}")?,
                Segment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// Which part of a `key = value` pair a diagnostic points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    Key,
    Value,
}

/// A resolved position in the file, ready to print.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Location {
    pub file: PathBuf,
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters.
    pub column: usize,
    #[serde(skip)]
    pub line_text: String,
    #[serde(skip)]
    pub width: usize,
}

impl Location {
    /// The same place with the marked text shown as `"***"` and the rest of the line as `…`: for
    /// a value that may be a secret written where a reference belongs, which the snippet must not
    /// repeat (nor another one later on the same line, in an inline table).
    #[must_use]
    pub fn masked(mut self) -> Self {
        let chars: Vec<char> = self.line_text.chars().collect();
        let start = (self.column - 1).min(chars.len());
        let end = (start + self.width).min(chars.len());
        let mut masked: String = chars[..start].iter().collect();
        masked.push_str("\"***\"");
        if end < chars.len() {
            masked.push_str(" …");
        }
        self.line_text = masked;
        self.width = 5;
        self
    }
}

/// One problem found in the configuration.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Diagnostic {
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hints: Vec<String>,
}

impl Diagnostic {
    /// A diagnostic whose message may carry `\nhint: ...` lines, which become hints.
    #[must_use]
    pub fn new(message: &str, location: Option<Location>, mut hints: Vec<String>) -> Self {
        let mut parts = message.split("\nhint: ");
        let message = parts.next().unwrap_or_default().to_owned();
        let mut inline: Vec<String> = parts.map(str::to_owned).collect();
        inline.append(&mut hints);
        Self { message, location, hints: inline }
    }

    /// Renders the diagnostic the way compilers do, without colour:
    ///
    /// ```text
    /// error: unknown key `prots` in `services.api`
    ///   --> deploy.toml:71:1
    ///    |
    /// 71 | prots = [...]
    ///    | ^^^^^
    ///    = hint: did you mean `ports`?
    /// ```
    #[must_use]
    pub fn render(&self, severity: &str) -> String {
        let mut out = format!("{severity}: {}\n", self.message);
        if let Some(location) = &self.location {
            let number = location.line.to_string();
            let gutter = " ".repeat(number.len());
            let _ = writeln!(out, "{gutter}--> {}:{}:{}", location.file.display(), location.line, location.column);
            let _ = writeln!(out, "{gutter} |");
            let _ = writeln!(out, "{number} | {}", location.line_text);
            let _ =
                writeln!(out, "{gutter} | {}{}", " ".repeat(location.column - 1), "^".repeat(location.width.max(1)));
            for hint in &self.hints {
                let _ = writeln!(out, "{gutter} = hint: {hint}");
            }
        } else {
            for hint in &self.hints {
                let _ = writeln!(out, "  = hint: {hint}");
            }
        }
        out
    }
}

/// The text of deploy.toml with the spans of every key and value.
#[derive(Debug)]
pub struct Source {
    pub path: PathBuf,
    pub text: String,
    document: Option<Document<String>>,
}

impl Source {
    #[must_use]
    pub fn new(path: &Path, text: String) -> Self {
        let document = Document::parse(text.clone()).ok();
        Self { path: path.to_path_buf(), text, document }
    }

    /// Locates `path`, preferring where `environment` overrides it, then the top level. When the
    /// path itself is not written anywhere (a missing key), points at its closest written parent.
    #[must_use]
    pub fn locate(&self, path: &KeyPath, mark: Mark, environment: Option<&str>) -> Option<Location> {
        let document = self.document.as_ref()?;
        // How much of `path` each place writes; the override wins ties, a deeper match wins always.
        let mut best: Option<(usize, Range<usize>)> = None;
        if let Some(environment) = environment {
            let mut overridden = KeyPath::new(["environments", environment]);
            overridden.0.extend(path.0.iter().cloned());
            best = span_of(document.as_item(), &overridden.0, mark).and_then(|(depth, span)| {
                depth.checked_sub(2).filter(|matched| *matched > 0).map(|matched| (matched, span))
            });
        }
        if let Some((depth, span)) = span_of(document.as_item(), &path.0, mark) {
            if best.as_ref().is_none_or(|(matched, _)| depth > *matched) {
                best = Some((depth, span));
            }
        }
        let best = best?;
        Some(self.location_of(best.1))
    }

    /// Turns a byte range into a line, a column and the line's text.
    #[must_use]
    pub fn location_of(&self, span: Range<usize>) -> Location {
        // Spans from any source are snapped to character boundaries, so no slice can panic.
        let start = floor_char_boundary(&self.text, span.start);
        let line_start = self.text[..start].rfind('\n').map_or(0, |index| index + 1);
        let line_end = self.text[start..].find('\n').map_or(self.text.len(), |index| start + index);
        let line_text = self.text[line_start..line_end].trim_end_matches('\r');
        let line = self.text[..start].matches('\n').count() + 1;
        let column = self.text[line_start..start].chars().count() + 1;
        let end = floor_char_boundary(&self.text, span.end.clamp(start, line_end));
        let width = self.text[start..end].chars().count();
        Location { file: self.path.clone(), line, column, line_text: line_text.replace('\t', " "), width }
    }
}

/// The largest index at or below `index` that starts a character of `text`.
fn floor_char_boundary(text: &str, index: usize) -> usize {
    let mut index = index.min(text.len());
    while !text.is_char_boundary(index) {
        index -= 1;
    }
    index
}

/// A place in the parsed document: tables, inline tables and arrays alike.
#[derive(Clone, Copy)]
enum Node<'a> {
    Item(&'a Item),
    Table(&'a toml_edit::Table),
    Value(&'a toml_edit::Value),
}

impl<'a> Node<'a> {
    fn span(self) -> Option<Range<usize>> {
        match self {
            Node::Item(item) => item.span(),
            Node::Table(table) => table.span(),
            Node::Value(value) => value.span(),
        }
    }

    /// The child at `segment`, with the span of its key when it has one.
    fn child(self, segment: &Segment) -> Option<(Option<Range<usize>>, Node<'a>)> {
        match (self, segment) {
            (Node::Item(Item::Value(value)), _) => Node::Value(value).child(segment),
            (Node::Item(Item::Table(table)) | Node::Table(table), Segment::Key(key)) => {
                let (key, item) = table.get_key_value(key)?;
                Some((key.span(), Node::Item(item)))
            }
            (Node::Value(toml_edit::Value::InlineTable(table)), Segment::Key(key)) => {
                let (key, item) = table.get_key_value(key)?;
                Some((key.span(), Node::Item(item)))
            }
            (Node::Value(toml_edit::Value::Array(array)), Segment::Index(index)) => {
                Some((None, Node::Value(array.get(*index)?)))
            }
            (Node::Item(Item::ArrayOfTables(array)), Segment::Index(index)) => {
                Some((None, Node::Table(array.get(*index)?)))
            }
            _ => None,
        }
    }
}

/// Walks `path` down the document and returns how deep it got with the span found there.
fn span_of(item: &Item, path: &[Segment], mark: Mark) -> Option<(usize, Range<usize>)> {
    let mut current = Node::Item(item);
    let mut best = None;
    for (depth, segment) in path.iter().enumerate() {
        let Some((key_span, next)) = current.child(segment) else { break };
        let last = depth + 1 == path.len();
        let span = if last && mark == Mark::Key { key_span.or_else(|| next.span()) } else { next.span().or(key_span) };
        if let Some(span) = span {
            best = Some((depth + 1, span));
        }
        current = next;
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "[services.api]\nimage = \"x\"\nports = [{ host = 3000, container = 3000 }]\n\n[environments.local.services.api]\nimage = \"y\"\n";

    fn source() -> Source {
        Source::new(Path::new("deploy.toml"), TEXT.to_owned())
    }

    #[test]
    fn locates_keys_values_and_array_items() {
        let source = source();
        let image = source.locate(&KeyPath::new(["services", "api", "image"]), Mark::Value, None).unwrap();
        assert_eq!((image.line, image.column, image.width), (2, 9, 3));
        let key = source.locate(&KeyPath::new(["services", "api", "image"]), Mark::Key, None).unwrap();
        assert_eq!((key.line, key.column, key.width), (2, 1, 5));
        let host = KeyPath::new(["services", "api", "ports"]).index(0).key("host");
        let host = source.locate(&host, Mark::Value, None).unwrap();
        assert_eq!((host.line, host.column), (3, 19));
    }

    #[test]
    fn prefers_the_environment_override() {
        let source = source();
        let image = source.locate(&KeyPath::new(["services", "api", "image"]), Mark::Value, Some("local")).unwrap();
        assert_eq!(image.line, 6);
        let ports = source.locate(&KeyPath::new(["services", "api", "ports"]), Mark::Value, Some("local")).unwrap();
        assert_eq!(ports.line, 3, "a key the environment does not override is found at the top level");
    }

    #[test]
    fn missing_keys_point_at_their_parent() {
        let source = source();
        let missing = source.locate(&KeyPath::new(["services", "api", "restart"]), Mark::Key, None).unwrap();
        assert_eq!(missing.line, 1);
    }

    #[test]
    fn spans_inside_a_character_do_not_panic() {
        let source = Source::new(Path::new("deploy.toml"), "a = \"é€\"\n".to_owned());
        for start in 0..=source.text.len() + 2 {
            for end in start..=source.text.len() + 2 {
                let location = source.location_of(start..end);
                // Past the final newline is the (empty) second line.
                assert!((1..=2).contains(&location.line), "{start}..{end}: {location:?}");
            }
        }
    }

    #[test]
    fn renders_a_caret_under_the_span() {
        let source = source();
        let diagnostic = Diagnostic {
            message: "bad image".into(),
            location: source.locate(&KeyPath::new(["services", "api", "image"]), Mark::Value, None),
            hints: vec!["use another".into()],
        };
        insta::assert_snapshot!(diagnostic.render("error"), @r#"
        error: bad image
         --> deploy.toml:2:9
          |
        2 | image = "x"
          |         ^^^
          = hint: use another
        "#);
    }
}
