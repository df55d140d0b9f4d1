//! Cleaning client-supplied file names into safe object-key suffixes.

/// Longest file name accepted from a client, in characters.
pub const MAX_INPUT_CHARS: usize = 1024;
/// Longest cleaned name kept in a key, in bytes (the key adds a 37-byte prefix).
pub const MAX_KEY_NAME_BYTES: usize = 200;
/// Longest extension kept whole when a name is shortened, in bytes.
const MAX_EXTENSION_BYTES: usize = 16;

/// Why a file name is refused outright (anything else is cleaned).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("fileName must not be empty")]
    Empty,
    #[error("fileName is longer than {MAX_INPUT_CHARS} characters")]
    TooLong,
}

/// Bidirectional-text controls: U+202E makes `evil<U+202E>gnp.exe` display as `evilexe.png`.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200E}' | '\u{200F}' | '\u{061C}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Characters S3 documents as needing special handling, plus Windows-reserved ones.
fn is_awkward(c: char) -> bool {
    matches!(c, '"' | '<' | '>' | '|' | '*' | '?' | ':' | '#' | '%' | '{' | '}' | '^' | '~' | '`' | '[' | ']')
}

/// Cleans a client's file name: no path separators, no `..`, no control or bidi characters,
/// bounded length with the extension kept, ordinary Unicode left alone.
pub fn clean_file_name(raw: &str) -> Result<String, NameError> {
    if raw.chars().count() > MAX_INPUT_CHARS {
        return Err(NameError::TooLong);
    }
    if raw.trim().is_empty() {
        return Err(NameError::Empty);
    }
    // Path components are joined with `_`; `.`/`..`/empty components vanish.
    let joined = raw
        .split(['/', '\\'])
        .map(|part| {
            part.chars()
                .filter(|c| !c.is_control() && !is_bidi_control(*c) && *c != '\u{FEFF}')
                .map(|c| {
                    if is_awkward(c) {
                        '_'
                    } else if c.is_whitespace() {
                        ' '
                    } else {
                        c
                    }
                })
                .collect::<String>()
        })
        .map(|part| part.trim().to_owned())
        .filter(|part| !part.is_empty() && part.chars().any(|c| c != '.'))
        .collect::<Vec<_>>()
        .join("_");
    let mut cleaned = String::with_capacity(joined.len());
    for c in joined.chars() {
        // Collapse runs of dots and spaces: no `..` survives anywhere.
        if (c == '.' || c == ' ') && cleaned.ends_with(c) {
            continue;
        }
        cleaned.push(c);
    }
    let cleaned = cleaned.trim_matches(|c: char| c == '.' || c == ' ').to_owned();
    if cleaned.is_empty() {
        return Ok("file".to_owned());
    }
    Ok(shorten(&cleaned))
}

fn shorten(name: &str) -> String {
    if name.len() <= MAX_KEY_NAME_BYTES {
        return name.to_owned();
    }
    let (stem, ext) = match name.rfind('.') {
        Some(dot) if dot > 0 && name.len() - dot <= MAX_EXTENSION_BYTES => name.split_at(dot),
        _ => (name, ""),
    };
    let budget = MAX_KEY_NAME_BYTES - ext.len();
    let mut cut = budget.min(stem.len());
    while !stem.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{ext}", stem[..cut].trim_end_matches(['.', ' ']))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_names_are_kept_including_unicode() {
        assert_eq!(clean_file_name("test-b2.png").unwrap(), "test-b2.png");
        assert_eq!(clean_file_name("été à Zürich 東京.jpg").unwrap(), "été à Zürich 東京.jpg");
    }

    #[test]
    fn path_traversal_is_flattened() {
        assert_eq!(clean_file_name("../../etc/passwd").unwrap(), "etc_passwd");
        assert_eq!(clean_file_name("a/b\\c").unwrap(), "a_b_c");
        assert_eq!(clean_file_name("..").unwrap(), "file");
        assert_eq!(clean_file_name("x..y...png").unwrap(), "x.y.png");
        assert_eq!(clean_file_name(".hidden").unwrap(), "hidden");
    }

    #[test]
    fn control_and_bidi_characters_are_removed() {
        assert_eq!(clean_file_name("a\0b\nc.txt").unwrap(), "abc.txt");
        assert_eq!(clean_file_name("evil\u{202E}gnp.exe").unwrap(), "evilgnp.exe");
    }

    #[test]
    fn long_names_are_shortened_keeping_the_extension() {
        let name = format!("{}.tar.gz", "é".repeat(600));
        let cleaned = clean_file_name(&name).unwrap();
        assert!(cleaned.len() <= MAX_KEY_NAME_BYTES);
        assert!(cleaned.ends_with(".gz"));
        assert!(cleaned.starts_with('é'));
    }

    #[test]
    fn empty_and_absurdly_long_names_are_refused() {
        assert_eq!(clean_file_name("  "), Err(NameError::Empty));
        assert_eq!(clean_file_name(&"a".repeat(5000)), Err(NameError::TooLong));
    }

    // Property tests: whatever a hostile client sends, cleaning never panics and what it keeps
    // is one plain file name (the issue on hostile traffic).
    mod properties {
        use super::*;
        use proptest::prelude::*;
        use proptest::test_runner::Config;
        use std::path::{Component, Path};

        /// The bidi controls the module promises to remove.
        fn bidi(c: char) -> bool {
            matches!(c, '\u{200E}' | '\u{200F}' | '\u{061C}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
        }

        /// Characters a hostile name is made of: separators, dots, controls, bidi controls,
        /// odd whitespace and S3-awkward characters, with ordinary text and any `char`.
        fn hostile_char() -> impl Strategy<Value = char> {
            prop_oneof![
                4 => prop::sample::select(vec![
                    '/', '\\', '.', '.', ' ', '\0', '\n', '\r', '\t', '\u{7f}', '\u{85}', '\u{9b}',
                    '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}', '\u{202E}', '\u{2066}', '\u{2067}',
                    '\u{2068}', '\u{2069}', '\u{200E}', '\u{200F}', '\u{061C}', '\u{FEFF}', '\u{200B}',
                    '\u{00A0}', '\u{2028}', '\u{2029}', '\u{3000}', '\u{1680}', ':', '*', '?', '"', '<',
                    '>', '|', '#', '%', '~', '`', '[', ']', '{', '}', '^', '_', '-', '+', '&', '=', ';',
                    'é', '東', '😀', '\u{0301}',
                ]),
                3 => prop::char::range('a', 'z'),
                3 => any::<char>(),
            ]
        }

        fn hostile_name() -> impl Strategy<Value = String> {
            prop_oneof![
                // short names made of anything
                4 => prop::collection::vec(hostile_char(), 0..40).prop_map(String::from_iter),
                // paths: segments such as `..`, `.`, `` and words, joined by either separator
                2 => prop::collection::vec(
                    (
                        prop_oneof![
                            Just("..".to_owned()),
                            Just(".".to_owned()),
                            Just(String::new()),
                            Just(" .. ".to_owned()),
                            prop::collection::vec(hostile_char(), 0..8).prop_map(String::from_iter),
                        ],
                        prop::sample::select(vec!['/', '\\']),
                    ),
                    0..12,
                )
                .prop_map(|segments| segments.into_iter().map(|(s, sep)| format!("{s}{sep}")).collect()),
                // long names, around the byte and character limits
                1 => prop::collection::vec(hostile_char(), 150..1100).prop_map(String::from_iter),
                1 => (prop::collection::vec(hostile_char(), 180..700), "[a-z0-9.]{0,20}")
                    .prop_map(|(stem, ext)| format!("{}.{ext}", String::from_iter(stem))),
            ]
        }

        /// Letters and digits of several scripts (Latin, Greek, Cyrillic, Hebrew, Arabic,
        /// Devanagari, CJK, Hangul, full-width and mathematical alphanumerics).
        fn letter_or_digit() -> impl Strategy<Value = char> {
            prop_oneof![
                prop::char::range('a', 'z'),
                prop::char::range('A', 'Z'),
                prop::char::range('0', '9'),
                prop::char::range('\u{C0}', '\u{24F}'),
                prop::char::range('\u{391}', '\u{3C9}'),
                prop::char::range('\u{410}', '\u{44F}'),
                prop::char::range('\u{5D0}', '\u{5EA}'),
                prop::char::range('\u{627}', '\u{64A}'),
                prop::char::range('\u{905}', '\u{939}'),
                prop::char::range('\u{4E00}', '\u{9FFF}'),
                prop::char::range('\u{AC00}', '\u{D7A3}'),
                prop::char::range('\u{FF10}', '\u{FF5A}'),
                prop::char::range('\u{1D400}', '\u{1D6A3}'),
            ]
            .prop_filter("letter or digit", |c| c.is_alphanumeric())
        }

        /// 256 cases (a debug build on a shared machine); `PROPTEST_CASES` asks for more.
        fn cases() -> u32 {
            std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(256)
        }

        fn config() -> Config {
            // No regression files written into the source tree: a failure prints its input.
            Config { failure_persistence: None, ..Config::with_cases(cases()) }
        }

        proptest! {
            #![proptest_config(config())]

            /// Refused outright only when empty (after trimming) or over MAX_INPUT_CHARS;
            /// anything else is cleaned into one safe name.
            #[test]
            fn a_cleaned_name_never_names_a_path(raw in hostile_name()) {
                let result = clean_file_name(&raw);
                if raw.chars().count() > MAX_INPUT_CHARS {
                    prop_assert_eq!(result, Err(NameError::TooLong));
                    return Ok(());
                }
                if raw.trim().is_empty() {
                    prop_assert_eq!(result, Err(NameError::Empty));
                    return Ok(());
                }
                let name = result.expect("a name that is neither empty nor too long is cleaned");
                prop_assert!(!name.is_empty());
                prop_assert!(name.len() <= MAX_KEY_NAME_BYTES, "{} bytes: {:?}", name.len(), name);
                prop_assert!(name != "." && name != "..");
                prop_assert!(!name.contains(".."), "{:?}", name);
                prop_assert!(!name.starts_with('.'), "{:?}", name);
                prop_assert_eq!(name.trim(), name.as_str());
                for c in name.chars() {
                    prop_assert!(c != '/' && c != '\\', "separator in {:?}", name);
                    prop_assert!(!c.is_control(), "control {:?} in {:?}", c, name);
                    prop_assert!(!bidi(c) && c != '\u{FEFF}', "bidi/BOM {:?} in {:?}", c, name);
                    prop_assert!(!"\"<>|*?:#%{}^~`[]".contains(c), "awkward {:?} in {:?}", c, name);
                }
                // As a path it is exactly one ordinary component: itself.
                let components: Vec<_> = Path::new(&name).components().collect();
                prop_assert_eq!(components, vec![Component::Normal(name.as_ref())]);
            }

            #[test]
            fn cleaning_is_idempotent(raw in hostile_name()) {
                if let Ok(once) = clean_file_name(&raw) {
                    prop_assert_eq!(clean_file_name(&once), Ok(once.clone()));
                }
            }

            /// "ordinary Unicode left alone": words of letters and digits from any script,
            /// joined by single `-`, `_`, `.` or space, within the limit, come back unchanged.
            #[test]
            fn ordinary_names_are_kept(
                words in prop::collection::vec(
                    prop::collection::vec(letter_or_digit(), 1..12)
                        .prop_map(String::from_iter),
                    1..6,
                ),
                seps in prop::collection::vec(prop::sample::select(vec!['-', '_', '.', ' ']), 5),
            ) {
                let mut raw = words[0].clone();
                for (word, sep) in words[1..].iter().zip(&seps) {
                    raw.push(*sep);
                    raw.push_str(word);
                }
                prop_assume!(raw.len() <= MAX_KEY_NAME_BYTES);
                prop_assert_eq!(clean_file_name(&raw), Ok(raw.clone()));
            }

            /// "bounded length with the extension kept": a long ordinary name keeps its short
            /// extension and the start of its stem.
            #[test]
            fn long_names_keep_their_extension(
                stem in prop::collection::vec(
                    prop_oneof![prop::char::range('a', 'z'), Just('é'), Just('東'), Just('😀'), Just('-')],
                    100..900,
                )
                .prop_map(String::from_iter),
                ext in "[a-z0-9]{1,15}",
            ) {
                prop_assume!(stem.chars().count() + 1 + ext.len() <= MAX_INPUT_CHARS);
                let raw = format!("a{stem}.{ext}");
                let name = clean_file_name(&raw).unwrap();
                prop_assert!(name.len() <= MAX_KEY_NAME_BYTES);
                let expected_ext = format!(".{ext}");
                prop_assert!(name.ends_with(&expected_ext), "{:?}", name);
                let kept_stem = &name[..name.len() - ext.len() - 1];
                prop_assert!(raw.starts_with(kept_stem), "{:?}", name);
                if raw.len() > MAX_KEY_NAME_BYTES {
                    // Shortened, but by no more than a character's worth of the budget.
                    prop_assert!(name.len() + 4 > MAX_KEY_NAME_BYTES, "{} bytes: {:?}", name.len(), name);
                } else {
                    prop_assert_eq!(name, raw);
                }
            }
        }
    }
}
