//! Table schemas on the wire (`tabula.tablet.v1.Schema`): the checks every component applies
//! before accepting one (DESIGN.md section 2) — family names `[_a-zA-Z0-9][-_.a-zA-Z0-9]*` up
//! to 64 characters, each named once; GC rules with positive limits, non-empty unions and
//! intersections, and bounded nesting; value types and the timestamp granularity must be ones
//! this build knows. The master checks a schema before recording it; the tablet server checks
//! again before converting it to its engine's schema. Bad input is `InvalidArgument`.
//!
//! A family's value type and a table's granularity are fixed at creation (Cloud Bigtable: an
//! aggregate `value_type` "can only be set at family creation and is immutable afterwards"):
//! cells written under one would be misread under the other. [`check_schema_change`] is the
//! check for a schema replacing another; a fresh schema without either field (every schema
//! stored before they existed) reads as plain bytes families at microsecond granularity.

use std::collections::BTreeSet;

use tabula_proto::tabula::tablet::v1 as pb;
use tabula_proto::tabula::tablet::v1::gc_rule::Rule;

use crate::Error;

/// The longest family name.
pub const MAX_FAMILY_NAME_LEN: usize = 64;
/// The most families one table may have.
pub const MAX_FAMILIES: usize = 1_000;
/// How deep union/intersection rules may nest.
pub const MAX_GC_RULE_DEPTH: usize = 8;
/// The most child rules of one union or intersection.
pub const MAX_GC_RULE_CHILDREN: usize = 64;

/// `InvalidArgument` unless every family of `schema` has a valid, unique name and a valid GC
/// rule, and there are at most [`MAX_FAMILIES`].
pub fn check_schema(schema: &pb::Schema) -> Result<(), Error> {
    if schema.families.len() > MAX_FAMILIES {
        return Err(Error::invalid_argument(format!(
            "{} column families; at most {MAX_FAMILIES} are allowed",
            schema.families.len()
        )));
    }
    if pb::TimestampGranularity::try_from(schema.granularity).is_err() {
        return Err(Error::invalid_argument(format!(
            "timestamp granularity {} is not one this server knows (micros or millis)",
            schema.granularity
        )));
    }
    let mut seen = BTreeSet::new();
    for family in &schema.families {
        check_family_name(&family.name)?;
        if pb::ValueType::try_from(family.value_type).is_err() {
            return Err(Error::invalid_argument(format!(
                "family {}: value type {} is not one this server knows (bytes or sum of int64)",
                family.name, family.value_type
            )));
        }
        if let Some(rule) = &family.gc_rule {
            check_gc_rule(rule, 0)
                .map_err(|e| Error::invalid_argument(format!("family {}: {e}", family.name)))?;
        }
        if !seen.insert(family.name.as_str()) {
            return Err(Error::invalid_argument(format!(
                "column family {} is named twice",
                family.name
            )));
        }
    }
    Ok(())
}

/// `InvalidArgument` if `new`, replacing `old`, changes the timestamp granularity or the value
/// type of a family both have (families added or dropped are free to have any type).
pub fn check_schema_change(old: &pb::Schema, new: &pb::Schema) -> Result<(), Error> {
    if old.granularity != new.granularity {
        return Err(Error::invalid_argument(format!(
            "the timestamp granularity of a table cannot change (from {} to {})",
            granularity_name(old.granularity),
            granularity_name(new.granularity)
        )));
    }
    for family in &new.families {
        let Some(before) = old.families.iter().find(|f| f.name == family.name) else {
            continue;
        };
        if before.value_type != family.value_type {
            return Err(Error::invalid_argument(format!(
                "family {}: the value type of a column family cannot change (from {} to {}); \
                 drop the family and create it again",
                family.name,
                value_type_name(before.value_type),
                value_type_name(family.value_type)
            )));
        }
    }
    Ok(())
}

/// A value type's name for messages.
pub fn value_type_name(value_type: i32) -> String {
    match pb::ValueType::try_from(value_type) {
        Ok(pb::ValueType::Bytes) => "bytes".to_owned(),
        Ok(pb::ValueType::SumInt64) => "sum of int64".to_owned(),
        Err(_) => format!("unknown value type {value_type}"),
    }
}

fn granularity_name(granularity: i32) -> String {
    match pb::TimestampGranularity::try_from(granularity) {
        Ok(pb::TimestampGranularity::Micros) => "micros".to_owned(),
        Ok(pb::TimestampGranularity::Millis) => "millis".to_owned(),
        Err(_) => format!("unknown granularity {granularity}"),
    }
}

/// `InvalidArgument` unless `name` is a valid column family name.
pub fn check_family_name(name: &str) -> Result<(), Error> {
    let bad = |why: &str| {
        Error::invalid_argument(format!(
            "column family name {name:?} {why}; names match [_a-zA-Z0-9][-_.a-zA-Z0-9]* and \
             have at most {MAX_FAMILY_NAME_LEN} characters"
        ))
    };
    let mut chars = name.chars();
    let Some(first) = chars.next() else {
        return Err(bad("is empty"));
    };
    if name.len() > MAX_FAMILY_NAME_LEN {
        return Err(bad("is too long"));
    }
    if !(first.is_ascii_alphanumeric() || first == '_') {
        return Err(bad("starts with a character not allowed there"));
    }
    if !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
        return Err(bad("has a character not allowed"));
    }
    Ok(())
}

/// A message saying what is wrong with a GC rule (an empty rule is Cloud Bigtable's "no GC").
pub fn check_gc_rule(rule: &pb::GcRule, depth: usize) -> Result<(), String> {
    if depth > MAX_GC_RULE_DEPTH {
        return Err(format!(
            "GC rules nest deeper than {MAX_GC_RULE_DEPTH} levels"
        ));
    }
    let children = |rules: &[pb::GcRule], what: &str| {
        if rules.is_empty() {
            return Err(format!("an empty {what} rule"));
        }
        if rules.len() > MAX_GC_RULE_CHILDREN {
            return Err(format!(
                "an {what} rule with {} children; at most {MAX_GC_RULE_CHILDREN}",
                rules.len()
            ));
        }
        rules.iter().try_for_each(|r| check_gc_rule(r, depth + 1))
    };
    match &rule.rule {
        None => Ok(()),
        Some(Rule::MaxNumVersions(n)) if *n > 0 => Ok(()),
        Some(Rule::MaxNumVersions(n)) => Err(format!("max_num_versions must be positive, not {n}")),
        Some(Rule::MaxAgeMicros(us)) if *us > 0 => Ok(()),
        Some(Rule::MaxAgeMicros(us)) => Err(format!("max_age_micros must be positive, not {us}")),
        Some(Rule::Intersection(i)) => children(&i.rules, "intersection"),
        Some(Rule::Union(u)) => children(&u.rules, "union"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::Code;

    fn family(name: &str, value_type: pb::ValueType) -> pb::ColumnFamily {
        pb::ColumnFamily {
            name: name.into(),
            gc_rule: None,
            value_type: value_type as i32,
        }
    }

    fn schema(
        families: Vec<pb::ColumnFamily>,
        granularity: pb::TimestampGranularity,
    ) -> pb::Schema {
        pb::Schema {
            families,
            granularity: granularity as i32,
        }
    }

    #[test]
    fn unknown_value_types_and_granularities_are_refused() {
        use pb::TimestampGranularity::{Micros, Millis};
        let ok = schema(vec![family("sum", pb::ValueType::SumInt64)], Millis);
        check_schema(&ok).unwrap();
        let mut bad = ok.clone();
        bad.families[0].value_type = 7;
        let e = check_schema(&bad).unwrap_err();
        assert_eq!(e.code, Code::InvalidArgument);
        assert!(e.message.contains("family sum: value type 7"), "{e}");
        let mut bad = schema(vec![], Micros);
        bad.granularity = 9;
        assert_eq!(check_schema(&bad).unwrap_err().code, Code::InvalidArgument);
        // A schema stored before either field existed decodes with both unset.
        let old = pb::Schema {
            families: vec![pb::ColumnFamily {
                name: "cf".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        check_schema(&old).unwrap();
        assert_eq!(old.families[0].value_type(), pb::ValueType::Bytes);
        assert_eq!(old.granularity(), Micros);
    }

    #[test]
    fn value_types_and_granularity_are_fixed_at_creation() {
        use pb::TimestampGranularity::{Micros, Millis};
        use pb::ValueType::{Bytes, SumInt64};
        let old = schema(vec![family("a", Bytes), family("s", SumInt64)], Millis);
        // Adding, dropping and keeping families is fine, whatever their types.
        let new = schema(vec![family("s", SumInt64), family("t", SumInt64)], Millis);
        check_schema_change(&old, &new).unwrap();
        let retyped = schema(vec![family("a", SumInt64), family("s", SumInt64)], Millis);
        let e = check_schema_change(&old, &retyped).unwrap_err();
        assert_eq!(e.code, Code::InvalidArgument);
        assert!(e.message.contains("family a"), "{e}");
        let regrained = schema(vec![family("a", Bytes), family("s", SumInt64)], Micros);
        let e = check_schema_change(&old, &regrained).unwrap_err();
        assert!(e.message.contains("granularity"), "{e}");
    }
}
