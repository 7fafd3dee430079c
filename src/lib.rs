#![warn(unreachable_pub)]
//! frostline: multi-task sentence transformers where freezing is the point.
//!
//! The library surface is eight modules; each names what a program built on frostline uses:
//!
//! - [`cli`]: the command line ([`cli::Cli`], [`cli::run`]); the binary is this and nothing else.
//! - [`backbone`]: model folders, the ONNX Runtime session, int8 records, pooling.
//! - [`embedder`]: texts → sentence vectors and token states through the content-keyed cache.
//! - [`data`]: input readers (CSV, JSONL, Parquet, plain text, CoNLL) and embedding datasets.
//! - [`train`]: run files, task kinds, heads and regimes → a trained, scored, checkpointed run.
//! - [`checkpoint`]: saving, loading and checking checkpoints.
//! - [`inference`]: a checkpoint's heads on new inputs, and scored on a split.
//! - [`nn`]: the native engine (layers, losses, AdamW; AVX-512 and bf16 products).
//!
//! Everything else is the crate's own. docs/architecture.md draws the layers and the data flow.

pub mod backbone;
pub mod checkpoint;
pub mod cli;
pub mod data;
pub mod embedder;
pub mod inference;
pub mod nn;
pub mod train;

pub(crate) mod align;
pub(crate) mod batch;
pub(crate) mod cache;
pub(crate) mod commands;
pub(crate) mod dataset;
pub(crate) mod decision;
pub(crate) mod epoch_log;
pub(crate) mod error;
pub(crate) mod features;
pub(crate) mod heads;
pub(crate) mod io;
pub(crate) mod kind;
pub(crate) mod metrics;
pub(crate) mod mteb;
pub(crate) mod pairs;
pub(crate) mod pool;
pub(crate) mod progress;
pub(crate) mod regime;
pub(crate) mod report;
pub(crate) mod resources;
pub(crate) mod runfile;
pub(crate) mod sampling;
pub(crate) mod shard;
pub(crate) mod streaming;
pub(crate) mod tasks;
pub(crate) mod tokenize;

pub use error::{Error, ErrorKind, Result};
