//! `cargo bench`: generates its own inputs, runs the release binary, prints rows/s and peak RSS.
//!
//! Scenarios (sizes via env, defaults in parentheses; 0 skips a scenario):
//! - validate a CSV of `BENCH_ROWS` (1,000,000) rows, plain, with `--emit-payloads`, and read
//!   from an S3 server on loopback (s3s-fs, started in this process);
//! - validate a CSV of `BENCH_BIG_ROWS` (10,000,000) rows, for peak memory;
//! - validate the same export as Parquet, `BENCH_PARQUET_ROWS` (1,000,000) rows;
//! - send `BENCH_SEND_ROWS` (1,000,000) events to the emulator with no latency, without a state
//!   ledger, with the file ledger, and with the PostgreSQL ledger (`MSGCAPI_TEST_POSTGRES_URL`,
//!   default `postgres://postgres@127.0.0.1:5432/test`, loopback only; skipped with a notice when
//!   no server answers);
//! - send `BENCH_CLIENTS_ROWS` (1,000,000) events of `BENCH_CLIENTS` (700) client accounts per
//!   channel, with a dataset column and with `dataset_id: auto` (every account looked up once);
//! - send `BENCH_LATENCY_ROWS` (100,000) with 200 ms latency at concurrency 4, 16.
//!
//! Not a timed test: it asserts nothing about speed, it measures. Numbers go in README.md.
//! validate and the ledger comparison report the best time of three runs (this is a shared
//! machine) and the largest peak RSS of the three.

#![allow(clippy::unwrap_used)]

#[path = "../it/s3_server.rs"]
mod s3_server;

use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

const NOW: &str = "2026-11-20T12:00:00Z";
const NOW_UNIX: i64 = 1_795_176_000;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_msgcapi"))
}

/// A mixed export with the columns of mappings/mixed.yaml; ~2 % duplicates, ~3 % bad rows.
fn generate(path: &Path, rows: usize) -> std::io::Result<u64> {
    generate_for(path, rows, 0)
}

/// The same, with `clients` business accounts per channel (each its own dataset id in the
/// dataset column) instead of one: the export of a partner serving many clients.
fn generate_for(path: &Path, rows: usize, clients: usize) -> std::io::Result<u64> {
    let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    writeln!(
        w,
        "chan,stage,occurred_at,conv_id,dataset,waba_id,click_id,page_id,psid,ig_account,igsid,email,phone,amount,currency,order_ref"
    )?;
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    for i in 0..rows {
        let r = next();
        let id = if r % 50 == 0 && i > 0 {
            (r as usize >> 8) % i
        } else {
            i
        };
        let t = NOW_UNIX - 3600 - ((id as i64 * 7919) % (5 * 86400));
        let ts = chrono::DateTime::from_timestamp(t, 0)
            .map(|d| d.format("%Y-%m-%dT%H:%M:%SZ").to_string())
            .unwrap_or_default();
        let stage = ["paid", "lead", "cart", "shipped"][id % 4];
        let amount = if r % 33 == 0 {
            "n/a".to_string()
        } else {
            format!("{}.{:02}", id % 500, id % 100)
        };
        let (waba, page, ig, ds) = if clients == 0 {
            (
                "102290129340398".to_string(),
                "109876543210987".to_string(),
                "17841400123456789".to_string(),
                [
                    "1234567890".to_string(),
                    "1234567891".into(),
                    "1234567892".into(),
                ],
            )
        } else {
            let c = (id / 3) % clients;
            (
                format!("1022{c:011}"),
                format!("1098{c:011}"),
                format!("1784{c:013}"),
                [
                    format!("770{c:07}"),
                    format!("771{c:07}"),
                    format!("772{c:07}"),
                ],
            )
        };
        match id % 3 {
            0 => writeln!(
                w,
                "WA,{stage},{ts},wa-{id},{},{waba},ARAkLkA8rmlFeiCk-{id},,,,,user{id}@example.com,+55 11 9{:08},{amount},BRL,ORD-{id}",
                ds[0],
                id % 100_000_000
            )?,
            1 => writeln!(
                w,
                "FB,{stage},{ts},fb-{id},{},,,{page},67890{id:010},,,,,{amount},USD,ORD-{id}",
                ds[1]
            )?,
            _ => writeln!(
                w,
                "IG,{stage},{ts},ig-{id},{},,,,,{ig},555{id:010},,,{amount},EUR,",
                ds[2]
            )?,
        }
    }
    w.flush()?;
    Ok(std::fs::metadata(path)?.len())
}

/// Lets the kernel write back the freshly generated input before measuring.
fn settle_disk() {
    let _ = Command::new("sync").status();
}

struct Run {
    secs: f64,
    /// The slowest of the runs [`best_of_three`] made (else `secs`).
    slowest: f64,
    rows: u64,
    peak_rss_mb: f64,
    summary: serde_json::Value,
}

/// Rewrites a generated CSV as Parquet, streaming 64k rows per row group; returns its size.
fn to_parquet(csv: &Path, out: &Path) -> Result<u64, Box<dyn std::error::Error>> {
    use arrow_array::{ArrayRef, RecordBatch, builder::StringBuilder};
    use arrow_schema::{DataType, Field, Schema};
    use std::sync::Arc;

    let mut r = csv::Reader::from_path(csv)?;
    let headers: Vec<String> = r.headers()?.iter().map(String::from).collect();
    let schema = Arc::new(Schema::new(
        headers
            .iter()
            .map(|h| Field::new(h, DataType::Utf8, true))
            .collect::<Vec<_>>(),
    ));
    let props = parquet::file::properties::WriterProperties::builder()
        .set_compression(parquet::basic::Compression::ZSTD(Default::default()))
        .build();
    let mut w = parquet::arrow::ArrowWriter::try_new(
        std::fs::File::create(out)?,
        schema.clone(),
        Some(props),
    )?;
    let mut records = r.records().peekable();
    while records.peek().is_some() {
        let mut cols: Vec<StringBuilder> = headers.iter().map(|_| StringBuilder::new()).collect();
        for rec in records.by_ref().take(65_536) {
            let rec = rec?;
            for (b, cell) in cols.iter_mut().zip(rec.iter()) {
                if cell.is_empty() {
                    b.append_null();
                } else {
                    b.append_value(cell);
                }
            }
        }
        let arrays: Vec<ArrayRef> = cols
            .iter_mut()
            .map(|b| Arc::new(b.finish()) as ArrayRef)
            .collect();
        w.write(&RecordBatch::try_new(schema.clone(), arrays)?)?;
    }
    w.close()?;
    Ok(std::fs::metadata(out)?.len())
}

/// Three runs: the time of the fastest (the least disturbed, on a shared 2-core box) and the
/// largest peak RSS of the three (memory is a ceiling, so the worst run is the honest number).
fn best_of_three(mut one: impl FnMut(usize) -> Run) -> Run {
    let runs: Vec<Run> = (0..3).map(&mut one).collect();
    let max_rss = runs.iter().map(|r| r.peak_rss_mb).fold(0.0, f64::max);
    let slowest = runs.iter().map(|r| r.secs).fold(0.0, f64::max);
    let mut best = runs
        .into_iter()
        .min_by(|a, b| a.secs.total_cmp(&b.secs))
        .expect("three runs");
    best.peak_rss_mb = max_rss;
    best.slowest = slowest;
    best
}

/// Best of three `validate` runs of `input` (`bytes` long) with `extra` flags, printed as one
/// line. `--emit-payloads` runs write to a fresh directory each time.
fn validate_bench(mapping: &str, input: &Path, bytes: u64, dir: &Path, extra: &[&str], note: &str) {
    validate_from(
        mapping,
        input.to_str().unwrap_or_default(),
        &[],
        bytes,
        dir,
        extra,
        note,
    )
}

/// [`validate_bench`] of an input given as a path or URL, with `envs` (an object store's).
fn validate_from(
    mapping: &str,
    input: &str,
    envs: &[(&str, &str)],
    bytes: u64,
    dir: &Path,
    extra: &[&str],
    note: &str,
) {
    let r = best_of_three(|_| {
        let payloads = dir.join("payloads");
        let _ = std::fs::remove_dir_all(&payloads);
        let mut args = vec!["validate", "--mapping", mapping, "--now", NOW];
        args.extend_from_slice(extra);
        args.push(input);
        run(&args, envs, dir)
    });
    let _ = std::fs::remove_dir_all(dir.join("payloads"));
    println!(
        "validate  {:>10} rows  {:>6.1} MB  {:>6.2} s  {:>10.0} rows/s  peak RSS {:>6.1} MB{note}",
        r.rows,
        bytes as f64 / 1e6,
        r.secs,
        r.rows as f64 / r.secs,
        r.peak_rss_mb
    );
}

fn run(args: &[&str], envs: &[(&str, &str)], dir: &Path) -> Run {
    let summary = dir.join("summary.json");
    let mut c = Command::new(bin());
    c.args(args).args([
        "--summary-json",
        summary.to_str().unwrap_or_default(),
        "--quiet",
        "--report",
        dir.join("report.csv").to_str().unwrap_or_default(),
    ]);
    for (k, v) in envs {
        c.env(k, v);
    }
    let start = Instant::now();
    let status = c.stdin(Stdio::null()).status().expect("run msgcapi");
    let secs = start.elapsed().as_secs_f64();
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).unwrap_or_default())
            .unwrap_or_default();
    assert!(
        status.code().is_some_and(|c| c <= 1),
        "msgcapi failed: {status}"
    );
    Run {
        secs,
        slowest: secs,
        rows: s["rows"].as_u64().unwrap_or(0),
        peak_rss_mb: s["peak_rss_bytes"].as_f64().unwrap_or(0.0) / 1e6,
        summary: s,
    }
}

struct Emulator(std::process::Child, String);

impl Emulator {
    fn start(extra: &[&str], record: &Path) -> Emulator {
        let mut child = Command::new(bin())
            .args([
                "emulator",
                "--listen",
                "127.0.0.1:0",
                "--now",
                NOW,
                "--record",
                record.to_str().unwrap_or_default(),
            ])
            .args(extra)
            .env("MSGCAPI_EMULATOR_TOKEN", "bench-token")
            .stdout(Stdio::piped())
            .stdin(Stdio::null())
            .spawn()
            .expect("start emulator");
        let mut line = String::new();
        let out = child.stdout.take().expect("stdout");
        BufReader::new(out).read_line(&mut line).expect("address");
        Emulator(child, line.trim().to_string())
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The schema the PostgreSQL ledger scenario uses (dropped before each run and at the end).
const BENCH_SCHEMA: &str = "msgcapi_bench";

/// The PostgreSQL server for the ledger scenario, and the `--state` URL, if one answers on
/// loopback.
fn bench_postgres() -> Option<(postgres::Config, String)> {
    let url = std::env::var("MSGCAPI_TEST_POSTGRES_URL")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".into());
    let mut cfg: postgres::Config = url.parse().ok()?;
    let loopback = cfg.get_hosts().iter().all(|h| match h {
        postgres::config::Host::Tcp(h) => {
            h == "localhost"
                || h.trim_matches(['[', ']'])
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        _ => true,
    });
    assert!(loopback, "the bench talks to loopback only");
    cfg.connect_timeout(std::time::Duration::from_secs(5));
    if let Err(e) = cfg.connect(postgres::NoTls) {
        println!("note: the PostgreSQL ledger scenario is skipped: no server ({e})");
        return None;
    }
    let sep = if url.contains('?') { '&' } else { '?' };
    Some((cfg, format!("{url}{sep}schema={BENCH_SCHEMA}")))
}

fn main() {
    // `cargo bench -- --list` and libtest flags: nothing to list.
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let mapping = Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings/mixed.yaml");
    let mapping = mapping.to_str().unwrap_or_default();
    let d = dir.path();
    println!(
        "msgcapi bench — {} cores",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );

    for (var, default, name) in [
        ("BENCH_ROWS", 1_000_000, "in.csv"),
        ("BENCH_BIG_ROWS", 10_000_000, "big.csv"),
    ] {
        let rows = env_usize(var, default);
        if rows == 0 {
            continue;
        }
        let csv = d.join(name);
        let bytes = generate(&csv, rows).expect("generate input");
        settle_disk();
        validate_bench(mapping, &csv, bytes, d, &[], "");
        if var == "BENCH_ROWS" {
            // The exact request bodies of every batch, written as files (a dry run of send).
            let payloads = d.join("payloads");
            let flags = ["--emit-payloads", payloads.to_str().unwrap_or_default()];
            validate_bench(mapping, &csv, bytes, d, &flags, "  (--emit-payloads)");
            // The same file read from an S3 server on loopback (s3s-fs, in this process).
            let s3 = s3_server::S3Server::start();
            s3.bucket("bench");
            std::fs::copy(&csv, s3.root.path().join("bench/in.csv")).expect("copy to s3");
            let envs = s3.env_pairs();
            let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let url = "s3://bench/in.csv";
            validate_from(
                mapping,
                url,
                &envs,
                bytes,
                d,
                &[],
                "  (from S3 on loopback)",
            );
        }
        let _ = std::fs::remove_file(csv);
    }

    // The same export as Parquet (every column utf8, zstd, row groups of 64k rows).
    let pq_rows = env_usize("BENCH_PARQUET_ROWS", 1_000_000);
    if pq_rows > 0 {
        let csv = d.join("pq.csv");
        let pq = d.join("in.parquet");
        generate(&csv, pq_rows).expect("generate input");
        let bytes = to_parquet(&csv, &pq).expect("write parquet");
        let _ = std::fs::remove_file(csv);
        settle_disk();
        validate_bench(mapping, &pq, bytes, d, &[], "  (Parquet)");
        let _ = std::fs::remove_file(pq);
    }

    let token = [("MSGCAPI_ACCESS_TOKEN", "bench-token")];
    let send_rows = env_usize("BENCH_SEND_ROWS", 1_000_000);
    if send_rows > 0 {
        let send_csv = d.join("send.csv");
        generate(&send_csv, send_rows).expect("generate send input");
        settle_disk();
        let pg = bench_postgres();
        for ledger in ["", "file", "postgres"] {
            let pg_state = match (ledger, &pg) {
                ("postgres", None) => continue,
                ("postgres", Some((_, url))) => url.clone(),
                _ => String::new(),
            };
            // Each run against a fresh emulator and a fresh, empty ledger.
            let r = best_of_three(|n| {
                let record = d.join(format!("rec-{ledger}-{n}.jsonl"));
                let emu = Emulator::start(&[], &record);
                let state = d.join("state.sqlite");
                let _ = std::fs::remove_file(&state);
                if let Some((c, _)) = &pg {
                    let mut c = c.clone().connect(postgres::NoTls).expect("PostgreSQL");
                    c.batch_execute(&format!("DROP SCHEMA IF EXISTS {BENCH_SCHEMA} CASCADE"))
                        .expect("drop the bench schema");
                }
                let mut args = vec![
                    "send",
                    "--mapping",
                    mapping,
                    "--now",
                    NOW,
                    "--endpoint",
                    &emu.1,
                    "--concurrency",
                    "4",
                ];
                match ledger {
                    "file" => args.extend(["--state", state.to_str().unwrap_or_default()]),
                    "postgres" => args.extend(["--state", pg_state.as_str()]),
                    _ => {}
                }
                args.push(send_csv.to_str().unwrap_or_default());
                let r = run(&args, &token, d);
                let _ = std::fs::remove_file(&record);
                r
            });
            let sent = r.summary["by_status"]["sent"].as_u64().unwrap_or(0);
            println!(
                "send      {:>10} rows  {:>10} sent  {:>6.2} s  {:>10.0} events/s  peak RSS {:>6.1} MB  (no latency, concurrency 4{}; slowest of three {:.2} s)",
                r.rows,
                sent,
                r.secs,
                sent as f64 / r.secs,
                r.peak_rss_mb,
                match ledger {
                    "file" => ", --state FILE",
                    "postgres" => ", --state postgres://",
                    _ => "",
                },
                r.slowest
            );
        }
        if let Some((c, _)) = &pg
            && let Ok(mut c) = c.clone().connect(postgres::NoTls)
        {
            let _ = c.batch_execute(&format!("DROP SCHEMA IF EXISTS {BENCH_SCHEMA} CASCADE"));
        }
    }

    // Many clients: `dataset_id: auto` against a dataset column, same rows, same datasets count.
    let clients_rows = env_usize("BENCH_CLIENTS_ROWS", 1_000_000);
    let clients = env_usize("BENCH_CLIENTS", 700);
    if clients_rows > 0 && clients > 0 {
        let csv = d.join("clients.csv");
        generate_for(&csv, clients_rows, clients).expect("generate clients input");
        settle_disk();
        let auto = Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings/many-clients.yaml");
        for (name, m) in [
            ("column", mapping),
            ("auto", auto.to_str().unwrap_or_default()),
        ] {
            let r = best_of_three(|n| {
                let record = d.join(format!("rec-{name}-{n}.jsonl"));
                let emu = Emulator::start(&[], &record);
                let args = [
                    "send",
                    "--mapping",
                    m,
                    "--now",
                    NOW,
                    "--endpoint",
                    &emu.1,
                    "--concurrency",
                    "4",
                    csv.to_str().unwrap_or_default(),
                ];
                let r = run(&args, &token, d);
                let _ = std::fs::remove_file(&record);
                r
            });
            let sent = r.summary["by_status"]["sent"].as_u64().unwrap_or(0);
            println!(
                "send      {:>10} rows  {:>10} sent  {:>6.2} s  {:>10.0} events/s  peak RSS {:>6.1} MB  ({} accounts, dataset_id: {name}{})",
                r.rows,
                sent,
                r.secs,
                sent as f64 / r.secs,
                r.peak_rss_mb,
                3 * clients,
                if name == "auto" {
                    format!(", {} looked up", r.summary["accounts"]["looked_up"])
                } else {
                    String::new()
                }
            );
        }
        let _ = std::fs::remove_file(csv);
    }

    let lat_rows = env_usize("BENCH_LATENCY_ROWS", 100_000);
    if lat_rows == 0 {
        return;
    }
    let lat_csv = d.join("lat.csv");
    generate(&lat_csv, lat_rows).expect("generate latency input");
    for conc in ["4", "16"] {
        let record = d.join(format!("lat-{conc}.jsonl"));
        let emu = Emulator::start(&["--latency-ms", "200"], &record);
        let r = run(
            &[
                "send",
                "--mapping",
                mapping,
                "--now",
                NOW,
                "--endpoint",
                &emu.1,
                "--concurrency",
                conc,
                lat_csv.to_str().unwrap_or_default(),
            ],
            &token,
            d,
        );
        let sent = r.summary["by_status"]["sent"].as_u64().unwrap_or(0);
        println!(
            "send      {:>10} rows  {:>10} sent  {:>6.2} s  {:>10.0} events/s  (200 ms latency, concurrency {conc})",
            r.rows,
            sent,
            r.secs,
            sent as f64 / r.secs
        );
    }
}
