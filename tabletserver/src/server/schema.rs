//! The schema at the service boundary: the wire's `Schema` / `GcRule` to the engine's `Schema`
//! / `GcPolicy` and back, validated on the way in (DESIGN.md section 2: family names
//! `[_a-zA-Z0-9][-_.a-zA-Z0-9]*` up to 64 characters, each named once; GC rules with positive
//! limits and bounded nesting). Bad input is `InvalidArgument` and nothing is applied. A
//! family's value type becomes the engine's set of aggregate families and the table's
//! granularity the engine's `Granularity`; a schema without them (stored before they existed)
//! is plain bytes families at microsecond granularity.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::Bytes;
use tabula_common::Error;
use tabula_common::schema::check_schema;
use tabula_proto::tabula::tablet::v1 as pb;
use tabula_proto::tabula::tablet::v1::gc_rule::Rule;

use crate::engine::{GcPolicy, Granularity, Schema};

pub use tabula_common::schema::{
    MAX_FAMILIES, MAX_FAMILY_NAME_LEN, MAX_GC_RULE_CHILDREN, MAX_GC_RULE_DEPTH, check_family_name,
};

/// The engine schema a wire schema describes; `InvalidArgument` for a bad family name, a
/// family named twice, or a bad GC rule (the checks of `tabula_common::schema`).
pub fn schema_from_proto(schema: &pb::Schema) -> Result<Schema, Error> {
    check_schema(schema)?;
    let families = schema
        .families
        .iter()
        .map(|family| {
            let policy = family
                .gc_rule
                .as_ref()
                .map_or(GcPolicy::KeepAll, gc_policy_from_proto);
            (Bytes::copy_from_slice(family.name.as_bytes()), policy)
        })
        .collect::<BTreeMap<_, _>>();
    let aggregates = schema
        .families
        .iter()
        .filter(|f| f.value_type() == pb::ValueType::SumInt64)
        .map(|f| Bytes::copy_from_slice(f.name.as_bytes()))
        .collect::<BTreeSet<_>>();
    let granularity = match schema.granularity() {
        pb::TimestampGranularity::Micros => Granularity::Micros,
        pb::TimestampGranularity::Millis => Granularity::Millis,
    };
    Ok(Schema {
        families,
        aggregates,
        granularity,
    })
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
                value_type: if schema.is_aggregate(name) {
                    pb::ValueType::SumInt64 as i32
                } else {
                    pb::ValueType::Bytes as i32
                },
            })
            .collect(),
        granularity: match schema.granularity {
            Granularity::Micros => pb::TimestampGranularity::Micros as i32,
            Granularity::Millis => pb::TimestampGranularity::Millis as i32,
        },
    }
}

/// The engine policy of a rule `check_schema` accepted.
fn gc_policy_from_proto(rule: &pb::GcRule) -> GcPolicy {
    match &rule.rule {
        None => GcPolicy::KeepAll,
        Some(Rule::MaxNumVersions(n)) => GcPolicy::MaxVersions(u32::try_from(*n).unwrap_or(1)),
        Some(Rule::MaxAgeMicros(us)) => {
            GcPolicy::MaxAge(Duration::from_micros(u64::try_from(*us).unwrap_or(1)))
        }
        Some(Rule::Intersection(i)) => {
            GcPolicy::Intersection(i.rules.iter().map(gc_policy_from_proto).collect())
        }
        Some(Rule::Union(u)) => GcPolicy::Union(u.rules.iter().map(gc_policy_from_proto).collect()),
    }
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
            ..Default::default()
        }
    }

    #[test]
    fn value_types_and_granularity_round_trip() {
        let wire = pb::Schema {
            families: vec![
                family("cf", None),
                pb::ColumnFamily {
                    value_type: pb::ValueType::SumInt64 as i32,
                    ..family("sum", Some(Rule::MaxNumVersions(1)))
                },
            ],
            granularity: pb::TimestampGranularity::Millis as i32,
        };
        let schema = schema_from_proto(&wire).unwrap();
        assert!(schema.is_aggregate(b"sum"));
        assert!(!schema.is_aggregate(b"cf"));
        assert_eq!(schema.granularity, Granularity::Millis);
        assert_eq!(schema_to_proto(&schema), wire);
        // A schema stored before value types: plain families, microseconds.
        let old = schema_from_proto(&pb::Schema {
            families: vec![family("cf", None)],
            ..Default::default()
        })
        .unwrap();
        assert!(old.aggregates.is_empty());
        assert_eq!(old.granularity, Granularity::Micros);
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
            ..Default::default()
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
            let e = schema_from_proto(&pb::Schema {
                families,
                ..Default::default()
            })
            .unwrap_err();
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
