//! The Prometheus text exposition format, version 0.0.4: `# HELP` and `# TYPE` lines, then one
//! line per sample, `name{label="value",...} number`. Label values escape `\`, `"` and newline;
//! help text escapes `\` and newline. A pure writer over a `String`.

use std::fmt::Write as _;

use super::HistogramSnapshot;

/// The `Content-Type` of a scrape answer in this format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A metric family's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// Writes metric families in the text format.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    /// Starts a family: its help and type lines. Its samples follow.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let _ = writeln!(
            self.out,
            "# HELP {name} {}\n# TYPE {name} {}",
            escape_help(help),
            kind.name()
        );
    }

    /// One sample of a counter or gauge.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        self.labels(labels, None);
        let _ = writeln!(self.out, " {}", number(value));
    }

    /// The samples of one histogram series: cumulative `_bucket`s (with `le`), the `+Inf`
    /// bucket, `_sum` and `_count`.
    pub fn histogram(&mut self, name: &str, labels: &[(&str, &str)], snapshot: &HistogramSnapshot) {
        let bucket = format!("{name}_bucket");
        for (bound, count) in &snapshot.buckets {
            self.out.push_str(&bucket);
            self.labels(labels, Some(&number(*bound)));
            let _ = writeln!(self.out, " {count}");
        }
        self.out.push_str(&bucket);
        self.labels(labels, Some("+Inf"));
        let _ = writeln!(self.out, " {}", snapshot.count);
        self.sample(&format!("{name}_sum"), labels, snapshot.sum_seconds);
        self.sample(&format!("{name}_count"), labels, snapshot.count as f64);
    }

    /// The text written so far.
    pub fn finish(self) -> String {
        self.out
    }

    fn labels(&mut self, labels: &[(&str, &str)], le: Option<&str>) {
        if labels.is_empty() && le.is_none() {
            return;
        }
        self.out.push('{');
        let all = labels.iter().copied().chain(le.map(|v| ("le", v)));
        for (i, (name, value)) in all.enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            let _ = write!(self.out, "{name}=\"{}\"", escape_label_value(value));
        }
        self.out.push('}');
    }
}

/// A sample value: integers without a fraction, `+Inf`, `-Inf`, `NaN`.
fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_owned()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else {
        // Rust prints integral floats without a fraction ("3") and others shortest-exact.
        format!("{v}")
    }
}

fn escape_label_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_gauges_with_and_without_labels() {
        let mut e = Exposition::default();
        e.family("tabula_x_total", Kind::Counter, "Things done.");
        e.sample(
            "tabula_x_total",
            &[("rpc", "ReadRows"), ("code", "OK")],
            3.0,
        );
        e.sample("tabula_x_total", &[], 0.5);
        e.family("tabula_y", Kind::Gauge, "A gauge.");
        e.sample("tabula_y", &[("tablet", "00000000000000ff")], 1e12);
        assert_eq!(
            e.finish(),
            "# HELP tabula_x_total Things done.\n\
             # TYPE tabula_x_total counter\n\
             tabula_x_total{rpc=\"ReadRows\",code=\"OK\"} 3\n\
             tabula_x_total 0.5\n\
             # HELP tabula_y A gauge.\n\
             # TYPE tabula_y gauge\n\
             tabula_y{tablet=\"00000000000000ff\"} 1000000000000\n"
        );
    }

    #[test]
    fn histograms_are_cumulative_with_inf_sum_and_count() {
        let mut e = Exposition::default();
        e.family("h_seconds", Kind::Histogram, "Latency.");
        let snapshot = HistogramSnapshot {
            buckets: vec![(0.001, 1), (0.5, 3)],
            sum_seconds: 0.75,
            count: 4,
        };
        e.histogram("h_seconds", &[("rpc", "MutateRow")], &snapshot);
        assert_eq!(
            e.finish(),
            "# HELP h_seconds Latency.\n\
             # TYPE h_seconds histogram\n\
             h_seconds_bucket{rpc=\"MutateRow\",le=\"0.001\"} 1\n\
             h_seconds_bucket{rpc=\"MutateRow\",le=\"0.5\"} 3\n\
             h_seconds_bucket{rpc=\"MutateRow\",le=\"+Inf\"} 4\n\
             h_seconds_sum{rpc=\"MutateRow\"} 0.75\n\
             h_seconds_count{rpc=\"MutateRow\"} 4\n"
        );
    }

    #[test]
    fn label_values_and_help_are_escaped() {
        let mut e = Exposition::default();
        e.family("m", Kind::Gauge, "a \\ b\nc");
        e.sample("m", &[("l", "q\"u\\o\nte")], f64::INFINITY);
        e.sample("m", &[], f64::NAN);
        assert_eq!(
            e.finish(),
            "# HELP m a \\\\ b\\nc\n# TYPE m gauge\nm{l=\"q\\\"u\\\\o\\nte\"} +Inf\nm NaN\n"
        );
    }
}
