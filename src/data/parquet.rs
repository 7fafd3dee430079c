//! Parquet input through polars: every column is cast to strings.

use std::path::Path;

use polars::prelude::*;

use super::Table;
use crate::error::{Error, Result};

pub(super) fn read_parquet(path: &Path) -> Result<Table> {
    let df = read_frame(path)?;
    let mut names = Vec::new();
    let mut columns = Vec::new();
    let mut non_text = Vec::new();
    let mut nested = Vec::new();
    for col in df.columns() {
        let name = col.name().to_string();
        // Nested columns (lists, arrays, structs: e.g. an earlier run's `embedding`) are never
        // text or labels; leave them out, remembering their type for a clear error if named.
        if col.dtype().is_nested() {
            nested.push((name, col.dtype().to_string()));
            continue;
        }
        non_text.push(
            (!matches!(col.dtype(), DataType::String))
                .then(|| (0, format!("of type {}", col.dtype()))),
        );
        let as_str = col.cast(&DataType::String).map_err(|e| Error::InputFile {
            path: path.to_path_buf(),
            reason: format!("column {name:?} cannot be read as text: {e}"),
        })?;
        let ca = as_str.str().map_err(|e| Error::InputFile {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        columns.push(ca.iter().map(|v| v.map(str::to_string)).collect());
        names.push(name);
    }
    let mut table = Table::of_strings(path, names, columns);
    table.non_text = non_text;
    table.nested = nested;
    Ok(table)
}

/// A Parquet file frostline did not write itself (an input table, a dataset part), decoded
/// whole — its footer and page headers checked before the decoder would allocate what they
/// claim, and a decoder panic contained: a damaged file is a clear error naming it, never a crash.
pub(crate) fn read_frame(path: &Path) -> Result<DataFrame> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let bad = |reason: String| Error::InputFile {
        path: path.to_path_buf(),
        reason,
    };
    let file_len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    check_footer(&bytes)
        .map_err(|e| bad(format!("not a readable Parquet file (damaged footer: {e})")))?;
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut reader = ParquetReader::new(file);
        check_metadata(reader.get_metadata()?, file_len)?;
        check_pages(reader.get_metadata()?, path, file_len)?;
        reader.finish()
    }));
    std::panic::set_hook(hook);
    match read {
        Ok(Ok(df)) => Ok(df),
        Ok(Err(e)) => Err(bad(format!("not a readable Parquet file: {e}"))),
        Err(panic) => {
            let what = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("unknown");
            Err(bad(format!(
                "not a readable Parquet file (the decoder failed: {what})"
            )))
        }
    }
}

/// The texts and vectors of a Parquet file of embeddings (a dataset part: `text_column` and
/// `embedding` as `Array(Float32, dim)`), decoded through the same guards as every input: a
/// forged part must not abort the process.
pub fn read_part_vectors(
    path: &Path,
    text_column: &str,
    dim: usize,
) -> Result<(Vec<String>, Vec<f32>)> {
    let bad = |reason: String| Error::InputFile {
        path: path.to_path_buf(),
        reason,
    };
    let df = read_frame(path)?;
    let texts = df
        .column(text_column)
        .and_then(|c| c.str().cloned())
        .map_err(|e| bad(format!("column {text_column:?}: {e}")))?;
    let texts: Vec<String> = texts
        .iter()
        .map(|t| {
            t.map(str::to_string)
                .ok_or_else(|| bad("a null text".into()))
        })
        .collect::<Result<_>>()?;
    let emb = df
        .column("embedding")
        .and_then(|c| c.array().cloned())
        .map_err(|e| bad(format!("column \"embedding\": {e}")))?;
    if emb.width() != dim || emb.null_count() > 0 {
        return Err(bad(format!(
            "embedding column of width {} with {} nulls, expected width {dim} and none",
            emb.width(),
            emb.null_count()
        )));
    }
    let values: Vec<f32> = emb
        .get_inner()
        .f32()
        .map_err(|e| bad(format!("column \"embedding\": {e}")))?
        .into_no_null_iter()
        .collect();
    if values.len() != texts.len() * dim {
        return Err(bad("embedding column does not match the text column".into()));
    }
    Ok((texts, values))
}

/// Sizes a damaged footer may claim that no real file has: the decoder would try to allocate
/// them (an abort, not a panic), so they are refused first. A row takes at least a bit or so even
/// when dictionary- and run-length-encoded; a column chunk lies inside the file and inflates at
/// most ~1000× when decompressed.
fn check_metadata(
    meta: &polars::io::parquet::read::FileMetadata,
    file_len: u64,
) -> PolarsResult<()> {
    let max_rows = (file_len as usize).saturating_mul(64).max(1 << 16);
    let max_bytes = file_len.saturating_mul(1024).max(1 << 20);
    let damaged = |what: String| Err(polars_err!(ComputeError: "damaged footer: {what}"));
    if meta.num_rows > max_rows {
        return damaged(format!(
            "{} rows in a file of {file_len} bytes",
            meta.num_rows
        ));
    }
    for rg in &meta.row_groups {
        if rg.num_rows() > max_rows {
            return damaged(format!("a row group of {} rows", rg.num_rows()));
        }
        for col in rg.parquet_columns() {
            let range = col.byte_range();
            let values = col.num_values();
            let inflated = col.uncompressed_size();
            if range.end > file_len || range.start > range.end {
                return damaged(format!("a column chunk at bytes {range:?} of {file_len}"));
            }
            if values < 0 || values as usize > max_rows {
                return damaged(format!("a column chunk of {values} values"));
            }
            if inflated < 0 || inflated as u64 > max_bytes {
                return damaged(format!("a column chunk of {inflated} bytes uncompressed"));
            }
        }
    }
    Ok(())
}

/// Page headers checked against their column chunk before decoding: the decoder reserves memory
/// for a page's declared value count, so a damaged count (say 2^61) would abort the process.
fn check_pages(
    meta: &polars::io::parquet::read::FileMetadata,
    path: &Path,
    file_len: u64,
) -> PolarsResult<()> {
    use polars_parquet::parquet::page::CompressedPage;
    use polars_parquet::parquet::read::get_page_iterator;
    let bytes = polars_buffer::Buffer::from(std::fs::read(path)?);
    let max_page = usize::try_from(file_len).unwrap_or(usize::MAX);
    let max_bytes = (max_page as u64).saturating_mul(1024).max(1 << 20) as usize;
    for rg in &meta.row_groups {
        for col in rg.parquet_columns() {
            let values = usize::try_from(col.num_values()).unwrap_or(0);
            let pages = get_page_iterator(
                col,
                std::io::Cursor::new(bytes.clone()),
                Vec::new(),
                max_page,
            )
            .map_err(|e| polars_err!(ComputeError: "damaged column chunk: {e}"))?;
            for page in pages {
                let page = page.map_err(|e| polars_err!(ComputeError: "damaged page: {e}"))?;
                // Dictionary pages expose no counts; their size is bounded by the file.
                let CompressedPage::Data(p) = &page else {
                    continue;
                };
                let (n, size) = (p.num_values(), p.uncompressed_size());
                if n > values.max(1 << 16) || size > max_bytes {
                    return Err(
                        polars_err!(ComputeError: "damaged page header: {n} values, {size} bytes uncompressed, in a column chunk of {values} values"),
                    );
                }
            }
        }
    }
    Ok(())
}

/// Walks the Thrift compact-protocol footer (`FileMetaData`) before the decoder sees it: the
/// decoder reserves memory for every declared list and string length, so a damaged length (say
/// 80 GB) would abort the process. Every length and element count must fit in the bytes that are
/// left; nesting is bounded.
fn check_footer(bytes: &[u8]) -> std::result::Result<(), String> {
    let n = bytes.len();
    if n < 12 || &bytes[n - 4..] != b"PAR1" {
        return Err("no Parquet footer".into());
    }
    let len = u32::from_le_bytes(bytes[n - 8..n - 4].try_into().expect("4 bytes")) as usize;
    if len > n - 8 {
        return Err(format!("footer of {len} bytes in a file of {n}"));
    }
    let mut walker = Thrift {
        b: &bytes[n - 8 - len..n - 8],
        at: 0,
    };
    walker.skip_struct(0)
}

struct Thrift<'a> {
    b: &'a [u8],
    at: usize,
}

impl Thrift<'_> {
    fn byte(&mut self) -> std::result::Result<u8, String> {
        let v = *self.b.get(self.at).ok_or("footer ends early")?;
        self.at += 1;
        Ok(v)
    }

    fn varint(&mut self) -> std::result::Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..70).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f).checked_shl(shift).unwrap_or(0);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("varint too long".into())
    }

    fn left(&self) -> usize {
        self.b.len() - self.at
    }

    /// A declared count or length that cannot fit in what is left of the footer.
    fn sized(&mut self, count: u64) -> std::result::Result<usize, String> {
        usize::try_from(count)
            .ok()
            .filter(|&c| c <= self.left())
            .ok_or_else(|| {
                format!(
                    "a length of {count} in a footer with {} bytes left",
                    self.left()
                )
            })
    }

    fn skip(&mut self, ty: u8, depth: usize) -> std::result::Result<(), String> {
        if depth > 64 {
            return Err("footer nested too deeply".into());
        }
        match ty {
            1 | 2 => Ok(()), // booleans live in the field header
            3 => self.byte().map(|_| ()),
            4..=6 => self.varint().map(|_| ()),
            7 => {
                self.sized(8)?;
                self.at += 8;
                Ok(())
            }
            8 => {
                let len = self.varint()?;
                let len = self.sized(len)?;
                self.at += len;
                Ok(())
            }
            9 | 10 => {
                let header = self.byte()?;
                let count = match header >> 4 {
                    15 => self.varint()?,
                    c => u64::from(c),
                };
                // Every element takes at least one byte (a boolean element too).
                let count = self.sized(count)?;
                let elem = header & 0x0f;
                for _ in 0..count {
                    if elem == 1 || elem == 2 {
                        self.byte()?;
                    } else {
                        self.skip(elem, depth + 1)?;
                    }
                }
                Ok(())
            }
            11 => {
                let count = self.varint()?;
                let count = self.sized(count)?;
                if count == 0 {
                    return Ok(());
                }
                let kv = self.byte()?;
                for _ in 0..count {
                    self.skip(kv >> 4, depth + 1)?;
                    self.skip(kv & 0x0f, depth + 1)?;
                }
                Ok(())
            }
            12 => self.skip_struct(depth + 1),
            other => Err(format!("unknown Thrift type {other} in the footer")),
        }
    }

    fn skip_struct(&mut self, depth: usize) -> std::result::Result<(), String> {
        loop {
            let header = self.byte()?;
            if header == 0 {
                return Ok(());
            }
            if header >> 4 == 0 {
                // A long-form field id (zigzag i16) follows.
                self.varint()?;
            }
            self.skip(header & 0x0f, depth + 1)?;
        }
    }
}
