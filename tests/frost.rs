//! The frost line: ONNX below layer N + native layers N…L−1 reproduce the full model for every N,
//! and frost-line training, checkpoints and bad input behave.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use frostline::backbone::ModelFolder;
use frostline::embed::{EmbedSettings, Embedder};
use frostline::nn::bert::{pool_forward, NativeEncoder};
use frostline::nn::ParamStore;
use ndarray::Array2;

/// A private copy of the model folder (big files linked) so that cut graphs made by the tests
/// land in a temp folder.
fn model_copy(dir: &Path, model: &Path) -> PathBuf {
    let m = dir.join("model");
    std::fs::create_dir_all(m.join("1_Pooling")).unwrap();
    for f in [
        "model.onnx",
        "model.safetensors",
        "tokenizer.json",
        "config.json",
        "modules.json",
        "sentence_bert_config.json",
        "1_Pooling/config.json",
    ] {
        std::os::unix::fs::symlink(model.join(f), m.join(f)).unwrap();
    }
    m
}

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
        let mut settings = EmbedSettings::new(&m);
        settings.cache_root = dir.path().join("cache");
        let mut embedder = Embedder::open_tokens(settings, n).unwrap();
        let (states, _) = embedder.token_states(&texts).unwrap();
        let mut store = ParamStore::default();
        let encoder = NativeEncoder::load(&mut store, &folder, n).unwrap();
        assert_eq!(encoder.layers.len(), folder.num_layers - n);
        // All 66 texts in one padded batch, so the attention mask is exercised too.
        let seq = *states.lens.iter().max().unwrap();
        let batch = texts.len();
        let mut x = Array2::<f32>::zeros((batch * seq, folder.hidden_size));
        for b in 0..batch {
            let s = states.get(b);
            let len = states.lens[b];
            x.slice_mut(ndarray::s![b * seq..b * seq + len, ..])
                .assign(&ndarray::ArrayView2::from_shape((len, folder.hidden_size), s).unwrap());
        }
        let y = encoder.infer(&store, x, batch, seq, &states.lens);
        let (pooled, _) = pool_forward(folder.pooling, y.view(), batch, seq, &states.lens).unwrap();
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
    let err = Embedder::open_tokens(EmbedSettings::new(&m), 7)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("frost line 7 is outside 0..=6"), "{err}");
    let err = NativeEncoder::load(&mut ParamStore::default(), &folder, 9)
        .unwrap_err()
        .to_string();
    assert!(err.contains("outside 0..=6"), "{err}");

    // No safetensors weights.
    std::fs::remove_file(m.join("model.safetensors")).unwrap();
    let err = NativeEncoder::load(&mut ParamStore::default(), &folder, 4)
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
    let err = NativeEncoder::load(&mut ParamStore::default(), &folder, 4)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("encoder.layer.5.attention.self.query.weight not found"),
        "{err}"
    );
}
