//! Words ↔ sub-tokens for token tasks. The model reads a sentence's words joined by spaces; each
//! word's feature is its first sub-token's state (or the mean of its sub-tokens). A sentence
//! longer than the max length is read in overlapping windows of whole words, and each word takes
//! its feature from the one window that owns it (the overlap is split at its middle, so every
//! word sees context on both sides) — no word is dropped or truncated.
//!
//! Raw text (for `predict`) is split into words first, keeping each word's place in the text.

use std::ops::Range;

use ndarray::{Array2, ArrayView2};

use crate::error::{Error, Result};
use crate::tokenize::TextTokenizer;
use serde::{Deserialize, Serialize};

/// Which sub-token states make a word's feature (token tasks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum WordFeature {
    /// The word's first sub-token (as BERT's NER recipe).
    #[default]
    First,
    /// The mean of the word's sub-tokens.
    Mean,
}

/// The windows the model reads for a set of sentences, and which token states make each word.
#[derive(Debug, Clone, Default)]
pub struct WordWindows {
    /// One text per window: its words joined by spaces (what is embedded and cached).
    pub texts: Vec<String>,
    /// Each sentence's windows: a range into `texts`.
    pub sentence_windows: Vec<Range<usize>>,
    /// Per window, the token range (into the window's tokens, special tokens included) of each
    /// word it owns, in word order.
    pub owned: Vec<Vec<Range<usize>>>,
}

impl WordWindows {
    /// Windows (texts, in order) of sentences `rows`, and the owned token ranges of each.
    pub fn windows_of(&self, rows: &[usize]) -> Vec<usize> {
        rows.iter()
            .flat_map(|&r| self.sentence_windows[r].clone())
            .collect()
    }

    pub fn words_in(&self, windows: &[usize]) -> usize {
        windows.iter().map(|&w| self.owned[w].len()).sum()
    }
}

/// Plans the windows of `sentences` for a model reading at most `max_length` tokens, `prefix`
/// put before every text (the model folder's input prefix).
pub(crate) fn plan_windows(
    tokenizer: &TextTokenizer,
    prefix: &str,
    sentences: &[Vec<String>],
    max_length: usize,
    feature: WordFeature,
) -> Result<WordWindows> {
    let prefix_tokens = if prefix.is_empty() {
        0
    } else {
        tokenizer.word_token_counts(&[prefix])?[0]
    };
    // Room for words: the max length less [CLS], [SEP] and the prefix.
    let budget = max_length.saturating_sub(2 + prefix_tokens).max(1);
    let all_words: Vec<&str> = sentences.iter().flatten().map(String::as_str).collect();
    let counts = tokenizer.word_token_counts(&all_words)?;
    let mut out = WordWindows::default();
    // Per window: its word range within the sentence and the words it owns.
    let mut planned: Vec<(usize, Range<usize>, Range<usize>)> = Vec::new();
    let mut at = 0;
    for (s, words) in sentences.iter().enumerate() {
        let c = &counts[at..at + words.len()];
        at += words.len();
        let first = planned.len();
        for (fed, own) in split_windows(c, budget) {
            planned.push((s, fed, own));
        }
        out.sentence_windows.push(first..planned.len());
    }
    out.texts = planned
        .iter()
        .map(|(s, fed, _)| sentences[*s][fed.clone()].join(" "))
        .collect();
    let model_texts: Vec<String> = out.texts.iter().map(|t| format!("{prefix}{t}")).collect();
    let refs: Vec<&str> = model_texts.iter().map(String::as_str).collect();
    let spans = tokenizer.token_spans(&refs)?;
    for ((s, fed, own), tokens) in planned.iter().zip(&spans) {
        let words = &sentences[*s][fed.clone()];
        // Byte span of each fed word in the model text.
        let mut start = prefix.len();
        let mut word_spans = Vec::with_capacity(words.len());
        for w in words {
            word_spans.push((start, start + w.len()));
            start += w.len() + 1;
        }
        let ranges = word_token_ranges(&word_spans, &tokens.spans, feature);
        // A word longer than a whole window (a long URL) is a window of its own and is cut by
        // the tokenizer: its feature comes from the sub-tokens that fit (the first is always
        // there), and the embedding stats count the window as a truncated row. A cut window of
        // several words would be a planning error.
        if tokens.truncated && words.len() > 1 {
            return Err(Error::Internal(format!(
                "a window of {} words planned within {max_length} tokens was truncated; please report this sentence: {:?}",
                words.len(),
                words.join(" ").chars().take(80).collect::<String>()
            )));
        }
        out.owned
            .push(ranges[own.start - fed.start..own.end - fed.start].to_vec());
    }
    Ok(out)
}

/// Windows over one sentence's words (token counts `counts`) of at most `budget` tokens each (a
/// single longer word is a window of its own): `(fed words, owned words)` pairs. Consecutive
/// windows overlap by about half a window; the words owned split the overlap at its middle.
fn split_windows(counts: &[usize], budget: usize) -> Vec<(Range<usize>, Range<usize>)> {
    let n = counts.len();
    let mut fed: Vec<Range<usize>> = Vec::new();
    let mut a = 0;
    loop {
        let (mut b, mut t) = (a, 0);
        while b < n && (b == a || t + counts[b] <= budget) {
            t += counts[b];
            b += 1;
        }
        fed.push(a..b);
        if b >= n {
            break;
        }
        // The next window starts so that about half a window of context overlaps.
        let (mut next, mut overlap) = (b, 0);
        while next > a + 1 && overlap + counts[next - 1] <= budget / 2 {
            overlap += counts[next - 1];
            next -= 1;
        }
        a = next;
    }
    let mut bounds = vec![0];
    for k in 1..fed.len() {
        let mid = (fed[k].start + fed[k - 1].end) / 2;
        let prev = bounds[k - 1];
        bounds.push(mid.max(prev + 1).min(fed[k - 1].end));
    }
    bounds.push(n);
    fed.into_iter()
        .enumerate()
        .map(|(k, f)| (f, bounds[k]..bounds[k + 1]))
        .collect()
}

/// Each word's token range: the tokens whose span starts inside the word (first sub-token only,
/// or all of them for the mean). A word that left no token (only characters the tokenizer
/// drops) takes the token before it.
fn word_token_ranges(
    words: &[(usize, usize)],
    tokens: &[Option<(usize, usize)>],
    feature: WordFeature,
) -> Vec<Range<usize>> {
    let mut ranges = Vec::with_capacity(words.len());
    let mut t = 0;
    let mut last = 0; // the last token seen ([CLS] to begin with)
    for &(ws, we) in words {
        // Skip tokens (and special tokens) before this word.
        while t < tokens.len() && tokens[t].is_none_or(|(s, _)| s < ws) {
            if tokens[t].is_some() || t == 0 {
                last = t;
            }
            t += 1;
        }
        let first = t;
        while t < tokens.len() && tokens[t].is_some_and(|(s, _)| s < we) {
            t += 1;
        }
        ranges.push(match (t > first, feature) {
            (false, _) => last..last + 1,
            (true, WordFeature::First) => first..first + 1,
            (true, WordFeature::Mean) => first..t,
        });
        if t > first {
            last = t - 1;
        }
    }
    ranges
}

/// The word features of `windows` (in order): each owned word's token range of the window's
/// states `state(w)` (`[tokens, hidden]`), averaged.
pub(crate) fn gather_words<'a>(
    ww: &WordWindows,
    windows: &[usize],
    hidden: usize,
    state: impl Fn(usize) -> ArrayView2<'a, f32>,
) -> Array2<f32> {
    let mut out = Array2::<f32>::zeros((ww.words_in(windows), hidden));
    let mut row = 0;
    for &w in windows {
        let x = state(w);
        for r in &ww.owned[w] {
            let mut o = out.row_mut(row);
            for t in r.clone() {
                o += &x.row(t);
            }
            o /= r.len() as f32;
            row += 1;
        }
    }
    out
}

/// Raw text split into words as the token tasks' data is (whitespace, and punctuation at a
/// word's edges split off one character at a time; `@` and `#` stay on a handle or tag):
/// each word's byte range in `text`.
pub(crate) fn split_words(text: &str) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    // Each piece's byte offset: the separators are whitespace characters of 1 to 3 bytes (a
    // no-break space is 2), so the offset is found, not counted.
    let base = text.as_ptr() as usize;
    for piece in text.split(char::is_whitespace) {
        let start = piece.as_ptr() as usize - base;
        if piece.is_empty() {
            continue;
        }
        let is_edge = |c: char| c.is_ascii_punctuation() && c != '@' && c != '#';
        let mut lead: Vec<Range<usize>> = Vec::new();
        let mut body_start = 0;
        for (i, c) in piece.char_indices() {
            if !is_edge(c) {
                break;
            }
            lead.push(start + i..start + i + c.len_utf8());
            body_start = i + c.len_utf8();
        }
        let mut trail: Vec<Range<usize>> = Vec::new();
        let mut body_end = piece.len();
        for (i, c) in piece[body_start..].char_indices().rev() {
            let i = body_start + i;
            if !is_edge(c) {
                break;
            }
            trail.push(start + i..start + i + c.len_utf8());
            body_end = i;
        }
        out.extend(lead);
        if body_end > body_start {
            out.push(start + body_start..start + body_end);
        }
        out.extend(trail.into_iter().rev());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_cover_every_word_once_and_fit_the_budget() {
        for (n, budget) in [(1, 8), (5, 8), (2000, 30), (37, 5), (10, 1)] {
            let counts: Vec<usize> = (0..n).map(|i| 1 + (i * 7) % 3).collect();
            let w = split_windows(&counts, budget);
            let mut owned: Vec<usize> = Vec::new();
            for (fed, own) in &w {
                assert!(
                    fed.start <= own.start && own.end <= fed.end,
                    "{fed:?} {own:?}"
                );
                let tokens: usize = counts[fed.clone()].iter().sum();
                assert!(tokens <= budget || fed.len() == 1, "{tokens} > {budget}");
                owned.extend(own.clone());
            }
            assert_eq!(owned, (0..n).collect::<Vec<_>>(), "n {n} budget {budget}");
        }
    }

    #[test]
    fn word_ranges_take_the_first_or_every_sub_token() {
        // "[CLS] un ##believ ##able news [SEP]" for words "unbelievable" "news"; a third word
        // ("\u{200b}") left no token.
        let tokens = [
            None,
            Some((0, 2)),
            Some((2, 8)),
            Some((8, 12)),
            Some((13, 17)),
            None,
        ];
        let words = [(0, 12), (13, 17), (18, 21)];
        assert_eq!(
            word_token_ranges(&words, &tokens, WordFeature::First),
            [1..2, 4..5, 4..5]
        );
        assert_eq!(
            word_token_ranges(&words, &tokens, WordFeature::Mean),
            [1..4, 4..5, 4..5]
        );
    }

    #[test]
    fn raw_text_splits_into_words_with_their_places() {
        let text = "Hi @paul_w, (Apple) shipped #iOS18... it's  done!";
        let words: Vec<&str> = split_words(text).into_iter().map(|r| &text[r]).collect();
        assert_eq!(
            words,
            [
                "Hi", "@paul_w", ",", "(", "Apple", ")", "shipped", "#iOS18", ".", ".", ".",
                "it's", "done", "!"
            ]
        );
        // Separators wider than a byte (no-break space, ideographic space) keep the places right.
        let text = "Hello\u{a0}world,\u{3000}from Paris";
        let words: Vec<&str> = split_words(text).into_iter().map(|r| &text[r]).collect();
        assert_eq!(words, ["Hello", "world", ",", "from", "Paris"]);
    }
}
