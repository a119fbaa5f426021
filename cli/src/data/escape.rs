//! Byte strings on the command line and in output: row keys, qualifiers, values and split keys
//! may hold any byte, so they are printed and typed in one escaped form.
//!
//! The form: printable ASCII (0x20..=0x7e) stands for itself, except the backslash, written
//! `\\`; every other byte is `\xNN` (two hex digits, either case when typed, lowercase when
//! printed). So `escape` and `unescape` round-trip every byte string, and what `tabula` prints
//! can be pasted back as an argument. `unescape` refuses anything else after a backslash, and a
//! non-ASCII character typed as is is taken as its UTF-8 bytes.
//!
//! JSON output also carries the standard base64 of byte strings that are not UTF-8
//! ([`base64`]), for scripts that would rather not unescape.

use crate::exit::UsageError;

/// The escaped form of `bytes` (see the module doc).
pub(crate) fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        match b {
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(char::from(b)),
            _ => {
                out.push_str("\\x");
                out.push(hex_digit(b >> 4));
                out.push(hex_digit(b & 0xf));
            }
        }
    }
    out
}

/// The bytes `text` stands for (see the module doc); `what` names the argument in the error.
pub(crate) fn unescape(text: &str, what: &str) -> Result<Vec<u8>, UsageError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b != b'\\' {
            out.push(b);
            i += 1;
            continue;
        }
        match bytes.get(i + 1) {
            Some(b'\\') => {
                out.push(b'\\');
                i += 2;
            }
            Some(b'x') => {
                let digit = |j: usize| bytes.get(j).and_then(|d| char::from(*d).to_digit(16));
                match (digit(i + 2), digit(i + 3)) {
                    (Some(hi), Some(lo)) => {
                        // Two hex digits make at most 0xff.
                        out.push(u8::try_from(hi * 16 + lo).unwrap_or(u8::MAX));
                        i += 4;
                    }
                    _ => {
                        return Err(UsageError(format!(
                            "{what} {text:?}: \\x must be followed by two hex digits \
                             (byte {i})"
                        )));
                    }
                }
            }
            _ => {
                return Err(UsageError(format!(
                    "{what} {text:?}: a backslash starts \\\\ or \\xNN (byte {i})"
                )));
            }
        }
    }
    Ok(out)
}

/// Standard base64 (RFC 4648, with padding) of `bytes`.
pub(crate) fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let sextet = |n: u32, shift: u32| char::from(ALPHABET[((n >> shift) & 0x3f) as usize]);
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        out.push(sextet(n, 18));
        out.push(sextet(n, 12));
        out.push(if chunk.len() > 1 { sextet(n, 6) } else { '=' });
        out.push(if chunk.len() > 2 { sextet(n, 0) } else { '=' });
    }
    out
}

/// A JSON object's fields for the byte string `bytes` named `name`: `name` (escaped) and, when
/// `bytes` is not UTF-8, `name_base64`.
pub(crate) fn json_fields(
    object: &mut serde_json::Map<String, serde_json::Value>,
    name: &str,
    bytes: &[u8],
) {
    object.insert(name.to_owned(), escape(bytes).into());
    if std::str::from_utf8(bytes).is_err() {
        object.insert(format!("{name}_base64"), base64(bytes).into());
    }
}

fn hex_digit(nibble: u8) -> char {
    char::from_digit(u32::from(nibble), 16).unwrap_or('?')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_ascii_stays_and_everything_else_is_escaped() {
        assert_eq!(escape(b"user#1 a-b"), "user#1 a-b");
        assert_eq!(escape(b"a\\b"), "a\\\\b");
        assert_eq!(escape(b"\x00\n\x7f\xff"), "\\x00\\x0a\\x7f\\xff");
        assert_eq!(escape("é".as_bytes()), "\\xc3\\xa9");
        assert_eq!(escape(b""), "");
    }

    #[test]
    fn escapes_round_trip_every_byte() {
        let all: Vec<u8> = (0..=255u8).collect();
        assert_eq!(unescape(&escape(&all), "ROW").unwrap(), all);
        for b in 0..=255u8 {
            let one = [b, b'\\', b'x', b];
            assert_eq!(unescape(&escape(&one), "ROW").unwrap(), one);
        }
    }

    #[test]
    fn typed_escapes_accept_either_case_and_raw_utf8() {
        assert_eq!(unescape("a\\x00\\xFFb", "ROW").unwrap(), b"a\x00\xffb");
        assert_eq!(unescape("\\\\x41", "ROW").unwrap(), b"\\x41");
        assert_eq!(unescape("é", "ROW").unwrap(), "é".as_bytes());
    }

    #[test]
    fn a_bad_escape_is_a_usage_error_naming_the_argument() {
        for bad in ["a\\", "\\x", "\\x4", "\\xg0", "\\n", "tail\\q"] {
            let err = unescape(bad, "VALUE").unwrap_err();
            assert!(err.0.starts_with("VALUE "), "{bad}: {}", err.0);
        }
    }

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        let vectors: [(&[u8], &str); 7] = [
            (b"", ""),
            (b"f", "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
            (b"foob", "Zm9vYg=="),
            (b"fooba", "Zm9vYmE="),
            (b"foobar", "Zm9vYmFy"),
        ];
        for (input, want) in vectors {
            assert_eq!(base64(input), want);
        }
        assert_eq!(base64(b"\xff\xfe"), "//4=");
    }

    #[test]
    fn json_fields_add_base64_only_for_non_utf8() {
        let mut o = serde_json::Map::new();
        json_fields(&mut o, "value", "é".as_bytes());
        assert_eq!(
            serde_json::Value::Object(o.clone()),
            serde_json::json!({"value": "\\xc3\\xa9"})
        );
        o.clear();
        json_fields(&mut o, "key", b"\xff");
        assert_eq!(
            serde_json::Value::Object(o),
            serde_json::json!({"key": "\\xff", "key_base64": "/w=="})
        );
    }
}
