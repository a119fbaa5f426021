//! Columns and byte arguments as typed on the command line: `FAMILY:QUALIFIER` (the
//! qualifier escaped like every byte string, see `escape`; `cf:` is the empty qualifier) and
//! `FAMILY[:QUALIFIER]` where a whole family will do. These are clap value parsers, so a bad
//! column is a usage error (exit 2) before anything is sent.

use bytes::Bytes;
use tabula_client::Filter;

use super::escape::{escape, unescape};
use crate::exit::UsageError;

/// A column family, or one column of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Column {
    /// The family.
    pub(crate) family: String,
    /// The qualifier; `None`: every column of the family.
    pub(crate) qualifier: Option<Bytes>,
}

impl Column {
    /// A filter letting only this family (and qualifier) through.
    pub(crate) fn filter(&self) -> Filter {
        let family = Filter::family(&self.family);
        match &self.qualifier {
            Some(q) => family.and(Filter::qualifier(q.clone())),
            None => family,
        }
    }

    /// The qualifier of a column that must name one (`FAMILY:QUALIFIER` parsers set it).
    pub(crate) fn qualifier_bytes(&self) -> Bytes {
        self.qualifier.clone().unwrap_or_default()
    }
}

impl std::fmt::Display for Column {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.qualifier {
            Some(q) => write!(f, "{}:{}", self.family, escape(q)),
            None => f.write_str(&self.family),
        }
    }
}

/// Checks a column family name: 1 to 64 characters, `[_a-zA-Z0-9][-_.a-zA-Z0-9]*` (Cloud
/// Bigtable's rule), so it can never contain the `:` that ends it.
pub(crate) fn check_family(name: &str) -> Result<(), UsageError> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if first_ok && rest_ok && name.len() <= 64 {
        Ok(())
    } else {
        Err(UsageError(format!(
            "{name:?} is not a column family name: 1 to 64 of [-_.a-zA-Z0-9], \
             not starting with - or ."
        )))
    }
}

/// Parses `FAMILY:QUALIFIER` (the qualifier is required; it may be empty: `cf:`).
pub(crate) fn family_and_qualifier(text: &str) -> Result<Column, UsageError> {
    let Some((family, qualifier)) = text.split_once(':') else {
        return Err(UsageError(format!(
            "{text:?}: a column is FAMILY:QUALIFIER (e.g. cf:name)"
        )));
    };
    check_family(family)?;
    Ok(Column {
        family: family.to_owned(),
        qualifier: Some(Bytes::from(unescape(qualifier, "QUALIFIER")?)),
    })
}

/// Parses `FAMILY` or `FAMILY:QUALIFIER`.
pub(crate) fn family_or_column(text: &str) -> Result<Column, UsageError> {
    if text.contains(':') {
        return family_and_qualifier(text);
    }
    check_family(text)?;
    Ok(Column {
        family: text.to_owned(),
        qualifier: None,
    })
}

/// Parses an escaped byte string (row keys, values, prefixes; see `escape`).
pub(crate) fn escaped_bytes(text: &str) -> Result<Bytes, UsageError> {
    unescape(text, "argument").map(Bytes::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_column_is_family_colon_escaped_qualifier() {
        let c = family_and_qualifier("cf:na\\x00me").unwrap();
        assert_eq!(c.family, "cf");
        assert_eq!(c.qualifier.as_deref(), Some(&b"na\x00me"[..]));
        assert_eq!(c.to_string(), "cf:na\\x00me");
        let empty = family_and_qualifier("cf:").unwrap();
        assert_eq!(empty.qualifier.as_deref(), Some(&b""[..]));
        // Only the first colon ends the family.
        let colons = family_and_qualifier("cf:a:b").unwrap();
        assert_eq!(colons.qualifier.as_deref(), Some(&b"a:b"[..]));
    }

    #[test]
    fn a_family_alone_is_accepted_where_a_family_will_do() {
        let f = family_or_column("stats_1").unwrap();
        assert_eq!((f.family.as_str(), &f.qualifier), ("stats_1", &None));
        assert_eq!(f.to_string(), "stats_1");
        let c = family_or_column("cf:q").unwrap();
        assert_eq!(c.qualifier.as_deref(), Some(&b"q"[..]));
    }

    #[test]
    fn bad_columns_are_usage_errors() {
        assert!(family_and_qualifier("cf").is_err(), "no qualifier");
        assert!(family_and_qualifier(":q").is_err(), "no family");
        assert!(family_and_qualifier("c f:q").is_err(), "space in family");
        assert!(family_and_qualifier("cf:\\z").is_err(), "bad escape");
        assert!(family_or_column("-cf").is_err());
        assert!(family_or_column(&"f".repeat(65)).is_err());
        assert!(family_or_column("é").is_err());
        assert!(escaped_bytes("a\\").is_err());
    }
}
