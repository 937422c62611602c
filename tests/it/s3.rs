//! Inputs and outputs in object storage: the real binary against a real S3 implementation
//! (s3s-fs, an S3 server over a directory) started on loopback by the test.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::util::*;

pub use crate::s3_server::S3Server;
use crate::s3_server::SECRET_KEY;

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).expect("gzip");
    e.finish().expect("gzip")
}

fn sample(name: &str) -> Vec<u8> {
    std::fs::read(root().join("samples").join(name)).expect("sample")
}

fn mapping() -> String {
    root().join("mappings/mixed.yaml").display().to_string()
}

/// `validate` with the server's environment.
/// `msgcapi validate --mapping mixed.yaml --now NOW ARGS...`, stdin closed, no store
/// environment (the caller adds what the test needs).
fn validate_cmd(w: &Workdir, args: &[&str]) -> Command {
    let m = mapping();
    let mut c = w.cmd(&["validate", "--mapping", &m, "--now", NOW]);
    c.args(args).stdin(Stdio::null());
    c
}

/// [`validate_cmd`] with the S3 server's environment, run to its end.
fn validate(w: &Workdir, s3: &S3Server, args: &[&str]) -> Output {
    let mut c = validate_cmd(w, args);
    // Temporary files of this run only, to see that none is left.
    std::fs::create_dir_all(w.path("tmp")).unwrap();
    c.env("TMPDIR", w.path("tmp"));
    s3.env(&mut c).output().expect("run validate")
}

/// Report rows without the `file` column (index 0), for comparing sources.
fn without_file(report: &str) -> Vec<Vec<String>> {
    report_rows(report)
        .iter()
        .map(|r| r.iter().skip(1).map(str::to_string).collect())
        .collect()
}

#[test]
fn csv_gzip_and_parquet_objects_read_like_local_files() {
    let (w, s3) = (Workdir::new(), S3Server::start());
    s3.bucket("exports");
    let csv = sample("mixed.csv");
    let other = valid_csv(50, "p1-");
    s3.put(
        "exports",
        "acme/2026-11-28/part-1.csv.gz",
        &gzip(other.as_bytes()),
    );
    s3.put("exports", "acme/2026-11-28/part-0.csv.gz", &gzip(&csv));
    s3.put("exports", "acme/2026-11-28/notes.txt", b"not an export");
    s3.put(
        "exports",
        "acme/2026-11-28/deeper/part-9.csv.gz",
        &gzip(&csv),
    );
    s3.put("exports", "acme/mixed.parquet", &sample("mixed.parquet"));

    let path = root().join("samples/mixed.csv").display().to_string();
    let local = validate(&w, &s3, &[&path]);
    let part0 = "s3://exports/acme/2026-11-28/part-0.csv.gz";
    let local = String::from_utf8(local.stdout)
        .unwrap()
        .replace(&path, part0);

    let out = validate(&w, &s3, &["s3://exports/acme/2026-11-28/*.csv.gz"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out)); // the sample has invalid rows
    let report = String::from_utf8(out.stdout).unwrap();
    let rows = report_rows(&report);
    // Two matches, in key order; `deeper/` is not matched (`*` stays in one segment).
    let files: Vec<&str> = rows.iter().map(|r| r.get(0).unwrap()).collect();
    let n = without_file(&local).len();
    assert_eq!(rows.len(), n + 50);
    assert!(files[..n].iter().all(|f| *f == part0));
    assert!(
        files[n..]
            .iter()
            .all(|f| *f == "s3://exports/acme/2026-11-28/part-1.csv.gz")
    );
    assert_eq!(without_file(&report)[..n], without_file(&local)[..]);
    assert_eq!(statuses(&rows[n..]).get("valid"), Some(&50));

    // Parquet by range: the same rows as its local twin.
    let path = root().join("samples/mixed.parquet").display().to_string();
    let url = "s3://exports/acme/mixed.parquet";
    let local_pq = validate(&w, &s3, &[&path]);
    let remote_pq = validate(&w, &s3, &[url]);
    assert_eq!(code(&remote_pq), code(&local_pq), "{}", stderr(&remote_pq));
    assert_eq!(
        without_file(&String::from_utf8(remote_pq.stdout).unwrap()),
        without_file(
            &String::from_utf8(local_pq.stdout)
                .unwrap()
                .replace(&path, url)
        )
    );
}

#[test]
fn a_large_parquet_object_with_many_row_groups_reads_every_row() {
    use arrow_array::{ArrayRef, RecordBatch, StringArray};
    let (w, s3) = (Workdir::new(), S3Server::start());
    s3.bucket("exports");
    // 20,000 valid rows in row groups of 1,000: twenty groups, each fetched by range.
    let text = valid_csv(20_000, "pq-");
    let mut r = csv::Reader::from_reader(text.as_bytes());
    let headers: Vec<String> = r.headers().unwrap().iter().map(str::to_string).collect();
    let recs: Vec<csv::StringRecord> = r.records().map(|x| x.unwrap()).collect();
    let cols: Vec<(String, ArrayRef)> = headers
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let v: Vec<Option<&str>> = recs
                .iter()
                .map(|rec| Some(rec.get(i).unwrap()).filter(|s| !s.is_empty()))
                .collect();
            (
                h.clone(),
                std::sync::Arc::new(StringArray::from(v)) as ArrayRef,
            )
        })
        .collect();
    let batch = RecordBatch::try_from_iter(cols).unwrap();
    let props = parquet::file::properties::WriterProperties::builder()
        .set_max_row_group_size(1000)
        .build();
    let mut buf = Vec::new();
    let mut wtr =
        parquet::arrow::ArrowWriter::try_new(&mut buf, batch.schema(), Some(props)).unwrap();
    wtr.write(&batch).unwrap();
    wtr.close().unwrap();
    s3.put("exports", "big.parquet", &buf);
    let out = validate(&w, &s3, &["--report", "r.csv", "s3://exports/big.parquet"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let rows = report_rows(&w.read("r.csv"));
    assert_eq!(rows.len(), 20_000);
    assert_eq!(statuses(&rows).get("valid"), Some(&20_000));
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(&r[8], format!("pq-{i}"), "row {i} in order");
    }
}

#[test]
fn a_missing_object_a_glob_matching_nothing_and_refused_credentials_exit_3_naming_the_url() {
    let (w, s3) = (Workdir::new(), S3Server::start());
    s3.bucket("exports");
    s3.put("exports", "a.csv", &sample("mixed.csv"));
    let cases: [(&str, &[&str], &str); 4] = [
        ("s3://exports/missing.csv", &[], "not found"),
        ("s3://no-such-bucket/a.csv", &[], "not found"),
        ("s3://exports/2026-*/*.csv", &[], "matches no object"),
        ("s3://exports/a.csv", &["wrong-secret"], "access denied"),
    ];
    for (url, wrong, says) in cases {
        let mut c = validate_cmd(&w, &["--summary-json", "s.json", url]);
        s3.env(&mut c);
        if let Some(secret) = wrong.first() {
            c.env("AWS_SECRET_ACCESS_KEY", secret);
        }
        let out = c.output().unwrap();
        let err = stderr(&out);
        assert_eq!(code(&out), 3, "{url}: {err}");
        assert!(err.contains(url), "{url}: names the URL: {err}");
        assert!(err.contains(says), "{url}: says `{says}`: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert!(
            !err.contains(SECRET_KEY) && !err.contains("wrong-secret"),
            "{err}"
        );
        let s: serde_json::Value = serde_json::from_str(&w.read("s.json")).unwrap();
        assert_eq!(s["exit_code"], 3);
        assert_eq!(s["error"]["kind"], "input");
    }
}

#[test]
fn a_presigned_https_url_is_read_and_its_signature_never_shown() {
    let (w, s3) = (Workdir::new(), S3Server::start());
    s3.bucket("exports");
    s3.put("exports", "shared/mixed.csv", &sample("mixed.csv"));
    s3.put("exports", "shared/mixed.parquet", &sample("mixed.parquet"));
    for key in ["shared/mixed.csv", "shared/mixed.parquet"] {
        let url = s3.presigned("exports", key);
        assert!(url.contains("X-Amz-Signature="), "{url}");
        let (base, _) = url.split_once('?').unwrap();
        // No AWS environment at all: the URL is the credential.
        let out = validate_cmd(&w, &["--summary-json", "s.json", &url])
            .output()
            .unwrap();
        assert_eq!(code(&out), 1, "{key}: {}", stderr(&out));
        let report = String::from_utf8(out.stdout.clone()).unwrap();
        let rows = report_rows(&report);
        assert_eq!(rows.len(), 18);
        assert_eq!(&rows[0][0], format!("{base}?…"));
        let signature = url.split("X-Amz-Signature=").nth(1).unwrap();
        for text in [report, stderr(&out), w.read("s.json")] {
            assert!(!text.contains(signature), "signature leaked: {text}");
        }
    }
    // A plain-http URL off loopback is refused, without a connection attempt.
    let out = validate_cmd(&w, &["http://exports.invalid/a.csv"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(stderr(&out).contains("loopback"), "{}", stderr(&out));
}

#[test]
fn outputs_given_as_urls_are_uploaded_when_the_run_ends() {
    let (w, s3) = (Workdir::new(), S3Server::start());
    s3.bucket("exports");
    s3.bucket("reports");
    s3.put("exports", "mixed.csv", &sample("mixed.csv"));
    let out = validate(
        &w,
        &s3,
        &[
            "--report",
            "s3://reports/night/report.csv",
            "--summary-json",
            "s3://reports/night/summary.json",
            "--emit-payloads",
            "s3://reports/night/payloads/",
            "s3://exports/mixed.csv",
        ],
    );
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let report = String::from_utf8(s3.get("reports", "night/report.csv").unwrap()).unwrap();
    assert_eq!(report_rows(&report).len(), 18);
    let summary: serde_json::Value =
        serde_json::from_slice(&s3.get("reports", "night/summary.json").unwrap()).unwrap();
    assert_eq!(summary["rows"], 18);
    assert_eq!(summary["exit_code"], 1);
    let payloads = s3.root.path().join("reports/night/payloads");
    let files: Vec<PathBuf> = std::fs::read_dir(&payloads)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(!files.is_empty());
    for f in &files {
        let body: serde_json::Value = serde_json::from_slice(&std::fs::read(f).unwrap()).unwrap();
        assert!(body["data"].is_array(), "{}", f.display());
    }
    // Nothing is left behind in the temporary directory.
    let left: Vec<_> = std::fs::read_dir(w.path("tmp")).unwrap().collect();
    assert!(left.is_empty(), "temporary outputs left: {left:?}");
}

#[test]
fn a_run_that_stops_still_uploads_its_report_and_summary() {
    let (w, s3) = (Workdir::new(), S3Server::start());
    s3.bucket("reports");
    // Exit 3 before any row is read (no such input): the failure summary is uploaded.
    let out = validate(
        &w,
        &s3,
        &[
            "--summary-json",
            "s3://reports/s.json",
            "--report",
            "s3://reports/r.csv",
            "missing.csv",
        ],
    );
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let s: serde_json::Value =
        serde_json::from_slice(&s3.get("reports", "s.json").unwrap()).unwrap();
    assert_eq!(s["exit_code"], 3);

    // Exit 2, a command line clap refuses: its summary is uploaded too.
    let out = validate(
        &w,
        &s3,
        &[
            "--summary-json",
            "s3://reports/usage.json",
            "--no-such-flag",
        ],
    );
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let s: serde_json::Value =
        serde_json::from_slice(&s3.get("reports", "usage.json").unwrap()).unwrap();
    assert_eq!(s["exit_code"], 2);
    assert_eq!(s["error"]["kind"], "usage");

    // Ctrl-C in the middle of a send: exit 130, the whole report uploaded.
    let em = Emulator::builder(&w).latency_ms("300").start();
    w.write("in.csv", &valid_csv(3000, "int-"));
    let m = mapping();
    let mut c = w.send_cmd(
        &m,
        &em.url,
        &[
            "--batch-size",
            "100",
            "--concurrency",
            "1",
            "--report",
            "s3://reports/int.csv",
            "--summary-json",
            "s3://reports/int.json",
            "in.csv",
        ],
    );
    let child = s3
        .env(&mut c)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    sigint(&child);
    let out = child.wait_with_output().unwrap();
    assert_eq!(code(&out), 130, "{}", stderr(&out));
    let report = String::from_utf8(s3.get("reports", "int.csv").unwrap()).unwrap();
    assert_eq!(report_rows(&report).len(), 3000);
    let s: serde_json::Value =
        serde_json::from_slice(&s3.get("reports", "int.json").unwrap()).unwrap();
    assert_eq!(s["exit_code"], 130);
}

#[test]
fn an_upload_that_fails_is_exit_3_and_the_summary_says_so() {
    let (w, s3) = (Workdir::new(), S3Server::start());
    s3.bucket("exports");
    s3.put("exports", "mixed.csv", &sample("mixed.csv"));
    // A real server that refuses the upload: the emulator answers 404 to a PUT of a report.
    let em = Emulator::start(&w);
    let target = format!("{}/uploads/r.csv", em.url);
    let out = validate(
        &w,
        &s3,
        &[
            "--report",
            &target,
            "--summary-json",
            "s.json",
            "s3://exports/mixed.csv",
        ],
    );
    let err = stderr(&out);
    assert_eq!(code(&out), 3, "{err}");
    assert!(err.contains(&format!("cannot upload `{target}`")), "{err}");
    let s: serde_json::Value = serde_json::from_str(&w.read("s.json")).unwrap();
    assert_eq!(s["exit_code"], 3);
    assert_eq!(s["error"]["kind"], "output");
    assert_eq!(s["rows"], 18, "the counts are kept");
}

/// Issue 12's acceptance: a partner export of many datasets in the S3 server, three shards in
/// parallel with one PostgreSQL ledger, one shard killed with SIGKILL mid-run and rerun. Every
/// row is in exactly one shard's final report, no event arrives twice, and every valid event
/// arrived or is reported `unknown`.
#[test]
fn three_shards_from_s3_with_one_postgres_ledger_survive_a_killed_shard() {
    let Some(pg) = crate::postgres::Pg::new("shards") else {
        return;
    };
    let (w, s3) = (Workdir::new(), S3Server::start());
    const ROWS: usize = 6_000;
    // Forty datasets: each row's is one of them.
    let csv: String = valid_csv(ROWS, "sh")
        .lines()
        .enumerate()
        .map(|(i, l)| match i {
            0 => format!("{l}\n"),
            _ => format!(
                "{}\n",
                l.replacen(",123456789", &format!(",77{:02}", i % 40), 1)
            ),
        })
        .collect();
    s3.bucket("exports");
    s3.put(
        "exports",
        "partner/2026-11-28/export-0.csv.gz",
        &gzip(csv.as_bytes()),
    );
    let emu = Emulator::builder(&w).record().latency_ms("60").start();
    let m = mapping();
    let app = format!("msgcapi-shard1-{}", std::process::id());
    let shard = |k: usize, report: &str, state: &str| {
        let shard = format!("{k}/3");
        let mut c = w.send_cmd(
            &m,
            &emu.url,
            &[
                "--shard",
                &shard,
                "--state",
                state,
                "--report",
                report,
                "--batch-size",
                "50",
                "--concurrency",
                "2",
                "--backoff-base-ms",
                "20",
                "s3://exports/partner/2026-11-28/*.csv.gz",
            ],
        );
        s3.env(&mut c).stdout(Stdio::null()).stderr(Stdio::piped());
        c.spawn().expect("start a shard")
    };
    let (ledger, killed_ledger) = (pg.url(""), pg.url(&format!("&application_name={app}")));
    let runs = [
        shard(0, "r0.csv", &ledger),
        shard(1, "r1-killed.csv", &killed_ledger),
        shard(2, "r2.csv", &ledger),
    ];
    let [r0, mut r1, r2] = runs;
    // Shard 1 dies once some of its events have arrived.
    let t = std::time::Instant::now();
    while recorded_ids(&w.path("rec.jsonl")).len() < 600 {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "the shards send nothing"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    r1.kill().unwrap();
    r1.wait().unwrap();
    for (k, r) in [(0, r0), (2, r2)] {
        let out = r.wait_with_output().unwrap();
        assert_eq!(code(&out), 0, "shard {k}: {}", stderr(&out));
    }
    pg.wait_gone(&app);
    let rerun = shard(1, "r1.csv", &ledger).wait_with_output().unwrap();
    assert!(code(&rerun) <= 1, "rerun: {}", stderr(&rerun));

    let killed = std::fs::read_to_string(w.path("r1-killed.csv")).unwrap_or_default();
    let rerun_rows = report_rows(&w.read("r1.csv")).len();
    assert!(
        killed.lines().count().saturating_sub(1) < rerun_rows,
        "killed mid-run"
    );

    // Every row in exactly one final report.
    let mut seen = std::collections::HashMap::new();
    let mut by_status = std::collections::BTreeMap::new();
    let mut acknowledged = std::collections::HashSet::new();
    let mut unknown = std::collections::HashSet::new();
    for report in ["r0.csv", "r1.csv", "r2.csv"] {
        for r in report_rows(&w.read(report)) {
            *seen.entry(r[1].to_string()).or_insert(0) += 1;
            *by_status.entry(r[3].to_string()).or_insert(0) += 1;
            match &r[3] {
                "sent" | "already_sent" => acknowledged.insert(r[8].to_string()),
                "unknown" => unknown.insert(r[8].to_string()),
                other => panic!("{report}: row {} is {other}: {}", &r[1], &r[4]),
            };
        }
    }
    assert_eq!(seen.len(), ROWS, "{by_status:?}");
    assert!(seen.values().all(|n| *n == 1), "a row in two reports");
    // Nothing arrived twice; every valid event arrived or is unknown.
    let arrived = recorded_ids(&w.path("rec.jsonl"));
    assert!(arrived.values().all(|n| *n == 1), "an event arrived twice");
    for i in 0..ROWS {
        let id = format!("sh{i}");
        assert!(
            arrived.contains_key(&id) || unknown.contains(&id),
            "{id} neither arrived nor is reported unknown"
        );
    }
    assert!(acknowledged.iter().all(|id| arrived.contains_key(id)));
    assert!(
        by_status.get("already_sent").copied().unwrap_or(0) > 0,
        "the rerun found what the killed shard delivered: {by_status:?}"
    );
}

/// A hostile S3 endpoint on loopback: answers every request 400 with the request's headers
/// (the session token's among them) in its error body.
fn echoing_endpoint() -> String {
    use std::io::{BufRead, BufReader, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let mut r = BufReader::new(&s);
            let mut head = String::new();
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                head.push_str(&line);
            }
            let body =
                format!("<Error><Code>InvalidRequest</Code><Message>{head}</Message></Error>");
            let _ = write!(
                &s,
                "HTTP/1.1 400 Bad Request\r\ncontent-type: application/xml\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    url
}

#[test]
fn a_store_that_echoes_the_request_never_gets_a_credential_printed() {
    let w = Workdir::new();
    let endpoint = echoing_endpoint();
    let token = "FwoGZXIvYXdzEBYaDEXAMPLESESSIONTOKEN0123456789";
    let out = validate_cmd(&w, &["--summary-json", "s.json", "s3://exports/*.csv"])
        .env("AWS_ACCESS_KEY_ID", "AKIAECHOTEST")
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("AWS_SESSION_TOKEN", token)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL", &endpoint)
        .env("AWS_ALLOW_HTTP", "true")
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(code(&out), 3, "{err}");
    // The listing's error body is quoted, the echoed headers with it, the token masked.
    assert!(
        err.contains("400") && err.contains("x-amz-security-token: ***"),
        "{err}"
    );
    for text in [err.clone(), w.read("s.json")] {
        assert!(
            !text.contains(token) && !text.contains(SECRET_KEY),
            "{text}"
        );
    }
}

#[test]
fn a_report_over_16_mib_goes_up_in_parts_and_arrives_whole() {
    let (w, s3) = (Workdir::new(), S3Server::start());
    s3.bucket("exports");
    s3.bucket("reports");
    // ~200,000 rows of JSONL report: more than one 16 MiB part.
    let text = valid_csv(200_000, "big-");
    s3.put("exports", "big.csv.gz", &gzip(text.as_bytes()));
    let args = ["--report-format", "jsonl", "s3://exports/big.csv.gz"];
    let up = validate(
        &w,
        &s3,
        &[&["--report", "s3://reports/big.jsonl"][..], &args].concat(),
    );
    assert_eq!(code(&up), 0, "{}", stderr(&up));
    let local = validate(&w, &s3, &[&["--report", "big.jsonl"][..], &args].concat());
    assert_eq!(code(&local), 0, "{}", stderr(&local));
    let want = std::fs::read(w.path("big.jsonl")).unwrap();
    assert!(
        want.len() > 16 << 20,
        "{} bytes: not over one part",
        want.len()
    );
    assert!(
        s3.get("reports", "big.jsonl").unwrap() == want,
        "the uploaded report differs"
    );
}
