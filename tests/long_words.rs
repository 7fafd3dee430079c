//! A word longer than a whole window (a long URL in WNUT-17's test set, at max length 64) once
//! stopped `embed`, `train` and `predict` with an internal error. It is a window of its own, cut
//! by the tokenizer: its feature comes from the sub-tokens that fit, and the stats say a row was
//! truncated.

mod common;

use std::process::Command;

#[test]
fn a_word_longer_than_the_max_length_keeps_its_first_sub_tokens() {
    let Some(model) = common::model_dir() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let url = "https://www.reddit.com/r/newzealand/comments/5p0edk/comment/dcnrf9t?st=IY5U4XSO&sh=a1b2c3d4e5f6";
    let conll = format!("see\tO\n{url}\tO\nnow\tO\n\nParis\tB-location\nis\tO\nfine\tO\n");
    let input = dir.path().join("in.conll");
    std::fs::write(&input, conll).unwrap();
    let output = dir.path().join("words.npy");
    let out = Command::new(env!("CARGO_BIN_EXE_frostline"))
        .args([
            "embed",
            "--no-progress",
            "--max-length",
            "16",
            "--token-layer",
            "4",
        ])
        .arg("--model")
        .arg(&model)
        .arg("--input")
        .arg(&input)
        .arg("--output")
        .arg(&output)
        .arg("--cache-dir")
        .arg(dir.path().join("cache"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let (rows, cols, values) = common::read_npy(&output);
    assert_eq!((rows, cols), (6, 384), "one vector per word");
    assert!(values.iter().all(|v| v.is_finite()));
    // The URL's window was cut to 16 tokens, and the stats say so.
    assert!(stderr.contains("truncated rows 1"), "{stderr}");
}
