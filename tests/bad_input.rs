//! Bad input: each case exits non-zero with a message naming the file/row/field, and leaves no
//! output (or temp) file behind. Empty and very long texts are not errors: they are embedded and
//! counted in the summary.

mod common;

use std::path::{Path, PathBuf};

use common::*;

/// Runs `embed` on `input` into `dir/out.npy`; returns (success, stderr).
fn embed_in(dir: &Path, model: &Path, input: &Path, extra: &[&str]) -> (bool, String) {
    let mut cmd = embed_cmd(model, input, &dir.join("out.npy"), &dir.join("cache"));
    cmd.args(extra);
    let (ok, _, err) = run(&mut cmd);
    (ok, err)
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// A failed run leaves only the input files (and perhaps the cache folder) in `dir`.
fn assert_failed_cleanly(dir: &Path, ok: bool, err: &str, must_mention: &[&str], inputs: &[&str]) {
    assert!(!ok, "expected failure, got success: {err}");
    assert!(err.contains("frostline: error:"), "{err}");
    for m in must_mention {
        assert!(err.contains(m), "message should mention {m:?}: {err}");
    }
    let mut allowed: Vec<&str> = inputs.to_vec();
    allowed.push("cache");
    assert_only(dir, &allowed);
}

/// A model-independent path that never reaches ORT (used where the model is not needed).
fn any_model() -> PathBuf {
    model_dir().unwrap_or_else(|| repo().join("models/all-MiniLM-L6-v2"))
}

#[test]
fn missing_model_folder() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "in.txt", b"hello\n");
    let (ok, err) = embed_in(dir.path(), Path::new("/nonexistent/model"), &input, &[]);
    assert_failed_cleanly(
        dir.path(),
        ok,
        &err,
        &["/nonexistent/model", "not a folder", "export_onnx.py"],
        &["in.txt"],
    );
}

/// A copy of the model folder (big files linked) with some files removed or replaced.
fn doctored_model(dir: &Path, model: &Path, drop: &[&str], replace: &[(&str, &str)]) -> PathBuf {
    let m = dir.join("model");
    std::fs::create_dir_all(m.join("1_Pooling")).unwrap();
    for f in [
        "model.onnx",
        "tokenizer.json",
        "config.json",
        "modules.json",
        "sentence_bert_config.json",
        "1_Pooling/config.json",
    ] {
        if !drop.contains(&f) {
            std::os::unix::fs::symlink(model.join(f), m.join(f)).unwrap();
        }
    }
    for (f, content) in replace {
        let _ = std::fs::remove_file(m.join(f));
        std::fs::write(m.join(f), content).unwrap();
    }
    m
}

#[test]
fn model_folder_without_tokenizer() {
    let Some(model) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let m = doctored_model(dir.path(), &model, &["tokenizer.json"], &[]);
    let input = write(dir.path(), "in.txt", b"hello\n");
    let (ok, err) = embed_in(dir.path(), &m, &input, &[]);
    assert_failed_cleanly(
        dir.path(),
        ok,
        &err,
        &["tokenizer.json missing"],
        &["in.txt", "model"],
    );
}

#[test]
fn model_folder_with_invalid_config_and_graph() {
    let Some(model) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let m = doctored_model(dir.path(), &model, &[], &[("config.json", "{not json")]);
    let input = write(dir.path(), "in.txt", b"hello\n");
    let (ok, err) = embed_in(dir.path(), &m, &input, &[]);
    assert_failed_cleanly(
        dir.path(),
        ok,
        &err,
        &["config.json", "invalid JSON"],
        &["in.txt", "model"],
    );

    let dir = tempfile::tempdir().unwrap();
    let m = doctored_model(
        dir.path(),
        &model,
        &[],
        &[("model.onnx", "this is not an onnx graph")],
    );
    let input = write(dir.path(), "in.txt", b"hello\n");
    let (ok, err) = embed_in(dir.path(), &m, &input, &[]);
    assert_failed_cleanly(
        dir.path(),
        ok,
        &err,
        &["model.onnx", "could not load the graph"],
        &["in.txt", "model"],
    );
}

#[test]
fn ort_library_not_found_or_not_a_library() {
    let Some(model) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "in.txt", b"hello\n");
    let mut cmd = embed_cmd(
        &model,
        &input,
        &dir.path().join("out.npy"),
        &dir.path().join("cache"),
    );
    cmd.args(["--ort-lib", "/nonexistent/libonnxruntime.so"]);
    let (ok, _, err) = run(&mut cmd);
    assert_failed_cleanly(
        dir.path(),
        ok,
        &err,
        &[
            "ONNX Runtime library not found",
            "/nonexistent/libonnxruntime.so",
            "pip install onnxruntime",
        ],
        &["in.txt"],
    );

    let fake = write(dir.path(), "libfake.so", b"not a shared library");
    let mut cmd = embed_cmd(
        &model,
        &input,
        &dir.path().join("out.npy"),
        &dir.path().join("cache"),
    );
    cmd.env("ORT_DYLIB_PATH", &fake);
    let (ok, _, err) = run(&mut cmd);
    assert_failed_cleanly(
        dir.path(),
        ok,
        &err,
        &["could not be loaded", "libfake.so"],
        &["in.txt", "libfake.so"],
    );
}

#[test]
fn input_missing_or_empty() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, err) = embed_in(dir.path(), &any_model(), &dir.path().join("nope.csv"), &[]);
    assert_failed_cleanly(dir.path(), ok, &err, &["nope.csv", "not found"], &[]);

    for (name, bytes) in [
        ("empty.csv", &b"text,label\n"[..]),
        ("empty.txt", &b""[..]),
        ("empty.jsonl", &b"\n"[..]),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let input = write(dir.path(), name, bytes);
        let (ok, err) = embed_in(dir.path(), &any_model(), &input, &[]);
        assert_failed_cleanly(dir.path(), ok, &err, &[name, "has no rows"], &[name]);
    }
}

#[test]
fn unknown_column() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "in.csv", b"sentence,label\nhello,x\n");
    let (ok, err) = embed_in(dir.path(), &any_model(), &input, &[]);
    assert_failed_cleanly(
        dir.path(),
        ok,
        &err,
        &[
            "in.csv",
            "no column \"text\"",
            "sentence, label",
            "--text-column",
        ],
        &["in.csv"],
    );
}

#[test]
fn malformed_csv_row() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(
        dir.path(),
        "in.csv",
        b"text,label\nfine,positive\nbroken, with a comma,negative\n",
    );
    let (ok, err) = embed_in(dir.path(), &any_model(), &input, &[]);
    assert_failed_cleanly(
        dir.path(),
        ok,
        &err,
        &["in.csv", "row 3", "3 fields where the header has 2"],
        &["in.csv"],
    );
}

#[test]
fn invalid_utf8() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(
        dir.path(),
        "in.csv",
        b"text,label\nfine,positive\nbad \xff\xfe bytes,negative\n",
    );
    let (ok, err) = embed_in(dir.path(), &any_model(), &input, &[]);
    assert_failed_cleanly(
        dir.path(),
        ok,
        &err,
        &["in.csv", "row 3", "\"text\"", "not valid UTF-8"],
        &["in.csv"],
    );

    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "in.txt", b"one\ntwo\n\xc3\x28 three\n");
    let (ok, err) = embed_in(dir.path(), &any_model(), &input, &[]);
    assert_failed_cleanly(
        dir.path(),
        ok,
        &err,
        &["in.txt", "row 3", "not valid UTF-8"],
        &["in.txt"],
    );
}

#[test]
fn unsupported_formats() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "in.xlsx", b"x");
    let (ok, err) = embed_in(dir.path(), &any_model(), &input, &[]);
    assert_failed_cleanly(
        dir.path(),
        ok,
        &err,
        &["in.xlsx", "unsupported input format"],
        &["in.xlsx"],
    );

    let input = write(dir.path(), "in.txt", b"hello\n");
    let mut cmd = embed_cmd(
        &any_model(),
        &input,
        &dir.path().join("out.json"),
        &dir.path().join("cache"),
    );
    let (ok, _, err) = run(&mut cmd);
    assert_failed_cleanly(
        dir.path(),
        ok,
        &err,
        &["out.json", ".parquet or .npy"],
        &["in.xlsx", "in.txt"],
    );
}

#[test]
fn empty_and_very_long_texts_are_embedded_and_counted() {
    let Some(model) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let long = "frost ".repeat(100_000 / 6 + 1);
    assert!(long.len() >= 100_000);
    let mut csv = String::from("text\nhello world\n\"\"\n");
    csv.push_str(&long);
    csv.push('\n');
    let input = write(dir.path(), "in.csv", csv.as_bytes());
    let (ok, err) = embed_in(dir.path(), &model, &input, &[]);
    assert!(ok, "{err}");
    assert!(err.contains("truncated rows 1"), "{err}");
    assert!(err.contains("empty texts 1"), "{err}");
    let (rows, dim, data) = read_npy(&dir.path().join("out.npy"));
    assert_eq!((rows, dim), (3, 384));
    assert!(data.iter().all(|v| v.is_finite()));
}

#[test]
fn unwritable_output() {
    let Some(model) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "in.txt", b"hello\n");
    for out in ["/nonexistent-dir/out.npy", "/proc/frostline-out.npy"] {
        let mut cmd = embed_cmd(&model, &input, Path::new(out), &dir.path().join("cache"));
        let (ok, _, err) = run(&mut cmd);
        assert_failed_cleanly(dir.path(), ok, &err, &[out], &["in.txt"]);
        assert!(!Path::new(out).exists());
    }
}

#[test]
fn cuda_without_gpu_library_fails_clearly_and_auto_says_cpu() {
    let Some(model) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "in.txt", b"hello\n");
    let (ok, err) = embed_in(dir.path(), &model, &input, &["--device", "cuda"]);
    if ok {
        // Only on a machine with onnxruntime-gpu and a GPU.
        assert!(
            err.contains("execution provider: CUDAExecutionProvider"),
            "{err}"
        );
        return;
    }
    assert_failed_cleanly(
        dir.path(),
        ok,
        &err,
        &["--device cuda", "onnxruntime-gpu", "--device auto"],
        &["in.txt"],
    );

    let (ok, err) = embed_in(dir.path(), &model, &input, &["--device", "auto"]);
    assert!(ok, "{err}");
    assert!(err.contains("--device auto: CUDA unavailable"), "{err}");
    assert!(err.contains("running on CPU"), "{err}");
    assert!(
        err.contains("execution provider: CPUExecutionProvider"),
        "{err}"
    );
}

#[test]
fn doctor_reports_library_and_model_or_what_is_missing() {
    let Some(model) = model_dir() else { return };
    let (ok, out, err) = run(frostline(&["doctor", "--model"]).arg(&model));
    assert!(ok, "{out}{err}");
    for want in [
        "version: 1.",
        "CPUExecutionProvider",
        "hidden 384, 6 layers, pooling mean+l2, max length 256",
        "input  input_ids",
        "all checks passed",
    ] {
        assert!(out.contains(want), "doctor output lacks {want:?}:\n{out}");
    }
    let (ok, out, _) = run(&mut frostline(&[
        "doctor",
        "--model",
        "/nonexistent",
        "--ort-lib",
        "/nonexistent/lib.so",
    ]));
    assert!(!ok);
    assert!(out.contains("2 problem(s)"), "{out}");
    assert!(out.contains("pip install onnxruntime"), "{out}");
}
