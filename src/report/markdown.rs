//! Markdown tables: the one writer every report and summary uses (cells escaped, so a label
//! holding `|` does not break a table).

use polars::prelude::{AnyValue, DataFrame};

/// A Markdown table built row by row.
pub(crate) struct MarkdownTable {
    header: Vec<String>,
    /// Right-aligned (numeric) columns.
    right: Vec<bool>,
    rows: Vec<Vec<String>>,
}

impl MarkdownTable {
    /// Columns by name; a name starting with `>` is right-aligned (the `>` is dropped).
    pub(crate) fn new(columns: &[&str]) -> Self {
        Self {
            header: columns
                .iter()
                .map(|c| c.trim_start_matches('>').to_string())
                .collect(),
            right: columns.iter().map(|c| c.starts_with('>')).collect(),
            rows: Vec::new(),
        }
    }

    pub(crate) fn row(&mut self, cells: Vec<String>) -> &mut Self {
        debug_assert_eq!(cells.len(), self.header.len(), "one cell per column");
        self.rows.push(cells);
        self
    }

    pub(crate) fn render(&self) -> String {
        let line = |cells: &[String]| {
            let escaped: Vec<String> = cells.iter().map(|c| escape(c)).collect();
            format!("| {} |\n", escaped.join(" | "))
        };
        let mut s = line(&self.header);
        let rule: Vec<&str> = self
            .right
            .iter()
            .map(|&r| if r { "---:" } else { "---" })
            .collect();
        s.push_str(&format!("|{}|\n", rule.join("|")));
        for r in &self.rows {
            s.push_str(&line(r));
        }
        s
    }
}

/// A cell's text with the characters that would break a table row escaped.
pub(crate) fn escape(cell: &str) -> String {
    cell.replace('|', "\\|").replace(['\n', '\r'], " ")
}

/// A percentage with two decimals, or `–` when absent.
pub(crate) fn pct(v: Option<f64>) -> String {
    v.map_or("–".to_string(), |v| format!("{:.2}", 100.0 * v))
}

/// A DataFrame as a Markdown table (floats to 2 decimals as percentages where `pct_columns`
/// names them).
pub(crate) fn frame_table(df: &DataFrame, pct_columns: &[&str]) -> String {
    let names: Vec<String> = df
        .get_column_names()
        .iter()
        .map(|s| s.to_string())
        .collect();
    let numeric: Vec<String> = df
        .columns()
        .iter()
        .map(|c| {
            let n = c.name().to_string();
            if c.dtype().is_primitive_numeric() {
                format!(">{n}")
            } else {
                n
            }
        })
        .collect();
    let refs: Vec<&str> = numeric.iter().map(String::as_str).collect();
    let mut t = MarkdownTable::new(&refs);
    for i in 0..df.height() {
        let cells = df
            .columns()
            .iter()
            .map(|c| {
                let v = c.get(i).map(|v| v.into_static()).unwrap_or(AnyValue::Null);
                match v {
                    AnyValue::Float64(f) if pct_columns.contains(&c.name().as_str()) => {
                        format!("{:.2}", 100.0 * f)
                    }
                    AnyValue::Float64(f) => format!("{f:.3}"),
                    AnyValue::Float32(f) => format!("{f:.3}"),
                    AnyValue::String(s) => s.to_string(),
                    AnyValue::StringOwned(s) => s.to_string(),
                    AnyValue::Null => "–".into(),
                    other => other.to_string(),
                }
            })
            .collect();
        t.row(cells);
    }
    debug_assert_eq!(names.len(), t.header.len());
    t.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_with_pipes_and_newlines_do_not_break_rows() {
        let mut t = MarkdownTable::new(&["label", ">count"]);
        t.row(vec!["a|b\nc".into(), "3".into()]);
        let s = t.render();
        assert_eq!(s, "| label | count |\n|---|---:|\n| a\\|b c | 3 |\n");
    }
}
