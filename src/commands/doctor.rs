//! `frostline doctor`: what frostline found on this machine and what is missing.

use std::fmt::Write as _;
use std::path::Path;

use crate::backbone::choice::{open_model, ModelChoice};
use crate::backbone::{graph_ops, runtime, session, ModelFolder};
use crate::cache;
use crate::commands::Outcome;
use crate::error::{ErrorKind, Result};
use crate::nn::gemm::int8::Int8Kernel;
use crate::nn::gemm::{self, Cpu, Kernel};
use crate::tokenize::TextTokenizer;

/// What doctor has found so far: the report's lines and how many problems it names.
#[derive(Default)]
struct Findings {
    out: String,
    problems: usize,
}

impl Findings {
    fn line(&mut self, text: impl std::fmt::Display) {
        let _ = writeln!(self.out, "{text}");
    }

    fn problem(&mut self, what: impl std::fmt::Display) {
        self.problems += 1;
        let _ = writeln!(self.out, "  PROBLEM: {what}");
    }
}

/// Checks the ORT library, its execution providers, the model folder (graph inputs/outputs,
/// dims, pooling, max length) and the tokenizer. Problems are counted, not raised, so that one
/// run lists all of them.
pub(crate) fn run(ort_lib: Option<&Path>, model: &ModelChoice) -> Outcome {
    let mut found = Findings::default();
    let runtime_ok = onnx_runtime(&mut found, ort_lib);
    found.line(format_args!(
        "model folder {} (from {})",
        model.dir.display(),
        model.source
    ));
    let (pooling, numeric, graph) = match open_model(model) {
        Ok(folder) => model_folder(&mut found, &folder, runtime_ok),
        Err(e) => {
            found.problem(e);
            Default::default()
        }
    };
    found.line(format_args!(
        "cache root: {}",
        cache::default_root().display()
    ));
    let engine = native_engine(&mut found.out);
    let problems = found.problems;
    found.line(if problems == 0 {
        "all checks passed".to_string()
    } else {
        format!("{problems} problem(s)")
    });
    let json = serde_json::json!({
        "problems": problems,
        "model_dir": model.dir,
        "model_source": model.source.to_string(),
        "pooling": pooling,
        "numeric": numeric,
        "graph": graph,
        "engine": engine,
        "report": found.out,
    });
    let mut outcome = Outcome::new(found.out, json);
    if problems > 0 {
        outcome.exit = ErrorKind::ModelRuntime.exit_code();
    }
    outcome
}

/// The ORT library, its version and execution providers; false when it cannot be loaded.
fn onnx_runtime(found: &mut Findings, ort_lib: Option<&Path>) -> bool {
    found.line("ONNX Runtime");
    let rt = match runtime::init(ort_lib) {
        Ok(rt) => rt,
        Err(e) => {
            found.problem(e);
            return false;
        }
    };
    found.line(format_args!(
        "  library: {} (found by {})",
        rt.library.path.display(),
        rt.library.found_by
    ));
    found.line(format_args!(
        "  version: {}",
        runtime::version(&rt.library.path)
    ));
    let providers = runtime::available_providers();
    found.line(format_args!(
        "  execution providers: {}",
        providers.join(", ")
    ));
    if !providers.iter().any(|p| p == "CUDAExecutionProvider") {
        found.line("  (CPU-only library: for --device cuda install onnxruntime-gpu[cuda,cudnn] and pass its libonnxruntime.so with --ort-lib)");
    }
    true
}

/// The model folder: prefix, pooling, dims, frost-line cuts, numeric format, tokenizer and
/// (with a runtime) the graph's inputs and outputs, its ops. Returns pooling, numeric format and
/// the graph's ops as JSON.
fn model_folder(
    found: &mut Findings,
    folder: &ModelFolder,
    runtime_ok: bool,
) -> (serde_json::Value, serde_json::Value, serde_json::Value) {
    let pooling = serde_json::json!({
        "pooling": folder.pooling.describe(),
        "source": folder.pooling_source,
        "prefix": folder.prefix,
    });
    if !folder.prefix.is_empty() {
        found.line(format_args!(
            "  input prefix: {:?} (from frostline.json; put before every text)",
            folder.prefix
        ));
    }
    found.line(format_args!(
        "  pooling: {} (from {})",
        folder.pooling.describe(),
        folder.pooling_source
    ));
    if folder.pooling_source.starts_with("assumed") {
        found.line(format_args!(
            "  WARNING: no pooling config: {} assumed; if the model was trained with CLS pooling or normalisation, add modules.json and 1_Pooling/config.json",
            folder.pooling.describe()
        ));
    }
    let cuts: Vec<String> = (0..=folder.num_layers)
        .filter(|&n| folder.cut_graph(n).is_file())
        .map(|n| n.to_string())
        .collect();
    found.line(format_args!(
        "  {} model: hidden {}, {} layers, pooling {}, max length {}{}",
        folder.model_type,
        folder.hidden_size,
        folder.num_layers,
        folder.pooling.describe(),
        folder.max_length,
        if cuts.is_empty() {
            String::new()
        } else {
            format!(", frost-line graphs cut at {}", cuts.join(", "))
        },
    ));
    numeric_format(found, folder);
    match TextTokenizer::load(&folder.tokenizer, folder.max_length)
        .and_then(|t| t.encode_all(&["frostline doctor"]))
    {
        Ok(e) => found.line(format_args!(
            "  tokenizer: ok ('frostline doctor' → {:?})",
            e[0].ids
        )),
        Err(e) => found.problem(e),
    }
    let mut cpu_ops = None;
    if runtime_ok {
        match describe_graph(&mut found.out, folder) {
            Ok(ops) => cpu_ops = ops,
            Err(e) => found.problem(e),
        }
    }
    let graph = graph_ops(found, folder, cpu_ops);
    (pooling, serde_json::json!(folder.numeric()), graph)
}

/// fp32, or how an int8 folder was made (and whether its vectors depend on batch-mates).
fn numeric_format(found: &mut Findings, folder: &ModelFolder) {
    let Some(q) = &folder.quantization else {
        found.line("  numeric format: fp32");
        return;
    };
    found.line(format_args!(
        "  numeric format: {} (from {}: made from {} by frostline {}{})",
        q.recipe.describe(),
        folder
            .dir
            .join(crate::backbone::quant_record::RECORD)
            .display(),
        q.source.dir.display(),
        q.frostline_version,
        q.calibration
            .as_ref()
            .map(|c| format!(", calibrated on {} texts", c.texts))
            .unwrap_or_default()
    ));
    if !q.recipe.method.batch_independent() {
        found.line("  WARNING: dynamic quantization: a text's vector depends on the other texts in its batch");
    }
}

/// The CPU and the kernels the native layers (frost line, heads) will run on.
fn native_engine(out: &mut String) -> serde_json::Value {
    let cpu = Cpu::get();
    let fp32 = Kernel::best_fp32();
    let bf16 = Kernel::bf16();
    let _ = writeln!(out, "native engine (layers above a frost line, heads)");
    let _ = writeln!(out, "  cpu: {} ({})", cpu.model, cpu.flags());
    let _ = writeln!(
        out,
        "  fp32 products (train.precision = \"fp32\"): {}",
        fp32.describe()
    );
    let _ = writeln!(
        out,
        "  bf16 products (train.precision = \"bf16\"): {}",
        match bf16 {
            Some(k) => k.describe(),
            None => "unavailable: the CPU has no AVX512-BF16 (precision \"auto\" runs fp32)".into(),
        }
    );
    let amx = match (cpu.amx_bf16, Kernel::amx_unavailable()) {
        (_, None) => "in use for bf16 products".to_string(),
        (false, Some(_)) => "absent".to_string(),
        (true, Some(why)) => format!("present, not used: {why}"),
    };
    let _ = writeln!(out, "  AMX: {amx}");
    let _ = writeln!(out, "  threads: {} (MATMUL_NUM_THREADS)", gemm::threads());
    serde_json::json!({
        "cpu": cpu.model,
        "flags": cpu.flags(),
        "fp32": fp32.describe(),
        "bf16": bf16.map(Kernel::describe),
        "amx": cpu.amx_bf16,
        "amx_in_use": Kernel::amx_unavailable().is_none(),
        "amx_status": amx,
        "threads": gemm::threads(),
    })
}

/// The graph's inputs and outputs as ONNX Runtime opened it, and the operators a CPU session
/// runs when frostline rewrote it onto its own ([`crate::backbone::own_graph`]).
fn describe_graph(out: &mut String, folder: &ModelFolder) -> Result<Option<graph_ops::OpCounts>> {
    let rt = runtime::init(None)?;
    let (session, cpu_ops) =
        session::build_session(rt, &folder.onnx, 0, false, session::Kernels::Frostline)?;
    for i in session.inputs() {
        let _ = writeln!(out, "  input  {}: {}", i.name(), i.dtype());
    }
    for o in session.outputs() {
        let _ = writeln!(out, "  output {}: {}", o.name(), o.dtype());
    }
    Ok(cpu_ops)
}

/// What the graph is made of (read from the file, not from a record): its layout, its ops, the
/// fused ones named, and for an int8 graph which of ONNX Runtime's int8 kernels its products run.
/// `cpu_ops`: the operators of frostline's CPU rewrite of the graph (fp32 or per-token int8).
fn graph_ops(
    found: &mut Findings,
    folder: &ModelFolder,
    cpu_ops: Option<graph_ops::OpCounts>,
) -> serde_json::Value {
    let ops = match graph_ops::op_counts(&folder.onnx) {
        Ok(ops) => ops,
        Err(e) => {
            found.problem(e);
            return serde_json::Value::Null;
        }
    };
    let list_of = |ops: &graph_ops::OpCounts, names: &[&str]| -> String {
        let parts: Vec<String> = ops
            .iter()
            .filter(|(op, _)| names.is_empty() || names.iter().any(|n| op.ends_with(n)))
            .map(|(op, n)| format!("{} ×{n}", op.trim_start_matches("com.microsoft.")))
            .collect();
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join(", ")
        }
    };
    let list = |names: &[&str]| list_of(&ops, names);
    found.line(format_args!("  graph layout: {}", folder.graph.describe()));
    let fused = list(&FUSED_OPS);
    found.line(format_args!("  fused ops: {fused}"));
    let int8_products: usize = ops
        .iter()
        .filter(|(op, _)| INT8_OPS.iter().any(|n| op.ends_with(n)))
        .map(|(_, n)| n)
        .sum();
    let int8 = (int8_products > 0).then(|| {
        let on_frostline = cpu_ops
            .as_ref()
            .is_some_and(|c| c.contains_key("ai.frostline.MatMulInt8"));
        let kernel = int8_kernel(on_frostline);
        found.line(format_args!(
            "  int8 products: {int8_products}, on {kernel}"
        ));
        kernel
    });
    // An fp32 graph's weight products: on frostline's kernel where the CPU session took them.
    let fp32 = (int8_products == 0).then(|| {
        let count = |ops: &graph_ops::OpCounts, op: &str| ops.get(op).copied().unwrap_or(0);
        let own = cpu_ops
            .as_ref()
            .map_or(0, |c| count(c, "ai.frostline.MatMulF32"));
        let mlas = cpu_ops.as_ref().unwrap_or(&ops);
        let kernel = match (own, count(mlas, "MatMul")) {
            (0, _) => "ONNX Runtime's MLAS".to_string(),
            (own, 0) => format!("frostline's AVX-512F kernel (ai.frostline.MatMulF32 ×{own})"),
            (own, rest) => format!(
                "frostline's AVX-512F kernel (ai.frostline.MatMulF32 ×{own}), {rest} on ONNX Runtime's MLAS"
            ),
        };
        found.line(format_args!("  fp32 products: on {kernel}"));
        kernel
    });
    found.line(format_args!("  all ops: {}", list(&[])));
    let cpu_fused = cpu_ops.as_ref().map(|c| list_of(c, &FUSED_OPS));
    if let Some(f) = &cpu_fused {
        found.line(format_args!(
            "  on CPU frostline runs the layers on its own kernels: {f}"
        ));
    }
    serde_json::json!({
        "layout": folder.graph.describe(),
        "ops": ops,
        "fused": fused,
        "cpu_ops": cpu_ops,
        "cpu_fused": cpu_fused,
        "int8_products": int8_products,
        "int8_kernel": int8,
        "fp32_kernel": fp32,
    })
}

/// ONNX Runtime's fused contrib ops (and the fusions its own optimizer makes), and frostline's
/// own (`backbone::own_ops`).
const FUSED_OPS: [&str; 17] = [
    "QuantizeRows",
    "MatMulInt8",
    "MatMulF32",
    "BiasGeluQuantize",
    "AttentionCore",
    "BiasResidualLayerNorm",
    "ScaleBiasResidual",
    "ScaleSplit",
    "Attention",
    "MultiHeadAttention",
    "SkipLayerNormalization",
    "BiasGelu",
    "FastGelu",
    "Gelu",
    "EmbedLayerNormalization",
    "FusedMatMul",
    "MatMulIntegerToFloat",
];
const INT8_OPS: [&str; 5] = [
    "MatMulIntegerToFloat",
    "MatMulInteger",
    "QLinearMatMul",
    "DynamicQuantizeMatMul",
    "QAttention",
];

/// Which u8 × s8 kernel runs the int8 products: frostline's where a CPU session took them
/// (`on_frostline`), else the one ONNX Runtime's MLAS picks on this CPU, by MLAS's own order
/// (AMX-INT8 where the CPU has it and Linux grants the tile state, then AVX512-VNNI,
/// AVX-VNNI, AVX2).
fn int8_kernel(on_frostline: bool) -> String {
    let cpu = Cpu::get();
    if let Some(kernel) = Int8Kernel::get().ok().filter(|_| on_frostline) {
        format!(
            "{}; frostline's kernel, ai.frostline.MatMulInt8",
            kernel.describe()
        )
    } else if cpu.amx_int8 && Kernel::os_grants_amx() {
        "AMX-INT8 tiles (amx_int8; MLAS's AMX kernel)".into()
    } else if cpu.avx512_vnni {
        format!(
            "AVX512-VNNI{}",
            if cpu.amx_int8 {
                " (the CPU has AMX-INT8 but the OS refused its tile state)"
            } else {
                ""
            }
        )
    } else if cpu.avx_vnni {
        "AVX-VNNI".into()
    } else if cpu.avx2_fma {
        "AVX2 (no VNNI: int8 products gain little over fp32 here)".into()
    } else {
        "MLAS's portable int8 kernel".into()
    }
}
