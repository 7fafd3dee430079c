//! The frozen backbone: ORT library and environment, model folder, session.

pub mod export;
pub mod folder;
pub mod quantize;
pub mod runtime;
pub mod session;

pub use folder::ModelFolder;
pub use quantize::{QuantMethod, Quantization, Recipe};
pub use session::{Backbone, Device, Provider, SessionOptions};
