//! Tokenizer set-up from the model folder: no fixed padding (batches pad to their longest row),
//! truncation at the configured length, and a record of which rows were truncated.

use std::path::Path;

use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use crate::error::{Error, Result};

pub struct TextTokenizer {
    inner: Tokenizer,
}

/// Texts handed to the tokenizer at once: its encodings carry strings and offsets per token
/// (~100 bytes each), so a million words or windows encoded in one call would hold gigabytes;
/// in slices the transient memory stays small and the results are the same.
const ENCODE_SLICE: usize = 4096;

/// One text's token ids (special tokens included) and whether it was cut at `max_length`.
#[derive(Debug, Clone)]
pub struct Encoded {
    pub ids: Vec<u32>,
    pub truncated: bool,
}

impl TextTokenizer {
    pub fn load(path: &Path, max_length: usize) -> Result<Self> {
        let mut inner = Tokenizer::from_file(path)
            .map_err(|e| Error::model(path, format!("tokenizer.json could not be read: {e}")))?;
        // The model's tokenizer.json pads every row to a fixed 128 and truncates at 128/512; both
        // are wrong for sentence embeddings (sentence-transformers truncates at max_seq_length).
        inner.with_padding(None);
        inner
            .with_truncation(Some(TruncationParams {
                max_length,
                strategy: TruncationStrategy::LongestFirst,
                direction: TruncationDirection::Right,
                stride: 0,
            }))
            .map_err(|e| Error::model(path, format!("cannot truncate at {max_length}: {e}")))?;
        Ok(Self { inner })
    }

    pub fn encode_all(&self, texts: &[&str]) -> Result<Vec<Encoded>> {
        self.encode_sliced(texts, true, false, |e| Encoded {
            truncated: !e.get_overflowing().is_empty(),
            ids: e.get_ids().to_vec(),
        })
    }

    /// `texts` encoded [`ENCODE_SLICE`] at a time, each encoding mapped by `keep` to what the
    /// caller needs before the next slice is encoded. `offsets`: the slower encoder that keeps
    /// byte offsets.
    fn encode_sliced<T>(
        &self,
        texts: &[&str],
        special_tokens: bool,
        offsets: bool,
        keep: impl Fn(tokenizers::Encoding) -> T,
    ) -> Result<Vec<T>> {
        let mut out = Vec::with_capacity(texts.len());
        for slice in texts.chunks(ENCODE_SLICE) {
            let slice = slice.to_vec();
            let encodings = if offsets {
                self.inner.encode_batch(slice, special_tokens)
            } else {
                self.inner.encode_batch_fast(slice, special_tokens)
            }
            .map_err(|e| Error::Usage(format!("tokenization failed: {e}")))?;
            out.extend(encodings.into_iter().map(&keep));
        }
        Ok(out)
    }
}

/// One text's tokens as byte spans of the text (`None` for special tokens), with `max_length`
/// truncation applied as for embedding.
#[derive(Debug, Clone)]
pub struct TokenSpans {
    pub spans: Vec<Option<(usize, usize)>>,
    pub truncated: bool,
}

impl TextTokenizer {
    /// Sub-tokens per word, special tokens left out (each word encoded on its own).
    pub fn word_token_counts(&self, words: &[&str]) -> Result<Vec<usize>> {
        self.encode_sliced(words, false, false, |e| e.get_ids().len())
    }

    /// Each text's tokens with their byte spans, as the embedder tokenizes them.
    pub fn token_spans(&self, texts: &[&str]) -> Result<Vec<TokenSpans>> {
        self.encode_sliced(texts, true, true, |e| TokenSpans {
            truncated: !e.get_overflowing().is_empty(),
            spans: e
                .get_offsets()
                .iter()
                .zip(e.get_special_tokens_mask())
                .map(|(&o, &special)| (special == 0).then_some(o))
                .collect(),
        })
    }
}
