#![warn(unreachable_pub)]
//! frostline: multi-task sentence transformers where freezing is the point.
//!
//! Data flows one way: `data` → `tokenize` → `backbone` (ONNX Runtime) → `pool` → `cache`
//! (through `embedder`) → `tasks` + `train` (heads, regimes, the frost line's native layers in
//! `nn`) → `checkpoint` → predictions and `report`s. The command line is `cli` (flags → one
//! resolved job each) and `commands` (one file per subcommand). See README.md.
//!
//! The library surface: [`embedder`] (sentence vectors and token states through the cache),
//! [`train`] (a resolved [`train::TrainSpec`] → a trained, scored, checkpointed run),
//! [`regime`] (a regime and its plan), [`checkpoint`] (reading, writing and using checkpoints),
//! [`runfile`] (run files), [`tasks`] (task data and splits), [`metrics`] and [`report`].

pub mod align;
pub mod backbone;
pub(crate) mod batch;
pub mod cache;
pub mod checkpoint;
pub mod cli;
pub(crate) mod commands;
pub mod data;
pub mod dataset;
pub mod decision;
pub mod embedder;
pub mod error;
pub(crate) mod format;
pub(crate) mod fsutil;
pub mod heads;
pub mod metrics;
pub mod mteb;
pub mod nn;
pub(crate) mod outfolder;
pub(crate) mod output;
pub mod pool;
pub mod progress;
pub mod regime;
pub mod report;
pub mod runfile;
pub mod shard;
pub mod tasks;
pub mod tokenize;
pub mod train;

pub use error::{Error, ErrorKind, Result};
