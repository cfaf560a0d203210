//! deploy.toml never panics the loader, whatever the bytes: property tests over mutations of the
//! shipped file and over arbitrary text.

use std::path::Path;

use masstockctl::config::{source_from_bytes, ConfigError, Source, Stack};
use proptest::prelude::*;

/// Loads `bytes` as deploy.toml the way the CLI does: never a panic, and every located error
/// within the file.
fn check_bytes(bytes: Vec<u8>) {
    match source_from_bytes(Path::new("deploy.toml"), bytes) {
        Ok(source) => check(source.text),
        Err(ConfigError::Invalid { diagnostics, .. }) => {
            assert!(diagnostics[0].location.is_some(), "invalid UTF-8 is located");
            let _ = diagnostics[0].render("error");
        }
        Err(ConfigError::Read { .. }) => unreachable!("nothing is read"),
    }
}

fn check(text: String) {
    let source = Source::new(Path::new("deploy.toml"), text);
    for environment in ["production", "local", "other"] {
        match Stack::from_source_without_env_file(&source, environment) {
            Ok(_) => {}
            Err(ConfigError::Invalid { diagnostics, .. }) => {
                assert!(!diagnostics.is_empty());
                for diagnostic in diagnostics {
                    if let Some(location) = &diagnostic.location {
                        let lines = source.text.lines().count().max(1);
                        assert!(location.line >= 1 && location.line <= lines + 1, "line {} of {lines}", location.line);
                        let _ = diagnostic.render("error");
                    }
                }
            }
            Err(ConfigError::Read { .. }) => unreachable!("nothing is read"),
        }
    }
}

fn shipped() -> String {
    fs_err::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy.toml")).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
        check(text);
    }

    #[test]
    fn edited_shipped_file_never_panics(
        position in 0usize..10_000,
        length in 0usize..40,
        insert in prop::sample::select(vec!["", "\"", "[", "]", "=", "{", "}", "\n", "x", "0", "-1", "\"30x\"", "ß", "[[a]]", "\u{0}"]),
    ) {
        let mut text = shipped();
        let start = text.char_indices().map(|(index, _)| index).nth(position % text.chars().count()).unwrap_or(0);
        let end = text[start..].char_indices().nth(length).map_or(text.len(), |(index, _)| start + index);
        text.replace_range(start..end, insert);
        check(text);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        check_bytes(bytes);
    }

    #[test]
    fn shipped_file_with_stray_bytes_never_panics(position in 0usize..10_000, byte in any::<u8>()) {
        let mut bytes = shipped().into_bytes();
        let position = position % bytes.len();
        bytes.insert(position, byte);
        check_bytes(bytes);
    }
}
