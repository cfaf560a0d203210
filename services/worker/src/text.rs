//! Text cut to a number of characters, for the error texts the worker stores and reports.

/// `text` when it holds at most `max_chars` characters; otherwise its first `max_chars - 1`
/// characters and `…`, so the result never holds more than `max_chars` characters.
#[must_use]
pub fn truncate(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars.saturating_sub(1)) {
        Some((end, _)) if text[end..].chars().nth(1).is_some() => format!("{}…", &text[..end]),
        _ => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_cut_to_the_limit_with_an_ellipsis() {
        assert_eq!(truncate("short", 10), "short");
        assert_eq!(truncate("exactly10!", 10), "exactly10!");
        assert_eq!(truncate("eleven char", 10), "eleven ch…");
        let long = "é".repeat(2005);
        assert_eq!(truncate(&long, 2000).chars().count(), 2000);
        assert!(truncate(&long, 2000).ends_with('…'));
    }
}
