//! Parquet input through polars: every column is cast to strings.

use std::path::Path;

use polars::prelude::*;

use super::Table;
use crate::error::{Error, Result};

pub(super) fn read_parquet(path: &Path) -> Result<Table> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let df = ParquetReader::new(file)
        .finish()
        .map_err(|e| Error::InputFile {
            path: path.to_path_buf(),
            reason: format!("not a readable Parquet file: {e}"),
        })?;
    let mut names = Vec::new();
    let mut columns = Vec::new();
    for col in df.columns() {
        let name = col.name().to_string();
        // Nested columns (lists, arrays, structs: e.g. an earlier run's `embedding`) are never
        // text or labels; leave them out rather than fail on them.
        if col.dtype().is_nested() {
            continue;
        }
        let as_str = col.cast(&DataType::String).map_err(|e| Error::InputFile {
            path: path.to_path_buf(),
            reason: format!("column {name:?} cannot be read as text: {e}"),
        })?;
        let ca = as_str.str().map_err(|e| Error::InputFile {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        columns.push(ca.iter().map(|v| v.map(str::to_string)).collect());
        names.push(name);
    }
    Ok(Table {
        path: path.to_path_buf(),
        names,
        columns,
    })
}
