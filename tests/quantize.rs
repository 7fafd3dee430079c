//! int8: `frostline quantize`, folders that describe how they were made, vectors that do not
//! depend on their batch, int8 and fp32 never mixed (cache and checkpoints), and the frozen part
//! of a frost line run in int8 while the layers above train in fp32.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use frostline::backbone::Kernels;
use frostline::embedder::SentenceEmbedder;

/// `frostline quantize --model MODEL --out OUT EXTRA…` with a private cache.
fn quantize(cwd: &Path, model: &Path, out: &Path, extra: &[&str]) -> (i32, String, String) {
    let quantize = args(&[&"quantize --json --model", &model, &"--out", &out]);
    code(fl(cwd, &cwd.join("cache"), &[&quantize]).args(extra))
}

fn quantized(dir: &Path, model: &Path, method: &str) -> PathBuf {
    let out = dir.join(format!("int8-{method}"));
    let (rc, _, err) = quantize(dir, model, &out, &["--method", method]);
    assert_eq!(rc, 0, "{err}");
    out
}

/// Texts of very different lengths from the shipped data, so batches mix short and long rows.
fn mixed_texts(n: usize) -> Vec<String> {
    let mut texts: Vec<String> = Vec::new();
    for src in ["data/sst2/test.csv", "data/banking77/test.csv"] {
        let table = frostline::data::read_table(&repo().join(src)).unwrap();
        texts.extend(table.texts("text").unwrap().into_iter().take(n / 2));
    }
    texts.push("ok".into());
    texts
}

/// Vectors of `texts` from `model` embedded together, and the largest difference between those
/// and each of `alone` embedded by itself (fresh caches, so every vector is computed).
fn batch_dependence(
    model: &Path,
    texts: &[String],
    alone: &[usize],
    cache: &Path,
) -> (ndarray::Array2<f32>, f32) {
    let mut settings = settings_for(model);
    settings.cache_root = cache.join("batched");
    let (all, _) = SentenceEmbedder::open(settings.clone())
        .unwrap()
        .embed(texts)
        .unwrap();
    let worst = alone
        .iter()
        .map(|&i| {
            settings.cache_root = cache.join(format!("alone-{i}"));
            let (v, _) = SentenceEmbedder::open(settings.clone())
                .unwrap()
                .embed(&texts[i..=i])
                .unwrap();
            max_abs_diff(all.row(i).as_slice().unwrap(), v.row(0).as_slice().unwrap())
        })
        .fold(0.0, f32::max);
    (all, worst)
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn quantize_writes_a_self_describing_int8_folder_that_doctor_reads() {
    let Some(model) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("mq");
    let (rc, stdout, err) = quantize(dir.path(), &model, &out, &[]);
    assert_eq!(rc, 0, "{err}");
    let summary = json_of(&stdout);
    assert_eq!(summary["numeric"], "int8 per-token, per-channel weights");
    assert!(
        summary["model_bytes"].as_u64().unwrap() < summary["source_model_bytes"].as_u64().unwrap()
    );

    let record = read_json(&out.join("quantization.json"));
    assert_eq!(record["recipe"]["method"], "per-token");
    assert_eq!(record["source"]["dir"], model.to_str().unwrap());
    // QKV as one product, attention output, FFN in and out, in each of 6 layers: each fused
    // Attention node is split into its QKV product and a MultiHeadAttention node first.
    assert_eq!(record["quantizer"]["quantized_matmuls"], 24);
    assert_eq!(record["quantizer"]["attention_nodes_split"], 6);
    // The folder is complete (tokenizer, pooling) and holds no copy of the fp32 weights.
    for f in [
        "tokenizer.json",
        "config.json",
        "modules.json",
        "1_Pooling/config.json",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    assert!(!out.join("model.cut-5.onnx").exists());
    assert!(!out.join("model.safetensors").exists());

    let (rc, stdout, err) = code(&mut fl(
        dir.path(),
        &dir.path().join("cache"),
        &[&"doctor --json --model", &out],
    ));
    assert_eq!(rc, 0, "{err}");
    let doctor = json_of(&stdout);
    assert_eq!(doctor["numeric"], "int8 per-token, per-channel weights");
    let report = doctor["report"].as_str().unwrap();
    assert!(report.contains("quantization.json: made from"), "{report}");
    // The int8 graph keeps the fused layout: 4 int8 products per layer, attention (the core, its
    // QKV product now int8) and bias+GELU fused.
    let graph = &doctor["graph"];
    assert_eq!(graph["int8_products"], 24, "{graph}");
    assert_eq!(
        graph["ops"]["com.microsoft.MultiHeadAttention"], 6,
        "{graph}"
    );
    assert_eq!(graph["ops"]["com.microsoft.BiasGelu"], 6, "{graph}");
    // Its element-wise work runs on frostline's own operators: one QuantizeRows per
    // activation, the attention output and FFN output products' scale, bias and residual in one
    // ScaleBiasResidual, the QKV product's scale and split in one ScaleSplit.
    assert_eq!(graph["ops"]["ai.frostline.QuantizeRows"], 24, "{graph}");
    assert_eq!(
        graph["ops"]["ai.frostline.ScaleBiasResidual"], 12,
        "{graph}"
    );
    assert_eq!(graph["ops"]["ai.frostline.ScaleSplit"], 6, "{graph}");
    assert!(graph["ops"].get("QuantizeLinear").is_none(), "{graph}");
    assert_eq!(record["quantizer"]["own_ops"], "ai.frostline");
    assert!(
        report.contains("int8 products: 24, on "),
        "doctor names the int8 kernel: {report}"
    );
    // What a CPU session runs: each layer's attention (its QKV scale and split folded in), the
    // GELU with its row scale and the next product's quantization, and both norms with their
    // product's scale, bias and residual and the next quantization; the attention output and
    // the embeddings' norm keep their own QuantizeRows; the int8 products run on frostline's
    // kernel where the CPU has AMX-INT8 or AVX512-VNNI, else on ORT's.
    let own_int8 = frostline::nn::gemm::int8::Int8Kernel::get().is_ok();
    let common = "ai.frostline.AttentionCore ×6, ai.frostline.BiasGeluQuantize ×6, \
ai.frostline.BiasResidualLayerNorm ×12";
    let want = if own_int8 {
        format!("{common}, ai.frostline.MatMulInt8 ×24, ai.frostline.QuantizeRows ×7")
    } else {
        format!("{common}, ai.frostline.QuantizeRows ×7, MatMulIntegerToFloat ×24")
    };
    assert_eq!(graph["cpu_fused"], want, "{graph}");
    assert_eq!(
        report.contains("frostline's kernel, ai.frostline.MatMulInt8"),
        own_int8,
        "{report}"
    );

    // Quantizing an int8 folder again is refused (its source is named).
    let (rc, _, err) = quantize(dir.path(), &out, &dir.path().join("twice"), &[]);
    assert_eq!(rc, 2, "{err}");
    assert!(err.contains("already quantized"), "{err}");
    assert!(!dir.path().join("twice").exists());
}

#[test]
fn per_token_vectors_do_not_depend_on_the_batch_and_stay_close_to_fp32() {
    let Some(model) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let int8 = quantized(dir.path(), &model, "per-token");
    let texts = mixed_texts(80);
    let alone = [0, 7, 40, 41, texts.len() - 1];
    let (all, worst) = batch_dependence(&int8, &texts, &alone, &dir.path().join("c8"));
    assert!(worst <= 1e-6, "batched vs alone differ by {worst}");
    let mut settings = settings_for(&model);
    settings.cache_root = dir.path().join("c32");
    let (fp32, _) = SentenceEmbedder::open(settings)
        .unwrap()
        .embed(&texts)
        .unwrap();
    let cos: Vec<f64> = (0..texts.len())
        .map(|i| {
            cosine(
                fp32.row(i).as_slice().unwrap(),
                all.row(i).as_slice().unwrap(),
            )
        })
        .collect();
    let min = cos.iter().cloned().fold(1.0, f64::min);
    let mean = cos.iter().sum::<f64>() / cos.len() as f64;
    assert!(
        min > 0.95 && mean > 0.99,
        "int8 vs fp32 cosine min {min:.4}, mean {mean:.4}"
    );
}

#[test]
fn the_own_operator_graph_gives_the_portable_bits_and_fused_kernels_agree_to_int8_rounding() {
    // The int8 folder's graph is written with frostline's own operators; a graph handed out
    // (export --with-heads) with ONNX Runtime's alone. Run as written (`--kernels onnxruntime`)
    // both give the same bits, so a served graph reproduces predict there. frostline's fused
    // CPU kernels (the default) round differently, which int8 carries across quantization
    // steps: they agree to int8 rounding, far closer than int8 is to fp32.
    let Some(model) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let own = quantized(dir.path(), &model, "per-token");
    let portable = dir.path().join("portable");
    let (rc, _, err) = quantize(dir.path(), &model, &portable, &[]);
    assert_eq!(rc, 0, "{err}");
    let python = venv_python("FROSTLINE_VENV", "venv", "scripts/setup.sh");
    let (ok, _, err) = run(std::process::Command::new(python).args(args(&[
        &repo().join("scripts/quantize_onnx.py"),
        &"--method per-token --input",
        &model.join("model.onnx"),
        &"--output",
        &portable.join("model.onnx"),
    ])));
    assert!(ok, "{err}");
    let ops = |f: &Path| frostline::backbone::graph_ops::op_counts(&f.join("model.onnx")).unwrap();
    let (own_ops, portable_ops) = (ops(&own), ops(&portable));
    assert_eq!(own_ops.get("ai.frostline.QuantizeRows"), Some(&24));
    assert_eq!(portable_ops.get("QuantizeLinear"), Some(&24));
    assert!(!portable_ops.keys().any(|op| op.starts_with("ai.frostline")));
    let texts = mixed_texts(120);
    let vectors = |folder: &Path, kernels: Kernels, cache: &str| {
        let mut settings = settings_for(folder);
        settings.session.kernels = kernels;
        settings.cache_root = dir.path().join(cache);
        let mut e = SentenceEmbedder::open(settings).unwrap();
        let key = e.key().clone();
        (e.embed(&texts).unwrap().0, key)
    };
    let (a, as_written) = vectors(&own, Kernels::Onnxruntime, "c-own");
    let (b, _) = vectors(&portable, Kernels::Onnxruntime, "c-portable");
    assert_eq!(a.dim(), (texts.len(), 384));
    let differ = a
        .iter()
        .zip(b.iter())
        .filter(|(x, y)| x.to_bits() != y.to_bits())
        .count();
    assert_eq!(differ, 0, "{differ} of {} values differ", a.len());

    // The default: the same folder on frostline's fused kernels, cached apart (the same cache
    // root, another entry).
    let (fused, fused_key) = vectors(&own, Kernels::Frostline, "c-own");
    assert_ne!(fused_key, as_written);
    assert!(
        fused_key
            .numeric
            .ends_with("on frostline's fused CPU kernels"),
        "{fused_key:?}"
    );
    let fp32 = {
        let mut settings = settings_for(&model);
        settings.cache_root = dir.path().join("c-fp32");
        SentenceEmbedder::open(settings)
            .unwrap()
            .embed(&texts)
            .unwrap()
            .0
    };
    let cosines = |x: &ndarray::Array2<f32>, y: &ndarray::Array2<f32>| -> (f64, f64) {
        let c: Vec<f64> = (0..texts.len())
            .map(|i| cosine(x.row(i).as_slice().unwrap(), y.row(i).as_slice().unwrap()))
            .collect();
        (
            c.iter().cloned().fold(1.0, f64::min),
            c.iter().sum::<f64>() / c.len() as f64,
        )
    };
    let (min, mean) = cosines(&fused, &a);
    eprintln!("fused vs as written: min cosine {min:.5}, mean {mean:.6}");
    assert!(
        min > 0.99 && mean > 0.999,
        "fused vs as written: min {min}, mean {mean}"
    );
    assert!(fused != a, "the fused kernels ran (their rounding differs)");
    // Neither kernel set is further from fp32 than int8 itself is.
    let ((fmin, fmean), (wmin, wmean)) = (cosines(&fused, &fp32), cosines(&a, &fp32));
    eprintln!("vs fp32: fused {fmin:.4} / {fmean:.5}, as written {wmin:.4} / {wmean:.5}");
    assert!(
        fmean > 0.99 && (fmean - wmean).abs() < 1e-3,
        "fused {fmean}, as written {wmean}"
    );
}

#[test]
fn static_recipe_gives_q_k_and_v_their_own_calibrated_ranges() {
    // Static int8 requantizes each product's output with one calibrated range; Q, K and V as one
    // product shared one range, which cost the worst text's cosine to fp32 0.67 -> 0.60
    // (bench-results/int8.md), so the static recipe keeps them as three products.
    let Some(model) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let texts = dir.path().join("cal.txt");
    std::fs::write(&texts, mixed_texts(40).join("\n")).unwrap();
    let out = dir.path().join("static");
    let calibration = [
        "--method",
        "static",
        "--calibration",
        texts.to_str().unwrap(),
    ];
    let (rc, _, err) = quantize(dir.path(), &model, &out, &calibration);
    assert_eq!(rc, 0, "{err}");
    let record = read_json(&out.join("quantization.json"));
    assert_eq!(record["quantizer"]["quantized_matmuls"], 36, "{record}");
    let ops = frostline::backbone::graph_ops::op_counts(&out.join("model.onnx")).unwrap();
    assert_eq!(ops.get("QLinearMatMul"), Some(&36), "{ops:?}");
    assert!(!ops.contains_key("Split"), "{ops:?}");
}

#[test]
fn dynamic_vectors_change_with_their_batch_mates() {
    // Why per-token is the default: ONNX Runtime's dynamic quantization takes one range per
    // batch, so a text's vector depends on what else is in its batch.
    let Some(model) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let int8 = quantized(dir.path(), &model, "dynamic");
    let texts = mixed_texts(80);
    let alone: Vec<usize> = (0..texts.len()).step_by(9).collect();
    let (_, worst) = batch_dependence(&int8, &texts, &alone, &dir.path().join("c"));
    assert!(
        worst > 1e-3,
        "dynamic int8 batched vs alone: max |Δ| {worst}"
    );
}

#[test]
fn int8_and_fp32_vectors_never_share_a_cache_entry() {
    let Some(model) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let int8 = quantized(dir.path(), &model, "per-token");
    let fp32_key = SentenceEmbedder::open(settings_for(&model))
        .unwrap()
        .key()
        .clone();
    let int8_key = SentenceEmbedder::open(settings_for(&int8))
        .unwrap()
        .key()
        .clone();
    assert_eq!(fp32_key.numeric, "fp32");
    // On CPU (these settings) the int8 graph runs on frostline's fused kernels, which the key
    // says (their vectors are not ONNX Runtime's bit for bit).
    assert_eq!(
        int8_key.numeric,
        "int8 per-token, per-channel weights, on frostline's fused CPU kernels"
    );
    assert_ne!(fp32_key.id(), int8_key.id());
}

#[test]
fn heads_trained_on_fp32_vectors_are_refused_on_an_int8_folder_unless_allowed() {
    let Some(model) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("p");
    project(&root, &model);
    let cache = dir.path().join("cache");
    let train = "train --no-progress --run runs/run.toml";
    let (ok, _, err) = run(&mut fl(&root, &cache, &[&train, &"--out ck"]));
    assert!(ok, "{err}");
    let int8 = quantized(dir.path(), &model, "per-token");
    let predict = |extra: &[&str]| {
        let predict = args(&[
            &"predict --no-progress --checkpoint ck --input data/b-test.csv --output pred.csv",
            &"--model",
            &int8,
        ]);
        code(fl(&root, &cache, &[&predict]).args(extra))
    };
    let (rc, _, err) = predict(&[]);
    assert_eq!(rc, 2, "{err}");
    assert!(
        err.contains("trained on fp32 vectors") && err.contains("--allow-quantized"),
        "{err}"
    );
    assert!(!root.join("pred.csv").exists());
    let (rc, _, err) = predict(&["--allow-quantized"]);
    assert_eq!(rc, 0, "{err}");
    assert!(
        err.contains("warning:") && err.contains("int8 per-token"),
        "{err}"
    );
    assert!(root.join("pred.csv").is_file());

    // Heads trained on the int8 folder run on it with no flag, and say what they ran on.
    let (ok, _, err) = run(&mut fl(
        &root,
        &cache,
        &[&train, &"--model", &int8, &"--out ck8"],
    ));
    assert!(ok, "{err}");
    let manifest = manifest(&root.join("ck8"));
    let numeric = manifest["backbone"]["numeric"].as_str().unwrap();
    assert!(numeric.starts_with("int8 per-token"), "{numeric}");
    let (rc, _, err) = code(&mut fl(
        &root,
        &cache,
        &[&"eval --no-progress --checkpoint ck8"],
    ));
    assert_eq!(rc, 0, "{err}");
    assert!(!err.contains("warning:"), "{err}");
    // …and the reverse mix is refused too.
    let (rc, _, err) = code(&mut fl(
        &root,
        &cache,
        &[&"eval --no-progress --checkpoint ck8 --model", &model],
    ));
    assert_eq!(rc, 2, "{err}");
}

#[test]
fn the_frozen_part_of_a_frost_line_runs_in_int8_and_the_checkpoint_remembers() {
    let Some(model) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("m-copy");
    linked_copy(&model, &copy, false);
    let root = dir.path().join("p");
    project(&root, &copy);
    let cache = dir.path().join("cache");
    let train = |extra: &[&str]| {
        let train = "train --json --no-progress --run runs/run.toml --max-length 32";
        code(fl(&root, &cache, &[&train]).args(extra))
    };
    // Only a frost line has a frozen part to quantize.
    let (rc, _, err) = train(&["--quantize-frozen"]);
    assert_eq!(rc, 2, "{err}");
    assert!(err.contains("frost-line=N"), "{err}");

    let (rc, out, err) = train(&[
        "--regime",
        "frost-line=5",
        "--quantize-frozen",
        "--out",
        "ck",
    ]);
    assert_eq!(rc, 0, "{err}");
    let trained = json_of(&out);
    assert!(copy
        .join("model.cut-5.int8-per-token.own-ops.onnx")
        .is_file());
    assert_eq!(manifest(&root.join("ck"))["train"]["quantize_frozen"], true);

    // eval re-reads the test split through the int8 frozen part with no flag repeated, and
    // reproduces the training run's test scores.
    let (rc, out, err) = code(&mut fl(
        &root,
        &cache,
        &[&"eval --json --no-progress --checkpoint ck"],
    ));
    assert_eq!(rc, 0, "{err}");
    let eval = json_of(&out);
    let find = |v: &serde_json::Value, key: &str, task: &str| {
        v["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t[key] == task)
            .cloned()
            .unwrap()
    };
    for task in ["intent", "sentiment"] {
        let trained_acc = find(&trained, "name", task)["test"]["accuracy"].as_f64();
        let eval_acc = find(&eval, "task", task)["metrics"]["accuracy"].as_f64();
        assert!(trained_acc.is_some(), "{trained}");
        assert_eq!(trained_acc, eval_acc, "{task}: {trained}\n{eval}");
    }
}

#[test]
fn bad_quantize_requests_are_refused_and_leave_nothing_behind() {
    let Some(model) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("mq");
    // Static needs texts; per-token does not take them.
    let (rc, _, err) = quantize(dir.path(), &model, &out, &["--method", "static"]);
    assert_eq!(rc, 2, "{err}");
    assert!(err.contains("--calibration"), "{err}");
    let texts = dir.path().join("cal.csv");
    std::fs::write(&texts, "sentence\nhello there\n").unwrap();
    let calibration = ["--calibration", texts.to_str().unwrap()];
    let (rc, _, err) = quantize(dir.path(), &model, &out, &calibration);
    assert_eq!(rc, 2, "{err}");
    // A calibration file without the text column: named, exit 3, nothing written.
    let static_calibration = [&["--method", "static"][..], &calibration].concat();
    let (rc, _, err) = quantize(dir.path(), &model, &out, &static_calibration);
    assert_eq!(rc, 3, "{err}");
    assert!(err.contains("cal.csv") && err.contains("\"text\""), "{err}");
    // The quantizer failing midway (here: no Python with onnx where the venv should be) leaves
    // no half-written folder.
    let (rc, _, err) = code(
        fl(
            dir.path(),
            &dir.path().join("cache"),
            &[&"quantize --model", &model, &"--out", &out],
        )
        .env("FROSTLINE_VENV", dir.path().join("no-venv"))
        .env("PATH", "/nonexistent"),
    );
    assert_eq!(rc, 4, "{err}");
    assert!(
        err.contains("quantizing") && err.contains("setup.sh"),
        "{err}"
    );
    assert!(!out.exists(), "a failed quantize left {}", out.display());
    assert_only(dir.path(), &["cal.csv", "cache"]);
    // A folder frostline did not write is never replaced.
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("notes.txt"), "mine").unwrap();
    let (rc, _, err) = quantize(dir.path(), &model, &out, &[]);
    assert_ne!(rc, 0, "{err}");
    assert_eq!(
        std::fs::read_to_string(out.join("notes.txt")).unwrap(),
        "mine"
    );
}

/// An int8 folder keeps no copy of the fp32 weights (bytes: the int8 graph and the tokenizer);
/// the layers above a frost line load its source folder's, checked by content hash, and a
/// changed or missing source is refused by name.
#[test]
fn an_int8_folder_borrows_its_source_s_weights_checked_by_hash() {
    use frostline::backbone::ModelFolder;
    use frostline::nn::{bert::NativeEncoder, ParamStore};
    let Some(model) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("src");
    linked_copy(&model, &source, false);
    let int8 = quantized(dir.path(), &source, "per-token");
    let bytes: u64 = std::fs::read_dir(&int8)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    let graph = std::fs::metadata(int8.join("model.onnx")).unwrap().len();
    assert!(
        bytes < graph + 2_000_000,
        "{bytes} bytes beside a {graph}-byte graph"
    );

    let folder = ModelFolder::open(&int8).unwrap();
    assert_eq!(
        folder.native_weights().unwrap(),
        source.join("model.safetensors")
    );
    NativeEncoder::load(
        &mut ParamStore::default(),
        &folder.native_source().unwrap(),
        5,
    )
    .unwrap();

    // The source's weights replaced (the hard link dropped, the original untouched).
    std::fs::remove_file(source.join("model.safetensors")).unwrap();
    std::fs::write(source.join("model.safetensors"), b"other weights").unwrap();
    let err = folder
        .native_source()
        .and_then(|source| NativeEncoder::load(&mut ParamStore::default(), &source, 5))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("keeps no fp32 weights") && err.contains("has changed since"),
        "{err}"
    );
    std::fs::remove_dir_all(&source).unwrap();
    let err = folder.native_weights().unwrap_err().to_string();
    assert!(
        err.contains("cannot be read") && err.contains("--quantize-frozen"),
        "{err}"
    );
}
