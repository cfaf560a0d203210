//! Keeping secrets out of the Redis URLs and errors that messages show: [`redacted_url`] for a
//! URL, [`scrub`] for an error's text that may quote one, and [`url_password`] to read a URL's
//! password where it is needed (not shown).

/// `url` with whatever may be a secret in it replaced by `***`, for messages.
///
/// In `scheme://user:password@host…` the password is everything from the first `:` of the part
/// after `://` to the LAST `@` of the whole string, so a password holding `/`, `?`, `#` or `@`
/// is hidden whole; a part without `:` before the `@` is hidden too (it may be a password written
/// where the user goes). The value of a `pass`/`password` query parameter (how `unix://` URLs
/// carry it) is hidden to the end of the string. A string that does not start with `scheme://`
/// is not understood: it is shown from its last `@` on, or not at all.
#[must_use]
pub fn redacted_url(url: &str) -> String {
    let mut shown = String::with_capacity(url.len());
    let mut from = 0;
    for (start, end) in secret_ranges(url) {
        shown.push_str(&url[from..start]);
        shown.push_str("***");
        from = end;
    }
    shown.push_str(&url[from..]);
    shown
}

/// The byte ranges of `url` that may hold a secret, sorted and disjoint (see [`redacted_url`]).
fn secret_ranges(url: &str) -> Vec<(usize, usize)> {
    let mut ranges = Vec::new();
    let Some(authority) = authority_start(url) else {
        // Not understood: only what follows the last `@` is shown.
        let end = url.rfind('@').unwrap_or(url.len());
        if end > 0 {
            ranges.push((0, end));
        }
        return ranges;
    };
    if let Some(at) = url.rfind('@').filter(|&at| at >= authority) {
        // `user:password`: the password; a part without `:`: all of it. Empty ranges are dropped.
        let start = url[authority..at].find(':').map_or(authority, |colon| authority + colon + 1);
        ranges.push((start, at));
    }
    if let Some(value) = password_parameter(url) {
        ranges.push((value, url.len()));
    }
    ranges.sort_unstable();
    let mut merged: Vec<(usize, usize)> = Vec::new();
    for (start, end) in ranges.into_iter().filter(|(start, end)| start < end) {
        match merged.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    merged
}

/// Where the part after `scheme://` starts, when `url` starts with a scheme and `://`.
fn authority_start(url: &str) -> Option<usize> {
    let separator = url.find("://")?;
    let scheme = &url[..separator];
    let valid = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    valid.then_some(separator + 3)
}

/// Where the value of the first query parameter whose name holds `pass` (`pass`, `password`,
/// `passwd`…) starts.
fn password_parameter(url: &str) -> Option<usize> {
    let lower = url.to_ascii_lowercase();
    let mut position = 0;
    while let Some(found) = lower[position..].find(['?', '&', ';']) {
        let name_start = position + found + 1;
        let name_end = lower[name_start..].find(['=', '&', ';', '#']).map_or(lower.len(), |end| name_start + end);
        if lower[name_start..name_end].contains("pass") && lower[name_end..].starts_with('=') {
            return Some(name_end + 1);
        }
        position = name_start;
    }
    None
}

/// The password of `scheme://[user][:password]@host…` (it runs to the last `@`), percent-decoded;
/// `None` when the URL carries none.
#[must_use]
pub fn url_password(url: &str) -> Option<String> {
    let (_, rest) = url.split_once("://")?;
    let (userinfo, _) = rest.rsplit_once('@')?;
    let (_, password) = userinfo.split_once(':')?;
    Some(percent_decoded(password).unwrap_or_else(|| password.to_owned()))
}

/// `text` with `%XX` escapes decoded, when they decode to UTF-8.
fn percent_decoded(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let hex = bytes.get(index + 1..index + 3).and_then(|pair| std::str::from_utf8(pair).ok());
        match (bytes[index], hex.and_then(|pair| u8::from_str_radix(pair, 16).ok())) {
            (b'%', Some(byte)) => {
                decoded.push(byte);
                index += 3;
            }
            (byte, _) => {
                decoded.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8(decoded).ok()
}

/// Removes the URL and its secrets from an error's text: redis and bullmq errors may quote them,
/// as written or percent-decoded.
pub(super) fn scrub(text: &str, url: &str) -> String {
    let mut text = text.replace(url, &redacted_url(url));
    for (start, end) in secret_ranges(url) {
        let secret = &url[start..end];
        text = text.replace(secret, "***");
        if let Some(decoded) = percent_decoded(secret).filter(|decoded| !decoded.is_empty()) {
            text = text.replace(&decoded, "***");
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redacted_url("redis://:s3cret@redis:6379"), "redis://:***@redis:6379");
        assert_eq!(redacted_url("redis://user:s3cret@h:1/0?x=1"), "redis://user:***@h:1/0?x=1");
        assert_eq!(redacted_url("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        assert_eq!(redacted_url("redis://127.0.0.1:6379/0?db=1"), "redis://127.0.0.1:6379/0?db=1");
        // A lone user part may be a password written in the wrong place.
        assert_eq!(redacted_url("redis://s3cret@h:1"), "redis://***@h:1");
        // Passwords that hold the characters that end an authority, or `@`.
        assert_eq!(redacted_url("redis://:se/cret@127.0.0.1:6379"), "redis://:***@127.0.0.1:6379");
        assert_eq!(redacted_url("redis://:se#cret@127.0.0.1:6379"), "redis://:***@127.0.0.1:6379");
        assert_eq!(redacted_url("redis://:se?cret@127.0.0.1:6379/0"), "redis://:***@127.0.0.1:6379/0");
        assert_eq!(redacted_url("rediss://u:se@cret@h:1"), "rediss://u:***@h:1");
        // Not `scheme://`: nothing before the last `@` is shown, or nothing at all.
        assert_eq!(redacted_url("redis//:s3cret@127.0.0.1:6379"), "***@127.0.0.1:6379");
        assert_eq!(redacted_url("redis:/:s3cret@127.0.0.1:6379"), "***@127.0.0.1:6379");
        assert_eq!(redacted_url("s3cret"), "***");
        // Passwords in the query, as `unix://` URLs carry them.
        assert_eq!(redacted_url("redis+unix:///tmp/x.sock?pass=s3cret"), "redis+unix:///tmp/x.sock?pass=***");
        assert_eq!(redacted_url("unix:///tmp/x.sock?db=1&PASSWORD=s3&cret"), "unix:///tmp/x.sock?db=1&PASSWORD=***");
        // An `@` in the query: everything up to it may be a user part, so all of it goes.
        assert_eq!(redacted_url("redis+unix:///tmp/x.sock?pass=a@b"), "redis+unix://***");
        // Both at once, overlapping.
        assert_eq!(redacted_url("redis://:x&pass=y@h:1"), "redis://:***");
    }

    #[test]
    fn errors_are_scrubbed() {
        assert_eq!(
            scrub("cannot reach redis://:s3cret@h:1 (s3cret)", "redis://:s3cret@h:1"),
            "cannot reach redis://:***@h:1 (***)"
        );
        assert_eq!(scrub("auth failed for se/cret", "redis://:se%2Fcret@h:1"), "auth failed for ***");
    }
}
