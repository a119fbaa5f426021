//! The `--agitate` value: which faults to inject and how often. Pure.
//!
//! `master=60s,tablet=45s,lock=90s,pause=120s,admin=20s`, any subset, in any order; a kind
//! without `=PERIOD` takes its default period; an empty value (bare `--agitate`) is every kind
//! at its default. A period is a whole number with a unit: `ms`, `s`, `m` or `h`.

use std::fmt;
use std::time::Duration;

/// A fault kind the agitator fires on a period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Kind {
    /// SIGKILL the active master; restarted after a delay.
    Master,
    /// SIGKILL a random tablet server; restarted (under a fresh id) after a delay.
    Tablet,
    /// SIGKILL the lock-service leader; restarted on its data directory after a delay.
    Lock,
    /// SIGSTOP a random tablet server past its session TTL, then SIGCONT it.
    Pause,
    /// One admin operation on a random user tablet: split, move, merge, flush or compact.
    Admin,
}

impl Kind {
    /// Every kind, in the order of the spec's documentation.
    pub(crate) const ALL: [Kind; 5] = [
        Kind::Master,
        Kind::Tablet,
        Kind::Lock,
        Kind::Pause,
        Kind::Admin,
    ];

    /// Its name in the spec and in the fault log.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Master => "master",
            Kind::Tablet => "tablet",
            Kind::Lock => "lock",
            Kind::Pause => "pause",
            Kind::Admin => "admin",
        }
    }

    /// Its period when the spec names none.
    pub(crate) fn default_period(self) -> Duration {
        Duration::from_secs(match self {
            Kind::Master => 60,
            Kind::Tablet => 45,
            Kind::Lock => 90,
            Kind::Pause => 120,
            Kind::Admin => 20,
        })
    }

    fn parse(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which kinds fire, each with its period; sorted by kind, each kind at most once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AgitateSpec {
    pub(crate) periods: Vec<(Kind, Duration)>,
}

impl AgitateSpec {
    /// Every kind at its default period.
    pub(crate) fn defaults() -> AgitateSpec {
        AgitateSpec {
            periods: Kind::ALL.iter().map(|k| (*k, k.default_period())).collect(),
        }
    }

    /// Parses an `--agitate` value; the message is a usage error.
    pub(crate) fn parse(text: &str) -> Result<AgitateSpec, String> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(AgitateSpec::defaults());
        }
        let mut periods: Vec<(Kind, Duration)> = Vec::new();
        for item in text.split(',') {
            let item = item.trim();
            let (name, period) = match item.split_once('=') {
                Some((name, period)) => (name.trim(), Some(period.trim())),
                None => (item, None),
            };
            let kind = Kind::parse(name).ok_or_else(|| {
                format!(
                    "--agitate {text:?}: {name:?} is not a fault kind (use master, tablet, \
                     lock, pause, admin, e.g. master=60s,tablet=45s)"
                )
            })?;
            if periods.iter().any(|(k, _)| *k == kind) {
                return Err(format!("--agitate {text:?}: {kind} is given twice"));
            }
            let period = match period {
                Some(p) => {
                    parse_period(p).map_err(|e| format!("--agitate {text:?}: {kind}: {e}"))?
                }
                None => kind.default_period(),
            };
            periods.push((kind, period));
        }
        periods.sort_by_key(|(k, _)| *k);
        Ok(AgitateSpec { periods })
    }
}

impl fmt::Display for AgitateSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let items: Vec<String> = self
            .periods
            .iter()
            .map(|(k, p)| format!("{k}={}ms", p.as_millis()))
            .collect();
        f.write_str(&items.join(","))
    }
}

/// `250ms`, `45s`, `2m`, `1h`: a non-zero period.
fn parse_period(text: &str) -> Result<Duration, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a period (e.g. 500ms, 45s, 2m)"))?;
    let period = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        "" => return Err(format!("{text:?} needs a unit: ms, s, m or h")),
        _ => return Err(format!("{text:?}: unknown unit {unit:?} (ms, s, m or h)")),
    };
    if period.is_zero() {
        return Err(format!("{text:?}: a period must be longer than zero"));
    }
    Ok(period)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn an_empty_value_is_every_kind_at_its_default() {
        let spec = AgitateSpec::parse("").unwrap();
        assert_eq!(
            spec.periods,
            [
                (Kind::Master, secs(60)),
                (Kind::Tablet, secs(45)),
                (Kind::Lock, secs(90)),
                (Kind::Pause, secs(120)),
                (Kind::Admin, secs(20)),
            ]
        );
        assert_eq!(AgitateSpec::parse("  ").unwrap(), spec);
        assert_eq!(
            AgitateSpec::parse("master=60s,tablet=45s,lock=90s,pause=120s,admin=20s").unwrap(),
            spec
        );
    }

    #[test]
    fn a_subset_fires_only_its_kinds_sorted() {
        let spec = AgitateSpec::parse("admin=4s, master=10s,tablet").unwrap();
        assert_eq!(
            spec.periods,
            [
                (Kind::Master, secs(10)),
                (Kind::Tablet, secs(45)),
                (Kind::Admin, secs(4)),
            ]
        );
        assert_eq!(
            AgitateSpec::parse("pause=1500ms").unwrap().periods,
            [(Kind::Pause, Duration::from_millis(1500))]
        );
        assert_eq!(
            AgitateSpec::parse("lock=2m,master=1h").unwrap().periods,
            [(Kind::Master, secs(3600)), (Kind::Lock, secs(120))]
        );
        let spec = AgitateSpec::parse("tablet=8s,lock=12s").unwrap();
        assert_eq!(spec.to_string(), "tablet=8000ms,lock=12000ms");
        assert_eq!(AgitateSpec::parse(&spec.to_string()).unwrap(), spec);
    }

    #[test]
    fn bad_values_are_refused_with_a_reason() {
        for (text, why) in [
            ("disk=10s", "not a fault kind"),
            ("master=10s,master=20s", "twice"),
            ("master=10", "needs a unit"),
            ("master=10x", "unknown unit"),
            ("master=0s", "longer than zero"),
            ("master=", "not a period"),
            ("master=-5s", "not a period"),
            ("master=10s,", "not a fault kind"),
            ("=10s", "not a fault kind"),
            ("master=1.5s", "unknown unit"),
        ] {
            let err = AgitateSpec::parse(text).unwrap_err();
            assert!(err.contains(why), "{text}: {err}");
            assert!(err.starts_with("--agitate"), "{text}: {err}");
        }
    }
}
