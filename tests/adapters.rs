//! Parameter-efficient tuning above the frost line: BitFit and LoRA train only their own
//! parameters, checkpoints hold only those, predict and export run them (LoRA merged).

mod common;

use common::*;

#[test]
fn bitfit_and_lora_train_store_and_export_only_what_they_tune() {
    let Some(s) = Scratch::new() else { return };
    let test_csv = head_rows("data/sst2/test.csv", 60, &s.d.join("s-test.csv"));
    std::fs::write(
        &s.run_toml,
        format!(
            "model = \"{}\"\nseed = 5\n[train]\nepochs = 1\nbatch_size = 16\nlr = 1e-3\n[[tasks]]\nname = \"sentiment\"\ntrain = \"{}\"\ndev = \"{}\"\ntest = \"{}\"\n",
            s.m.display(),
            head_rows("data/sst2/train.csv", 200, &s.d.join("s-train.csv")).display(),
            head_rows("data/sst2/dev.csv", 60, &s.d.join("s-dev.csv")).display(),
            test_csv.display(),
        ),
    )
    .unwrap();
    let head_params = 385 * 2;
    let full_bytes = 4 * minilm_layer_params(2);

    // LoRA r = 8 on the six dense matrices of layers 4 and 5: 24 factors, the base weights untouched (the
    // run's own bit-for-bit check of every frozen parameter passed, or it would have failed).
    let lora = s.d.join("lora");
    let (ok, out, err) = train_cmd(
        &s.run_toml,
        &s.cache,
        &[&"--regime lora,frost-line=4 --out", &lora],
    );
    assert!(ok, "{out}{err}");
    assert!(out.contains("checkpoint tensors"), "{out}");
    let mf = manifest(&lora);
    assert_eq!(mf["regime"], "lora,frost-line=4");
    assert_eq!(mf["train"]["lora"]["rank"], 8);
    // The layers' learning rate the run used is recorded: LoRA's default.
    assert!((mf["train"]["encoder_lr"].as_f64().unwrap() - 1e-3).abs() < 1e-9);
    // Q, K, V, O: [8, 384] and [384, 8]; intermediate [8, 384] and [1536, 8]; output [8, 1536] and [384, 8].
    let factors = 2 * (4 * (8 * 384 + 384 * 8) + 2 * (8 * 384 + 1536 * 8));
    assert_eq!(
        mf["trainable_params"].as_u64().unwrap() as usize,
        factors + head_params
    );
    let tuned = tensor_bytes(&lora.join("encoder.safetensors"));
    assert_eq!(tuned.len(), 24, "{:?}", tuned.keys());
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
        (predicted_accuracy(&lora, &test_csv, &s.cache, "sentiment")
            - mf["tasks"][0]["test"]["accuracy"].as_f64().unwrap())
        .abs()
            < 1e-9,
        "predict (factors merged) agrees with the run's own test score"
    );

    // Exported with the factors merged: one ONNX model giving the checkpoint's vectors.
    let exported = s.d.join("exported");
    assert_export_reproduces(&lora, &exported, &s.m, &s.cache, &test_csv, None);
    let record = read_json(&exported.join("frostline.json"));
    assert_eq!(record["weights_override"]["regime"], "lora,frost-line=4");
    assert_eq!(record["weights_override"]["lora_merged"], true);

    // BitFit: the six dense biases and two LayerNorm betas of each layer, nothing else.
    let bitfit = s.d.join("bitfit");
    let (ok, out, err) = train_cmd(
        &s.run_toml,
        &s.cache,
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
        (predicted_accuracy(&bitfit, &test_csv, &s.cache, "sentiment")
            - mf["tasks"][0]["test"]["accuracy"].as_f64().unwrap())
        .abs()
            < 1e-9
    );

    // Composed with freeze-head: the head keeps its checkpoint weights bit for bit while fresh
    // factors train alone.
    let kept = s.d.join("kept-head");
    let (ok, out, err) = train_cmd(
        &s.run_toml,
        &s.cache,
        &[
            &"--regime freeze-head=sentiment,lora,frost-line=4 --from",
            &lora,
            &"--out",
            &kept,
        ],
    );
    assert!(ok, "{out}{err}");
    let mk = manifest(&kept);
    assert_eq!(mk["trainable_params"].as_u64().unwrap() as usize, factors);
    assert_eq!(mk["tasks"][0]["trained"], false);
    assert_eq!(
        tensor_bytes(&kept.join("heads.safetensors")),
        tensor_bytes(&lora.join("heads.safetensors"))
    );
    assert_eq!(tensor_bytes(&kept.join("encoder.safetensors")).len(), 24);

    // A weight slipped into a BitFit checkpoint is named, not loaded.
    let forged = s.d.join("forged");
    copy_dir(&bitfit, &forged);
    let lora_file = std::fs::read(lora.join("encoder.safetensors")).unwrap();
    std::fs::write(forged.join("encoder.safetensors"), lora_file).unwrap();
    edit_manifest(&forged.join("manifest.json"), |mf| {
        let sum = format!(
            "xxh3-64:{:016x}",
            xxhash_rust::xxh3::xxh3_64(&std::fs::read(forged.join("encoder.safetensors")).unwrap())
        );
        mf["files"]["encoder.safetensors"] = sum.into();
    });
    let (ok, _, err) = run(&mut frostline(&[
        &"predict --no-progress --max-length 32 --checkpoint",
        &forged,
        &"--input",
        &test_csv,
        &"--output",
        &s.d.join("forged.csv"),
        &"--cache-dir",
        &s.cache,
    ]));
    assert!(
        !ok && err.contains("is not one that regime bitfit,frost-line=4 tunes"),
        "{err}"
    );

    // Settings that cannot train are refused before any work, naming the field.
    let (ok, _, err) = train_cmd(
        &s.run_toml,
        &s.cache,
        &[&"--regime lora,frost-line=4 --set train.lora.rank=0"],
    );
    assert!(!ok && err.contains("train.lora.rank = 0"), "{err}");
    let (ok, _, err) = train_cmd(&s.run_toml, &s.cache, &[&"--regime lora"]);
    assert!(!ok && err.contains(",frost-line=N"), "{err}");
}

#[test]
fn tasks_own_their_adapters_on_one_frozen_backbone() {
    let Some(s) = Scratch::new() else { return };
    let (b_test, s_test) = (
        head_rows("data/banking77/test.csv", 60, &s.d.join("b-test.csv")),
        head_rows("data/sst2/test.csv", 60, &s.d.join("s-test.csv")),
    );
    std::fs::write(
        &s.run_toml,
        format!(
            "model = \"{}\"\nseed = 5\n[train]\nepochs = 1\nbatch_size = 16\nlr = 1e-3\nregime = \"lora,frost-line=4\"\n[[tasks]]\nname = \"intent\"\ntrain = \"{}\"\ntest = \"{}\"\n[[tasks]]\nname = \"sentiment\"\nadapter = \"own\"\ntrain = \"{}\"\ndev = \"{}\"\ntest = \"{}\"\n",
            s.m.display(),
            head_rows("data/banking77/train.csv", 200, &s.d.join("b-train.csv")).display(),
            b_test.display(),
            head_rows("data/sst2/train.csv", 200, &s.d.join("s-train.csv")).display(),
            head_rows("data/sst2/dev.csv", 60, &s.d.join("s-dev.csv")).display(),
            s_test.display(),
        ),
    )
    .unwrap();
    // intent tunes the shared factors, sentiment its own: two sets, both stored.
    let ck = s.d.join("ck");
    let (ok, out, err) = train_cmd(&s.run_toml, &s.cache, &[&"--out", &ck]);
    assert!(ok, "{out}{err}");
    let mf = manifest(&ck);
    assert_eq!(mf["tasks"][1]["config"]["adapter"], "own");
    let factors = 2 * (4 * (8 * 384 + 384 * 8) + 2 * (8 * 384 + 1536 * 8));
    let classes = |i: usize| mf["tasks"][i]["classes"].as_array().unwrap().len();
    assert_eq!(
        mf["trainable_params"].as_u64().unwrap() as usize,
        2 * factors + 385 * (classes(0) + classes(1))
    );
    let tuned = tensor_bytes(&ck.join("encoder.safetensors"));
    assert_eq!(tuned.len(), 48, "{:?}", tuned.keys());
    let own_b = &tuned["adapters.sentiment.encoder.layer.5.attention.self.query.lora_b"];
    let shared_b = &tuned["encoder.layer.5.attention.self.query.lora_b"];
    assert_ne!(own_b, shared_b, "each copy went its own way");
    // predict runs the frozen part once and each task's layers above it, and eval re-reads both
    // test splits the same way: both reproduce the run's own test scores.
    let (ok, out, err) = run(&mut frostline(&[
        &"eval --json --no-progress --max-length 32 --checkpoint",
        &ck,
        &"--cache-dir",
        &s.cache,
    ]));
    assert!(ok, "{err}");
    let eval = json_of(&out);
    for (i, task, csv) in [(0, "intent", &b_test), (1, "sentiment", &s_test)] {
        let recorded = mf["tasks"][i]["test"]["accuracy"].as_f64().unwrap();
        let predicted = predicted_accuracy(&ck, csv, &s.cache, task);
        assert_eq!(eval["tasks"][i]["task"], task);
        let evaluated = eval["tasks"][i]["metrics"]["accuracy"].as_f64().unwrap();
        for got in [predicted, evaluated] {
            assert!((got - recorded).abs() < 1e-9, "{task}: {got} vs {recorded}");
        }
    }
    // export writes one task's backbone, named; each matches that task's native vectors.
    let (ok, _, err) = run(&mut frostline(&[
        &"export --checkpoint",
        &ck,
        &"--out",
        &s.d.join("x"),
    ]));
    assert!(!ok && err.contains("--task TASK"), "{err}");
    let exported = s.d.join("sentiment-model");
    assert_export_reproduces(&ck, &exported, &s.m, &s.cache, &s_test, Some("sentiment"));
    let record = read_json(&exported.join("frostline.json"));
    assert_eq!(record["weights_override"]["task"], "sentiment");
    let intent_model = s.d.join("intent-model");
    assert_export_reproduces(&ck, &intent_model, &s.m, &s.cache, &b_test, Some("intent"));
    assert_ne!(
        std::fs::read(exported.join("model.safetensors")).unwrap(),
        std::fs::read(intent_model.join("model.safetensors")).unwrap(),
        "the two tasks' backbones differ"
    );
    // A task's own biases (BitFit) export under the model's names.
    let bitfit = s.d.join("bitfit");
    let (ok, out, err) = train_cmd(
        &s.run_toml,
        &s.cache,
        &[&"--regime bitfit,frost-line=4 --out", &bitfit],
    );
    assert!(ok, "{out}{err}");
    assert!(tensor_bytes(&bitfit.join("encoder.safetensors"))
        .contains_key("adapters.sentiment.encoder.layer.4.output.dense.bias"));
    let bitfit_model = s.d.join("bitfit-model");
    assert_export_reproduces(
        &bitfit,
        &bitfit_model,
        &s.m,
        &s.cache,
        &s_test,
        Some("sentiment"),
    );
    // A manifest claiming an own adapter without a frost line is refused, sealed or not.
    let forged = s.d.join("forged");
    copy_dir(&bitfit, &forged);
    edit_manifest(&forged.join("manifest.json"), |m| {
        m["regime"] = "frozen-backbone".into();
        m["frost_line"] = serde_json::Value::Null;
        m["files"]
            .as_object_mut()
            .unwrap()
            .remove("encoder.safetensors");
    });
    std::fs::remove_file(forged.join("encoder.safetensors")).unwrap();
    let (ok, _, err) = run(&mut frostline(&[
        &"eval --no-progress --checkpoint",
        &forged,
    ]));
    assert!(!ok && err.contains("owns an adapter"), "{err}");

    // An own adapter needs layers that train above a frost line.
    let (ok, _, err) = train_cmd(&s.run_toml, &s.cache, &[&"--regime frozen-backbone"]);
    assert!(
        !ok && err.contains("tasks.sentiment.adapter = \"own\"")
            && err.contains("has no frost line"),
        "{err}"
    );
}
