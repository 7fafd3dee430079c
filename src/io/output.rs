//! Writing embeddings, window by window: `.npy` (f32 [N, H]) or `.parquet` (carried columns plus an
//! `embedding` column of fixed-size f32 lists), always atomically.

use std::io::Write;
use std::path::{Path, PathBuf};

use ndarray::Array2;
use polars::prelude::*;

use crate::error::{Error, Result};
use crate::io::fsutil;

/// A string column carried from the input into the output.
pub(crate) struct CarriedColumn<'a> {
    pub name: &'a str,
    pub values: Vec<Option<&'a str>>,
}

/// `.npy` written row block by row block: the header is written with room for any row count
/// and rewritten with the real one at the end (always 128 bytes, a multiple of 64 as numpy wants).
pub(crate) struct NpyWriter {
    path: PathBuf,
    file: fsutil::AtomicFile,
    out: std::io::BufWriter<std::fs::File>,
    dim: usize,
    rows: usize,
}

const NPY_HEADER: usize = 128;

fn npy_header(rows: usize, dim: usize) -> Vec<u8> {
    let dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {dim}), }}");
    // Magic (6) + version (2) + header length (2) + dict + padding + '\n'.
    let pad = NPY_HEADER - 10 - dict.len() - 1;
    let mut h = b"\x93NUMPY\x01\x00".to_vec();
    h.extend_from_slice(&((NPY_HEADER - 10) as u16).to_le_bytes());
    h.extend_from_slice(dict.as_bytes());
    h.extend(std::iter::repeat_n(b' ', pad));
    h.push(b'\n');
    h
}

impl NpyWriter {
    pub(crate) fn create(path: &Path, dim: usize) -> Result<Self> {
        let file = fsutil::AtomicFile::create(path)?;
        let mut out = std::io::BufWriter::with_capacity(1 << 20, file.handle()?);
        out.write_all(&npy_header(0, dim))
            .map_err(|e| Error::output(path, format!("cannot write: {e}")))?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
            out,
            dim,
            rows: 0,
        })
    }

    pub(crate) fn write(&mut self, data: &Array2<f32>) -> std::io::Result<()> {
        for v in data.iter() {
            self.out.write_all(&v.to_le_bytes())?;
        }
        self.rows += data.nrows();
        Ok(())
    }

    pub(crate) fn finish(self) -> Result<()> {
        use std::io::{Seek, SeekFrom};
        let Self {
            path,
            file,
            out,
            dim,
            rows,
        } = self;
        let done = (|| {
            let mut f = out.into_inner().map_err(|e| e.into_error())?;
            f.seek(SeekFrom::Start(0))?;
            f.write_all(&npy_header(rows, dim))
        })();
        done.map_err(|e| Error::output(&path, format!("cannot write: {e}")))?;
        file.commit()
    }
}

/// Embeddings (with the carried id / text columns) written to Parquet one window at a time:
/// each window is a row group, so memory follows the window.
pub(crate) struct ParquetEmbeddingWriter {
    file: fsutil::AtomicFile,
    writer: Option<polars::io::parquet::write::BatchedWriter<std::fs::File>>,
    path: PathBuf,
    rows: usize,
}

impl ParquetEmbeddingWriter {
    pub(crate) fn create(path: &Path) -> Result<Self> {
        Ok(Self {
            file: fsutil::AtomicFile::create(path)?,
            writer: None,
            path: path.to_path_buf(),
            rows: 0,
        })
    }

    pub(crate) fn write(&mut self, carried: &[CarriedColumn], data: &Array2<f32>) -> Result<()> {
        let df = embedding_frame(&self.path, carried, data)?;
        let err = |e: PolarsError| Error::output(&self.path, e.to_string());
        if self.writer.is_none() {
            let w = parquet_writer(self.file.handle()?, &df)
                .batched(df.schema())
                .map_err(err)?;
            self.writer = Some(w);
        }
        let w = self.writer.as_mut().expect("just set");
        w.write_batch(&df).map_err(err)?;
        self.rows += df.height();
        Ok(())
    }

    /// Closes the file (an empty one when nothing was written: `empty` gives its columns).
    pub(crate) fn finish(mut self, empty: &[CarriedColumn], dim: usize) -> Result<usize> {
        if self.writer.is_none() {
            self.write(empty, &Array2::zeros((0, dim)))?;
        }
        let w = self.writer.take().expect("written");
        w.finish()
            .map_err(|e| Error::output(&self.path, e.to_string()))?;
        drop(w);
        let rows = self.rows;
        self.file.commit()?;
        Ok(rows)
    }
}

fn embedding_frame(
    path: &Path,
    carried: &[CarriedColumn],
    data: &Array2<f32>,
) -> Result<DataFrame> {
    let mut cols: Vec<Column> = carried
        .iter()
        .map(|c| Column::new(c.name.into(), c.values.clone()))
        .collect();
    cols.push(embedding_column("embedding", data)?);
    DataFrame::new_infer_height(cols).map_err(|e| Error::output(path, e.to_string()))
}

/// The embeddings as a polars column of `Array(Float32, H)`.
pub(crate) fn embedding_column(name: &str, data: &Array2<f32>) -> Result<Column> {
    let (_, h) = data.dim();
    let flat: Vec<f32> = data.iter().copied().collect();
    let series = Series::new(name.into(), flat)
        .reshape_array(&[
            ReshapeDimension::Infer,
            ReshapeDimension::new_dimension(h as u64),
        ])
        .map_err(|e| Error::Internal(format!("building the embedding column: {e}")))?;
    Ok(series.into_column())
}

pub(crate) fn write_parquet_frame(path: &Path, df: &mut DataFrame) -> Result<()> {
    fsutil::write_atomic(path, |w| {
        parquet_writer(w, df)
            .finish(df)
            .map(|_| ())
            .map_err(std::io::Error::other)
    })
}

/// A Parquet writer whose embedded Arrow schema uses the widest-read types: polars declares its
/// in-memory `string_view` / large types there, which pyarrow < 15 and pandas 2.1 cannot read
/// ("Unrecognized type: 24"). The Parquet columns themselves are the same (UTF-8 byte arrays), so
/// only the declared schema changes: `string`, `binary`, `list`.
fn parquet_writer<W: Write>(w: W, df: &DataFrame) -> ParquetWriter<W> {
    let schema: ArrowSchema = df
        .schema()
        .iter_fields()
        .map(|f| {
            let field = f.to_arrow(CompatLevel::oldest());
            let field =
                ArrowField::new(field.name.clone(), widest(&field.dtype), field.is_nullable);
            (field.name.clone(), field)
        })
        .collect();
    let declared = polars_parquet::write::schema_to_metadata_key(&schema);
    ParquetWriter::new(w).with_key_value_metadata(Some(
        polars::io::parquet::write::KeyValueMetadata::Static(vec![declared]),
    ))
}

/// `dtype` with every large or view string, binary and list type narrowed to its plain form.
fn widest(dtype: &ArrowDataType) -> ArrowDataType {
    let field = |f: &ArrowField| ArrowField::new(f.name.clone(), widest(&f.dtype), f.is_nullable);
    match dtype {
        ArrowDataType::LargeUtf8 | ArrowDataType::Utf8View => ArrowDataType::Utf8,
        ArrowDataType::LargeBinary | ArrowDataType::BinaryView => ArrowDataType::Binary,
        ArrowDataType::List(f) | ArrowDataType::LargeList(f) => {
            ArrowDataType::List(Box::new(field(f)))
        }
        ArrowDataType::FixedSizeList(f, n) => ArrowDataType::FixedSizeList(Box::new(field(f)), *n),
        ArrowDataType::Struct(fs) => ArrowDataType::Struct(fs.iter().map(field).collect()),
        other => other.clone(),
    }
}

/// Writes a frame of string / numeric columns as CSV (header row, RFC 4180), atomically.
pub(crate) fn write_csv_frame(path: &Path, df: &DataFrame) -> Result<()> {
    let columns = df.columns();
    let strings: Vec<Column> = columns
        .iter()
        .map(|c| c.cast(&DataType::String))
        .collect::<PolarsResult<_>>()
        .map_err(|e| Error::output(path, e.to_string()))?;
    fsutil::write_atomic(path, |w| {
        let mut csv = csv::Writer::from_writer(w);
        csv.write_record(columns.iter().map(|c| c.name().as_str()))?;
        let cas: Vec<&StringChunked> = strings
            .iter()
            .map(|c| c.str().expect("cast to string"))
            .collect();
        for i in 0..df.height() {
            csv.write_record(cas.iter().map(|ca| ca.get(i).unwrap_or("")))?;
        }
        csv.flush()
    })
}
