//! The frozen backbone: which model folder (`choice`), what it holds (`folder`), the ORT
//! library (`runtime`) and session (`session`), graphs frostline cuts or exports (`export`) and
//! int8 ones (`quantize`, recorded in `quant_record`), frostline's own ORT operators those run
//! (`own_ops`), and the in-memory rewrite that puts an fp32 graph's layers on them on CPU
//! (`own_graph`, over the protobuf reader and writer in `onnx_proto`).

pub use crate::pool::{Pooling, PoolingMode};

pub(crate) mod choice;
pub(crate) mod export;
pub(crate) mod folder;
pub mod graph_ops;
pub(crate) mod onnx_proto;
pub(crate) mod own_graph;
pub(crate) mod own_ops;
pub(crate) mod quant_record;
pub(crate) mod quantize;
pub(crate) mod runtime;
pub(crate) mod session;

pub use folder::{GraphLayout, ModelFolder};
pub use quant_record::{QuantMethod, Quantization, Recipe};
pub use session::{Backbone, Device, Kernels, Provider, SessionOptions};
