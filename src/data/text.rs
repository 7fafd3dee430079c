//! Text-based formats: CSV (RFC 4180, header row), JSONL (one object a line), plain lines —
//! each read as a stream of row windows.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use serde_json::Value;

use super::Table;
use crate::error::{Error, Result};

fn bad_row(path: &Path, line: usize, reason: impl Into<String>) -> Error {
    Error::BadRow {
        path: path.to_path_buf(),
        row: line,
        reason: reason.into(),
    }
}

/// A text-based file read a window of rows at a time (the whole file when the window is
/// unbounded): memory follows the window, not the file.
pub(super) enum TextStream {
    Csv {
        reader: csv::Reader<BufReader<File>>,
        names: Vec<String>,
    },
    Lines {
        reader: BufReader<File>,
        line: usize,
    },
    Jsonl {
        reader: BufReader<File>,
        line: usize,
    },
}

fn open_skipping_bom(path: &Path) -> Result<BufReader<File>> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut reader = BufReader::with_capacity(1 << 16, file);
    let bom = reader
        .fill_buf()
        .map_err(|e| Error::io(path, e))?
        .starts_with(b"\xEF\xBB\xBF");
    if bom {
        reader.consume(3);
    }
    Ok(reader)
}

/// The next line without its `\n` / `\r\n`, or `None` at the end. A trailing newline ends the
/// last line rather than starting an empty one.
fn next_line(
    path: &Path,
    reader: &mut BufReader<File>,
    line: &mut usize,
) -> Result<Option<String>> {
    let mut raw = Vec::new();
    let n = reader
        .read_until(b'\n', &mut raw)
        .map_err(|e| Error::io(path, e))?;
    if n == 0 {
        return Ok(None);
    }
    *line += 1;
    if raw.ends_with(b"\n") {
        raw.pop();
    }
    if raw.ends_with(b"\r") {
        raw.pop();
    }
    String::from_utf8(raw).map(Some).map_err(|e| {
        bad_row(
            path,
            *line,
            format!(
                "not valid UTF-8 (byte {} of the line); re-save the file as UTF-8",
                e.utf8_error().valid_up_to()
            ),
        )
    })
}

impl TextStream {
    /// A CSV (`delimiter` `,`) or TSV (`\t`) file with a header row.
    pub(super) fn csv(path: &Path, delimiter: u8) -> Result<Self> {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .delimiter(delimiter)
            .from_reader(open_skipping_bom(path)?);
        let headers = reader
            .byte_headers()
            .map_err(|e| bad_row(path, 1, format!("header: {e}")))?
            .clone();
        let names: Vec<String> = headers
            .iter()
            .enumerate()
            .map(|(i, h)| {
                String::from_utf8(h.to_vec()).map_err(|_| {
                    bad_row(
                        path,
                        1,
                        format!("header field {} is not valid UTF-8", i + 1),
                    )
                })
            })
            .collect::<Result<_>>()?;
        if let [only] = names.as_slice() {
            if let Some(why) = other_separator(only, delimiter) {
                return Err(bad_row(path, 1, why));
            }
        }
        for (i, n) in names.iter().enumerate() {
            if let Some(j) = names[..i].iter().position(|m| m == n) {
                return Err(bad_row(
                    path,
                    1,
                    format!(
                        "duplicate column name {n:?} (columns {} and {}); rename one",
                        j + 1,
                        i + 1
                    ),
                ));
            }
        }
        Ok(TextStream::Csv { reader, names })
    }

    pub(super) fn lines(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        Ok(TextStream::Lines {
            reader: BufReader::with_capacity(1 << 16, file),
            line: 0,
        })
    }

    pub(super) fn jsonl(path: &Path) -> Result<Self> {
        // A UTF-8 byte-order mark is accepted here as in CSV.
        Ok(TextStream::Jsonl {
            reader: open_skipping_bom(path)?,
            line: 0,
        })
    }

    /// Up to `max_rows` more rows as a table (possibly empty at the end of the file).
    pub(super) fn window(&mut self, path: &Path, max_rows: usize) -> Result<Table> {
        match self {
            TextStream::Csv { reader, names } => csv_window(path, reader, names, max_rows),
            TextStream::Lines { reader, line } => {
                let mut texts = Vec::new();
                while texts.len() < max_rows {
                    match next_line(path, reader, line)? {
                        Some(l) => texts.push(Some(l)),
                        None => break,
                    }
                }
                Ok(Table::of_strings(path, vec!["text".into()], vec![texts]))
            }
            TextStream::Jsonl { reader, line } => jsonl_window(path, reader, line, max_rows),
        }
    }
}

fn csv_window(
    path: &Path,
    reader: &mut csv::Reader<BufReader<File>>,
    names: &[String],
    max_rows: usize,
) -> Result<Table> {
    let mut columns: Vec<Vec<Option<String>>> = vec![Vec::new(); names.len()];
    let mut record = csv::ByteRecord::new();
    let mut rows = 0;
    while rows < max_rows {
        let more = reader.read_byte_record(&mut record).map_err(|e| {
            let line = e.position().map_or(0, |p| p.line() as usize);
            let reason = match e.kind() {
                csv::ErrorKind::UnequalLengths { expected_len, len, .. } => format!(
                    "malformed CSV row: {len} fields where the header has {expected_len} (quote fields that contain commas)"
                ),
                other => format!("malformed CSV: {other:?}"),
            };
            bad_row(path, line, reason)
        })?;
        if !more {
            break;
        }
        let line = record.position().map_or(0, |p| p.line() as usize);
        for (i, field) in record.iter().enumerate() {
            let text = std::str::from_utf8(field).map_err(|e| {
                bad_row(
                    path,
                    line,
                    format!("field {:?} is not valid UTF-8 (byte {} of the field); re-save the file as UTF-8", names[i], e.valid_up_to()),
                )
            })?;
            columns[i].push(Some(text.to_string()));
        }
        rows += 1;
    }
    Ok(Table::of_strings(path, names.to_vec(), columns))
}

fn jsonl_window(
    path: &Path,
    reader: &mut BufReader<File>,
    line: &mut usize,
    max_rows: usize,
) -> Result<Table> {
    let mut names: Vec<String> = Vec::new();
    let mut columns: Vec<Vec<Option<String>>> = Vec::new();
    let mut non_text: Vec<Option<(usize, String)>> = Vec::new();
    let mut rows = 0usize;
    while rows < max_rows {
        let Some(text) = next_line(path, reader, line)? else {
            break;
        };
        if text.trim().is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(&text)
            .map_err(|e| bad_row(path, *line, format!("invalid JSON: {e}")))?;
        let Value::Object(map) = value else {
            return Err(bad_row(path, *line, "expected a JSON object per line"));
        };
        for (key, v) in map {
            let col = match names.iter().position(|n| *n == key) {
                Some(c) => c,
                None => {
                    names.push(key);
                    columns.push(vec![None; rows]);
                    non_text.push(None);
                    names.len() - 1
                }
            };
            let kind = match &v {
                Value::Null | Value::String(_) => None,
                Value::Bool(_) => Some("a boolean"),
                Value::Number(_) => Some("a number"),
                Value::Array(_) => Some("a JSON array"),
                Value::Object(_) => Some("a JSON object"),
            };
            if let (Some(kind), None) = (kind, &non_text[col]) {
                non_text[col] = Some((rows, kind.to_string()));
            }
            columns[col].push(match v {
                Value::Null => None,
                Value::String(s) => Some(s),
                other => Some(other.to_string()),
            });
        }
        rows += 1;
        for c in columns.iter_mut() {
            c.resize(rows, None);
        }
    }
    let mut table = Table::of_strings(path, names, columns);
    table.non_text = non_text;
    Ok(table)
}

/// Why a header that came out as one column looks separated by something else: a `;` file
/// (spreadsheets in many locales) read as CSV, or a tab-separated one named `.csv`.
fn other_separator(header: &str, delimiter: u8) -> Option<String> {
    let (name, fix) = [
        (
            ';',
            "';'",
            "pass --delimiter ';' (a run file's task: delimiter = \";\"), or save it comma-separated",
        ),
        (
            '\t',
            "tab",
            "pass --delimiter tab (a run file's task: delimiter = \"tab\"), or name it .tsv",
        ),
        (
            ',',
            "comma",
            "pass --delimiter ',' (a run file's task: delimiter = \",\"), or name it .csv",
        ),
    ]
    .into_iter()
    .filter(|(c, ..)| u32::from(*c) != u32::from(delimiter))
    .find(|(c, ..)| header.contains(*c))
    .map(|(_, name, fix)| (name, fix))?;
    Some(format!(
        "the header {header:?} is one column holding a {name}: the file looks {name}-separated; {fix}"
    ))
}
