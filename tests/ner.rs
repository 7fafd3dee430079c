//! Token classification (NER) end to end on the shipped WNUT-17 subset beside Banking77 intents:
//! joint training, `eval` reproducing training's entity scores with span reports, `predict`
//! returning entity spans with character offsets, every regime (frozen backbone, frost line,
//! freeze-head for each head, fully frozen from a checkpoint), and bad CoNLL input.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use polars::prelude::*;

fn cache() -> PathBuf {
    shared_cache("ner")
}

/// Intents + entities on the shipped subsets; `entities` overrides the entity task's files.
fn run_file(dir: &Path, train_extra: &str, entities: Option<(&Path, &Path)>) -> PathBuf {
    let r = repo();
    let (train, test) = match entities {
        Some((a, b)) => (a.to_path_buf(), b.to_path_buf()),
        None => (
            r.join("data/wnut17/train.conll"),
            r.join("data/wnut17/test.conll"),
        ),
    };
    let text = format!(
        "model = \"{m}\"\nseed = 5\n[train]\nepochs = 4\n{train_extra}\n[[tasks]]\nname = \"intent\"\ntrain = \"{r}/data/banking77/train.csv\"\ntest = \"{r}/data/banking77/test.csv\"\n[[tasks]]\nname = \"entities\"\nkind = \"token-classification\"\ntrain = \"{train}\"\ndev = \"{r}/data/wnut17/dev.conll\"\ntest = \"{test}\"\n",
        m = r.join("models/all-MiniLM-L6-v2").display(),
        r = r.display(),
        train = train.display(),
        test = test.display(),
    );
    let p = dir.join(format!("run{}.toml", train_extra.len()));
    std::fs::write(&p, text).unwrap();
    p
}

fn train(run_file: &Path, out: &Path, parts: &[&dyn AsArgs]) -> (bool, serde_json::Value, String) {
    let (ok, stdout, stderr) = run(&mut frostline(&[
        &"train --json --no-progress --run",
        &run_file,
        &"--out",
        &out,
        &"--cache-dir",
        &cache(),
        &parts,
    ]));
    let json = if ok {
        serde_json::from_str(&stdout).unwrap_or(serde_json::Value::Null)
    } else {
        serde_json::Value::Null
    };
    (ok, json, stderr)
}

fn predict(ck: &Path, input: &Path, out: &Path, args: &[&str]) {
    let (ok, o, e) = run(predict_cmd(ck, input, out, &cache()).args(args));
    assert!(ok, "{o}{e}");
}

/// The entity task's part of `train --json`.
fn entities_summary(json: &serde_json::Value) -> &serde_json::Value {
    json["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "entities")
        .unwrap()
}

fn task<'a>(m: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    m["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["config"]["name"] == name)
        .unwrap()
}

fn eval(ck: &Path, out: &Path) -> DataFrame {
    let (ok, o, e) = run(&mut frostline(&[
        &"eval --no-progress --checkpoint",
        &ck,
        &"--out",
        &out,
        &"--cache-dir",
        &cache(),
    ]));
    assert!(ok, "{o}{e}");
    read_parquet(&out.join("overall.parquet"))
}

fn f64_of(df: &DataFrame, col: &str, task: &str) -> Option<f64> {
    let tasks = df.column("task").unwrap().str().unwrap().clone();
    let i = (0..df.height())
        .find(|&i| tasks.get(i) == Some(task))
        .unwrap();
    df.column(col).unwrap().f64().unwrap().get(i)
}

#[test]
fn joint_training_eval_predict_and_every_regime() {
    let Some(_) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ck = d.join("ck");
    let (ok, json, err) = train(&run_file(d, "", None), &ck, &[]);
    assert!(ok, "{err}");
    let m = manifest(&ck);
    let ent = &task(&m, "entities")["test"];
    let f1 = ent["entity_f1"].as_f64().unwrap();
    // A frozen layer-3 linear head on 1,000 sentences: far above chance (which finds no
    // entity of the right extent and type), below the full-data figure.
    assert!(f1 > 0.2 && f1 < 0.8, "entity F1 {f1}");
    assert!(ent["accuracy"].as_f64().unwrap() > 0.85, "token accuracy");
    assert!(task(&m, "intent")["test"]["accuracy"].as_f64().unwrap() > 0.6);
    assert_eq!(
        task(&m, "entities")["classes"].as_array().unwrap().len(),
        13,
        "the tag set is read from train"
    );
    assert!(json["tasks"].is_array(), "{json}");

    // eval reproduces training's scores and writes span reports.
    let rep = d.join("report");
    let overall = eval(&ck, &rep);
    assert!((f64_of(&overall, "entity_f1", "entities").unwrap() - f1).abs() < 1e-9);
    assert_eq!(f64_of(&overall, "entity_f1", "intent"), None);
    let per_class = std::fs::read_to_string(rep.join("per_class.csv")).unwrap();
    for ty in [
        "person",
        "location",
        "corporation",
        "product",
        "group",
        "creative-work",
    ] {
        assert!(
            per_class.contains(&format!("entities,{ty},")),
            "{ty} row in per_class"
        );
    }
    let confusion = std::fs::read_to_string(rep.join("confusion.csv")).unwrap();
    assert!(confusion.contains("entities,person,(missed),"));
    assert!(confusion.contains("entities,(none),"));
    // The heat map shows the dominant span errors: missed (a column) and spurious (a row).
    let svg = std::fs::read_to_string(rep.join("plots/confusion_entities.svg")).unwrap();
    assert!(svg.contains("(missed)") && svg.contains("(none)"), "{svg}");
    let errors = read_parquet(&rep.join("errors.parquet"));
    let texts = errors.column("text").unwrap().str().unwrap().clone();
    let tasks = errors.column("task").unwrap().str().unwrap().clone();
    assert!((0..errors.height())
        .filter(|&i| tasks.get(i) == Some("entities"))
        .all(|i| texts.get(i).unwrap().contains("[[")));
    // A missed span has no probability (nothing was predicted there); the others have one.
    let predicted = errors.column("predicted").unwrap().str().unwrap().clone();
    let probability = errors.column("probability").unwrap().f32().unwrap().clone();
    let missed: Vec<usize> = (0..errors.height())
        .filter(|&i| predicted.get(i) == Some("(missed)"))
        .collect();
    assert!(!missed.is_empty());
    assert!(missed.iter().all(|&i| probability.get(i).is_none()));
    assert!((0..errors.height())
        .filter(|i| !missed.contains(i))
        .all(|i| probability.get(i).is_some()));
    // The Markdown summary cuts a long sentence around its span, never before it.
    let md = std::fs::read_to_string(rep.join("report.md")).unwrap();
    let ner = md.split("## Task `entities`").nth(1).unwrap();
    let shown: Vec<&str> = ner
        .lines()
        .filter(|l| l.starts_with("| ") && l.contains("[["))
        .collect();
    assert!(!shown.is_empty(), "{ner}");
    assert!(shown.iter().all(|l| l.contains("]]")), "{ner}");

    // predict: entity spans with character offsets into the raw text.
    let input = d.join("new.csv");
    std::fs::write(
        &input,
        "text\n\"Justin Bieber and Taylor Swift posted from Los Angeles, on Instagram!\"\nçà et là: Émile Zola wrote in Paris.\nno entities here at all\n",
    )
    .unwrap();
    let out = d.join("pred.csv");
    predict(&ck, &input, &out, &[]);
    let mut rdr = csv::Reader::from_path(&out).unwrap();
    let headers = rdr.headers().unwrap().clone();
    assert_eq!(
        headers.iter().collect::<Vec<_>>(),
        ["text", "intent_label", "intent_prob", "entities_entities"]
    );
    let mut found = 0;
    for row in rdr.records() {
        let row = row.unwrap();
        let text: Vec<char> = row[0].chars().collect();
        let spans: serde_json::Value = serde_json::from_str(&row[3]).unwrap();
        for s in spans.as_array().unwrap() {
            let (a, b) = (
                s["start"].as_u64().unwrap() as usize,
                s["end"].as_u64().unwrap() as usize,
            );
            let cut: String = text[a..b].iter().collect();
            assert_eq!(cut, s["text"].as_str().unwrap(), "offsets are characters");
            let score = s["score"].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&score));
            found += 1;
        }
    }
    assert!(found >= 2, "the people in the first text are found");
    // --min-score keeps the entities scoring at least S, and only those.
    let scores = |out: &Path| -> Vec<f64> {
        let mut rdr = csv::Reader::from_path(out).unwrap();
        rdr.records()
            .flat_map(|row| {
                let spans: serde_json::Value = serde_json::from_str(&row.unwrap()[3]).unwrap();
                spans
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|s| s["score"].as_f64().unwrap())
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let all = scores(&out);
    let cut = all.iter().cloned().fold(0.0, f64::max) - 1e-4;
    let high = d.join("pred-high.csv");
    predict(&ck, &input, &high, &["--min-score", &cut.to_string()]);
    let kept = scores(&high);
    assert!(
        !kept.is_empty() && kept.iter().all(|&s| s >= cut - 1e-6),
        "{kept:?}"
    );
    assert_eq!(kept.len(), all.iter().filter(|&&s| s >= cut - 1e-6).count());
    let (c, _, err) = code(predict_cmd(&ck, &input, &high, &cache()).args(["--min-score", "1.5"]));
    assert_eq!(c, 2, "{err}");
    let (c, _, err) = code(predict_cmd(&ck, &input, &high, &cache()).args([
        "--min-score",
        "0.5",
        "--tasks",
        "intent",
    ]));
    assert_eq!(c, 2, "{err}");
    assert!(
        err.contains("none of the tasks predicted (intent)"),
        "{err}"
    );
    let pq = d.join("pred.parquet");
    predict(&ck, &input, &pq, &["--tasks", "entities"]);
    let df = read_parquet(&pq);
    let dtype = df.column("entities_entities").unwrap().dtype().clone();
    let DataType::List(inner) = dtype else {
        panic!("{dtype:?}")
    };
    let DataType::Struct(fields) = *inner else {
        panic!("{inner:?}")
    };
    let names: Vec<&str> = fields.iter().map(|f| f.name().as_str()).collect();
    assert_eq!(names, ["start", "end", "type", "text", "score"]);

    // Every regime, from this checkpoint where one is needed.
    let before = task(&m, "entities")["test"].clone();
    for (regime, frozen) in [
        ("freeze-head=entities", Some("entities")),
        ("freeze-head=intent,frost-line=2", Some("intent")),
        ("frost-line=2", None),
        ("fully-frozen", None),
    ] {
        let out = d.join(regime.replace([',', '='], "-"));
        let (ok, _, err) = train(
            &run_file(d, "", None),
            &out,
            &[
                &"--set",
                &format!("train.regime={regime}"),
                &"--set train.epochs=1 --from",
                &ck,
            ],
        );
        assert!(ok, "{regime}: {err}");
        let m2 = manifest(&out);
        for name in ["intent", "entities"] {
            let trained = task(&m2, name)["trained"].as_bool().unwrap();
            let expect = regime != "fully-frozen" && frozen != Some(name);
            assert_eq!(trained, expect, "{regime}: head {name}");
        }
        // A head kept frozen over unchanged features scores as before.
        if frozen == Some("entities") || regime == "fully-frozen" {
            assert_eq!(task(&m2, "entities")["test"], before, "{regime}");
        }
        // Frost-line checkpoints evaluate with no flags repeated, to the same scores.
        if regime.contains("frost-line") {
            let overall = eval(&out, &d.join(format!("report-{regime}")));
            let trained_f1 = task(&m2, "entities")["test"]["entity_f1"].as_f64().unwrap();
            assert!(
                (f64_of(&overall, "entity_f1", "entities").unwrap() - trained_f1).abs() < 1e-9,
                "{regime}"
            );
        }
    }
}

#[test]
fn long_sentences_are_windowed_and_every_word_labelled() {
    let Some(model) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    // 2,000 words (about 2,600 tokens at a max length of 256) and a short sentence after it.
    let mut conll = String::new();
    for i in 0..2000 {
        let (w, t) = match i % 50 {
            7 => ("Paris", "B-location"),
            20 => ("Obama", "B-person"),
            _ => (["the", "unbelievably", "quick", "fox", "jumps"][i % 5], "O"),
        };
        conll.push_str(&format!("{w}\t{t}\n"));
    }
    conll.push_str("\nhello\tO\nLondon\tB-location\n\n");
    let path = dir.path().join("long.conll");
    std::fs::write(&path, conll).unwrap();
    let out = dir.path().join("words.parquet");
    let (ok, o, e) = run(&mut frostline(&[
        &"embed --no-progress --json --model",
        &model,
        &"--input",
        &path,
        &"--output",
        &out,
        &"--cache-dir",
        &cache(),
    ]));
    assert!(ok, "{o}{e}");
    let stats: serde_json::Value = serde_json::from_str(&o).unwrap();
    assert!(
        stats["rows"].as_u64().unwrap() > 10,
        "the long sentence is read in many windows: {stats}"
    );
    assert_eq!(stats["truncated_rows"], 0, "no window is truncated");
    let df = read_parquet(&out);
    assert_eq!(df.height(), 2002, "one row per word");
    let words = df.column("word").unwrap().str().unwrap().clone();
    assert_eq!(words.get(7), Some("Paris"));
    assert_eq!(words.get(2001), Some("London"));
    // Each word's vector is its own (the repeated word "quick" in different windows and
    // places reads different context).
    let emb = df.column("embedding").unwrap();
    assert_ne!(emb.get(2).unwrap(), emb.get(1002).unwrap());

    // Trained and evaluated with that sentence in test: all its words are scored.
    let d = dir.path();
    let (ok, _, err) = train(
        &run_file(
            d,
            "",
            Some((&repo().join("data/wnut17/train.conll"), &path)),
        ),
        &d.join("ck"),
        &[&"--set train.epochs=1"],
    );
    assert!(ok, "{err}");
    let m = manifest(&d.join("ck"));
    // 2,000 / 50 × 2 + 1 true entities.
    assert_eq!(task(&m, "entities")["test"]["support"], 81);
}

#[test]
fn bad_conll_input_is_named_with_its_file_and_line() {
    let Some(_) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let train_file = repo().join("data/wnut17/train.conll");
    let try_test = |name: &str, content: &str| -> (bool, serde_json::Value, String) {
        let p = d.join(name);
        std::fs::write(&p, content).unwrap();
        let out = d.join(format!("ck-{name}"));
        let r = train(
            &run_file(d, "", Some((&train_file, &p))),
            &out,
            &[&"--set train.epochs=1"],
        );
        if !r.0 {
            assert!(!out.exists(), "nothing written for {name}");
        }
        r
    };
    // A line with no tab.
    let (ok, _, err) = try_test("notab.conll", "hello\tO\nworld O\n");
    assert!(
        !ok && err.contains("notab.conll") && err.contains("line 2") && err.contains("no tab"),
        "{err}"
    );
    // A text file where CoNLL is expected.
    let (ok, _, err) = try_test("text.conll", "text,label\nI love Paris,positive\n");
    assert!(
        !ok && err.contains("line 1") && err.contains("not CoNLL"),
        "{err}"
    );
    // IOB1 (an entity starting with I-).
    let (ok, _, err) = try_test("iob1.conll", "in\tO\nParis\tI-location\n");
    assert!(
        !ok && err.contains("line 2") && err.contains("IOB2"),
        "{err}"
    );
    // Empty sentence blocks (repeated blank lines) are no sentences, not errors.
    let (ok, json, err) = try_test(
        "blank.conll",
        "\n\n\nhi\tO\n\n\n\n\nParis\tB-location\n\n\n",
    );
    assert!(ok, "{err}");
    let ent = entities_summary(&json);
    assert_eq!(ent["test_rows"], 2, "{ent}");
    // A tag the train set never has: counted and named, its entity counted as missed.
    let (ok, json, err) = try_test(
        "unseen.conll",
        "Elvis\tB-musician\nlives\tO\n\nin\tO\nParis\tB-location\n\n",
    );
    assert!(ok, "{err}");
    assert!(
        err.contains("1 of 2 test sentences have tags that never occur in train (B-musician)"),
        "{err}"
    );
    let ent = entities_summary(&json);
    assert_eq!(ent["unseen_test_rows"], 1);
    assert_eq!(
        ent["test"]["support"], 2,
        "the unknown entity is a true entity, missed"
    );
}

#[test]
fn the_train_summary_shows_a_token_task_s_dev_entity_f1() {
    let Some(_) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (ok, out, err) = run(&mut frostline(&[
        &"train --no-progress --run",
        &run_file(d, "", None),
        &"--set train.epochs=1 --out",
        &d.join("ck"),
        &"--cache-dir",
        &cache(),
    ]));
    assert!(ok, "{out}{err}");
    let header = out.lines().next().unwrap();
    let columns: Vec<&str> = header.split('|').map(str::trim).collect();
    let at = columns.iter().position(|c| *c == "dev entity F1");
    let at = at.unwrap_or_else(|| panic!("no dev entity F1 column: {header}"));
    let row = out.lines().find(|l| l.starts_with("| entities ")).unwrap();
    let cell = row.split('|').map(str::trim).nth(at).unwrap();
    assert!(
        cell.parse::<f64>().is_ok(),
        "dev entity F1 of the token task: {row}"
    );
    let intent = out.lines().find(|l| l.starts_with("| intent ")).unwrap();
    assert_eq!(
        intent.split('|').map(str::trim).nth(at),
        Some("–"),
        "{intent}"
    );
}
