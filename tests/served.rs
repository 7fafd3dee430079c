//! `export --with-heads`: one ONNX graph with pooling and every head, run by
//! scripts/predict_onnx.py with ONNX Runtime alone, reproduces `frostline predict` — labels, label
//! sets and entity spans exactly, probabilities and scores within 1e-5 — for a classification, a
//! multi-label and a token task: fp32 with a task's own LoRA adapter as its own branch, int8
//! below the frost line (`--quantize-frozen`), and a frozen backbone on an int8 folder. int8 is
//! compared on ONNX Runtime's kernels (`--kernels onnxruntime`): frostline's fused int8 kernels
//! agree with them to int8 rounding, not to 1e-5 (tests/quantize.rs measures how closely).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// Texts of every kind the tasks read: WNUT-17 test sentences (entities), GoEmotions and
/// Banking77 test rows.
fn input_texts(dir: &Path) -> PathBuf {
    let mut texts: Vec<String> = Vec::new();
    let conll = std::fs::read_to_string(repo().join("data/wnut17/test.conll")).unwrap();
    for sentence in conll.split("\n\n").take(120) {
        let words: Vec<&str> = sentence
            .lines()
            .filter_map(|l| l.split('\t').next())
            .filter(|w| !w.is_empty())
            .collect();
        if !words.is_empty() {
            texts.push(words.join(" "));
        }
    }
    for (file, n) in [("goemotions", 100), ("banking77", 60)] {
        let table =
            frostline::data::read_table(&repo().join(format!("data/{file}/test.csv"))).unwrap();
        texts.extend(table.required_strings("text").unwrap().into_iter().take(n));
    }
    let path = dir.join("input.csv");
    let mut w = csv::Writer::from_path(&path).unwrap();
    w.write_record(["text"]).unwrap();
    for t in &texts {
        w.write_record([t]).unwrap();
    }
    w.flush().unwrap();
    path
}

/// The first `n` sentences of a CoNLL file, written to `dest`.
fn head_sentences(src: &str, n: usize, dest: &Path) -> PathBuf {
    let text = std::fs::read_to_string(repo().join(src)).unwrap();
    let kept: Vec<&str> = text.split("\n\n").take(n).collect();
    std::fs::write(dest, kept.join("\n\n") + "\n").unwrap();
    dest.to_path_buf()
}

/// A run file of three tasks (intent, emotion as multi-label, entities as a token task that
/// owns its adapter where `own`) on `model`.
fn run_file(s: &Scratch, model: &Path, name: &str, own: bool) -> PathBuf {
    let r = repo();
    let path = s.d.join(name);
    std::fs::write(
        &path,
        format!(
            "model = \"{}\"\nseed = 7\n[train]\nepochs = 3\n[[tasks]]\nname = \"intent\"\ntrain = \"{}\"\n[[tasks]]\nname = \"emotion\"\nkind = \"multi-label\"\nlabel_column = \"labels\"\ntrain = \"{}\"\ndev = \"{}\"\n[[tasks]]\nname = \"entities\"\nkind = \"token-classification\"\nadapter = \"{}\"\ntrain = \"{}\"\ndev = \"{}\"\n",
            model.display(),
            head_rows("data/banking77/train.csv", 400, &s.d.join("b.csv")).display(),
            head_rows("data/goemotions/train.csv", 400, &s.d.join("g.csv")).display(),
            r.join("data/goemotions/dev.csv").display(),
            if own { "own" } else { "shared" },
            head_sentences("data/wnut17/train.conll", 600, &s.d.join("w.conll")).display(),
            r.join("data/wnut17/dev.conll").display(),
        ),
    )
    .unwrap();
    path
}

/// Exports `ck` with its heads, predicts `input` with frostline (on `kernels`, or on the
/// checkpoint's own with `None`) and with predict_onnx.py, and returns the script's comparison
/// report (asserting it passed), the served heads.json and what `predict` wrote to stderr.
fn served_matches_predict(
    ck: &Path,
    input: &Path,
    cache: &Path,
    kernels: Option<&str>,
) -> (serde_json::Value, serde_json::Value, String) {
    let served = ck.with_extension("served");
    let (ok, out, err) = run(&mut frostline(&[
        &"export --checkpoint",
        &ck,
        &"--with-heads --out",
        &served,
    ]));
    assert!(ok, "{out}{err}");
    let theirs = ck.with_extension("predict.csv");
    let kernels = kernels.map_or(String::new(), |k| format!("--kernels {k}"));
    let (ok, out, predict_err) = run(&mut frostline(&[
        &"predict --no-progress --all-probs",
        &kernels.as_str(),
        &"--checkpoint",
        &ck,
        &"--input",
        &input,
        &"--output",
        &theirs,
        &"--cache-dir",
        &cache,
    ]));
    assert!(ok, "{out}{predict_err}");
    let mine = ck.with_extension("onnx.csv");
    let out = Command::new(venv_python("FROSTLINE_VENV", "venv", "scripts/setup.sh"))
        .arg(repo().join("scripts/predict_onnx.py"))
        .args(["--model".as_ref(), served.as_os_str()])
        .args(["--input".as_ref(), input.as_os_str()])
        .args(["--output".as_ref(), mine.as_os_str()])
        .args(["--compare".as_ref(), theirs.as_os_str()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("{e}: {stdout}{}", String::from_utf8_lossy(&out.stderr)));
    assert!(out.status.success() && report["ok"] == true, "{report}");
    // Not vacuous: entities found, label sets chosen, several intents.
    let text = std::fs::read_to_string(&mine).unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header = reader.headers().unwrap().clone();
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let with_entities = rows
        .iter()
        .filter(|r| &r[col("entities_entities")] != "[]")
        .count();
    let with_sets = rows
        .iter()
        .filter(|r| !r[col("emotion_label")].is_empty())
        .count();
    let intents: std::collections::HashSet<&str> =
        rows.iter().map(|r| &r[col("intent_label")]).collect();
    assert!(
        with_entities >= 10 && with_sets >= 50 && intents.len() >= 5,
        "{with_entities} rows with entities, {with_sets} label sets, {} intents",
        intents.len()
    );
    (report, read_json(&served.join("heads.json")), predict_err)
}

#[test]
fn served_graph_reproduces_predict_fp32_and_int8() {
    let Some(s) = Scratch::new() else { return };
    let input = input_texts(&s.d);
    let run_toml = run_file(&s, &s.m, "run.toml", true);

    // fp32, LoRA above frost line 4, the token task on its own adapter: two branches.
    let lora = s.d.join("lora");
    let (ok, out, err) = run(&mut frostline(&[
        &"train --no-progress --regime lora,frost-line=4 --run",
        &run_toml,
        &"--cache-dir",
        &s.cache,
        &"--out",
        &lora,
    ]));
    assert!(ok, "{out}{err}");
    // fp32 on frostline's kernels agrees with ONNX Runtime's to float rounding.
    let (report, spec, _) = served_matches_predict(&lora, &input, &s.cache, Some("frostline"));
    assert_eq!(report["int8_products"], 0, "{report}");
    let branches: Vec<&str> = spec["branches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    assert_eq!(branches, ["shared", "own.entities"]);
    let tasks = spec["tasks"].as_array().unwrap();
    assert_eq!(tasks[1]["activation"], "sigmoid");
    assert_eq!(
        tasks[1]["decision"]["thresholds"].as_array().unwrap().len(),
        tasks[1]["classes"].as_array().unwrap().len()
    );
    assert_eq!(tasks[2]["input"], "words");
    assert!(tasks[2]["decision"]["rule"]
        .as_str()
        .unwrap()
        .starts_with("bio-viterbi"));

    // int8 below the frost line, as the run's frozen part ran: 4 layers × 4 int8 products.
    let int8 = s.d.join("lora-int8");
    let (ok, out, err) = run(&mut frostline(&[
        &"train --no-progress --regime lora,frost-line=4 --quantize-frozen --run",
        &run_toml,
        &"--cache-dir",
        &s.cache,
        &"--out",
        &int8,
    ]));
    assert!(ok, "{out}{err}");
    // int8 on frostline's fused kernels agrees with ONNX Runtime's only to int8 rounding (a
    // value that moves across a quantization step is carried by the next layers); on ONNX
    // Runtime's kernels, frostline gives the served graph's results.
    let (report, spec, warned) =
        served_matches_predict(&int8, &input, &s.cache, Some("onnxruntime"));
    assert_eq!(report["int8_products"], 16, "{report}");
    // Trained on frostline's kernels, predicted on ORT's: said.
    assert!(
        warned.contains("trained on --kernels frostline"),
        "{warned}"
    );
    assert!(spec["numerics"]
        .as_str()
        .unwrap()
        .starts_with("int8 per-token"));

    // A frozen backbone on an int8 folder: every layer int8 (6 × 4 products).
    let m8 = s.d.join("m8");
    let (ok, out, err) = run(&mut frostline(&[&"quantize --model", &s.m, &"--out", &m8]));
    assert!(ok, "{out}{err}");
    let run8 = run_file(&s, &m8, "run8.toml", false);
    // Trained on ORT's kernels: the checkpoint records them and predict runs on them with no
    // flag repeated (on frostline's the int8 probabilities would differ by up to ~0.009, past
    // the comparison's 1e-5), and says nothing about kernels.
    let frozen = s.d.join("frozen-int8");
    let (ok, out, err) = run(&mut frostline(&[
        &"train --no-progress --kernels onnxruntime --regime frozen-backbone --run",
        &run8,
        &"--cache-dir",
        &s.cache,
        &"--out",
        &frozen,
    ]));
    assert!(ok, "{out}{err}");
    let (report, _, warned) = served_matches_predict(&frozen, &input, &s.cache, None);
    assert_eq!(report["int8_products"], 24, "{report}");
    assert!(!warned.contains("--kernels"), "{warned}");
    let manifest = read_json(&frozen.join("manifest.json"));
    assert_eq!(manifest["backbone"]["kernels"], "onnxruntime", "{manifest}");

    // The served folder is no backbone: frostline says what it is instead of failing later.
    let (ok, _, err) = run(&mut frostline(&[
        &"embed --model",
        &frozen.with_extension("served"),
        &"--input",
        &input,
        &"--output",
        &s.d.join("e.npy"),
        &"--cache-dir",
        &s.cache,
    ]));
    assert!(!ok && err.contains("served model"), "{err}");
    // --task names one tuned backbone; a served graph holds every task.
    let (ok, _, err) = run(&mut frostline(&[
        &"export --checkpoint",
        &lora,
        &"--with-heads --task intent --out",
        &s.d.join("x"),
    ]));
    assert!(!ok && err.contains("--task"), "{err}");
}
