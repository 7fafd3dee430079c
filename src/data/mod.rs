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
}

impl Table {
    pub fn len(&self) -> usize {
        self.columns.first().map_or(0, Vec::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn column_index(&self, name: &str) -> Result<usize> {
        self.names
            .iter()
            .position(|n| n == name)
            .ok_or_else(|| Error::UnknownColumn {
                path: self.path.clone(),
                column: name.to_string(),
                available: self.names.join(", "),
            })
    }

    pub fn column(&self, name: &str) -> Option<&[Option<String>]> {
        self.names
            .iter()
            .position(|n| n == name)
            .map(|i| self.columns[i].as_slice())
    }

    /// The column as non-null strings; a null cell is an error naming its row.
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
