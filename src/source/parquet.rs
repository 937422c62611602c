//! Parquet reader: only the columns the mapping uses, streamed one row group at a time, every
//! value rendered as the same text a CSV export of the same data would hold, so CSV and Parquet
//! of the same data give identical reports. No `arrow-cast`: one small formatter per type.
//!
//! Damaged files: the decoder runs behind `catch_unwind` (the parquet crate has been seen to
//! panic on damaged pages and footers), and batches never span two row groups, so a damaged row
//! group stops the reading exactly where it starts, with every earlier row delivered. Memory:
//! a batch holds at most [`BATCH_BYTES`] of its row group's (uncompressed) column data, and a
//! cell over `--max-cell-bytes` is not copied (its row is invalid, saying so).

use std::fmt::Write as _;
use std::fs::File;
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, TimeUnit};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder,
};
use parquet::file::reader::ChunkReader;

use super::{CHUNK_BYTES, Chunk, RowMeta, Source, SourceError, guarded, resolve_columns};

/// Text and binary columns read as views: a dictionary-encoded column then holds its dictionary
/// once, with each row a 16-byte view into it, instead of every row's own copy of its value (a
/// row group of 1 MB values was 60 MB per batch). Falls back to the file's own types.
fn as_views(meta: ArrowReaderMetadata) -> ArrowReaderMetadata {
    use arrow_schema::{Field, Schema};
    let view = |t: &DataType| match t {
        DataType::Utf8 | DataType::LargeUtf8 => Some(DataType::Utf8View),
        DataType::Binary | DataType::LargeBinary => Some(DataType::BinaryView),
        _ => None,
    };
    let schema = meta.schema();
    if !schema
        .fields()
        .iter()
        .any(|f| view(f.data_type()).is_some())
    {
        return meta;
    }
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match view(f.data_type()) {
            Some(t) => f.as_ref().clone().with_data_type(t),
            None => f.as_ref().clone(),
        })
        .collect();
    let options = parquet::arrow::arrow_reader::ArrowReaderOptions::new()
        .with_schema(std::sync::Arc::new(Schema::new(fields)));
    match guarded(|| ArrowReaderMetadata::try_new(meta.metadata().clone(), options)) {
        Ok(Ok(views)) => views,
        _ => meta,
    }
}

/// Rows per Arrow batch at most (the pipeline's chunk size).
const BATCH_ROWS: usize = 4096;
/// A batch is cut smaller when its row group's rows are large (cells of a megabyte...).
const BATCH_BYTES: u64 = 32 << 20;

/// What a Parquet source reads: a file, an object in object storage (by range), or bytes in
/// memory (the fuzz targets').
enum Input {
    File(File),
    Object(crate::store::RangeReader),
    Bytes(bytes::Bytes),
}

pub struct ParquetSource {
    path: PathBuf,
    input: Input,
    meta: ArrowReaderMetadata,
    mask: ProjectionMask,
    /// Projected (root) columns, to size batches from the row group's metadata.
    roots: Vec<usize>,
    headers: Vec<String>,
    /// The row group being read, and the next one to open.
    reader: Option<ParquetRecordBatchReader>,
    next_group: usize,
    /// Column of the projected batch for each requested column, in request order.
    order: Vec<usize>,
    /// Rows of the current batch not yet handed out.
    pending: Option<(RecordBatch, usize)>,
    rows: u64,
    total_rows: u64,
    file_bytes: u64,
    max_cell: usize,
    /// The reading stopped: the error, for the next call, and then nothing more comes.
    pending_error: Option<SourceError>,
    failed: bool,
    /// The requested columns' names, in request order (for messages).
    names: Vec<String>,
}

fn supported(t: &DataType) -> bool {
    match t {
        DataType::Null
        | DataType::Boolean
        | DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64
        | DataType::Float32
        | DataType::Float64
        | DataType::Decimal128(_, _)
        | DataType::Utf8
        | DataType::LargeUtf8
        | DataType::Utf8View
        | DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::Date32
        | DataType::Timestamp(_, _) => true,
        DataType::Dictionary(_, v) => supported(v),
        _ => false,
    }
}

impl ParquetSource {
    pub fn open(path: &Path, columns: &[String], max_cell: usize) -> Result<Self, SourceError> {
        let file = File::open(path).map_err(|source| SourceError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_input(path, Input::File(file), columns, max_cell)
    }

    /// As [`ParquetSource::open`], reading `bytes` instead of a file; `path` names it in
    /// messages.
    pub fn from_bytes(
        path: &Path,
        bytes: bytes::Bytes,
        columns: &[String],
        max_cell: usize,
    ) -> Result<Self, SourceError> {
        Self::from_input(path, Input::Bytes(bytes), columns, max_cell)
    }

    /// As [`ParquetSource::open`], reading an object by range: its tail (with the footer) is
    /// already held; each row group's projected column chunks are fetched when it is opened.
    pub fn from_object(
        path: &Path,
        object: crate::store::RangeReader,
        columns: &[String],
        max_cell: usize,
    ) -> Result<Self, SourceError> {
        Self::from_input(path, Input::Object(object), columns, max_cell)
    }

    fn from_input(
        path: &Path,
        input: Input,
        columns: &[String],
        max_cell: usize,
    ) -> Result<Self, SourceError> {
        let perr = |message: String| SourceError::Parquet {
            path: path.to_path_buf(),
            message,
        };
        // The footer: a damaged one has been seen to panic inside the thrift decoder.
        let (meta, file_bytes) = match &input {
            Input::File(f) => (
                guarded(|| ArrowReaderMetadata::load(f, Default::default())),
                f.metadata().map(|m| m.len()).unwrap_or(0),
            ),
            Input::Object(o) => (
                guarded(|| ArrowReaderMetadata::load(o, Default::default())),
                o.size(),
            ),
            Input::Bytes(b) => (
                guarded(|| ArrowReaderMetadata::load(b, Default::default())),
                b.len() as u64,
            ),
        };
        let meta = meta
            .map_err(|p| perr(format!("its footer cannot be decoded ({p})")))?
            .map_err(|e| perr(e.to_string()))?;
        let meta = as_views(meta);
        let schema = meta.schema().clone();
        let headers: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
        let idx = resolve_columns(path, &headers, columns)?;
        for &i in &idx {
            let f = schema.field(i);
            if !supported(f.data_type()) {
                return Err(perr(format!(
                    "column `{}` has type {}, which msgcapi cannot read as text; cast it to string in the export",
                    f.name(),
                    f.data_type()
                )));
            }
        }
        let mut roots: Vec<usize> = idx.clone();
        roots.sort_unstable();
        roots.dedup();
        // Projected batches hold the chosen roots in file order.
        let order = idx
            .iter()
            .map(|i| roots.iter().position(|r| r == i).unwrap_or(0))
            .collect();
        let total_rows = meta.metadata().file_metadata().num_rows().max(0) as u64;
        let mask = ProjectionMask::roots(meta.parquet_schema(), roots.clone());
        Ok(ParquetSource {
            path: path.to_path_buf(),
            input,
            meta,
            mask,
            roots,
            headers,
            reader: None,
            next_group: 0,
            order,
            pending: None,
            rows: 0,
            total_rows,
            file_bytes,
            max_cell,
            pending_error: None,
            failed: false,
            names: columns.to_vec(),
        })
    }

    fn error(&mut self, message: String) -> SourceError {
        self.failed = true;
        SourceError::Read {
            path: self.path.clone(),
            after_row: self.rows,
            message,
        }
    }

    /// A reader over the next row group, with batches sized to its rows; `None` after the last.
    fn open_group(&mut self) -> Result<Option<ParquetRecordBatchReader>, String> {
        let groups = self.meta.metadata().num_row_groups();
        let g = self.next_group;
        if g >= groups {
            return Ok(None);
        }
        self.next_group += 1;
        let rg = self.meta.metadata().row_group(g);
        let bytes: i64 = self
            .roots
            .iter()
            .filter_map(|&r| rg.columns().get(r))
            .map(|c| c.uncompressed_size().max(0))
            .sum();
        let per_row = (bytes as u64 / rg.num_rows().max(1) as u64).max(1);
        let batch = (BATCH_BYTES / per_row).clamp(1, BATCH_ROWS as u64) as usize;
        let built = match &self.input {
            Input::File(f) => {
                let file = f.try_clone().map_err(|e| e.to_string())?;
                self.build_group(file, g, batch)
            }
            Input::Object(o) => {
                // The projected column chunks of this group, by range, in one go.
                let ranges: Vec<std::ops::Range<u64>> = self
                    .roots
                    .iter()
                    .filter_map(|&r| rg.columns().get(r))
                    .map(|c| {
                        let (start, len) = c.byte_range();
                        start..start.saturating_add(len)
                    })
                    .collect();
                o.fetch(&ranges).map_err(|e| e.message)?;
                self.build_group(o.clone(), g, batch)
            }
            Input::Bytes(b) => self.build_group(b.clone(), g, batch),
        };
        let reader = built
            .map_err(|p| format!("row group {} cannot be decoded ({p})", g + 1))?
            .map_err(|e| format!("row group {}: {e}", g + 1))?;
        Ok(Some(reader))
    }

    /// A reader over row group `g` of `input`, behind [`guarded`].
    fn build_group<T: ChunkReader + 'static>(
        &self,
        input: T,
        g: usize,
        batch: usize,
    ) -> Result<parquet::errors::Result<ParquetRecordBatchReader>, String> {
        let builder = ParquetRecordBatchReaderBuilder::new_with_metadata(input, self.meta.clone())
            .with_row_groups(vec![g])
            .with_projection(self.mask.clone())
            .with_batch_size(batch);
        guarded(|| builder.build())
    }

    /// The next batch of the file, row group after row group.
    fn next_batch(&mut self) -> Result<Option<RecordBatch>, String> {
        loop {
            if self.reader.is_none() {
                match self.open_group()? {
                    Some(r) => self.reader = Some(r),
                    None => return Ok(None),
                }
            }
            let group = self.next_group;
            let Some(reader) = self.reader.as_mut() else {
                continue;
            };
            match guarded(|| reader.next()) {
                Ok(Some(Ok(b))) => return Ok(Some(b)),
                Ok(None) => self.reader = None,
                Ok(Some(Err(e))) => return Err(format!("row group {group}: {e}")),
                Err(p) => return Err(format!("row group {group} cannot be decoded ({p})")),
            }
        }
    }
}

impl Source for ParquetSource {
    fn headers(&self) -> &[String] {
        &self.headers
    }

    fn next_chunk(&mut self, spare: Chunk, max_rows: usize) -> Result<Option<Chunk>, SourceError> {
        if let Some(e) = self.pending_error.take() {
            return Err(e);
        }
        if self.failed {
            return Ok(None);
        }
        let mut chunk = spare.reuse(self.order.len());
        while chunk.len() < max_rows && chunk.text_len() < CHUNK_BYTES {
            let (batch, start) = match self.pending.take() {
                Some(p) => p,
                None => match self.next_batch() {
                    Ok(None) => break,
                    Ok(Some(b)) => (b, 0),
                    Err(message) => {
                        let e = self.error(message);
                        if chunk.is_empty() {
                            return Err(e);
                        }
                        // Rows so far go out now; the error is reported at the next call.
                        self.pending_error = Some(e);
                        return Ok(Some(chunk));
                    }
                },
            };
            let cols: Vec<Cells<'_>> = self
                .order
                .iter()
                .map(|&c| Cells::new(batch.column(c)))
                .collect();
            let end = (start + max_rows - chunk.len()).min(batch.num_rows());
            let mut i = start;
            while i < end && chunk.text_len() < CHUNK_BYTES {
                self.rows += 1;
                let meta = RowMeta {
                    row: self.rows,
                    line: self.rows + 1,
                    error: None,
                };
                match cols.iter().position(|c| c.len(i) > self.max_cell) {
                    Some(k) => chunk.push_error_row(RowMeta {
                        error: Some(format!(
                            "column `{}` holds more than {} bytes (`--max-cell-bytes`)",
                            self.names.get(k).map_or("?", String::as_str),
                            self.max_cell
                        )),
                        ..meta
                    }),
                    None => {
                        for c in &cols {
                            c.write(i, chunk.text_mut());
                            chunk.end_cell();
                        }
                        chunk.finish_row(meta);
                    }
                }
                i += 1;
            }
            drop(cols);
            if i < batch.num_rows() {
                self.pending = Some((batch, i));
            }
        }
        if chunk.is_empty() {
            Ok(None)
        } else {
            Ok(Some(chunk))
        }
    }

    fn bytes_read(&self) -> u64 {
        if self.total_rows == 0 {
            0
        } else {
            (self.file_bytes as f64 * (self.rows as f64 / self.total_rows as f64)) as u64
        }
    }
}

/// A column of a batch, ready to render cell `i` as text.
struct Cells<'a> {
    array: &'a ArrayRef,
    /// For dictionary columns: the values' renderer and each row's key.
    dict: Option<(Box<Cells<'a>>, Vec<usize>)>,
}

impl<'a> Cells<'a> {
    /// Bytes of cell `i` when it holds text or binary data (other types are small).
    fn len(&self, i: usize) -> usize {
        let a = self.array;
        if a.is_null(i) {
            return 0;
        }
        if let Some((values, keys)) = &self.dict {
            return keys.get(i).map_or(0, |&k| values.len(k));
        }
        match a.data_type() {
            DataType::Utf8 => a.as_string::<i32>().value(i).len(),
            DataType::LargeUtf8 => a.as_string::<i64>().value(i).len(),
            DataType::Utf8View => a.as_string_view().value(i).len(),
            DataType::Binary => a.as_binary::<i32>().value(i).len(),
            DataType::LargeBinary => a.as_binary::<i64>().value(i).len(),
            DataType::BinaryView => a.as_binary_view().value(i).len(),
            _ => 0,
        }
    }

    fn new(array: &'a ArrayRef) -> Cells<'a> {
        let dict = match array.data_type() {
            DataType::Dictionary(_, _) => {
                let d = array.as_any_dictionary();
                Some((Box::new(Cells::new(d.values())), d.normalized_keys()))
            }
            _ => None,
        };
        Cells { array, dict }
    }

    fn write(&self, i: usize, out: &mut String) {
        let a = self.array;
        if a.is_null(i) {
            return;
        }
        if let Some((values, keys)) = &self.dict {
            if let Some(&k) = keys.get(i) {
                values.write(k, out);
            }
            return;
        }
        let _ = match a.data_type() {
            DataType::Utf8 => {
                out.push_str(a.as_string::<i32>().value(i));
                Ok(())
            }
            DataType::LargeUtf8 => {
                out.push_str(a.as_string::<i64>().value(i));
                Ok(())
            }
            DataType::Utf8View => {
                out.push_str(a.as_string_view().value(i));
                Ok(())
            }
            DataType::Binary => {
                out.push_str(std::str::from_utf8(a.as_binary::<i32>().value(i)).unwrap_or(""));
                Ok(())
            }
            DataType::LargeBinary => {
                out.push_str(std::str::from_utf8(a.as_binary::<i64>().value(i)).unwrap_or(""));
                Ok(())
            }
            DataType::BinaryView => {
                out.push_str(std::str::from_utf8(a.as_binary_view().value(i)).unwrap_or(""));
                Ok(())
            }
            DataType::Boolean => write!(out, "{}", a.as_boolean().value(i)),
            DataType::Int8 => write!(out, "{}", a.as_primitive::<Int8Type>().value(i)),
            DataType::Int16 => write!(out, "{}", a.as_primitive::<Int16Type>().value(i)),
            DataType::Int32 => write!(out, "{}", a.as_primitive::<Int32Type>().value(i)),
            DataType::Int64 => write!(out, "{}", a.as_primitive::<Int64Type>().value(i)),
            DataType::UInt8 => write!(out, "{}", a.as_primitive::<UInt8Type>().value(i)),
            DataType::UInt16 => write!(out, "{}", a.as_primitive::<UInt16Type>().value(i)),
            DataType::UInt32 => write!(out, "{}", a.as_primitive::<UInt32Type>().value(i)),
            DataType::UInt64 => write!(out, "{}", a.as_primitive::<UInt64Type>().value(i)),
            // Shortest text that reads back to the same number; integral values without `.0`.
            DataType::Float32 => write!(out, "{}", a.as_primitive::<Float32Type>().value(i)),
            DataType::Float64 => write!(out, "{}", a.as_primitive::<Float64Type>().value(i)),
            DataType::Decimal128(_, scale) => {
                write_decimal(out, a.as_primitive::<Decimal128Type>().value(i), *scale);
                Ok(())
            }
            DataType::Date32 => {
                let days = a.as_primitive::<Date32Type>().value(i);
                match chrono::NaiveDate::from_ymd_opt(1970, 1, 1)
                    .and_then(|d| d.checked_add_signed(chrono::Duration::days(i64::from(days))))
                {
                    Some(d) => write!(out, "{}", d.format("%Y-%m-%d")),
                    None => Ok(()),
                }
            }
            DataType::Timestamp(unit, tz) => {
                let (secs, nanos) = match unit {
                    TimeUnit::Second => (a.as_primitive::<TimestampSecondType>().value(i), 0),
                    TimeUnit::Millisecond => {
                        split(a.as_primitive::<TimestampMillisecondType>().value(i), 1_000)
                    }
                    TimeUnit::Microsecond => split(
                        a.as_primitive::<TimestampMicrosecondType>().value(i),
                        1_000_000,
                    ),
                    TimeUnit::Nanosecond => split(
                        a.as_primitive::<TimestampNanosecondType>().value(i),
                        1_000_000_000,
                    ),
                };
                write_timestamp(out, secs, nanos, tz.is_some());
                Ok(())
            }
            _ => Ok(()),
        };
    }
}

/// (seconds, nanoseconds) of a value counted in `per_sec` units, flooring negatives correctly.
fn split(v: i64, per_sec: i64) -> (i64, u32) {
    let secs = v.div_euclid(per_sec);
    let rem = v.rem_euclid(per_sec);
    (secs, (rem * (1_000_000_000 / per_sec)) as u32)
}

/// With a time zone: an instant, written in UTC with `Z`. Without: a naive wall time.
fn write_timestamp(out: &mut String, secs: i64, nanos: u32, utc: bool) {
    let Some(dt) = chrono::DateTime::from_timestamp(secs, nanos) else {
        return;
    };
    let _ = write!(out, "{}", dt.naive_utc().format("%Y-%m-%dT%H:%M:%S"));
    if nanos > 0 {
        let frac = format!("{nanos:09}");
        out.push('.');
        out.push_str(frac.trim_end_matches('0'));
    }
    if utc {
        out.push('Z');
    }
}

/// Exact decimal text: 1250 with scale 2 → `12.50`.
fn write_decimal(out: &mut String, v: i128, scale: i8) {
    if scale <= 0 {
        let _ = write!(out, "{}", v * 10i128.pow(u32::from(scale.unsigned_abs())));
        return;
    }
    let s = scale as u32;
    let p = 10i128.pow(s);
    if v < 0 {
        out.push('-');
    }
    let a = v.unsigned_abs();
    let p = p.unsigned_abs();
    let _ = write!(out, "{}.{:0width$}", a / p, a % p, width = s as usize);
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{
        BooleanArray, Date32Array, Decimal128Array, DictionaryArray, Float64Array, Int32Array,
        Int64Array, StringArray, TimestampMillisecondArray, TimestampSecondArray, UInt8Array,
    };
    use arrow_schema::{Field, Schema};

    use super::*;

    fn write_file(path: &Path, batch: RecordBatch) {
        let f = File::create(path).unwrap();
        let props = parquet::file::properties::WriterProperties::builder()
            .set_compression(parquet::basic::Compression::SNAPPY)
            .build();
        let mut w = parquet::arrow::ArrowWriter::try_new(f, batch.schema(), Some(props)).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
    }

    fn read_all(p: &Path, cols: &[&str], max: usize) -> Vec<Vec<String>> {
        let cols: Vec<String> = cols.iter().map(|s| s.to_string()).collect();
        let mut s = ParquetSource::open(p, &cols, 1 << 16).unwrap();
        let mut out = Vec::new();
        while let Some(c) = s.next_chunk(Chunk::default(), max).unwrap() {
            for i in 0..c.len() {
                assert_eq!(c.rows[i].line, c.rows[i].row + 1);
                out.push((0..c.width).map(|k| c.cell(i, k).to_string()).collect());
            }
        }
        out
    }

    #[test]
    fn every_type_renders_like_csv_text() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("t.parquet");
        let dict: DictionaryArray<Int32Type> =
            vec![Some("WA"), None, Some("IG")].into_iter().collect();
        let schema = Schema::new(vec![
            Field::new("s", DataType::Utf8, true),
            Field::new("i", DataType::Int64, true),
            Field::new("i32", DataType::Int32, true),
            Field::new("u8", DataType::UInt8, true),
            Field::new("f", DataType::Float64, true),
            Field::new("dec", DataType::Decimal128(10, 2), true),
            Field::new("b", DataType::Boolean, true),
            Field::new("d", DataType::Date32, true),
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Second, Some("UTC".into())),
                true,
            ),
            Field::new(
                "tsn",
                DataType::Timestamp(TimeUnit::Millisecond, None),
                true,
            ),
            Field::new("dict", dict.data_type().clone(), true),
        ]);
        let batch = RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(StringArray::from(vec![Some("a, b"), None, Some("")])),
                Arc::new(Int64Array::from(vec![Some(-5), Some(1_795_176_000), None])),
                Arc::new(Int32Array::from(vec![Some(7), None, Some(0)])),
                Arc::new(UInt8Array::from(vec![Some(255), None, Some(1)])),
                Arc::new(Float64Array::from(vec![Some(12.5), Some(3.0), None])),
                Arc::new(
                    Decimal128Array::from(vec![Some(1250), Some(-5), None])
                        .with_precision_and_scale(10, 2)
                        .unwrap(),
                ),
                Arc::new(BooleanArray::from(vec![Some(true), Some(false), None])),
                Arc::new(Date32Array::from(vec![Some(20_412), None, Some(0)])),
                Arc::new(
                    TimestampSecondArray::from(vec![Some(1_795_176_000), None, Some(0)])
                        .with_timezone("UTC"),
                ),
                Arc::new(TimestampMillisecondArray::from(vec![
                    Some(1_795_176_000_250),
                    None,
                    Some(-1),
                ])),
                Arc::new(dict),
            ],
        )
        .unwrap();
        write_file(&p, batch);
        let rows = read_all(
            &p,
            &[
                "s", "i", "i32", "u8", "f", "dec", "b", "d", "ts", "tsn", "dict",
            ],
            2,
        );
        assert_eq!(
            rows[0],
            [
                "a, b",
                "-5",
                "7",
                "255",
                "12.5",
                "12.50",
                "true",
                "2025-11-20",
                "2026-11-20T12:00:00Z",
                "2026-11-20T12:00:00.25",
                "WA"
            ]
        );
        assert_eq!(
            rows[1],
            [
                "",
                "1795176000",
                "",
                "",
                "3",
                "-0.05",
                "false",
                "",
                "",
                "",
                ""
            ]
        );
        assert_eq!(
            rows[2],
            [
                "",
                "",
                "0",
                "1",
                "",
                "",
                "",
                "1970-01-01",
                "1970-01-01T00:00:00Z",
                "1969-12-31T23:59:59.999",
                "IG"
            ]
        );
    }

    #[test]
    fn projection_order_and_missing_columns() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("p.parquet");
        let schema = Schema::new(vec![
            Field::new("a", DataType::Utf8, false),
            Field::new("b", DataType::Int64, false),
        ]);
        let batch = RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(StringArray::from(vec!["x", "y"])),
                Arc::new(Int64Array::from(vec![1, 2])),
            ],
        )
        .unwrap();
        write_file(&p, batch);
        assert_eq!(
            read_all(&p, &["b", "a"], 10),
            vec![vec!["1", "x"], vec!["2", "y"]]
        );
        assert!(matches!(
            ParquetSource::open(&p, &["zz".to_string()], 1 << 16),
            Err(SourceError::MissingColumns { .. })
        ));
    }

    #[test]
    fn corrupt_files_are_clear_errors() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("bad.parquet");
        std::fs::write(&p, b"PAR1 not really PAR1").unwrap();
        let e = ParquetSource::open(&p, &["a".to_string()], 1 << 16)
            .err()
            .unwrap();
        assert!(matches!(e, SourceError::Parquet { .. }), "{e}");
        assert!(e.to_string().contains("bad.parquet"));
    }

    #[test]
    fn decimals() {
        let mut s = String::new();
        write_decimal(&mut s, 123_456, 3);
        s.push(' ');
        write_decimal(&mut s, -1, 2);
        s.push(' ');
        write_decimal(&mut s, 42, -2);
        assert_eq!(s, "123.456 -0.01 4200");
    }
}
