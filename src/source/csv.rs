//! CSV reader: any delimiter, quoted fields with delimiters and newlines, CRLF, a UTF-8 BOM,
//! gzip (by suffix or magic bytes), stdin. Streams `ByteRecord`s straight into the chunk's flat
//! buffer: no per-cell allocation.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{Chunk, RowMeta, Source, SourceError, resolve_columns};
use std::path::{Path, PathBuf};

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

pub struct CsvSource {
    path: PathBuf,
    reader: csv::Reader<BufReader<Box<dyn Read + Send>>>,
    headers: Vec<String>,
    /// Input column index per projected column.
    projection: Vec<usize>,
    record: csv::ByteRecord,
    rows: u64,
    bytes: Arc<AtomicU64>,
    /// A read error met after some rows of a chunk: returned by the next call.
    pending_error: Option<SourceError>,
    /// With CRLF line ends the csv crate reports a record's position before the LF that ends the
    /// previous line, one line early; this corrects it.
    line_fix: u64,
}

impl CsvSource {
    /// `delimiter: None` sniffs it from the header line: `,` unless the header holds none and
    /// holds `;`, tab or `|` instead (European and database exports).
    pub fn open(
        path: &Path,
        columns: &[String],
        delimiter: Option<u8>,
    ) -> Result<Self, SourceError> {
        let bytes = Arc::new(AtomicU64::new(0));
        let raw: Box<dyn Read + Send> = if path.as_os_str() == "-" {
            Box::new(io::stdin())
        } else {
            Box::new(File::open(path).map_err(|source| SourceError::Open {
                path: path.to_path_buf(),
                source,
            })?)
        };
        let mut buffered = BufReader::with_capacity(
            1 << 18,
            Counting {
                inner: raw,
                count: bytes.clone(),
            },
        );
        // gzip by magic bytes, whatever the name says.
        let is_gzip = {
            use std::io::BufRead;
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
        let delimiter = match delimiter {
            Some(d) => d,
            None => {
                use std::io::BufRead;
                let head = input.fill_buf().map_err(|e| SourceError::Read {
                    path: path.to_path_buf(),
                    after_row: 0,
                    message: e.to_string(),
                })?;
                sniff_delimiter(head)
            }
        };
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .flexible(true)
            .has_headers(false)
            .buffer_capacity(1 << 18)
            .from_reader(input);
        let mut header = csv::ByteRecord::new();
        let got = reader
            .read_byte_record(&mut header)
            .map_err(|e| read_error(path, 0, &e))?;
        if !got {
            return Err(SourceError::NoHeader {
                path: path.to_path_buf(),
            });
        }
        let headers: Vec<String> = header
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let s = String::from_utf8_lossy(h);
                let s = if i == 0 {
                    s.trim_start_matches('\u{feff}').to_string()
                } else {
                    s.into_owned()
                };
                s.trim().to_string()
            })
            .collect();
        if headers.iter().all(|h| h.is_empty()) {
            return Err(SourceError::NoHeader {
                path: path.to_path_buf(),
            });
        }
        let projection = resolve_columns(path, &headers, columns)?;
        // After an LF-terminated header the reader stands on line 2; after CRLF still on line 1.
        let line_fix = u64::from(reader.position().line() == 1);
        Ok(CsvSource {
            path: path.to_path_buf(),
            reader,
            headers,
            projection,
            record: csv::ByteRecord::new(),
            rows: 0,
            bytes,
            pending_error: None,
            line_fix,
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

fn read_error(path: &Path, after_row: u64, e: &csv::Error) -> SourceError {
    let message = match e.kind() {
        csv::ErrorKind::Io(io) => io.to_string(),
        _ => e.to_string(),
    };
    SourceError::Read {
        path: path.to_path_buf(),
        after_row,
        message,
    }
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
        while chunk.len() < max_rows {
            match self.reader.read_byte_record(&mut self.record) {
                Ok(false) => break,
                Ok(true) => {}
                Err(e) => {
                    // A record-level UTF-8 error cannot happen with ByteRecord; anything else here
                    // is I/O (a truncated gzip, a read error): stop with what was read.
                    let err = read_error(&self.path, self.rows, &e);
                    if chunk.is_empty() {
                        return Err(err);
                    }
                    // Hand out the rows read so far; the error comes back on the next call.
                    self.pending_error = Some(err);
                    return Ok(Some(chunk));
                }
            }
            self.rows += 1;
            let line = self
                .record
                .position()
                .map(|p| p.line() + self.line_fix)
                .unwrap_or(0);
            let meta = RowMeta {
                row: self.rows,
                line,
                error: None,
            };
            if self.record.len() != self.headers.len() {
                let error = format!(
                    "row has {} fields, header has {}",
                    self.record.len(),
                    self.headers.len()
                );
                chunk.push_error_row(RowMeta {
                    error: Some(error),
                    ..meta
                });
                continue;
            }
            // One UTF-8 check for the whole record instead of one per cell. Fields that are
            // each valid are valid together; a record whose concatenation is valid but splits
            // a character across two fields fails `get` at the boundary and is checked cell by
            // cell, like any record that fails. Only projected cells count: a row's other
            // columns are never read.
            let record = &self.record;
            let whole = std::str::from_utf8(record.as_slice()).ok();
            let cells_ok = whole.is_some_and(|text| {
                self.projection
                    .iter()
                    .all(|&c| record.range(c).and_then(|r| text.get(r)).is_some())
            });
            if let (true, Some(text)) = (cells_ok, whole) {
                let cell = |c: usize| record.range(c).and_then(|r| text.get(r));
                chunk.push_row(
                    meta,
                    self.projection.iter().map(|&c| cell(c).unwrap_or_default()),
                );
                continue;
            }
            let bad = self
                .projection
                .iter()
                .position(|&c| std::str::from_utf8(&record[c]).is_err());
            if let Some(k) = bad {
                let col = &self.headers[self.projection[k]];
                chunk.push_error_row(RowMeta {
                    error: Some(format!("invalid UTF-8 in column `{col}`")),
                    ..meta
                });
                continue;
            }
            chunk.push_row(
                meta,
                self.projection
                    .iter()
                    .map(|&c| std::str::from_utf8(&record[c]).unwrap_or_default()),
            );
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
        let mut s = CsvSource::open(&p, &cols(&["amount", "id"]), Some(b',')).unwrap();
        assert_eq!(s.headers(), ["id", "note", "amount"]);
        let (m, c) = all(&mut s, 2);
        assert_eq!(c, vec![vec!["3", "1"], vec!["4", "2"], vec!["5", "3"]]);
        assert_eq!(
            m.iter().map(|m| (m.row, m.line)).collect::<Vec<_>>(),
            vec![(1, 2), (2, 3), (3, 5)]
        );
    }

    #[test]
    fn wrong_field_count_and_bad_utf8_become_error_rows() {
        let d = tempfile::tempdir().unwrap();
        let p = file(&d, "b.csv", b"a,b\n1,2\n3\n4,\xff\n5,6,7\n8,9\n");
        let mut s = CsvSource::open(&p, &cols(&["b"]), Some(b',')).unwrap();
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
        let mut s = CsvSource::open(&p, &cols(&["c", "b", "a"]), Some(b',')).unwrap();
        let (m, c) = all(&mut s, 10);
        assert_eq!(m[0].error.as_deref(), Some("invalid UTF-8 in column `b`"));
        assert_eq!(c[1], vec!["y", "é", "ok"]);
        // A bad cell that is not projected does not matter.
        let mut s = CsvSource::open(&p, &cols(&["c"]), Some(b',')).unwrap();
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
        let mut s = CsvSource::open(&p, &cols(&["y"]), None).unwrap();
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
        let mut s = CsvSource::open(&p, &cols(&["a"]), Some(b',')).unwrap();
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
        let mut s = CsvSource::open(&p, &cols(&["amount"]), None).unwrap();
        assert_eq!(all(&mut s, 10).1, vec![vec!["12,50"]]);
    }

    #[test]
    fn missing_columns_and_empty_file() {
        let d = tempfile::tempdir().unwrap();
        let p = file(&d, "c.csv", b"a,b\n1,2\n");
        match CsvSource::open(&p, &cols(&["a", "zz"]), Some(b',')) {
            Err(SourceError::MissingColumns { missing, .. }) => assert_eq!(missing, ["zz"]),
            _ => panic!("expected MissingColumns"),
        }
        let e = file(&d, "e.csv", b"");
        assert!(matches!(
            CsvSource::open(&e, &cols(&["a"]), Some(b',')),
            Err(SourceError::NoHeader { .. })
        ));
    }
}
