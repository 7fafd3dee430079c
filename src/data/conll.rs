//! CoNLL input for token tasks: one `word<TAB>tag` per line, a blank line between sentences,
//! BIO tags in IOB2 (every entity starts with `B-`). `-DOCSTART-` lines are skipped. Anything
//! else — a line without a tab, a tag that is not `O` / `B-TYPE` / `I-TYPE`, an `I-X` that does
//! not continue an `X` entity (IOB1 or a broken sequence) — is refused with the file and line.

use std::path::Path;

use crate::error::{Error, Result};

/// One sentence: its words and their tags, and the line it starts on (1-based).
#[derive(Debug, Clone, PartialEq)]
pub struct Sentence {
    pub words: Vec<String>,
    pub tags: Vec<String>,
    pub line: usize,
}

/// A BIO tag split into its prefix and entity type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bio<'a> {
    Outside,
    Begin(&'a str),
    Inside(&'a str),
}

impl<'a> Bio<'a> {
    /// `None` when `tag` is not `O`, `B-TYPE` or `I-TYPE` (TYPE non-empty).
    pub fn parse(tag: &'a str) -> Option<Self> {
        match tag {
            "O" => Some(Bio::Outside),
            _ => match tag.split_once('-') {
                Some(("B", ty)) if !ty.is_empty() => Some(Bio::Begin(ty)),
                Some(("I", ty)) if !ty.is_empty() => Some(Bio::Inside(ty)),
                _ => None,
            },
        }
    }

    /// Whether this tag may follow `prev` in IOB2 (`None` = sentence start).
    pub fn may_follow(self, prev: Option<Bio>) -> bool {
        match self {
            Bio::Inside(ty) => {
                matches!(prev, Some(Bio::Begin(p)) | Some(Bio::Inside(p)) if p == ty)
            }
            _ => true,
        }
    }
}

/// Whether `path` names a CoNLL file (`.conll`).
pub fn is_conll(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("conll"))
}

/// Reads a CoNLL file into sentences, refusing malformed input with its line.
pub fn read_conll(path: &Path) -> Result<Vec<Sentence>> {
    let bytes = std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::InputMissing {
            path: path.to_path_buf(),
        },
        _ => Error::io(path, e),
    })?;
    let text = String::from_utf8(bytes).map_err(|e| Error::InputFile {
        path: path.to_path_buf(),
        reason: format!(
            "not UTF-8 text (byte {}); a token task reads CoNLL: one `word<TAB>tag` per line, a blank line between sentences",
            e.utf8_error().valid_up_to()
        ),
    })?;
    // A byte-order mark (as editors on Windows write) is not part of the first word.
    parse_conll(path, text.strip_prefix('\u{feff}').unwrap_or(&text))
}

fn parse_conll(path: &Path, text: &str) -> Result<Vec<Sentence>> {
    let bad = |line: usize, reason: String| Error::InputFile {
        path: path.to_path_buf(),
        reason: format!("line {line}: {reason}"),
    };
    let mut sentences = Vec::new();
    let mut current = Sentence {
        words: Vec::new(),
        tags: Vec::new(),
        line: 1,
    };
    let mut finish = |s: &mut Sentence, next_line: usize| {
        if !s.words.is_empty() {
            sentences.push(std::mem::replace(
                s,
                Sentence {
                    words: Vec::new(),
                    tags: Vec::new(),
                    line: next_line,
                },
            ));
        } else {
            s.line = next_line;
        }
    };
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.trim().is_empty() {
            finish(&mut current, n + 1);
            continue;
        }
        if line.split(['\t', ' ']).next() == Some("-DOCSTART-") {
            finish(&mut current, n + 1);
            continue;
        }
        let Some((word, tag)) = line.split_once('\t') else {
            let hint = if sentences.is_empty() && current.words.is_empty() {
                " — this looks like plain text or a table, not CoNLL"
            } else {
                ""
            };
            return Err(bad(
                n,
                format!(
                    "no tab in {:?}{hint}; a token task reads CoNLL: one `word<TAB>tag` per line, a blank line between sentences",
                    clip(line)
                ),
            ));
        };
        let tag = tag.trim();
        if word.is_empty() {
            return Err(bad(n, "the word before the tab is empty".into()));
        }
        if word.contains('\0') {
            return Err(bad(
                n,
                format!(
                    "a NUL byte in the word {:?}: the file is binary or damaged",
                    clip(line)
                ),
            ));
        }
        if tag.contains('\t') {
            return Err(bad(
                n,
                format!(
                    "more than two tab-separated fields in {:?}; expected `word<TAB>tag`",
                    clip(line)
                ),
            ));
        }
        let Some(bio) = Bio::parse(tag) else {
            return Err(bad(
                n,
                format!("tag {tag:?} is not BIO: expected O, B-TYPE or I-TYPE"),
            ));
        };
        let prev = current.tags.last().and_then(|t| Bio::parse(t));
        if !bio.may_follow(prev) {
            let after = match current.tags.last() {
                Some(p) => format!("follows {p:?}"),
                None => "starts the sentence".into(),
            };
            return Err(bad(
                n,
                format!(
                    "{tag:?} {after}: IOB1 or a broken sequence; frostline reads IOB2, where every entity starts with B- (rewrite the first I- of each entity as B-)"
                ),
            ));
        }
        if current.words.is_empty() {
            current.line = n;
        }
        current.words.push(word.to_string());
        current.tags.push(tag.to_string());
    }
    let end = text.lines().count() + 1;
    finish(&mut current, end);
    if sentences.is_empty() {
        return Err(Error::InputEmpty {
            path: path.to_path_buf(),
        });
    }
    Ok(sentences)
}

fn clip(line: &str) -> String {
    line.chars().take(60).collect()
}

/// Entity spans of one tag sequence as seqeval's default mode reads them: `(type, start, end)`
/// with `end` exclusive. An `I-X` after `O` or another type starts a new entity, and a `B-`
/// always does — so the metrics treat imperfect predictions as seqeval does.
pub fn spans<S: AsRef<str>>(tags: &[S]) -> Vec<(String, usize, usize)> {
    let mut out = Vec::new();
    let mut open: Option<(&str, usize)> = None;
    for (i, tag) in tags.iter().enumerate() {
        let (starts, ty) = match Bio::parse(tag.as_ref()) {
            Some(Bio::Begin(t)) => (true, Some(t)),
            Some(Bio::Inside(t)) => (open.is_none_or(|(o, _)| o != t), Some(t)),
            // O, and anything that is not a BIO tag, ends an entity.
            _ => (true, None),
        };
        if starts {
            if let Some((t, s)) = open.take() {
                out.push((t.to_string(), s, i));
            }
            open = ty.map(|t| (t, i));
        }
    }
    if let Some((t, s)) = open {
        out.push((t.to_string(), s, tags.len()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<Sentence>> {
        parse_conll(Path::new("x.conll"), text)
    }

    #[test]
    fn sentences_are_read_with_docstart_and_repeated_blank_lines_skipped() {
        let s = parse("-DOCSTART-\tO\n\nJohn\tB-person\nlives\tO\n\n\n\nParis\tB-location\r\n")
            .unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].words, ["John", "lives"]);
        assert_eq!(s[0].tags, ["B-person", "O"]);
        assert_eq!(s[0].line, 3);
        assert_eq!((s[1].words[0].as_str(), s[1].line), ("Paris", 8));
    }

    #[test]
    fn a_byte_order_mark_is_not_part_of_the_first_word_and_nul_bytes_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bom.conll");
        std::fs::write(&path, "\u{feff}Stabilized\tO\nwords\tO\n").unwrap();
        let s = read_conll(&path).unwrap();
        assert_eq!(s[0].words[0], "Stabilized");
        let err = parse("a\tO\nb\0c\tO\n").unwrap_err().to_string();
        assert!(err.contains("line 2") && err.contains("NUL"), "{err}");
    }

    #[test]
    fn malformed_lines_are_named_by_line() {
        let err = |t: &str| parse(t).unwrap_err().to_string();
        let e = err("a\tO\nb O\n");
        assert!(e.contains("line 2") && e.contains("no tab"), "{e}");
        let e = err("text,label\nhello world,greeting\n");
        assert!(e.contains("line 1") && e.contains("not CoNLL"), "{e}");
        let e = err("a\tPER\n");
        assert!(e.contains("line 1") && e.contains("not BIO"), "{e}");
        let e = err("a\tO\nb\tI-person\n");
        assert!(e.contains("line 2") && e.contains("IOB1"), "{e}");
        let e = err("a\tB-person\nb\tI-location\n");
        assert!(e.contains("line 2") && e.contains("B-person"), "{e}");
        let e = err("\n\n");
        assert!(e.contains("no rows"), "{e}");
    }

    #[test]
    fn spans_follow_seqeval_default_mode() {
        let tags = |s: &str| s.split(' ').map(str::to_string).collect::<Vec<_>>();
        assert_eq!(
            spans(&tags("B-a I-a B-a O I-b I-b B-b")),
            [
                ("a".into(), 0, 2),
                ("a".into(), 2, 3),
                ("b".into(), 4, 6),
                ("b".into(), 6, 7)
            ]
        );
        assert_eq!(
            spans(&tags("B-a I-b O")),
            [("a".into(), 0, 1), ("b".into(), 1, 2)]
        );
        assert!(spans(&tags("O O")).is_empty());
    }
}
