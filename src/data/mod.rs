//! Readers for sentence-level input: CSV, JSONL, Parquet and plain text (one text per line).
//! Every reader yields the same [`Table`] of string columns, so the rest of the code never cares
//! which format a file was; errors name the file, the row and the field.

pub use crate::dataset::{check_vectors, checksum, success_record, DatasetDir};

pub mod conll;
mod parquet;
pub use parquet::read_part_vectors;
mod text;

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::io::format::{Format, TABLE_INPUTS};

/// A table of string cells (`None` = null / missing), column-major.
#[derive(Debug, Clone)]
pub struct Table {
    pub path: PathBuf,
    pub names: Vec<String>,
    pub columns: Vec<Vec<Option<String>>>,
    /// Per column, the first cell that was not a string in the file (row index, its type): a
    /// number is a fine label but never a text.
    pub non_text: Vec<Option<(usize, String)>>,
    /// Nested columns (lists, structs: e.g. an earlier run's `embedding`) left out, with their type.
    pub nested: Vec<(String, String)>,
    /// Data rows of the file before this table's first (a window of a stream), for locations.
    pub row_offset: usize,
}

impl Table {
    pub fn len(&self) -> usize {
        self.columns.first().map_or(0, Vec::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A table of string columns that were strings in the file.
    pub fn of_strings(path: &Path, names: Vec<String>, columns: Vec<Vec<Option<String>>>) -> Self {
        Self {
            path: path.to_path_buf(),
            non_text: vec![None; names.len()],
            names,
            columns,
            nested: Vec::new(),
            row_offset: 0,
        }
    }

    pub fn column_index(&self, name: &str) -> Result<usize> {
        if let Some((_, ty)) = self.nested.iter().find(|(n, _)| n == name) {
            return Err(Error::InputFile {
                path: self.path.clone(),
                reason: format!("column {name:?} is {ty}, not text; name a column of strings"),
            });
        }
        self.names
            .iter()
            .position(|n| n == name)
            .ok_or_else(|| Error::UnknownColumn {
                path: self.path.clone(),
                column: name.to_string(),
                available: self.names.join(", "),
                suggestion: closest(name, &self.names)
                    .map(|c| format!("; did you mean {c:?}?"))
                    .unwrap_or_default(),
                setter: "pick one with --text-column".into(),
            })
    }

    /// The column as texts: non-null cells that were strings in the file; anything else is an
    /// error naming its row and type.
    pub fn texts(&self, name: &str) -> Result<Vec<String>> {
        let idx = self.column_index(name)?;
        if let Some((row, ty)) = &self.non_text[idx] {
            return Err(Error::BadRow {
                path: self.path.clone(),
                row: self.location(*row),
                reason: format!(
                    "field {name:?} is {ty}, not a string; the text column must hold strings"
                ),
            });
        }
        self.required_strings(name)
    }

    pub fn column(&self, name: &str) -> Option<&[Option<String>]> {
        self.names
            .iter()
            .position(|n| n == name)
            .map(|i| self.columns[i].as_slice())
    }

    /// The column as non-null strings (numbers as written, for labels); a null cell is an error
    /// naming its row.
    pub fn required_strings(&self, name: &str) -> Result<Vec<String>> {
        let idx = self.column_index(name)?;
        self.columns[idx]
            .iter()
            .enumerate()
            .map(|(i, cell)| {
                cell.clone().ok_or_else(|| Error::BadRow {
                    path: self.path.clone(),
                    row: self.location(i),
                    reason: format!("field {name:?} is null or missing"),
                })
            })
            .collect()
    }

    /// The 1-based location of data row `i` as the user sees it in the file (CSV: the header is line 1).
    pub fn location(&self, i: usize) -> usize {
        let i = self.row_offset + i;
        match Format::of(&self.path) {
            Some(Format::Csv | Format::Tsv) => i + 2,
            _ => i + 1,
        }
    }

    /// Adds `other`'s rows below this table's, matching columns by name.
    fn append(&mut self, other: Table) {
        let rows = self.len();
        let Table {
            names,
            columns,
            nested,
            non_text,
            ..
        } = other;
        let added = columns.first().map_or(0, Vec::len);
        for ((name, column), odd) in names.into_iter().zip(columns).zip(non_text) {
            let i = match self.names.iter().position(|n| *n == name) {
                Some(i) => {
                    self.columns[i].extend(column);
                    i
                }
                None => {
                    let mut filled = vec![None; rows];
                    filled.extend(column);
                    self.names.push(name);
                    self.columns.push(filled);
                    self.non_text.push(None);
                    self.names.len() - 1
                }
            };
            if self.non_text[i].is_none() {
                self.non_text[i] = odd.map(|(row, ty)| (rows + row, ty));
            }
        }
        for c in &mut self.columns {
            c.resize(rows + added, None);
        }
        for n in nested {
            if !self.nested.contains(&n) {
                self.nested.push(n);
            }
        }
    }

    /// Rows `start..end` as a table of their own (locations still name the file's rows).
    pub fn rows(&self, start: usize, end: usize) -> Table {
        Table {
            path: self.path.clone(),
            names: self.names.clone(),
            columns: self
                .columns
                .iter()
                .map(|c| c[start..end].to_vec())
                .collect(),
            non_text: self
                .non_text
                .iter()
                .map(|n| {
                    n.clone()
                        .filter(|(row, _)| (start..end).contains(row))
                        .map(|(row, ty)| (row - start, ty))
                })
                .collect(),
            nested: self.nested.clone(),
            row_offset: self.row_offset + start,
        }
    }
}

/// A table file read as windows of at most `window` rows, in file order. CSV, JSONL and text
/// files are streamed (memory follows the window); a Parquet file is decoded whole (after its
/// footer and pages are checked) and handed out window by window.
pub struct TableStream {
    path: PathBuf,
    window: usize,
    source: Source,
    rows_read: usize,
}

enum Source {
    Text(text::TextStream),
    Whole { table: Table, next: usize },
}

/// A field separator given for delimited text files whose extension does not say it (a `;`
/// export from a spreadsheet, tabs in a `.csv`): one ASCII character other than a quote or a
/// line break; `tab` or `\t` for a tab.
pub fn parse_delimiter(s: &str) -> std::result::Result<u8, String> {
    let byte = match s {
        "tab" | "\\t" | "\t" => b'\t',
        _ => match s.as_bytes() {
            [b] if b.is_ascii() && !matches!(b, b'"' | b'\n' | b'\r') => *b,
            _ => {
                return Err(format!(
                    "{s:?} is not a field separator: give one ASCII character (not a quote or a line break), or tab"
                ))
            }
        },
    };
    Ok(byte)
}

impl TableStream {
    /// The file read as its extension says (`,` for .csv, a tab for .tsv).
    pub fn open(path: &Path, window: usize) -> Result<Self> {
        Self::open_delimited(path, window, None)
    }

    /// The file read with `delimiter` when given: a .csv or .tsv file is then split at it; any
    /// other format is refused (JSONL and Parquet have no fields to split, a .txt file is one
    /// text per line).
    pub fn open_delimited(path: &Path, window: usize, delimiter: Option<u8>) -> Result<Self> {
        if !path.exists() {
            return Err(Error::InputMissing {
                path: path.to_path_buf(),
            });
        }
        if path.is_dir() {
            return Err(Error::InputFile {
                path: path.to_path_buf(),
                reason: "is a folder; give a file".into(),
            });
        }
        let format = Format::input(path, TABLE_INPUTS)?;
        let source = match (format, delimiter) {
            (Format::Csv | Format::Tsv, Some(d)) => {
                Source::Text(text::TextStream::csv(path, d)?)
            }
            (Format::Jsonl | Format::Parquet | Format::Text, Some(d)) => {
                return Err(Error::InputFile {
                    path: path.to_path_buf(),
                    reason: format!(
                        "a field separator ({:?}) was given, but this is a {} file, which has no fields to split; give it only for .csv / .tsv files",
                        d as char,
                        format.extensions()
                    ),
                })
            }
            (Format::Csv, None) => Source::Text(text::TextStream::csv(path, b',')?),
            (Format::Tsv, None) => Source::Text(text::TextStream::csv(path, b'\t')?),
            (Format::Jsonl, None) => Source::Text(text::TextStream::jsonl(path)?),
            (Format::Text, None) => Source::Text(text::TextStream::lines(path)?),
            (Format::Parquet, None) => Source::Whole {
                table: parquet::read_parquet(path)?,
                next: 0,
            },
            (Format::Npy, _) => unreachable!("not a table input"),
        };
        Ok(Self {
            path: path.to_path_buf(),
            window: window.max(1),
            source,
            rows_read: 0,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The next window of rows; `None` once the file is exhausted.
    pub fn next_window(&mut self) -> Result<Option<Table>> {
        let mut table = match &mut self.source {
            Source::Text(stream) => stream.window(&self.path, self.window)?,
            Source::Whole { table, next } => {
                let end = next.saturating_add(self.window).min(table.len());
                if *next == 0 && end == table.len() {
                    // All of it in one window: handed over, not copied.
                    let empty = table.rows(0, 0);
                    std::mem::replace(table, empty)
                } else {
                    let t = table.rows(*next, end);
                    *next = end;
                    t
                }
            }
        };
        if table.is_empty() {
            return Ok(None);
        }
        table.row_offset = self.rows_read;
        self.rows_read += table.len();
        Ok(Some(table))
    }
}

/// A whole input as one table: a file, a folder of table files, a glob, or a frostline dataset
/// folder (its parts in order). Several files are joined by column name (a column one file lacks
/// is null there); empty files add nothing; a row is then located by its place in the whole.
pub fn read_input(spec: &Path) -> Result<Table> {
    read_input_delimited(spec, None)
}

/// [`read_input`] with a field separator for delimited text ([`TableStream::open_delimited`]).
pub fn read_input_delimited(spec: &Path, delimiter: Option<u8>) -> Result<Table> {
    let files = crate::dataset::resolve_inputs(spec)?;
    let mut joined = Table::of_strings(spec, Vec::new(), Vec::new());
    if let [one] = files.as_slice() {
        return TableStream::open_delimited(one, usize::MAX, delimiter)?
            .next_window()?
            .ok_or_else(|| Error::InputEmpty { path: one.clone() });
    }
    for f in &files {
        let Some(t) = TableStream::open_delimited(f, usize::MAX, delimiter)?.next_window()? else {
            continue;
        };
        joined.append(t);
    }
    if joined.is_empty() {
        return Err(Error::InputEmpty {
            path: spec.to_path_buf(),
        });
    }
    Ok(joined)
}

/// Reads a whole table. `Text` files become one column named `text`.
pub fn read_table(path: &Path) -> Result<Table> {
    TableStream::open(path, usize::MAX)?
        .next_window()?
        .ok_or_else(|| Error::InputEmpty {
            path: path.to_path_buf(),
        })
}

/// The column a user most likely meant by `name`: the same name in another case, else the one
/// within two edits (the closest; none when two are equally close).
fn closest<'a>(name: &str, names: &'a [String]) -> Option<&'a str> {
    if let Some(n) = names.iter().find(|n| n.eq_ignore_ascii_case(name)) {
        return Some(n);
    }
    let lower = name.to_lowercase();
    let mut scored: Vec<(usize, &str)> = names
        .iter()
        .map(|n| (edit_distance(&lower, &n.to_lowercase()), n.as_str()))
        .filter(|&(d, _)| d <= 2)
        .collect();
    scored.sort();
    match scored.as_slice() {
        [(d, n), rest @ ..] if rest.first().is_none_or(|(e, _)| e > d) => Some(n),
        _ => None,
    }
}

/// Levenshtein distance over chars.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let up = row[j + 1];
            row[j + 1] = (diag + usize::from(ca != cb)).min(up + 1).min(row[j] + 1);
            diag = up;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_closest_column_is_suggested_only_when_it_is_clear() {
        let names: Vec<String> = ["Text", "category", "priority"].map(String::from).to_vec();
        assert_eq!(closest("text", &names), Some("Text"));
        assert_eq!(closest("categroy", &names), Some("category"));
        assert_eq!(closest("label", &names), None);
        let tied: Vec<String> = ["cat1", "cat2"].map(String::from).to_vec();
        assert_eq!(closest("cat", &tied), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
