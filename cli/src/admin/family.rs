//! Column families on the command line: the `--family` spec `NAME[:max_versions=N][:max_age=D]`
//! parsed into the client library's `Family`, and GC rules printed back (text and JSON). Pure.
//!
//! GC semantics (Cloud Bigtable's, for a union rule): with no option a family keeps every
//! cell; `max_versions=N` keeps the newest N cells of each column; `max_age=D` drops cells
//! older than D (`30s`, `15m`, `12h`, `7d`); with both, a cell is dropped when *either* rule
//! would drop it (a union): at most N versions, none older than D. Cells are dropped at
//! compaction; reads hide nothing until then.

use std::time::Duration;

use serde_json::{Value, json};
use tabula_client::{Family, GcRule};
use tabula_proto::tabula::tablet::v1 as tpb;

use crate::data::column::check_family;
use crate::exit::UsageError;

/// Parses a `--family` spec (see the module doc).
pub(crate) fn parse_family(spec: &str) -> Result<Family, UsageError> {
    let mut parts = spec.split(':');
    let name = parts.next().unwrap_or_default();
    check_family(name)?;
    let mut versions = None;
    let mut age = None;
    for option in parts {
        let bad = |why: &str| {
            UsageError(format!(
                "--family {spec:?}: {why}; the form is NAME[:max_versions=N][:max_age=D] \
                 with D like 30s, 15m, 12h or 7d"
            ))
        };
        let (key, value) = option
            .split_once('=')
            .ok_or_else(|| bad(&format!("option {option:?} has no '='")))?;
        match key {
            "max_versions" if versions.is_none() => {
                let n: i32 = value
                    .parse()
                    .ok()
                    .filter(|n| *n >= 1)
                    .ok_or_else(|| bad("max_versions must be a whole number from 1"))?;
                versions = Some(n);
            }
            "max_age" if age.is_none() => {
                age = Some(parse_age(value).ok_or_else(|| bad("max_age must be like 7d"))?);
            }
            "max_versions" | "max_age" => return Err(bad(&format!("{key} given twice"))),
            other => return Err(bad(&format!("unknown option {other:?}"))),
        }
    }
    let gc = match (versions, age) {
        (None, None) => GcRule::KeepAll,
        (Some(n), None) => GcRule::MaxVersions(n),
        (None, Some(d)) => GcRule::MaxAge(d),
        (Some(n), Some(d)) => GcRule::Union(vec![GcRule::MaxVersions(n), GcRule::MaxAge(d)]),
    };
    Ok(Family::new(name).gc(gc))
}

/// `30s`, `15m`, `12h`, `7d` (a positive whole number and a unit).
fn parse_age(text: &str) -> Option<Duration> {
    let split = text.len().checked_sub(1)?;
    let (number, unit) = text.split_at_checked(split)?;
    let n: u64 = number.parse().ok().filter(|n| *n > 0)?;
    let unit_secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    n.checked_mul(unit_secs).map(Duration::from_secs)
}

/// A GC rule as text: `keep all`, `max_versions=3`, `max_age=7d`, and `or` / `and` between
/// the parts of a union / intersection (nested ones in parentheses).
pub(crate) fn gc_text(rule: Option<&tpb::GcRule>) -> String {
    use tpb::gc_rule::Rule;
    let joined = |rules: &[tpb::GcRule], op: &str| {
        let parts: Vec<String> = rules
            .iter()
            .map(|r| match r.rule {
                Some(Rule::Union(_) | Rule::Intersection(_)) => format!("({})", gc_text(Some(r))),
                _ => gc_text(Some(r)),
            })
            .collect();
        if parts.is_empty() {
            "keep all".to_owned()
        } else {
            parts.join(op)
        }
    };
    match rule.and_then(|r| r.rule.as_ref()) {
        None => "keep all".to_owned(),
        Some(Rule::MaxNumVersions(n)) => format!("max_versions={n}"),
        Some(Rule::MaxAgeMicros(m)) => format!("max_age={}", age_text(*m)),
        Some(Rule::Union(u)) => joined(&u.rules, " or "),
        Some(Rule::Intersection(i)) => joined(&i.rules, " and "),
    }
}

/// A GC rule as JSON: `null` (keep all), `{"max_versions": N}`, `{"max_age_micros": M}`,
/// `{"union": [..]}`, `{"intersection": [..]}`.
pub(crate) fn gc_json(rule: Option<&tpb::GcRule>) -> Value {
    use tpb::gc_rule::Rule;
    let all =
        |rules: &[tpb::GcRule]| -> Vec<Value> { rules.iter().map(|r| gc_json(Some(r))).collect() };
    match rule.and_then(|r| r.rule.as_ref()) {
        None => Value::Null,
        Some(Rule::MaxNumVersions(n)) => json!({ "max_versions": n }),
        Some(Rule::MaxAgeMicros(m)) => json!({ "max_age_micros": m }),
        Some(Rule::Union(u)) => json!({ "union": all(&u.rules) }),
        Some(Rule::Intersection(i)) => json!({ "intersection": all(&i.rules) }),
    }
}

/// An age in the largest unit that divides it (`7d`, `90m`), else in microseconds (`15us`).
fn age_text(micros: i64) -> String {
    const UNITS: [(i64, &str); 4] = [
        (86_400_000_000, "d"),
        (3_600_000_000, "h"),
        (60_000_000, "m"),
        (1_000_000, "s"),
    ];
    UNITS
        .iter()
        .find(|(size, _)| micros != 0 && micros % size == 0)
        .map_or_else(
            || format!("{micros}us"),
            |(size, unit)| format!("{}{unit}", micros / size),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn family_specs_with_gc_options() {
        assert_eq!(parse_family("cf").unwrap(), Family::new("cf"));
        assert_eq!(
            parse_family("cf:max_versions=3").unwrap(),
            Family::new("cf").gc(GcRule::MaxVersions(3))
        );
        assert_eq!(
            parse_family("logs:max_age=7d").unwrap(),
            Family::new("logs").gc(GcRule::MaxAge(Duration::from_secs(7 * 86_400)))
        );
        assert_eq!(
            parse_family("cf:max_age=90m:max_versions=1").unwrap(),
            Family::new("cf").gc(GcRule::Union(vec![
                GcRule::MaxVersions(1),
                GcRule::MaxAge(Duration::from_secs(5400)),
            ]))
        );
        assert_eq!(
            parse_family("cf:max_age=30s").unwrap().gc,
            GcRule::MaxAge(Duration::from_secs(30))
        );
        assert_eq!(
            parse_family("cf:max_age=12h").unwrap().gc,
            GcRule::MaxAge(Duration::from_secs(43_200))
        );
    }

    #[test]
    fn bad_family_specs_are_usage_errors() {
        for bad in [
            "",
            ":max_versions=1",
            "c f",
            "cf:max_versions",
            "cf:max_versions=0",
            "cf:max_versions=x",
            "cf:max_age=7",
            "cf:max_age=7w",
            "cf:max_age=0d",
            "cf:max_age=-1d",
            "cf:max_age=",
            "cf:ttl=7d",
            "cf:max_versions=1:max_versions=2",
        ] {
            assert!(parse_family(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn gc_rules_print_as_they_are_typed() {
        use tpb::gc_rule::{Intersection, Rule, Union};
        let rule = |r| tpb::GcRule { rule: Some(r) };
        assert_eq!(gc_text(None), "keep all");
        assert_eq!(
            gc_text(Some(&rule(Rule::MaxNumVersions(3)))),
            "max_versions=3"
        );
        assert_eq!(
            gc_text(Some(&rule(Rule::MaxAgeMicros(7 * 86_400_000_000)))),
            "max_age=7d"
        );
        assert_eq!(
            gc_text(Some(&rule(Rule::MaxAgeMicros(90 * 60_000_000)))),
            "max_age=90m"
        );
        assert_eq!(gc_text(Some(&rule(Rule::MaxAgeMicros(15)))), "max_age=15us");
        let nested = rule(Rule::Union(Union {
            rules: vec![
                rule(Rule::MaxNumVersions(2)),
                rule(Rule::Intersection(Intersection {
                    rules: vec![
                        rule(Rule::MaxNumVersions(1)),
                        rule(Rule::MaxAgeMicros(1_000_000)),
                    ],
                })),
            ],
        }));
        assert_eq!(
            gc_text(Some(&nested)),
            "max_versions=2 or (max_versions=1 and max_age=1s)"
        );
        assert_eq!(
            gc_json(Some(&nested)),
            json!({"union": [
                {"max_versions": 2},
                {"intersection": [{"max_versions": 1}, {"max_age_micros": 1_000_000}]},
            ]})
        );
        assert_eq!(gc_json(None), Value::Null);
    }
}
