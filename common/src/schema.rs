//! Table schemas on the wire (`tabula.tablet.v1.Schema`): the checks every component applies
//! before accepting one (DESIGN.md section 2) — family names `[_a-zA-Z0-9][-_.a-zA-Z0-9]*` up
//! to 64 characters, each named once; GC rules with positive limits, non-empty unions and
//! intersections, and bounded nesting. The master checks a schema before recording it; the
//! tablet server checks again before converting it to its engine's schema. Bad input is
//! `InvalidArgument`.

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
    let mut seen = BTreeSet::new();
    for family in &schema.families {
        check_family_name(&family.name)?;
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
