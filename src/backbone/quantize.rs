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

/// Quantizes `input` into `output` (written whole or not at all) and returns what the quantizer
/// reported. Static needs `calibration` (texts file) and the folder's tokenizer.
pub(crate) fn quantize_graph(
    input: &Path,
    output: &Path,
    recipe: Recipe,
    calibration: Option<&Path>,
    folder: &ModelFolder,
    max_length: usize,
) -> Result<serde_json::Value> {
    let max_len = max_length.to_string();
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
    let path = folder
        .dir
        .join(format!("model.cut-{n}.{}.onnx", recipe.file_tag()));
    if path.is_file() {
        return Ok(path);
    }
    let calibration = match recipe.method {
        QuantMethod::Static => {
            let c = folder.dir.join(CALIBRATION);
            if !c.is_file() {
                return Err(Error::model(
                    &folder.dir,
                    format!("{CALIBRATION} is missing: a static folder's frost-line graphs are calibrated on it; re-make the folder with frostline quantize"),
                ));
            }
            Some(c)
        }
        _ => None,
    };
    quantize_graph(
        &cut,
        &path,
        recipe,
        calibration.as_deref(),
        folder,
        folder.max_length,
    )?;
    Ok(path)
}

/// The graph below frost line `n` that makes the token states, and its numeric format: int8 as
/// the folder's record says for a quantized folder, int8 per-token when `quantize_frozen` asks
/// for it (the frozen part only: the layers above train in fp32), else the fp32 cut.
pub(crate) fn frozen_graph(
    folder: &ModelFolder,
    n: usize,
    quantize_frozen: bool,
) -> Result<(PathBuf, String)> {
    let recipe = match &folder.quantization {
        Some(q) => Some(q.recipe),
        None if quantize_frozen => Some(Recipe::FROZEN_PART),
        None => None,
    };
    match recipe {
        Some(r) => Ok((ensure_quantized_cut(folder, n, r)?, r.describe())),
        None => Ok((super::export::ensure_cut(folder, n)?, "fp32".into())),
    }
}
