//! frostline: multi-task sentence transformers where freezing is the point.
//!
//! Data flows one way: `data` → `tokenize` → `backbone` (ONNX Runtime) → `pool` → `cache`
//! → heads and training (later) → reports. See README.md and ../shared/design.md.

pub mod backbone;
pub mod batch;
pub mod cache;
pub mod cli;
pub mod data;
pub mod doctor;
pub mod embed;
pub mod error;
pub mod fsutil;
pub mod output;
pub mod pool;
pub mod tokenize;

pub use error::{Error, Result};
