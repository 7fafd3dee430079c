//! Parameter-efficient tuning above the frost line: BitFit and LoRA train only their own
//! parameters, checkpoints hold only those, predict and export run them (LoRA merged).

mod common;

use common::*;

#[test]
fn bitfit_and_lora_train_store_and_export_only_what_they_tune() {
    let Some(model) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let m = model_copy(d, &model);
    let cache = d.join("cache");
    let run_toml = d.join("run.toml");
    let test_csv = head_rows("data/sst2/test.csv", 60, &d.join("s-test.csv"));
    std::fs::write(
        &run_toml,
        format!(
            "model = \"{}\"\nseed = 5\n[train]\nepochs = 1\nbatch_size = 16\nlr = 1e-3\n[[tasks]]\nname = \"sentiment\"\ntrain = \"{}\"\ndev = \"{}\"\ntest = \"{}\"\n",
            m.display(),
            head_rows("data/sst2/train.csv", 200, &d.join("s-train.csv")).display(),
            head_rows("data/sst2/dev.csv", 60, &d.join("s-dev.csv")).display(),
            test_csv.display(),
        ),
    )
    .unwrap();
    let head_params = 385 * 2;
    let full_bytes = 4 * minilm_layer_params(2);

    // LoRA r = 8 on Q, K, V, O of layers 4 and 5: 16 factors, the base weights untouched (the
    // run's own bit-for-bit check of every frozen parameter passed, or it would have failed).
    let lora = d.join("lora");
    let (ok, out, err) = train_cmd(
        &run_toml,
        &cache,
        &[&"--regime lora,frost-line=4 --out", &lora],
    );
    assert!(ok, "{out}{err}");
    assert!(out.contains("checkpoint tensors"), "{out}");
    let mf = manifest(&lora);
    assert_eq!(mf["regime"], "lora,frost-line=4");
    assert_eq!(mf["train"]["lora"]["rank"], 8);
    // The layers' learning rate the run used is recorded: LoRA's default.
    assert!((mf["train"]["encoder_lr"].as_f64().unwrap() - 5e-4).abs() < 1e-9);
    let factors = 2 * 4 * (8 * 384 + 384 * 8);
    assert_eq!(
        mf["trainable_params"].as_u64().unwrap() as usize,
        factors + head_params
    );
    let tuned = tensor_bytes(&lora.join("encoder.safetensors"));
    assert_eq!(tuned.len(), 16, "{:?}", tuned.keys());
    assert!(tuned
        .keys()
        .all(|k| k.ends_with(".lora_a") || k.ends_with(".lora_b")));
    assert!(tuned.contains_key("encoder.layer.4.attention.output.dense.lora_b"));
    assert!(
        tuned["encoder.layer.5.attention.self.query.lora_b"]
            .iter()
            .any(|&b| b != 0),
        "B left its zero start"
    );
    let lora_bytes = std::fs::metadata(lora.join("encoder.safetensors"))
        .unwrap()
        .len() as usize;
    assert!(
        lora_bytes * 20 <= full_bytes,
        "LoRA file {lora_bytes} B vs {full_bytes} B of full layers"
    );
    assert!(
        (predicted_accuracy(&lora, &test_csv, &cache, "sentiment")
            - mf["tasks"][0]["test"]["accuracy"].as_f64().unwrap())
        .abs()
            < 1e-9,
        "predict (factors merged) agrees with the run's own test score"
    );

    // Exported with the factors merged: one ONNX model giving the checkpoint's vectors.
    let exported = d.join("exported");
    assert_export_reproduces(&lora, &exported, &m, &cache, &test_csv);
    let record = read_json(&exported.join("frostline.json"));
    assert_eq!(record["weights_override"]["regime"], "lora,frost-line=4");
    assert_eq!(record["weights_override"]["lora_merged"], true);

    // BitFit: the six dense biases and two LayerNorm betas of each layer, nothing else.
    let bitfit = d.join("bitfit");
    let (ok, out, err) = train_cmd(
        &run_toml,
        &cache,
        &[&"--regime bitfit,frost-line=4 --out", &bitfit],
    );
    assert!(ok, "{out}{err}");
    let mf = manifest(&bitfit);
    let biases = 2 * (4 * 384 + 1536 + 384 + 2 * 384);
    assert_eq!(
        mf["trainable_params"].as_u64().unwrap() as usize,
        biases + head_params
    );
    let tuned = tensor_bytes(&bitfit.join("encoder.safetensors"));
    assert_eq!(tuned.len(), 16);
    assert!(
        tuned.keys().all(|k| k.ends_with(".bias")),
        "{:?}",
        tuned.keys()
    );
    assert!(
        (predicted_accuracy(&bitfit, &test_csv, &cache, "sentiment")
            - mf["tasks"][0]["test"]["accuracy"].as_f64().unwrap())
        .abs()
            < 1e-9
    );

    // A weight slipped into a BitFit checkpoint is named, not loaded.
    let forged = d.join("forged");
    copy_dir(&bitfit, &forged);
    let lora_file = std::fs::read(lora.join("encoder.safetensors")).unwrap();
    std::fs::write(forged.join("encoder.safetensors"), lora_file).unwrap();
    edit_manifest(&forged.join("manifest.json"), |m| {
        let sum = format!(
            "xxh3-64:{:016x}",
            xxhash_rust::xxh3::xxh3_64(&std::fs::read(forged.join("encoder.safetensors")).unwrap())
        );
        m["files"]["encoder.safetensors"] = sum.into();
    });
    let (ok, _, err) = run(&mut frostline(&[
        &"predict --no-progress --max-length 32 --checkpoint",
        &forged,
        &"--input",
        &test_csv,
        &"--output",
        &d.join("forged.csv"),
        &"--cache-dir",
        &cache,
    ]));
    assert!(
        !ok && err.contains("is not one that regime bitfit,frost-line=4 tunes"),
        "{err}"
    );

    // Settings that cannot train are refused before any work, naming the field.
    let (ok, _, err) = train_cmd(
        &run_toml,
        &cache,
        &[&"--regime lora,frost-line=4 --set train.lora.rank=0"],
    );
    assert!(!ok && err.contains("train.lora.rank = 0"), "{err}");
    let (ok, _, err) = train_cmd(&run_toml, &cache, &[&"--regime lora"]);
    assert!(!ok && err.contains(",frost-line=N"), "{err}");
}
