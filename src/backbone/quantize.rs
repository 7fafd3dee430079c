//! int8 graphs, made by `scripts/quantize_onnx.py` (compiled in) in the set-up venv: a whole
//! folder's graph for `frostline quantize`, and the cut graph below a frost line for
//! `train.quantize_frozen`. How a folder was made is its record ([`super::quant_record`]).

use std::path::{Path, PathBuf};

use super::export::run_script;
use super::folder::ModelFolder;
use super::quant_record::{CalibrationRecord, QuantMethod, Recipe, CALIBRATION};
use crate::error::{Error, Result};

const QUANTIZER: &str = include_str!("../../scripts/quantize_onnx.py");

/// Where a set of texts used for calibration is written: one per line, line breaks inside a
/// text replaced by spaces (the quantizer reads lines).
pub(crate) fn write_calibration(path: &Path, texts: &[String]) -> Result<CalibrationRecord> {
    let mut body = String::new();
    for t in texts {
        body.push_str(&t.replace(['\n', '\r'], " "));
        body.push('\n');
    }
    crate::io::fsutil::write_bytes_atomic(path, body.as_bytes())?;
    Ok(CalibrationRecord {
        texts: texts.len(),
        checksum: format!(
            "xxh3-64:{:016x}",
            xxhash_rust::xxh3::xxh3_64(body.as_bytes())
        ),
    })
}

/// Which operators an int8 graph is written with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ops {
    /// For a graph frostline runs itself: the per-token recipe's element-wise work on
    /// frostline's own operators ([`super::own_ops`]), bit for bit the portable results.
    Own,
    /// For a graph handed out (`export --with-heads`): ONNX's and ONNX Runtime's operators only.
    Portable,
}

impl Ops {
    /// Whether `recipe` is written with frostline's operators (only per-token has them).
    fn own_for(self, recipe: Recipe) -> bool {
        self == Ops::Own && recipe.method == QuantMethod::PerToken
    }
}

/// Quantizes `input` into `output` (written whole or not at all) and returns what the quantizer
/// reported. Static needs `calibration` (texts file) and the folder's tokenizer. `layers_below`:
/// only the weights of encoder layers below it (a served graph's frozen part; its tuned layers
/// and heads stay fp32, as they run in frostline).
pub(crate) fn quantize_graph(
    input: &Path,
    output: &Path,
    recipe: Recipe,
    calibration: Option<&Path>,
    folder: &ModelFolder,
    layers_below: Option<usize>,
    ops: Ops,
) -> Result<serde_json::Value> {
    let max_len = folder.max_length.to_string();
    let below = layers_below.map(|n| n.to_string());
    let mut args: Vec<&std::ffi::OsStr> = vec![
        "--input".as_ref(),
        input.as_os_str(),
        "--output".as_ref(),
        output.as_os_str(),
        "--method".as_ref(),
        recipe.method.as_str().as_ref(),
        "--max-length".as_ref(),
        max_len.as_ref(),
    ];
    if !recipe.per_channel {
        args.push("--per-tensor".as_ref());
    }
    if ops.own_for(recipe) {
        args.push("--own-ops".as_ref());
    }
    if let Some(n) = &below {
        args.extend::<[&std::ffi::OsStr; 2]>(["--layers-below".as_ref(), n.as_ref()]);
    }
    if let Some(c) = calibration {
        args.extend([
            "--calibration".as_ref(),
            c.as_os_str(),
            "--tokenizer".as_ref(),
            folder.tokenizer.as_os_str(),
        ]);
    }
    let stdout = run_script(
        "frostline-quantize",
        QUANTIZER,
        &folder.dir,
        &args,
        &format!("quantizing {} ({})", input.display(), recipe.describe()),
    )?;
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).map_err(|e| {
        Error::Internal(format!(
            "the quantizer's report is not JSON ({e}): {line:?}"
        ))
    })
}

/// The graph below frost line `n`, quantized with `recipe` and kept in the model folder beside
/// the fp32 cut (made once; a static folder calibrates with its own `calibration.txt`).
pub(crate) fn ensure_quantized_cut(
    folder: &ModelFolder,
    n: usize,
    recipe: Recipe,
) -> Result<PathBuf> {
    let cut = super::export::ensure_cut(folder, n)?;
    let own = if Ops::Own.own_for(recipe) {
        ".own-ops"
    } else {
        ""
    };
    let path = folder
        .dir
        .join(format!("model.cut-{n}.{}{own}.onnx", recipe.file_tag()));
    if path.is_file() {
        return Ok(path);
    }
    let calibration = calibration_of(folder, recipe)?;
    quantize_graph(
        &cut,
        &path,
        recipe,
        calibration.as_deref(),
        folder,
        None,
        Ops::Own,
    )?;
    Ok(path)
}

/// The graph below frost line `n` that makes the token states, and its int8 recipe: the
/// folder's record's for a quantized folder, per-token when `quantize_frozen` asks for it (the
/// frozen part only: the layers above train in fp32), else `None`, the fp32 cut.
pub(crate) fn frozen_graph(
    folder: &ModelFolder,
    n: usize,
    quantize_frozen: bool,
) -> Result<(PathBuf, Option<Recipe>)> {
    match frozen_recipe(folder, quantize_frozen) {
        Some(r) => Ok((ensure_quantized_cut(folder, n, r)?, Some(r))),
        None => Ok((super::export::ensure_cut(folder, n)?, None)),
    }
}

/// A graph's numeric format as the cache keys its vectors: `fp32`, or the int8 recipe — and,
/// for a per-token graph a CPU session rewrites onto frostline's fused kernels
/// ([`super::own_graph`]), that it ran there. Those vectors agree with ONNX Runtime's kernels
/// (CUDA, `--kernels onnxruntime`) only to int8 rounding, so they keep their own entries; fp32
/// ones agree to float rounding and share.
pub(crate) fn numeric_key(recipe: Option<Recipe>, session: &super::SessionOptions) -> String {
    match recipe {
        None => "fp32".into(),
        Some(r) if Ops::Own.own_for(r) && session.frostline_kernels() => {
            format!("{}, on frostline's fused CPU kernels", r.describe())
        }
        Some(r) => r.describe(),
    }
}

/// The int8 recipe of the layers below a frost line (every layer without one): the folder's
/// own for a quantized folder, the frozen-part recipe when `quantize_frozen` asks for it, `None`
/// for fp32. The one place this is decided: token states and served graphs both follow it.
pub(crate) fn frozen_recipe(folder: &ModelFolder, quantize_frozen: bool) -> Option<Recipe> {
    match &folder.quantization {
        Some(q) => Some(q.recipe),
        None if quantize_frozen => Some(Recipe::FROZEN_PART),
        None => None,
    }
}

/// The calibration texts a recipe needs: a static folder's own `calibration.txt`, nothing for the
/// run-time recipes.
fn calibration_of(folder: &ModelFolder, recipe: Recipe) -> Result<Option<PathBuf>> {
    if recipe.method != QuantMethod::Static {
        return Ok(None);
    }
    let c = folder.dir.join(CALIBRATION);
    if !c.is_file() {
        return Err(Error::model(
            &folder.dir,
            format!("{CALIBRATION} is missing: a static folder's frost-line graphs are calibrated on it; re-make the folder with frostline quantize"),
        ));
    }
    Ok(Some(c))
}

/// A served graph (`export --with-heads`, at `graph`) made int8 in place below layer
/// `layers_below` with `folder`'s recipe: the same int8 products frostline runs there.
pub(crate) fn quantize_served(
    folder: &ModelFolder,
    recipe: Recipe,
    graph: &Path,
    layers_below: usize,
) -> Result<serde_json::Value> {
    let int8 = crate::io::fsutil::temp_path(graph);
    let calibration = calibration_of(folder, recipe)?;
    let report = quantize_graph(
        graph,
        &int8,
        recipe,
        calibration.as_deref(),
        folder,
        Some(layers_below),
        Ops::Portable,
    );
    let report = report.and_then(|r| {
        std::fs::rename(&int8, graph).map_err(|e| Error::io(graph, e))?;
        Ok(r)
    });
    let _ = std::fs::remove_file(&int8);
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backbone::{Kernels, Provider, SessionOptions};

    /// A per-token int8 graph's vectors are keyed by whose kernels run it: frostline's on CPU,
    /// ONNX Runtime's under `--kernels onnxruntime` or on CUDA (where `--device auto` landed
    /// too, decided before the key is made); fp32 ones share one key everywhere.
    #[test]
    fn the_numeric_key_follows_the_provider_the_run_got() {
        let session = |provider, kernels| SessionOptions {
            provider,
            device_note: None,
            kernels,
            threads: 0,
        };
        let int8 = Some(Recipe::FROZEN_PART);
        let own = numeric_key(int8, &session(Provider::Cpu, Kernels::Frostline));
        let ort_cpu = numeric_key(int8, &session(Provider::Cpu, Kernels::Onnxruntime));
        let cuda = numeric_key(int8, &session(Provider::Cuda, Kernels::Frostline));
        assert!(own.contains("frostline's fused CPU kernels"), "{own}");
        assert_ne!(own, cuda);
        assert_eq!(cuda, ort_cpu);
        for (p, k) in [
            (Provider::Cpu, Kernels::Frostline),
            (Provider::Cuda, Kernels::Onnxruntime),
        ] {
            assert_eq!(numeric_key(None, &session(p, k)), "fp32");
        }
    }
}
