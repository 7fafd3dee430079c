//! `train.precision`: resolved once (auto says what it took), recorded in the checkpoint as the
//! precision that ran, bit-identical on a rerun, and bf16 training follows fp32's loss curve.

mod common;

use std::path::Path;

use common::*;
use frostline::nn::gemm::Kernel;

struct Trained {
    stdout: String,
    manifest: serde_json::Value,
    encoder: Vec<u8>,
    heads: Vec<u8>,
    losses: Vec<f64>,
}

fn train(d: &Path, run: &Path, name: &str, precision: &str) -> Result<Trained, (i32, String)> {
    let ck = d.join(name);
    let (code, out, err) = code(&mut frostline(&[
        &"train --no-progress --max-length 32 --run",
        &run,
        &"--cache-dir",
        &d.join("cache"),
        &"--set",
        &format!("train.precision={precision}"),
        &"--out",
        &ck,
    ]));
    if code != 0 {
        return Err((code, err));
    }
    let log = std::fs::read_to_string(ck.join("training_log.csv")).unwrap();
    let losses = log
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(3).unwrap().parse().unwrap())
        .collect();
    Ok(Trained {
        stdout: out,
        manifest: manifest(&ck),
        encoder: std::fs::read(ck.join("encoder.safetensors")).unwrap(),
        heads: std::fs::read(ck.join("heads.safetensors")).unwrap(),
        losses,
    })
}

#[test]
fn precision_is_decided_once_recorded_and_reproducible() {
    let Some(model) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let m = model_copy(d, &model);
    let run = d.join("run.toml");
    std::fs::write(
        &run,
        format!(
            "model = \"{}\"\nseed = 5\n[train]\nregime = \"frost-line=4\"\nepochs = 3\nbatch_size = 16\nlr = 1e-3\nencoder_lr = 1e-4\npatience = 0\n[[tasks]]\nname = \"intent\"\ntrain = \"{}\"\ntest = \"{}\"\n",
            m.display(),
            head_rows("data/banking77/train.csv", 240, &d.join("b-train.csv")).display(),
            head_rows("data/banking77/test.csv", 60, &d.join("b-test.csv")).display(),
        ),
    )
    .unwrap();

    let fp32 = train(d, &run, "fp32", "fp32").unwrap();
    assert_eq!(fp32.manifest["train"]["precision"], "fp32");
    let again = train(d, &run, "fp32-again", "fp32").unwrap();
    assert!(
        fp32.encoder == again.encoder && fp32.heads == again.heads,
        "fp32 rerun not bit-identical"
    );

    let auto = train(d, &run, "auto", "auto").unwrap();
    assert!(auto.stdout.contains("precision auto:"), "{}", auto.stdout);
    let took = auto.manifest["train"]["precision"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        took,
        if Kernel::bf16().is_some() {
            "bf16"
        } else {
            "fp32"
        }
    );

    match Kernel::bf16() {
        None => {
            let (code, err) = train(d, &run, "bf16", "bf16").err().expect("bf16 refused");
            assert_eq!(code, 2, "{err}");
            assert!(err.contains("avx512_bf16"), "{err}");
            assert!(!d.join("bf16").exists());
        }
        Some(kernel) => {
            let bf16 = train(d, &run, "bf16", "bf16").unwrap();
            assert_eq!(bf16.manifest["train"]["precision"], "bf16");
            // The fastest bf16 kernel this CPU has runs, and train says which.
            assert!(bf16.stdout.contains(&kernel.describe()), "{}", bf16.stdout);
            assert_ne!(bf16.encoder, fp32.encoder, "bf16 products changed nothing");
            let rerun = train(d, &run, "bf16-again", "bf16").unwrap();
            assert!(
                bf16.encoder == rerun.encoder && bf16.heads == rerun.heads,
                "bf16 rerun not bit-identical"
            );
            assert_eq!(
                auto.encoder, bf16.encoder,
                "auto took bf16 but trained otherwise"
            );
            // The loss curve follows fp32's: each epoch's mean loss within 2 %.
            assert_eq!(bf16.losses.len(), fp32.losses.len());
            for (e, (b, f)) in bf16.losses.iter().zip(&fp32.losses).enumerate() {
                assert!(
                    ((b - f) / f).abs() < 0.02,
                    "epoch {}: bf16 loss {b} vs fp32 {f}",
                    e + 1
                );
            }
            assert!(
                fp32.losses.last() < fp32.losses.first(),
                "{:?}",
                fp32.losses
            );
        }
    }
}
