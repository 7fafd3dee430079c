//! Text-based formats: CSV (RFC 4180, header row), JSONL (one object a line), plain lines.

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

fn read_bytes(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io(path, e))
}

/// The 1-based line of byte offset `at`, for UTF-8 errors.
fn line_of(bytes: &[u8], at: usize) -> usize {
    bytes[..at.min(bytes.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

pub(super) fn read_csv(path: &Path) -> Result<Table> {
    let bytes = read_bytes(path)?;
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(bytes);
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
    let mut columns: Vec<Vec<Option<String>>> = vec![Vec::new(); names.len()];
    let mut record = csv::ByteRecord::new();
    loop {
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
                let offset = record.position().map_or(0, |p| p.byte() as usize);
                bad_row(
                    path,
                    line_of(bytes, offset).max(line),
                    format!("field {:?} is not valid UTF-8 (byte {} of the field); re-save the file as UTF-8", names[i], e.valid_up_to()),
                )
            })?;
            columns[i].push(Some(text.to_string()));
        }
    }
    Ok(Table::of_strings(path, names, columns))
}

/// Splits into lines, failing on the first line that is not UTF-8. A trailing newline ends the
/// last line rather than starting an empty one.
fn utf8_lines<'a>(path: &Path, bytes: &'a [u8]) -> Result<Vec<&'a str>> {
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    if body.is_empty() {
        return Ok(Vec::new());
    }
    body.split(|&b| b == b'\n')
        .enumerate()
        .map(|(i, raw)| {
            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            std::str::from_utf8(raw).map_err(|e| {
                bad_row(
                    path,
                    i + 1,
                    format!(
                        "not valid UTF-8 (byte {} of the line); re-save the file as UTF-8",
                        e.valid_up_to()
                    ),
                )
            })
        })
        .collect()
}

pub(super) fn read_lines(path: &Path) -> Result<Table> {
    let bytes = read_bytes(path)?;
    let lines = utf8_lines(path, &bytes)?;
    Ok(Table::of_strings(
        path,
        vec!["text".into()],
        vec![lines.into_iter().map(|l| Some(l.to_string())).collect()],
    ))
}

pub(super) fn read_jsonl(path: &Path) -> Result<Table> {
    let bytes = read_bytes(path)?;
    // A UTF-8 byte-order mark is accepted here as in CSV.
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
    let mut names: Vec<String> = Vec::new();
    let mut columns: Vec<Vec<Option<String>>> = Vec::new();
    let mut non_text: Vec<Option<(usize, String)>> = Vec::new();
    let mut rows = 0usize;
    for (i, line) in utf8_lines(path, bytes)?.into_iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(line)
            .map_err(|e| bad_row(path, i + 1, format!("invalid JSON: {e}")))?;
        let Value::Object(map) = value else {
            return Err(bad_row(path, i + 1, "expected a JSON object per line"));
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
