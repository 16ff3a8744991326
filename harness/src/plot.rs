//! Pictures of a search's growth (`dst run --explore --plot FILE`): coverage and distinct
//! failures against runs, one line per search (random, explore), drawn as SVG by `plotters`.

use crate::explore::Growth;
use plotters::prelude::*;
use std::path::Path;

/// One search's growth, with its name in the legend.
pub struct Series<'a> {
    /// The legend's name, such as `explore`.
    pub name: &'a str,
    /// Coverage and failures after each generation.
    pub growth: &'a [Growth],
    /// The run that found each distinct failure (exact, where `growth` counts a failure at
    /// the end of its generation).
    pub failure_runs: Vec<u64>,
}

/// Draws `series` into an SVG file at `path`: coverage against runs above, distinct failures
/// against runs below. A one-line error when the file cannot be written.
pub fn plot_growth(path: &Path, title: &str, series: &[Series<'_>]) -> Result<(), String> {
    draw(path, title, series).map_err(|error| format!("cannot draw {}: {error}", path.display()))
}

fn draw(path: &Path, title: &str, series: &[Series<'_>]) -> Result<(), Box<dyn std::error::Error>> {
    let runs_max = series
        .iter()
        .flat_map(|s| s.growth.iter().map(|g| g.runs))
        .max()
        .unwrap_or(0)
        .max(1);
    let coverage_max = series
        .iter()
        .flat_map(|s| s.growth.iter().map(|g| g.coverage))
        .max()
        .unwrap_or(0)
        .max(1);
    let failures_max = series
        .iter()
        .map(|s| s.failure_runs.len())
        .max()
        .unwrap_or(0)
        .max(1);
    let colors = [
        RGBColor(200, 60, 40),
        RGBColor(30, 90, 200),
        RGBColor(40, 150, 60),
    ];
    let root = SVGBackend::new(path, (960, 720)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(title, ("sans-serif", 22))?;
    let (upper, lower) = root.split_vertically(430);

    let mut coverage = ChartBuilder::on(&upper)
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(0..runs_max, 0..coverage_max + coverage_max / 10)?;
    coverage
        .configure_mesh()
        .x_desc("runs")
        .y_desc("coverage (features)")
        .draw()?;
    for (index, one) in series.iter().enumerate() {
        let color = colors[index % colors.len()];
        coverage
            .draw_series(LineSeries::new(
                one.growth.iter().map(|g| (g.runs, g.coverage)),
                color.stroke_width(2),
            ))?
            .label(one.name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(2))
            });
    }
    coverage
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()?;

    let mut failures = ChartBuilder::on(&lower)
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(0..runs_max, 0..failures_max + 1)?;
    failures
        .configure_mesh()
        .x_desc("runs")
        .y_desc("distinct failures")
        .y_labels(failures_max + 2)
        .draw()?;
    for (index, one) in series.iter().enumerate() {
        let color = colors[index % colors.len()];
        // A step line: the count holds until the run that finds the next failure.
        let mut found = one.failure_runs.clone();
        found.sort_unstable();
        let mut steps = vec![(0, 0)];
        for (count, &run) in found.iter().enumerate() {
            steps.push((run, count));
            steps.push((run, count + 1));
        }
        let end = one.growth.last().map_or(0, |growth| growth.runs);
        steps.push((
            end.max(steps.last().map_or(0, |&(run, _)| run)),
            found.len(),
        ));
        failures
            .draw_series(LineSeries::new(steps, color.stroke_width(2)))?
            .label(one.name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(2))
            });
    }
    failures
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}
