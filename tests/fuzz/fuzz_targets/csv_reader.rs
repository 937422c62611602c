//! CSV reader: arbitrary bytes (plain or gzip'd), delimiter, cell bound and chunk size → every
//! chunk. Never panics, and every record of the input comes out, in order, exactly once: as a
//! row with its cells, or as an error row saying why (checked against the `csv` crate).
#![no_main]

use std::io::{Read, Write};
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use msgcapi::source::{self, Chunk, Format, ReadOptions, SourceError};

/// The input's first six bytes are its settings, the rest is the file: any CSV file is a seed
/// (its first six bytes become settings, the rest is still CSV).
struct Settings {
    /// `None` sniffs it, like the CLI without `--delimiter`, which takes any ASCII character.
    delimiter: Option<u8>,
    tsv: bool,
    /// Small bounds make the oversized-cell paths reachable with small inputs.
    max_cell: usize,
    max_rows: usize,
    /// Byte `at` of the file is repeated `repeat * 512` times: cells, runs of fields or of
    /// blank lines past the reader's 64 KiB buffer, from small fuzz inputs.
    repeat: usize,
    at: usize,
    /// Read the file gzip'd (as a `.csv.gz`), and maybe cut short (a truncated download).
    gzip: bool,
    truncate: bool,
}

fn settings(b: &[u8; 6]) -> Settings {
    Settings {
        delimiter: match b[0] % 8 {
            0 => None,
            1 => Some(b','),
            2 => Some(b';'),
            3 => Some(b'\t'),
            4 => Some(b'|'),
            _ => Some(b[0] >> 1),
        },
        tsv: b[1] & 1 == 1,
        max_cell: match (b[1] >> 1) % 4 {
            0 => usize::from(b[1] >> 3),
            1 => 64 << 10,
            2 => 1 << 10,
            _ => 16,
        },
        max_rows: usize::from(b[2] % 16) + 1,
        gzip: b[2] & 0x10 != 0,
        truncate: b[2] & 0x20 != 0,
        repeat: usize::from(b[3]) * 512,
        at: usize::from(u16::from_le_bytes([b[4], b[5]])),
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((head, file)) = input.split_first_chunk::<6>() else {
        return;
    };
    let input = settings(head);
    let mut data = file.to_vec();
    if input.repeat > 0 && !data.is_empty() {
        let at = input.at % data.len();
        let run = vec![data[at]; input.repeat];
        data.splice(at..at, run);
    }
    let delimiter = input.delimiter;
    let max_cell = input.max_cell;
    let opts = ReadOptions {
        format: Some(if input.tsv { Format::Tsv } else { Format::Csv }),
        delimiter,
        max_cell_bytes: max_cell,
    };
    let max_rows = input.max_rows;
    let name = Path::new("fuzz.csv");
    // What the reader reads, and the text it should find there.
    let (data, plain) = if input.gzip {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&data).expect("in memory");
        let mut z = gz.finish().expect("in memory");
        if input.truncate {
            z.truncate(z.len() / 2);
        }
        (z, Some(data))
    } else {
        (data, None)
    };
    let bytes = bytes::Bytes::from(data.clone());

    // Open once to learn the header, then again projecting every column it can name.
    let headers = match source::open_bytes(name, bytes.clone(), &[], &opts) {
        Ok(s) => s.headers().to_vec(),
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    let mut columns = Vec::new();
    let mut projection = Vec::new();
    for h in &headers {
        if let Ok(i) = source::resolve_columns(name, &headers, std::slice::from_ref(h)) {
            columns.push(h.clone());
            projection.push(i[0]);
        }
    }
    let mut src = source::open_bytes(name, bytes, &columns, &opts)
        .expect("the columns of the header it just read are found");
    assert_eq!(src.headers(), &headers[..]);

    // Every chunk, until the end or the first error.
    let mut rows: Vec<(u64, Option<String>, Vec<String>)> = Vec::new();
    let mut last_line = 1;
    let mut stopped: Option<SourceError> = None;
    let mut spare = Chunk::default();
    loop {
        match src.next_chunk(spare, max_rows) {
            Ok(None) => break,
            Ok(Some(c)) => {
                assert!(!c.is_empty() && c.len() <= max_rows);
                assert_eq!(c.width, columns.len());
                for i in 0..c.len() {
                    let meta = &c.rows[i];
                    assert_eq!(
                        meta.row,
                        rows.len() as u64 + 1,
                        "rows are numbered 1, 2, ..."
                    );
                    assert!(meta.line > last_line, "a row starts after the one before");
                    last_line = meta.line;
                    let cells: Vec<String> =
                        (0..c.width).map(|k| c.cell(i, k).to_string()).collect();
                    if meta.error.is_some() {
                        assert!(
                            cells.iter().all(String::is_empty),
                            "an error row has no cells"
                        );
                    }
                    rows.push((meta.line, meta.error.clone(), cells));
                }
                spare = c;
            }
            Err(e) => {
                assert!(matches!(e, SourceError::Read { .. }), "{e}");
                stopped = Some(e);
                break;
            }
        }
    }

    if input.gzip && input.truncate {
        assert!(stopped.is_some(), "a truncated gzip must not end cleanly");
    }

    // The same records, read by the `csv` crate: ours must match them one for one.
    let plain = if let Some(plain) = plain {
        plain
    } else if data.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        match flate2::read::MultiGzDecoder::new(&data[..]).read_to_end(&mut out) {
            Ok(_) => out,
            Err(_) => return,
        }
    } else {
        data
    };
    let Some(delimiter) = opts.delimiter.or(input.tsv.then_some(b'\t')) else {
        return; // sniffed: the oracle would have to sniff it the same way
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .from_reader(&plain[..]);
    let records: Vec<csv::ByteRecord> = reader
        .byte_records()
        .map(|r| r.expect("in memory"))
        .collect();
    let data_records = &records[1..];
    if stopped.is_none() {
        assert_eq!(
            rows.len(),
            data_records.len(),
            "every record is a row or an error row"
        );
    } else {
        assert!(rows.len() <= data_records.len());
    }
    for ((line, error, cells), record) in rows.iter().zip(data_records) {
        // The row's line: 1 + the line breaks before its first byte (`\n`, `\r\n` or `\r`).
        let mut at = record.position().map_or(0, |p| p.byte() as usize);
        while matches!(plain.get(at), Some(b'\r' | b'\n')) {
            at += 1;
        }
        let before = &plain[..at];
        let breaks = before
            .iter()
            .enumerate()
            .filter(|&(i, &b)| b == b'\r' || (b == b'\n' && (i == 0 || before[i - 1] != b'\r')));
        assert_eq!(*line, 1 + breaks.count() as u64, "where the row starts");
        let want: Option<Vec<&str>> = if record.len() != headers.len() {
            None
        } else if projection.iter().any(|&c| record[c].len() > max_cell) {
            None
        } else {
            projection
                .iter()
                .map(|&c| std::str::from_utf8(&record[c]).ok())
                .collect()
        };
        match want {
            Some(want) => {
                assert_eq!(error, &None, "line {line}");
                assert_eq!(cells, &want, "line {line}");
            }
            None => assert!(
                error.is_some(),
                "line {line}: {cells:?} should be an error row"
            ),
        }
    }
});
