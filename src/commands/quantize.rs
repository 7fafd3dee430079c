//! `frostline quantize`: an int8 copy of an fp32 model folder that records how it was made, so
//! every other command takes it like any folder and no flag is repeated.

use std::path::{Path, PathBuf};

use crate::backbone::choice::{open_model, ModelChoice};
use crate::backbone::folder::content_hash;
use crate::backbone::quant_record::{QuantSource, Quantization, CALIBRATION, RECORD};
use crate::backbone::quantize;
use crate::backbone::{ModelFolder, Recipe};
use crate::commands::Outcome;
use crate::data;
use crate::error::{Error, Result};
use crate::io::fsutil;
use crate::io::outfolder::{FolderKind, OutputFolder};

/// Calibration texts for a static recipe: the first `rows` texts of `path`.
pub(crate) struct Calibration {
    pub path: PathBuf,
    pub text_column: String,
    pub rows: usize,
}

pub(crate) struct QuantizeJob {
    pub model: ModelChoice,
    pub out: PathBuf,
    pub recipe: Recipe,
    pub calibration: Option<Calibration>,
    pub force: bool,
}

pub(crate) fn run(job: &QuantizeJob) -> Result<Outcome> {
    let folder = open_model(&job.model)?;
    if let Some(q) = &folder.quantization {
        return Err(Error::Usage(format!(
            "{} is already quantized ({}, made from {}); quantize the fp32 folder instead",
            folder.dir.display(),
            q.recipe.describe(),
            q.source.dir.display()
        )));
    }
    // Read and checked before the output folder is touched.
    let texts = job
        .calibration
        .as_ref()
        .map(|c| -> Result<Vec<String>> {
            let mut texts = data::read_input(&c.path)?.texts(&c.text_column)?;
            texts.truncate(c.rows);
            Ok(texts)
        })
        .transpose()?;
    let mut reads: Vec<&Path> = vec![&folder.dir];
    if let Some(c) = &job.calibration {
        reads.push(&c.path);
    }
    let out = OutputFolder::claim(&job.out, FolderKind::ModelFolder, job.force, &reads)?;
    let source = QuantSource {
        dir: folder.dir.clone(),
        content_hash: content_hash(&folder)?,
    };
    let started = std::time::Instant::now();
    out.write(|tmp| {
        copy_folder_files(&folder.dir, tmp)?;
        let calibration = texts
            .as_deref()
            .map(|t| quantize::write_calibration(&tmp.join(CALIBRATION), t))
            .transpose()?;
        let quantizer = quantize::quantize_graph(
            &folder.onnx,
            &tmp.join("model.onnx"),
            job.recipe,
            calibration
                .is_some()
                .then(|| tmp.join(CALIBRATION))
                .as_deref(),
            &folder,
            None,
            quantize::Ops::Own,
        )?;
        let record = Quantization {
            version: 1,
            recipe: job.recipe,
            quantizer,
            source: source.clone(),
            calibration,
            max_length: folder.max_length,
            frostline_version: env!("CARGO_PKG_VERSION").into(),
        };
        let json = serde_json::to_string_pretty(&record).expect("record serialises");
        fsutil::write_bytes_atomic(&tmp.join(RECORD), json.as_bytes())?;
        // The new folder must open as a model folder before it replaces anything.
        ModelFolder::open(tmp).map(drop)
    })?;
    let seconds = started.elapsed().as_secs_f64();
    let made = ModelFolder::open(&job.out)?;
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let (fp32_bytes, int8_bytes) = (size(&folder.onnx), size(&made.onnx));
    let mut warnings = Vec::new();
    if !job.recipe.method.batch_independent() {
        warnings.push(format!(
            "{}: a text's vector depends on the other texts in its batch, so cached vectors and scores depend on batch composition; --method per-token is batch-independent and more accurate (bench-results/int8.md)",
            job.recipe.describe()
        ));
    }
    let text = format!(
        "wrote {} ({}) from {} in {seconds:.1} s: model.onnx {:.1} MB (fp32 {:.1} MB)\n",
        job.out.display(),
        job.recipe.describe(),
        folder.dir.display(),
        int8_bytes as f64 / 1e6,
        fp32_bytes as f64 / 1e6,
    );
    let json = serde_json::json!({
        "output": job.out,
        "model_dir": folder.dir,
        "numeric": made.numeric(),
        "method": job.recipe.method.as_str(),
        "per_channel": job.recipe.per_channel,
        "calibration_texts": texts.as_ref().map(Vec::len),
        "seconds": seconds,
        "model_bytes": int8_bytes,
        "source_model_bytes": fp32_bytes,
    });
    let mut outcome = Outcome::new(text, json);
    outcome.warnings = warnings;
    Ok(outcome)
}

/// Copies what describes the model (tokenizer, config, pooling) from `src` into `dst`; leaves
/// out the fp32 graphs, which the int8 graph replaces, the fp32 weights (a frost line reads the
/// source's, checked by content hash: [`ModelFolder::native_weights`]), and frostline's own
/// markers and temp files.
fn copy_folder_files(src: &Path, dst: &Path) -> Result<()> {
    let entries = std::fs::read_dir(src).map_err(|e| Error::io(src, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(src, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let skip = name.starts_with('.')
            || name == "model.onnx"
            || name == "model.safetensors"
            || name == "pytorch_model.bin"
            || (name.starts_with("model.cut-") && name.ends_with(".onnx"))
            || name == RECORD
            || name == CALIBRATION;
        if skip {
            continue;
        }
        let (from, to) = (entry.path(), dst.join(&name));
        if from.is_dir() {
            std::fs::create_dir(&to).map_err(|e| Error::io(&to, e))?;
            copy_folder_files(&from, &to)?;
        } else if from.is_file() {
            // A failed copy is nearly always the destination's (disk full, permissions): name
            // it, and the source only when the source cannot be read.
            std::fs::copy(&from, &to).map_err(|e| match std::fs::File::open(&from) {
                Err(read) => Error::io(&from, read),
                Ok(_) => Error::io(&to, e),
            })?;
        }
    }
    Ok(())
}
