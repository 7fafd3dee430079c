//! Progress a person can trust: each bar is named (task, split, phase), counts the work that sets
//! the time — tokens for embedding, since batches run longest first and a row-based ETA would be
//! far off — and shows rounded rates. When stderr is not a terminal (CI, nohup, a log file) a
//! bar would print nothing useful, so a plain line is written every few seconds instead.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// Seconds between two plain progress lines.
const PLAIN_EVERY: Duration = Duration::from_secs(5);

pub(crate) struct Progress {
    name: String,
    /// What `total` counts ("tokens", "steps").
    unit: &'static str,
    total: u64,
    /// A second count shown beside the first ("texts"): (name, total).
    items: Option<(&'static str, u64)>,
    started: Instant,
    state: Mutex<State>,
    display: Display,
}

struct State {
    done: u64,
    items_done: u64,
    last_line: Instant,
    message: String,
}

enum Display {
    Hidden,
    Bar(ProgressBar),
    Plain,
}

impl Progress {
    /// A progress display named `name` over `total` units; hidden when not `enabled`.
    pub(crate) fn new(
        enabled: bool,
        name: impl Into<String>,
        total: u64,
        unit: &'static str,
    ) -> Self {
        let name = name.into();
        let display = match (enabled, std::io::stderr().is_terminal()) {
            (false, _) => Display::Hidden,
            (true, false) => Display::Plain,
            (true, true) => {
                let bar = ProgressBar::new(total);
                bar.set_style(
                    ProgressStyle::with_template("{prefix} [{bar:30}] {percent:>3}%  {msg}")
                        .expect("valid template")
                        .progress_chars("=> "),
                );
                bar.set_prefix(name.clone());
                Display::Bar(bar)
            }
        };
        Self {
            name,
            unit,
            total,
            items: None,
            started: Instant::now(),
            state: Mutex::new(State {
                done: 0,
                items_done: 0,
                last_line: Instant::now(),
                message: String::new(),
            }),
            display,
        }
    }

    /// Also count `total` items of another kind (shown as done / total and a rate).
    pub(crate) fn with_items(mut self, name: &'static str, total: u64) -> Self {
        self.items = Some((name, total));
        self
    }

    /// `units` more of the work done, and `items` more of the second count.
    pub(crate) fn inc(&self, units: u64, items: u64) {
        let mut s = self.state.lock().expect("progress state");
        s.done += units;
        s.items_done += items;
        let line = self.line(&s);
        match &self.display {
            Display::Hidden => {}
            Display::Bar(bar) => {
                bar.set_position(s.done);
                bar.set_message(line);
            }
            Display::Plain => {
                if s.last_line.elapsed() >= PLAIN_EVERY {
                    s.last_line = Instant::now();
                    eprintln!("{}: {line}", self.name);
                }
            }
        }
    }

    /// A short note shown after the counts (e.g. the running loss).
    pub(crate) fn set_message(&self, message: String) {
        self.state.lock().expect("progress state").message = message;
    }

    pub(crate) fn finish(&self) {
        if let Display::Bar(bar) = &self.display {
            bar.finish_and_clear();
        }
    }

    fn line(&self, s: &State) -> String {
        let secs = self.started.elapsed().as_secs_f64().max(1e-9);
        let mut line = format!(
            "{}/{} {} ({})",
            thousands(s.done),
            thousands(self.total),
            self.unit,
            rate(s.done as f64 / secs, self.unit)
        );
        if let Some((name, total)) = self.items {
            line.push_str(&format!(
                ", {}/{} {name} ({})",
                thousands(s.items_done),
                thousands(total),
                rate(s.items_done as f64 / secs, name)
            ));
        }
        if s.done > 0 && s.done < self.total {
            let left = secs * (self.total - s.done) as f64 / s.done as f64;
            line.push_str(&format!(", ETA {}", duration(left)));
        }
        if !s.message.is_empty() {
            line.push_str(", ");
            line.push_str(&s.message);
        }
        line
    }
}

/// 1234567 → "1,234,567".
pub(crate) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A rate rounded to what a person reads: "12,345 tokens/s", "48 texts/s", "3.2 steps/s".
pub(crate) fn rate(per_second: f64, unit: &str) -> String {
    if per_second >= 100.0 {
        format!("{} {unit}/s", thousands(per_second.round() as u64))
    } else if per_second >= 10.0 {
        format!("{per_second:.0} {unit}/s")
    } else {
        format!("{per_second:.1} {unit}/s")
    }
}

/// Seconds as "47 s", "3 min 05 s", "1 h 02 min".
pub(crate) fn duration(seconds: f64) -> String {
    let s = seconds.round().max(0.0) as u64;
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min {:02} s", s / 60, s % 60),
        _ => format!("{} h {:02} min", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_the_way_people_write_them() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(rate(12_345.678, "tokens"), "12,346 tokens/s");
        assert_eq!(rate(47.6, "texts"), "48 texts/s");
        assert_eq!(rate(3.21, "steps"), "3.2 steps/s");
        assert_eq!(duration(47.2), "47 s");
        assert_eq!(duration(185.0), "3 min 05 s");
        assert_eq!(duration(3720.0), "1 h 02 min");
    }

    #[test]
    fn the_eta_follows_the_units_done_not_the_items() {
        let p = Progress::new(false, "embedding", 1000, "tokens").with_items("texts", 10);
        // Long texts first: 1 text is half the tokens; the ETA must say about as long again.
        p.inc(500, 1);
        let line = p.line(&p.state.lock().unwrap());
        assert!(line.starts_with("500/1,000 tokens"), "{line}");
        assert!(
            line.contains("1/10 texts") && line.contains("ETA"),
            "{line}"
        );
    }
}
