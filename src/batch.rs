//! Length-sorted batches packed under a token budget: little padding, bounded memory.
//! Callers restore input order by the indices each batch carries.

/// One batch: indices into the input, all of similar token length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Batch {
    pub rows: Vec<usize>,
    /// The longest row's length: every row is padded to it.
    pub seq_len: usize,
}

impl Batch {
    pub(crate) fn padded_tokens(&self) -> usize {
        self.rows.len() * self.seq_len
    }
}

/// A row joins the current batch only if it is at least this fraction of the batch's longest row,
/// which bounds the padding any row carries (and so the batch's waste) by `1 - LENGTH_BAND`.
const LENGTH_BAND: f64 = 0.92;

/// Sorts rows by length (longest first, so the biggest allocation happens at once) and packs them
/// so that `rows × longest ≤ token_budget`, `rows ≤ max_rows`, and every row is within
/// [`LENGTH_BAND`] of the longest. A row longer than the budget gets a batch of its own.
pub(crate) fn plan(lengths: &[usize], token_budget: usize, max_rows: usize) -> Vec<Batch> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(lengths[i]));
    let mut batches = Vec::new();
    let mut current = Batch {
        rows: Vec::new(),
        seq_len: 0,
    };
    for i in order {
        let len = lengths[i].max(1);
        let seq_len = current.seq_len.max(len);
        let fits = (current.rows.len() + 1) * seq_len <= token_budget
            && current.rows.len() < max_rows.max(1)
            && len as f64 >= LENGTH_BAND * seq_len as f64;
        if !current.rows.is_empty() && !fits {
            batches.push(std::mem::replace(
                &mut current,
                Batch {
                    rows: Vec::new(),
                    seq_len: 0,
                },
            ));
        }
        current.seq_len = current.seq_len.max(len);
        current.rows.push(i);
    }
    if !current.rows.is_empty() {
        batches.push(current);
    }
    batches
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covers_every_row_once_within_budget() {
        let lengths: Vec<usize> = (0..1000).map(|i| 3 + (i * 37) % 120).collect();
        let batches = plan(&lengths, 2048, 256);
        let mut seen: Vec<usize> = batches.iter().flat_map(|b| b.rows.clone()).collect();
        seen.sort();
        assert_eq!(seen, (0..1000).collect::<Vec<_>>());
        for b in &batches {
            assert!(b.padded_tokens() <= 2048, "{b:?}");
            assert_eq!(b.seq_len, b.rows.iter().map(|&r| lengths[r]).max().unwrap());
        }
        let real: usize = lengths.iter().sum();
        let padded: usize = batches.iter().map(Batch::padded_tokens).sum();
        assert!(
            (padded - real) as f64 / (padded as f64) < 0.05,
            "waste {padded} vs {real}"
        );
    }

    #[test]
    fn oversize_row_gets_its_own_batch() {
        let batches = plan(&[10, 5000, 10], 1000, 64);
        assert_eq!(
            batches[0],
            Batch {
                rows: vec![1],
                seq_len: 5000
            }
        );
        assert_eq!(batches[1].rows.len(), 2);
    }
}
