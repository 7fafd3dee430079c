//! The ONNX Runtime session over a model folder's graph, on the device the user asked for.

use std::fmt;
use std::path::Path;

use ndarray::{Array2, ArrayView3};
use ort::ep::ExecutionProvider;
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};
use ort::session::Session;
use ort::value::Tensor;

use super::folder::ModelFolder;
use super::graph_ops::OpCounts;
use super::runtime::{self, Runtime};
use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Device {
    Cpu,
    Cuda,
    /// CUDA when it can be registered, else CPU — and the run says which.
    Auto,
}

impl Device {
    /// The provider a run gets, decided once where the flags become a job, with what `auto`
    /// chose and why. `auto` registers CUDA on a trial session now rather than when the model
    /// loads: whose kernels run an int8 graph is part of the cache key, which is made first.
    pub fn resolve(self, ort_lib: Option<&Path>) -> Result<(Provider, Option<String>)> {
        match self {
            Device::Cpu => Ok((Provider::Cpu, None)),
            Device::Cuda => Ok((Provider::Cuda, None)),
            Device::Auto => {
                let rt = runtime::init(ort_lib)?;
                let trial = Session::builder(&rt.environment)
                    .map_err(|e| Error::ort("creating a trial session for --device auto", e))?;
                Ok(match with_cuda(rt, trial) {
                    Ok(_) => (
                        Provider::Cuda,
                        Some("--device auto: CUDA registered; running on CUDA".into()),
                    ),
                    Err(e) => (
                        Provider::Cpu,
                        Some(format!(
                            "--device auto: CUDA unavailable ({}); running on CPU",
                            short_reason(&e)
                        )),
                    ),
                })
            }
        }
    }
}

/// Whose kernels a CPU session runs the graph's layers on. The default (frostline's) is the
/// one place a run without `--kernels`, or a checkpoint written before it was recorded, gets
/// its kernels from.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Kernels {
    /// frostline's fused kernels, the graph rewritten in memory ([`super::own_graph`]).
    #[default]
    Frostline,
    /// ONNX Runtime's, the graph as written: what a served graph gives under ONNX Runtime.
    Onnxruntime,
}

impl Kernels {
    /// The `--kernels` value (and the checkpoint's `backbone.kernels`) that names these.
    pub fn as_str(self) -> &'static str {
        match self {
            Kernels::Frostline => "frostline",
            Kernels::Onnxruntime => "onnxruntime",
        }
    }
}

/// The execution provider that actually runs the graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    Cpu,
    Cuda,
}

impl serde::Serialize for Provider {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Provider::Cpu => "CPUExecutionProvider",
            Provider::Cuda => "CUDAExecutionProvider",
        })
    }
}

#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// The provider, `--device` resolved ([`Device::resolve`]).
    pub provider: Provider,
    /// What `--device auto` chose and why, shown when the model loads.
    pub device_note: Option<String>,
    /// On CPU; CUDA always runs the graph as written.
    pub kernels: Kernels,
    /// ORT intra-op threads; 0 = ORT's default (one per physical core).
    pub threads: usize,
}

impl SessionOptions {
    /// Whether a session over a graph runs it rewritten onto frostline's kernels: on CPU,
    /// unless `--kernels onnxruntime`. Known before any session opens (the cache key needs it).
    pub fn frostline_kernels(&self) -> bool {
        self.kernels == Kernels::Frostline && self.provider == Provider::Cpu
    }
}

pub struct Backbone {
    session: Session,
    pub provider: Provider,
    feeds_token_types: bool,
    output_name: String,
    pub hidden_size: usize,
}

const GPU_HELP: &str = "install the GPU build of ONNX Runtime with its CUDA 13 libraries \
(pip install 'onnxruntime-gpu[cuda,cudnn]') and point frostline at its libonnxruntime.so with --ort-lib or ORT_DYLIB_PATH";

impl Backbone {
    /// A session over `graph` (the folder's `model.onnx`, or a graph cut at a frost line).
    pub fn load(
        folder: &ModelFolder,
        graph: &Path,
        opts: &SessionOptions,
        ort_lib: Option<&Path>,
    ) -> Result<Self> {
        let rt = runtime::init(ort_lib)?;
        let cuda = opts.provider == Provider::Cuda;
        let (session, _) = build_session(rt, graph, opts.threads, cuda, opts.kernels).map_err(|e| {
            match (cuda, &opts.device_note) {
                // `auto` chose CUDA when it registered; the cache key already names ONNX
                // Runtime's kernels, so a quiet switch to CPU now would mix entries.
                (true, Some(_)) => Error::Device(format!(
                    "--device auto chose CUDA (it registered), but the session would not open there: {}. \
Use --device cpu.",
                    short_reason(&e)
                )),
                (true, None) => cuda_error(rt, e),
                (false, _) => e,
            }
        })?;
        let inputs: Vec<&str> = session.inputs().iter().map(|o| o.name()).collect();
        for required in ["input_ids", "attention_mask"] {
            if !inputs.contains(&required) {
                return Err(Error::model(
                    graph,
                    format!("graph has no input {required:?} (inputs: {inputs:?})"),
                ));
            }
        }
        let feeds_token_types = inputs.contains(&"token_type_ids");
        let output_name = session
            .outputs()
            .first()
            .map(|o| o.name().to_string())
            .ok_or_else(|| Error::model(graph, "graph has no outputs"))?;
        Ok(Self {
            session,
            provider: opts.provider,
            feeds_token_types,
            output_name,
            hidden_size: folder.hidden_size,
        })
    }

    /// Runs one padded batch and hands the token states `[batch, seq, hidden]` to `f` while they
    /// still live in ORT's output buffer (no copy).
    pub fn run_with<T>(
        &mut self,
        input_ids: Array2<i64>,
        attention_mask: Array2<i64>,
        f: impl FnOnce(ArrayView3<f32>) -> T,
    ) -> Result<T> {
        let shape = input_ids.dim();
        let type_ids = Array2::<i64>::zeros(shape);
        let t = |a: Array2<i64>| {
            Tensor::from_array(a).map_err(|e| Error::ort("building an input tensor", e))
        };
        let outputs = if self.feeds_token_types {
            self.session.run(ort::inputs![
                "input_ids" => t(input_ids)?,
                "attention_mask" => t(attention_mask)?,
                "token_type_ids" => t(type_ids)?
            ])
        } else {
            self.session.run(ort::inputs![
                "input_ids" => t(input_ids)?,
                "attention_mask" => t(attention_mask)?
            ])
        }
        .map_err(|e| Error::ort("running the model", e))?;
        let view = outputs[self.output_name.as_str()]
            .try_extract_array::<f32>()
            .map_err(|e| Error::ort("reading the model output", e))?;
        let states = view
            .into_dimensionality::<ndarray::Ix3>()
            .map_err(|e| Error::ort("model output is not [batch, seq, hidden]", e))?;
        if states.dim().2 != self.hidden_size {
            return Err(Error::ort(
                "model output",
                format!(
                    "hidden size {} but config.json says {}",
                    states.dim().2,
                    self.hidden_size
                ),
            ));
        }
        Ok(f(states))
    }
}

/// ONNX Runtime's session option for where a graph loaded from memory keeps its external data.
const EXTERNAL_DATA_FOLDER: &str = "session.model_external_initializers_file_folder_path";

/// A session on `graph` with frostline's operators registered: every session frostline opens
/// (doctor's too) is made here. On CPU a graph runs rewritten onto frostline's kernels
/// ([`super::own_graph`]) unless `kernels` says ONNX Runtime's; the operators it then runs come
/// back with the session.
pub(crate) fn build_session(
    rt: &Runtime,
    graph: &Path,
    threads: usize,
    cuda: bool,
    kernels: Kernels,
) -> Result<(Session, Option<OpCounts>)> {
    let ctx = |what: &str| format!("{what} for {}", graph.display());
    let mut builder = Session::builder(&rt.environment)
        .map_err(|e| Error::ort(ctx("creating a session"), e))?
        .with_optimization_level(GraphOptimizationLevel::All)
        .map_err(|e| Error::ort(ctx("setting the optimisation level"), e))?
        .with_operators(
            super::own_ops::domain().map_err(|e| Error::ort(ctx("frostline's operators"), e))?,
        )
        .map_err(|e| Error::ort(ctx("registering frostline's operators"), e))?;
    // ONNX Runtime's own per-node timings, for benchmarks of the graphs frostline runs (its own
    // operators included, which no other ORT process can load): written when the session closes.
    if let Some(prefix) = std::env::var_os("FROSTLINE_ORT_PROFILE") {
        builder = builder
            .with_profiling(prefix)
            .map_err(|e| Error::ort(ctx("FROSTLINE_ORT_PROFILE"), e))?;
    }
    if threads > 0 {
        builder = builder
            .with_intra_threads(threads)
            .map_err(|e| Error::ort(ctx("setting threads"), e))?;
    }
    if cuda {
        builder = with_cuda(rt, builder)?;
    }
    let loaded =
        |e: ort::Error| Error::model(graph, format!("ONNX Runtime could not load the graph: {e}"));
    // CUDA runs the graph as written (ORT's CUDA kernels; frostline's would run on the CPU
    // with copies around them); on CPU its layers run on frostline's kernels unless turned off.
    if !cuda && kernels == Kernels::Frostline {
        let bytes = std::fs::read(graph).map_err(|e| Error::io(graph, e))?;
        let kernels = super::own_graph::ProductKernels::of_this_cpu();
        let rewritten = super::own_graph::on_own_ops(&bytes, kernels).map_err(|what| {
            Error::model(
                graph,
                format!("could not load the graph: not a readable ONNX model ({what})"),
            )
        })?;
        if let Some(r) = rewritten {
            // A graph read from memory has no folder of its own: weights kept beside it as
            // external data are found where the file is.
            let folder = graph.parent().unwrap_or(Path::new("."));
            builder = builder
                .with_config_entry(EXTERNAL_DATA_FOLDER, folder.to_string_lossy())
                .map_err(|e| Error::ort(ctx("pointing ONNX Runtime at the graph's folder"), e))?;
            let session = builder.commit_from_memory(&r.bytes).map_err(loaded)?;
            return Ok((session, Some(r.ops)));
        }
    }
    Ok((builder.commit_from_file(graph).map_err(loaded)?, None))
}

/// `builder` with the CUDA execution provider registered, or why it cannot be.
fn with_cuda(rt: &Runtime, builder: SessionBuilder) -> Result<SessionBuilder> {
    if !ort::ep::CUDA::is_available().unwrap_or(false) {
        return Err(Error::Device(format!(
            "the ONNX Runtime library at {} has no CUDA execution provider (a CPU-only build)",
            rt.library.path.display()
        )));
    }
    builder
        .with_execution_providers([ort::ep::CUDA::default().build().error_on_failure()])
        .map_err(|e| {
            Error::Device(format!(
                "registering the CUDA execution provider failed: {e}"
            ))
        })
}

fn short_reason(e: &Error) -> String {
    match e {
        Error::Device(m) => m.clone(),
        other => other.to_string(),
    }
}

fn cuda_error(rt: &Runtime, e: Error) -> Error {
    Error::Device(format!(
        "--device cuda: {}. No GPU run is possible with the library at {}; {GPU_HELP}. \
Use --device cpu, or --device auto to fall back to CPU explicitly.",
        short_reason(&e),
        rt.library.path.display()
    ))
}
