//! Each task's head at the start of a run, as the regime's plan says: copied from the `from`
//! checkpoint, freshly initialised, or (training-free) set from the data — class centroids or
//! embedded label descriptions.

use ndarray::{Array2, ArrayView2, Axis};

use crate::checkpoint::Checkpoint;
use crate::embedder::SentenceEmbedder;
use crate::error::{Error, Result};
use crate::heads::{Head, HeadKind, HeadSpec, HeadWeights};
use crate::nn::{ParamStore, Rng};
use crate::regime::{HeadStart, Plan};
use crate::tasks::TaskData;

/// What a fresh head may be built from.
pub(crate) struct HeadSources<'a> {
    pub spec: &'a HeadSpec,
    pub dim: usize,
    pub seed: u64,
    pub from: Option<&'a Checkpoint>,
    /// Each task's training vectors (nearest-centroid heads), when the features are cached.
    pub train_vectors: Vec<Option<ArrayView2<'a, f32>>>,
    /// The sentence embedder for zero-shot label prompts.
    pub embedder: Option<&'a mut SentenceEmbedder>,
    /// Where to say what the user should know (label names a zero-shot head cannot read).
    pub warnings: &'a mut Vec<String>,
}

/// Builds every task's head into `store`, in task order.
pub(crate) fn build_heads(
    plan: &Plan,
    tasks: &[TaskData],
    mut src: HeadSources,
    store: &mut ParamStore,
) -> Result<Vec<Head>> {
    let mut rng = Rng::new(src.seed);
    let mut heads = Vec::new();
    for (i, task) in tasks.iter().enumerate() {
        let name = &task.config.name;
        let head = match (plan.head_starts[i], src.from) {
            (HeadStart::Checkpoint, Some(ck)) => copy_head(ck, task, store)?,
            (HeadStart::Checkpoint, None) => {
                return Err(Error::Internal(format!(
                    "the plan starts head {name:?} from a checkpoint but none was loaded"
                )))
            }
            (HeadStart::Fresh, _) => match src.spec.kind {
                HeadKind::Centroid => {
                    let x = src.train_vectors[i].ok_or_else(|| {
                        Error::Usage(
                            "nearest-centroid heads need cached sentence vectors (no frost line)"
                                .into(),
                        )
                    })?;
                    Head::from_prototypes(store, name, src.spec.clone(), centroids(task, x).view())
                }
                HeadKind::ZeroShot => {
                    let embedder = src.embedder.as_deref_mut().ok_or_else(|| {
                        Error::Usage(
                            "zero-shot heads need the sentence embedder (no frost line)".into(),
                        )
                    })?;
                    let prompts = label_prompts(task)?;
                    if task.config.label_descriptions.is_none() {
                        let codes: Vec<&str> = task
                            .classes
                            .iter()
                            .map(String::as_str)
                            .filter(|l| looks_like_code(l))
                            .collect();
                        if !codes.is_empty() {
                            src.warnings.push(format!(
                                "task {name:?}: zero-shot embeds the label names as prompts, but {} of {} look like numbers or codes ({}), which carry no meaning to the model; give each label a description with tasks.{name}.label_descriptions (a CSV label,description)",
                                codes.len(),
                                task.classes.len(),
                                codes.iter().take(5).copied().collect::<Vec<_>>().join(", ")
                            ));
                        }
                    }
                    let (protos, _) = embedder.embed(&prompts)?;
                    Head::from_prototypes(store, name, src.spec.clone(), protos.view())
                }
                HeadKind::Linear | HeadKind::Mlp => Head::new(
                    store,
                    name,
                    src.spec.clone(),
                    src.dim,
                    task.classes.len(),
                    &mut rng,
                ),
            },
        };
        heads.push(head);
    }
    Ok(heads)
}

/// Copies one task's head out of a checkpoint into `store`, checking that it fits the task.
fn copy_head(ck: &Checkpoint, task: &TaskData, store: &mut ParamStore) -> Result<Head> {
    let name = &task.config.name;
    let manifest = ck.dir.join(crate::checkpoint::MANIFEST);
    let trained = ck.task(name).ok_or_else(|| Error::InputFile {
        path: manifest.clone(),
        reason: format!("checkpoint has no head for task {name:?}"),
    })?;
    let entry = trained.entry;
    if entry.classes != task.classes {
        return Err(Error::InputFile {
            path: manifest,
            reason: format!(
                "head {name:?} was trained on {} classes that differ from this task's {}",
                entry.classes.len(),
                task.classes.len()
            ),
        });
    }
    let src = trained.head;
    let mut tensors = src.tensors(&ck.store);
    Head::build(
        store,
        name,
        src.spec.clone(),
        src.input_dim,
        src.num_classes,
        HeadWeights::Named(&mut tensors),
    )
    .map_err(Error::Internal)
}

/// A label name that is a number or a code (any digit, or no letter at all: "3", "LABEL_2",
/// "c17"), not words a sentence encoder can match texts against.
fn looks_like_code(label: &str) -> bool {
    label.chars().any(|c| c.is_ascii_digit()) || !label.chars().any(char::is_alphabetic)
}

/// Label descriptions for zero-shot heads: the task's `label_descriptions` CSV (`label,description`)
/// or the label names with `_`/`-` read as spaces.
fn label_prompts(task: &TaskData) -> Result<Vec<String>> {
    let Some(path) = &task.config.label_descriptions else {
        return Ok(task
            .classes
            .iter()
            .map(|c| c.replace(['_', '-'], " "))
            .collect());
    };
    let table = crate::data::read_table(path)?;
    let columns = "label_descriptions: its columns are label,description";
    let labels = table
        .required_strings("label")
        .map_err(|e| e.column_set_by(columns))?;
    let descriptions = table
        .texts("description")
        .map_err(|e| e.column_set_by(columns))?;
    task.classes
        .iter()
        .map(|c| {
            labels
                .iter()
                .position(|l| l == c)
                .map(|i| descriptions[i].clone())
                .ok_or_else(|| Error::InputFile {
                    path: path.clone(),
                    reason: format!("no description for label {c:?}"),
                })
        })
        .collect()
}

/// Class prototypes for nearest-centroid heads: the mean training vector of each class (of the
/// rows carrying each label, for a multi-label task; of the words tagged with it, for a token
/// task).
pub(crate) fn centroids(task: &TaskData, train_x: ArrayView2<f32>) -> Array2<f32> {
    let d = train_x.ncols();
    let mut sums = Array2::<f32>::zeros((task.classes.len(), d));
    let mut counts = vec![0f32; task.classes.len()];
    let targets = task.config.kind.head_rows(&task.train_targets);
    for (row, ys) in train_x.axis_iter(Axis(0)).zip(&targets) {
        for &y in ys {
            let mut s = sums.row_mut(y);
            s += &row;
            counts[y] += 1.0;
        }
    }
    for (mut s, c) in sums.axis_iter_mut(Axis(0)).zip(counts) {
        s.mapv_inplace(|v| v / c.max(1.0));
    }
    sums
}
