//! What may be uploaded: size limit and allowed content types.

/// Longest accepted `contentType`, in bytes.
pub const MAX_CONTENT_TYPE_LEN: usize = 255;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("contentType must look like type/subtype, for example image/png")]
    MalformedType,
    #[error("files of type {0} are not allowed here")]
    TypeNotAllowed(String),
    #[error("the file is larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
}

/// The upload rules of one Ferry instance.
#[derive(Debug, Clone)]
pub struct UploadPolicy {
    pub max_file_size: u64,
    /// Lower-case `type/subtype` or `type/*`; empty allows every well-formed type.
    allowed: Vec<String>,
}

fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
}

/// The lower-case `type/subtype` of a content type, if it is well formed.
pub fn essence(content_type: &str) -> Option<String> {
    if content_type.len() > MAX_CONTENT_TYPE_LEN || content_type.bytes().any(|b| !(0x20..0x7f).contains(&b)) {
        return None;
    }
    let mut parts = content_type.split(';');
    let mime = parts.next()?.trim();
    let (ty, sub) = mime.split_once('/')?;
    if !is_token(ty) || !is_token(sub) {
        return None;
    }
    for param in parts {
        let (k, v) = param.trim().split_once('=')?;
        if !is_token(k) || v.is_empty() {
            return None;
        }
    }
    Some(mime.to_ascii_lowercase())
}

impl UploadPolicy {
    pub fn new(max_file_size: u64, allowed: &[String]) -> Self {
        Self { max_file_size, allowed: allowed.iter().map(|a| a.trim().to_ascii_lowercase()).collect() }
    }

    /// Checks a content type against the allowed list; returns its essence.
    pub fn check_type(&self, content_type: &str) -> Result<String, PolicyError> {
        let mime = essence(content_type).ok_or(PolicyError::MalformedType)?;
        let allowed = self.allowed.is_empty()
            || self.allowed.iter().any(|pattern| {
                pattern == "*/*"
                    || match pattern.strip_suffix("/*") {
                        Some(prefix) => mime.split_once('/').is_some_and(|(ty, _)| ty == prefix),
                        None => *pattern == mime,
                    }
            });
        if allowed { Ok(mime) } else { Err(PolicyError::TypeNotAllowed(mime)) }
    }

    /// The allowed patterns, as configured (empty: any type).
    pub fn allowed_patterns(&self) -> &[String] {
        &self.allowed
    }

    pub fn check_size(&self, size: u64) -> Result<(), PolicyError> {
        if size > self.max_file_size {
            return Err(PolicyError::TooLarge { limit: self.max_file_size });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_formed_types_pass_and_absurd_ones_do_not() {
        let any = UploadPolicy::new(10, &[]);
        assert_eq!(any.check_type("image/png").unwrap(), "image/png");
        assert_eq!(any.check_type("Text/Plain; charset=utf-8").unwrap(), "text/plain");
        for bad in ["png", "image/", "/png", "image/png\r\nX-Evil: 1", "a b/c", &"a/".repeat(200)] {
            assert_eq!(any.check_type(bad), Err(PolicyError::MalformedType), "{bad:?}");
        }
    }

    #[test]
    fn patterns_allow_families_and_exact_types() {
        let policy = UploadPolicy::new(10, &["image/*".into(), "application/pdf".into()]);
        assert!(policy.check_type("image/webp").is_ok());
        assert!(policy.check_type("application/pdf").is_ok());
        assert!(matches!(policy.check_type("text/html"), Err(PolicyError::TypeNotAllowed(_))));
    }

    #[test]
    fn size_limit_is_inclusive() {
        let policy = UploadPolicy::new(10, &[]);
        assert!(policy.check_size(10).is_ok());
        assert!(policy.check_size(11).is_err());
    }

    // Property tests: whatever a client declares as its content type, checking it never panics,
    // and what is accepted is a well-formed, lower-case `type/subtype`.
    mod properties {
        use super::*;
        use proptest::prelude::*;
        use proptest::test_runner::Config;

        /// RFC 9110 `tchar`: what a media type's type and subtype may be made of.
        fn is_tchar(c: char) -> bool {
            c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
        }

        fn token() -> impl Strategy<Value = String> {
            prop_oneof![
                3 => "[a-zA-Z][a-zA-Z0-9.+-]{0,12}",
                1 => "[!#$&^_.+a-zA-Z0-9-]{1,6}",
            ]
        }

        /// Mostly well-formed types with random case, spacing and parameters; some junk.
        fn content_type() -> impl Strategy<Value = String> {
            let well_formed =
                (" {0,2}", token(), token(), prop::collection::vec((" {0,2}", token(), "[a-zA-Z0-9\"=-]{0,8}"), 0..3))
                    .prop_map(|(pad, ty, sub, params)| {
                        let mut text = format!("{pad}{ty}/{sub}");
                        for (space, k, v) in params {
                            text.push_str(&format!(";{space}{k}={v}"));
                        }
                        text
                    });
            let hostile_char = prop_oneof![
                3 => prop::sample::select(vec![
                    '/', ';', '=', ' ', '\t', '\r', '\n', '\0', '*', '"', ',', '\u{7f}', 'é', 'İ', 'K', '\u{212A}',
                ]),
                3 => prop::char::range('a', 'z'),
                1 => prop::char::range('A', 'Z'),
                1 => any::<char>(),
            ];
            prop_oneof![
                3 => well_formed,
                2 => prop::collection::vec(hostile_char, 0..40).prop_map(String::from_iter),
                1 => any::<String>(),
                1 => "[a-z/]{200,300}",
            ]
        }

        fn pattern() -> impl Strategy<Value = String> {
            prop_oneof![
                (token(), token()).prop_map(|(t, s)| format!("{t}/{s}")),
                token().prop_map(|t| format!("{t}/*")),
                Just("image/*".to_owned()),
                Just("image/png".to_owned()),
            ]
        }

        /// 256 cases (a debug build on a shared machine); `PROPTEST_CASES` asks for more.
        fn cases() -> u32 {
            std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(256)
        }

        fn config() -> Config {
            Config { failure_persistence: None, ..Config::with_cases(cases()) }
        }

        proptest! {
            #![proptest_config(config())]

            #[test]
            fn an_accepted_type_is_a_well_formed_essence(raw in content_type()) {
                let any = UploadPolicy::new(10, &[]);
                let Ok(mime) = any.check_type(&raw) else { return Ok(()) };
                let (ty, sub) = mime.split_once('/').expect("type/subtype");
                prop_assert!(!ty.is_empty() && ty.chars().all(is_tchar), "{:?} from {:?}", mime, raw);
                prop_assert!(!sub.is_empty() && sub.chars().all(is_tchar), "{:?} from {:?}", mime, raw);
                prop_assert_eq!(mime.to_ascii_lowercase(), mime.clone());
                prop_assert!(mime.len() <= MAX_CONTENT_TYPE_LEN);
                // It is the input's own essence: what precedes any parameters, lower-cased.
                let declared = raw.split(';').next().unwrap().trim().to_ascii_lowercase();
                prop_assert_eq!(&mime, &declared);
                // ... and checking it again accepts it as it is.
                prop_assert_eq!(any.check_type(&mime), Ok(mime.clone()));
            }

            /// Media types are case-insensitive: upper-casing a declared type changes nothing.
            #[test]
            fn case_does_not_change_the_verdict(raw in content_type(), allowed in prop::collection::vec(pattern(), 0..3)) {
                let policy = UploadPolicy::new(10, &allowed);
                prop_assert_eq!(policy.check_type(&raw.to_ascii_uppercase()), policy.check_type(&raw));
            }

            /// An allowed list only ever narrows: a type it allows is one the open policy accepts,
            /// and a type it refuses is well formed (refused for its type, not its shape), and
            /// allowed exactly when a pattern names it or its family.
            #[test]
            fn the_allowed_list_is_respected(
                raw in content_type(),
                allowed in prop::collection::vec(pattern(), 1..4),
            ) {
                let open = UploadPolicy::new(10, &[]).check_type(&raw);
                let policy = UploadPolicy::new(10, &allowed);
                match (policy.check_type(&raw), open) {
                    (Ok(m), Ok(o)) => {
                        prop_assert_eq!(&m, &o);
                        let (ty, _) = m.split_once('/').unwrap();
                        let named = allowed.iter().any(|p| {
                            let p = p.to_ascii_lowercase();
                            p == m || p == format!("{ty}/*")
                        });
                        prop_assert!(named, "{:?} allowed by {:?}", m, allowed);
                    }
                    (Err(PolicyError::TypeNotAllowed(m)), Ok(o)) => prop_assert_eq!(m, o),
                    (Err(PolicyError::MalformedType), Err(PolicyError::MalformedType)) => {}
                    (mine, open) => prop_assert!(false, "policy {:?} but open policy {:?}", mine, open),
                }
            }

            /// A pattern written as the type itself (any case, surrounding spaces) allows it.
            #[test]
            fn a_type_named_in_the_list_is_allowed(ty in token(), sub in token(), pad in " {0,2}") {
                let mime = format!("{ty}/{sub}");
                let policy = UploadPolicy::new(10, &[format!("{pad}{}{pad}", mime.to_ascii_uppercase())]);
                prop_assert_eq!(policy.check_type(&mime), Ok(mime.to_ascii_lowercase()));
                let family = UploadPolicy::new(10, &[format!("{ty}/*")]);
                prop_assert_eq!(family.check_type(&mime), Ok(mime.to_ascii_lowercase()));
            }

            /// `*/*` in the list is meant to allow every well-formed type (see `check_type`).
            #[test]
            fn star_slash_star_allows_every_well_formed_type(raw in content_type()) {
                let open = UploadPolicy::new(10, &[]).check_type(&raw);
                let star = UploadPolicy::new(10, &["*/*".to_owned()]).check_type(&raw);
                prop_assert_eq!(star, open);
            }

            #[test]
            fn size_check_is_exactly_the_limit(limit in any::<u64>(), size in any::<u64>()) {
                let policy = UploadPolicy::new(limit, &[]);
                prop_assert_eq!(policy.check_size(size).is_ok(), size <= limit);
            }
        }
    }
}
