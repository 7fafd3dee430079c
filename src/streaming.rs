//! Embedding a whole input, streamed: the input (a file, a folder, a glob or a dataset folder)
//! is read in windows of rows; each window is embedded through the cache and written out before
//! the next is read, so memory follows the window, not the input. Output is one file (`.npy` /
//! `.parquet`, input order) or one part of a Parquet dataset (sharded across a cluster). A CoNLL
//! input gives word features instead, streamed a group of windows at a time.

use std::path::{Path, PathBuf};

use ndarray::Array2;

use crate::align::WordFeature;
use crate::data::{Table, TableStream};
use crate::dataset::{self, DatasetDir, PartRecord};
use crate::embedder::{EmbedSettings, EmbedStats, SentenceEmbedder, TokenStateEmbedder};
use crate::error::{Error, Result};
use crate::features::for_word_vectors;
use crate::io::format::Format;
use crate::io::fsutil;
use crate::io::outfolder::{check_not_in_cache, check_not_input};
use crate::io::output::{CarriedColumn, NpyWriter, ParquetEmbeddingWriter};
use crate::io::stale::sweep_stale;
use crate::shard::{self, FileShare, Shard};

/// Where the vectors go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EmbedOutput {
    /// One `.npy` or `.parquet` file with every row, in input order.
    File(PathBuf),
    /// Part `shard.index` of `shard.count` of a Parquet dataset in this folder.
    Dataset { dir: PathBuf, shard: Shard },
}

/// What `frostline embed` was asked to do, every setting decided.
#[derive(Debug, Clone)]
pub(crate) struct EmbedJob {
    pub settings: EmbedSettings,
    /// A file, a folder, a glob or a dataset folder, as given.
    pub input: PathBuf,
    pub text_column: String,
    /// Field separator of .csv / .tsv inputs; `None` for the extension's.
    pub delimiter: Option<u8>,
    /// Carried into Parquet output; `None` = the input's `id` column if it has one.
    pub id_column: Option<String>,
    /// More input columns carried into Parquet output.
    pub carry: Vec<String>,
    pub output: EmbedOutput,
    /// Rows read, embedded and written at a time.
    pub window_rows: usize,
    /// CoNLL input: the layer and the sub-token rule of the word features.
    pub token_layer: usize,
    pub word_feature: WordFeature,
}

/// The writer for the chosen output.
enum Sink {
    Npy(NpyWriter),
    Parquet(Box<ParquetEmbeddingWriter>),
}

/// What a text embedding pass did.
pub(crate) struct TextsEmbedded {
    pub stats: EmbedStats,
    /// The file written (a dataset's part file for a shard).
    pub path: PathBuf,
    /// Vectors taken from the input dataset folder instead of embedded.
    pub imported: Option<usize>,
    /// The shard written, and whether the dataset is now complete.
    pub shard: Option<(Shard, bool)>,
}

/// What a word-feature pass did.
pub(crate) struct WordsEmbedded {
    pub stats: EmbedStats,
    pub path: PathBuf,
    pub words: usize,
    pub sentences: usize,
}

/// Embeds every row of the job's input, window by window, into its output; a dataset part is
/// recorded and the dataset completed when it is the last part.
pub(crate) fn embed_texts(job: &EmbedJob) -> Result<TextsEmbedded> {
    let inputs = dataset::resolve_inputs(&job.input)?;
    let reads: Vec<&Path> = inputs.iter().map(PathBuf::as_path).collect();
    let mut embedder = SentenceEmbedder::open(job.settings.clone())?;
    let dim = embedder.key().dim;
    // The columns are checked on the first rows before any output exists.
    let mut columns = first_rows(&inputs, job.delimiter)?
        .map(|t| Columns::choose(job, &t))
        .transpose()?;
    // Everything that can be refused is refused here, before any text is embedded.
    let (share, dataset, path) = match &job.output {
        EmbedOutput::File(path) => {
            check_not_input(path, &reads)?;
            check_not_in_cache(path, &job.settings.cache_root)?;
            fsutil::check_writable(path)?;
            let whole = inputs
                .iter()
                .map(|p| FileShare {
                    path: p.clone(),
                    rows: None,
                })
                .collect();
            (whole, None, path.clone())
        }
        EmbedOutput::Dataset { dir, shard } => {
            check_not_input(dir, &reads)?;
            check_not_in_cache(dir, &job.settings.cache_root)?;
            let ds = DatasetDir::prepare(dir, shard.count, embedder.key())?;
            let share = shard::share(&inputs, *shard, job.delimiter)?;
            let path = ds.part_path(shard.index);
            (share, Some((ds, *shard)), path)
        }
    };
    for note in sweep_stale(&path) {
        eprintln!("{note}");
    }
    let imported = embedder.import_dataset(&job.input)?;
    let mut sink = match Format::of(&path) {
        Some(Format::Npy) => Sink::Npy(NpyWriter::create(&path, dim)?),
        _ => Sink::Parquet(Box::new(ParquetEmbeddingWriter::create(&path)?)),
    };

    let mut stats: Option<EmbedStats> = None;
    let mut described = Vec::new();
    for fs in &share {
        described.push(match &fs.rows {
            Some(r) => format!("{} rows {}..{}", fs.path.display(), r.start, r.end),
            None => fs.path.display().to_string(),
        });
        let mut stream = TableStream::open_delimited(&fs.path, job.window_rows, job.delimiter)?;
        while let Some(window) = stream.next_window()? {
            let Some(window) = cut_to(&window, fs.rows.as_ref()) else {
                if fs.rows.as_ref().is_some_and(|r| window.row_offset >= r.end) {
                    break;
                }
                continue;
            };
            let cols = match &columns {
                Some(c) => c,
                None => columns.insert(Columns::choose(job, &window)?),
            };
            let texts = window.texts(&job.text_column)?;
            let (vectors, s) = embedder.embed(&texts)?;
            write_window(&mut sink, cols, &window, &vectors, &path)?;
            match &mut stats {
                Some(all) => all.add(s),
                None => stats = Some(s),
            }
        }
    }
    let stats = stats.unwrap_or_default();
    let rows = stats.rows;
    if rows == 0 && dataset.is_none() {
        return Err(Error::InputEmpty {
            path: job.input.clone(),
        });
    }
    let text_column = columns
        .as_ref()
        .map_or(job.text_column.clone(), |c| c.text.clone());
    match sink {
        Sink::Npy(w) => w.finish()?,
        Sink::Parquet(w) => {
            let names = columns.unwrap_or_else(|| Columns::named(job));
            let empty: Vec<CarriedColumn> = names
                .carried()
                .map(|n| CarriedColumn {
                    name: n,
                    values: Vec::new(),
                })
                .collect();
            w.finish(&empty, dim)?;
        }
    }
    let shard = match dataset {
        Some((ds, shard)) => {
            let complete = ds.finish_part(&PartRecord {
                part: shard.index,
                of: shard.count,
                rows,
                cache_key_id: embedder.key().id(),
                model_dir: embedder.folder().dir.clone(),
                numeric: embedder.folder().numeric(),
                text_column,
                checksum: dataset::checksum(&path)?,
                inputs: described,
            })?;
            Some((shard, complete))
        }
        None => None,
    };
    Ok(TextsEmbedded {
        stats,
        path,
        imported,
        shard,
    })
}

/// The first rows of the first input that has any.
fn first_rows(inputs: &[PathBuf], delimiter: Option<u8>) -> Result<Option<Table>> {
    for p in inputs {
        if let Some(t) = TableStream::open_delimited(p, 64, delimiter)?.next_window()? {
            return Ok(Some(t));
        }
    }
    Ok(None)
}

/// The rows of `window` inside `rows` (data rows of its file), or `None` if there are none.
fn cut_to(window: &Table, rows: Option<&std::ops::Range<usize>>) -> Option<Table> {
    let Some(r) = rows else {
        return Some(window.clone());
    };
    let start = r.start.max(window.row_offset);
    let end = r.end.min(window.row_offset + window.len());
    (start < end).then(|| window.rows(start - window.row_offset, end - window.row_offset))
}

/// The columns carried into Parquet output, decided on the first window: the id column (given,
/// or `id` when the input has one), the text column and those `--carry` names.
struct Columns {
    id: Option<String>,
    text: String,
    extra: Vec<String>,
}

impl Columns {
    fn choose(job: &EmbedJob, first: &Table) -> Result<Self> {
        let id = match &job.id_column {
            Some(c) => {
                first
                    .column_index(c)
                    .map_err(|e| e.column_set_by("--id-column"))?;
                Some(c.clone())
            }
            None => first.column("id").map(|_| "id".to_string()),
        };
        first
            .column_index(&job.text_column)
            .map_err(|e| e.column_set_by("--text-column"))?;
        for c in &job.carry {
            first
                .column_index(c)
                .map_err(|e| e.column_set_by("--carry"))?;
        }
        let id = id.filter(|id| *id != job.text_column);
        Ok(Self {
            extra: extra_columns(job, id.as_deref()),
            id,
            text: job.text_column.clone(),
        })
    }

    /// The columns when no row was read (an empty shard): what the flags name.
    fn named(job: &EmbedJob) -> Self {
        let id = job.id_column.clone().filter(|id| *id != job.text_column);
        Self {
            extra: extra_columns(job, id.as_deref()),
            id,
            text: job.text_column.clone(),
        }
    }

    fn carried(&self) -> impl Iterator<Item = &str> {
        self.id
            .iter()
            .map(String::as_str)
            .chain([self.text.as_str()])
            .chain(self.extra.iter().map(String::as_str))
    }
}

/// `--carry` columns other than the id and text columns, each once.
fn extra_columns(job: &EmbedJob, id: Option<&str>) -> Vec<String> {
    let mut extra: Vec<String> = Vec::new();
    for c in &job.carry {
        if Some(c.as_str()) != id && *c != job.text_column && !extra.contains(c) {
            extra.push(c.clone());
        }
    }
    extra
}

fn write_window(
    sink: &mut Sink,
    cols: &Columns,
    window: &Table,
    vectors: &Array2<f32>,
    path: &Path,
) -> Result<()> {
    match sink {
        Sink::Npy(w) => w
            .write(vectors)
            .map_err(|e| Error::output(path, format!("cannot write: {e}"))),
        Sink::Parquet(w) => {
            let carried: Vec<CarriedColumn> = cols
                .carried()
                .map(|name| CarriedColumn {
                    name,
                    values: match window.column(name) {
                        Some(v) => v.iter().map(Option::as_deref).collect(),
                        None => vec![None; window.len()],
                    },
                })
                .collect();
            w.write(&carried, vectors)
        }
    }
}

/// A CoNLL file's word features (one row per word, in file order) at the job's layer, as the
/// token heads read them: `.npy` `[words, hidden]`, or Parquet with `sentence`, `word`, `tag` and
/// `embedding` columns.
pub(crate) fn embed_words(job: &EmbedJob) -> Result<WordsEmbedded> {
    let EmbedOutput::File(path) = &job.output else {
        return Err(Error::Usage(
            "word features of a CoNLL file go to one .npy or .parquet file, not a dataset folder"
                .into(),
        ));
    };
    check_not_input(path, &[&job.input])?;
    check_not_in_cache(path, &job.settings.cache_root)?;
    fsutil::check_writable(path)?;
    let sentences = crate::data::conll::read_conll(&job.input)?;
    let folder = crate::backbone::ModelFolder::open(&job.settings.model_dir)?;
    crate::kind::check_layer("--token-layer", job.token_layer, folder.num_layers)?;
    let words: Vec<Vec<String>> = sentences.iter().map(|s| s.words.clone()).collect();
    let mut tok = TokenStateEmbedder::open(job.settings.clone(), job.token_layer, false)?;
    let (states, ww, stats) = tok.word_states(&words, job.word_feature)?;
    drop(words);
    let hidden = folder.hidden_size;
    // Streamed a group of windows at a time: a huge sentence never sits in memory whole.
    let mut written = 0usize;
    match Format::of(path) {
        Some(Format::Npy) => {
            let mut w = NpyWriter::create(path, hidden)?;
            for_word_vectors(&states, &ww, hidden, |x| {
                written += x.nrows();
                w.write(&x)
                    .map_err(|e| Error::output(path, format!("cannot write: {e}")))
            })?;
            w.finish()?;
        }
        _ => {
            // Word i of the file: (sentence, word, tag), in the order the vectors come.
            let located: Vec<(String, &str, &str)> = sentences
                .iter()
                .enumerate()
                .flat_map(|(i, s)| {
                    s.words
                        .iter()
                        .zip(&s.tags)
                        .map(move |(w, t)| (i.to_string(), w.as_str(), t.as_str()))
                })
                .collect();
            fn columns<'a>(rows: &'a [(String, &'a str, &'a str)]) -> [CarriedColumn<'a>; 3] {
                let column = |name, values: Vec<&'a str>| CarriedColumn {
                    name,
                    values: values.into_iter().map(Some).collect(),
                };
                [
                    column("sentence", rows.iter().map(|r| r.0.as_str()).collect()),
                    column("word", rows.iter().map(|r| r.1).collect()),
                    column("tag", rows.iter().map(|r| r.2).collect()),
                ]
            }
            let mut w = ParquetEmbeddingWriter::create(path)?;
            for_word_vectors(&states, &ww, hidden, |x| {
                let rows = &located[written..written + x.nrows()];
                written += x.nrows();
                w.write(&columns(rows), &x)
            })?;
            w.finish(&columns(&[]), hidden)?;
        }
    }
    Ok(WordsEmbedded {
        stats,
        path: path.clone(),
        words: written,
        sentences: sentences.len(),
    })
}
