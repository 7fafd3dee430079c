//! Shared test helpers: where the exported model is, and running the binary.
#![allow(dead_code)]

use std::ffi::{OsStr, OsString};
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

/// One piece of a command line, for [`args`] and for [`frostline`] and [`fl`], which take the
/// same pieces. What a piece adds depends on its type, never on what it holds:
/// - a `&str` is split at whitespace: `"train --no-progress --out ck"` adds five arguments (and
///   `""` none), so write flags and literal values as one string;
/// - everything else is one argument as it is: `Path`, `PathBuf`, `OsStr`, `OsString`,
///   `String` (a `format!`), a number, and `whole(s)` for a `&str` that must stay whole (an
///   empty argument, a value with spaces, a path held as text);
/// - a `Vec<OsString>` (what [`args`] returns) or a nested `&[&dyn AsArgs]` adds its pieces by
///   these same rules. A `&[&str]` is not a piece (its items would be split): hand it to
///   `Command::args`, which keeps each item whole.
///
/// `args(&[&"train --run", &run_toml, &"--out ck --set", &format!("train.epochs={n}")])`.
pub trait AsArgs {
    fn push_args(&self, out: &mut Vec<OsString>);
}

impl AsArgs for str {
    fn push_args(&self, out: &mut Vec<OsString>) {
        out.extend(self.split_whitespace().map(OsString::from));
    }
}

/// A `&str` kept as one argument (see [`AsArgs`]).
pub struct Whole<'a>(pub &'a str);

pub fn whole(s: &str) -> Whole<'_> {
    Whole(s)
}

impl AsArgs for Whole<'_> {
    fn push_args(&self, out: &mut Vec<OsString>) {
        out.push(self.0.into());
    }
}

macro_rules! one_argument {
    ($($t:ty),*) => {$(
        impl AsArgs for $t {
            fn push_args(&self, out: &mut Vec<OsString>) {
                out.push(AsRef::<OsStr>::as_ref(self).to_owned());
            }
        }
    )*};
}
one_argument!(String, Path, PathBuf, OsStr, OsString);

macro_rules! one_number {
    ($($t:ty),*) => {$(
        impl AsArgs for $t {
            fn push_args(&self, out: &mut Vec<OsString>) {
                out.push(self.to_string().into());
            }
        }
    )*};
}
one_number!(i32, i64, u32, u64, usize);

impl<T: AsArgs + ?Sized> AsArgs for &T {
    fn push_args(&self, out: &mut Vec<OsString>) {
        (**self).push_args(out);
    }
}

impl AsArgs for Vec<OsString> {
    fn push_args(&self, out: &mut Vec<OsString>) {
        out.extend(self.iter().cloned());
    }
}

impl AsArgs for [&dyn AsArgs] {
    fn push_args(&self, out: &mut Vec<OsString>) {
        for part in self {
            part.push_args(out);
        }
    }
}

/// The arguments `parts` make, by the rules of [`AsArgs`].
pub fn args(parts: &[&dyn AsArgs]) -> Vec<OsString> {
    let mut out = Vec::new();
    parts.push_args(&mut out);
    out
}

/// The binary with the arguments `parts` make (see [`AsArgs`]).
pub fn frostline(parts: &[&dyn AsArgs]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_frostline"));
    cmd.args(args(parts));
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

/// `COMMAND SOURCE --input INPUT --output OUTPUT --cache-dir CACHE`.
fn in_out_cmd(command: &str, source: &Path, input: &Path, output: &Path, cache: &Path) -> Command {
    let io = args(&[
        &"--input",
        &input,
        &"--output",
        &output,
        &"--cache-dir",
        &cache,
    ]);
    frostline(&[&command, &source, &io])
}

/// `embed` with a private cache folder and no progress bar.
pub fn embed_cmd(model: &Path, input: &Path, output: &Path, cache: &Path) -> Command {
    in_out_cmd("embed --no-progress --model", model, input, output, cache)
}

/// `predict` of `input` into `output` with the checkpoint `ck`, a private cache folder and no
/// progress bar.
pub fn predict_cmd(ck: &Path, input: &Path, output: &Path, cache: &Path) -> Command {
    in_out_cmd(
        "predict --no-progress --checkpoint",
        ck,
        input,
        output,
        cache,
    )
}

/// A cache folder shared by the tests of one file (they embed the same texts), kept between runs.
pub fn shared_cache(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("frostline-test-cache-{name}"));
    std::fs::create_dir_all(&p).unwrap();
    p
}

pub fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A checkpoint's manifest.json.
pub fn manifest(ck: &Path) -> serde_json::Value {
    read_json(&ck.join("manifest.json"))
}

pub fn read_parquet(path: &Path) -> polars::prelude::DataFrame {
    use polars::prelude::SerReader;
    polars::prelude::ParquetReader::new(std::fs::File::open(path).unwrap())
        .finish()
        .unwrap()
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

/// `n` rows of a shipped subset as a new CSV at `dest`; returns `dest`.
pub fn head_rows(src: &str, n: usize, dest: &Path) -> PathBuf {
    let text = std::fs::read_to_string(repo().join(src)).unwrap();
    let lines: Vec<&str> = text.lines().take(n + 1).collect();
    std::fs::write(dest, lines.join("\n") + "\n").unwrap();
    dest.to_path_buf()
}

/// A two-task project in `root`: `root/runs/run.toml` naming the model and the data by paths
/// relative to the run file (`../m`, a link to the exported model; `../data/*.csv`).
pub fn project(root: &Path, model: &Path) -> PathBuf {
    std::fs::create_dir_all(root.join("runs")).unwrap();
    std::fs::create_dir_all(root.join("data")).unwrap();
    std::os::unix::fs::symlink(model, root.join("m")).unwrap();
    head_rows("data/sst2/train.csv", 120, &root.join("data/s-train.csv"));
    head_rows("data/sst2/test.csv", 60, &root.join("data/s-test.csv"));
    head_rows(
        "data/banking77/train.csv",
        400,
        &root.join("data/b-train.csv"),
    );
    head_rows("data/banking77/test.csv", 60, &root.join("data/b-test.csv"));
    let run = root.join("runs/run.toml");
    std::fs::write(
        &run,
        r#"model = "../m"
seed = 5
[train]
epochs = 2
[[tasks]]
name = "intent"
train = "../data/b-train.csv"
test = "../data/b-test.csv"
[[tasks]]
name = "sentiment"
train = "../data/s-train.csv"
test = "../data/s-test.csv"
"#,
    )
    .unwrap();
    run
}

/// The binary with a private cache, no progress bar and `FROSTLINE_MODEL` unset.
pub fn fl(cwd: &Path, cache: &Path, parts: &[&dyn AsArgs]) -> Command {
    let mut cmd = frostline(parts);
    cmd.current_dir(cwd)
        .env("FROSTLINE_CACHE", cache)
        .env_remove("FROSTLINE_MODEL");
    cmd
}

pub fn json_of(stdout: &str) -> serde_json::Value {
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("not one JSON object ({e}): {stdout}"))
}

pub fn code(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A copy of the model folder made of hard links (cheap), optionally with one file changed.
pub fn linked_copy(model: &Path, dest: &Path, change_tokenizer: bool) {
    std::fs::create_dir_all(dest).unwrap();
    for entry in std::fs::read_dir(model).unwrap() {
        let entry = entry.unwrap();
        let to = dest.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            linked_copy(&entry.path(), &to, false);
        } else if change_tokenizer && entry.file_name() == "tokenizer.json" {
            let mut text = std::fs::read_to_string(entry.path()).unwrap();
            text.push('\n');
            std::fs::write(&to, text).unwrap();
        } else if entry
            .file_name()
            .to_string_lossy()
            .starts_with("model.cut-")
        {
            // Cut graphs are made on demand; leave them out.
        } else {
            std::fs::hard_link(entry.path(), &to).unwrap();
        }
    }
}

/// `bin/python` of the venv named by `$var`, else `~/.cache/frostline/<default>`; a test that
/// needs it fails (naming the set-up script) when it is missing.
pub fn venv_python(var: &str, default: &str, setup: &str) -> PathBuf {
    let venv = std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").unwrap())
            .join(".cache/frostline")
            .join(default)
    });
    let py = venv.join("bin/python");
    assert!(py.is_file(), "{} is missing: run {setup}", py.display());
    py
}

/// Seals an edited checkpoint manifest again, as a forger who knows the format would: the tests
/// that check a manifest's meaning get past the seal this way.
pub fn reseal(manifest: &Path) {
    let text = std::fs::read_to_string(manifest).unwrap();
    let body = match frostline::checkpoint::seal::split(&text) {
        Some((_, body)) => body,
        None => text,
    };
    std::fs::write(manifest, frostline::checkpoint::seal::seal(body.as_bytes())).unwrap();
}

/// Edits a checkpoint's manifest as JSON, keeping the seal as the first field, and seals it again.
pub fn edit_manifest(manifest: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let text = std::fs::read_to_string(manifest).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v.as_object_mut().unwrap().remove("seal");
    edit(&mut v);
    let body = serde_json::to_vec_pretty(&v).unwrap();
    std::fs::write(manifest, frostline::checkpoint::seal::seal(&body)).unwrap();
}

/// A flat copy of a folder's files (a checkpoint, say), to edit without touching the original.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// The files of an exported model folder that frostline reads.
pub const MODEL_FILES: [&str; 7] = [
    "model.onnx",
    "model.safetensors",
    "tokenizer.json",
    "config.json",
    "modules.json",
    "sentence_bert_config.json",
    "1_Pooling/config.json",
];

/// `dest` (made, with its 1_Pooling folder) holding a symlink to each of `model`'s
/// [`MODEL_FILES`] except those named in `skip`.
pub fn link_model(model: &Path, dest: &Path, skip: &[&str]) {
    std::fs::create_dir_all(dest.join("1_Pooling")).unwrap();
    for f in MODEL_FILES.iter().filter(|f| !skip.contains(f)) {
        std::os::unix::fs::symlink(model.join(f), dest.join(f)).unwrap();
    }
}

/// A private copy of the model folder (big files linked) so that cut graphs made by the tests
/// land in a temp folder.
pub fn model_copy(dir: &Path, model: &Path) -> PathBuf {
    let m = dir.join("model");
    link_model(model, &m, &[]);
    m
}

/// Trainable parameters of `layers` all-MiniLM-L6-v2 layers (hidden 384, FFN 1536).
pub fn minilm_layer_params(layers: usize) -> usize {
    layers * (4 * (384 * 384 + 384) + 2 * 384 * 1536 + 1536 + 384 + 4 * 384)
}

/// `frostline export` of checkpoint `ck` into the model folder `out`; panics with its stderr.
pub fn export_checkpoint(ck: &Path, out: &Path) {
    let (ok, _, err) = run(&mut frostline(&[
        &"export --checkpoint",
        &ck,
        &"--out",
        &out,
    ]));
    assert!(ok, "{err}");
}

/// Exports checkpoint `ck` into `out` (task `task`'s backbone where named: `--task`) and checks
/// that the exported model folder gives the checkpoint's own vectors for that task (native
/// layers above its frost line on `model`; the first task's where none is named) for the texts
/// of `csv`: cosine ≥ 0.9999 on every row.
pub fn assert_export_reproduces(
    ck: &Path,
    out: &Path,
    model: &Path,
    cache: &Path,
    csv: &Path,
    task: Option<&str>,
) {
    let (ok, _, err) = run(&mut frostline(&[
        &"export --checkpoint",
        &ck,
        &"--out",
        &out,
        &task
            .map(|t| format!("--task {t}"))
            .unwrap_or_default()
            .as_str(),
    ]));
    assert!(ok, "{err}");
    let texts = frostline::data::read_table(csv)
        .unwrap()
        .required_strings("text")
        .unwrap();
    let mut settings = settings_for(model);
    settings.cache_root = cache.to_path_buf();
    settings.max_length = 32;
    let mut ckpt = frostline::checkpoint::load(ck).unwrap();
    let mut native =
        frostline::inference::CheckpointEncoder::open(&mut ckpt, settings.clone(), false)
            .unwrap()
            .0;
    let first = ckpt.manifest.tasks[0].config.name.clone();
    let (a, _) = native
        .vectors(&ckpt, task.unwrap_or(&first), &texts)
        .unwrap();
    let mut onnx = settings;
    onnx.model_dir = out.to_path_buf();
    let (b, _) = frostline::embedder::SentenceEmbedder::open(onnx)
        .unwrap()
        .embed(&texts)
        .unwrap();
    for r in 0..texts.len() {
        let c = cosine(a.row(r).as_slice().unwrap(), b.row(r).as_slice().unwrap());
        assert!(c >= 0.9999, "row {r}: exported model cosine {c}");
    }
}

/// The share of `csv`'s rows whose `label` `predict` with checkpoint `ck` gets right for task
/// `task` (max length 32, as the tests train).
pub fn predicted_accuracy(ck: &Path, csv: &Path, cache: &Path, task: &str) -> f64 {
    let pred = ck.with_extension("pred.csv");
    let (ok, _, err) = run(&mut frostline(&[
        &"predict --no-progress --max-length 32 --checkpoint",
        &ck,
        &"--input",
        &csv,
        &"--output",
        &pred,
        &"--cache-dir",
        &cache,
    ]));
    assert!(ok, "{err}");
    let truth = frostline::data::read_table(csv)
        .unwrap()
        .required_strings("label")
        .unwrap();
    let text = std::fs::read_to_string(&pred).unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let col = reader
        .headers()
        .unwrap()
        .iter()
        .position(|h| h == format!("{task}_label"))
        .expect("a label column");
    let correct = reader
        .records()
        .zip(&truth)
        .filter(|(r, t)| &r.as_ref().unwrap()[col] == t.as_str())
        .count();
    correct as f64 / truth.len() as f64
}

/// `frostline train` of run file `run_toml` at max length 32 with cache `cache`, plus `parts`.
pub fn train_cmd(run_toml: &Path, cache: &Path, parts: &[&dyn AsArgs]) -> (bool, String, String) {
    run(&mut frostline(&[
        &"train --no-progress --max-length 32 --run",
        &run_toml,
        &"--cache-dir",
        &cache,
        &parts,
    ]))
}

/// What a test that trains above a frost line starts from: a scratch folder `d` (removed with
/// `dir`), a private model copy `m` there (cut graphs land in it), a cache folder and a run
/// file's path. `None` without the exported model.
pub struct Scratch {
    pub dir: tempfile::TempDir,
    pub d: PathBuf,
    pub m: PathBuf,
    pub cache: PathBuf,
    pub run_toml: PathBuf,
}

impl Scratch {
    pub fn new() -> Option<Self> {
        let model = model_dir()?;
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_path_buf();
        Some(Self {
            m: model_copy(&d, &model),
            cache: d.join("cache"),
            run_toml: d.join("run.toml"),
            d,
            dir,
        })
    }
}
