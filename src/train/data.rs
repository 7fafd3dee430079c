//! Task data: read each task's files, take labels from its training data, carve a dev split when
//! there is none, and embed every split through the cache.

use std::collections::BTreeSet;
use std::path::Path;

use ndarray::Array2;

use crate::data;
use crate::embed::{EmbedStats, Embedder};
use crate::error::{Error, Result};
use crate::nn::Rng;
use crate::runfile::TaskConfig;

/// One split: texts, label names, and the cached sentence vectors.
#[derive(Debug, Clone)]
pub struct Split {
    pub texts: Vec<String>,
    pub labels: Vec<String>,
    pub x: Array2<f32>,
}

impl Split {
    pub fn len(&self) -> usize {
        self.texts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.texts.is_empty()
    }
}

#[derive(Debug, Clone)]
pub struct TaskData {
    pub config: TaskConfig,
    /// Class names, sorted, from the training data.
    pub classes: Vec<String>,
    pub train: Split,
    /// Train labels as class indices.
    pub train_y: Vec<usize>,
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
}

/// Texts and labels of one file.
pub fn read_labelled(
    path: &Path,
    text_column: &str,
    label_column: &str,
) -> Result<(Vec<String>, Vec<String>)> {
    let table = data::read_table(path)?;
    let texts = table.required_strings(text_column)?;
    let labels = table.required_strings(label_column)?;
    if let Some(i) = labels.iter().position(|l| l.trim().is_empty()) {
        return Err(Error::BadRow {
            path: path.to_path_buf(),
            row: table.location(i),
            reason: format!("field {label_column:?} is empty"),
        });
    }
    Ok((texts, labels))
}

/// Seeded stratified carve: about `fraction` of each class (at least one row of any class with
/// two or more) goes to dev. Returns (train rows, dev rows), each in original order.
pub fn stratified_split(labels: &[String], fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut rng = Rng::new(seed ^ 0xDE5_u64);
    let classes: BTreeSet<&str> = labels.iter().map(String::as_str).collect();
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

/// How a split's texts become vectors: through the sentence cache, or (frost line) not yet —
/// the native layers make them from token states, so the split starts with no columns.
pub fn sentence_vectors<'a>(
    embedder: &'a mut Embedder,
    stats: &'a mut Vec<EmbedStats>,
) -> impl FnMut(&[String]) -> Result<Array2<f32>> + 'a {
    move |texts| {
        let (x, s) = embedder.embed(texts)?;
        stats.push(s);
        Ok(x)
    }
}

pub fn no_vectors(texts: &[String]) -> Result<Array2<f32>> {
    Ok(Array2::zeros((texts.len(), 0)))
}

fn embed_split(
    embed: &mut dyn FnMut(&[String]) -> Result<Array2<f32>>,
    texts: Vec<String>,
    labels: Vec<String>,
) -> Result<Split> {
    let x = embed(&texts)?;
    Ok(Split { texts, labels, x })
}

/// Reads a task's files (labels from train, a carved dev split when there is none) and turns
/// each split's texts into vectors with `embed`.
pub fn load_task(
    config: &TaskConfig,
    seed: u64,
    embed: &mut dyn FnMut(&[String]) -> Result<Array2<f32>>,
) -> Result<TaskData> {
    let (texts, labels) = read_labelled(&config.train, &config.text_column, &config.label_column)?;
    let (train_rows, dev_source, dev_carved) = match &config.dev {
        Some(dev) => (
            (0..texts.len()).collect::<Vec<_>>(),
            Some(read_labelled(
                dev,
                &config.text_column,
                &config.label_column,
            )?),
            false,
        ),
        None => {
            let (tr, dv) = stratified_split(&labels, config.dev_fraction, seed);
            let dev = (pick(&texts, &dv), pick(&labels, &dv));
            (tr, Some(dev), true)
        }
    };
    let train_texts = pick(&texts, &train_rows);
    let train_labels = pick(&labels, &train_rows);
    let classes: Vec<String> = train_labels
        .iter()
        .cloned()
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
    let test = match &config.test {
        Some(p) => Some(read_labelled(p, &config.text_column, &config.label_column)?),
        None => None,
    };
    let unseen = |labels: &[String]| {
        labels
            .iter()
            .filter(|l| classes.binary_search(l).is_err())
            .count()
    };
    let (dev_texts, dev_labels) = dev_source.expect("dev is always set");
    let unseen_dev = unseen(&dev_labels);
    let unseen_test = test.as_ref().map_or(0, |(_, l)| unseen(l));

    let train = embed_split(embed, train_texts, train_labels)?;
    let dev = embed_split(embed, dev_texts, dev_labels)?;
    let test = match test {
        Some((t, l)) => Some(embed_split(embed, t, l)?),
        None => None,
    };
    let mut task = TaskData {
        config: config.clone(),
        classes,
        train,
        train_y: Vec::new(),
        dev,
        dev_carved,
        test,
        unseen_dev,
        unseen_test,
    };
    task.train_y = task
        .train
        .labels
        .iter()
        .map(|l| task.class_index(l).expect("train label is a class"))
        .collect();
    Ok(task)
}
