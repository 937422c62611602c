//! Damaged and hostile input: damaged files never end a run as if they were complete, memory
//! stays bounded whatever the input holds, endpoints that misbehave get nothing of ours (no
//! redirect followed, no token echoed back into a report), and seeded mutations of every
//! input never make msgcapi panic.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use crate::util::*;

/// `validate` of mappings/mixed.yaml over `inputs` (relative to the work dir), quiet, with a
/// report and a summary.
fn validate(w: &Workdir, inputs: &[&str], extra: &[&str]) -> std::process::Output {
    w.copy("mappings/mixed.yaml");
    let mut args = vec![
        "validate",
        "--mapping",
        "mixed.yaml",
        "--now",
        NOW,
        "--report",
        "report.csv",
        "--summary-json",
        "summary.json",
        "--quiet",
    ];
    args.extend_from_slice(extra);
    args.extend_from_slice(inputs);
    w.run(&args)
}

/// `send` of mappings/mixed.yaml to `endpoint`, quiet, with a report and a summary.
fn send(w: &Workdir, endpoint: &str, input: &str, extra: &[&str]) -> std::process::Output {
    w.copy("mappings/mixed.yaml");
    let mut args = vec![
        "send",
        "--mapping",
        "mixed.yaml",
        "--now",
        NOW,
        "--endpoint",
        endpoint,
        "--report",
        "report.csv",
        "--summary-json",
        "summary.json",
        "--quiet",
        "--backoff-base-ms",
        "1",
        "--max-retries",
        "2",
        "--timeout",
        "5",
    ];
    args.extend_from_slice(extra);
    args.push(input);
    w.cmd(&args)
        .env("MSGCAPI_ACCESS_TOKEN", TOKEN)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

fn no_panic(out: &std::process::Output, what: &str) {
    let err = stderr(out);
    assert!(!err.contains("panicked"), "{what}: {err}");
    assert!(!err.contains("internal error"), "{what}: {err}");
    assert!(code(out) != 101, "{what}: exit 101: {err}");
}

/// A tiny seeded generator, so every mutation test is the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// A copy of `bytes` with a few bytes flipped, inserted or deleted.
fn mutate(bytes: &[u8], rng: &mut Rng, from: usize) -> Vec<u8> {
    let mut b = bytes.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = from + rng.below(b.len().saturating_sub(from));
        match rng.below(4) {
            0 if at < b.len() => b[at] ^= 1 << rng.below(8),
            1 if at < b.len() => b[at] = rng.next() as u8,
            2 => b.insert(at.min(b.len()), rng.next() as u8),
            _ if at < b.len() => {
                b.remove(at);
            }
            _ => {}
        }
    }
    b
}

/// Records in a CSV file as the `csv` crate counts them (the header excluded).
fn csv_records(bytes: &[u8]) -> usize {
    csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(bytes)
        .byte_records()
        .filter(Result::is_ok)
        .count()
}

#[test]
fn mutated_csv_and_gzip_never_panic_and_report_every_record() {
    let original = std::fs::read(root().join("samples/mixed.csv")).unwrap();
    let mut rng = Rng(0x5eed_0001);
    for case in 0..40 {
        let w = Workdir::new();
        let bytes = mutate(&original, &mut rng, 0);
        w.write("m.csv", "");
        std::fs::write(w.path("m.csv"), &bytes).unwrap();
        let out = validate(&w, &["m.csv"], &["--delimiter", ","]);
        no_panic(&out, &format!("csv case {case}"));
        match code(&out) {
            0 | 1 => {
                let rows = report_rows(&w.read("report.csv")).len();
                assert_eq!(rows, csv_records(&bytes), "csv case {case}");
            }
            2 | 3 => {}
            c => panic!("csv case {case}: exit {c}: {}", stderr(&out)),
        }
    }
    // The same export gzipped, its compressed bytes damaged.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&original).unwrap();
    let gz = gz.finish().unwrap();
    let mut codes = std::collections::BTreeSet::new();
    for case in 0..30 {
        let w = Workdir::new();
        std::fs::write(w.path("m.csv.gz"), mutate(&gz, &mut rng, 10)).unwrap();
        let out = validate(&w, &["m.csv.gz"], &[]);
        no_panic(&out, &format!("gzip case {case}"));
        assert!(
            matches!(code(&out), 0..=3),
            "gzip case {case}: {}",
            stderr(&out)
        );
        if w.path("report.csv").exists() {
            // Every row read is reported, however the damage decoded.
            let summary: serde_json::Value = serde_json::from_str(&w.read("summary.json")).unwrap();
            let rows = report_rows(&w.read("report.csv")).len();
            assert_eq!(
                Some(rows as u64),
                summary["rows"].as_u64(),
                "gzip case {case}"
            );
        }
        codes.insert(code(&out));
    }
    assert!(codes.contains(&3), "some damage is detected: {codes:?}");
}

#[test]
fn mutated_mappings_never_panic() {
    let original = std::fs::read(root().join("mappings/mixed.yaml")).unwrap();
    let mut rng = Rng(0x5eed_0002);
    for case in 0..40 {
        let w = Workdir::new();
        w.copy("samples/mixed.csv");
        std::fs::write(w.path("m.yaml"), mutate(&original, &mut rng, 0)).unwrap();
        let out = w.run(&[
            "validate",
            "--mapping",
            "m.yaml",
            "--now",
            NOW,
            "--report",
            "r.csv",
            "--quiet",
            "mixed.csv",
        ]);
        no_panic(&out, &format!("mapping case {case}"));
        assert!(
            matches!(code(&out), 0..=2),
            "mapping case {case}: {}",
            stderr(&out)
        );
        if code(&out) < 2 {
            assert_eq!(
                report_rows(&w.read("r.csv")).len(),
                18,
                "mapping case {case}"
            );
        }
    }
}

#[test]
fn a_damaged_parquet_file_is_exit_3_never_a_silent_end() {
    let original = std::fs::read(root().join("samples/whatsapp.parquet")).unwrap();
    let mut rng = Rng(0x5eed_0003);
    let mut codes = std::collections::BTreeSet::new();
    for case in 0..60 {
        let w = Workdir::new();
        // Past the `PAR1` magic: the data pages, the footer and its length.
        std::fs::write(w.path("w.parquet"), mutate(&original, &mut rng, 4)).unwrap();
        w.copy("mappings/whatsapp.yaml");
        let out = w.run(&[
            "validate",
            "--mapping",
            "whatsapp.yaml",
            "--now",
            NOW,
            "--report",
            "report.csv",
            "--quiet",
            "w.parquet",
        ]);
        no_panic(&out, &format!("parquet case {case}"));
        let rows = w
            .path("report.csv")
            .exists()
            .then(|| report_rows(&w.read("report.csv")).len());
        match code(&out) {
            // Read to the end: every row of the file is reported.
            0 | 1 => assert_eq!(rows, Some(12), "parquet case {case}"),
            3 => {
                assert!(rows.unwrap_or(0) <= 12, "parquet case {case}");
                assert!(stderr(&out).contains("w.parquet"), "{}", stderr(&out));
            }
            c => panic!("parquet case {case}: exit {c}: {}", stderr(&out)),
        }
        codes.insert(code(&out));
    }
    assert!(codes.contains(&3), "some damage is detected: {codes:?}");
}

/// The mixed export's columns as Parquet: `rows` rows (`make(i, column)` gives a cell), row
/// groups of `group` rows, with `codec`.
fn write_parquet(
    path: &Path,
    rows: usize,
    group: usize,
    codec: parquet::basic::Compression,
    make: impl Fn(usize, &str) -> String,
) {
    use arrow_array::{ArrayRef, RecordBatch, builder::StringBuilder};
    use arrow_schema::{DataType, Field, Schema};
    let names: Vec<&str> = MIXED_HEADER.split(',').collect();
    let schema = Arc::new(Schema::new(
        names
            .iter()
            .map(|n| Field::new(*n, DataType::Utf8, true))
            .collect::<Vec<_>>(),
    ));
    let props = parquet::file::properties::WriterProperties::builder()
        .set_compression(codec)
        .set_max_row_group_size(group)
        .build();
    let f = std::fs::File::create(path).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(f, schema.clone(), Some(props)).unwrap();
    for start in (0..rows).step_by(group) {
        let arrays: Vec<ArrayRef> = names
            .iter()
            .map(|n| {
                let mut b = StringBuilder::new();
                for i in start..(start + group).min(rows) {
                    b.append_value(make(i, n));
                }
                Arc::new(b.finish()) as ArrayRef
            })
            .collect();
        w.write(&RecordBatch::try_new(schema.clone(), arrays).unwrap())
            .unwrap();
        w.flush().unwrap();
    }
    w.close().unwrap();
}

/// Cells of a valid WhatsApp lead, row `i`.
fn lead(i: usize, column: &str) -> String {
    match column {
        "chan" => "WA".into(),
        "stage" => "lead".into(),
        "occurred_at" => "2026-11-19T10:00:00Z".into(),
        "conv_id" => format!("pq-{i}"),
        "dataset" => "1234567890".into(),
        "waba_id" => "102290129340398".into(),
        "click_id" => format!("clk-{i}"),
        _ => String::new(),
    }
}

#[test]
fn damage_in_the_last_row_group_keeps_the_rows_before_it() {
    let w = Workdir::new();
    let p = w.path("g.parquet");
    write_parquet(
        &p,
        300,
        100,
        parquet::basic::Compression::UNCOMPRESSED,
        lead,
    );
    // Garble the data pages of the last row group (its column chunks start past the first two).
    let meta = parquet::file::reader::SerializedFileReader::new(std::fs::File::open(&p).unwrap())
        .map(|r| parquet::file::reader::FileReader::metadata(&r).clone())
        .unwrap();
    let last = meta.row_group(2);
    let (start, len) = last.columns()[3].byte_range();
    let mut bytes = std::fs::read(&p).unwrap();
    for b in &mut bytes[start as usize..(start + len) as usize] {
        *b = 0xA5;
    }
    std::fs::write(&p, &bytes).unwrap();
    let out = validate(&w, &["g.parquet"], &[]);
    no_panic(&out, "last row group");
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let rows = report_rows(&w.read("report.csv"));
    assert_eq!(rows.len(), 200, "the first two row groups are reported");
    assert!(rows.iter().all(|r| &r[3] == "valid"));
    let err = stderr(&out);
    assert!(
        err.contains("g.parquet") && err.contains("after row 200"),
        "{err}"
    );
}

#[test]
fn brotli_parquet_is_read() {
    let w = Workdir::new();
    let codec = parquet::basic::Compression::BROTLI(Default::default());
    write_parquet(&w.path("b.parquet"), 10, 10, codec, lead);
    let out = validate(&w, &["b.parquet"], &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(report_rows(&w.read("report.csv")).len(), 10);
}

#[test]
fn a_300_mb_cell_in_a_tiny_gzip_is_an_invalid_row_in_bounded_memory() {
    let w = Workdir::new();
    let f = std::fs::File::create(w.path("big.csv.gz")).unwrap();
    let mut gz = flate2::write::GzEncoder::new(f, flate2::Compression::default());
    let csv = valid_csv(3, "big");
    let mut lines = csv.lines();
    writeln!(gz, "{}", lines.next().unwrap()).unwrap();
    writeln!(gz, "{}", lines.next().unwrap()).unwrap();
    // Row 2: its email cell (column 12) holds 300 MB.
    let cells: Vec<&str> = lines.next().unwrap().split(',').collect();
    gz.write_all(format!("{},", cells[..11].join(",")).as_bytes())
        .unwrap();
    let mb = vec![b'a'; 1 << 20];
    for _ in 0..300 {
        gz.write_all(&mb).unwrap();
    }
    writeln!(gz, ",{}", cells[12..].join(",")).unwrap();
    writeln!(gz, "{}", lines.next().unwrap()).unwrap();
    gz.finish().unwrap();
    assert!(std::fs::metadata(w.path("big.csv.gz")).unwrap().len() < 2_000_000);
    let out = validate(&w, &["big.csv.gz"], &[]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let rows = report_rows(&w.read("report.csv"));
    let statuses: Vec<&str> = rows.iter().map(|r| &r[3]).collect();
    assert_eq!(statuses, ["valid", "invalid", "valid"]);
    assert!(rows[1][4].contains("holds more than 65536 bytes (`--max-cell-bytes`)"));
    let peak = peak_rss_mb(&w.path("summary.json"));
    assert!(peak > 0.0 && peak <= 200.0, "peak RSS {peak} MB");
}

#[test]
fn parquet_with_megabyte_cells_is_read_in_bounded_memory() {
    let w = Workdir::new();
    let cell = "x".repeat(1 << 20);
    let codec = parquet::basic::Compression::ZSTD(Default::default());
    write_parquet(&w.path("wide.parquet"), 300, 60, codec, |i, c| {
        if c == "order_ref" {
            cell.clone()
        } else {
            lead(i, c)
        }
    });
    let out = validate(&w, &["wide.parquet"], &[]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let rows = report_rows(&w.read("report.csv"));
    assert_eq!(rows.len(), 300);
    assert!(
        rows.iter().all(|r| &r[3] == "invalid"
            && r[4].contains("column `order_ref` holds more than 65536 bytes"))
    );
    let peak = peak_rss_mb(&w.path("summary.json"));
    assert!(peak > 0.0 && peak <= 200.0, "peak RSS {peak} MB");
}

#[test]
fn a_record_beyond_the_bounds_makes_the_input_unreadable_naming_its_line() {
    let w = Workdir::new();
    let csv = valid_csv(3, "r");
    let mut lines: Vec<String> = csv.lines().map(String::from).collect();
    // Line 3: 300 extra cells of 60 KB (each under the cell limit, 18 MB together).
    let wide = format!(
        "{}{}",
        lines[2],
        format!(",{}", "y".repeat(60_000)).repeat(300)
    );
    lines[2] = wide;
    w.write("wide.csv", &(lines.join("\n") + "\n"));
    let out = validate(&w, &["wide.csv"], &[]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("line 3: a record longer than 16 MiB"), "{err}");
    assert_eq!(report_rows(&w.read("report.csv")).len(), 1);
    // A record of more fields than any export has.
    let mut lines: Vec<String> = csv.lines().map(String::from).collect();
    lines[1].push_str(&",".repeat(150_000));
    w.write("many.csv", &(lines.join("\n") + "\n"));
    let out = validate(&w, &["many.csv"], &[]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("line 2: a record with more than 100000 fields"),
        "{}",
        stderr(&out)
    );
}

/// An endpoint whose answers are 200 MB long: read no further than 16 MiB.
#[test]
fn an_answer_over_16_mib_is_read_no_further() {
    for (status, chunked, want) in [
        ("200 OK", false, "unknown"),
        ("200 OK", true, "unknown"),
        ("500 Internal Server Error", true, "failed"),
    ] {
        let server = RawServer::start(move |_, _| {
            let mut r = format!("HTTP/1.1 {status}\r\nConnection: close\r\n").into_bytes();
            let mb = vec![b'7'; 1 << 20];
            if chunked {
                r.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
                for _ in 0..200 {
                    r.extend_from_slice(format!("{:x}\r\n", mb.len()).as_bytes());
                    r.extend_from_slice(&mb);
                    r.extend_from_slice(b"\r\n");
                }
                r.extend_from_slice(b"0\r\n\r\n");
            } else {
                r.extend_from_slice(format!("Content-Length: {}\r\n\r\n", 200 << 20).as_bytes());
                for _ in 0..200 {
                    r.extend_from_slice(&mb);
                }
            }
            r
        });
        let w = Workdir::new();
        w.write("in.csv", &one_dataset(&valid_csv(5, "big")));
        let out = send(&w, &server.url, "in.csv", &[]);
        no_panic(&out, status);
        assert_eq!(code(&out), 1, "{status}: {}", stderr(&out));
        let rows = report_rows(&w.read("report.csv"));
        assert!(rows.iter().all(|r| &r[3] == want), "{status}: {rows:?}");
        assert!(rows[0][4].contains("over 16 MiB"), "{}", &rows[0][4]);
        let peak = peak_rss_mb(&w.path("summary.json"));
        assert!(peak > 0.0 && peak <= 200.0, "{status}: peak RSS {peak} MB");
    }
}

/// A redirect would re-post the body, token included, to its `Location`: never followed.
#[test]
fn redirects_are_never_followed() {
    let elsewhere = RawServer::start(|_, _| http_response("200 OK", &[], r#"{"id": "1"}"#));
    let location = format!("{}/v24.0/1234567890/events", elsewhere.url);
    for status in [
        "307 Temporary Redirect",
        "302 Found",
        "308 Permanent Redirect",
    ] {
        let loc = location.clone();
        let redirecting =
            RawServer::start(move |_, _| http_response(status, &[("Location", &loc)], ""));
        let w = Workdir::new();
        w.write("in.csv", &one_dataset(&valid_csv(5, "rd")));
        let out = send(&w, &redirecting.url, "in.csv", &[]);
        no_panic(&out, status);
        assert_eq!(code(&out), 3, "{status}: {}", stderr(&out));
        let rows = report_rows(&w.read("report.csv"));
        assert!(rows.iter().all(|r| &r[3] == "failed"), "{rows:?}");
        assert!(rows[0][4].contains("redirect"), "{}", &rows[0][4]);
        assert!(stderr(&out).contains("never follows redirects"));
        assert_eq!(redirecting.count(), 1, "one request, then the run stops");
        for create in [false, true] {
            let mut args = vec!["dataset", "--page-id", "1", "--endpoint", &redirecting.url];
            if create {
                args.push("--create");
            }
            let out = w
                .cmd(&args)
                .env("MSGCAPI_ACCESS_TOKEN", TOKEN)
                .output()
                .unwrap();
            assert_eq!(code(&out), 3, "{}", stderr(&out));
        }
    }
    assert_eq!(elsewhere.count(), 0, "nothing ever reached the Location");
}

/// An endpoint that echoes the request (token included) in its error message.
#[test]
fn text_from_the_endpoint_is_scrubbed_of_secrets() {
    let server = RawServer::start(|n, req| {
        let echo = String::from_utf8_lossy(&req.body).into_owned();
        let (code, status) = if n < 2 {
            (100, "400 Bad Request")
        } else {
            (190, "400 Bad Request")
        };
        let body = serde_json::json!({"error": {"message": format!("bad request: {echo}"), "type": "OAuthException", "code": code, "fbtrace_id": echo}});
        http_response(status, &[], &body.to_string())
    });
    let w = Workdir::new();
    w.write("in.csv", &one_dataset(&valid_csv(4, "echo")));
    w.write("secret.txt", "app-secret-0f0f0f0f0f\n");
    let out = send(
        &w,
        &server.url,
        "in.csv",
        &["--app-secret-file", "secret.txt"],
    );
    no_panic(&out, "echo");
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let proof = msgcapi::secret::Secret::appsecret_proof(
        &msgcapi::secret::Secret::new(TOKEN),
        &msgcapi::secret::Secret::new("app-secret-0f0f0f0f0f"),
    );
    let everything = format!(
        "{}{}{}{}",
        stderr(&out),
        String::from_utf8_lossy(&out.stdout),
        w.read("report.csv"),
        w.read("summary.json")
    );
    for secret in [TOKEN, "app-secret-0f0f0f0f0f", proof.as_str()] {
        assert!(
            !everything.contains(secret),
            "`{secret}` leaked:\n{everything}"
        );
    }
    assert!(everything.contains("***"), "the echo is there, masked");
    // The token travels in the body only, never in a URL or a header.
    let heads = server.heads.lock().unwrap().join("\n");
    assert!(heads.starts_with("POST /v24.0/"), "{heads}");
    for secret in [TOKEN, proof.as_str()] {
        assert!(
            !heads.contains(secret),
            "in a request line or header: {heads}"
        );
    }
}

#[test]
fn a_mapping_cannot_read_the_token() {
    let w = Workdir::new();
    w.write("in.csv", &valid_csv(2, "t"));
    let mixed = std::fs::read_to_string(root().join("mappings/mixed.yaml")).unwrap();
    // By name.
    w.write(
        "named.yaml",
        &mixed.replace(
            "order_id: {column: order_ref}",
            "order_id: {env: MSGCAPI_ACCESS_TOKEN}",
        ),
    );
    let out = w
        .cmd(&[
            "validate",
            "--mapping",
            "named.yaml",
            "--now",
            NOW,
            "in.csv",
        ])
        .env("MSGCAPI_ACCESS_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("holds a secret"), "{}", stderr(&out));
    // Under another name.
    w.write(
        "copied.yaml",
        &mixed.replace(
            "order_id: {column: order_ref}",
            "order_id: {env: ORDER_PREFIX}",
        ),
    );
    let out = w
        .cmd(&["send", "--mapping", "copied.yaml", "--now", NOW, "in.csv"])
        .env("MSGCAPI_ACCESS_TOKEN", TOKEN)
        .env("ORDER_PREFIX", TOKEN)
        .output()
        .unwrap();
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("holds the access token"));
    assert!(!stderr(&out).contains(TOKEN));
}

/// An endpoint answering garbage, seeded: statuses, bodies, headers. The run always ends with
/// a documented exit code and a report line for every row.
#[test]
fn garbage_answers_never_panic_and_every_row_is_reported() {
    let answers = [
        ("200 OK", "", ""),
        ("200 OK", "{\"events_received\": -1}", ""),
        (
            "200 OK",
            "{\"events_received\": 99999999999999999999999}",
            "",
        ),
        ("200 OK", "not json at all", ""),
        ("400 Bad Request", "{\"error\": {\"code\": \"ten\"}}", ""),
        (
            "400 Bad Request",
            "{\"error\": {\"code\": 4}}",
            "999999999999999999999",
        ),
        (
            "429 Too Many Requests",
            "{}",
            "Sun, 06 Nov 1994 08:49:37 GMT",
        ),
        ("503 Service Unavailable", "{\"error\": []}", "-5"),
        (
            "200 OK",
            "{\"events_received\": 5, \"fbtrace_id\": {\"a\": 1}}",
            "",
        ),
        ("418 I'm a teapot", "\u{0}\u{1}\u{2}", ""),
        ("200 OK", "{\"events_received\": 5}", "1e999"),
    ];
    let mut rng = Rng(0x5eed_0004);
    for case in 0..12 {
        let picks: Vec<usize> = (0..64).map(|_| rng.below(answers.len())).collect();
        let server = RawServer::start(move |n, _| {
            let (status, body, retry_after) = answers[picks[n % picks.len()]];
            let usage = "{\"1234567890\": [{\"call_count\": \"x\", \"estimated_time_to_regain_access\": 1e300}]}";
            let mut headers = vec![("X-Business-Use-Case-Usage", usage), ("X-App-Usage", "[]")];
            if !retry_after.is_empty() {
                headers.push(("Retry-After", retry_after));
            }
            http_response(status, &headers, body)
        });
        let w = Workdir::new();
        w.write("in.csv", &one_dataset(&valid_csv(5, "g")));
        let out = send(&w, &server.url, "in.csv", &["--max-retry-time", "3s"]);
        no_panic(&out, &format!("answers case {case}"));
        assert!(
            matches!(code(&out), 0 | 1 | 3),
            "answers case {case}: {}",
            stderr(&out)
        );
        assert_eq!(
            report_rows(&w.read("report.csv")).len(),
            5,
            "answers case {case}"
        );
    }
}
