//! The schema at the service boundary: the wire's `Schema` / `GcRule` to the engine's `Schema`
//! / `GcPolicy` and back, validated on the way in (DESIGN.md section 2: family names
//! `[_a-zA-Z0-9][-_.a-zA-Z0-9]*` up to 64 characters, each named once; GC rules with positive
//! limits and bounded nesting). Bad input is `InvalidArgument` and nothing is applied.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use tabula_common::Error;
use tabula_proto::tabula::tablet::v1 as pb;
use tabula_proto::tabula::tablet::v1::gc_rule::Rule;

use crate::engine::{GcPolicy, Schema};

/// The longest family name.
pub const MAX_FAMILY_NAME_LEN: usize = 64;
/// The most families one table may have.
pub const MAX_FAMILIES: usize = 1_000;
/// How deep union/intersection rules may nest.
pub const MAX_GC_RULE_DEPTH: usize = 8;
/// The most child rules of one union or intersection.
pub const MAX_GC_RULE_CHILDREN: usize = 64;

/// The engine schema a wire schema describes; `InvalidArgument` for a bad family name, a
/// family named twice, or a bad GC rule.
pub fn schema_from_proto(schema: &pb::Schema) -> Result<Schema, Error> {
    if schema.families.len() > MAX_FAMILIES {
        return Err(Error::invalid_argument(format!(
            "{} column families; at most {MAX_FAMILIES} are allowed",
            schema.families.len()
        )));
    }
    let mut families = BTreeMap::new();
    for family in &schema.families {
        check_family_name(&family.name)?;
        let policy = match &family.gc_rule {
            None => GcPolicy::KeepAll,
            Some(rule) => gc_policy_from_proto(rule, 0)
                .map_err(|e| Error::invalid_argument(format!("family {}: {e}", family.name)))?,
        };
        let name = Bytes::copy_from_slice(family.name.as_bytes());
        if families.insert(name, policy).is_some() {
            return Err(Error::invalid_argument(format!(
                "column family {} is named twice",
                family.name
            )));
        }
    }
    Ok(Schema { families })
}

/// The wire form of an engine schema (families in name order).
pub fn schema_to_proto(schema: &Schema) -> pb::Schema {
    pb::Schema {
        families: schema
            .families
            .iter()
            .map(|(name, policy)| pb::ColumnFamily {
                name: String::from_utf8_lossy(name).into_owned(),
                gc_rule: match policy {
                    GcPolicy::KeepAll => None,
                    other => Some(gc_rule_to_proto(other)),
                },
            })
            .collect(),
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

/// A message saying what is wrong with a GC rule.
fn gc_policy_from_proto(rule: &pb::GcRule, depth: usize) -> Result<GcPolicy, String> {
    if depth > MAX_GC_RULE_DEPTH {
        return Err(format!(
            "GC rules nest deeper than {MAX_GC_RULE_DEPTH} levels"
        ));
    }
    match &rule.rule {
        // An empty rule is Cloud Bigtable's "no GC".
        None => Ok(GcPolicy::KeepAll),
        Some(Rule::MaxNumVersions(n)) => match u32::try_from(*n) {
            Ok(n) if n > 0 => Ok(GcPolicy::MaxVersions(n)),
            _ => Err(format!("max_num_versions must be positive, not {n}")),
        },
        Some(Rule::MaxAgeMicros(us)) => match u64::try_from(*us) {
            Ok(us) if us > 0 => Ok(GcPolicy::MaxAge(Duration::from_micros(us))),
            _ => Err(format!("max_age_micros must be positive, not {us}")),
        },
        Some(Rule::Intersection(i)) => {
            children(&i.rules, depth, "intersection").map(GcPolicy::Intersection)
        }
        Some(Rule::Union(u)) => children(&u.rules, depth, "union").map(GcPolicy::Union),
    }
}

fn children(rules: &[pb::GcRule], depth: usize, what: &str) -> Result<Vec<GcPolicy>, String> {
    if rules.is_empty() {
        return Err(format!("an empty {what} rule"));
    }
    if rules.len() > MAX_GC_RULE_CHILDREN {
        return Err(format!(
            "an {what} rule with {} children; at most {MAX_GC_RULE_CHILDREN}",
            rules.len()
        ));
    }
    rules
        .iter()
        .map(|r| gc_policy_from_proto(r, depth + 1))
        .collect()
}

fn gc_rule_to_proto(policy: &GcPolicy) -> pb::GcRule {
    let rule = match policy {
        GcPolicy::KeepAll => None,
        GcPolicy::MaxVersions(n) => {
            Some(Rule::MaxNumVersions(i32::try_from(*n).unwrap_or(i32::MAX)))
        }
        GcPolicy::MaxAge(d) => Some(Rule::MaxAgeMicros(
            i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
        )),
        GcPolicy::Union(rules) => Some(Rule::Union(pb::gc_rule::Union {
            rules: rules.iter().map(gc_rule_to_proto).collect(),
        })),
        GcPolicy::Intersection(rules) => Some(Rule::Intersection(pb::gc_rule::Intersection {
            rules: rules.iter().map(gc_rule_to_proto).collect(),
        })),
    };
    pb::GcRule { rule }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use tabula_common::Code;

    use super::*;

    fn family(name: &str, rule: Option<Rule>) -> pb::ColumnFamily {
        pb::ColumnFamily {
            name: name.to_owned(),
            gc_rule: rule.map(|r| pb::GcRule { rule: Some(r) }),
        }
    }

    #[test]
    fn schemas_round_trip() {
        let wire = pb::Schema {
            families: vec![
                family("cf", None),
                family("v", Some(Rule::MaxNumVersions(3))),
                family(
                    "x_1.y-z",
                    Some(Rule::Union(pb::gc_rule::Union {
                        rules: vec![
                            pb::GcRule {
                                rule: Some(Rule::MaxAgeMicros(5_000_000)),
                            },
                            pb::GcRule {
                                rule: Some(Rule::Intersection(pb::gc_rule::Intersection {
                                    rules: vec![pb::GcRule {
                                        rule: Some(Rule::MaxNumVersions(1)),
                                    }],
                                })),
                            },
                        ],
                    })),
                ),
            ],
        };
        let schema = schema_from_proto(&wire).unwrap();
        assert_eq!(schema.policy(b"v"), GcPolicy::MaxVersions(3));
        assert_eq!(
            schema.policy(b"x_1.y-z"),
            GcPolicy::Union(vec![
                GcPolicy::MaxAge(Duration::from_secs(5)),
                GcPolicy::Intersection(vec![GcPolicy::MaxVersions(1)]),
            ])
        );
        assert_eq!(schema_to_proto(&schema), wire);
    }

    #[test]
    fn bad_schemas_are_invalid_arguments() {
        let bad = |families: Vec<pb::ColumnFamily>| {
            let e = schema_from_proto(&pb::Schema { families }).unwrap_err();
            assert_eq!(e.code, Code::InvalidArgument, "{e}");
            e.message
        };
        assert!(bad(vec![family("", None)]).contains("empty"));
        assert!(bad(vec![family("-a", None)]).contains("starts"));
        assert!(bad(vec![family("a:b", None)]).contains("not allowed"));
        assert!(bad(vec![family(&"a".repeat(65), None)]).contains("too long"));
        assert!(bad(vec![family("a", None), family("a", None)]).contains("twice"));
        assert!(bad(vec![family("a", Some(Rule::MaxNumVersions(0)))]).contains("positive"));
        assert!(bad(vec![family("a", Some(Rule::MaxAgeMicros(-1)))]).contains("positive"));
        assert!(
            bad(vec![family(
                "a",
                Some(Rule::Union(pb::gc_rule::Union { rules: vec![] }))
            )])
            .contains("empty union")
        );
        let mut deep = pb::GcRule {
            rule: Some(Rule::MaxNumVersions(1)),
        };
        for _ in 0..=MAX_GC_RULE_DEPTH {
            deep = pb::GcRule {
                rule: Some(Rule::Union(pb::gc_rule::Union { rules: vec![deep] })),
            };
        }
        assert!(bad(vec![family("a", deep.rule)]).contains("nest"));
        check_family_name(&"a".repeat(64)).unwrap();
        check_family_name("_").unwrap();
    }
}
