//! Parquet input through polars: every column is cast to strings.

use std::path::Path;

use polars::prelude::*;

use super::Table;
use crate::error::{Error, Result};

pub(super) fn read_parquet(path: &Path) -> Result<Table> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let bad = |reason: String| Error::InputFile {
        path: path.to_path_buf(),
        reason,
    };
    // The Parquet decoder can panic on malformed metadata or pages; a damaged input file must be
    // a clear error naming the file, never a crash, so a panic inside it is contained here.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        ParquetReader::new(file).finish()
    }));
    std::panic::set_hook(hook);
    let df = match read {
        Ok(Ok(df)) => df,
        Ok(Err(e)) => return Err(bad(format!("not a readable Parquet file: {e}"))),
        Err(panic) => {
            let what = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("unknown");
            return Err(bad(format!(
                "not a readable Parquet file (the decoder failed: {what})"
            )));
        }
    };
    let mut names = Vec::new();
    let mut columns = Vec::new();
    let mut non_text = Vec::new();
    let mut nested = Vec::new();
    for col in df.columns() {
        let name = col.name().to_string();
        // Nested columns (lists, arrays, structs: e.g. an earlier run's `embedding`) are never
        // text or labels; leave them out, remembering their type for a clear error if named.
        if col.dtype().is_nested() {
            nested.push((name, col.dtype().to_string()));
            continue;
        }
        non_text.push(
            (!matches!(col.dtype(), DataType::String))
                .then(|| (0, format!("of type {}", col.dtype()))),
        );
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
    let mut table = Table::of_strings(path, names, columns);
    table.non_text = non_text;
    table.nested = nested;
    Ok(table)
}
