//! Shards: which share of the input one process embeds. frostline is the process a scheduler
//! runs, not a scheduler: the index comes from `--shard I/N` or from the scheduler's own
//! variables (Kubernetes Indexed Jobs, Slurm job arrays), and every row lands in exactly one
//! shard, decided from the sorted input list alone (the same in every process).

use std::ops::Range;
use std::path::PathBuf;

use crate::data::TableStream;
use crate::error::{Error, Result};

/// Shard `index` of `count` (0-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    pub(crate) const WHOLE: Shard = Shard { index: 0, count: 1 };

    /// `I/N` as typed after `--shard`.
    pub(crate) fn parse(text: &str) -> Result<Self> {
        let usage = |why: &str| {
            Error::Usage(format!(
                "--shard {text:?}: {why}; write it as I/N with 0 ≤ I < N (e.g. --shard 3/16)"
            ))
        };
        let (i, n) = text
            .split_once('/')
            .ok_or_else(|| usage("the shard count N is missing"))?;
        let index: usize = i.trim().parse().map_err(|_| usage("I is not a number"))?;
        let count: usize = n.trim().parse().map_err(|_| usage("N is not a number"))?;
        Self::new(index, count, &format!("--shard {text}"))
    }

    fn new(index: usize, count: usize, from: &str) -> Result<Self> {
        if count == 0 {
            return Err(Error::Usage(format!(
                "{from}: the shard count must be at least 1"
            )));
        }
        if index >= count {
            return Err(Error::Usage(format!(
                "{from}: shard index {index} is outside 0..{count} (indexes start at 0)"
            )));
        }
        Ok(Self { index, count })
    }

    /// The shard from the flags, else from the scheduler's environment (`env` looks a variable
    /// up; an empty value counts as unset):
    /// - `JOB_COMPLETION_INDEX` (Kubernetes Indexed Job) with `--shards N`;
    /// - `SLURM_ARRAY_TASK_ID` with `--shards N` (or `SLURM_ARRAY_TASK_COUNT`, which is only
    ///   right for the whole array: a re-submitted subset counts fewer tasks).
    ///
    /// `None` when nothing asks for sharding.
    pub(crate) fn resolve(
        flag: Option<&str>,
        shards: Option<usize>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>> {
        if let Some(text) = flag {
            if shards.is_some() {
                return Err(Error::Usage(
                    "--shard I/N already says N; leave out --shards".into(),
                ));
            }
            return Self::parse(text).map(Some);
        }
        let number = |name: &str| -> Result<Option<usize>> {
            match env(name).filter(|v| !v.trim().is_empty()) {
                None => Ok(None),
                Some(v) => v.trim().parse().map(Some).map_err(|_| {
                    Error::Usage(format!("${name} = {v:?} is not a shard index or count"))
                }),
            }
        };
        if let Some(index) = number("JOB_COMPLETION_INDEX")? {
            let count = shards.ok_or_else(|| {
                Error::Usage(
                    "$JOB_COMPLETION_INDEX is set (a Kubernetes Indexed Job): pass --shards N with the Job's completions".into(),
                )
            })?;
            return Self::new(index, count, "$JOB_COMPLETION_INDEX").map(Some);
        }
        if let Some(index) = number("SLURM_ARRAY_TASK_ID")? {
            // The array task id is the shard index (submit --array=0-(N-1)). The count is best
            // given with --shards: a re-submitted subset (--array=2, to retry one shard) has
            // SLURM_ARRAY_TASK_COUNT = 1.
            let count = match shards {
                Some(n) => n,
                None => number("SLURM_ARRAY_TASK_COUNT")?.ok_or_else(|| {
                    Error::Usage("$SLURM_ARRAY_TASK_ID is set but not $SLURM_ARRAY_TASK_COUNT: pass --shards N".into())
                })?,
            };
            if index >= count {
                return Err(Error::Usage(format!(
                    "$SLURM_ARRAY_TASK_ID {index} is outside 0..{count}; submit --array=0-{} for {count} shards, and pass --shards N when re-submitting some of them (their $SLURM_ARRAY_TASK_COUNT is smaller)",
                    count.saturating_sub(1)
                )));
            }
            return Self::new(index, count, "$SLURM_ARRAY_TASK_ID").map(Some);
        }
        if let Some(n) = shards {
            return Err(Error::Usage(format!(
                "--shards {n} without a shard index: pass --shard I/{n}, or run under a Kubernetes Indexed Job ($JOB_COMPLETION_INDEX) or a Slurm array ($SLURM_ARRAY_TASK_ID)"
            )));
        }
        Ok(None)
    }
}

/// One file's part of a shard: all of it, or a range of its data rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileShare {
    pub path: PathBuf,
    pub rows: Option<Range<usize>>,
}

/// The share of `inputs` (sorted, as every shard sees them) that `shard` embeds, in input
/// order. With at least as many files as shards, each shard takes a contiguous block of whole
/// files (nothing is read to decide); otherwise the rows are counted and each shard takes a
/// contiguous range of them. Either way the shards' outputs, in index order, are the input order.
pub(crate) fn share(
    inputs: &[PathBuf],
    shard: Shard,
    delimiter: Option<u8>,
) -> Result<Vec<FileShare>> {
    let (i, n) = (shard.index, shard.count);
    if inputs.len() >= n {
        let files = inputs.len();
        return Ok(inputs[i * files / n..(i + 1) * files / n]
            .iter()
            .map(|p| FileShare {
                path: p.clone(),
                rows: None,
            })
            .collect());
    }
    let mut counts = Vec::with_capacity(inputs.len());
    for p in inputs {
        counts.push(count_rows(p, delimiter)?);
    }
    let total: usize = counts.iter().sum();
    let range = i * total / n..(i + 1) * total / n;
    let mut out = Vec::new();
    let mut start = 0;
    for (p, &c) in inputs.iter().zip(&counts) {
        let file = start..start + c;
        let lo = range.start.max(file.start);
        let hi = range.end.min(file.end);
        if lo < hi {
            out.push(FileShare {
                path: p.clone(),
                rows: Some(lo - start..hi - start),
            });
        }
        start += c;
    }
    Ok(out)
}

/// Data rows in a table file (streamed: memory follows the window).
pub(crate) fn count_rows(path: &std::path::Path, delimiter: Option<u8>) -> Result<usize> {
    let mut stream = TableStream::open_delimited(path, 1 << 16, delimiter)?;
    let mut rows = 0;
    while let Some(t) = stream.next_window()? {
        rows += t.len();
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn shard_flags_and_scheduler_variables() {
        let none = env(&[]);
        assert_eq!(Shard::resolve(None, None, &none).unwrap(), None);
        assert_eq!(
            Shard::resolve(Some("3/16"), None, &none).unwrap(),
            Some(Shard {
                index: 3,
                count: 16
            })
        );
        for (bad, says) in [
            ("16/16", "outside 0..16"),
            ("0/0", "at least 1"),
            ("3", "count N is missing"),
            ("a/4", "I is not a number"),
        ] {
            let err = Shard::resolve(Some(bad), None, &none)
                .unwrap_err()
                .to_string();
            assert!(err.contains(says), "{bad}: {err}");
        }
        let k8s = env(&[("JOB_COMPLETION_INDEX", "2")]);
        assert_eq!(
            Shard::resolve(None, Some(4), &k8s).unwrap(),
            Some(Shard { index: 2, count: 4 })
        );
        assert!(Shard::resolve(None, None, &k8s)
            .unwrap_err()
            .to_string()
            .contains("--shards N"));
        let slurm = env(&[
            ("SLURM_ARRAY_TASK_ID", "3"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
        ]);
        assert_eq!(
            Shard::resolve(None, None, &slurm).unwrap(),
            Some(Shard { index: 3, count: 4 })
        );
        // One shard re-submitted (--array=2): the array counts 1 task; --shards says 4.
        let retry = env(&[
            ("SLURM_ARRAY_TASK_ID", "2"),
            ("SLURM_ARRAY_TASK_COUNT", "1"),
        ]);
        let err = Shard::resolve(None, None, &retry).unwrap_err().to_string();
        assert!(err.contains("pass --shards N when re-submitting"), "{err}");
        assert_eq!(
            Shard::resolve(None, Some(4), &retry).unwrap(),
            Some(Shard { index: 2, count: 4 })
        );
        let err = Shard::resolve(None, Some(4), &none)
            .unwrap_err()
            .to_string();
        assert!(err.contains("without a shard index"), "{err}");
    }

    #[test]
    fn every_row_lands_in_exactly_one_shard_in_input_order() {
        let d = tempfile::tempdir().unwrap();
        let mut inputs = Vec::new();
        let mut next = 0;
        for (f, rows) in [("a.txt", 5), ("b.txt", 0), ("c.txt", 8)] {
            let body: String = (0..rows).map(|r| format!("t{}\n", next + r)).collect();
            next += rows;
            let p = d.path().join(f);
            std::fs::write(&p, body).unwrap();
            inputs.push(p);
        }
        for n in [1, 2, 3, 4, 5, 13, 20] {
            let mut seen = Vec::new();
            for i in 0..n {
                for fs in share(&inputs, Shard { index: i, count: n }, None).unwrap() {
                    let t = crate::data::read_table(&fs.path).ok();
                    let texts = t.map(|t| t.texts("text").unwrap()).unwrap_or_default();
                    let rows = fs.rows.clone().unwrap_or(0..texts.len());
                    seen.extend(texts[rows].iter().cloned());
                }
            }
            let want: Vec<String> = (0..13).map(|r| format!("t{r}")).collect();
            assert_eq!(seen, want, "{n} shards");
        }
    }
}
