//! One SVG per strategy, two panels over the same time axis: what users saw
//! (failed requests per second) and how much traffic the new version had,
//! with dashed markers at the release and at the rollback.

use std::path::Path;

use plotters::prelude::*;

use crate::figures::Run;

/// The series of one plot, in seconds since the load started.
#[derive(Debug, Clone, PartialEq)]
pub struct PlotData {
    pub title: String,
    pub duration_s: f64,
    /// Failed user requests, percent of that second's.
    pub error_percent: Vec<(f64, f64)>,
    /// Green's routing weight, as steps.
    pub green_weight: Vec<(f64, f64)>,
    /// Share of calls green served, per interval of about 1 s.
    pub green_share: Vec<(f64, f64)>,
    pub release_s: f64,
    pub rollback_s: Option<f64>,
}

impl PlotData {
    pub fn of(run: &Run, title: String) -> PlotData {
        let error_percent: Vec<(f64, f64)> = run
            .per_second()
            .iter()
            .map(|s| (s.t + 0.5, s.error_percent()))
            .collect();
        let mut green_weight = Vec::new();
        let mut previous: Option<f64> = None;
        for sample in &run.samples {
            let t = run.seconds(sample.at_ms);
            let weight = f64::from(sample.green_weight);
            if let Some(before) = previous
                && before != weight
            {
                green_weight.push((t, before));
            }
            green_weight.push((t, weight));
            previous = Some(weight);
        }
        let green_share = run
            .intervals(1000)
            .iter()
            .filter_map(|i| i.green_share().map(|share| (i.t, share)))
            .collect();
        let figures = run.figures();
        let last = |points: &[(f64, f64)]| points.last().map_or(0.0, |p| p.0);
        let duration_s = last(&error_percent)
            .max(last(&green_weight))
            .ceil()
            .max(1.0);
        PlotData {
            title,
            duration_s,
            error_percent,
            green_weight,
            green_share,
            release_s: figures.release_s,
            rollback_s: figures.rollback_s,
        }
    }
}

const RELEASE: RGBColor = RGBColor(230, 120, 0);
const ROLLBACK: RGBColor = RGBColor(200, 0, 0);
const USERS: RGBColor = RGBColor(180, 30, 30);
const WEIGHT: RGBColor = RGBColor(20, 130, 60);
const SHARE: RGBColor = RGBColor(60, 90, 200);

pub fn draw(path: &Path, data: &PlotData) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (960, 620)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(&data.title, ("sans-serif", 22))?;
    let panels = root.split_evenly((2, 1));
    let x = 0f64..data.duration_s;

    let peak = data.error_percent.iter().map(|p| p.1).fold(0.0, f64::max);
    let top = (peak * 1.2).clamp(5.0, 100.0);
    let mut errors = ChartBuilder::on(&panels[0])
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .caption("what users saw", ("sans-serif", 16))
        .build_cartesian_2d(x.clone(), 0f64..top)?;
    errors
        .configure_mesh()
        .light_line_style(WHITE)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| tick(*y))
        .x_desc("seconds since the load started")
        .y_desc("failed requests, % per second")
        .draw()?;
    errors
        .draw_series(LineSeries::new(
            data.error_percent.iter().copied(),
            USERS.stroke_width(2),
        ))?
        .label("failed user requests (k6)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], USERS.stroke_width(2)));
    markers(&mut errors, data, top)?;
    errors
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;

    let mut traffic = ChartBuilder::on(&panels[1])
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .caption("traffic on the new version", ("sans-serif", 16))
        .build_cartesian_2d(x, 0f64..105f64)?;
    traffic
        .configure_mesh()
        .light_line_style(WHITE)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| tick(*y))
        .x_desc("seconds since the load started")
        .y_desc("green, %")
        .draw()?;
    traffic
        .draw_series(LineSeries::new(
            data.green_weight.iter().copied(),
            WEIGHT.stroke_width(2),
        ))?
        .label("green weight")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], WEIGHT.stroke_width(2)));
    traffic
        .draw_series(LineSeries::new(data.green_share.iter().copied(), &SHARE))?
        .label("share of calls green served")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], SHARE));
    markers(&mut traffic, data, 105.0)?;
    traffic
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

/// A tick label without trailing zeros: 2, 2.5.
fn tick(value: f64) -> String {
    let text = format!("{value:.1}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

type Chart<'a, 'b> = ChartContext<
    'a,
    SVGBackend<'b>,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

fn markers(chart: &mut Chart<'_, '_>, data: &PlotData, top: f64) -> anyhow::Result<()> {
    let mut marks = vec![("release", data.release_s, RELEASE)];
    if let Some(back) = data.rollback_s {
        marks.push(("rollback", back, ROLLBACK));
    }
    for (name, at, color) in marks {
        chart
            .draw_series(DashedLineSeries::new(
                vec![(at, 0.0), (at, top)],
                6,
                4,
                color.stroke_width(2),
            ))?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    Ok(())
}

/// A simple line chart: one line per named series, and an optional vertical
/// marker (for example the knee).
pub fn lines(
    path: &Path,
    title: &str,
    (x_desc, y_desc): (&str, &str),
    series: &[(String, Vec<(f64, f64)>)],
    marker: Option<(&str, f64)>,
) -> anyhow::Result<()> {
    const PALETTE: [RGBColor; 6] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(90, 90, 90),
    ];
    let points = series.iter().flat_map(|(_, s)| s.iter());
    let (x_max, y_max) = points.fold((1.0f64, 0.0f64), |(x, y), p| (x.max(p.0), y.max(p.1)));
    let root = SVGBackend::new(path, (900, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .margin(14)
        .caption(title, ("sans-serif", 20))
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d(0f64..x_max * 1.05, 0f64..(y_max * 1.15).max(1e-9))?;
    chart
        .configure_mesh()
        .light_line_style(WHITE)
        .x_desc(x_desc)
        .y_desc(y_desc)
        .y_label_formatter(&|y| tick(*y))
        .draw()?;
    for (i, (name, points)) in series.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                color.stroke_width(2),
            ))?
            .label(name.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    if let Some((name, at)) = marker {
        chart
            .draw_series(DashedLineSeries::new(
                vec![(at, 0.0), (at, y_max * 1.15)],
                6,
                4,
                RELEASE.stroke_width(2),
            ))?
            .label(name)
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RELEASE.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

/// One panel of [`panels`]: a series of points per name.
#[derive(Debug, Clone, PartialEq)]
pub struct Panel {
    pub caption: String,
    pub y_desc: String,
    pub series: Vec<(String, Vec<(f64, f64)>)>,
}

/// Panels stacked over the same x axis; each series drawn as dots joined
/// by a thin line, with its median as a dashed line across.
pub fn panels(path: &Path, title: &str, x_desc: &str, panels: &[Panel]) -> anyhow::Result<()> {
    const PALETTE: [RGBColor; 4] = [
        RGBColor(31, 119, 180),
        RGBColor(214, 39, 40),
        RGBColor(44, 160, 44),
        RGBColor(148, 103, 189),
    ];
    let height = 60 + 300 * u32::try_from(panels.len().max(1)).unwrap_or(1);
    let root = SVGBackend::new(path, (960, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(title, ("sans-serif", 22))?;
    let areas = root.split_evenly((panels.len().max(1), 1));
    let points = || {
        panels
            .iter()
            .flat_map(|p| p.series.iter().flat_map(|(_, s)| s.iter()))
    };
    let x_max = points().fold(1.0f64, |x, p| x.max(p.0));
    for (panel, area) in panels.iter().zip(&areas) {
        let y_max = panel
            .series
            .iter()
            .flat_map(|(_, s)| s.iter())
            .fold(0.0f64, |y, p| y.max(p.1));
        let mut chart = ChartBuilder::on(area)
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .caption(&panel.caption, ("sans-serif", 16))
            // Headroom above the highest point keeps the legend off the points.
            .build_cartesian_2d(0.5f64..x_max + 0.5, 0f64..(y_max * 1.5).max(1.0))?;
        // Runs are whole numbers: a tick between two of them says nothing.
        let whole = |x: &f64| {
            if (x - x.round()).abs() < 1e-6 {
                format!("{x:.0}")
            } else {
                String::new()
            }
        };
        chart
            .configure_mesh()
            .light_line_style(WHITE)
            .x_labels((x_max as usize).clamp(2, 25))
            .x_label_formatter(&whole)
            .y_label_formatter(&|y| tick(*y))
            .x_desc(x_desc)
            .y_desc(panel.y_desc.as_str())
            .draw()?;
        for (i, (name, points)) in panel.series.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            chart.draw_series(LineSeries::new(points.iter().copied(), color.mix(0.4)))?;
            chart
                .draw_series(points.iter().map(|p| Circle::new(*p, 4, color.filled())))?
                .label(name.as_str())
                .legend(move |(x, y)| Circle::new((x + 10, y), 4, color.filled()));
            let mut values: Vec<f64> = points.iter().map(|p| p.1).collect();
            values.sort_by(f64::total_cmp);
            if let Some(median) = median(&values) {
                chart.draw_series(DashedLineSeries::new(
                    vec![(0.5, median), (x_max + 0.5, median)],
                    6,
                    4,
                    color.stroke_width(1),
                ))?;
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
    }
    root.present()?;
    Ok(())
}

/// The median of sorted values.
fn median(sorted: &[f64]) -> Option<f64> {
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::figures::tests::synthetic;
    use crate::strategy::Strategy;

    #[test]
    fn panels_of_points_per_run() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("runs.svg");
        let panel = Panel {
            caption: "failed user requests".into(),
            y_desc: "failed".into(),
            series: vec![
                ("canary".into(), vec![(1.0, 2.0), (2.0, 3.0), (3.0, 1.0)]),
                ("canary, gates only".into(), vec![(1.0, 9.0), (2.0, 12.0)]),
            ],
        };
        panels(&path, "runs", "run", &[panel.clone(), panel]).expect("draws");
        let svg = std::fs::read_to_string(&path).expect("written");
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("canary, gates only"));
        assert!(svg.matches("<circle").count() >= 10, "{svg}");
        assert_eq!(median(&[1.0, 2.0, 3.0]), Some(2.0));
        assert_eq!(median(&[1.0, 2.0]), Some(1.5));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn ticks() {
        assert_eq!(tick(2.0), "2");
        assert_eq!(tick(2.5), "2.5");
        assert_eq!(tick(0.0), "0");
        assert_eq!(tick(100.0), "100");
    }

    #[test]
    fn an_svg_with_both_panels_and_markers() {
        let run = synthetic(Strategy::Canary);
        let data = PlotData::of(&run, "canary".into());
        assert_eq!(data.duration_s, 40.0);
        assert!(data.rollback_s.is_some());
        // The weight is drawn as steps: up at the release, down at the rollback.
        assert!(data.green_weight.contains(&(15.25, 0.0)));
        assert!(data.green_weight.contains(&(15.25, 25.0)));
        assert!(data.green_weight.contains(&(22.25, 0.0)));
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("canary.svg");
        draw(&path, &data).expect("draws");
        let svg = std::fs::read_to_string(&path).expect("written");
        assert!(svg.starts_with("<svg"), "{}", &svg[..40.min(svg.len())]);
        for text in [
            "what users saw",
            "traffic on the new version",
            "release",
            "rollback",
            "green weight",
        ] {
            assert!(svg.contains(text), "{text} missing");
        }
        assert!(svg.matches("<polyline").count() >= 7, "lines and markers");
    }
}
