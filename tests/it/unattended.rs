//! Runs nobody watches: what cron, monitors and log collectors see. The report stays one
//! physical line per row, `--summary-json` is written on every exit, every row is counted.

use crate::util::*;

fn summary(w: &Workdir) -> serde_json::Value {
    serde_json::from_str(&w.read("summary.json")).expect("summary JSON")
}

/// On every way a run ends, the report has one physical line per row (plus the CSV header).
#[test]
fn the_report_is_one_physical_line_per_row_on_every_exit_path() {
    // Meta's messages with line breaks, a token that dies mid-run, cells with line breaks.
    let w = Workdir::new();
    let emu = Emulator::builder(&w).expire_token_after(2).start();
    let mut csv = one_dataset(&valid_csv(60, "nl"));
    // An event id with a line break inside a quoted cell.
    csv = csv.replacen(",nl1,", ",\"nl\n1\",", 1);
    w.write("in.csv", &csv);
    w.copy("mappings/mixed.yaml");
    for format in ["csv", "jsonl"] {
        let report = format!("report.{format}");
        let out = w.send(
            "mixed.yaml",
            &emu.url,
            &[
                "--batch-size",
                "10",
                "--concurrency",
                "1",
                "--report",
                &report,
                "--report-format",
                format,
                "--summary-json",
                "summary.json",
                "in.csv",
            ],
        );
        assert_eq!(code(&out), 3, "{}", stderr(&out));
        let text = w.read(&report);
        let header = usize::from(format == "csv");
        assert_eq!(text.lines().count(), 60 + header, "{format}:\n{text}");
        assert!(text.contains("not_attempted"));
        assert!(!text.contains("hint:"), "hints go to stderr only");
        assert!(stderr(&out).contains("hint:"), "{}", stderr(&out));
    }
}

/// A monitor never reads a stale summary: it is written on exit 2 and 3 too, before any row.
#[test]
fn the_summary_is_written_on_every_exit() {
    let cases: &[(&str, &[&str], i32, &str)] = &[
        (
            "flag",
            &[
                "validate",
                "--mapping",
                "m.yaml",
                "--no-such-flag",
                "in.csv",
            ],
            2,
            "usage",
        ),
        (
            "grace",
            &["send", "--mapping", "m.yaml", "--grace", "inf", "in.csv"],
            2,
            "usage",
        ),
        (
            "mapping",
            &["validate", "--mapping", "bad.yaml", "in.csv"],
            2,
            "mapping",
        ),
        (
            "token",
            &["send", "--mapping", "m.yaml", "in.csv"],
            2,
            "usage",
        ),
        (
            "input",
            &["validate", "--mapping", "m.yaml", "nope.csv"],
            3,
            "input",
        ),
        (
            "state",
            &[
                "validate",
                "--mapping",
                "m.yaml",
                "--state",
                "junk.db",
                "in.csv",
            ],
            3,
            "state",
        ),
    ];
    for (name, args, want, kind) in cases {
        let w = Workdir::new();
        std::fs::copy(root().join("mappings/mixed.yaml"), w.path("m.yaml")).unwrap();
        w.write("bad.yaml", "dataset_id: [\n");
        w.write("junk.db", "not a ledger at all");
        w.write("in.csv", &valid_csv(3, "s"));
        w.write("summary.json", "{\"stale\": true}");
        let mut args = args.to_vec();
        args.extend(["--summary-json", "summary.json"]);
        let out = w.run(&args);
        assert_eq!(code(&out), *want, "{name}: {}", stderr(&out));
        let s = summary(&w);
        assert_eq!(s["exit_code"], *want, "{name}: {s}");
        assert_eq!(s["error"]["kind"], *kind, "{name}: {s}");
        assert!(
            s["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{name}: {s}"
        );
        assert_eq!(s["rows"], 0, "{name}");
        assert!(s.get("stale").is_none(), "{name}: stale summary left");
    }
}

#[test]
fn a_run_that_ends_in_error_says_which_kind_in_its_summary() {
    let w = Workdir::new();
    let emu = Emulator::builder(&w).expire_token_after(1).start();
    w.write("in.csv", &one_dataset(&valid_csv(30, "k")));
    w.copy("mappings/mixed.yaml");
    let out = w.send(
        "mixed.yaml",
        &emu.url,
        &[
            "--batch-size",
            "10",
            "--concurrency",
            "1",
            "--report",
            "r.csv",
            "--summary-json",
            "summary.json",
            "in.csv",
        ],
    );
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let s = summary(&w);
    assert_eq!(s["error"]["kind"], "auth", "{s}");
    assert_eq!(s["rows"], 30);
    // A complete run has no error.
    let out = w
        .cmd(&[
            "validate",
            "--mapping",
            "mixed.yaml",
            "--now",
            NOW,
            "--report",
            "r.csv",
            "--summary-json",
            "summary.json",
            "in.csv",
        ])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(summary(&w)["error"].is_null());
}

/// `by_channel` and `by_event_name` account for every row: unmapped ones under `(unmapped)`.
#[test]
fn every_row_is_counted_by_channel_and_event_name() {
    let w = Workdir::new();
    w.copy("mappings/mixed.yaml");
    let mut csv = valid_csv(6, "u");
    csv = csv.replacen("\nFB,lead,", "\nSMS,lead,", 1);
    csv = csv.replacen("\nIG,cart,", "\nIG,refund,", 1);
    w.write("in.csv", &csv);
    let out = w.run(&[
        "validate",
        "--mapping",
        "mixed.yaml",
        "--now",
        NOW,
        "--report",
        "r.csv",
        "--summary-json",
        "summary.json",
        "in.csv",
    ]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let s = summary(&w);
    let total = |m: &serde_json::Value| -> u64 {
        m.as_object()
            .unwrap()
            .values()
            .flat_map(|per| per.as_object().unwrap().values())
            .map(|n| n.as_u64().unwrap())
            .sum()
    };
    assert_eq!(total(&s["by_channel"]), 6, "{s}");
    assert_eq!(total(&s["by_event_name"]), 6, "{s}");
    assert_eq!(s["by_channel"]["(unmapped)"]["invalid"], 1, "{s}");
    assert_eq!(s["by_event_name"]["(unmapped)"]["invalid"], 1, "{s}");
}

/// A `custom_data` key that looks like a typo is warned about, naming where; `--strict-keys`
/// makes it an error.
#[test]
fn mapping_typos_are_caught_before_any_row() {
    let w = Workdir::new();
    let mixed = std::fs::read_to_string(root().join("mappings/mixed.yaml")).unwrap();
    w.write(
        "typo.yaml",
        &mixed.replace(
            "  order_id: {column: order_ref}",
            "  orderid: {column: order_ref}",
        ),
    );
    w.write("in.csv", &valid_csv(3, "ty"));
    let run = |strict: bool| {
        let mut args = vec![
            "validate",
            "--mapping",
            "typo.yaml",
            "--now",
            NOW,
            "--report",
            "r.csv",
            "--quiet",
            "in.csv",
        ];
        if strict {
            args.insert(1, "--strict-keys");
        }
        w.run(&args)
    };
    let out = run(false);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stderr(&out)
            .contains("warning: typo.yaml:28:12: `custom_data.orderid`: did you mean `order_id`?"),
        "{}",
        stderr(&out)
    );
    std::fs::remove_file(w.path("r.csv")).unwrap();
    let out = run(true);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(!w.path("r.csv").exists());
    // A constant channel whose ids are not mapped: every row would be invalid.
    w.write(
        "const.yaml",
        "dataset_id: \"1234567890\"\nchannel: messenger\nevent_name: LeadSubmitted\nevent_time: {column: occurred_at}\nuser_data:\n  page_id: {column: page_id}\n",
    );
    let out = w.run(&[
        "validate",
        "--mapping",
        "const.yaml",
        "--now",
        NOW,
        "in.csv",
    ]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("`user_data.page_scoped_user_id`"),
        "{}",
        stderr(&out)
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port()
}

/// An endpoint nobody answers on is an outage of the run: it pauses and probes, then stops
/// after `--max-outage`, exit 3, every row reported, none failed.
#[test]
fn an_unreachable_endpoint_is_an_outage_that_stops_the_run() {
    let w = Workdir::new();
    w.copy("mappings/mixed.yaml");
    w.write("in.csv", &valid_csv(20_000, "o"));
    let endpoint = format!("http://127.0.0.1:{}", free_port());
    let start = std::time::Instant::now();
    let out = w.send(
        "mixed.yaml",
        &endpoint,
        &[
            "--max-outage",
            "3s",
            "--max-errors",
            "10",
            "--report",
            "r.csv",
            "--summary-json",
            "summary.json",
            "in.csv",
        ],
    );
    let took = start.elapsed();
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(took < std::time::Duration::from_secs(15), "took {took:?}");
    let err = stderr(&out);
    assert!(
        err.contains("127.0.0.1 unreachable for 3s (connection refused)"),
        "{err}"
    );
    let rows = report_rows(&w.read("r.csv"));
    assert_eq!(rows.len(), 20_000);
    let s = statuses(&rows);
    assert_eq!(s.get("failed"), None, "{s:?}");
    assert_eq!(s.get("not_attempted"), Some(&20_000), "{s:?}");
    assert!(rows.iter().all(
        |r| &r[4] == "not sent: 127.0.0.1 unreachable for 3s (connection refused); rerun later"
    ));
    let summary: serde_json::Value = serde_json::from_str(&w.read("summary.json")).unwrap();
    assert_eq!(summary["error"]["kind"], "outage");
}

/// When the endpoint answers again, sending resumes: nothing lost, no retry spent.
#[test]
fn sending_resumes_when_the_endpoint_comes_back() {
    let w = Workdir::new();
    w.copy("mappings/mixed.yaml");
    w.write("in.csv", &valid_csv(300, "back"));
    let port = free_port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let child = w
        .cmd(&[
            "send",
            "--mapping",
            "mixed.yaml",
            "--now",
            NOW,
            "--endpoint",
            &endpoint,
            "--max-outage",
            "1m",
            "--max-retries",
            "0",
            "--batch-size",
            "50",
            "--report",
            "r.csv",
            "in.csv",
        ])
        .env("MSGCAPI_ACCESS_TOKEN", TOKEN)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let listen = format!("127.0.0.1:{port}");
    let _emu = Emulator::builder(&w).listen(&listen).record().start();
    let out = child.wait_with_output().unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let rows = report_rows(&w.read("r.csv"));
    assert!(
        rows.iter().all(|r| &r[3] == "sent" && &r[11] == "1"),
        "one attempt each"
    );
    assert_eq!(recorded_ids(&w.path("rec.jsonl")).len(), 300);
}

/// Off a terminal, a long run writes a status line every `--progress-every`: what it read and
/// sent, and what it waits for.
#[test]
fn long_runs_are_visible_in_logs() {
    let w = Workdir::new();
    w.copy("mappings/mixed.yaml");
    w.write("in.csv", &one_dataset(&valid_csv(10, "log")));
    let emu = Emulator::builder(&w)
        .throttle_rate("1")
        .throttle_http("400")
        .retry_after("3")
        .start();
    let args = [
        "send",
        "--mapping",
        "mixed.yaml",
        "--now",
        NOW,
        "--endpoint",
        &emu.url,
        "--max-retries",
        "1",
        "--report",
        "r.csv",
        "--progress-every",
        "1s",
        "in.csv",
    ];
    let out = w
        .cmd(&args)
        .env("MSGCAPI_ACCESS_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let err = stderr(&out);
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("msgcapi send: 0m"))
        .collect();
    assert!(!lines.is_empty(), "{err}");
    assert!(
        lines.iter().any(|l| l.contains("10 rows read")
            && l.contains("waiting")
            && l.contains("throttled")),
        "{err}"
    );
    // --quiet and --progress off write none.
    for flag in ["--quiet", "--progress=off"] {
        let mut quiet = args.to_vec();
        quiet.insert(1, flag);
        // One throttled try is enough to see what is printed.
        let at = quiet.iter().position(|a| *a == "1").unwrap();
        quiet[at] = "0";
        let out = w
            .cmd(&quiet)
            .env("MSGCAPI_ACCESS_TOKEN", TOKEN)
            .output()
            .unwrap();
        assert!(
            !stderr(&out).contains("rows read"),
            "{flag}: {}",
            stderr(&out)
        );
    }
}

/// A reader that goes away (`| head -1`) is a normal end: no panic, no blame. A run whose
/// report it cut short says so and exits 141, never 0 (it did not read all its input); `state`
/// commands end normally.
#[test]
fn a_closed_stdout_is_a_normal_end() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let w = Workdir::new();
    w.copy("mappings/mixed.yaml");
    w.write("in.csv", &one_dataset(&valid_csv(30_000, "pipe")));
    let emu = Emulator::builder(&w).record().start();
    // Reads the first line of stdout, then closes it: what `| head -1` does.
    let first_line_then_close = |args: &[&str]| {
        let mut child = w
            .cmd(args)
            .env("MSGCAPI_ACCESS_TOKEN", TOKEN)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let out = child.wait_with_output().unwrap();
        (line, out)
    };
    let send = [
        "send",
        "--mapping",
        "mixed.yaml",
        "--now",
        NOW,
        "--endpoint",
        &emu.url,
        "--state",
        "state.db",
        "--report",
        "-",
        "--summary-json",
        "summary.json",
        "in.csv",
    ];
    let (line, out) = first_line_then_close(&send);
    assert!(line.starts_with("file,row,line,status"), "{line}");
    assert_eq!(code(&out), 141, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("closed stdout"), "{err}");
    assert!(!err.contains("panicked") && !err.contains("state"), "{err}");
    assert_eq!(summary(&w)["error"]["kind"], "report_closed");
    let sent = recorded_ids(&w.path("rec.jsonl")).len();
    assert!(sent < 30_000, "it stopped sending: {sent}");

    for args in [
        &["state", "stats", "--state", "state.db"][..],
        &["state", "stats", "--json", "--state", "state.db"][..],
        &["state", "export", "--state", "state.db", "-"][..],
    ] {
        for _ in 0..3 {
            let (line, out) = first_line_then_close(args);
            assert!(!line.is_empty(), "{args:?}");
            assert_eq!(code(&out), 0, "{args:?}: {}", stderr(&out));
            assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
        }
    }
    let (_, out) = first_line_then_close(&[
        "validate",
        "--mapping",
        "mixed.yaml",
        "--now",
        NOW,
        "in.csv",
    ]);
    assert_eq!(code(&out), 141, "{}", stderr(&out));
}
