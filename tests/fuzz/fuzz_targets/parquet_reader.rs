//! Parquet reader: arbitrary bytes and chunk size → open, then every chunk. The decoders run
//! behind `msgcapi::panic::guarded`; this target checks that no panic escapes our API (nothing
//! here catches one), and that rows come out numbered 1, 2, ... with readable cells.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use msgcapi::source::{self, Chunk, Format, ReadOptions, SourceError};

fuzz_target!(
    init: {
        // libfuzzer-sys's panic hook aborts on every panic, even one `guarded` catches. msgcapi's
        // own hook (the binary's) is silent inside `guarded` and prints one line otherwise; an
        // unguarded panic then unwinds to libfuzzer-sys, which aborts: a crash, as it should be.
        msgcapi::panic::install_hook();
    },
    |data: &[u8]| {
    // The file is the input as is, so that seeds are plain Parquet files. The settings come from
    // its length (its first and last bytes are the `PAR1` magic in every readable file).
    let max_rows = data.len() % 7 + 1;
    let max_cell = [0, 8, 64 << 10][data.len() / 7 % 3];
    let opts = ReadOptions {
        format: Some(Format::Parquet),
        delimiter: None,
        max_cell_bytes: max_cell,
    };
    let name = Path::new("fuzz.parquet");
    let bytes = bytes::Bytes::copy_from_slice(data);

    let headers = match source::open_bytes(name, bytes.clone(), &[], &opts) {
        Ok(s) => s.headers().to_vec(),
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    // Every column it can name (a column whose type we do not read is an error at open, so
    // also try the first readable one alone).
    let columns: Vec<String> = headers
        .iter()
        .filter(|h| source::resolve_columns(name, &headers, std::slice::from_ref(*h)).is_ok())
        .cloned()
        .collect();
    let mut tries = vec![columns.clone()];
    tries.extend(columns.iter().map(|c| vec![c.clone()]));
    tries.truncate(4);
    for columns in tries {
        let mut src = match source::open_bytes(name, bytes.clone(), &columns, &opts) {
            Ok(s) => s,
            Err(e) => {
                assert!(
                    matches!(e, SourceError::Parquet { .. }),
                    "columns it just listed are found: {e}"
                );
                continue;
            }
        };
        let mut n = 0u64;
        let mut spare = Chunk::default();
        loop {
            match src.next_chunk(spare, max_rows) {
                Ok(None) => break,
                Ok(Some(c)) => {
                    assert!(!c.is_empty() && c.len() <= max_rows);
                    assert_eq!(c.width, columns.len());
                    for i in 0..c.len() {
                        n += 1;
                        assert_eq!(c.rows[i].row, n);
                        assert_eq!(c.rows[i].line, n + 1);
                        for k in 0..c.width {
                            let cell = c.cell(i, k);
                            if c.rows[i].error.is_some() {
                                assert!(cell.is_empty());
                            } else {
                                assert!(cell.len() <= max_cell.max(64), "{cell:?}");
                            }
                        }
                    }
                    spare = c;
                }
                Err(e) => {
                    assert!(matches!(e, SourceError::Read { .. }), "{e}");
                    let _ = e.to_string();
                    // After an error, nothing more comes.
                    assert!(matches!(src.next_chunk(Chunk::default(), max_rows), Ok(None)));
                    break;
                }
            }
        }
    }
    }
);
