//! The frost line: ONNX below layer N + native layers N…L−1 reproduce the full model for every N,
//! and frost-line training, checkpoints and bad input behave.

mod common;

use common::*;
use frostline::backbone::ModelFolder;
use frostline::embedder::TokenStateEmbedder;
use frostline::nn::attention::Segments;
use frostline::nn::bert::{pool_forward, NativeEncoder};
use frostline::nn::ParamStore;
use ndarray::Array2;

fn reference() -> (Vec<String>, Vec<Vec<f32>>) {
    std::fs::read_to_string(fixture("reference.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["text"].as_str().unwrap().to_string(),
                v["embedding"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_f64().unwrap() as f32)
                    .collect(),
            )
        })
        .unzip()
}

#[test]
fn onnx_below_n_plus_native_above_n_reproduces_the_model_for_every_n() {
    let Some(model) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let m = model_copy(dir.path(), &model);
    let folder = ModelFolder::open(&m).unwrap();
    let (texts, refs) = reference();
    for n in 0..=folder.num_layers {
        let mut settings = settings_for(&m);
        settings.cache_root = dir.path().join("cache");
        let mut embedder = TokenStateEmbedder::open(settings, n, false).unwrap();
        let (states, _) = embedder.token_states(&texts).unwrap();
        let mut store = ParamStore::default();
        let encoder = NativeEncoder::load(&mut store, &folder.native_source().unwrap(), n).unwrap();
        assert_eq!(encoder.layers.len(), folder.num_layers - n);
        // All 66 texts in one packed batch, so sequences of every length share the matrices.
        let seg = Segments::from_lens(&states.lens);
        let batch = texts.len();
        let mut x = Array2::<f32>::zeros((seg.total(), folder.hidden_size));
        for b in 0..batch {
            let s = states.get(b);
            let rows = seg.range(b);
            let len = rows.len();
            x.slice_mut(ndarray::s![rows, ..])
                .assign(&ndarray::ArrayView2::from_shape((len, folder.hidden_size), s).unwrap());
        }
        let y = encoder.infer(&store, x, &seg);
        let (pooled, _) = pool_forward(folder.pooling, y.view(), &seg).unwrap();
        let mut worst = 1.0f64;
        for (b, r) in refs.iter().enumerate() {
            let c = cosine(pooled.row(b).as_slice().unwrap(), r);
            worst = worst.min(c);
            assert!(c >= 0.9999, "N = {n}, text {b}: cosine {c}");
        }
        eprintln!("frost line N = {n}: min cosine {worst:.8} over {batch} reference texts");
    }
}

#[test]
fn bad_frost_line_input_is_named() {
    let Some(model) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let m = model_copy(dir.path(), &model);
    let folder = ModelFolder::open(&m).unwrap();
    // N outside 0..=L.
    let err = TokenStateEmbedder::open(settings_for(&m), 7, false)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("layer 7 is outside 0..=6"), "{err}");
    let err = folder
        .native_source()
        .and_then(|s| NativeEncoder::load(&mut ParamStore::default(), &s, 9))
        .unwrap_err()
        .to_string();
    assert!(err.contains("outside 0..=6"), "{err}");

    // No safetensors weights.
    std::fs::remove_file(m.join("model.safetensors")).unwrap();
    let err = folder
        .native_source()
        .and_then(|s| NativeEncoder::load(&mut ParamStore::default(), &s, 4))
        .unwrap_err()
        .to_string();
    assert!(err.contains("model.safetensors missing"), "{err}");

    // Weights whose names do not match the graph.
    let renamed = frostline::nn::bert::read_safetensors(&model.join("model.safetensors"))
        .unwrap()
        .into_iter()
        .map(|(n, v)| (n.replace("encoder.layer.5.", "encoder.block.5."), v))
        .collect::<Vec<_>>();
    let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = renamed
        .iter()
        .map(|(n, v)| {
            (
                n.clone(),
                v.iter().flat_map(|f| f.to_le_bytes()).collect(),
                v.shape().to_vec(),
            )
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = bytes
        .iter()
        .map(|(n, b, s)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                    .unwrap(),
            )
        })
        .collect();
    std::fs::write(
        m.join("model.safetensors"),
        safetensors::serialize(views, None).unwrap(),
    )
    .unwrap();
    let err = folder
        .native_source()
        .and_then(|s| NativeEncoder::load(&mut ParamStore::default(), &s, 4))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("encoder.layer.5.attention.self.query.weight not found"),
        "{err}"
    );
    // The exporter cannot cut below layer 6 from those weights either: its error names the model
    // folder and the step (not the venv's Python as the folder) and quotes the exporter.
    let err = TokenStateEmbedder::open(settings_for(&m), 6, false)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.starts_with(&format!(
            "model folder {}: exporting the graph below frost line 6 failed (run by ",
            m.display()
        )),
        "{err}"
    );
    assert!(
        err.contains("encoder.layer.5.attention.self.query.weight"),
        "{err}"
    );
}

#[test]
fn frost_line_trains_checkpoints_predicts_and_exports() {
    let Some(s) = Scratch::new() else { return };
    std::fs::write(
        &s.run_toml,
        format!(
            "model = \"{}\"\nseed = 5\n[train]\nepochs = 1\nbatch_size = 16\nlr = 1e-3\nencoder_lr = 1e-4\n[[tasks]]\nname = \"intent\"\ntrain = \"{}\"\ntest = \"{}\"\n[[tasks]]\nname = \"sentiment\"\ntrain = \"{}\"\ndev = \"{}\"\ntest = \"{}\"\n",
            s.m.display(),
            head_rows("data/banking77/train.csv", 200, &s.d.join("b-train.csv")).display(),
            head_rows("data/banking77/test.csv", 60, &s.d.join("b-test.csv")).display(),
            head_rows("data/sst2/train.csv", 200, &s.d.join("s-train.csv")).display(),
            head_rows("data/sst2/dev.csv", 60, &s.d.join("s-dev.csv")).display(),
            head_rows("data/sst2/test.csv", 60, &s.d.join("s-test.csv")).display(),
        ),
    )
    .unwrap();

    // frost-line=4: layers 4 and 5 train with both heads; the checkpoint keeps them.
    let ck = s.d.join("ck");
    let (ok, out, err) = train_cmd(
        &s.run_toml,
        &s.cache,
        &[&"--regime frost-line=4 --out", &ck],
    );
    assert!(ok, "{out}{err}");
    // How long the native layers will take is said before the run starts.
    assert!(
        err.contains("train: the layers above the frost line train natively: about")
            && err.contains("through 2 layers"),
        "{err}"
    );
    let manifest = manifest(&ck);
    assert_eq!(manifest["frost_line"], 4);
    let layer_params = minilm_layer_params(2);
    let classes = |i: usize| manifest["tasks"][i]["classes"].as_array().unwrap().len();
    let head_params = 385 * classes(0) + 385 * classes(1);
    assert_eq!(
        manifest["trainable_params"].as_u64().unwrap() as usize,
        layer_params + head_params
    );
    let tuned = tensor_bytes(&ck.join("encoder.safetensors"));
    assert_eq!(tuned.len(), 2 * 16);
    let base = frostline::nn::bert::read_safetensors(&s.m.join("model.safetensors")).unwrap();
    let base_q: Vec<u8> = base
        .iter()
        .find(|(n, _)| n == "encoder.layer.5.attention.self.query.weight")
        .unwrap()
        .1
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    assert_ne!(
        tuned["encoder.layer.5.attention.self.query.weight"], base_q,
        "training moved layer 5"
    );
    assert!(
        !tuned.contains_key("encoder.layer.3.attention.self.query.weight"),
        "layers below the line are not stored"
    );

    // predict runs ONNX-below-4 + the tuned layers, and agrees with the checkpoint's own test score.
    let accuracy = predicted_accuracy(&ck, &s.d.join("s-test.csv"), &s.cache, "sentiment");
    assert!((accuracy - manifest["tasks"][1]["test"]["accuracy"].as_f64().unwrap()).abs() < 1e-9);

    // The tuned backbone exported as one ONNX model reproduces the native pipeline's vectors.
    assert_export_reproduces(
        &ck,
        &s.d.join("exported"),
        &s.m,
        &s.cache,
        &s.d.join("s-test.csv"),
        None,
    );

    // freeze-head=a with trainable layers: the intent head is kept bit for bit, the layers and
    // the sentiment head train, and the frozen head is still scored on the new features.
    let base_ck = s.d.join("base");
    assert!(train_cmd(&s.run_toml, &s.cache, &[&"--out", &base_ck]).0);
    let frozen = s.d.join("frozen");
    let (ok, out, err) = train_cmd(
        &s.run_toml,
        &s.cache,
        &[
            &"--regime freeze-head=a,frost-line=4 --from",
            &base_ck,
            &"--out",
            &frozen,
        ],
    );
    assert!(ok, "{out}{err}");
    let (hb, hf) = (
        tensor_bytes(&base_ck.join("heads.safetensors")),
        tensor_bytes(&frozen.join("heads.safetensors")),
    );
    assert_eq!(hb["heads.intent.0.weight"], hf["heads.intent.0.weight"]);
    assert_ne!(
        hb["heads.sentiment.0.weight"],
        hf["heads.sentiment.0.weight"]
    );
    let mf = common::manifest(&frozen);
    assert_eq!(
        (
            mf["tasks"][0]["trained"].as_bool(),
            mf["tasks"][1]["trained"].as_bool()
        ),
        (Some(false), Some(true))
    );
    assert!(mf["tasks"][0]["test"]["accuracy"].is_number());
    assert_eq!(
        mf["trainable_params"].as_u64().unwrap() as usize,
        layer_params + 384 * 2 + 2
    );

    // N outside 0..=L from the command line.
    let (ok, _, err) = train_cmd(&s.run_toml, &s.cache, &[&"--regime frost-line=7"]);
    assert!(
        !ok && err.contains("frost line 7 is outside 0..=6"),
        "{err}"
    );
}

#[test]
fn token_cache_chunk_from_another_frost_line_is_refused() {
    let Some(model) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let m = model_copy(dir.path(), &model);
    let texts: Vec<String> = ["a first sentence", "and a second one"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let open = |n: usize| {
        let mut s = settings_for(&m);
        s.cache_root = dir.path().join("cache");
        TokenStateEmbedder::open(s, n, false).unwrap()
    };
    let (states5, _) = open(5).token_states(&texts).unwrap();
    let (states4, _) = open(4).token_states(&texts).unwrap();
    // Copy N = 5's chunk into N = 4's entry, as a careless hand might.
    let chunk5 = std::fs::read_dir(states5.cache.dir.join("chunks"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::copy(
        &chunk5,
        states4
            .cache
            .dir
            .join("chunks")
            .join("00000000000000000000000-copied.flc"),
    )
    .unwrap();
    drop((states4, states5));
    let (_, stats) = open(4).token_states(&texts).unwrap();
    assert!(
        stats
            .notes
            .iter()
            .any(|n| n.contains("belongs to another cache entry")),
        "{:?}",
        stats.notes
    );
}
