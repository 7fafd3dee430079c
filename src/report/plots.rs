//! SVG plots: learning curves from the training log, a confusion heat map per task, and the
//! regime comparison (accuracy against training time). Rendered to a string and written
//! atomically; text is plain SVG `<text>`, so no font files are needed.

use std::collections::BTreeMap;
use std::path::Path;

use plotters::prelude::*;

use super::{confusion_counts, TaskEval};
use crate::error::{Error, Result};
use crate::fsutil;
use crate::train::EpochLog;

fn plot_err(e: impl std::fmt::Display) -> Error {
    Error::Internal(format!("plotting: {e}"))
}

fn save(path: &Path, svg: String) -> Result<()> {
    fsutil::write_bytes_atomic(path, svg.as_bytes())
}

const BLUE: RGBColor = RGBColor(31, 119, 180);
const ORANGE: RGBColor = RGBColor(255, 127, 14);
const GREEN: RGBColor = RGBColor(44, 160, 44);

/// Train loss (left) and dev accuracy / macro-F1 (right) per epoch for one task.
pub fn learning_curves(log: &[EpochLog], task: &str, path: &Path) -> Result<()> {
    let rows: Vec<&EpochLog> = log.iter().filter(|r| r.task == task).collect();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (960, 380)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let root = root
            .titled(&format!("{task}: learning curves"), ("sans-serif", 20))
            .map_err(plot_err)?;
        let (left, right) = root.split_horizontally(480);
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
            .x_label_formatter(&|x| format!("{x:.0}"))
            .draw()
            .map_err(plot_err)?;
        c.draw_series(LineSeries::new(
            rows.iter().map(|r| (r.epoch as f64, r.train_loss)),
            BLUE.stroke_width(2),
        ))
        .map_err(plot_err)?;

        let mut c = ChartBuilder::on(&right)
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(52)
            .caption("dev score", ("sans-serif", 16))
            .build_cartesian_2d(1.0..max_epoch, 0.0..1.0)
            .map_err(plot_err)?;
        c.configure_mesh()
            .x_desc("epoch")
            .y_desc("score")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .draw()
            .map_err(plot_err)?;
        c.draw_series(LineSeries::new(
            rows.iter()
                .filter_map(|r| Some((r.epoch as f64, r.dev_accuracy?))),
            ORANGE.stroke_width(2),
        ))
        .map_err(plot_err)?
        .label("accuracy")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], ORANGE.stroke_width(2)));
        c.draw_series(LineSeries::new(
            rows.iter()
                .filter_map(|r| Some((r.epoch as f64, r.dev_macro_f1?))),
            GREEN.stroke_width(2),
        ))
        .map_err(plot_err)?
        .label("macro-F1")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], GREEN.stroke_width(2)));
        c.configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::LowerRight)
            .draw()
            .map_err(plot_err)?;
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
pub fn confusion_heatmap(e: &TaskEval, path: &Path) -> Result<()> {
    const MAX: usize = 25;
    let (classes, truncated) = shown_classes(e, MAX);
    let k = classes.len();
    let counts = confusion_counts(e);
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
    let w = (label_w + cell * k as i32 + 40).max(20 + 8 * title.chars().count() as i32);
    let h = label_w + cell * k as i32 + 50;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (w as u32, h as u32)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        root.draw(&Text::new(title, (10, 8), ("sans-serif", 16)))
            .map_err(plot_err)?;
        let (x0, y0) = (label_w, 40);
        let font = ("sans-serif", 12).into_font();
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
                let shade = (255.0 * (1.0 - frac)) as u8;
                let color = RGBColor(
                    shade,
                    shade.saturating_add(((255 - shade) as f64 * 0.35) as u8),
                    255,
                );
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
                (4, y0 + i as i32 * cell + cell / 2 - 6),
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
pub struct ComparePoint {
    pub label: String,
    pub task: String,
    pub accuracy: f64,
    pub train_seconds: f64,
}

/// Accuracy against training time (log scale, 0 s drawn at 1 ms), one panel per task.
pub fn accuracy_vs_time(points: &[ComparePoint], path: &Path) -> Result<()> {
    let tasks: Vec<String> = points
        .iter()
        .map(|p| p.task.clone())
        .fold(Vec::new(), |mut v, t| {
            if !v.contains(&t) {
                v.push(t);
            }
            v
        });
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (520 * tasks.len().max(1) as u32, 440))
            .into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let panels = root.split_evenly((1, tasks.len().max(1)));
        for (panel, task) in panels.iter().zip(&tasks) {
            let pts: Vec<&ComparePoint> = points.iter().filter(|p| &p.task == task).collect();
            let tmax = pts.iter().map(|p| p.train_seconds).fold(1.0f64, f64::max) * 3.0;
            let amin = pts.iter().map(|p| p.accuracy).fold(1.0f64, f64::min);
            let lo = (amin - 0.05).max(0.0);
            let mut c = ChartBuilder::on(panel)
                .margin(14)
                .x_label_area_size(36)
                .y_label_area_size(52)
                .caption(
                    format!("{task}: test accuracy vs training time"),
                    ("sans-serif", 16),
                )
                .build_cartesian_2d((1e-3..tmax).log_scale(), lo..1.0)
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
                    p.label.clone(),
                    (x, p.accuracy),
                    ("sans-serif", 11),
                )))
                .map_err(plot_err)?;
            }
        }
        root.present().map_err(plot_err)?;
    }
    save(path, svg)
}
