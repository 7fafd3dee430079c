//! Shared test helpers: where the exported model is, and running the binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixture(name: &str) -> PathBuf {
    repo().join("tests/fixtures").join(name)
}

/// The exported default model. A test that needs it fails when it is missing — unless
/// `FROSTLINE_SKIP_MODEL_TESTS=1` is set, when this prints SKIP and returns `None` (the test then
/// returns early). CI runs scripts/setup.sh first, so there it is always present.
pub fn model_dir() -> Option<PathBuf> {
    let dir = repo().join("models/all-MiniLM-L6-v2");
    if dir.join("model.onnx").is_file() {
        return Some(dir);
    }
    if std::env::var("FROSTLINE_SKIP_MODEL_TESTS").as_deref() == Ok("1") {
        eprintln!(
            "SKIP: {} has no model.onnx (FROSTLINE_SKIP_MODEL_TESTS=1)",
            dir.display()
        );
        return None;
    }
    panic!(
        "{} has no model.onnx: run scripts/setup.sh, or set FROSTLINE_SKIP_MODEL_TESTS=1 to skip the tests that need it",
        dir.display()
    );
}

/// Library settings for the model folder at `model` (its own max length, CPU).
pub fn settings_for(model: &Path) -> frostline::embedder::EmbedSettings {
    let folder = frostline::backbone::ModelFolder::open(model).unwrap();
    frostline::embedder::EmbedSettings::new(&folder)
}

pub fn frostline(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_frostline"));
    cmd.args(args);
    cmd
}

pub fn run(cmd: &mut Command) -> (bool, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().expect("binary runs");
    (
        status.success(),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

/// `embed` with a private cache folder and no progress bar.
pub fn embed_cmd(model: &Path, input: &Path, output: &Path, cache: &Path) -> Command {
    let mut cmd = frostline(&["embed", "--no-progress"]);
    cmd.arg("--model")
        .arg(model)
        .arg("--input")
        .arg(input)
        .arg("--output")
        .arg(output)
        .arg("--cache-dir")
        .arg(cache);
    cmd
}

/// Reads a little-endian f32 .npy written by frostline: (rows, cols, data).
pub fn read_npy(path: &Path) -> (usize, usize, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
    let hlen = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + hlen]).unwrap();
    let shape = header
        .split("'shape': (")
        .nth(1)
        .unwrap()
        .split(')')
        .next()
        .unwrap();
    let dims: Vec<usize> = shape
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let data: Vec<f32> = bytes[10 + hlen..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(data.len(), dims[0] * dims[1]);
    (dims[0], dims[1], data)
}

pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

/// No file in `dir` other than those named in `allowed` (no partial output, no temp file).
pub fn assert_only(dir: &Path, allowed: &[&str]) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            allowed.contains(&name.as_str()),
            "unexpected file left behind: {name}"
        );
    }
}

/// Every tensor of a safetensors file as raw bytes, by name (bit-for-bit comparisons).
pub fn tensor_bytes(path: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(n, v)| (n, v.data().to_vec()))
        .collect()
}
