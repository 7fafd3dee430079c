//! `eval`'s Markdown summary.

use std::fmt::Write as _;
use std::path::Path;

use super::markdown::{escape, MarkdownTable};
use super::TaskEval;
use crate::checkpoint::Manifest;
use crate::decision::thresholds_in_words;
use crate::error::Result;
use crate::tasks::SplitName;

/// `eval`'s `report.md`: the run the checkpoint records, the overall table, then per task its
/// plots, weakest classes, top confusions and most confident errors.
pub(crate) fn summary(
    m: &Manifest,
    checkpoint: &Path,
    split: SplitName,
    evals: &[TaskEval],
    notes: &[String],
) -> Result<String> {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# frostline eval — {} ({} split)\n",
        checkpoint.display(),
        split.as_str()
    );
    let _ = writeln!(
        s,
        "Regime `{}`, model `{}`, seed {}, {} trainable parameters, {:.2} s training.\n",
        m.regime,
        m.backbone.model_dir.display(),
        m.seed,
        m.trainable_params,
        m.training_seconds
    );
    let _ = writeln!(
        s,
        "## Overall (%)\n\n{}",
        super::markdown_table(
            &super::overall(evals)?,
            &[
                "accuracy",
                "micro_f1",
                "entity_f1",
                "macro_f1",
                "weighted_f1"
            ]
        )
    );
    for n in notes {
        let _ = writeln!(s, "> note: {n}\n");
    }
    for e in evals {
        task_section(&mut s, m, e);
    }
    Ok(s)
}

/// One task's section: plots, weakest classes, top confusions, most confident errors.
fn task_section(s: &mut String, m: &Manifest, e: &TaskEval) {
    let _ = writeln!(s, "## Task `{}`\n", e.task);
    if m.tasks.iter().any(|t| t.config.name == e.task && t.trained) {
        let _ = writeln!(s, "![learning curves](plots/learning_{}.svg)\n", e.task);
    }
    let _ = writeln!(s, "![confusion](plots/confusion_{}.svg)\n", e.task);
    let entry = m.tasks.iter().find(|t| t.config.name == e.task);
    if let Some(t) = entry
        .and_then(|t| t.thresholds.as_deref())
        .and_then(thresholds_in_words)
    {
        let _ = writeln!(s, "Decision (tuned on dev): {t}; a label is predicted when its probability reaches its threshold.\n");
    }
    let mut classes = e.metrics.per_class.clone();
    classes.sort_by(|a, b| a.f1.total_cmp(&b.f1).then(a.label.cmp(&b.label)));
    let _ = writeln!(
        s,
        "Weakest classes by F1 (all {} in `per_class.csv`):\n",
        classes.len()
    );
    let mut weakest = MarkdownTable::new(&[
        "label",
        ">precision",
        ">recall",
        ">F1",
        ">support",
        ">predicted",
    ]);
    for c in classes.iter().take(10) {
        weakest.row(vec![
            c.label.clone(),
            format!("{:.2}", 100.0 * c.precision),
            format!("{:.2}", 100.0 * c.recall),
            format!("{:.2}", 100.0 * c.f1),
            c.support.to_string(),
            c.predicted.to_string(),
        ]);
    }
    s.push_str(&weakest.render());
    let mut conf: Vec<((String, String), u64)> = super::confusion_counts(e)
        .into_iter()
        .filter(|((t, p), _)| t != p)
        .collect();
    conf.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let _ = writeln!(s, "\nTop confusions (true → predicted):\n");
    for ((t, p), c) in conf.iter().take(10) {
        let _ = writeln!(s, "- {} → {}: {c}", escape(t), escape(p));
    }
    for line in confused_pairs(e, 3) {
        let _ = writeln!(s, "\n{line}");
    }
    let _ = writeln!(
        s,
        "\nMost confident errors (more in `errors.csv`; every row in `predictions.csv`):\n"
    );
    let mut errors = MarkdownTable::new(&[">row", "text", "true", "predicted", ">probability"]);
    for i in super::wrong_rows(e).into_iter().take(5) {
        errors.row(vec![
            e.rows[i].to_string(),
            excerpt(&e.texts[i], 90),
            e.truth[i].clone(),
            e.pred[i].clone(),
            e.shown_prob(i).map_or("—".into(), |p| format!("{p:.3}")),
        ]);
    }
    s.push_str(&errors.render());
    let _ = writeln!(s);
}

/// The label pairs mistaken for each other most (both directions, at least 3 times and 10 % of
/// the two labels' rows), each as a line suggesting a merge or a relabelling; none for a task of
/// two labels, where merging means no task.
fn confused_pairs(e: &TaskEval, most: usize) -> Vec<String> {
    if e.metrics.per_class.len() <= 2 {
        return Vec::new();
    }
    let support = |l: &str| {
        e.metrics
            .per_class
            .iter()
            .find(|c| c.label == l)
            .map_or(0, |c| c.support)
    };
    let mut pairs: std::collections::BTreeMap<(String, String), u64> = Default::default();
    for ((t, p), c) in super::confusion_counts(e) {
        let special = [super::MISSED, super::NONE];
        if t != p && !special.contains(&t.as_str()) && !special.contains(&p.as_str()) {
            let key = if t < p { (t, p) } else { (p, t) };
            *pairs.entry(key).or_insert(0) += c;
        }
    }
    let mut ranked: Vec<((String, String), u64, f64)> = pairs
        .into_iter()
        .map(|((a, b), n)| {
            let rows = (support(&a) + support(&b)).max(1) as f64;
            let share = n as f64 / rows;
            ((a, b), n, share)
        })
        .filter(|&(_, n, share)| n >= 3 && share >= 0.1)
        .collect();
    ranked.sort_by(|x, y| y.1.cmp(&x.1).then(y.2.total_cmp(&x.2)));
    ranked
        .into_iter()
        .take(most)
        .map(|((a, b), n, share)| {
            format!(
                "**`{}` and `{}` are mistaken for each other {n} times ({:.0} % of their rows): consider merging them, or relabelling their examples.**",
                escape(&a),
                escape(&b),
                100.0 * share
            )
        })
        .collect()
}

/// At most `width` characters of `text`: the start, or — where a span is marked `[[…]]` — a
/// window around the span, with `…` where text is cut.
pub(crate) fn excerpt(text: &str, width: usize) -> String {
    let chars: Vec<char> = text.chars().collect();
    if chars.len() <= width {
        return text.to_string();
    }
    let mark = text.find("[[").map(|b| text[..b].chars().count());
    let end_mark = text.find("]]").map(|b| text[..b].chars().count() + 2);
    let start = match (mark, end_mark) {
        // Centre the span; never start past the point where the window would run off the end.
        (Some(a), Some(b)) => {
            let span = b.saturating_sub(a);
            a.saturating_sub(width.saturating_sub(span) / 2)
                .min(chars.len() - width)
        }
        _ => 0,
    };
    let end = (start + width).min(chars.len());
    let mut out = String::new();
    if start > 0 {
        out.push('…');
    }
    out.extend(&chars[start..end]);
    if end < chars.len() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::excerpt;

    #[test]
    fn excerpts_keep_the_marked_span() {
        let long = format!("{} [[Paris]] {}", "word ".repeat(40), "tail ".repeat(40));
        let e = excerpt(&long, 40);
        assert!(
            e.contains("[[Paris]]") && e.starts_with('…') && e.ends_with('…'),
            "{e}"
        );
        assert_eq!(e.chars().count(), 42);
        let at_end = format!("{}[[Paris]]", "word ".repeat(40));
        assert!(excerpt(&at_end, 40).ends_with("[[Paris]]"));
        assert_eq!(excerpt("short", 40), "short");
        assert_eq!(excerpt(&"x".repeat(50), 10), format!("{}…", "x".repeat(10)));
    }
}
