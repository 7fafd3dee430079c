//! The library's one error type, grouped by domain. Every variant names the file, row or field it
//! is about and, where there is one, what the user can do.

use std::path::{Path, PathBuf};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    // --- input data ---
    #[error("input file {path} not found")]
    InputMissing { path: PathBuf },
    #[error("input file {path} has no rows")]
    InputEmpty { path: PathBuf },
    #[error("{path}: no column {column:?} (columns: {available}); pick one with --text-column")]
    UnknownColumn {
        path: PathBuf,
        column: String,
        available: String,
    },
    #[error("{path}: row {row}: {reason}")]
    BadRow {
        path: PathBuf,
        row: usize,
        reason: String,
    },
    #[error("{path}: {reason}")]
    InputFile { path: PathBuf, reason: String },
    #[error(
        "{path}: unsupported input format {ext:?}; use .csv, .jsonl/.ndjson, .parquet or .txt"
    )]
    UnsupportedFormat { path: PathBuf, ext: String },

    // --- model folder ---
    #[error("model folder {path}: {reason}")]
    Model { path: PathBuf, reason: String },

    // --- ONNX Runtime ---
    #[error("ONNX Runtime library not found ({tried}). Run scripts/setup.sh, or `pip install onnxruntime` and pass --ort-lib PATH/libonnxruntime.so (or set ORT_DYLIB_PATH)")]
    OrtLibraryNotFound { tried: String },
    #[error("ONNX Runtime library {path} could not be loaded: {reason}")]
    OrtLibraryLoad { path: PathBuf, reason: String },
    #[error("{0}")]
    Device(String),
    #[error("ONNX Runtime: {context}: {reason}")]
    Ort { context: String, reason: String },

    // --- cache ---
    #[error("cache {path}: {reason}")]
    Cache { path: PathBuf, reason: String },

    // --- output and other I/O ---
    #[error("{path}: {reason}")]
    Output { path: PathBuf, reason: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Usage(String),
}

impl Error {
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    pub fn model(path: impl AsRef<Path>, reason: impl Into<String>) -> Self {
        Error::Model {
            path: path.as_ref().to_path_buf(),
            reason: reason.into(),
        }
    }

    pub fn cache(path: impl AsRef<Path>, reason: impl Into<String>) -> Self {
        Error::Cache {
            path: path.as_ref().to_path_buf(),
            reason: reason.into(),
        }
    }

    pub fn output(path: impl AsRef<Path>, reason: impl Into<String>) -> Self {
        Error::Output {
            path: path.as_ref().to_path_buf(),
            reason: reason.into(),
        }
    }

    /// Wraps an `ort` error (whose builder variants are neither `Send` nor `Sync`) as text.
    pub fn ort(context: impl Into<String>, err: impl std::fmt::Display) -> Self {
        Error::Ort {
            context: context.into(),
            reason: err.to_string(),
        }
    }
}
