//! Input readers: CSV (any delimiter, gzip, stdin) and Parquet, streamed in chunks, from local
//! files or object storage ([`Input`], `crate::store`).
//!
//! Every reader yields [`Chunk`]s: a run of data rows with their provenance (file, 1-based row,
//! physical start line) and, for each row, the text of the *projected* columns only, in the order
//! the mapping asked for them. A row the reader could not decode (wrong field count, invalid UTF-8)
//! still comes out, with `error` set, so it is reported `invalid` and never lost.
//!
//! Memory is bounded by the chunk size: a reader never holds more than one chunk of rows.

mod csv;
mod parquet;

use std::path::{Path, PathBuf};

/// Input format, from the file extension unless `--format` says otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Csv,
    Tsv,
    Parquet,
}

/// How to read every input of a run.
#[derive(Clone, Debug)]
pub struct ReadOptions {
    /// `--format`; `None` = from the extension.
    pub format: Option<Format>,
    /// `--delimiter`; `None` = tab for `.tsv`, else sniffed from the header (`,` `;` tab `|`).
    pub delimiter: Option<u8>,
    /// `--max-cell-bytes`: a longer cell is not kept, and its row is invalid.
    pub max_cell_bytes: usize,
}

pub use crate::panic::guarded;

/// A chunk is cut when its cells hold this much text, whatever its row count (memory bound).
pub const CHUNK_BYTES: usize = 32 << 20;

/// Provenance and decode status of one data row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowMeta {
    /// 1-based data row within its file (the header is not a row).
    pub row: u64,
    /// Physical line where the row starts (CSV: 1-based, header is line 1; Parquet: `row + 1`).
    pub line: u64,
    /// Why the row could not be decoded, if it could not. Its cells are then all empty.
    pub error: Option<String>,
}

/// A run of consecutive rows of one file. Cells are stored flat: row `i` has cells
/// `cells[i * width .. (i + 1) * width]`, one per projected column, empty for null/missing.
#[derive(Debug, Default)]
pub struct Chunk {
    pub rows: Vec<RowMeta>,
    pub width: usize,
    text: String,
    /// End offset in `text` of every cell, row-major.
    ends: Vec<u32>,
}

impl Chunk {
    /// This chunk emptied for reuse with `width` cells per row: its buffers keep their capacity,
    /// so a steady stream of chunks allocates nothing after the first few.
    pub fn reuse(mut self, width: usize) -> Self {
        self.rows.clear();
        self.text.clear();
        self.ends.clear();
        self.width = width;
        self
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Bytes of cell text held.
    pub fn text_len(&self) -> usize {
        self.text.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Appends one row. `cells` must yield exactly `width` items.
    pub fn push_row<'a>(&mut self, meta: RowMeta, cells: impl IntoIterator<Item = &'a str>) {
        let before = self.ends.len();
        for c in cells {
            self.text.push_str(c);
            self.ends.push(self.text.len() as u32);
        }
        debug_assert_eq!(self.ends.len() - before, self.width);
        self.rows.push(meta);
    }

    /// Appends a row that failed to decode: all cells empty, `meta.error` says why.
    pub fn push_error_row(&mut self, meta: RowMeta) {
        let end = self.text.len() as u32;
        self.ends.extend(std::iter::repeat_n(end, self.width));
        self.rows.push(meta);
    }

    /// Closes a row built cell by cell with `text_mut` + `end_cell` (columnar readers).
    pub fn finish_row(&mut self, meta: RowMeta) {
        debug_assert_eq!(self.ends.len(), (self.rows.len() + 1) * self.width);
        self.rows.push(meta);
    }

    /// Text buffer, to append a cell with `write!` then close it with `end_cell`.
    pub fn text_mut(&mut self) -> &mut String {
        &mut self.text
    }

    pub fn end_cell(&mut self) {
        self.ends.push(self.text.len() as u32);
    }

    /// Cell `col` of row `i`.
    pub fn cell(&self, i: usize, col: usize) -> &str {
        let k = i * self.width + col;
        let start = if k == 0 { 0 } else { self.ends[k - 1] as usize };
        &self.text[start..self.ends[k] as usize]
    }
}

/// Errors that stop reading a file. Row-level problems are not errors (see [`RowMeta::error`]).
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot open input `{path}`: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("input `{path}` has no header row; the first line must name the columns")]
    NoHeader { path: PathBuf },
    #[error(
        "input `{path}` has no column{} {}\n  columns found: {}\n  hint: fix the column name in the mapping, or pass the right file",
        if .missing.len() > 1 { "s" } else { "" },
        .missing.iter().map(|m| format!("`{m}`")).collect::<Vec<_>>().join(", "),
        .found.iter().map(|m| format!("`{m}`")).collect::<Vec<_>>().join(", ")
    )]
    MissingColumns {
        path: PathBuf,
        missing: Vec<String>,
        found: Vec<String>,
    },
    #[error("cannot read input `{path}` after row {after_row}: {message}")]
    Read {
        path: PathBuf,
        after_row: u64,
        message: String,
    },
    #[error("cannot read input `{path}`: {message}")]
    Object { path: PathBuf, message: String },
    #[error("`{path}` is not a readable Parquet file: {message}")]
    Parquet { path: PathBuf, message: String },
    #[error(
        "cannot tell the format of `{path}` from its name; expected .csv, .csv.gz, .tsv, .tsv.gz or .parquet\n  hint: pass `--format csv|tsv|parquet`"
    )]
    UnknownFormat { path: PathBuf },
}

/// A streaming reader over one input.
pub trait Source: Send {
    /// Column names from the header, in file order.
    fn headers(&self) -> &[String];
    /// Reads up to `max_rows` rows (fewer at the end) into `spare`, a used chunk whose buffers
    /// are reused (`Chunk::default()` when there is none). `Ok(None)` at end of input.
    fn next_chunk(&mut self, spare: Chunk, max_rows: usize) -> Result<Option<Chunk>, SourceError>;
    /// Bytes consumed so far (compressed bytes for gzip), for progress and ETA.
    fn bytes_read(&self) -> u64;
}

/// One input of a run: stdin, a local file, or an object in object storage.
#[derive(Clone, Debug)]
pub enum Input {
    Stdin,
    File(PathBuf),
    Object(crate::store::Object),
}

impl Input {
    /// The name written in the report's `file` column and in messages: the path or URL as
    /// given (a glob's matches as expanded), `-` for stdin.
    pub fn name(&self) -> String {
        match self {
            Input::Stdin => "-".to_string(),
            Input::File(p) => p.display().to_string(),
            Input::Object(o) => o.name(),
        }
    }

    /// Size in bytes when known (not for stdin), for the progress bar's ETA.
    pub fn size(&self) -> Option<u64> {
        match self {
            Input::Stdin => None,
            Input::File(p) => std::fs::metadata(p).ok().map(|m| m.len()),
            Input::Object(o) => o.size(),
        }
    }

    fn file_name(&self) -> String {
        match self {
            Input::Stdin => String::new(),
            Input::File(p) => p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            Input::Object(o) => o.file_name(),
        }
    }
}

/// The inputs of a run, as given on the command line: `-` is stdin, an object URL is expanded
/// (a glob to every object it matches, sorted), anything else is a local path. Fails, naming
/// the URL, when an object cannot be found or listed.
pub fn inputs(given: &[PathBuf]) -> Result<Vec<Input>, crate::store::StoreError> {
    let mut out = Vec::with_capacity(given.len());
    for g in given {
        match g.to_str() {
            Some("-") => out.push(Input::Stdin),
            Some(url) if crate::store::is_url(url) => {
                out.extend(crate::store::expand(url)?.into_iter().map(Input::Object))
            }
            _ => out.push(Input::File(g.clone())),
        }
    }
    Ok(out)
}

/// Opens `input` and projects `columns` (names, in mapping order): every chunk will carry
/// exactly these columns, in this order. Fails before any row is read when a column is missing.
pub fn open(
    input: &Input,
    columns: &[String],
    opts: &ReadOptions,
) -> Result<Box<dyn Source>, SourceError> {
    let format = match opts.format {
        Some(f) => f,
        None => detect_format(input)?,
    };
    let name = PathBuf::from(input.name());
    let max_cell = opts.max_cell_bytes;
    let open_error = |e: crate::store::StoreError| SourceError::Object {
        path: name.clone(),
        message: e.message,
    };
    match format {
        Format::Parquet => Ok(Box::new(match input {
            Input::Object(o) => {
                let reader = o.range_reader().map_err(open_error)?;
                parquet::ParquetSource::from_object(&name, reader, columns, max_cell)?
            }
            Input::File(p) => parquet::ParquetSource::open(p, columns, max_cell)?,
            Input::Stdin => {
                return Err(SourceError::Parquet {
                    path: name,
                    message: "Parquet cannot be read from stdin; pass the file".into(),
                });
            }
        })),
        Format::Csv | Format::Tsv => {
            // `.tsv` means tab; otherwise the flag, else sniffed from the header.
            let delimiter = opts.delimiter.or((format == Format::Tsv).then_some(b'\t'));
            match input {
                Input::Object(o) => {
                    let raw = Box::new(o.reader().map_err(open_error)?);
                    Ok(Box::new(csv::CsvSource::from_reader(
                        &name, raw, columns, delimiter, max_cell,
                    )?))
                }
                Input::File(p) => Ok(Box::new(csv::CsvSource::open(
                    p, columns, delimiter, max_cell,
                )?)),
                Input::Stdin => Ok(Box::new(csv::CsvSource::open(
                    Path::new("-"),
                    columns,
                    delimiter,
                    max_cell,
                )?)),
            }
        }
    }
}

/// Opens an input held in memory, as [`open`] opens a file: `name` stands for its path in
/// messages, and `opts.format` says what it is (CSV when `None`: there is no name to tell from).
/// Exists for the fuzz targets (`tests/fuzz/`), which feed the readers arbitrary bytes.
pub fn open_bytes(
    name: &Path,
    bytes: bytes::Bytes,
    columns: &[String],
    opts: &ReadOptions,
) -> Result<Box<dyn Source>, SourceError> {
    let format = opts.format.unwrap_or(Format::Csv);
    let max_cell = opts.max_cell_bytes;
    match format {
        Format::Parquet => Ok(Box::new(parquet::ParquetSource::from_bytes(
            name, bytes, columns, max_cell,
        )?)),
        Format::Csv | Format::Tsv => {
            let delimiter = opts.delimiter.or((format == Format::Tsv).then_some(b'\t'));
            let raw = Box::new(std::io::Cursor::new(bytes));
            Ok(Box::new(csv::CsvSource::from_reader(
                name, raw, columns, delimiter, max_cell,
            )?))
        }
    }
}

fn detect_format(input: &Input) -> Result<Format, SourceError> {
    if matches!(input, Input::Stdin) {
        return Ok(Format::Csv);
    }
    let name = input.file_name().to_ascii_lowercase();
    let name = name.strip_suffix(".gz").unwrap_or(&name);
    if name.ends_with(".parquet") || name.ends_with(".pq") {
        Ok(Format::Parquet)
    } else if name.ends_with(".tsv") || name.ends_with(".tab") {
        Ok(Format::Tsv)
    } else if name.ends_with(".csv") || name.ends_with(".txt") {
        Ok(Format::Csv)
    } else {
        Err(SourceError::UnknownFormat {
            path: PathBuf::from(input.name()),
        })
    }
}

/// Resolves projected column names against a header: index per requested column, or the list of
/// missing names. Header names are compared after trimming spaces (and a UTF-8 BOM on the first);
/// when no header matches exactly, a single case-insensitive match is taken.
pub fn resolve_columns(
    path: &Path,
    headers: &[String],
    columns: &[String],
) -> Result<Vec<usize>, SourceError> {
    let mut idx = Vec::with_capacity(columns.len());
    let mut missing = Vec::new();
    let clean = |h: &String| h.trim_start_matches('\u{feff}').trim().to_string();
    for c in columns {
        let exact = headers.iter().position(|h| clean(h) == *c);
        // Exports change case more than names (`Email` for `email`): accept a case-insensitive
        // match, but only when exactly one header fits.
        let loose = || {
            let mut fits = headers
                .iter()
                .enumerate()
                .filter(|(_, h)| clean(h).eq_ignore_ascii_case(c));
            match (fits.next(), fits.next()) {
                (Some((i, _)), None) => Some(i),
                _ => None,
            }
        };
        match exact.or_else(loose) {
            Some(i) => idx.push(i),
            None => missing.push(c.clone()),
        }
    }
    if missing.is_empty() {
        Ok(idx)
    } else {
        Err(SourceError::MissingColumns {
            path: path.to_path_buf(),
            missing,
            found: headers.to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_resolve_exactly_then_case_insensitively_when_unambiguous() {
        let h: Vec<String> = ["\u{feff}Email ", "Phone", "phone2", "ID", "id"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let p = Path::new("x.csv");
        assert_eq!(
            resolve_columns(p, &h, &["email".into(), "PHONE".into(), "id".into()]).unwrap(),
            vec![0, 1, 4]
        );
        // `Id` fits both `ID` and `id`: ambiguous, so it is missing.
        assert!(matches!(
            resolve_columns(p, &h, &["Id".into()]),
            Err(SourceError::MissingColumns { .. })
        ));
    }

    #[test]
    fn inputs_in_memory_read_like_their_files() {
        let cols = vec!["conv_id".to_string(), "amount".to_string()];
        let rows = |src: &mut dyn Source| {
            let mut out = Vec::new();
            while let Some(c) = src.next_chunk(Chunk::default(), 5).unwrap() {
                for i in 0..c.len() {
                    out.push((c.cell(i, 0).to_string(), c.cell(i, 1).to_string()));
                }
            }
            out
        };
        for (file, format) in [
            ("mixed.csv", Format::Csv),
            ("mixed.parquet", Format::Parquet),
        ] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("samples")
                .join(file);
            let opts = ReadOptions {
                format: Some(format),
                delimiter: None,
                max_cell_bytes: 1 << 16,
            };
            let bytes = bytes::Bytes::from(std::fs::read(&path).unwrap());
            let mut mem = open_bytes(Path::new("<memory>"), bytes, &cols, &opts).unwrap();
            let mut disk = open(&Input::File(path.clone()), &cols, &opts).unwrap();
            let got = rows(mem.as_mut());
            assert!(!got.is_empty());
            assert_eq!(got, rows(disk.as_mut()), "{file}");
        }
    }
}
