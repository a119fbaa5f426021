//! RE2-flavoured regexes over bytes with full-match semantics (`RE2::FullMatch`): a pattern
//! matches a row key, family, qualifier or value only if it matches all of it.
//!
//! Cloud Bigtable evaluates RE2 patterns over bytes: pattern and input are raw bytes, one byte
//! one character (RE2's Latin-1 mode, as the Go emulator's `binaryregexp` does), so `.` is any
//! byte but `\n` (with `(?s)`, any byte), `\C` any byte, and a byte above 127 — in a row key,
//! a value or the pattern, valid UTF-8 or not — is just that byte. We run them on the `regex`
//! crate after a small translation ([`translate`]) of the RE2 syntax the crate lacks or reads
//! differently:
//! - `\C` (any byte, the documented "true wildcard") becomes `(?s-u:.)`;
//! - `\Q...\E` (quoted literal) becomes escaped literals;
//! - bytes >= 0x80 become `\xNN` (the pattern is bytes, and may not be UTF-8), and so do
//!   `\x{NN}` (the crate would read a code point, UTF-8 encoded) and octal escapes (`\0`,
//!   `\012`, `\101`; a lone `\1` is a backreference, an error in both);
//! - `\s` becomes RE2's `[\t\n\f\r ]` (the crate's also takes `\v`), `\S` its negation;
//! - `\<` and `\>` are the literal characters (the crate reads word boundaries);
//! - a `{` that starts no counted repetition (`{n}`, `{n,}`, `{n,m}`) is a literal `{`, as in
//!   RE2 (the crate refuses `a{`, `{"k":1}`, `{,3}`); counts above 1000 and stacked
//!   repetition operators (`a**`, `a+*`; `a*?` is non-greedy) are errors, as in RE2;
//! - inside a character class, `[` (except `[:name:]`), `&`, `~` and a second `-` are escaped,
//!   since the crate reads `[a[b]]`, `&&`, `~~` and `--` as nested classes and set operations.
//!
//! Not translated (an error here, accepted by RE2): Unicode classes (`\pL`); and `(?i)` folds
//! only ASCII letters, where RE2's Latin-1 mode also folds `É`/`é` (0xC9/0xE9).
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

/// RE2's largest repetition count (`maximum_repeat_count`): `a{1001}` is an error there.
const MAX_REPEAT: u32 = 1000;

/// RE2's `\s`: `[\t\n\f\r ]`, without the vertical tab the crate's ASCII `\s` also takes.
const SPACE_BYTES: &str = "\\t\\n\\x0C\\r\\x20";

/// `{n}`, `{n,}` or `{n,m}` at the start of `p`: its length and bounds. Anything else is not
/// a repetition (RE2 then reads the `{` as a literal).
fn counted_repeat(p: &[u8]) -> Option<(usize, u32, Option<u32>)> {
    let close = p.iter().position(|&c| c == b'}')?;
    let inner = std::str::from_utf8(p.get(1..close)?).ok()?;
    let number = |t: &str| -> Option<u32> {
        if t.is_empty() || !t.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        // Huge counts are errors below, not "not a repetition".
        Some(t.parse().unwrap_or(u32::MAX))
    };
    let (min, max) = match inner.split_once(',') {
        None => {
            let n = number(inner)?;
            (n, Some(n))
        }
        Some((lo, "")) => (number(lo)?, None),
        Some((lo, hi)) => (number(lo)?, Some(number(hi)?)),
    };
    Some((close + 1, min, max))
}

/// An octal escape after its backslash (`p` starts at the first digit), as RE2 reads them:
/// `\0`, `\0N`, `\0NN` and `\[1-7]N`, `\[1-7]NN` (a lone `\1`..`\7` is a backreference,
/// which RE2 does not support). Answers the byte and how many pattern bytes it took.
fn octal_escape(p: &[u8]) -> Result<(u8, usize), String> {
    let digit = |i: usize| p.get(i).filter(|c| (b'0'..=b'7').contains(c)).copied();
    let first = digit(0).ok_or("invalid escape sequence")?;
    if first != b'0' && digit(1).is_none() {
        return Err(format!(
            "invalid escape sequence \\{}: backreferences are not supported",
            char::from(first)
        ));
    }
    let mut code = u32::from(first - b'0');
    let mut taken = 1;
    while taken < 3
        && let Some(d) = digit(taken)
    {
        code = code * 8 + u32::from(d - b'0');
        taken += 1;
    }
    let byte = u8::try_from(code)
        .map_err(|_| format!("octal escape \\{code:o} is above \\377, the largest byte"))?;
    Ok((byte, taken))
}

/// `\x{H..}` after its backslash and `x` (`p` starts at `{`): the byte and the length.
fn braced_hex(p: &[u8]) -> Result<(u8, usize), String> {
    let close = p
        .iter()
        .position(|&c| c == b'}')
        .ok_or("unclosed \\x{ escape")?;
    let digits = std::str::from_utf8(p.get(1..close).unwrap_or_default()).unwrap_or("");
    let code = u32::from_str_radix(digits, 16)
        .map_err(|_| format!("invalid hex escape \\x{{{digits}}}"))?;
    let byte = u8::try_from(code)
        .map_err(|_| format!("hex escape \\x{{{digits}}} is above \\xFF: patterns match bytes"))?;
    Ok((byte, close + 1))
}

/// Rewrites RE2 syntax into the `regex` crate's (see the module doc). `Err` for RE2 constructs
/// that are errors in RE2 too, such as `\C` inside a character class, stacked repetition
/// operators (`a**`) or a count above 1000.
pub(crate) fn translate(p: &[u8]) -> Result<String, String> {
    let mut out = String::with_capacity(p.len() + 8);
    let mut in_class = false;
    let mut class_prev_dash = false;
    // The previous token was a repetition operator (and its optional non-greedy `?`).
    let mut after_repeat = false;
    let mut i = 0;
    while let Some(&b) = p.get(i) {
        let dash = b == b'-';
        let mut repeat = false;
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
                Some(b's') if in_class => {
                    out.push_str(SPACE_BYTES);
                    i += 2;
                }
                Some(b's') => {
                    out.push_str(&format!("[{SPACE_BYTES}]"));
                    i += 2;
                }
                // Inside a class, a nested negated class (the crate's syntax for a union).
                Some(b'S') => {
                    out.push_str(&format!("[^{SPACE_BYTES}]"));
                    i += 2;
                }
                // RE2 reads `\<`, `\>` as the literal characters; the crate as word edges.
                Some(&n @ (b'<' | b'>')) => {
                    push_byte_literal(&mut out, n);
                    i += 2;
                }
                Some(b'0'..=b'9') => {
                    let (byte, taken) = octal_escape(&p[i + 1..])?;
                    push_byte_literal(&mut out, byte);
                    i += 1 + taken;
                }
                Some(b'x') if p.get(i + 2) == Some(&b'{') => {
                    let (byte, taken) = braced_hex(&p[i + 2..])?;
                    push_byte_literal(&mut out, byte);
                    i += 2 + taken;
                }
                // `\pN`, `\p{Greek}`: copied whole (the crate explains why it refuses them).
                Some(&n @ (b'p' | b'P')) if p.get(i + 2) == Some(&b'{') => {
                    let rest = p.get(i + 2..).unwrap_or_default();
                    let end = rest
                        .iter()
                        .position(|&c| c == b'}')
                        .map_or(rest.len(), |e| e + 1);
                    out.push('\\');
                    out.push(char::from(n));
                    for &c in &rest[..end] {
                        push_byte_literal(&mut out, c);
                    }
                    i += 2 + end;
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
            b'*' | b'+' | b'?' | b'{' if !in_class => {
                let counted = if b == b'{' {
                    counted_repeat(&p[i..])
                } else {
                    Some((1, 0, None))
                };
                match counted {
                    // Not a repetition: RE2 reads a `{` that starts none as a literal.
                    None => {
                        out.push_str("\\{");
                        i += 1;
                    }
                    Some((len, min, max)) => {
                        if after_repeat {
                            return Err(format!(
                                "bad repetition operator: {} follows another repetition",
                                String::from_utf8_lossy(&p[i..i + len])
                            ));
                        }
                        if b == b'{' && (min > MAX_REPEAT || max.is_some_and(|m| m > MAX_REPEAT)) {
                            return Err(format!(
                                "bad repetition count: {} (at most {MAX_REPEAT})",
                                String::from_utf8_lossy(&p[i..i + len])
                            ));
                        }
                        out.push_str(std::str::from_utf8(&p[i..i + len]).unwrap_or_default());
                        i += len;
                        // A non-greedy `?` belongs to the operator.
                        if p.get(i) == Some(&b'?') {
                            out.push('?');
                            i += 1;
                        }
                        repeat = true;
                    }
                }
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
        after_repeat = repeat;
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
    fn patterns_are_anchored_at_both_ends() {
        assert!(m(b"a.*", b"abc"));
        assert!(!m(b"b.*", b"abc"), "anchored at the start");
        assert!(!m(b".*b", b"abc"), "anchored at the end");
        assert!(m(b"^abc$", b"abc"));
        assert!(!m(b"abc", b"abc\n"), "no trailing newline allowance");
        assert!(m(b"(?m)a$\nb", b"a\nb"));
    }

    #[test]
    fn backslash_c_is_exactly_one_byte_of_any_value() {
        for byte in 0..=255u8 {
            assert!(m(b"\\C", &[byte]), "\\C on {byte:#04x}");
        }
        assert!(!m(b"\\C", b""));
        assert!(!m(b"\\C", b"ab"));
        assert!(m(b"\\C\\C", "é".as_bytes()), "é is two bytes");
        assert!(m(b"k\\C*", b"k\xff\x00\n\xc3"));
    }

    #[test]
    fn bytes_above_127_are_raw_bytes_in_pattern_and_input() {
        // Not UTF-8 anywhere.
        let key = b"\xff\x00\xfe\x80";
        assert!(m(b"\xff\x00\xfe\x80", key), "raw pattern bytes");
        assert!(m(b"\\xff\\x00\\xFE\\x80", key), "escaped bytes");
        assert!(
            m(b"\\x{ff}\\x00\\x{fe}\\x{80}", key),
            "braced escapes are bytes too"
        );
        assert!(m(b"....", key), "each byte is one character");
        assert!(m(b"[\\x80-\\xff]\\x00[\xfe][^a]", key));
        assert!(m(b"\xff+", b"\xff\xff\xff"));
        // UTF-8 text is its bytes: `.` is one byte, a class of a two-byte letter is two bytes.
        assert!(!m(b".", "é".as_bytes()));
        assert!(m(b"..", "é".as_bytes()));
        assert!(m("é".as_bytes(), "é".as_bytes()));
        assert!(
            m("[é]".as_bytes(), b"\xc3"),
            "a class holds bytes, not characters"
        );
        assert!(!m("[é]".as_bytes(), "é".as_bytes()));
        assert!(
            FullMatch::new(b"\\x{100}").is_err(),
            "no character above a byte"
        );
        assert!(FullMatch::new(b"\\x{zz}").is_err());
    }

    #[test]
    fn dot_skips_newline_unless_s() {
        assert!(!m(b".", b"\n"));
        assert!(m(b"(?s).", b"\n"));
        assert!(m(b"(?s:a.b)", b"a\nb"));
        assert!(!m(b"a(?s:.)b.", b"a\nb\n"), "the flag ends with its group");
        assert!(m(b"[^a]", b"\n"), "a negated class takes \\n, as in RE2");
        assert!(m(b"\\C", b"\n"));
    }

    #[test]
    fn perl_classes_are_re2s() {
        assert!(!m(b"\\s", b"\x0b"), "RE2's \\s has no vertical tab");
        for space in [b"\t", b"\n", b"\x0c", b"\r", b" "] {
            assert!(m(b"\\s", space), "{space:?}");
            assert!(m(b"[\\s]", space), "{space:?}");
            assert!(!m(b"\\S", space), "{space:?}");
        }
        assert!(m(b"\\S\\S", b"\x0b\xff"));
        assert!(m(b"[a\\S]", b"\x0b"));
        assert!(m(b"[[:space:]]", b"\x0b"), "the POSIX class does take it");
        assert!(!m(b"\\d", "٣".as_bytes()), "ASCII digits only");
        assert!(!m(b"\\w", b"\xe9"));
    }

    #[test]
    fn braces_and_repetitions_read_like_re2() {
        assert!(
            m(b"{\"k\":1}", b"{\"k\":1}"),
            "a brace that starts no count"
        );
        assert!(m(b"a{", b"a{"));
        assert!(m(b"a{,3}", b"a{,3}"));
        assert!(m(b"a{x}", b"a{x}"));
        assert!(m(b"a{2}", b"aa"));
        assert!(m(b"a{2,}", b"aaaa"));
        assert!(m(b"a{1,2}b", b"ab"));
        assert!(m(b"a{1000}", &[b'a'; 1000]));
        assert!(FullMatch::new(b"a{1001}").is_err());
        assert!(FullMatch::new(b"a{0,1001}").is_err());
        assert!(FullMatch::new(b"a{2,1}").is_err());
        for stacked in [&b"a**"[..], b"a+*", b"a*??", b"a{2}{3}", b"a?+", b"a++"] {
            assert!(FullMatch::new(stacked).is_err(), "{stacked:?}");
        }
        for fine in [&b"a*?"[..], b"a+?", b"a??", b"a{2}?", b"(a*)*", b"(?:a+)?"] {
            assert!(FullMatch::new(fine).is_ok(), "{fine:?}");
        }
        assert!(m(b"\\<a\\>", b"<a>"), "escaped punctuation is literal");
    }

    #[test]
    fn octal_escapes_are_bytes_and_backreferences_errors() {
        assert!(m(b"\\0", b"\x00"));
        assert!(m(b"\\012", b"\n"));
        assert!(m(b"\\101\\0101", b"A\x081"), "\\0 takes two more digits");
        assert!(m(b"\\377", b"\xff"));
        assert!(m(b"\\1234", b"S4"), "three digits at most");
        assert!(FullMatch::new(b"(a)\\1").is_err());
        assert!(FullMatch::new(b"\\8").is_err());
        assert!(FullMatch::new(b"\\400").is_err());
    }

    #[test]
    fn oversized_patterns_are_errors() {
        assert!(FullMatch::new(&vec![b'a'; MAX_PATTERN_BYTES + 1]).is_err());
        assert!(FullMatch::new(b"((a{1000}){1000}){1000}").is_err());
    }
}
