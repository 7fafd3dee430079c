//! Task data: read each task's files, take labels from its training data, and carve a dev split
//! when there is none — the one rule for which rows form each split, used by training and by
//! `eval` alike. Vectors are not made here (see `train::features`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::data;
use crate::error::{Error, Result};
use crate::kind::Input;
use crate::nn::Rng;
use crate::runfile::TaskConfig;

/// One split: texts and label names, in file order. For a token task a row is a sentence: its
/// text is the words joined by spaces, its label the tags joined by spaces, and `words` holds
/// the words themselves.
#[derive(Debug, Clone, Default)]
pub struct Split {
    pub texts: Vec<String>,
    pub labels: Vec<String>,
    /// Token tasks only: each sentence's words (empty otherwise).
    pub words: Vec<Vec<String>>,
    /// The file the rows were read from, and each row's 0-based position among its data rows
    /// (sentences for CoNLL): what ties a report row back to the user's file.
    pub source: PathBuf,
    pub rows: Vec<usize>,
}

/// Which split of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SplitName {
    Train,
    Dev,
    Test,
}

impl SplitName {
    pub fn as_str(self) -> &'static str {
        match self {
            SplitName::Test => "test",
            SplitName::Dev => "dev",
            SplitName::Train => "train",
        }
    }
}

impl Split {
    pub fn len(&self) -> usize {
        self.texts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.texts.is_empty()
    }

    /// Token tasks: sentence `i`'s tags.
    pub fn tags(&self, i: usize) -> impl Iterator<Item = &str> {
        self.labels[i].split(' ')
    }

    /// The rows `rows`, in that order.
    fn pick(&self, rows: &[usize]) -> Split {
        Split {
            texts: pick(&self.texts, rows),
            labels: pick(&self.labels, rows),
            words: if self.words.is_empty() {
                Vec::new()
            } else {
                pick(&self.words, rows)
            },
            source: self.source.clone(),
            rows: pick(&self.rows, rows),
        }
    }
}

#[derive(Debug, Clone)]
pub struct TaskData {
    pub config: TaskConfig,
    /// Class names, sorted, from the training data.
    pub classes: Vec<String>,
    pub train: Split,
    /// Each train row's labels as class indices: one for a classification task, the set for a
    /// multi-label task.
    pub train_targets: Vec<Vec<usize>>,
    /// Empty when the task has no dev file and `dev_fraction = 0` (all of train trains).
    pub dev: Split,
    pub dev_carved: bool,
    pub test: Option<Split>,
    /// Rows of dev / test whose label never occurs in train (they count as errors).
    pub unseen_dev: usize,
    pub unseen_test: usize,
}

impl TaskData {
    pub fn class_index(&self, label: &str) -> Option<usize> {
        self.classes
            .binary_search_by(|c| c.as_str().cmp(label))
            .ok()
    }

    /// Each row's labels as class indices, as the task's kind reads them
    /// ([`crate::kind::TaskKind::targets`]).
    pub fn targets(&self, labels: &[String]) -> Vec<Vec<usize>> {
        let c = &self.config;
        c.kind.targets(&self.classes, labels, &c.label_separator)
    }
}

/// Texts and labels of one file, a blank label refused with its row.
pub(crate) fn read_labelled(
    path: &Path,
    text_column: &str,
    label_column: &str,
) -> Result<(Vec<String>, Vec<String>)> {
    read_checked(
        (path, None),
        (text_column, "--text-column"),
        (label_column, "--label-column"),
        |l| !l.trim().is_empty(),
        |_| format!("field {label_column:?} is empty"),
    )
}

/// One task file as a split: CoNLL for a task of words, else a table whose label column the
/// task's kind checks row by row ([`crate::kind::TaskKind::refuse_label`]).
fn read_task_file(path: &Path, config: &TaskConfig) -> Result<Split> {
    if config.kind.input() == Input::Words {
        let sentences = data::conll::read_conll(path)?;
        return Ok(Split {
            texts: sentences.iter().map(|s| s.words.join(" ")).collect(),
            labels: sentences.iter().map(|s| s.tags.join(" ")).collect(),
            rows: (0..sentences.len()).collect(),
            words: sentences.into_iter().map(|s| s.words).collect(),
            source: path.to_path_buf(),
        });
    }
    let refuse = |l: &str| {
        config
            .kind
            .refuse_label(l, &config.label_column, &config.label_separator)
    };
    let (texts, labels) = read_checked(
        (path, config.delimiter()),
        (&config.text_column, &config.setter("text_column")),
        (&config.label_column, &config.setter("label_column")),
        |l| refuse(l).is_none(),
        |l| refuse(l).unwrap_or_default(),
    )?;
    Ok(Split {
        rows: (0..texts.len()).collect(),
        texts,
        labels,
        words: Vec::new(),
        source: path.to_path_buf(),
    })
}

/// The text and label columns of one file — each given with what sets it, for the error when
/// the file has no such column — every label checked by `ok`.
fn read_checked(
    (path, delimiter): (&Path, Option<u8>),
    (text_column, text_setter): (&str, &str),
    (label_column, label_setter): (&str, &str),
    ok: impl Fn(&str) -> bool,
    why: impl Fn(&str) -> String,
) -> Result<(Vec<String>, Vec<String>)> {
    let table = data::read_input_delimited(path, delimiter)?;
    let texts = table
        .texts(text_column)
        .map_err(|e| e.column_set_by(text_setter))?;
    let labels = table
        .required_strings(label_column)
        .map_err(|e| e.column_set_by(label_setter))?;
    if let Some(i) = labels.iter().position(|l| !ok(l)) {
        return Err(Error::BadRow {
            path: path.to_path_buf(),
            row: table.location(i),
            reason: why(&labels[i]),
        });
    }
    Ok((texts, labels))
}

/// Seeded draw of `k` rows of each label (all of a label's rows when it has `k` or fewer), in
/// their original order.
pub(crate) fn per_label_sample<S: AsRef<str>>(labels: &[S], k: usize, seed: u64) -> Vec<usize> {
    let mut rng = Rng::new(seed);
    let classes: BTreeSet<&str> = labels.iter().map(AsRef::as_ref).collect();
    let mut kept = Vec::new();
    for class in classes {
        let mut rows: Vec<usize> = (0..labels.len())
            .filter(|&i| labels[i].as_ref() == class)
            .collect();
        rng.shuffle(&mut rows);
        kept.extend_from_slice(&rows[..k.min(rows.len())]);
    }
    kept.sort_unstable();
    kept
}

/// Seeded stratified carve: about `fraction` of each class (at least one row of any class with
/// two or more) goes to dev. Returns (train rows, dev rows), each in original order.
pub(crate) fn stratified_split<S: AsRef<str>>(
    labels: &[S],
    fraction: f64,
    seed: u64,
) -> (Vec<usize>, Vec<usize>) {
    let mut rng = Rng::new(seed ^ 0xDE5_u64);
    let labels: Vec<&str> = labels.iter().map(AsRef::as_ref).collect();
    let classes: BTreeSet<&str> = labels.iter().copied().collect();
    let mut dev = Vec::new();
    for class in classes {
        let mut rows: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == class).collect();
        rng.shuffle(&mut rows);
        let take = if rows.len() >= 2 {
            ((rows.len() as f64 * fraction).round() as usize).clamp(1, rows.len() - 1)
        } else {
            0
        };
        dev.extend_from_slice(&rows[..take]);
    }
    dev.sort_unstable();
    let is_dev: BTreeSet<usize> = dev.iter().copied().collect();
    let train = (0..labels.len()).filter(|i| !is_dev.contains(i)).collect();
    (train, dev)
}

fn pick<T: Clone>(xs: &[T], rows: &[usize]) -> Vec<T> {
    rows.iter().map(|&i| xs[i].clone()).collect()
}

/// The rows of one split of a task as training sees them: the dev file, or a seeded stratified
/// carve of train (`dev_fraction`) when there is none — train then loses those rows; with
/// `dev_fraction = 0` dev is empty and train keeps every row; then train keeps its
/// `train_fraction` (a stratified sample) or `per_label` rows of each label. A multi-label task is stratified by each row's first
/// label. `None` for a test split the task has no file for.
pub(crate) fn read_split(
    config: &TaskConfig,
    split: SplitName,
    seed: u64,
) -> Result<Option<Split>> {
    let read = |p: &Path| read_task_file(p, config);
    let strata = |s: &Split| -> Vec<String> {
        s.labels
            .iter()
            .map(|l| config.kind.stratum(l, &config.label_separator).to_string())
            .collect()
    };
    let split = match (split, &config.dev) {
        (SplitName::Test, _) => config.test.as_deref().map(read).transpose()?,
        (SplitName::Dev, Some(dev)) => Some(read(dev)?),
        (SplitName::Train, Some(_)) => Some(read(&config.train)?),
        (SplitName::Dev, None) if config.dev_fraction == 0.0 => Some(Split::default()),
        (SplitName::Train, None) if config.dev_fraction == 0.0 => Some(read(&config.train)?),
        (_, None) => {
            let all = read(&config.train)?;
            let (train, dev) = stratified_split(&strata(&all), config.dev_fraction, seed);
            let rows = if split == SplitName::Dev { dev } else { train };
            Some(all.pick(&rows))
        }
    }
    .map(|s| match split {
        // Train on a share of the rows: another seeded draw than the dev carve's.
        SplitName::Train if config.train_fraction < 1.0 => {
            let (_, kept) = stratified_split(&strata(&s), config.train_fraction, seed ^ 0x7EA1);
            s.pick(&kept)
        }
        SplitName::Train if config.per_label.is_some() => {
            let k = config.per_label.unwrap_or(usize::MAX);
            s.pick(&per_label_sample(&strata(&s), k, seed ^ 0xF3E5))
        }
        _ => s,
    });
    Ok(split)
}

/// The labels in `labels` (label-column values) that are not among `classes` (sorted), sorted
/// and each once, and how many rows carry at least one of them (they count as errors).
pub(crate) fn unseen_labels(
    config: &TaskConfig,
    classes: &[String],
    labels: &[String],
) -> (Vec<String>, usize) {
    let known = |l: &str| classes.binary_search_by(|c| c.as_str().cmp(l)).is_ok();
    let mut names = std::collections::BTreeSet::new();
    let mut rows = 0;
    for value in labels {
        let mut any = false;
        for l in config.label_set(value).into_iter().filter(|l| !known(l)) {
            names.insert(l.to_string());
            any = true;
        }
        rows += usize::from(any);
    }
    (names.into_iter().collect(), rows)
}

/// The dev and test labels checked against train's classes, before any training: a label that
/// is the same number as a class written another way (`1` in test, `1.0` in train) is a warning
/// naming both spellings; a dev or test file none of whose labels occurs in train is refused
/// (every row would count as an error).
pub(crate) fn check_split_labels(task: &TaskData) -> Result<Vec<String>> {
    let config = &task.config;
    let mut warnings = Vec::new();
    let splits = [
        ("dev", config.dev.as_deref(), Some(&task.dev)),
        ("test", config.test.as_deref(), task.test.as_ref()),
    ];
    for (split, file, rows) in splits {
        let Some(rows) = rows.filter(|s| !s.is_empty()) else {
            continue;
        };
        let (unseen, unseen_rows) = unseen_labels(config, &task.classes, &rows.labels);
        let number = |l: &str| l.trim().parse::<f64>().ok();
        let twins: Vec<String> = unseen
            .iter()
            .filter_map(|u| {
                let v = number(u)?;
                let c = task.classes.iter().find(|c| number(c) == Some(v))?;
                Some(format!("{u:?} in {split}, {c:?} in train"))
            })
            .collect();
        if !twins.is_empty() {
            warnings.push(format!(
                "task {:?}: labels that are one number written two ways ({}) are different labels; write them the same way in every file",
                config.name,
                twins.join("; ")
            ));
        }
        // Refused only when no row holds a single label train knows.
        let known = |l: &&str| task.classes.binary_search_by(|c| c.as_str().cmp(l)).is_ok();
        let none_known = unseen_rows == rows.len()
            && rows
                .labels
                .iter()
                .all(|v| !config.label_set(v).iter().any(known));
        if let Some(file) = file.filter(|_| none_known) {
            let quoted = |ls: &[String]| {
                let shown: Vec<String> = ls.iter().take(5).map(|l| format!("{l:?}")).collect();
                let more = if ls.len() > 5 { ", …" } else { "" };
                format!("{}{more}", shown.join(", "))
            };
            let (what, noun) = config.kind.row_nouns();
            return Err(Error::InputFile {
                path: file.to_path_buf(),
                reason: format!(
                    "task {:?}: none of the {} {split} {what} has {noun} that occur in train ({} here; train has {}), so every one would count as an error; {}",
                    config.name,
                    rows.len(),
                    quoted(&unseen),
                    quoted(&task.classes),
                    if twins.is_empty() {
                        "check the label column"
                    } else {
                        "write the labels the same way as in train"
                    }
                ),
            });
        }
    }
    Ok(warnings)
}

/// Reads a task's splits and takes its classes from the training labels.
pub(crate) fn load_task(config: &TaskConfig, seed: u64) -> Result<TaskData> {
    let train = read_split(config, SplitName::Train, seed)?.expect("train is always there");
    let dev = read_split(config, SplitName::Dev, seed)?.expect("dev is read or carved");
    let test = read_split(config, SplitName::Test, seed)?;
    let classes: Vec<String> = train
        .labels
        .iter()
        .flat_map(|l| config.label_set(l))
        .map(str::to_string)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if classes.len() < 2 {
        return Err(Error::InputFile {
            path: config.train.clone(),
            reason: format!(
                "task {:?} has only one class ({:?}) in column {:?}; a classifier needs at least two",
                config.name,
                classes.first().map(String::as_str).unwrap_or(""),
                config.label_column
            ),
        });
    }
    let mut task = TaskData {
        config: config.clone(),
        classes,
        train_targets: Vec::new(),
        dev_carved: config.dev.is_none() && !dev.is_empty(),
        dev,
        test,
        unseen_dev: 0,
        unseen_test: 0,
        train,
    };
    task.unseen_dev = unseen_labels(config, &task.classes, &task.dev.labels).1;
    task.unseen_test = task
        .test
        .as_ref()
        .map_or(0, |t| unseen_labels(config, &task.classes, &t.labels).1);
    task.train_targets = task.targets(&task.train.labels);
    Ok(task)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_label_samples_take_k_of_each_label_seeded() {
        let labels: Vec<&str> = (0..60)
            .map(|i| match i % 6 {
                0 => "rare",
                1 | 2 => "mid",
                _ => "common",
            })
            .collect();
        let kept = per_label_sample(&labels, 12, 5);
        let of = |l: &str| kept.iter().filter(|&&i| labels[i] == l).count();
        assert_eq!((of("rare"), of("mid"), of("common")), (10, 12, 12));
        assert!(kept.windows(2).all(|w| w[0] < w[1]), "original order");
        assert_eq!(per_label_sample(&labels, 12, 5), kept);
        assert_ne!(per_label_sample(&labels, 12, 6), kept);
    }

    #[test]
    fn the_carved_dev_split_is_stratified_seeded_and_disjoint_from_train() {
        let labels: Vec<String> = (0..100)
            .map(|i| if i % 4 == 0 { "rare" } else { "common" }.to_string())
            .collect();
        let (train, dev) = stratified_split(&labels, 0.2, 7);
        assert_eq!(train.len() + dev.len(), 100);
        assert!(dev.iter().all(|d| !train.contains(d)));
        let rare = dev.iter().filter(|&&i| labels[i] == "rare").count();
        assert_eq!((rare, dev.len()), (5, 20), "20 % of each class");
        assert_eq!(
            stratified_split(&labels, 0.2, 7),
            (train.clone(), dev.clone())
        );
        assert_ne!(
            stratified_split(&labels, 0.2, 8).1,
            dev,
            "another seed, another carve"
        );
        // A class with one row stays in train; a class with two gives one to dev.
        let few: Vec<String> = ["a", "b", "b", "c", "c", "c"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let (_, dev) = stratified_split(&few, 0.01, 1);
        assert_eq!(
            dev.iter().map(|&i| few[i].as_str()).collect::<Vec<_>>(),
            ["b", "c"]
        );
    }

    #[test]
    fn training_and_eval_read_the_same_rows() {
        let dir = tempfile::tempdir().unwrap();
        let train = dir.path().join("train.csv");
        let mut csv = String::from("text,label\n");
        for i in 0..40 {
            csv.push_str(&format!("t{i},{}\n", ["x", "y"][i % 2]));
        }
        std::fs::write(&train, csv).unwrap();
        let config: TaskConfig = toml::from_str(&format!(
            "name = \"t\"\ntrain = {:?}\ndev_fraction = 0.25",
            train.display().to_string()
        ))
        .unwrap();
        let task = load_task(&config, 3).unwrap();
        let dev = read_split(&config, SplitName::Dev, 3).unwrap().unwrap();
        let tr = read_split(&config, SplitName::Train, 3).unwrap().unwrap();
        assert_eq!(task.dev.texts, dev.texts);
        assert_eq!(task.train.texts, tr.texts);
        assert_eq!(dev.len(), 10);
        assert!(task.dev_carved);
        assert!(read_split(&config, SplitName::Test, 3).unwrap().is_none());
    }

    #[test]
    fn dev_fraction_zero_keeps_every_train_row_and_no_dev() {
        let dir = tempfile::tempdir().unwrap();
        let train = dir.path().join("train.csv");
        std::fs::write(&train, "text,label\na,x\nb,y\nc,x\nd,y\n").unwrap();
        let config: TaskConfig = toml::from_str(&format!(
            "name = \"t\"\ntrain = {:?}\ndev_fraction = 0",
            train.display().to_string()
        ))
        .unwrap();
        let task = load_task(&config, 3).unwrap();
        assert_eq!(task.train.len(), 4);
        assert!(task.dev.is_empty() && !task.dev_carved);
    }

    #[test]
    fn multi_label_rows_split_into_sets_and_blank_sets_are_empty() {
        let dir = tempfile::tempdir().unwrap();
        let train = dir.path().join("train.csv");
        std::fs::write(
            &train,
            "text,labels\na,joy|love\nb, love \nc,anger||joy\nd,anger\n",
        )
        .unwrap();
        let config: TaskConfig = toml::from_str(&format!(
            "name = \"t\"\nkind = \"multi-label\"\nlabel_column = \"labels\"\ntrain = {:?}\ndev_fraction = 0",
            train.display().to_string()
        ))
        .unwrap();
        let task = load_task(&config, 3).unwrap();
        assert_eq!(task.classes, ["anger", "joy", "love"]);
        assert_eq!(
            task.train_targets,
            [vec![1, 2], vec![2], vec![0, 1], vec![0]]
        );
        // A row naming no label is an empty set (none applies), not an error.
        std::fs::write(&train, "text,labels\na,joy\nb,|\nc,\nd,love\n").unwrap();
        let task = load_task(&config, 3).unwrap();
        assert_eq!(task.train_targets, [vec![0], vec![], vec![], vec![1]]);
        // No escaping: a label ending in a backslash is refused with its row.
        std::fs::write(&train, "text,labels\na,joy\nb,joy\\|love\n").unwrap();
        let err = load_task(&config, 3).unwrap_err().to_string();
        assert!(err.contains("row 3") && err.contains("backslash"), "{err}");
    }
}
