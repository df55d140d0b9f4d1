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
}
