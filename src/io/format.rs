//! File formats by extension: the one place that maps a file name to a format, for inputs and
//! outputs alike. Each command says which formats it reads or writes.

use std::path::Path;

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Csv,
    /// Tab-separated, otherwise read as CSV (header row, quoting).
    Tsv,
    Jsonl,
    Parquet,
    /// One text per line.
    Text,
    /// NumPy `.npy`, little-endian f32 `[N, H]`.
    Npy,
}

/// What `read_table` reads.
pub(crate) const TABLE_INPUTS: &[Format] = &[
    Format::Csv,
    Format::Tsv,
    Format::Jsonl,
    Format::Parquet,
    Format::Text,
];
/// What `embed` writes.
pub(crate) const EMBEDDING_OUTPUTS: &[Format] = &[Format::Parquet, Format::Npy];
/// What `predict` writes.
pub(crate) const TABLE_OUTPUTS: &[Format] = &[Format::Csv, Format::Parquet];

impl Format {
    /// The format a file name says, if any.
    pub(crate) fn of(path: &Path) -> Option<Self> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        Some(match ext.as_str() {
            "csv" => Format::Csv,
            "tsv" | "tab" => Format::Tsv,
            "jsonl" | "ndjson" => Format::Jsonl,
            "parquet" => Format::Parquet,
            "txt" | "text" => Format::Text,
            "npy" => Format::Npy,
            _ => return None,
        })
    }

    pub(crate) fn extensions(self) -> &'static str {
        match self {
            Format::Csv => ".csv",
            Format::Tsv => ".tsv",
            Format::Jsonl => ".jsonl/.ndjson",
            Format::Parquet => ".parquet",
            Format::Text => ".txt",
            Format::Npy => ".npy",
        }
    }

    /// The input format of `path`, if it is one of `allowed`; else an error listing them.
    pub(crate) fn input(path: &Path, allowed: &[Format]) -> Result<Self> {
        match Self::of(path) {
            Some(f) if allowed.contains(&f) => Ok(f),
            _ => Err(Error::UnsupportedFormat {
                path: path.to_path_buf(),
                ext: path
                    .extension()
                    .map(|e| e.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                allowed: list(allowed),
            }),
        }
    }

    /// The output format of `path`, if it is one of `allowed`; else an error listing them.
    pub(crate) fn output(path: &Path, allowed: &[Format]) -> Result<Self> {
        match Self::of(path) {
            Some(f) if allowed.contains(&f) => Ok(f),
            _ => Err(Error::output(
                path,
                format!("unsupported output format; name the file {}", list(allowed)),
            )),
        }
    }
}

fn list(formats: &[Format]) -> String {
    let names: Vec<&str> = formats.iter().map(|f| f.extensions()).collect();
    match names.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => names.join(""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions_map_to_formats_and_errors_list_the_allowed_ones() {
        assert_eq!(Format::of(Path::new("a/B.NDJSON")), Some(Format::Jsonl));
        assert_eq!(Format::of(Path::new("a.tsv")), Some(Format::Tsv));
        assert_eq!(Format::of(Path::new("a.xlsx")), None);
        let err = Format::output(Path::new("o.npy"), TABLE_OUTPUTS)
            .unwrap_err()
            .to_string();
        assert!(err.contains("name the file .csv or .parquet"), "{err}");
        let err = Format::input(Path::new("i.xlsx"), TABLE_INPUTS)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(".csv, .tsv, .jsonl/.ndjson, .parquet or .txt"),
            "{err}"
        );
    }
}
