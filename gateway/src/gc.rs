//! Column-family GC rules between Cloud Bigtable's admin API and the client library:
//! max versions, max age, union and intersection, both ways. An empty rule keeps everything.
//! Pure.

use std::time::Duration;

use tabula_client::GcRule;
use tabula_common::Error;
use tabula_proto::google::bigtable::admin::v2 as admin;
use tabula_proto::tabula::tablet::v1 as tpb;

/// A Cloud Bigtable rule as the client library's; `field` names it in errors.
pub(crate) fn from_admin(field: &str, rule: Option<admin::GcRule>) -> Result<GcRule, Error> {
    use admin::gc_rule::Rule;
    let Some(rule) = rule.and_then(|r| r.rule) else {
        return Ok(GcRule::KeepAll);
    };
    match rule {
        Rule::MaxNumVersions(n) if n >= 1 => Ok(GcRule::MaxVersions(n)),
        Rule::MaxNumVersions(n) => Err(Error::invalid_argument(format!(
            "{field}.max_num_versions: {n}; want at least 1"
        ))),
        Rule::MaxAge(d) => {
            let micros = i128::from(d.seconds) * 1_000_000 + i128::from(d.nanos) / 1_000;
            match u64::try_from(micros) {
                Ok(m) if m > 0 => Ok(GcRule::MaxAge(Duration::from_micros(m))),
                _ => Err(Error::invalid_argument(format!(
                    "{field}.max_age: {}s {}ns; want a positive duration",
                    d.seconds, d.nanos
                ))),
            }
        }
        Rule::Intersection(i) => Ok(GcRule::Intersection(list(
            &format!("{field}.intersection"),
            i.rules,
        )?)),
        Rule::Union(u) => Ok(GcRule::Union(list(&format!("{field}.union"), u.rules)?)),
    }
}

fn list(field: &str, rules: Vec<admin::GcRule>) -> Result<Vec<GcRule>, Error> {
    rules
        .into_iter()
        .enumerate()
        .map(|(i, r)| from_admin(&format!("{field}.rules[{i}]"), Some(r)))
        .collect()
}

/// A client-library rule as the master stores it (`None`: keep everything).
pub(crate) fn to_tablet(rule: &GcRule) -> Option<tpb::GcRule> {
    use tpb::gc_rule::Rule;
    let rule = match rule {
        GcRule::KeepAll => return None,
        GcRule::MaxVersions(n) => Rule::MaxNumVersions(*n),
        GcRule::MaxAge(d) => Rule::MaxAgeMicros(i64::try_from(d.as_micros()).unwrap_or(i64::MAX)),
        GcRule::Intersection(rules) => Rule::Intersection(tpb::gc_rule::Intersection {
            rules: rules.iter().filter_map(to_tablet).collect(),
        }),
        GcRule::Union(rules) => Rule::Union(tpb::gc_rule::Union {
            rules: rules.iter().filter_map(to_tablet).collect(),
        }),
    };
    Some(tpb::GcRule { rule: Some(rule) })
}

/// A rule as the master stores it, in Cloud Bigtable's form (`None`: keep everything).
pub(crate) fn to_admin(rule: Option<&tpb::GcRule>) -> Option<admin::GcRule> {
    use admin::gc_rule::Rule as A;
    use tpb::gc_rule::Rule as T;
    let rule = match rule?.rule.as_ref()? {
        T::MaxNumVersions(n) => A::MaxNumVersions(*n),
        T::MaxAgeMicros(m) => A::MaxAge(prost_types::Duration {
            seconds: m / 1_000_000,
            nanos: i32::try_from((m % 1_000_000) * 1_000).unwrap_or(0),
        }),
        T::Intersection(i) => A::Intersection(admin::gc_rule::Intersection {
            rules: i.rules.iter().filter_map(|r| to_admin(Some(r))).collect(),
        }),
        T::Union(u) => A::Union(admin::gc_rule::Union {
            rules: u.rules.iter().filter_map(|r| to_admin(Some(r))).collect(),
        }),
    };
    Some(admin::GcRule { rule: Some(rule) })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use admin::gc_rule::Rule as A;

    fn versions(n: i32) -> admin::GcRule {
        admin::GcRule {
            rule: Some(A::MaxNumVersions(n)),
        }
    }

    fn age(seconds: i64) -> admin::GcRule {
        admin::GcRule {
            rule: Some(A::MaxAge(prost_types::Duration { seconds, nanos: 0 })),
        }
    }

    #[test]
    fn client_rules_become_tablet_rules() {
        let rule = GcRule::Union(vec![
            GcRule::MaxVersions(2),
            GcRule::MaxAge(Duration::from_secs(1)),
        ]);
        let t = to_tablet(&rule).unwrap();
        assert_eq!(from_admin("f", to_admin(Some(&t))).unwrap(), rule);
        assert_eq!(to_tablet(&GcRule::KeepAll), None);
    }

    #[test]
    fn rules_convert_both_ways() {
        assert_eq!(from_admin("f", None).unwrap(), GcRule::KeepAll);
        assert_eq!(
            from_admin("f", Some(admin::GcRule::default())).unwrap(),
            GcRule::KeepAll
        );
        let nested = admin::GcRule {
            rule: Some(A::Union(admin::gc_rule::Union {
                rules: vec![
                    versions(3),
                    admin::GcRule {
                        rule: Some(A::Intersection(admin::gc_rule::Intersection {
                            rules: vec![age(432_000), versions(1)],
                        })),
                    },
                ],
            })),
        };
        let ours = from_admin("f", Some(nested.clone())).unwrap();
        assert_eq!(
            ours,
            GcRule::Union(vec![
                GcRule::MaxVersions(3),
                GcRule::Intersection(vec![
                    GcRule::MaxAge(Duration::from_secs(432_000)),
                    GcRule::MaxVersions(1)
                ])
            ])
        );
        // What the master stores, back to Cloud Bigtable's form.
        let stored = tpb::GcRule {
            rule: Some(tpb::gc_rule::Rule::Union(tpb::gc_rule::Union {
                rules: vec![
                    tpb::GcRule {
                        rule: Some(tpb::gc_rule::Rule::MaxNumVersions(3)),
                    },
                    tpb::GcRule {
                        rule: Some(tpb::gc_rule::Rule::Intersection(
                            tpb::gc_rule::Intersection {
                                rules: vec![
                                    tpb::GcRule {
                                        rule: Some(tpb::gc_rule::Rule::MaxAgeMicros(
                                            432_000_000_000,
                                        )),
                                    },
                                    tpb::GcRule {
                                        rule: Some(tpb::gc_rule::Rule::MaxNumVersions(1)),
                                    },
                                ],
                            },
                        )),
                    },
                ],
            })),
        };
        assert_eq!(to_admin(Some(&stored)), Some(nested));
        assert_eq!(to_admin(None), None);
        assert_eq!(to_admin(Some(&tpb::GcRule::default())), None);
    }

    #[test]
    fn bad_rules_are_invalid_arguments() {
        assert!(from_admin("f", Some(versions(0))).is_err());
        assert!(from_admin("f", Some(age(0))).is_err());
        let e = from_admin(
            "families[cf].gc_rule",
            Some(admin::GcRule {
                rule: Some(A::Union(admin::gc_rule::Union {
                    rules: vec![age(-5)],
                })),
            }),
        )
        .unwrap_err();
        assert!(
            e.message
                .starts_with("families[cf].gc_rule.union.rules[0].max_age"),
            "{}",
            e.message
        );
    }
}
