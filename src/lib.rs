//! frostline: multi-task sentence transformers where freezing is the point.
//!
//! Data flows one way: `data` → `tokenize` → `backbone` (ONNX Runtime) → `pool` → `cache`
//! → heads and training (`nn`, `heads`, `regime`, `train`, `runner`) → checkpoints, predictions
//! and evaluation. See README.md and ../shared/design.md.

pub mod backbone;
pub mod batch;
pub mod cache;
pub mod checkpoint;
pub mod cli;
pub mod compare;
pub mod data;
pub mod doctor;
pub mod embed;
pub mod error;
pub mod eval;
pub mod evaluate;
pub mod fsutil;
pub mod heads;
pub mod infer;
pub mod mteb;
pub mod nn;
pub mod output;
pub mod pool;
pub mod predict;
pub mod regime;
pub mod report;
pub mod runfile;
pub mod runner;
pub mod tokenize;
pub mod train;

pub use error::{Error, Result};
