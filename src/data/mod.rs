//! Readers for sentence-level input: CSV, JSONL, Parquet and plain text (one text per line).
//! Every reader yields the same [`Table`] of string columns, so the rest of the code never cares
//! which format a file was; errors name the file, the row and the field.

mod parquet;
mod text;

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::format::{Format, TABLE_INPUTS};

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
        match Format::of(&self.path) {
            Some(Format::Csv) => i + 2,
            _ => i + 1,
        }
    }
}

/// Reads a whole table. `Text` files become one column named `text`.
pub fn read_table(path: &Path) -> Result<Table> {
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
    let table = match Format::input(path, TABLE_INPUTS)? {
        Format::Csv => text::read_csv(path)?,
        Format::Jsonl => text::read_jsonl(path)?,
        Format::Text => text::read_lines(path)?,
        Format::Parquet => parquet::read_parquet(path)?,
        Format::Npy => unreachable!("not a table input"),
    };
    if table.is_empty() {
        return Err(Error::InputEmpty {
            path: path.to_path_buf(),
        });
    }
    Ok(table)
}
