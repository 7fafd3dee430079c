//! `report.html` in a real browser: `eval` and `compare` pages rendered by headless Chromium
//! (Debian's, from scripts/setup_browser.sh), checked to draw their plots — coloured pixels that
//! the same page without its figures does not have — and to hold one inline SVG per plot with
//! nothing fetched. `FROSTLINE_SCREENSHOTS=DIR` keeps the screenshots.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

fn chromium() -> PathBuf {
    let path = std::env::var_os("FROSTLINE_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/usr/bin/chromium".into());
    assert!(
        path.is_file(),
        "{} is missing: run scripts/setup_browser.sh (scripts/test.sh does)",
        path.display()
    );
    path
}

fn headless(page: &Path, extra: &[&str]) -> std::process::Output {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1500,2600",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "chromium: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Pixels of a PNG screenshot whose channels differ by more than 60 (colour, not the grey of
/// text and table rules).
fn coloured_pixels(png_path: &Path) -> usize {
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(png_path).unwrap(),
    ));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    assert!(channels >= 3, "{:?}", info.color_type);
    buf[..info.buffer_size()]
        .chunks(channels)
        .filter(|p| {
            let (lo, hi) = (p[..3].iter().min().unwrap(), p[..3].iter().max().unwrap());
            hi - lo > 60
        })
        .count()
}

/// Renders `report` and a copy without its figures; returns the screenshot's coloured pixels and
/// the control's, and checks the DOM holds `plots` inline SVGs and no external resource.
fn render(report: &Path, plots: usize, name: &str) -> (usize, usize) {
    let html = std::fs::read_to_string(report).unwrap();
    assert!(
        !html.contains("<img") && !html.contains("src=") && !html.contains("href=\"http"),
        "self-contained"
    );
    let dom = String::from_utf8(headless(report, &["--dump-dom"]).stdout).unwrap();
    assert_eq!(
        dom.matches("<figure class=\"plot\"><svg").count(),
        plots,
        "{name}"
    );
    let shot = report.with_file_name(format!("{name}.png"));
    headless(report, &[&format!("--screenshot={}", shot.display())]);
    // The control: the same page, figures removed.
    let mut bare = String::new();
    let mut rest = html.as_str();
    while let Some(a) = rest.find("<figure") {
        bare.push_str(&rest[..a]);
        let b = rest[a..].find("</figure>").unwrap() + a + "</figure>".len();
        rest = &rest[b..];
    }
    bare.push_str(rest);
    let control_page = report.with_file_name("control.html");
    std::fs::write(&control_page, bare).unwrap();
    let control = report.with_file_name(format!("{name}-control.png"));
    headless(
        &control_page,
        &[&format!("--screenshot={}", control.display())],
    );
    if let Some(keep) = std::env::var_os("FROSTLINE_SCREENSHOTS") {
        std::fs::create_dir_all(&keep).unwrap();
        std::fs::copy(&shot, Path::new(&keep).join(format!("{name}.png"))).unwrap();
    }
    (coloured_pixels(&shot), coloured_pixels(&control))
}

#[test]
fn eval_and_compare_html_reports_render_their_plots_in_chromium() {
    let Some(model) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cache = d.join("cache");
    let r = repo();
    let data = args(&[
        &"--model",
        &model,
        &"--train",
        &r.join("data/tickets/train.csv"),
        &"--test",
        &r.join("data/tickets/test.csv"),
        &"--text-column body --label-column category,priority --set train.epochs=3",
    ]);
    let (ok, _, err) = run(&mut fl(
        d,
        &cache,
        &[&"train --no-progress --out ck", &data],
    ));
    assert!(ok, "{err}");
    let (ok, _, err) = run(&mut fl(d, &cache, &[&"eval --no-progress --checkpoint ck"]));
    assert!(ok, "{err}");
    // Per task: learning curves and a confusion heat map.
    let (shown, control) = render(&d.join("ck/eval-test/report.html"), 4, "eval");
    assert!(
        shown > 500 && shown > 10 * control,
        "eval: {shown} coloured pixels, {control} without plots"
    );

    let (ok, _, err) = run(&mut fl(
        d,
        &cache,
        &[&"compare --no-progress --no-frost-line --out cmp", &data],
    ));
    assert!(ok, "{err}");
    let (shown, control) = render(&d.join("cmp/report.html"), 1, "compare");
    assert!(
        shown > 500 && shown > 10 * control,
        "compare: {shown} coloured pixels, {control} without plots"
    );
}
