//! Contrastive pairs of training texts, drawn as SetFit draws them: in each of `iterations`
//! rounds every text is the anchor of one similar pair (another text that shares a label with
//! it) and one dissimilar pair (a text that shares none). The rule for a multi-label text:
//! similar = the two label sets overlap (SetFit's rule), its partner drawn by picking one of its
//! labels that another text carries, then one of those texts; dissimilar = no label in common.
//! A text is never paired with itself; a text whose labels no other text carries has no similar
//! pair, and one that shares a label with every text has no dissimilar pair.

use serde::{Deserialize, Serialize};

use crate::nn::Rng;

/// How the contrastive stage of `contrastive,frost-line=N` draws and trains on its pairs
/// (`train.contrastive` in a run file; recorded in the checkpoint). The defaults are SetFit's:
/// 20 iterations, one epoch, batches of 16 pairs, learning rate 2e-5.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PairRecipe {
    /// Rounds over the train texts, each drawing one similar and one dissimilar pair per text.
    pub iterations: usize,
    /// Passes over the drawn pairs.
    pub epochs: usize,
    /// Pairs per step.
    pub batch_size: usize,
    /// Learning rate of the layers the pairs tune (AdamW, linear warm-up over 10 % of the steps,
    /// then linear decay).
    pub lr: f32,
}

impl Default for PairRecipe {
    fn default() -> Self {
        Self {
            iterations: 20,
            epochs: 1,
            batch_size: 16,
            lr: 2e-5,
        }
    }
}

/// One pair: rows `a` and `b` of task `task`'s train split, and whether they are similar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pair {
    pub task: usize,
    pub a: usize,
    pub b: usize,
    pub similar: bool,
}

/// How many similar and dissimilar pairs a draw made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PairCounts {
    pub similar: usize,
    pub dissimilar: usize,
}

/// Rejection draws of a dissimilar partner before the candidates are listed outright.
const REJECTION_TRIES: usize = 64;

/// The pairs of one task whose row `i` carries the label indices `labels[i]` (sorted, each
/// once): `iterations` rounds, each anchor in row order, its similar pair then its dissimilar
/// one. An error when no two rows share a label or no two rows differ (nothing to contrast).
pub(crate) fn draw(
    task: usize,
    labels: &[Vec<usize>],
    iterations: usize,
    rng: &mut Rng,
) -> Result<Vec<Pair>, String> {
    let classes = labels.iter().flatten().max().map_or(0, |&c| c + 1);
    let mut rows_of: Vec<Vec<usize>> = vec![Vec::new(); classes];
    for (i, ls) in labels.iter().enumerate() {
        for &c in ls {
            rows_of[c].push(i);
        }
    }
    let shares = |i: usize, j: usize| labels[i].iter().any(|c| labels[j].contains(c));
    if !rows_of.iter().any(|rows| rows.len() >= 2) {
        return Err(
            "no label is carried by two train rows, so there is no similar pair to draw".into(),
        );
    }
    let n = labels.len();
    if !any_disjoint(labels) {
        return Err(
            "every train row shares a label with every other, so there is no dissimilar pair to draw"
                .into(),
        );
    }
    let mut pairs = Vec::with_capacity(2 * iterations * n);
    for _ in 0..iterations {
        for i in 0..n {
            if let Some(j) = similar_partner(i, labels, &rows_of, rng) {
                pairs.push(Pair {
                    task,
                    a: i,
                    b: j,
                    similar: true,
                });
            }
            let dissimilar = (0..REJECTION_TRIES)
                .map(|_| rng.below(n))
                .find(|&j| j != i && !shares(i, j))
                .or_else(|| {
                    let candidates: Vec<usize> =
                        (0..n).filter(|&j| j != i && !shares(i, j)).collect();
                    (!candidates.is_empty()).then(|| candidates[rng.below(candidates.len())])
                });
            if let Some(j) = dissimilar {
                pairs.push(Pair {
                    task,
                    a: i,
                    b: j,
                    similar: false,
                });
            }
        }
    }
    Ok(pairs)
}

/// Whether two rows share no label. Checked over the distinct label sets (few, even when the
/// rows are many): two different sets that are disjoint, or two rows with no label at all.
fn any_disjoint(labels: &[Vec<usize>]) -> bool {
    let mut sets: std::collections::BTreeMap<&[usize], usize> = Default::default();
    for ls in labels {
        *sets.entry(ls.as_slice()).or_default() += 1;
    }
    if sets.get(&[][..]).is_some_and(|&n| n >= 2) {
        return true;
    }
    let sets: Vec<&[usize]> = sets.into_keys().collect();
    sets.iter().enumerate().any(|(a, x)| {
        sets[a + 1..]
            .iter()
            .any(|y| !x.iter().any(|c| y.contains(c)))
    })
}

/// A row other than `i` sharing one of its labels: one of `i`'s labels that another row carries,
/// uniformly, then one of those rows, uniformly.
fn similar_partner(
    i: usize,
    labels: &[Vec<usize>],
    rows_of: &[Vec<usize>],
    rng: &mut Rng,
) -> Option<usize> {
    let shared: Vec<usize> = labels[i]
        .iter()
        .copied()
        .filter(|&c| rows_of[c].len() >= 2)
        .collect();
    if shared.is_empty() {
        return None;
    }
    let rows = &rows_of[shared[rng.below(shared.len())]];
    let at = rows
        .binary_search(&i)
        .expect("a row is listed under its labels");
    let k = rng.below(rows.len() - 1);
    Some(rows[if k >= at { k + 1 } else { k }])
}

/// How many similar and dissimilar pairs `pairs` holds.
pub(crate) fn counts(pairs: &[Pair]) -> PairCounts {
    let similar = pairs.iter().filter(|p| p.similar).count();
    PairCounts {
        similar,
        dissimilar: pairs.len() - similar,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn single(labels: &[usize]) -> Vec<Vec<usize>> {
        labels.iter().map(|&c| vec![c]).collect()
    }

    #[test]
    fn every_text_anchors_one_pair_of_each_kind_per_iteration() {
        let labels = single(&[0, 0, 1, 1, 2, 2, 2]);
        let pairs = draw(3, &labels, 5, &mut Rng::new(7)).unwrap();
        assert_eq!(pairs.len(), 2 * 5 * labels.len());
        assert_eq!(
            counts(&pairs),
            PairCounts {
                similar: 35,
                dissimilar: 35
            }
        );
        for p in &pairs {
            assert_eq!(p.task, 3);
            assert_ne!(p.a, p.b, "a text is never paired with itself");
            assert_eq!(labels[p.a] == labels[p.b], p.similar, "{p:?}");
        }
        for i in 0..labels.len() {
            let anchored = pairs.iter().filter(|p| p.a == i).count();
            assert_eq!(anchored, 10);
        }
    }

    #[test]
    fn one_seed_one_draw() {
        let labels = single(&[0, 1, 0, 1, 0, 1, 2, 2]);
        let a = draw(0, &labels, 3, &mut Rng::new(1)).unwrap();
        assert_eq!(a, draw(0, &labels, 3, &mut Rng::new(1)).unwrap());
        assert_ne!(a, draw(0, &labels, 3, &mut Rng::new(2)).unwrap());
    }

    #[test]
    fn a_label_no_other_text_carries_gives_no_similar_pair() {
        let labels = single(&[0, 0, 1]);
        let pairs = draw(0, &labels, 4, &mut Rng::new(3)).unwrap();
        assert!(pairs.iter().all(|p| !(p.a == 2 && p.similar)));
        assert_eq!(pairs.iter().filter(|p| p.a == 2).count(), 4);
    }

    #[test]
    fn multi_label_pairs_follow_overlap() {
        // Row 0 {a,b}, 1 {b}, 2 {c}, 3 {a,c}, 4 {} (no label: similar to nothing).
        let labels = vec![vec![0, 1], vec![1], vec![2], vec![0, 2], vec![]];
        let pairs = draw(0, &labels, 50, &mut Rng::new(9)).unwrap();
        let overlap = |i: usize, j: usize| labels[i].iter().any(|c| labels[j].contains(c));
        for p in &pairs {
            assert_ne!(p.a, p.b);
            assert_eq!(overlap(p.a, p.b), p.similar, "{p:?}");
        }
        // Row 0's similar partners: 1 (via b) and 3 (via a), both drawn.
        let partners: std::collections::BTreeSet<usize> = pairs
            .iter()
            .filter(|p| p.a == 0 && p.similar)
            .map(|p| p.b)
            .collect();
        assert_eq!(partners, [1, 3].into());
        assert!(!pairs.iter().any(|p| p.a == 4 && p.similar));
    }

    #[test]
    fn nothing_to_contrast_is_refused() {
        assert!(draw(0, &single(&[0, 1, 2]), 1, &mut Rng::new(1))
            .unwrap_err()
            .contains("no similar pair"));
        assert!(draw(0, &single(&[0, 0, 0]), 1, &mut Rng::new(1))
            .unwrap_err()
            .contains("no dissimilar pair"));
    }

    #[test]
    fn disjoint_rows_are_found_over_distinct_label_sets() {
        let sets = |v: &[&[usize]]| v.iter().map(|s| s.to_vec()).collect::<Vec<_>>();
        let none: &[usize] = &[];
        assert!(!any_disjoint(&sets(&[&[0, 1], &[1, 2], &[0, 2], &[0, 1]])));
        assert!(any_disjoint(&sets(&[&[0, 1], &[1, 2], &[3]])));
        assert!(!any_disjoint(&sets(&[none])));
        assert!(any_disjoint(&sets(&[none, none])));
        assert!(any_disjoint(&sets(&[none, &[0, 1]])));
        assert!(!any_disjoint(&sets(&[&[2], &[2], &[2]])));
    }
}
