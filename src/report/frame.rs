//! Rows → DataFrame, one column per field: every table frostline writes is built this way, so a
//! column is one line that names it and says how a row gives its value.

use polars::prelude::*;

use crate::error::{Error, Result};

/// A DataFrame under construction from `rows`.
pub(crate) struct Frame<'a, R> {
    rows: &'a [R],
    columns: Vec<Column>,
}

impl<'a, R> Frame<'a, R> {
    pub(crate) fn of(rows: &'a [R]) -> Self {
        Self {
            rows,
            columns: Vec::new(),
        }
    }

    /// Adds the column `name`, each row's value given by `value`.
    pub(crate) fn col<T>(mut self, name: &str, value: impl Fn(&'a R) -> T) -> Self
    where
        Series: NamedFrom<Vec<T>, [T]>,
    {
        let values: Vec<T> = self.rows.iter().map(value).collect();
        self.columns.push(Column::new(name.into(), values));
        self
    }

    /// The DataFrame; `what` names it in the (internal) error of columns of unequal length.
    pub(crate) fn finish(self, what: &str) -> Result<DataFrame> {
        DataFrame::new_infer_height(self.columns)
            .map_err(|e| Error::Internal(format!("building {what}: {e}")))
    }
}
