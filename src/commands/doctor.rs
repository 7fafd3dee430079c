//! `frostline doctor`: what frostline found on this machine and what is missing.

use std::fmt::Write as _;
use std::path::Path;

use crate::backbone::{runtime, ModelFolder};
use crate::cache;
use crate::cli::jobs::{open_model, ModelChoice};
use crate::commands::Outcome;
use crate::error::{ErrorKind, Result};
use crate::nn::gemm::{self, Cpu, Kernel};
use crate::tokenize::TextTokenizer;

/// Checks the ORT library, its execution providers, the model folder (graph inputs/outputs,
/// dims, pooling, max length) and the tokenizer. Problems are counted, not raised, so that one
/// run lists all of them.
pub(crate) fn run(ort_lib: Option<&Path>, model: &ModelChoice) -> Outcome {
    let mut out = String::new();
    let mut problems = 0;
    let mut problem = |out: &mut String, what: String| {
        problems += 1;
        let _ = writeln!(out, "  PROBLEM: {what}");
    };

    let _ = writeln!(out, "ONNX Runtime");
    let runtime_ok = match runtime::init(ort_lib) {
        Ok(rt) => {
            let _ = writeln!(
                out,
                "  library: {} (found by {})",
                rt.library.path.display(),
                rt.library.found_by
            );
            let _ = writeln!(out, "  version: {}", runtime::version(&rt.library.path));
            let providers = runtime::available_providers();
            let _ = writeln!(out, "  execution providers: {}", providers.join(", "));
            if !providers.iter().any(|p| p == "CUDAExecutionProvider") {
                let _ = writeln!(
                    out,
                    "  (CPU-only library: for --device cuda install onnxruntime-gpu[cuda,cudnn] and pass its libonnxruntime.so with --ort-lib)"
                );
            }
            true
        }
        Err(e) => {
            problem(&mut out, e.to_string());
            false
        }
    };

    let _ = writeln!(
        out,
        "model folder {} (from {})",
        model.dir.display(),
        model.source
    );
    let mut pooling = serde_json::Value::Null;
    let mut numeric = serde_json::Value::Null;
    match open_model(model) {
        Ok(folder) => {
            pooling = serde_json::json!({
                "pooling": folder.pooling.describe(),
                "source": folder.pooling_source,
                "prefix": folder.prefix,
            });
            if !folder.prefix.is_empty() {
                let _ = writeln!(
                    out,
                    "  input prefix: {:?} (from frostline.json; put before every text)",
                    folder.prefix
                );
            }
            let _ = writeln!(
                out,
                "  pooling: {} (from {})",
                folder.pooling.describe(),
                folder.pooling_source
            );
            if folder.pooling_source.starts_with("assumed") {
                let _ = writeln!(
                    out,
                    "  WARNING: no pooling config: {} assumed; if the model was trained with CLS pooling or normalisation, add modules.json and 1_Pooling/config.json",
                    folder.pooling.describe()
                );
            }
            let _ = writeln!(
                out,
                "  {} model: hidden {}, {} layers, pooling {}, max length {}{}",
                folder.model_type,
                folder.hidden_size,
                folder.num_layers,
                folder.pooling.describe(),
                folder.max_length,
                {
                    let cuts: Vec<String> = (0..=folder.num_layers)
                        .filter(|&n| folder.cut_graph(n).is_file())
                        .map(|n| n.to_string())
                        .collect();
                    if cuts.is_empty() {
                        String::new()
                    } else {
                        format!(", frost-line graphs cut at {}", cuts.join(", "))
                    }
                },
            );
            numeric = serde_json::json!(folder.numeric());
            match &folder.quantization {
                None => {
                    let _ = writeln!(out, "  numeric format: fp32");
                }
                Some(q) => {
                    let _ = writeln!(
                        out,
                        "  numeric format: {} (from {}: made from {} by frostline {}{})",
                        q.recipe.describe(),
                        folder.dir.join(crate::backbone::quantize::RECORD).display(),
                        q.source.dir.display(),
                        q.frostline_version,
                        q.calibration
                            .as_ref()
                            .map(|c| format!(", calibrated on {} texts", c.texts))
                            .unwrap_or_default()
                    );
                    if !q.recipe.method.batch_independent() {
                        let _ = writeln!(
                            out,
                            "  WARNING: dynamic quantization: a text's vector depends on the other texts in its batch"
                        );
                    }
                }
            }
            match TextTokenizer::load(&folder.tokenizer, folder.max_length) {
                Ok(t) => match t.encode_all(&["frostline doctor"]) {
                    Ok(e) => {
                        let _ =
                            writeln!(out, "  tokenizer: ok ('frostline doctor' → {:?})", e[0].ids);
                    }
                    Err(e) => problem(&mut out, e.to_string()),
                },
                Err(e) => problem(&mut out, e.to_string()),
            }
            if runtime_ok {
                if let Err(e) = describe_graph(&mut out, &folder) {
                    problem(&mut out, e.to_string());
                }
            }
        }
        Err(e) => problem(&mut out, e.to_string()),
    }
    let _ = writeln!(out, "cache root: {}", cache::default_root().display());
    let engine = native_engine(&mut out);
    let _ = writeln!(
        out,
        "{}",
        if problems == 0 {
            "all checks passed".to_string()
        } else {
            format!("{problems} problem(s)")
        }
    );
    let json = serde_json::json!({
        "problems": problems,
        "model_dir": model.dir,
        "model_source": model.source.to_string(),
        "pooling": pooling,
        "numeric": numeric,
        "engine": engine,
        "report": out,
    });
    let mut outcome = Outcome::new(out, json);
    if problems > 0 {
        outcome.exit = ErrorKind::ModelRuntime.exit_code();
    }
    outcome
}

/// The CPU and the kernels the native layers (frost line, heads) will run on.
fn native_engine(out: &mut String) -> serde_json::Value {
    let cpu = Cpu::get();
    let fp32 = Kernel::best_fp32();
    let bf16 = Kernel::bf16();
    let _ = writeln!(out, "native engine (layers above a frost line, heads)");
    let _ = writeln!(out, "  cpu: {} ({})", cpu.model, cpu.flags());
    let _ = writeln!(out, "  fp32 products: {}", fp32.describe());
    let _ = writeln!(
        out,
        "  bf16 products (train.precision = \"bf16\"): {}",
        match bf16 {
            Some(k) => k.describe(),
            None => "unavailable: the CPU has no AVX512-BF16 (precision \"auto\" runs fp32)".into(),
        }
    );
    if cpu.amx_bf16 {
        let _ = writeln!(
            out,
            "  AMX: present, unused (frostline has no AMX kernel yet; bf16 runs on AVX512-BF16)"
        );
    }
    let _ = writeln!(out, "  threads: {} (MATMUL_NUM_THREADS)", gemm::threads());
    serde_json::json!({
        "cpu": cpu.model,
        "flags": cpu.flags(),
        "fp32": fp32.describe(),
        "bf16": bf16.map(Kernel::describe),
        "amx": cpu.amx_bf16,
        "threads": gemm::threads(),
    })
}

fn describe_graph(out: &mut String, folder: &ModelFolder) -> Result<()> {
    let rt = runtime::init(None)?;
    let session = ort::session::Session::builder(&rt.environment)
        .map_err(|e| crate::Error::ort("session", e))?
        .commit_from_file(&folder.onnx)
        .map_err(|e| {
            crate::Error::model(
                &folder.onnx,
                format!("ONNX Runtime could not load the graph: {e}"),
            )
        })?;
    for i in session.inputs() {
        let _ = writeln!(out, "  input  {}: {}", i.name(), i.dtype());
    }
    for o in session.outputs() {
        let _ = writeln!(out, "  output {}: {}", o.name(), o.dtype());
    }
    Ok(())
}
