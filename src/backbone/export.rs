//! Graph exports frostline makes itself, with the exporter script compiled into the binary and
//! run by the set-up venv's Python: the graph below a frost line, and a tuned full model.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::folder::ModelFolder;
use super::runtime::default_venv;
use crate::error::{Error, Result};

const EXPORTER: &str = include_str!("../../scripts/export_onnx.py");

fn python() -> PathBuf {
    default_venv()
        .map(|v| v.join("bin/python"))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("python3"))
}

fn run_exporter(folder: &Path, args: &[&std::ffi::OsStr], what: &str) -> Result<String> {
    run_script("frostline-export", EXPORTER, folder, args, what)
}

/// Runs one of the compiled-in Python scripts (`source`) with the set-up venv's Python on model
/// folder `folder` and returns its stdout; a failure names the folder and the step, the Python
/// it ran, and quotes the script's stderr.
pub(crate) fn run_script(
    name: &str,
    source: &str,
    folder: &Path,
    args: &[&std::ffi::OsStr],
    what: &str,
) -> Result<String> {
    // `.NAME.tmp-PID`: the script of a run killed midway is removed by the next run once that
    // process is gone.
    let base = std::env::temp_dir().join(name);
    crate::io::stale::sweep_stale(&base);
    let script = crate::io::fsutil::temp_path(&base);
    std::fs::write(&script, source).map_err(|e| Error::io(&script, e))?;
    let py = python();
    let out = Command::new(&py).arg(&script).args(args).output();
    let _ = std::fs::remove_file(&script);
    let out = out.map_err(|e| {
        Error::model(
            folder,
            format!(
                "{what}: cannot run {}: {e}; run scripts/setup.sh",
                py.display()
            ),
        )
    })?;
    if !out.status.success() {
        return Err(Error::model(folder, format!(
            "{what} failed (run by {}): {}; it runs in the set-up venv (scripts/setup.sh: onnx, onnxruntime, numpy, safetensors, tokenizers)",
            py.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The ONNX graph of the layers below frost line `n`, exported once into the model folder.
pub(crate) fn ensure_cut(folder: &ModelFolder, n: usize) -> Result<PathBuf> {
    if n > folder.num_layers {
        return Err(Error::Usage(format!(
            "layer {n} is outside 0..={}: the model has {} layers, so no graph below it can be cut (a frost line or token_layer names a layer in that range)",
            folder.num_layers, folder.num_layers
        )));
    }
    let path = folder.cut_graph(n);
    if !path.is_file() {
        // The cut graph is written into the model folder once; say so when it cannot be.
        let probe = crate::io::fsutil::temp_path(&path);
        if let Err(e) = std::fs::File::create(&probe) {
            return Err(Error::model(
                &folder.dir,
                format!(
                    "the graph below frost line {n} ({}) is made once into the model folder, which cannot be written ({e}); make the folder writable, or run scripts/export_onnx.py --model {} --output DIR --cut-at {n} with a writable copy",
                    path.display(),
                    folder.dir.display()
                ),
            ));
        }
        let _ = std::fs::remove_file(&probe);
        let n_text = n.to_string();
        // An int8 folder keeps no fp32 weights: the cut is built from the folder it was made
        // from (checked unchanged), into this one.
        let weights = folder.native_weights()?;
        let source = weights.parent().unwrap_or(&folder.dir);
        run_exporter(
            &folder.dir,
            &[
                "--model".as_ref(),
                source.as_os_str(),
                "--output".as_ref(),
                folder.dir.as_os_str(),
                "--cut-at".as_ref(),
                n_text.as_ref(),
            ],
            &format!("exporting the graph below frost line {n}"),
        )?;
    }
    Ok(path)
}

/// A full fp32 model folder at `out` whose weights are `folder`'s with `tuned` (safetensors)
/// applied; an int8 folder's come from the fp32 folder it was made from.
pub(crate) fn export_tuned(folder: &ModelFolder, tuned: &Path, out: &Path) -> Result<()> {
    export_from_weights(folder, out, "--weights", tuned, "exporting the tuned model")
}

/// A served model folder at `out` (`export --with-heads`): `folder`'s fp32 weights, the branches
/// and heads frostline wrote into `spec_dir` (heads.json, heads.safetensors,
/// branch-<name>.safetensors), built into one graph with pooling and every head.
pub(crate) fn export_served(folder: &ModelFolder, spec_dir: &Path, out: &Path) -> Result<()> {
    export_from_weights(
        folder,
        out,
        "--with-heads",
        spec_dir,
        "exporting the served model with its heads",
    )
}

/// The exporter on `folder`'s fp32 weights (an int8 folder's source folder), writing `out`, with
/// one more option `flag value`.
fn export_from_weights(
    folder: &ModelFolder,
    out: &Path,
    flag: &str,
    value: &Path,
    what: &str,
) -> Result<()> {
    let weights = folder.native_weights()?;
    let base = weights.parent().unwrap_or(&folder.dir);
    run_exporter(
        &folder.dir,
        &[
            "--model".as_ref(),
            base.as_os_str(),
            "--output".as_ref(),
            out.as_os_str(),
            flag.as_ref(),
            value.as_os_str(),
        ],
        what,
    )
    .map(drop)
}
