//! `--plot FILE.svg`: one SVG with two charts over the seconds of a run: throughput
//! (operations per second) above, latency percentiles (p50, p99, p99.9, milliseconds, log
//! scale) below. Drawn with plotters' SVG backend; the text layout uses its built-in font
//! metrics, so no font files are needed.

use std::path::Path;

use anyhow::anyhow;
use plotters::prelude::*;

use super::stats::{LatencySummary, Second};

/// Picks one percentile of a second's latencies.
type Pick = fn(&LatencySummary) -> u64;

/// Pixel size of the whole picture.
const SIZE: (u32, u32) = (900, 600);

/// Draws `seconds` under `title` into `path`.
pub(super) fn draw(path: &Path, title: &str, seconds: &[Second]) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let root = root
        .titled(title, ("sans-serif", 20))
        .map_err(|e| anyhow!("{e}"))?;
    let (top, bottom) = root.split_vertically(SIZE.1 / 2 - 20);
    let last = seconds.len().max(1) as f64;
    let max_ops = seconds.iter().map(|s| s.ops).max().unwrap_or(1).max(1) as f64;

    let mut chart = ChartBuilder::on(&top)
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..last, 0f64..max_ops * 1.1)
        .map_err(|e| anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .max_light_lines(2)
        .x_desc("seconds")
        .y_desc("ops/s")
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    chart
        .draw_series(LineSeries::new(
            seconds
                .iter()
                .map(|s| (s.second as f64 + 0.5, s.ops as f64)),
            &BLUE,
        ))
        .map_err(|e| anyhow!("{e}"))?
        .label("throughput")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));

    let ms = |us: u64| (us as f64 / 1000.0).max(0.001);
    let max_ms = seconds
        .iter()
        .filter_map(|s| s.latency.map(|l| ms(l.p999_us)))
        .fold(1.0, f64::max);
    let min_ms = seconds
        .iter()
        .filter_map(|s| s.latency.map(|l| ms(l.p50_us)))
        .fold(max_ms, f64::min);
    let mut chart = ChartBuilder::on(&bottom)
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..last, (min_ms * 0.8..max_ms * 1.25).log_scale())
        .map_err(|e| anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .max_light_lines(2)
        .x_desc("seconds")
        .y_desc("latency ms")
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    let percentiles: [(&str, RGBColor, Pick); 3] = [
        ("p50", GREEN, |l| l.p50_us),
        ("p99", RGBColor(230, 140, 0), |l| l.p99_us),
        ("p99.9", RED, |l| l.p999_us),
    ];
    for (name, color, pick) in percentiles {
        chart
            .draw_series(LineSeries::new(
                seconds
                    .iter()
                    .filter_map(|s| s.latency.map(|l| (s.second as f64 + 0.5, ms(pick(&l))))),
                &color,
            ))
            .map_err(|e| anyhow!("{e}"))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    root.present()
        .map_err(|e| anyhow!("writing {}: {e}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::bench::stats::Timeline;

    #[test]
    fn a_run_draws_into_an_svg_file() {
        let mut t = Timeline::new();
        for i in 0..3000u64 {
            t.record(
                Duration::from_millis(i),
                Duration::from_micros(200 + i % 700),
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.svg");
        draw(&path, "test run", &t.seconds()).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..80.min(svg.len())]);
        assert!(svg.contains("test run") && svg.contains("p99.9") && svg.contains("polyline"));
        // An empty run still draws (empty charts).
        draw(&dir.path().join("empty.svg"), "empty", &[]).unwrap();
    }
}
