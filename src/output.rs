//! Writing embeddings: `.npy` (f32 [N, H]) or `.parquet` (the input's id/text columns plus an
//! `embedding` column of fixed-size f32 lists), always atomically.

use std::io::Write;
use std::path::Path;

use ndarray::Array2;
use polars::prelude::*;

use crate::error::{Error, Result};
use crate::format::{Format, EMBEDDING_OUTPUTS};
use crate::fsutil;

/// A string column carried from the input into the output.
pub(crate) struct CarriedColumn<'a> {
    pub name: &'a str,
    pub values: Vec<Option<&'a str>>,
}

pub(crate) fn write_npy(path: &Path, data: &Array2<f32>) -> Result<()> {
    let (n, h) = data.dim();
    let dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({n}, {h}), }}");
    // Magic (6) + version (2) + header length (2) + dict + padding + '\n', a multiple of 64.
    let unpadded = 10 + dict.len() + 1;
    let header = format!("{dict}{}\n", " ".repeat((64 - unpadded % 64) % 64));
    fsutil::write_atomic(path, |w| {
        w.write_all(b"\x93NUMPY\x01\x00")?;
        w.write_all(&(header.len() as u16).to_le_bytes())?;
        w.write_all(header.as_bytes())?;
        for v in data.iter() {
            w.write_all(&v.to_le_bytes())?;
        }
        Ok(())
    })
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
        ParquetWriter::new(w)
            .finish(df)
            .map(|_| ())
            .map_err(std::io::Error::other)
    })
}

pub(crate) fn write_embeddings(
    path: &Path,
    carried: &[CarriedColumn],
    data: &Array2<f32>,
) -> Result<()> {
    match Format::output(path, EMBEDDING_OUTPUTS)? {
        Format::Npy => write_npy(path, data),
        _ => {
            let mut cols: Vec<Column> = carried
                .iter()
                .map(|c| Column::new(c.name.into(), c.values.clone()))
                .collect();
            cols.push(embedding_column("embedding", data)?);
            let mut df = DataFrame::new_infer_height(cols)
                .map_err(|e| Error::output(path, e.to_string()))?;
            write_parquet_frame(path, &mut df)
        }
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
