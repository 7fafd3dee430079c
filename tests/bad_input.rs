//! Bad input: each case exits non-zero with a message naming the file/row/field, and leaves no
//! output (or temp) file behind. Empty and very long texts are not errors: they are embedded and
//! counted in the summary.

mod common;

use std::path::{Path, PathBuf};

use common::*;

/// `embed` of `input` into `dir/out.npy` with the cache `dir/cache`.
fn embed_into(dir: &Path, model: &Path, input: &Path) -> std::process::Command {
    embed_cmd(model, input, &dir.join("out.npy"), &dir.join("cache"))
}

/// Runs `embed` on `input` into `dir/out.npy`; returns (success, stderr).
fn embed_in(dir: &Path, model: &Path, input: &Path, extra: &[&str]) -> (bool, String) {
    let (ok, _, err) = run(embed_into(dir, model, input).args(extra));
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

/// `embed` of a file `name` holding `bytes`, alone in a fresh folder: fails cleanly, naming
/// each of `must_mention`.
fn refused_input(name: &str, bytes: &[u8], must_mention: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), name, bytes);
    let (ok, err) = embed_in(dir.path(), &any_model(), &input, &[]);
    assert_failed_cleanly(dir.path(), ok, &err, must_mention, &[name]);
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
    link_model(model, &m, &[&["model.safetensors"][..], drop].concat());
    for (f, content) in replace {
        let _ = std::fs::remove_file(m.join(f));
        std::fs::write(m.join(f), content).unwrap();
    }
    m
}

/// `embed` of one text with a doctored copy of `model`, in a fresh folder: fails cleanly,
/// naming each of `must_mention`.
fn refused_model(model: &Path, drop: &[&str], replace: &[(&str, &str)], must_mention: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let m = doctored_model(dir.path(), model, drop, replace);
    let input = write(dir.path(), "in.txt", b"hello\n");
    let (ok, err) = embed_in(dir.path(), &m, &input, &[]);
    assert_failed_cleanly(dir.path(), ok, &err, must_mention, &["in.txt", "model"]);
}

#[test]
fn a_folder_exported_before_fused_graphs_is_refused_with_the_command_that_re_exports_it() {
    let Some(model) = model_dir() else { return };
    // frostline.json as the exporter wrote it before the fused layout: no "graph".
    let old = r#"{"route": "graph-builder", "model_type": "bert", "source": "/somewhere/minilm"}"#;
    refused_model(
        &model,
        &[],
        &[("frostline.json", old)],
        &[
            "frostline.json",
            "made before frostline's fused graphs",
            "scripts/export_onnx.py --model",
            "--output",
        ],
    );
    // A layout this frostline does not know is refused too, not guessed at.
    let newer = r#"{"route": "graph-builder", "graph": "fused-v9"}"#;
    refused_model(
        &model,
        &[],
        &[("frostline.json", newer)],
        &["\"graph\": \"fused-v9\"", "does not know"],
    );
    // A folder the exporter did not write (no frostline.json) runs its graph as given.
    let dir = tempfile::tempdir().unwrap();
    let m = doctored_model(dir.path(), &model, &["frostline.json"], &[]);
    let input = write(dir.path(), "in.txt", b"hello\n");
    let (ok, err) = embed_in(dir.path(), &m, &input, &[]);
    assert!(ok, "{err}");
}

#[test]
fn model_folder_without_tokenizer() {
    let Some(model) = model_dir() else { return };
    refused_model(
        &model,
        &["tokenizer.json"],
        &[],
        &["tokenizer.json missing"],
    );
}

#[test]
fn model_folder_with_invalid_config_and_graph() {
    let Some(model) = model_dir() else { return };
    let bad_config = [("config.json", "{not json")];
    refused_model(&model, &[], &bad_config, &["config.json", "invalid JSON"]);
    let bad_graph = [("model.onnx", "this is not an onnx graph")];
    refused_model(
        &model,
        &[],
        &bad_graph,
        &["model.onnx", "could not load the graph"],
    );
}

#[test]
fn ort_library_not_found_or_not_a_library() {
    let Some(model) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "in.txt", b"hello\n");
    let no_lib = ["--ort-lib", "/nonexistent/libonnxruntime.so"];
    let (ok, err) = embed_in(dir.path(), &model, &input, &no_lib);
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
    let (ok, _, err) = run(embed_into(dir.path(), &model, &input).env("ORT_DYLIB_PATH", &fake));
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
        refused_input(name, bytes, &[name, "has no rows"]);
    }
}

#[test]
fn unknown_column() {
    refused_input(
        "in.csv",
        b"sentence,label\nhello,x\n",
        &[
            "in.csv",
            "no column \"text\"",
            "sentence, label",
            "--text-column",
        ],
    );
}

#[test]
fn malformed_csv_row() {
    refused_input(
        "in.csv",
        b"text,label\nfine,positive\nbroken, with a comma,negative\n",
        &["in.csv", "row 3", "3 fields where the header has 2"],
    );
}

#[test]
fn invalid_utf8() {
    refused_input(
        "in.csv",
        b"text,label\nfine,positive\nbad \xff\xfe bytes,negative\n",
        &["in.csv", "row 3", "\"text\"", "not valid UTF-8"],
    );
    refused_input(
        "in.txt",
        b"one\ntwo\n\xc3\x28 three\n",
        &["in.txt", "row 3", "not valid UTF-8"],
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
    let (ok, out, err) = run(&mut frostline(&[&"doctor --model", &model]));
    assert!(ok, "{out}{err}");
    for want in [
        "version: 1.",
        "CPUExecutionProvider",
        "hidden 384, 6 layers, pooling mean+l2, max length 256",
        "input  input_ids",
        // Read from the graph itself: one fused attention and one bias+GELU node per layer.
        "graph layout: fused-v1",
        "fused ops: Attention ×6, BiasGelu ×6",
        // What a CPU session runs: the fp32 graph rewritten onto frostline's kernels, every
        // layer's attention core, bias+GELU and both bias+residual+LayerNorm steps.
        "on CPU frostline runs the layers on its own kernels: ai.frostline.AttentionCore ×6, ai.frostline.BiasGelu ×6, ai.frostline.BiasResidualLayerNorm ×12",
        "all checks passed",
    ] {
        assert!(out.contains(want), "doctor output lacks {want:?}:\n{out}");
    }
    // The 24 weight products (QKV, output, FFN in and out of 6 layers) go to frostline's fp32
    // kernel where the CPU has AVX-512F, else stay on MLAS.
    let products = if frostline::nn::gemm::Cpu::get().avx512f {
        ", ai.frostline.MatMulF32 ×24\n"
    } else {
        "BiasResidualLayerNorm ×12\n"
    };
    assert!(out.contains(products), "{out}");
    let kernel = if frostline::nn::gemm::Cpu::get().avx512f {
        "fp32 products: on frostline's AVX-512F kernel (ai.frostline.MatMulF32 ×24)\n"
    } else {
        "fp32 products: on ONNX Runtime's MLAS\n"
    };
    assert!(out.contains(kernel), "{out}");
    assert!(!out.contains("int8 products"), "an fp32 graph: {out}");
    let doctor = "doctor --model /nonexistent --ort-lib /nonexistent/lib.so";
    let (ok, out, _) = run(&mut frostline(&[&doctor]));
    assert!(!ok);
    assert!(out.contains("2 problem(s)"), "{out}");
    assert!(out.contains("pip install onnxruntime"), "{out}");
}

#[test]
fn a_csv_separated_by_something_else_says_how_to_read_it() {
    refused_input(
        "semi.csv",
        b"text;label\nfine;positive\n",
        &[
            "semi.csv",
            "row 1",
            "\"text;label\"",
            "';'-separated",
            "--delimiter ';'",
        ],
    );
    refused_input(
        "tabs.csv",
        b"text\tlabel\nfine\tpositive\n",
        &["tabs.csv", "tab-separated", "name it .tsv"],
    );
}

#[test]
fn a_tsv_file_is_read_tab_separated() {
    let Some(model) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let tsv = write(
        dir.path(),
        "in.tsv",
        b"label\ttext\npositive\ta fine, sunny day\nnegative\t\"quoted\ttab\"\n",
    );
    let csv = write(
        dir.path(),
        "in.csv",
        b"label,text\npositive,\"a fine, sunny day\"\nnegative,\"quoted\ttab\"\n",
    );
    let out = |name: &str| dir.path().join(name);
    let (ok, _, err) = run(&mut embed_cmd(&model, &tsv, &out("t.npy"), &out("cache")));
    assert!(ok, "{err}");
    let (ok, _, err) = run(&mut embed_cmd(&model, &csv, &out("c.npy"), &out("cache")));
    assert!(ok, "{err}");
    // The same two texts either way, so the same vectors.
    let (t, c) = (read_npy(&out("t.npy")), read_npy(&out("c.npy")));
    assert_eq!((t.0, t.1), (2, 384));
    assert_eq!(t.2, c.2);
}

/// A `;`-separated export (tickets, a `;` inside a quoted field) read with `--delimiter ';'`
/// everywhere a table is read: `train` from flags (and the run file it prints), `eval
/// --keep-columns`, `predict`, `embed` (the same vectors as the comma version); a separator for
/// a file without fields, or one that is not a single character, is refused.
#[test]
fn a_delimiter_reads_semicolon_files_in_train_eval_predict_and_embed() {
    let Some(model) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cache = d.join("cache");
    let semicolons = |src: &str, rows: usize, name: &str| {
        let mut rdr = csv::Reader::from_path(repo().join(src)).unwrap();
        let mut w = csv::WriterBuilder::new()
            .delimiter(b';')
            .from_path(d.join(name))
            .unwrap();
        w.write_record(rdr.headers().unwrap()).unwrap();
        for (i, r) in rdr.records().take(rows).enumerate() {
            let mut r: Vec<String> = r.unwrap().iter().map(str::to_string).collect();
            if i == 0 {
                r[1] = format!("{}; urgent", r[1]);
            }
            w.write_record(&r).unwrap();
        }
    };
    semicolons("data/tickets/train.csv", 400, "t.csv");
    semicolons("data/tickets/test.csv", 120, "s.csv");
    let flags = "--train t.csv --test s.csv --text-column body --label-column priority";
    let train = args(&[&"train --no-progress --model", &model, &flags]);

    // Without the flag: the header is one column, and the error says what to pass.
    let (c, _, err) = code(&mut fl(d, &cache, &[&train, &"--out ck"]));
    assert_eq!(c, 3, "{err}");
    assert!(err.contains("--delimiter ';'"), "{err}");
    let (ok, out, err) = run(&mut fl(
        d,
        &cache,
        &[&train, &"--delimiter ; --out ck --json"],
    ));
    assert!(ok, "{err}");
    let acc = json_of(&out)["tasks"][0]["test"]["accuracy"]
        .as_f64()
        .unwrap();
    assert!(acc > 0.6, "{out}");
    let (ok, printed, err) = run(&mut fl(d, &cache, &[&train, &"--delimiter ; --print-run"]));
    assert!(ok, "{err}");
    assert!(printed.contains("delimiter = \";\""), "{printed}");
    // eval reads the test file with the recorded separator, no flag repeated.
    let (ok, _, err) = run(&mut fl(
        d,
        &cache,
        &[&"eval --no-progress --checkpoint ck --keep-columns id"],
    ));
    assert!(ok, "{err}");
    let (ok, _, err) = run(&mut fl(
        d,
        &cache,
        &[&"predict --no-progress --checkpoint ck --input s.csv --output p.csv --delimiter ;"],
    ));
    assert!(ok, "{err}");
    let predicted = std::fs::read_to_string(d.join("p.csv")).unwrap();
    assert_eq!(predicted.lines().count(), 121, "{predicted}");
    assert!(predicted.lines().nth(1).unwrap().contains("; urgent"));

    // embed: the same vectors as the comma-separated file.
    let comma = d.join("s-comma.csv");
    let mut rdr = csv::ReaderBuilder::new()
        .delimiter(b';')
        .from_path(d.join("s.csv"))
        .unwrap();
    let mut w = csv::Writer::from_path(&comma).unwrap();
    w.write_record(rdr.headers().unwrap()).unwrap();
    for r in rdr.records() {
        w.write_record(&r.unwrap()).unwrap();
    }
    drop(w);
    let embed = |input: &Path, out: &str, extra: &str| {
        run(&mut fl(
            d,
            &cache,
            &[
                &"embed --no-progress --text-column body --model",
                &model,
                &"--input",
                &input,
                &"--output",
                &out,
                &extra,
            ],
        ))
    };
    let (ok, _, err) = embed(&d.join("s.csv"), "a.npy", "--delimiter ;");
    assert!(ok, "{err}");
    let (ok, _, err) = embed(&comma, "b.npy", "");
    assert!(ok, "{err}");
    assert_eq!(read_npy(&d.join("a.npy")).2, read_npy(&d.join("b.npy")).2);

    // Refused: a separator for JSONL, two characters, a bad run-file value.
    std::fs::write(d.join("x.jsonl"), "{\"body\": \"hi\"}\n").unwrap();
    let (ok, _, err) = embed(&d.join("x.jsonl"), "c.npy", "--delimiter ;");
    assert!(!ok && err.contains("no fields to split"), "{err}");
    let (c, _, err) = code(&mut fl(d, &cache, &[&train, &"--delimiter ;; --out ck2"]));
    assert_eq!(c, 2, "{err}");
    assert!(err.contains("not a field separator"), "{err}");
    let (c, _, err) = code(&mut fl(
        d,
        &cache,
        &[&train, &"--set tasks.priority.delimiter=ab --out ck2"],
    ));
    assert_eq!(c, 2, "{err}");
    assert!(err.contains("tasks.priority.delimiter"), "{err}");
}
