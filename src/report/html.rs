//! `report.html`: a report's Markdown summary as one self-contained page — the plots it links
//! inlined as SVG (no network, no other file needed), tables and plots side by side where the
//! window is wide enough.

use std::path::{Component, Path};

use pulldown_cmark::{html, Event, Options, Parser, Tag, TagEnd};

use crate::error::{Error, Result};

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1500px;padding:0 1em;color:#222}\
table{border-collapse:collapse;display:inline-table;vertical-align:top;margin:0 2em 1.5em 0;font-size:14px}\
th,td{border:1px solid #ccc;padding:3px 8px}th{background:#f3f3f3}tr:nth-child(even) td{background:#fafafa}\
figure.plot{display:inline-block;vertical-align:top;margin:0 1.5em 1.5em 0;max-width:100%;overflow-x:auto}\
figure.plot svg{max-width:100%;height:auto}blockquote{color:#555;border-left:3px solid #ccc;margin-left:0;padding-left:1em}\
code{background:#f3f3f3;padding:0 3px}";

/// The page for `markdown` (a report's summary), its images read from `dir` and inlined: each
/// must be an `.svg` file inside `dir` (the report's own plots).
pub(crate) fn page(title: &str, markdown: &str, dir: &Path) -> Result<String> {
    let mut events = Vec::new();
    let mut in_image = false;
    for event in Parser::new_ext(markdown, Options::ENABLE_TABLES) {
        match event {
            Event::Start(Tag::Image { dest_url, .. }) => {
                in_image = true;
                events.push(Event::Html(inline_svg(dir, &dest_url)?.into()));
            }
            Event::End(TagEnd::Image) => in_image = false,
            // The image's alt text: the inlined SVG says it.
            _ if in_image => {}
            e => events.push(e),
        }
    }
    let mut body = String::new();
    html::push_html(&mut body, events.into_iter());
    Ok(format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head>\n<body>\n{body}</body></html>\n",
        escape(title)
    ))
}

/// The SVG at `link` (relative, inside `dir`) as a figure.
fn inline_svg(dir: &Path, link: &str) -> Result<String> {
    let rel = Path::new(link);
    let inside = rel.extension().is_some_and(|e| e == "svg")
        && rel.components().all(|c| matches!(c, Component::Normal(_)));
    if !inside {
        return Err(Error::Internal(format!(
            "a report links {link:?}: only its own plots (plots/*.svg) are inlined"
        )));
    }
    let path = dir.join(rel);
    let svg = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    // An XML prologue is not allowed inside HTML: keep from the <svg> element on.
    let start = svg
        .find("<svg")
        .ok_or_else(|| Error::Internal(format!("{} holds no <svg> element", path.display())))?;
    Ok(format!("<figure class=\"plot\">{}</figure>", &svg[start..]))
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::page;

    #[test]
    fn plots_are_inlined_and_nothing_outside_the_report_is_read() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("plots")).unwrap();
        std::fs::write(
            dir.path().join("plots/a.svg"),
            "<?xml version=\"1.0\"?>\n<svg width=\"10\" height=\"10\"><rect/></svg>",
        )
        .unwrap();
        let md = "# T <x>\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n![a plot](plots/a.svg)\n";
        let html = page("T <x>", md, dir.path()).unwrap();
        assert!(html.contains("<title>T &lt;x&gt;</title>"));
        assert!(html.contains("<table>") && html.contains("<td>2</td>"));
        assert!(html.contains("<figure class=\"plot\"><svg width=\"10\""));
        assert!(!html.contains("<?xml") && !html.contains("<img") && !html.contains("a plot"));
        for bad in ["../secret.svg", "/etc/x.svg", "plots/a.png"] {
            let err = page("t", &format!("![x]({bad})"), dir.path()).unwrap_err();
            assert!(
                err.to_string().contains("only its own plots"),
                "{bad}: {err}"
            );
        }
    }
}
