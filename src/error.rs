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
    #[error("{path}: no column {column:?} (columns: {available}){suggestion}; {setter}")]
    UnknownColumn {
        path: PathBuf,
        column: String,
        available: String,
        /// `; did you mean "Name"?` for the closest column, or empty.
        suggestion: String,
        /// What names the column: a flag, or a run-file key (see [`Error::column_set_by`]).
        setter: String,
    },
    #[error("{path}: row {row}: {reason}")]
    BadRow {
        path: PathBuf,
        row: usize,
        reason: String,
    },
    #[error("{path}: {reason}")]
    InputFile { path: PathBuf, reason: String },
    #[error("{path}: unsupported input format {ext:?}; use {allowed}")]
    UnsupportedFormat {
        path: PathBuf,
        ext: String,
        allowed: String,
    },

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
    /// A run file (the job's settings) that does not parse or holds a value out of range.
    #[error("{path}: {reason}")]
    RunFile { path: PathBuf, reason: String },

    // --- training ---
    #[error("training: {0}")]
    Training(String),
    /// A broken promise inside frostline (a bug), never the user's doing.
    #[error("internal error: {0} (please report it)")]
    Internal(String),
}

/// What kind of failure an error is; decides the process exit code (README, "Exit codes").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Flags, run-file values or settings that cannot work together.
    Usage,
    /// An input file (data, run file, checkpoint) that is missing, malformed or incompatible.
    InputData,
    /// The model folder or ONNX Runtime (library, device, session).
    ModelRuntime,
    /// Training itself failed (diverged, nothing to learn).
    Training,
    /// Writing outputs, the cache, or any other file-system failure.
    Io,
    /// A bug in frostline.
    Internal,
}

impl ErrorKind {
    pub fn exit_code(self) -> u8 {
        match self {
            ErrorKind::Io => 1,
            ErrorKind::Usage => 2,
            ErrorKind::InputData => 3,
            ErrorKind::ModelRuntime => 4,
            ErrorKind::Training => 5,
            ErrorKind::Internal => 70,
        }
    }
}

impl Error {
    /// An unknown-column error that names what set the column (`--text-column`, or
    /// `tasks.intent.label_column` of the run file), so the user knows what to change; any other
    /// error as it is.
    pub fn column_set_by(self, setter: impl Into<String>) -> Self {
        match self {
            Error::UnknownColumn {
                path,
                column,
                available,
                suggestion,
                ..
            } => Error::UnknownColumn {
                path,
                column,
                available,
                suggestion,
                setter: format!("set it with {}", setter.into()),
            },
            other => other,
        }
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InputMissing { .. }
            | Error::InputEmpty { .. }
            | Error::UnknownColumn { .. }
            | Error::BadRow { .. }
            | Error::InputFile { .. }
            | Error::UnsupportedFormat { .. } => ErrorKind::InputData,
            Error::Model { .. }
            | Error::OrtLibraryNotFound { .. }
            | Error::OrtLibraryLoad { .. }
            | Error::Device(_)
            | Error::Ort { .. } => ErrorKind::ModelRuntime,
            Error::Cache { .. } | Error::Output { .. } | Error::Io { .. } => ErrorKind::Io,
            Error::Usage(_) | Error::RunFile { .. } => ErrorKind::Usage,
            Error::Training(_) => ErrorKind::Training,
            Error::Internal(_) => ErrorKind::Internal,
        }
    }

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
