//! SVG plots: learning curves from the training log, a confusion heat map per task, and the
//! regime comparison (accuracy against training time) and the data-efficiency curve. Rendered to a string and written
//! atomically; text is plain SVG `<text>`, so no font files are needed.

use std::collections::BTreeMap;
use std::path::Path;

use plotters::prelude::*;

use super::curve::{points as curve_points, CurveRow, Point as CurvePoint};
use super::{confusion_counts, TaskEval, MISSED, NONE};
use crate::epoch_log::EpochLog;
use crate::error::{Error, Result};
use crate::io::fsutil;

fn plot_err(e: impl std::fmt::Display) -> Error {
    Error::Internal(format!("plotting: {e}"))
}

fn save(path: &Path, svg: String) -> Result<()> {
    fsutil::write_bytes_atomic(path, svg.as_bytes())
}

/// An epoch axis tick: whole epochs only (a fractional tick would print as a repeated number).
fn epoch_tick(x: &f64) -> String {
    if (x - x.round()).abs() < 1e-6 {
        format!("{x:.0}")
    } else {
        String::new()
    }
}

const BLUE: RGBColor = RGBColor(31, 119, 180);
const ORANGE: RGBColor = RGBColor(255, 127, 14);
const GREEN: RGBColor = RGBColor(44, 160, 44);

/// The epoch whose weights training kept: the best mean dev macro-F1 over the tasks that have
/// one (the first of equals, as training decides); the last epoch when no task has dev scores.
pub(crate) fn kept_epoch(log: &[EpochLog]) -> Option<usize> {
    let last = log.iter().map(|r| r.epoch).max()?;
    let mut best: Option<(f64, usize)> = None;
    for epoch in 1..=last {
        let f1: Vec<f64> = log
            .iter()
            .filter(|r| r.epoch == epoch)
            .filter_map(EpochLog::dev_score)
            .collect();
        if f1.is_empty() {
            continue;
        }
        let mean = f1.iter().sum::<f64>() / f1.len() as f64;
        if best.is_none_or(|(b, _)| mean > b) {
            best = Some((mean, epoch));
        }
    }
    Some(best.map_or(last, |(_, e)| e))
}

/// Train loss (left) and dev accuracy / macro-F1 (right) per epoch for one task, with the epoch
/// training kept marked; the key sits below the panels, so it never covers a line.
pub(crate) fn learning_curves(log: &[EpochLog], task: &str, path: &Path) -> Result<()> {
    let rows: Vec<&EpochLog> = log.iter().filter(|r| r.task == task).collect();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (960, 410)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let root = root
            .titled(&format!("{task}: learning curves"), ("sans-serif", 20))
            .map_err(plot_err)?;
        let (panels, key) = root.split_vertically(350);
        let (left, right) = panels.split_horizontally(480);
        let max_epoch = rows.iter().map(|r| r.epoch).max().unwrap_or(1).max(2) as f64;
        let max_loss = rows
            .iter()
            .map(|r| r.train_loss)
            .fold(0.0f64, f64::max)
            .max(1e-6)
            * 1.1;

        let mut c = ChartBuilder::on(&left)
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(52)
            .caption("train loss", ("sans-serif", 16))
            .build_cartesian_2d(1.0..max_epoch, 0.0..max_loss)
            .map_err(plot_err)?;
        c.configure_mesh()
            .x_desc("epoch")
            .y_desc("loss")
            .x_label_formatter(&epoch_tick)
            .draw()
            .map_err(plot_err)?;
        c.draw_series(LineSeries::new(
            rows.iter().map(|r| (r.epoch as f64, r.train_loss)),
            BLUE.stroke_width(2),
        ))
        .map_err(plot_err)?;

        // The scores' own range (padded), so a curve that moves by a point is visible.
        let scores: Vec<f64> = rows
            .iter()
            .flat_map(|r| [r.dev_accuracy, r.dev_score()])
            .flatten()
            .collect();
        let lo = scores.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let (lo, hi) = if lo.is_finite() {
            let pad = ((hi - lo) * 0.15).max(0.01);
            ((lo - pad).max(0.0), (hi + pad).min(1.0))
        } else {
            (0.0, 1.0)
        };
        let mut c = ChartBuilder::on(&right)
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(52)
            .caption("dev score", ("sans-serif", 16))
            .build_cartesian_2d(1.0..max_epoch, lo..hi)
            .map_err(plot_err)?;
        c.configure_mesh()
            .x_desc("epoch")
            .y_desc("score")
            .x_label_formatter(&epoch_tick)
            .draw()
            .map_err(plot_err)?;
        c.draw_series(LineSeries::new(
            rows.iter()
                .filter_map(|r| Some((r.epoch as f64, r.dev_accuracy?))),
            ORANGE.stroke_width(2),
        ))
        .map_err(plot_err)?;
        c.draw_series(LineSeries::new(
            rows.iter()
                .filter_map(|r| Some((r.epoch as f64, r.dev_score()?))),
            GREEN.stroke_width(2),
        ))
        .map_err(plot_err)?;
        let score_name = if rows.iter().any(|r| r.dev_entity_f1.is_some()) {
            "entity F1"
        } else {
            "macro-F1"
        };
        let mut keys = vec![
            ("train loss".to_string(), BLUE, false),
            ("dev accuracy".to_string(), ORANGE, false),
            (format!("dev {score_name}"), GREEN, false),
        ];
        if let Some(kept) = kept_epoch(log) {
            let x = kept as f64;
            c.draw_series(DashedLineSeries::new(
                [(x, lo), (x, hi)],
                6,
                4,
                BLACK.stroke_width(1),
            ))
            .map_err(plot_err)?;
            keys.push((format!("kept: epoch {kept}"), BLACK, true));
        }
        for (i, (label, colour, dashed)) in keys.iter().enumerate() {
            let x = 60 + 220 * i as i32;
            let style = colour.stroke_width(if *dashed { 1 } else { 2 });
            key.draw(&PathElement::new(vec![(x, 20), (x + 24, 20)], style))
                .map_err(plot_err)?;
            key.draw(&Text::new(label.clone(), (x + 30, 13), ("sans-serif", 13)))
                .map_err(plot_err)?;
        }
        root.present().map_err(plot_err)?;
    }
    save(path, svg)
}

/// Classes shown in the heat map: all when few, else the `max` with most errors (row + column).
fn shown_classes(e: &TaskEval, max: usize) -> (Vec<String>, bool) {
    let mut all: Vec<String> = e
        .metrics
        .per_class
        .iter()
        .map(|c| c.label.clone())
        .collect();
    if all.len() <= max {
        return (all, false);
    }
    let mut errors: BTreeMap<&str, u64> = BTreeMap::new();
    for ((t, p), c) in confusion_counts(e) {
        if t != p {
            *errors
                .entry(
                    e.metrics
                        .per_class
                        .iter()
                        .find(|x| x.label == t)
                        .map_or("", |x| x.label.as_str()),
                )
                .or_default() += c;
            *errors
                .entry(
                    e.metrics
                        .per_class
                        .iter()
                        .find(|x| x.label == p)
                        .map_or("", |x| x.label.as_str()),
                )
                .or_default() += c;
        }
    }
    all.sort_by(|a, b| {
        errors
            .get(b.as_str())
            .unwrap_or(&0)
            .cmp(errors.get(a.as_str()).unwrap_or(&0))
            .then(a.cmp(b))
    });
    all.truncate(max);
    all.sort();
    (all, true)
}

/// Row-normalised confusion heat map; classes sorted by name, at most 25 (the most confused).
pub(crate) fn confusion_heatmap(e: &TaskEval, path: &Path) -> Result<()> {
    const MAX: usize = 25;
    let (mut classes, truncated) = shown_classes(e, MAX);
    let counts = confusion_counts(e);
    // Multi-label labels left out and spans missed (a column); labels wrongly added and
    // spurious spans (a row): for those tasks, the errors that dominate.
    if counts.keys().any(|(t, p)| p == MISSED || t == NONE) {
        classes.extend([MISSED.to_string(), NONE.to_string()]);
    }
    let k = classes.len();
    let label_w = 12
        + 7 * classes
            .iter()
            .map(|c| c.chars().count())
            .max()
            .unwrap_or(4)
            .min(40) as i32;
    let cell = if k <= 8 { 56 } else { 26 };
    let title = if truncated {
        format!(
            "{}: confusion ({} of {} classes with most errors), rows = true",
            e.task,
            k,
            e.metrics.per_class.len()
        )
    } else {
        format!("{}: confusion (rows = true, columns = predicted)", e.task)
    };
    // Left: axis title + row labels; right: the colour scale; bottom: column labels + title.
    const AXIS: i32 = 22;
    const SCALE_W: i32 = 90;
    let grid = cell * k as i32;
    let w = (AXIS + label_w + grid + SCALE_W).max(20 + 8 * title.chars().count() as i32);
    let h = 40 + grid + label_w + AXIS + 10;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (w as u32, h as u32)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        root.draw(&Text::new(title, (10, 8), ("sans-serif", 16)))
            .map_err(plot_err)?;
        let (x0, y0) = (AXIS + label_w, 40);
        let font = ("sans-serif", 12).into_font();
        let shade_of = |frac: f64| {
            let shade = (255.0 * (1.0 - frac.clamp(0.0, 1.0))) as u8;
            RGBColor(
                shade,
                shade.saturating_add(((255 - shade) as f64 * 0.35) as u8),
                255,
            )
        };
        // Axis titles.
        root.draw(&Text::new(
            "true class",
            (4, y0 + grid / 2 + 30),
            font.clone().transform(FontTransform::Rotate270),
        ))
        .map_err(plot_err)?;
        root.draw(&Text::new(
            "predicted class",
            (x0 + grid / 2 - 45, y0 + grid + label_w + 4),
            font.clone(),
        ))
        .map_err(plot_err)?;
        // The colour scale: share of the true class's rows, 0 at the bottom to 1 at the top.
        let (sx, steps) = (x0 + grid + 20, 20);
        let step_h = (grid.max(100) / steps).max(1);
        for i in 0..steps {
            let frac = 1.0 - i as f64 / (steps - 1) as f64;
            let y = y0 + i * step_h;
            root.draw(&Rectangle::new(
                [(sx, y), (sx + 16, y + step_h)],
                shade_of(frac).filled(),
            ))
            .map_err(plot_err)?;
        }
        root.draw(&Rectangle::new(
            [(sx, y0), (sx + 16, y0 + steps * step_h)],
            BLACK.stroke_width(1),
        ))
        .map_err(plot_err)?;
        for (frac, y) in [
            (1.0, y0),
            (0.5, y0 + steps * step_h / 2),
            (0.0, y0 + steps * step_h),
        ] {
            root.draw(&Text::new(
                format!("{frac:.1}"),
                (sx + 20, y - 6),
                font.clone(),
            ))
            .map_err(plot_err)?;
        }
        root.draw(&Text::new(
            "share of row",
            (sx - 4, y0 + steps * step_h + 10),
            ("sans-serif", 11).into_font(),
        ))
        .map_err(plot_err)?;
        for (i, t) in classes.iter().enumerate() {
            let row_total: u64 = counts
                .iter()
                .filter(|((tt, _), _)| tt == t)
                .map(|(_, c)| c)
                .sum();
            for (j, p) in classes.iter().enumerate() {
                let c = counts.get(&(t.clone(), p.clone())).copied().unwrap_or(0);
                let frac = if row_total == 0 {
                    0.0
                } else {
                    c as f64 / row_total as f64
                };
                let color = shade_of(frac);
                let (x, y) = (x0 + j as i32 * cell, y0 + i as i32 * cell);
                root.draw(&Rectangle::new(
                    [(x, y), (x + cell, y + cell)],
                    color.filled(),
                ))
                .map_err(plot_err)?;
                if c > 0 && cell >= 26 {
                    let ink = if frac > 0.5 { WHITE } else { BLACK };
                    root.draw(&Text::new(
                        c.to_string(),
                        (x + 3, y + cell / 2 - 6),
                        font.clone().color(&ink),
                    ))
                    .map_err(plot_err)?;
                }
            }
            root.draw(&Text::new(
                t.clone(),
                (AXIS + 4, y0 + i as i32 * cell + cell / 2 - 6),
                font.clone(),
            ))
            .map_err(plot_err)?;
            let x = x0 + i as i32 * cell + cell / 2 - 6;
            let y = y0 + k as i32 * cell + 4;
            root.draw(&Text::new(
                t.clone(),
                (x, y),
                font.clone().transform(FontTransform::Rotate90),
            ))
            .map_err(plot_err)?;
        }
        root.present().map_err(plot_err)?;
    }
    save(path, svg)
}

/// One point of the regime comparison.
pub(crate) struct ComparePoint {
    pub label: String,
    pub task: String,
    pub accuracy: f64,
    pub train_seconds: f64,
}

/// Accuracy against training time (log scale, 0 s drawn at 1 ms), one panel per task.
pub(crate) fn accuracy_vs_time(points: &[ComparePoint], path: &Path) -> Result<()> {
    let tasks: Vec<String> = points
        .iter()
        .map(|p| p.task.clone())
        .fold(Vec::new(), |mut v, t| {
            if !v.contains(&t) {
                v.push(t);
            }
            v
        });
    // Points carry a number; the key below names them (variant names are too long to print
    // beside points that often sit on top of each other).
    let mut variants: Vec<&str> = Vec::new();
    for p in points {
        if !variants.contains(&p.label.as_str()) {
            variants.push(&p.label);
        }
    }
    let number = |label: &str| variants.iter().position(|v| *v == label).unwrap_or(0) + 1;
    let key_h = 18 * variants.len() as u32 + 16;
    let width = 520 * tasks.len().max(1) as u32;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, 440 + key_h)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let (charts, key) = root.split_vertically(440);
        for (i, v) in variants.iter().enumerate() {
            key.draw(&Text::new(
                format!("{}  {v}", i + 1),
                (20, 8 + 18 * i as i32),
                ("sans-serif", 12),
            ))
            .map_err(plot_err)?;
        }
        let panels = charts.split_evenly((1, tasks.len().max(1)));
        for (panel, task) in panels.iter().zip(&tasks) {
            let pts: Vec<&ComparePoint> = points.iter().filter(|p| &p.task == task).collect();
            let tmax = pts.iter().map(|p| p.train_seconds).fold(1.0f64, f64::max) * 3.0;
            let amin = pts.iter().map(|p| p.accuracy).fold(1.0f64, f64::min);
            let amax = pts.iter().map(|p| p.accuracy).fold(0.0f64, f64::max);
            let lo = (amin - 0.05).max(0.0);
            let hi = (amax + 0.03).min(1.0).max(lo + 0.01);
            let mut c = ChartBuilder::on(panel)
                .margin(14)
                .x_label_area_size(36)
                .y_label_area_size(52)
                .caption(
                    format!("{task}: test accuracy vs training time"),
                    ("sans-serif", 16),
                )
                .build_cartesian_2d((1e-3..tmax).log_scale(), lo..hi)
                .map_err(plot_err)?;
            c.configure_mesh()
                .x_desc("training seconds (log; 0 s at 0.001)")
                .y_desc("accuracy")
                .draw()
                .map_err(plot_err)?;
            for p in pts {
                let x = p.train_seconds.max(1e-3);
                c.draw_series(std::iter::once(Circle::new(
                    (x, p.accuracy),
                    5,
                    BLUE.filled(),
                )))
                .map_err(plot_err)?;
                c.draw_series(std::iter::once(Text::new(
                    number(&p.label).to_string(),
                    (x, p.accuracy),
                    ("sans-serif", 12).into_font().color(&BLACK),
                )))
                .map_err(plot_err)?;
            }
        }
        root.present().map_err(plot_err)?;
    }
    save(path, svg)
}

/// `curve`'s plot: each task's score (mean ± std over seeds) against its train rows (log
/// scale), one colour per task, the key below the chart so it never covers a line.
pub(crate) fn data_efficiency(rows: &[CurveRow], path: &Path) -> Result<()> {
    let tasks = curve_points(rows);
    let key_h = 18 * tasks.len() as u32 + 16;
    let colours = [BLUE, ORANGE, GREEN, RED, BLACK];
    let all: Vec<&CurvePoint> = tasks.iter().flat_map(|(_, p)| p).collect();
    let xmin = all
        .iter()
        .map(|p| p.train_rows)
        .fold(f64::MAX, f64::min)
        .max(1.0);
    let xmax = all.iter().map(|p| p.train_rows).fold(1.0f64, f64::max);
    let lo = all.iter().map(|p| p.mean - p.std).fold(1.0f64, f64::min);
    let hi = all.iter().map(|p| p.mean + p.std).fold(0.0f64, f64::max);
    let (lo, hi) = ((lo - 0.03).max(0.0), (hi + 0.03).min(1.0));
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (640, 420 + key_h)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let (chart, key) = root.split_vertically(420);
        let mut c = ChartBuilder::on(&chart)
            .margin(14)
            .x_label_area_size(36)
            .y_label_area_size(52)
            .caption(
                "score vs training rows (mean ± std over seeds)",
                ("sans-serif", 16),
            )
            .build_cartesian_2d((xmin / 1.3..xmax * 1.3).log_scale(), lo..hi.max(lo + 0.01))
            .map_err(plot_err)?;
        c.configure_mesh()
            .x_desc("train rows (log)")
            .y_desc("score")
            .draw()
            .map_err(plot_err)?;
        for (i, (task, pts)) in tasks.iter().enumerate() {
            let colour = colours[i % colours.len()];
            c.draw_series(LineSeries::new(
                pts.iter().map(|p| (p.train_rows, p.mean)),
                colour.stroke_width(2),
            ))
            .map_err(plot_err)?;
            // Error bars: the spread over seeds, a vertical stroke through each point.
            c.draw_series(pts.iter().map(|p| {
                PathElement::new(
                    vec![
                        (p.train_rows, p.mean - p.std),
                        (p.train_rows, p.mean + p.std),
                    ],
                    colour.stroke_width(2),
                )
            }))
            .map_err(plot_err)?;
            c.draw_series(
                pts.iter()
                    .map(|p| Circle::new((p.train_rows, p.mean), 4, colour.filled())),
            )
            .map_err(plot_err)?;
            key.draw(&Rectangle::new(
                [(20, 10 + 18 * i as i32), (34, 20 + 18 * i as i32)],
                colour.filled(),
            ))
            .map_err(plot_err)?;
            key.draw(&Text::new(
                task.clone(),
                (40, 8 + 18 * i as i32),
                ("sans-serif", 12),
            ))
            .map_err(plot_err)?;
        }
        root.present().map_err(plot_err)?;
    }
    save(path, svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(epoch: usize, task: &str, f1: Option<f64>) -> EpochLog {
        EpochLog {
            epoch,
            task: task.into(),
            steps: 1,
            train_loss: 1.0,
            dev_accuracy: f1,
            dev_macro_f1: f1,
            dev_entity_f1: None,
            lr: 0.1,
            train_seconds: 0.0,
            seconds: 0.0,
        }
    }

    #[test]
    fn the_kept_epoch_is_the_best_mean_dev_f1_first_of_equals_or_the_last_without_dev() {
        let log = vec![
            row(1, "a", Some(0.5)),
            row(1, "b", Some(0.5)),
            row(2, "a", Some(0.7)),
            row(2, "b", Some(0.5)),
            row(3, "a", Some(0.5)),
            row(3, "b", Some(0.7)),
            row(4, "a", Some(0.4)),
            row(4, "b", None),
        ];
        assert_eq!(kept_epoch(&log), Some(2));
        let no_dev = vec![row(1, "a", None), row(2, "a", None)];
        assert_eq!(kept_epoch(&no_dev), Some(2));
        assert_eq!(kept_epoch(&[]), None);
    }
}
