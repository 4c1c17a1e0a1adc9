//! Numeric tables from CSV files, for clustering and projecting tabular data (customer records,
//! measurements): every column a feature except an optional label column.

use std::collections::BTreeSet;
use std::path::Path;

use crate::error::{DataError, Result};

/// A table of f32 features, row-major, with optional class labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// Feature column names (`column_1`, … when the file has no header).
    pub columns: Vec<String>,
    /// `rows × columns.len()` values.
    pub values: Vec<f32>,
    pub rows: usize,
    /// Class index per row, when a label column was named.
    pub labels: Option<Vec<u32>>,
    /// The label column's distinct values, sorted; `labels` index into it.
    pub classes: Vec<String>,
}

/// Reads a CSV table. The first row is a header when any of its cells is not a number. With
/// `label_column` (a header name, or a 1-based column number for a file without header), that
/// column becomes class labels (any text) and the others features. Non-numeric, NaN or infinite
/// feature cells are errors naming the row and column.
pub fn read_csv(path: &Path, label_column: Option<&str>) -> Result<Table> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    parse_csv(&bytes, path, label_column)
}

/// [`read_csv`] on bytes; `path` only names the origin in errors.
pub fn parse_csv(bytes: &[u8], path: &Path, label_column: Option<&str>) -> Result<Table> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .trim(csv::Trim::All)
        .flexible(false)
        .from_reader(bytes);
    let mut records = Vec::new();
    for (i, rec) in reader.records().enumerate() {
        let rec = rec.map_err(|e| DataError::malformed(path, format!("line {}: {e}", i + 1)))?;
        if rec.iter().all(str::is_empty) {
            continue;
        }
        records.push(rec);
    }
    let Some(first) = records.first() else {
        return Err(DataError::Empty {
            path: path.to_path_buf(),
        });
    };
    let width = first.len();
    let has_header = first.iter().any(|c| c.parse::<f64>().is_err());
    let header: Vec<String> = if has_header {
        first.iter().map(String::from).collect()
    } else {
        (1..=width).map(|i| format!("column_{i}")).collect()
    };
    let label_idx = match label_column {
        None => None,
        Some(name) => Some(
            header
                .iter()
                .position(|h| h == name)
                .or_else(|| {
                    name.parse::<usize>()
                        .ok()
                        .filter(|&c| c >= 1 && c <= width)
                        .map(|c| c - 1)
                })
                .ok_or_else(|| {
                    DataError::malformed(
                        path,
                        format!(
                            "no label column '{name}'; the columns are: {}",
                            header.join(", ")
                        ),
                    )
                })?,
        ),
    };
    let data_rows = &records[usize::from(has_header)..];
    if data_rows.is_empty() {
        return Err(DataError::Empty {
            path: path.to_path_buf(),
        });
    }
    let columns: Vec<String> = header
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != label_idx)
        .map(|(_, h)| h.clone())
        .collect();
    if columns.is_empty() {
        return Err(DataError::malformed(
            path,
            "the table has no feature columns",
        ));
    }
    let mut values = Vec::with_capacity(data_rows.len() * columns.len());
    let mut raw_labels = Vec::new();
    for (r, rec) in data_rows.iter().enumerate() {
        // 1-based line numbers as an editor shows them.
        let line = r + 1 + usize::from(has_header);
        for (c, cell) in rec.iter().enumerate() {
            if Some(c) == label_idx {
                raw_labels.push(cell.to_string());
                continue;
            }
            let v: f32 = cell.parse().map_err(|_| {
                DataError::malformed(
                    path,
                    format!(
                        "line {line}, column '{}': '{cell}' is not a number",
                        header[c]
                    ),
                )
            })?;
            if !v.is_finite() {
                return Err(DataError::malformed(
                    path,
                    format!(
                        "line {line}, column '{}': {cell} is not a finite number",
                        header[c]
                    ),
                ));
            }
            values.push(v);
        }
    }
    let (labels, classes) = if label_idx.is_some() {
        let classes: Vec<String> = raw_labels
            .iter()
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let labels = raw_labels
            .iter()
            .map(|l| classes.binary_search(l).map_or(0, |i| i as u32))
            .collect();
        (Some(labels), classes)
    } else {
        (None, Vec::new())
    };
    Ok(Table {
        columns,
        rows: data_rows.len(),
        values,
        labels,
        classes,
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn parse(text: &str, label: Option<&str>) -> Result<Table> {
        parse_csv(text.as_bytes(), Path::new("t.csv"), label)
    }

    #[test]
    fn header_and_label_column() {
        let t = parse(
            "age,income,segment\n30,1.5,b\n41, 2.0 ,a\n\n",
            Some("segment"),
        )
        .unwrap();
        assert_eq!(t.columns, vec!["age", "income"]);
        assert_eq!(t.values, vec![30.0, 1.5, 41.0, 2.0]);
        assert_eq!(t.rows, 2);
        assert_eq!(t.classes, vec!["a", "b"]);
        assert_eq!(t.labels, Some(vec![1, 0]));
    }

    #[test]
    fn no_header_and_numbered_label_column() {
        let t = parse("1,2,0\n3,4,1\n", Some("3")).unwrap();
        assert_eq!(t.columns, vec!["column_1", "column_2"]);
        assert_eq!(t.labels, Some(vec![0, 1]));
    }

    #[test]
    fn non_numeric_cell_names_line_and_column() {
        let err = parse("a,b\n1,2\n3,x\n", None).unwrap_err().to_string();
        assert!(
            err.contains("t.csv: line 3, column 'b': 'x' is not a number"),
            "{err}"
        );
    }

    #[test]
    fn nan_and_infinity_are_errors() {
        for bad in ["NaN", "inf", "-inf"] {
            let err = parse(&format!("a,b\n1,{bad}\n"), None)
                .unwrap_err()
                .to_string();
            assert!(err.contains("line 2, column 'b'"), "{err}");
        }
    }

    #[test]
    fn empty_tables_are_errors() {
        assert!(matches!(parse("", None), Err(DataError::Empty { .. })));
        assert!(matches!(parse("a,b\n", None), Err(DataError::Empty { .. })));
    }

    #[test]
    fn ragged_rows_and_unknown_label_column_are_errors() {
        assert!(
            parse("1,2\n3\n", None)
                .unwrap_err()
                .to_string()
                .contains("line 2")
        );
        let err = parse("a,b\n1,2\n", Some("c")).unwrap_err().to_string();
        assert!(
            err.contains("no label column 'c'; the columns are: a, b"),
            "{err}"
        );
    }

    proptest! {
        #[test]
        fn never_panics(text in "[0-9a-z,.\\-\n\" ]{0,80}", label in proptest::option::of("[a-c1-3]")) {
            let _ = parse(&text, label.as_deref());
        }
    }
}
