//! Few-shot training: the contrastive regime (pairs tune the layers above a frost line, then the
//! heads train on the tuned vectors) and `frostline fewshot` (k rows per label per seed, every
//! regime on the same rows, scored on the full test split).

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::*;
use frostline::embedder::SentenceEmbedder;

/// `n` rows of each of `labels` from the shipped Banking77 subset, as a CSV at `dest`.
fn intents(labels: &[&str], n: usize, skip: usize, dest: &Path) -> (Vec<String>, Vec<String>) {
    let mut reader = csv::Reader::from_path(repo().join("data/banking77/train.csv")).unwrap();
    let mut taken: BTreeMap<String, usize> = BTreeMap::new();
    let (mut texts, mut kept) = (Vec::new(), Vec::new());
    for r in reader.records() {
        let r = r.unwrap();
        let (text, label) = (r[0].to_string(), r[1].to_string());
        if !labels.contains(&label.as_str()) {
            continue;
        }
        let seen = taken.entry(label.clone()).or_default();
        *seen += 1;
        if *seen > skip && *seen <= skip + n {
            texts.push(text);
            kept.push(label);
        }
    }
    let mut w = csv::Writer::from_path(dest).unwrap();
    w.write_record(["text", "label"]).unwrap();
    for (t, l) in texts.iter().zip(&kept) {
        w.write_record([t, l]).unwrap();
    }
    w.flush().unwrap();
    (texts, kept)
}

/// Mean cosine between the rows of `x` of the same label and of different labels.
fn within_and_across(x: &ndarray::Array2<f32>, labels: &[String]) -> (f64, f64) {
    let (mut within, mut across) = ((0.0, 0), (0.0, 0));
    for i in 0..labels.len() {
        for j in i + 1..labels.len() {
            let c = cosine(x.row(i).as_slice().unwrap(), x.row(j).as_slice().unwrap());
            let acc = if labels[i] == labels[j] {
                &mut within
            } else {
                &mut across
            };
            acc.0 += c;
            acc.1 += 1;
        }
    }
    (within.0 / within.1 as f64, across.0 / across.1 as f64)
}

#[test]
fn contrastive_pairs_pull_same_label_texts_together_and_the_tuned_body_exports() {
    let Some(model) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let m = model_copy(d, &model);
    let cache = d.join("cache");
    let labels = [
        "card_arrival",
        "exchange_rate",
        "pin_blocked",
        "top_up_failed",
    ];
    let (texts, truth) = intents(&labels, 8, 0, &d.join("train.csv"));
    intents(&labels, 6, 8, &d.join("test.csv"));
    let ck = d.join("ck");
    let (ok, out, err) = run(&mut fl(
        d,
        &cache,
        &[
            &"train --no-progress --train train.csv --test test.csv --set tasks.label.dev_fraction=0 --model",
            &m,
            &"--regime contrastive,frost-line=4 --set train.contrastive.iterations=6 --set train.contrastive.lr=1e-4 --out",
            &ck,
        ],
    ));
    assert!(ok, "{out}{err}");
    // 32 texts × 6 iterations: one similar and one dissimilar pair per text per iteration.
    assert!(
        out.contains("contrastive stage: 192 similar + 192 dissimilar pairs, 24 steps"),
        "{out}"
    );
    let manifest = manifest(&ck);
    assert_eq!(manifest["regime"], "contrastive,frost-line=4");
    assert_eq!(manifest["frost_line"], 4);
    assert_eq!(manifest["train"]["contrastive"]["iterations"], 6);
    assert_eq!(manifest["train"]["contrastive"]["batch_size"], 16);
    let layer_params = minilm_layer_params(2);
    assert_eq!(
        manifest["trainable_params"].as_u64().unwrap() as usize,
        layer_params + 385 * labels.len()
    );

    // The tuned body, exported as a model folder, against the base model on the train texts.
    let exported = d.join("exported");
    export_checkpoint(&ck, &exported);
    let embed = |model: &Path| {
        let mut settings = settings_for(model);
        settings.cache_root = cache.clone();
        SentenceEmbedder::open(settings)
            .unwrap()
            .embed(&texts)
            .unwrap()
            .0
    };
    let (within_before, across_before) = within_and_across(&embed(&m), &truth);
    let (within_after, across_after) = within_and_across(&embed(&exported), &truth);
    eprintln!(
        "mean cosine within labels {within_before:.4} → {within_after:.4}, across {across_before:.4} → {across_after:.4}"
    );
    assert!(within_after > within_before, "within labels must rise");
    assert!(across_after < across_before, "across labels must fall");
}

#[test]
fn fewshot_draws_k_rows_per_label_and_runs_every_regime_on_them() {
    let Some(model) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let run_toml = project(d, &model);
    let cache = d.join("cache");
    let report = d.join("fs");
    let (ok, out, err) = run(&mut fl(
        d,
        &cache,
        &[
            &"fewshot --no-progress --json --max-length 32 --run",
            &run_toml,
            &"--k 3 --seeds 2 --regime frozen-backbone --regime contrastive,frost-line=5 --set train.contrastive.iterations=2 --out",
            &report,
        ],
    ));
    assert!(ok, "{out}{err}");
    let json = json_of(&out);
    // 2 tasks × 2 regimes × 2 seeds.
    assert_eq!(json["rows"].as_array().unwrap().len(), 8);
    let rows = read_parquet(&report.join("fewshot.parquet"));
    assert_eq!(rows.height(), 8);
    for f in [
        "fewshot.csv",
        "fewshot.md",
        "samples.csv",
        "run.toml",
        "report.html",
    ] {
        assert!(report.join(f).is_file(), "{f}");
    }
    // run.toml says what made the report: the command (k, seeds, regimes), the model, k rows per
    // label in every task, and it loads as a run file.
    let remake = std::fs::read_to_string(report.join("run.toml")).unwrap();
    assert!(
        remake.starts_with("# made by: frostline fewshot --run run.toml --k 3 --seeds 2 --regime 'frozen-backbone' --regime 'contrastive,frost-line=5'"),
        "{remake}"
    );
    let parsed: toml::Value = toml::from_str(&remake).unwrap();
    assert_eq!(
        Path::new(parsed["model"].as_str().unwrap())
            .canonicalize()
            .unwrap(),
        model.canonicalize().unwrap()
    );
    for t in parsed["tasks"].as_array().unwrap() {
        assert_eq!(t["per_label"].as_integer(), Some(3), "{remake}");
    }
    // The head's defaults are written in, as the checkpoint records them.
    let lr = parsed["train"]["lr"].as_float().unwrap();
    assert!((lr - 2e-2).abs() < 1e-6, "{remake}");
    // Every label of a seed's sample has 3 rows, or all of its rows where the file has fewer.
    let mut available: BTreeMap<(String, String), usize> = BTreeMap::new();
    for (task, file) in [("intent", "b-train.csv"), ("sentiment", "s-train.csv")] {
        let mut r = csv::Reader::from_path(d.join("data").join(file)).unwrap();
        for rec in r.records() {
            *available
                .entry((task.into(), rec.unwrap()[1].to_string()))
                .or_default() += 1;
        }
    }
    let mut reader = csv::Reader::from_path(report.join("samples.csv")).unwrap();
    let mut per: BTreeMap<(String, String, String), usize> = BTreeMap::new();
    let mut texts: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in reader.records() {
        let r = r.unwrap();
        *per.entry((r[0].into(), r[1].into(), r[3].into()))
            .or_default() += 1;
        texts.entry(r[1].into()).or_default().push(r[2].into());
    }
    for ((task, seed, label), n) in &per {
        let want = available[&(task.clone(), label.clone())].min(3);
        assert_eq!(*n, want, "{task} seed {seed} label {label}");
    }
    assert!(
        per.values().filter(|&&n| n < 3).count() > 0,
        "the subset has rare labels"
    );
    assert_eq!(
        per.keys()
            .filter(|(t, s, _)| t == "sentiment" && s == "5")
            .count(),
        2
    );
    assert_ne!(texts["5"], texts["6"], "each seed draws its own rows");
    // Every (task, regime, seed) trained on the same number of rows: the seed's sample.
    let md = std::fs::read_to_string(report.join("fewshot.md")).unwrap();
    assert!(md.contains("| sentiment | frozen-backbone | 6 |"), "{md}");
    assert!(
        md.contains("| sentiment | contrastive,frost-line=5 | 6 |"),
        "{md}"
    );
    for r in json["rows"].as_array().unwrap() {
        let pairs = r["pairs"].as_u64().unwrap();
        if r["regime"] == "contrastive,frost-line=5" {
            // Both tasks' pairs tune the one shared body: 2 × 2 iterations × all train rows.
            assert!(pairs > 0);
        } else {
            assert_eq!(pairs, 0);
        }
    }
}

#[test]
fn contrastive_and_fewshot_refuse_what_cannot_work() {
    let Some(model) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cache = d.join("cache");
    let ner = [
        &"train --no-progress --kind token-classification --train" as &dyn AsArgs,
        &repo().join("data/wnut17/train.conll"),
        &"--model",
        &model,
        &"--regime contrastive,frost-line=5",
    ];
    let (code, _, err) = code(&mut fl(d, &cache, &ner));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("is a token task: regime contrastive pairs texts by their sentence labels"),
        "{err}"
    );

    let (code_, _, err) = common::code(&mut fl(
        d,
        &cache,
        &[
            &"train --no-progress --train",
            &repo().join("data/sst2/train.csv"),
            &"--model",
            &model,
            &"--regime contrastive",
        ],
    ));
    assert_ne!(code_, 0);
    assert!(err.contains("needs ,frost-line=N"), "{err}");

    // fewshot scores on the full test split: a task without one is refused before any run.
    let (code_, _, err) = common::code(&mut fl(
        d,
        &cache,
        &[
            &"fewshot --no-progress --train",
            &repo().join("data/sst2/train.csv"),
            &"--model",
            &model,
        ],
    ));
    assert_eq!(code_, 2, "{err}");
    assert!(err.contains("has no test split"), "{err}");
    assert!(!d.join("fewshot-report").exists());

    // A label carried by one row only and nothing else to pair: no similar pair exists.
    std::fs::write(d.join("one.csv"), "text,label\nhello there,a\ngood bye,b\n").unwrap();
    let (code_, _, err) = common::code(&mut fl(
        d,
        &cache,
        &[
            &"train --no-progress --train one.csv --set tasks.label.dev_fraction=0 --model",
            &model,
            &"--regime contrastive,frost-line=5",
        ],
    ));
    assert_ne!(code_, 0);
    assert!(err.contains("no similar pair to draw"), "{err}");
}

#[test]
fn a_multi_label_task_pairs_by_overlap_and_predicts_from_the_tuned_body() {
    let Some(model) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cache = d.join("cache");
    head_rows("data/goemotions/train.csv", 120, &d.join("train.csv"));
    head_rows("data/goemotions/dev.csv", 40, &d.join("dev.csv"));
    let ck = d.join("ck");
    let (ok, out, err) = run(&mut fl(
        d,
        &cache,
        &[
            &"train --no-progress --json --kind multi-label --label-column labels --train train.csv --dev dev.csv --test dev.csv --model",
            &model,
            &"--set tasks.labels.label_separator=| --regime contrastive,frost-line=5 --set train.contrastive.iterations=2 --out",
            &ck,
        ],
    ));
    assert!(ok, "{out}{err}");
    let json = json_of(&out);
    let pairs = &json["contrastive"]["pairs"];
    // 120 texts × 2 iterations: every text with a partner sharing a label has one similar pair.
    let similar = pairs["similar"].as_u64().unwrap();
    assert!(similar > 150 && similar <= 240, "{pairs}");
    assert!(pairs["dissimilar"].as_u64().unwrap() > 150, "{pairs}");
    // Thresholds were tuned on dev from the tuned body's vectors, and predict runs it.
    assert!(manifest(&ck)["tasks"][0]["thresholds"].is_array());
    let (ok, _, err) = run(&mut fl(
        d,
        &cache,
        &[
            &"predict --no-progress --checkpoint",
            &ck,
            &"--input dev.csv --output pred.csv",
        ],
    ));
    assert!(ok, "{err}");
    assert!(std::fs::read_to_string(d.join("pred.csv"))
        .unwrap()
        .starts_with("text,labels,labels_label,labels_set_prob"));
}
