//! `msgcapi validate`: the dry run, end to end on real files.

use std::io::Write;

use crate::util::*;

/// `validate` of mappings/mixed.yaml over stdin (`-`), reporting to `report`; stdio is the
/// caller's to set.
fn validate_stdin(w: &Workdir, report: &str, extra: &[&str]) -> std::process::Command {
    let m = w.copy("mappings/mixed.yaml");
    let mut c = w.cmd(&[
        "validate",
        "--mapping",
        m.to_str().unwrap(),
        "--now",
        NOW,
        "--report",
        report,
    ]);
    c.args(extra).arg("-");
    c
}

fn validate(w: &Workdir, mapping: &str, inputs: &[&str], extra: &[&str]) -> std::process::Output {
    let m = w.copy(mapping);
    // Relative to the work dir, so messages that name the mapping are stable.
    let m = m
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_string();
    let mut args = vec![
        "validate",
        "--mapping",
        m.as_str(),
        "--now",
        NOW,
        "--report",
        "report.csv",
        "--quiet",
    ];
    args.extend_from_slice(extra);
    args.extend_from_slice(inputs);
    w.run(&args)
}

#[test]
fn mixed_sample_dry_run_reports_every_row_with_its_reason() {
    let w = Workdir::new();
    w.copy("samples/mixed.csv");
    let out = validate(&w, "mappings/mixed.yaml", &["mixed.csv"], &[]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let report = w.read("report.csv");
    let rows = report_rows(&report);
    assert_eq!(rows.len(), 18);
    let s = statuses(&rows);
    assert_eq!(s.get("valid"), Some(&8));
    assert_eq!(s.get("invalid"), Some(&7));
    assert_eq!(s.get("expired"), Some(&1));
    assert_eq!(s.get("duplicate"), Some(&2));
    insta::assert_snapshot!(report);
}

#[test]
fn the_issue_example_mapping_works_as_written() {
    let w = Workdir::new();
    w.copy("samples/mixed.csv");
    let example = include_str!("../../src/mapping/issue_example.yaml");
    w.write("example.yaml", example);
    let out = w.run(&[
        "validate",
        "--mapping",
        "example.yaml",
        "--now",
        NOW,
        "--report",
        "r.csv",
        "mixed.csv",
    ]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let rows = report_rows(&w.read("r.csv"));
    assert_eq!(rows.len(), 18);
    assert!(rows.iter().all(|r| &r[5] == "1234567890"));
    assert_eq!(statuses(&rows).get("valid"), Some(&8));
}

#[test]
fn every_channel_sample_has_its_bad_rows_caught() {
    for (mapping, input, valid) in [
        ("mappings/whatsapp.yaml", "samples/whatsapp.csv", 5),
        ("mappings/messenger.yaml", "samples/messenger.csv", 4),
        ("mappings/instagram.yaml", "samples/instagram.tsv", 4),
    ] {
        let w = Workdir::new();
        let file = w.copy(input);
        let out = validate(
            &w,
            mapping,
            &[file
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()],
            &[],
        );
        assert_eq!(code(&out), 1, "{input}: {}", stderr(&out));
        let rows = report_rows(&w.read("report.csv"));
        let s = statuses(&rows);
        assert_eq!(
            s.get("valid"),
            Some(&valid),
            "{input}: {s:?}\n{}",
            w.read("report.csv")
        );
        assert_eq!(s.get("expired"), Some(&1), "{input}");
        assert_eq!(s.get("duplicate"), Some(&1), "{input}");
        assert!(
            s.get("invalid").copied().unwrap_or(0) >= 4,
            "{input}: {s:?}"
        );
    }
}

#[test]
fn exit_0_when_every_row_is_valid_or_duplicate() {
    let w = Workdir::new();
    let text = std::fs::read_to_string(root().join("samples/mixed.csv")).unwrap();
    let mut lines: Vec<&str> = text.lines().take(3).collect(); // header + 2 good rows
    lines.push(lines[1]);
    w.write("good.csv", &(lines.join("\n") + "\n"));
    let out = validate(&w, "mappings/mixed.yaml", &["good.csv"], &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let rows = report_rows(&w.read("report.csv"));
    assert_eq!(statuses(&rows).get("duplicate"), Some(&1));
    assert_eq!(&rows[2][4], "same dedup key (event_id) as good.csv row 1");
}

#[test]
fn expiry_margin_flag_moves_the_window() {
    let w = Workdir::new();
    w.write("one.csv", "chan,stage,occurred_at,conv_id,dataset,waba_id,click_id,page_id,psid,ig_account,igsid,email,phone,amount,currency,order_ref\nWA,lead,2026-11-13T12:30:00Z,x1,1234567890,102290129340398,clk,,,,,,,,,\n");
    assert_eq!(
        code(&validate(&w, "mappings/mixed.yaml", &["one.csv"], &[])),
        1
    );
    assert!(w.read("report.csv").contains(",expired,"));
    assert_eq!(
        code(&validate(
            &w,
            "mappings/mixed.yaml",
            &["one.csv"],
            &["--expiry-margin", "0"]
        )),
        0
    );
}

#[test]
fn exit_2_for_a_mapping_error_before_any_row_is_read() {
    let w = Workdir::new();
    w.copy("samples/mixed.csv");
    let bad = std::fs::read_to_string(root().join("mappings/mixed.yaml"))
        .unwrap()
        .replace("  format: rfc3339", "  fromat: rfc3339");
    w.write("bad.yaml", &bad);
    let out = w.run(&[
        "validate",
        "--mapping",
        "bad.yaml",
        "--now",
        NOW,
        "--report",
        "r.csv",
        "mixed.csv",
    ]);
    assert_eq!(code(&out), 2);
    assert!(
        !w.path("r.csv").exists(),
        "nothing is processed on a mapping error"
    );
    insta::assert_snapshot!(stderr(&out), @r"
    error: bad.yaml:13:3: unknown key `fromat`; expected one of `column`, `constant`, `env`, `default`, `values`, `passthrough`, `type`, `hash`, `country_code`, `format`, `timezone`, `decimal`
      hint: did you mean `format`? (docs/mapping.md lists every key)
    ");
}

#[test]
fn exit_2_for_a_column_missing_from_the_input() {
    let w = Workdir::new();
    w.write("x.csv", "chan,stage\nWA,paid\n");
    let out = validate(&w, "mappings/mixed.yaml", &["x.csv"], &[]);
    assert_eq!(code(&out), 2);
    assert!(!w.path("report.csv").exists());
    insta::assert_snapshot!(stderr(&out), @r"
    error: mixed.yaml:3:13: `dataset_id`: columns `dataset`, `occurred_at`, `conv_id`, `waba_id`, `click_id`, `page_id`, `psid`, `ig_account`, `igsid`, `email`, `phone`, `amount`, `currency`, `order_ref` not in the header of `x.csv`
      hint: the header has `chan`, `stage`
    ");
}

#[test]
fn exit_3_for_a_missing_input() {
    let w = Workdir::new();
    let out = validate(&w, "mappings/mixed.yaml", &["nope.csv"], &[]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot open input `nope.csv`"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn exit_3_for_a_corrupt_parquet_file() {
    let w = Workdir::new();
    w.write("broken.parquet", "PAR1 this is not really parquet PAR1");
    let out = validate(&w, "mappings/mixed.yaml", &["broken.parquet"], &[]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(stderr(&out).contains("broken.parquet"), "{}", stderr(&out));
}

#[test]
fn malformed_rows_are_invalid_and_the_run_goes_on() {
    let w = Workdir::new();
    let header = "chan,stage,occurred_at,conv_id,dataset,waba_id,click_id,page_id,psid,ig_account,igsid,email,phone,amount,currency,order_ref\n";
    let good = "WA,lead,2026-11-19T12:00:00Z,ID,1234567890,102290129340398,clk,,,,,,,,,\n";
    let mut bytes = Vec::new();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(good.replace("ID", "a1").as_bytes());
    bytes.extend_from_slice(b"WA,lead,too,few\n");
    let bad_utf8 = good
        .replace("ID", "a@2")
        .into_bytes()
        .into_iter()
        .map(|b| if b == b'@' { 0xff } else { b });
    bytes.extend(bad_utf8);
    bytes.extend_from_slice(good.replace("ID", "a3").as_bytes());
    std::fs::File::create(w.path("m.csv"))
        .unwrap()
        .write_all(&bytes)
        .unwrap();
    let out = validate(&w, "mappings/mixed.yaml", &["m.csv"], &[]);
    assert_eq!(code(&out), 1);
    let rows = report_rows(&w.read("report.csv"));
    assert_eq!(rows.len(), 4);
    assert_eq!(&rows[1][3], "invalid");
    assert!(
        rows[1][4].contains("4 fields") && rows[1][4].contains("16"),
        "{}",
        &rows[1][4]
    );
    assert_eq!(&rows[2][3], "invalid");
    assert!(rows[2][4].contains("UTF-8"), "{}", &rows[2][4]);
    assert_eq!(&rows[3][3], "valid");
}

#[test]
fn quoted_newlines_keep_row_and_line_numbers_right() {
    let w = Workdir::new();
    w.copy("samples/mixed.csv");
    validate(&w, "mappings/mixed.yaml", &["mixed.csv"], &[]);
    let rows = report_rows(&w.read("report.csv"));
    // Row 7 has a quoted newline, so row 8 starts two lines later.
    assert_eq!((&rows[6][1], &rows[6][2]), ("7", "8"));
    assert_eq!((&rows[7][1], &rows[7][2]), ("8", "10"));
}

#[test]
fn gzip_stdin_tsv_and_custom_delimiters_read_the_same() {
    let w = Workdir::new();
    let text = std::fs::read_to_string(root().join("samples/mixed.csv")).unwrap();
    let mut gz = flate2::write::GzEncoder::new(
        std::fs::File::create(w.path("mixed.csv.gz")).unwrap(),
        flate2::Compression::default(),
    );
    gz.write_all(text.as_bytes()).unwrap();
    gz.finish().unwrap();
    validate(&w, "mappings/mixed.yaml", &["mixed.csv.gz"], &[]);
    let from_gz = report_rows(&w.read("report.csv"));

    let mut child = validate_stdin(&w, "stdin.csv", &["--quiet"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(1));
    let from_stdin = report_rows(&w.read("stdin.csv"));

    let semi = text.replace(',', ";");
    w.write("semi.txt", &semi);
    validate(
        &w,
        "mappings/mixed.yaml",
        &["semi.txt"],
        &["--delimiter", ";"],
    );
    let from_semi = report_rows(&w.read("report.csv"));
    // Without the flag, the delimiter is sniffed from the header line.
    validate(&w, "mappings/mixed.yaml", &["semi.txt"], &[]);
    assert_eq!(report_rows(&w.read("report.csv")), from_semi);

    let strip = |rows: &[csv::StringRecord]| {
        rows.iter()
            .map(|r| {
                r.iter()
                    .skip(1)
                    .map(|c| c.replace("mixed.csv.gz", "-"))
                    .collect::<Vec<_>>()
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(from_gz.len(), 18);
    assert_eq!(strip(&from_gz), strip(&from_stdin));
    assert_eq!(from_stdin[0][0].to_string(), "-");
    // The semicolon file has commas inside quoted fields turned into semicolons too; statuses match.
    assert_eq!(statuses(&from_gz), statuses(&from_semi));
}

#[test]
fn report_is_private_and_holds_no_raw_contact_data() {
    let w = Workdir::new();
    w.copy("samples/mixed.csv");
    validate(
        &w,
        "mappings/mixed.yaml",
        &["mixed.csv"],
        &["--report-format", "jsonl"],
    );
    let text = w.read("report.csv");
    for pii in [
        "ana.silva@example.com",
        "91234-5678",
        "John_Smith",
        "Maria@Example",
    ] {
        assert!(!text.contains(pii), "report leaks {pii}");
    }
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(w.path("report.csv"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    assert_eq!(text.lines().count(), 18);
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(first["status"], "valid");
}

#[test]
fn summary_json_counts_per_status_channel_and_event() {
    let w = Workdir::new();
    w.copy("samples/mixed.csv");
    validate(
        &w,
        "mappings/mixed.yaml",
        &["mixed.csv"],
        &["--summary-json", "s.json"],
    );
    let s: serde_json::Value = serde_json::from_str(&w.read("s.json")).unwrap();
    assert_eq!(s["rows"], 18);
    assert_eq!(s["by_status"]["valid"], 8);
    assert_eq!(s["by_channel"]["whatsapp"]["valid"], 3);
    assert_eq!(s["by_event_name"]["Purchase"]["valid"], 4);
    assert_eq!(s["exit_code"], 1);
    assert!(s["rows_per_sec"].as_f64().unwrap() > 0.0);
    assert!(s["duration_secs"].as_f64().is_some());
}

#[test]
fn emit_payloads_writes_the_exact_bodies_grouped_by_dataset() {
    let w = Workdir::new();
    w.copy("samples/mixed.csv");
    let out = validate(
        &w,
        "mappings/mixed.yaml",
        &["mixed.csv"],
        &["--emit-payloads", "payloads", "--batch-size", "2"],
    );
    assert_eq!(code(&out), 1);
    let mut files: Vec<_> = std::fs::read_dir(w.path("payloads"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut events = 0;
    for f in &files {
        let body: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(f).unwrap()).unwrap();
        let data = body["data"].as_array().unwrap();
        assert!(!data.is_empty() && data.len() <= 2);
        assert_eq!(body["partner_agent"], "acme-bsp");
        assert!(
            body.get("access_token").is_none(),
            "no token in a dry run payload"
        );
        let ds = f
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .split('-')
            .next()
            .unwrap()
            .to_string();
        for e in data {
            assert_eq!(e["action_source"], "business_messaging");
            let ch = e["messaging_channel"].as_str().unwrap();
            let expect = match ch {
                "whatsapp" => "1234567890",
                "messenger" => "1234567891",
                _ => "1234567892",
            };
            assert_eq!(ds, expect);
        }
        events += data.len();
    }
    assert_eq!(events, 8);
    let rows = report_rows(&w.read("report.csv"));
    assert!(
        rows.iter()
            .filter(|r| &r[3] == "valid")
            .all(|r| !r[10].is_empty()),
        "valid rows name their batch"
    );
}

#[test]
fn duplicates_across_files_name_the_first_file_and_row() {
    let w = Workdir::new();
    w.copy("samples/mixed.csv");
    std::fs::copy(w.path("mixed.csv"), w.path("again.csv")).unwrap();
    validate(&w, "mappings/mixed.yaml", &["mixed.csv", "again.csv"], &[]);
    let rows = report_rows(&w.read("report.csv"));
    assert_eq!(rows.len(), 36);
    let second_first = &rows[18];
    assert_eq!(&second_first[0], "again.csv");
    assert_eq!(&second_first[3], "duplicate");
    assert_eq!(
        &second_first[4],
        "same dedup key (event_id) as mixed.csv row 1"
    );
}

#[test]
fn csv_and_parquet_of_the_same_data_give_the_same_report() {
    for (mapping, csv_file, parquet_file) in [
        (
            "mappings/mixed.yaml",
            "samples/mixed.csv",
            "samples/mixed.parquet",
        ),
        (
            "mappings/whatsapp.yaml",
            "samples/whatsapp.csv",
            "samples/whatsapp.parquet",
        ),
        (
            "mappings/messenger.yaml",
            "samples/messenger.csv",
            "samples/messenger.parquet",
        ),
        (
            "mappings/instagram.yaml",
            "samples/instagram.tsv",
            "samples/instagram.parquet",
        ),
    ] {
        let w = Workdir::new();
        let c = w.copy(csv_file);
        let p = w.copy(parquet_file);
        let name = |x: &std::path::Path| x.file_name().unwrap().to_str().unwrap().to_string();
        validate(&w, mapping, &[&name(&c)], &[]);
        let from_csv = report_rows(&w.read("report.csv"));
        validate(&w, mapping, &[&name(&p)], &[]);
        let from_parquet = report_rows(&w.read("report.csv"));
        assert_eq!(from_csv.len(), from_parquet.len(), "{csv_file}");
        // Everything but `file`, and `line` (a quoted newline makes CSV lines run ahead of rows).
        let strip = |rows: &[csv::StringRecord], f: &str| -> Vec<Vec<String>> {
            rows.iter()
                .map(|r| {
                    r.iter()
                        .enumerate()
                        .filter(|(i, _)| *i != 0 && *i != 2)
                        .map(|(_, c)| c.replace(f, "FILE"))
                        .collect()
                })
                .collect()
        };
        assert_eq!(
            strip(&from_csv, &name(&c)),
            strip(&from_parquet, &name(&p)),
            "{csv_file} vs {parquet_file}"
        );
    }
}

#[test]
fn bundled_bad_samples_fail_clearly() {
    let w = Workdir::new();
    w.copy("samples/truncated.parquet");
    w.copy("samples/malformed.csv");
    let out = validate(&w, "mappings/mixed.yaml", &["truncated.parquet"], &[]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("truncated.parquet"),
        "{}",
        stderr(&out)
    );
    let out = validate(&w, "mappings/mixed.yaml", &["malformed.csv"], &[]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let rows = report_rows(&w.read("report.csv"));
    assert_eq!(rows.len(), 5, "every row, even the unterminated last one");
    let s = statuses(&rows);
    assert_eq!(s.get("valid"), Some(&2), "{s:?}");
    assert_eq!(s.get("invalid"), Some(&3), "{s:?}");
}

/// A dry run over stdin, fed by the test: the header and `first` rows, then SIGINT. Its stdin
/// stays open for the caller.
fn interrupted_dry_run(w: &Workdir, csv: &str, first: usize) -> std::process::Child {
    let mut child = validate_stdin(w, "report.csv", &[])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    let stdin = child.stdin.as_mut().unwrap();
    for l in &lines[..=first] {
        writeln!(stdin, "{l}").unwrap();
    }
    stdin.flush().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    sigint(&child);
    std::thread::sleep(std::time::Duration::from_millis(300));
    child
}

#[test]
fn an_interrupted_dry_run_still_reports_every_row() {
    let w = Workdir::new();
    let csv = valid_csv(5000, "i");
    let mut child = interrupted_dry_run(&w, &csv, 3000);
    {
        let mut stdin = child.stdin.take().unwrap();
        for l in csv.lines().skip(3001) {
            writeln!(stdin, "{l}").unwrap();
        }
    } // end of input
    let out = child.wait_with_output().unwrap();
    assert_eq!(code(&out), 130, "{}", stderr(&out));
    let rows = report_rows(&w.read("report.csv"));
    let numbers: Vec<String> = rows.iter().map(|r| r[1].to_string()).collect();
    let expected: Vec<String> = (1..=5000).map(|n| n.to_string()).collect();
    assert_eq!(numbers, expected, "every row once, in order");
    let s = statuses(&rows);
    assert!(s.get("valid").copied().unwrap_or(0) > 0, "{s:?}");
    let not_attempted: Vec<_> = rows.iter().filter(|r| &r[3] == "not_attempted").collect();
    assert!(not_attempted.len() >= 2000, "{s:?}");
    assert!(
        not_attempted
            .iter()
            .all(|r| &r[4] == "not validated: the run was interrupted (SIGINT/SIGTERM)"),
        "{:?}",
        not_attempted.first()
    );
}

#[test]
fn a_second_interrupt_stops_at_once() {
    let w = Workdir::new();
    let csv = valid_csv(100, "j");
    // Input stays open: after the first SIGINT the run would wait for the rest of it.
    let mut child = interrupted_dry_run(&w, &csv, 50);
    let _open_stdin = child.stdin.take(); // held open until the end of the test
    let start = std::time::Instant::now();
    sigint(&child);
    let out = child.wait_with_output().unwrap();
    assert_eq!(code(&out), 130, "{}", stderr(&out));
    assert!(start.elapsed() < std::time::Duration::from_secs(5));
    assert!(
        stderr(&out).contains("second interrupt: stopping at once; the report is incomplete"),
        "{}",
        stderr(&out)
    );
}
