//! The picture of a bench run: cumulative distributions of TTFT and of the gaps between
//! token arrivals, both servers on the same axes, as one SVG.

use std::path::Path;

use cacheon_harness::Summary;
use plotters::prelude::*;

const BASELINE: RGBColor = RGBColor(90, 90, 90);
const MINER: RGBColor = RGBColor(200, 60, 20);

/// TTFTs as the metrics define them (the arrival of the whole first token).
fn ttfts_ms(summary: &Summary) -> Vec<f64> {
    summary.requests.iter().filter_map(|m| m.ttft_ms).collect()
}

fn gaps_ms(summary: &Summary) -> Vec<f64> {
    summary
        .requests
        .iter()
        .flat_map(|m| m.itl_ms.iter().copied())
        .collect()
}

/// Points of the empirical CDF.
fn ecdf(mut v: Vec<f64>) -> Vec<(f64, f64)> {
    v.retain(|x| x.is_finite());
    v.sort_by(f64::total_cmp);
    let n = v.len() as f64;
    v.into_iter()
        .enumerate()
        .map(|(i, x)| (x, (i + 1) as f64 / n))
        .collect()
}

pub fn write(path: &Path, baseline: &Summary, miner: &Summary) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (1200, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let panels = root.split_evenly((1, 2));
    let series = [
        ("TTFT (ms)", ttfts_ms(baseline), ttfts_ms(miner)),
        (
            "time between token arrivals (ms)",
            gaps_ms(baseline),
            gaps_ms(miner),
        ),
    ];
    for (area, (label, base, mine)) in panels.iter().zip(series) {
        let (b, m) = (ecdf(base), ecdf(mine));
        let max_x = b
            .iter()
            .chain(&m)
            .map(|p| p.0)
            .fold(0.0_f64, f64::max)
            .max(1e-3)
            * 1.05;
        let mut chart = ChartBuilder::on(area)
            .caption(format!("CDF of {label}"), ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(44)
            .build_cartesian_2d(0.0..max_x, 0.0..1.0)?;
        chart
            .configure_mesh()
            .x_desc(label)
            .y_desc("fraction")
            .draw()?;
        for (name, points, color) in [("baseline", b, BASELINE), ("miner", m, MINER)] {
            chart
                .draw_series(LineSeries::new(points, color.stroke_width(2)))?
                .label(name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::LowerRight)
            .draw()?;
    }
    root.present()?;
    Ok(())
}
