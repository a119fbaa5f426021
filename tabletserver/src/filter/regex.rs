//! RE2-flavoured regexes over bytes with full-match semantics (`RE2::FullMatch`): a pattern
//! matches a row key, family, qualifier or value only if it matches all of it.
//!
//! Cloud Bigtable evaluates RE2 patterns; we run them on the `regex` crate after a small
//! translation ([`translate`]) of the RE2 syntax the crate lacks or reads differently:
//! - `\C` (any byte, the documented "true wildcard") becomes `(?s-u:.)`;
//! - `\Q...\E` (quoted literal) becomes escaped literals;
//! - bytes >= 0x80 become `\xNN` (the pattern is bytes, and may not be UTF-8);
//! - inside a character class, `[` (except `[:name:]`), `&`, `~` and a second `-` are escaped,
//!   since the crate reads `[a[b]]`, `&&`, `~~` and `--` as nested classes and set operations.
//!
//! The result is compiled with Unicode off (byte semantics: `.` is any byte but `\n`) as
//! `^(?:pattern)\z`, after checking that the pattern parses on its own, so that a pattern like
//! `a)|(b` cannot close the anchoring group. Patterns and compiled programs have size limits, so
//! hostile input costs bounded memory.

use ::regex::bytes::{Regex, RegexBuilder};

/// The longest pattern accepted, in bytes.
pub(crate) const MAX_PATTERN_BYTES: usize = 64 * 1024;
/// The compiled program budget of one regex.
const SIZE_LIMIT_BYTES: usize = 256 * 1024;
/// The lazy DFA cache budget of one regex.
const DFA_SIZE_LIMIT_BYTES: usize = 256 * 1024;
/// Parenthesis and class nesting limit.
const NEST_LIMIT: u32 = 100;

/// A regex that matches only whole haystacks.
#[derive(Debug, Clone)]
pub(crate) struct FullMatch {
    re: Regex,
}

impl FullMatch {
    /// Compiles an RE2 pattern; `Err` explains why it is not acceptable.
    pub(crate) fn new(pattern: &[u8]) -> Result<FullMatch, String> {
        if pattern.len() > MAX_PATTERN_BYTES {
            return Err(format!(
                "pattern is {} bytes, more than the limit of {MAX_PATTERN_BYTES}",
                pattern.len()
            ));
        }
        let translated = translate(pattern)?;
        // Parse the pattern alone first (a zero size limit stops before compiling anything):
        // only a pattern with balanced groups may go inside the anchoring group.
        if let Err(::regex::Error::Syntax(message)) = builder(&translated).size_limit(0).build() {
            return Err(message);
        }
        let re = builder(&format!("^(?:{translated})\\z"))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(FullMatch { re })
    }

    /// Whether the pattern matches all of `haystack`.
    pub(crate) fn is_match(&self, haystack: &[u8]) -> bool {
        self.re.is_match(haystack)
    }
}

fn builder(pattern: &str) -> RegexBuilder {
    let mut b = RegexBuilder::new(pattern);
    b.unicode(false)
        .size_limit(SIZE_LIMIT_BYTES)
        .dfa_size_limit(DFA_SIZE_LIMIT_BYTES)
        .nest_limit(NEST_LIMIT);
    b
}

/// Appends one pattern byte as a literal the crate reads the same way.
fn push_byte_literal(out: &mut String, b: u8) {
    if b.is_ascii_alphanumeric() {
        out.push(char::from(b));
    } else {
        out.push_str(&format!("\\x{b:02X}"));
    }
}

/// Rewrites RE2 syntax into the `regex` crate's (see the module doc). `Err` for RE2 constructs
/// that are errors in RE2 too, such as `\C` inside a character class.
pub(crate) fn translate(p: &[u8]) -> Result<String, String> {
    let mut out = String::with_capacity(p.len() + 8);
    let mut in_class = false;
    let mut class_prev_dash = false;
    let mut i = 0;
    while let Some(&b) = p.get(i) {
        let dash = b == b'-';
        match b {
            b'\\' => match p.get(i + 1) {
                None => {
                    out.push('\\'); // a trailing backslash: let the parser report it
                    i += 1;
                }
                Some(b'C') if !in_class => {
                    out.push_str("(?s-u:.)");
                    i += 2;
                }
                Some(b'C') => return Err("\\C is not allowed in a character class".into()),
                Some(b'Q') if !in_class => {
                    let rest = p.get(i + 2..).unwrap_or_default();
                    let end = rest.windows(2).position(|w| w == b"\\E");
                    let literal = &rest[..end.unwrap_or(rest.len())];
                    for &l in literal {
                        push_byte_literal(&mut out, l);
                    }
                    i += 2 + literal.len() + if end.is_some() { 2 } else { 0 };
                }
                Some(&n) if n >= 0x80 => {
                    push_byte_literal(&mut out, n);
                    i += 2;
                }
                Some(&n) => {
                    out.push('\\');
                    out.push(char::from(n));
                    i += 2;
                }
            },
            b'[' if in_class => {
                if p.get(i + 1) == Some(&b':') {
                    // `[:alpha:]`: copy through the closing `:]` (or to the end).
                    let rest = p.get(i..).unwrap_or_default();
                    let end = rest
                        .windows(2)
                        .skip(2)
                        .position(|w| w == b":]")
                        .map_or(rest.len(), |e| e + 4);
                    for &c in &rest[..end] {
                        if c >= 0x80 {
                            push_byte_literal(&mut out, c);
                        } else {
                            out.push(char::from(c));
                        }
                    }
                    i += end;
                } else {
                    out.push_str("\\[");
                    i += 1;
                }
            }
            b'[' => {
                in_class = true;
                out.push('[');
                i += 1;
                if p.get(i) == Some(&b'^') {
                    out.push('^');
                    i += 1;
                }
                if p.get(i) == Some(&b']') {
                    out.push_str("\\]");
                    i += 1;
                }
            }
            b']' if in_class => {
                in_class = false;
                out.push(']');
                i += 1;
            }
            b'&' | b'~' if in_class => {
                out.push('\\');
                out.push(char::from(b));
                i += 1;
            }
            b'-' if in_class && class_prev_dash => {
                out.push_str("\\-");
                i += 1;
            }
            _ if b >= 0x80 => {
                push_byte_literal(&mut out, b);
                i += 1;
            }
            _ => {
                out.push(char::from(b));
                i += 1;
            }
        }
        class_prev_dash = in_class && dash;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &[u8], haystack: &[u8]) -> bool {
        FullMatch::new(pattern).unwrap().is_match(haystack)
    }

    #[test]
    fn matches_whole_haystacks_only() {
        assert!(m(b"ab", b"ab"));
        assert!(!m(b"ab", b"abc"));
        assert!(!m(b"b", b"ab"));
        assert!(m(b"a|ab", b"ab"), "full match, not leftmost-first");
        assert!(m(b"", b""));
        assert!(!m(b"", b"x"));
    }

    #[test]
    fn dot_is_a_byte_but_not_newline_and_backslash_c_is_any_byte() {
        assert!(m(b".", b"\xff"));
        assert!(!m(b".", b"\n"));
        assert!(m(b"\\C*", b"a\nb\xff\x00"));
        assert!(m(b"a\\C", b"a\n"));
        assert!(FullMatch::new(b"[\\C]").is_err());
    }

    #[test]
    fn non_utf8_and_quoted_patterns_are_literal_bytes() {
        assert!(m(b"\xff\xfe+", b"\xff\xfe\xfe"));
        assert!(m(b"\\Qa.b*\\E", b"a.b*"));
        assert!(!m(b"\\Qa.b\\E", b"axb"));
        assert!(m(b"\\Qa.b", b"a.b"));
        assert!(m("é".as_bytes(), "é".as_bytes()));
    }

    #[test]
    fn classes_read_like_re2() {
        assert!(m(b"[[]", b"["));
        assert!(m(b"[]a]+", b"]a"));
        assert!(m(b"[a&&b]+", b"a&b"));
        assert!(m(b"[a~~]", b"~"));
        assert!(m(b"[[:digit:]x]+", b"1x2"));
        assert!(m(b"[^]]", b"a"));
        assert!(!m(b"[^]]", b"]"));
    }

    #[test]
    fn a_pattern_cannot_escape_the_anchors() {
        assert!(FullMatch::new(b"a)|(b").is_err());
        assert!(FullMatch::new(b"a)|(?:b").is_err());
        assert!(FullMatch::new(b"(").is_err());
        assert!(FullMatch::new(b"\\").is_err());
    }

    #[test]
    fn oversized_patterns_are_errors() {
        assert!(FullMatch::new(&vec![b'a'; MAX_PATTERN_BYTES + 1]).is_err());
        assert!(FullMatch::new(b"((a{1000}){1000}){1000}").is_err());
    }
}
