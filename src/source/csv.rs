//! CSV reader: any delimiter, quoted fields with delimiters and newlines, CRLF, a UTF-8 BOM,
//! gzip (by suffix or magic bytes), stdin. Reads records with `csv_core` straight into one
//! reused buffer, then copies the projected cells into the chunk: no per-cell allocation.
//!
//! Memory is bounded by the limits, never by the input: a cell over `--max-cell-bytes` is not
//! kept (its row is invalid, saying so); a record whose kept cells pass [`MAX_RECORD_BYTES`],
//! or that has more than [`MAX_FIELDS`] fields, makes the input unreadable, naming its line.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{CHUNK_BYTES, Chunk, RowMeta, Source, SourceError, resolve_columns};

/// The most a record may hold once oversized cells are dropped: beyond it, the input is not a
/// CSV file this tool can read (exit 3).
pub const MAX_RECORD_BYTES: usize = 16 << 20;
/// The most fields a record may have.
pub const MAX_FIELDS: usize = 100_000;

/// Counts bytes pulled from the underlying file (compressed bytes for gzip), for the ETA.
struct Counting<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Why a record could not be read.
enum RecordError {
    Io(io::Error),
    /// Too long or too many fields: `what` says which, at `line`.
    TooLong {
        line: u64,
        what: String,
    },
}

impl From<io::Error> for RecordError {
    fn from(e: io::Error) -> Self {
        RecordError::Io(e)
    }
}

/// Records, one at a time, with bounded memory.
struct Records {
    core: csv_core::Reader,
    input: BufReader<Box<dyn Read + Send>>,
    /// The current record's fields, contiguous; oversized fields keep nothing.
    buf: Vec<u8>,
    /// End positions `csv_core` reports (as if nothing had been dropped).
    ends: Vec<usize>,
    /// The current record's fields: range in `buf`, and whether it was too long to keep (then
    /// the range holds at most a tail of it, never read).
    fields: Vec<(usize, usize, bool)>,
    /// 1-based line of the next byte.
    line: u64,
    /// The last byte read was `\r` (a `\n` next ends the same line).
    after_cr: bool,
    max_cell: usize,
}

impl Records {
    fn field(&self, i: usize) -> Option<&[u8]> {
        match *self.fields.get(i)? {
            (_, _, true) => Some(&[]),
            (a, b, false) => self.buf.get(a..b),
        }
    }

    fn oversized(&self, i: usize) -> bool {
        self.fields.get(i).is_some_and(|f| f.2)
    }

    /// Reads the next record; its first line, or `None` at the end of the input.
    fn next(&mut self) -> Result<Option<u64>, RecordError> {
        // Line breaks between records are skipped here (and counted), so that a record's line
        // is where its text starts, blank lines and CRLF included.
        loop {
            let head = self.input.fill_buf()?;
            let n = head
                .iter()
                .take_while(|b| matches!(b, b'\n' | b'\r'))
                .count();
            self.line += line_breaks(&head[..n], &mut self.after_cr);
            let more = n > 0 && n == head.len();
            self.input.consume(n);
            if !more {
                break;
            }
        }
        let start = self.line;
        self.fields.clear();
        if self.buf.is_empty() {
            self.buf.resize(1 << 16, 0);
        }
        if self.ends.is_empty() {
            self.ends.resize(64, 0);
        }
        let (mut outlen, mut endlen, mut dropped, mut oversized) = (0usize, 0usize, 0usize, false);
        loop {
            let input = self.input.fill_buf()?;
            let (res, nin, nout, nend) =
                self.core
                    .read_record(input, &mut self.buf[outlen..], &mut self.ends[endlen..]);
            self.line += line_breaks(&input[..nin], &mut self.after_cr);
            self.input.consume(nin);
            outlen += nout;
            for &e in &self.ends[endlen..endlen + nend] {
                let begin = self.fields.last().map_or(0, |f| f.1);
                let end = e.saturating_sub(dropped).max(begin);
                let long = oversized || end - begin > self.max_cell;
                self.fields.push((begin, end, long));
                oversized = false;
            }
            endlen += nend;
            use csv_core::ReadRecordResult as R;
            match res {
                R::InputEmpty => {}
                R::Record => return Ok(Some(start)),
                R::End => return Ok(None),
                R::OutputFull => {
                    let begin = self.fields.last().map_or(0, |f| f.1);
                    if outlen - begin > self.max_cell {
                        // This cell is too long to keep: what it holds is let go as it comes.
                        dropped += outlen - begin;
                        outlen = begin;
                        oversized = true;
                    } else if self.buf.len() >= MAX_RECORD_BYTES {
                        let what = format!("a record longer than {} MiB", MAX_RECORD_BYTES >> 20);
                        return Err(RecordError::TooLong { line: start, what });
                    } else {
                        let n = (self.buf.len() * 2).min(MAX_RECORD_BYTES);
                        self.buf.resize(n, 0);
                    }
                }
                R::OutputEndsFull => {
                    if self.ends.len() >= MAX_FIELDS {
                        let what = format!("a record with more than {MAX_FIELDS} fields");
                        return Err(RecordError::TooLong { line: start, what });
                    }
                    let n = (self.ends.len() * 2).min(MAX_FIELDS);
                    self.ends.resize(n, 0);
                }
            }
        }
    }
}

/// Line breaks in `bytes`, read right after the bytes before them (`after_cr`: the last of those
/// was `\r`). `\n`, `\r\n` and a lone `\r` count once each: the parser ends a record at any of
/// them, and exports with `\r` alone (old Mac software) show one record per line.
fn line_breaks(bytes: &[u8], after_cr: &mut bool) -> u64 {
    let mut n = 0;
    for &b in bytes {
        n += u64::from(b == b'\r' || (b == b'\n' && !*after_cr));
        *after_cr = b == b'\r';
    }
    n
}

pub struct CsvSource {
    path: PathBuf,
    records: Records,
    headers: Vec<String>,
    /// Input column index per projected column.
    projection: Vec<usize>,
    rows: u64,
    bytes: Arc<AtomicU64>,
    /// A read error met after some rows of a chunk: returned by the next call.
    pending_error: Option<SourceError>,
}

impl CsvSource {
    /// `delimiter: None` sniffs it from the header line: `,` unless the header holds none and
    /// holds `;`, tab or `|` instead (European and database exports). Cells longer than
    /// `max_cell` bytes are not kept.
    pub fn open(
        path: &Path,
        columns: &[String],
        delimiter: Option<u8>,
        max_cell: usize,
    ) -> Result<Self, SourceError> {
        let raw: Box<dyn Read + Send> = if path.as_os_str() == "-" {
            Box::new(io::stdin())
        } else {
            Box::new(File::open(path).map_err(|source| SourceError::Open {
                path: path.to_path_buf(),
                source,
            })?)
        };
        Self::from_reader(path, raw, columns, delimiter, max_cell)
    }

    /// As [`CsvSource::open`], reading `raw` (plain or gzip'd) instead of a file; `path` names
    /// it in messages.
    pub fn from_reader(
        path: &Path,
        raw: Box<dyn Read + Send>,
        columns: &[String],
        delimiter: Option<u8>,
        max_cell: usize,
    ) -> Result<Self, SourceError> {
        let bytes = Arc::new(AtomicU64::new(0));
        let mut buffered = BufReader::with_capacity(
            1 << 18,
            Counting {
                inner: raw,
                count: bytes.clone(),
            },
        );
        // gzip by magic bytes, whatever the name says.
        let is_gzip = {
            let head = buffered.fill_buf().map_err(|source| SourceError::Open {
                path: path.to_path_buf(),
                source,
            })?;
            head.len() >= 2 && head[0] == 0x1f && head[1] == 0x8b
        };
        let mut input: BufReader<Box<dyn Read + Send>> = if is_gzip {
            BufReader::with_capacity(
                1 << 18,
                Box::new(flate2::bufread::MultiGzDecoder::new(buffered)),
            )
        } else {
            BufReader::with_capacity(1 << 18, Box::new(buffered))
        };
        let read_error = |line: u64, message: String| SourceError::Read {
            path: path.to_path_buf(),
            after_row: 0,
            message: format!("line {line}: {message}"),
        };
        let delimiter = match delimiter {
            Some(d) => d,
            None => sniff_delimiter(input.fill_buf().map_err(|e| read_error(1, e.to_string()))?),
        };
        let mut records = Records {
            core: csv_core::ReaderBuilder::new().delimiter(delimiter).build(),
            input,
            buf: Vec::new(),
            ends: Vec::new(),
            fields: Vec::new(),
            line: 1,
            after_cr: false,
            max_cell,
        };
        let got = match records.next() {
            Ok(got) => got,
            Err(RecordError::Io(e)) => return Err(read_error(1, e.to_string())),
            Err(RecordError::TooLong { line, what }) => return Err(read_error(line, what)),
        };
        if got.is_none() {
            return Err(SourceError::NoHeader {
                path: path.to_path_buf(),
            });
        }
        let headers: Vec<String> = (0..records.fields.len())
            .map(|i| {
                let h = String::from_utf8_lossy(records.field(i).unwrap_or_default());
                h.trim_start_matches('\u{feff}').trim().to_string()
            })
            .collect();
        if headers.iter().all(|h| h.is_empty()) {
            return Err(SourceError::NoHeader {
                path: path.to_path_buf(),
            });
        }
        let projection = resolve_columns(path, &headers, columns)?;
        Ok(CsvSource {
            path: path.to_path_buf(),
            records,
            headers,
            projection,
            rows: 0,
            bytes,
            pending_error: None,
        })
    }
}

/// The delimiter of a header line: `,` unless it has none and has `;`, tab or `|`.
fn sniff_delimiter(head: &[u8]) -> u8 {
    let line = head.split(|b| *b == b'\n').next().unwrap_or(head);
    let count = |d: u8| line.iter().filter(|b| **b == d).count();
    if count(b',') > 0 {
        return b',';
    }
    [b';', b'\t', b'|']
        .into_iter()
        .max_by_key(|d| count(*d))
        .filter(|d| count(*d) > 0)
        .unwrap_or(b',')
}

impl Source for CsvSource {
    fn headers(&self) -> &[String] {
        &self.headers
    }

    fn next_chunk(&mut self, spare: Chunk, max_rows: usize) -> Result<Option<Chunk>, SourceError> {
        if let Some(e) = self.pending_error.take() {
            return Err(e);
        }
        let mut chunk = spare.reuse(self.projection.len());
        while chunk.len() < max_rows && chunk.text_len() < CHUNK_BYTES {
            let line = match self.records.next() {
                Ok(Some(line)) => line,
                Ok(None) => break,
                Err(e) => {
                    // I/O (a truncated gzip, a read error) or a record too long: stop with what
                    // was read.
                    let message = match e {
                        RecordError::Io(e) => e.to_string(),
                        RecordError::TooLong { line, what } => format!("line {line}: {what}"),
                    };
                    let err = SourceError::Read {
                        path: self.path.clone(),
                        after_row: self.rows,
                        message,
                    };
                    if chunk.is_empty() {
                        return Err(err);
                    }
                    // Hand out the rows read so far; the error comes back on the next call.
                    self.pending_error = Some(err);
                    return Ok(Some(chunk));
                }
            };
            self.rows += 1;
            let meta = RowMeta {
                row: self.rows,
                line,
                error: None,
            };
            self.push_record(&mut chunk, meta);
        }
        if chunk.is_empty() {
            Ok(None)
        } else {
            Ok(Some(chunk))
        }
    }

    fn bytes_read(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

impl CsvSource {
    /// The current record, as a row of the chunk: its projected cells, or why it has none.
    fn push_record(&self, chunk: &mut Chunk, meta: RowMeta) {
        let r = &self.records;
        let n = r.fields.len();
        if n != self.headers.len() {
            let error = format!("row has {n} fields, header has {}", self.headers.len());
            chunk.push_error_row(RowMeta {
                error: Some(error),
                ..meta
            });
            return;
        }
        if let Some(&c) = self.projection.iter().find(|&&c| r.oversized(c)) {
            let error = format!(
                "column `{}` holds more than {} bytes (`--max-cell-bytes`)",
                self.headers[c], r.max_cell
            );
            chunk.push_error_row(RowMeta {
                error: Some(error),
                ..meta
            });
            return;
        }
        // One UTF-8 check for the whole record instead of one per cell. Fields that are each
        // valid are valid together; a record whose concatenation is valid but splits a
        // character across two fields fails `get` at the boundary and is checked cell by
        // cell, like any record that fails. Only projected cells count: a row's other columns
        // are never read.
        let all = r.fields.last().map_or(0, |f| f.1);
        let whole = r.buf.get(..all).and_then(|b| std::str::from_utf8(b).ok());
        let range = |c: usize| r.fields.get(c).map(|f| f.0..if f.2 { f.0 } else { f.1 });
        if let Some(text) = whole
            && self
                .projection
                .iter()
                .all(|&c| range(c).and_then(|x| text.get(x)).is_some())
        {
            chunk.push_row(
                meta,
                self.projection
                    .iter()
                    .map(|&c| range(c).and_then(|x| text.get(x)).unwrap_or_default()),
            );
            return;
        }
        let as_str = |c: usize| std::str::from_utf8(r.field(c).unwrap_or_default());
        if let Some(&c) = self.projection.iter().find(|&&c| as_str(c).is_err()) {
            let col = &self.headers[c];
            chunk.push_error_row(RowMeta {
                error: Some(format!("invalid UTF-8 in column `{col}`")),
                ..meta
            });
            return;
        }
        chunk.push_row(
            meta,
            self.projection
                .iter()
                .map(|&c| as_str(c).unwrap_or_default()),
        );
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn cols(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn all(src: &mut CsvSource, max: usize) -> (Vec<RowMeta>, Vec<Vec<String>>) {
        let (mut metas, mut cells) = (Vec::new(), Vec::new());
        while let Some(c) = src.next_chunk(Chunk::default(), max).unwrap() {
            for i in 0..c.len() {
                metas.push(c.rows[i].clone());
                cells.push((0..c.width).map(|k| c.cell(i, k).to_string()).collect());
            }
        }
        (metas, cells)
    }

    fn file(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> PathBuf {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    #[test]
    fn quoted_fields_crlf_bom_projection_and_lines() {
        let d = tempfile::tempdir().unwrap();
        let p = file(
            &d,
            "a.csv",
            b"\xef\xbb\xbfid,note,amount\r\n1,\"a, b\",3\r\n2,\"multi\r\nline\",4\r\n3,x,5\r\n",
        );
        let mut s = CsvSource::open(&p, &cols(&["amount", "id"]), Some(b','), 1 << 16).unwrap();
        assert_eq!(s.headers(), ["id", "note", "amount"]);
        let (m, c) = all(&mut s, 2);
        assert_eq!(c, vec![vec!["3", "1"], vec!["4", "2"], vec!["5", "3"]]);
        assert_eq!(
            m.iter().map(|m| (m.row, m.line)).collect::<Vec<_>>(),
            vec![(1, 2), (2, 3), (3, 5)]
        );
    }

    #[test]
    fn a_lone_carriage_return_ends_a_line() {
        // Found by the csv_reader fuzz target: with `\r` alone between records (old Mac
        // exports), every row was said to start on line 1, the header's line.
        let d = tempfile::tempdir().unwrap();
        let p = file(&d, "cr.csv", b"a,b\r1,2\r\r3,\"x\ry\"\r\n4,5\n");
        let mut s = CsvSource::open(&p, &cols(&["a"]), Some(b','), 1 << 16).unwrap();
        let (m, c) = all(&mut s, 10);
        assert_eq!(c, vec![vec!["1"], vec!["3"], vec!["4"]]);
        assert_eq!(m.iter().map(|m| m.line).collect::<Vec<_>>(), vec![2, 4, 6]);
    }

    #[test]
    fn wrong_field_count_and_bad_utf8_become_error_rows() {
        let d = tempfile::tempdir().unwrap();
        let p = file(&d, "b.csv", b"a,b\n1,2\n3\n4,\xff\n5,6,7\n8,9\n");
        let mut s = CsvSource::open(&p, &cols(&["b"]), Some(b','), 1 << 16).unwrap();
        let (m, c) = all(&mut s, 100);
        assert_eq!(m.len(), 5);
        assert_eq!(
            m[1].error.as_deref(),
            Some("row has 1 fields, header has 2")
        );
        assert_eq!(m[2].error.as_deref(), Some("invalid UTF-8 in column `b`"));
        assert_eq!(
            m[3].error.as_deref(),
            Some("row has 3 fields, header has 2")
        );
        assert_eq!(c[4], vec!["9"]);
        assert_eq!(c[1], vec![""]);
    }

    #[test]
    fn a_character_split_across_two_cells_is_invalid_utf8() {
        // "\xc3" then "\xa9": each cell is invalid, though together they spell `é`.
        let d = tempfile::tempdir().unwrap();
        let p = file(&d, "s.csv", b"a,b,c\n\xc3,\xa9,x\nok,\xc3\xa9,y\n");
        let mut s = CsvSource::open(&p, &cols(&["c", "b", "a"]), Some(b','), 1 << 16).unwrap();
        let (m, c) = all(&mut s, 10);
        assert_eq!(m[0].error.as_deref(), Some("invalid UTF-8 in column `b`"));
        assert_eq!(c[1], vec!["y", "é", "ok"]);
        // A bad cell that is not projected does not matter.
        let mut s = CsvSource::open(&p, &cols(&["c"]), Some(b','), 1 << 16).unwrap();
        let (m, c) = all(&mut s, 10);
        assert!(m.iter().all(|m| m.error.is_none()));
        assert_eq!(c, vec![vec!["x"], vec!["y"]]);
    }

    #[test]
    fn gzip_by_magic_and_tab_delimiter() {
        let d = tempfile::tempdir().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"x\ty\n1\t2\n").unwrap();
        let p = file(&d, "no-suffix.dat", &gz.finish().unwrap());
        let mut s = CsvSource::open(&p, &cols(&["y"]), None, 1 << 16).unwrap();
        assert_eq!(all(&mut s, 10).1, vec![vec!["2"]]);
        assert!(s.bytes_read() > 0);
    }

    #[test]
    fn truncated_gzip_is_a_read_error_after_the_rows_read() {
        let d = tempfile::tempdir().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        writeln!(gz, "a,b").unwrap();
        for i in 0..20_000 {
            writeln!(gz, "{i},{}", i * 7).unwrap();
        }
        let body = gz.finish().unwrap();
        let bytes = body[..body.len() / 2].to_vec();
        let p = file(&d, "t.csv.gz", &bytes);
        let mut s = CsvSource::open(&p, &cols(&["a"]), Some(b','), 1 << 16).unwrap();
        let mut rows = 0;
        let err = loop {
            match s.next_chunk(Chunk::default(), 1000) {
                Ok(Some(c)) => rows += c.len(),
                Ok(None) => panic!("a truncated gzip must not end cleanly"),
                Err(e) => break e,
            }
        };
        assert!(matches!(err, SourceError::Read { .. }), "{err}");
        assert!(rows > 0);
    }

    #[test]
    fn delimiter_is_sniffed_from_the_header() {
        assert_eq!(sniff_delimiter(b"a;b;c\n1,5;2;3\n"), b';');
        assert_eq!(sniff_delimiter(b"a\tb\n"), b'\t');
        assert_eq!(sniff_delimiter(b"a|b\n"), b'|');
        assert_eq!(sniff_delimiter(b"a,b;c\n"), b',');
        assert_eq!(sniff_delimiter(b"single\n"), b',');
        let d = tempfile::tempdir().unwrap();
        let p = file(&d, "eu.csv", b"id;amount\n1;12,50\n");
        let mut s = CsvSource::open(&p, &cols(&["amount"]), None, 1 << 16).unwrap();
        assert_eq!(all(&mut s, 10).1, vec![vec!["12,50"]]);
    }

    #[test]
    fn missing_columns_and_empty_file() {
        let d = tempfile::tempdir().unwrap();
        let p = file(&d, "c.csv", b"a,b\n1,2\n");
        match CsvSource::open(&p, &cols(&["a", "zz"]), Some(b','), 1 << 16) {
            Err(SourceError::MissingColumns { missing, .. }) => assert_eq!(missing, ["zz"]),
            _ => panic!("expected MissingColumns"),
        }
        let e = file(&d, "e.csv", b"");
        assert!(matches!(
            CsvSource::open(&e, &cols(&["a"]), Some(b','), 1 << 16),
            Err(SourceError::NoHeader { .. })
        ));
    }
}
