//! `msgcapi send` against the real emulator process on loopback: retries, throttling, unknown
//! outcomes, bisection, dead tokens, rate limits, Ctrl-C, and secrets.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use crate::util::*;

/// Runs send with TOKEN in the environment.
fn send(w: &Workdir, emu: &Emulator, input: &str, extra: &[&str]) -> std::process::Output {
    send_cmd(w, emu, input, extra).output().expect("run send")
}

/// The `send` command of [`send`], for tests that start it and signal it.
fn send_cmd(w: &Workdir, emu: &Emulator, input: &str, extra: &[&str]) -> std::process::Command {
    let m = w.copy("mappings/mixed.yaml");
    let mut args = vec![
        "send",
        "--mapping",
        m.to_str().unwrap_or_default(),
        "--now",
        NOW,
        "--endpoint",
        emu.url.as_str(),
        "--report",
        "report.csv",
        "--summary-json",
        "summary.json",
        "--backoff-base-ms",
        "20",
    ];
    args.extend_from_slice(extra);
    args.push(input);
    let mut c = w.cmd(&args);
    c.env("MSGCAPI_ACCESS_TOKEN", TOKEN)
        .stdin(std::process::Stdio::null());
    c
}

fn log_lines(w: &Workdir) -> Vec<serde_json::Value> {
    jsonl(&w.path("requests.jsonl"))
}

#[test]
fn samples_are_delivered_and_every_row_is_reported() {
    let w = Workdir::new();
    w.copy("samples/mixed.csv");
    let emu = Emulator::builder(&w).record().start();
    let out = send(&w, &emu, "mixed.csv", &[]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let rows = report_rows(&w.read("report.csv"));
    assert_eq!(rows.len(), 18);
    let s = statuses(&rows);
    assert_eq!(s.get("sent"), Some(&8), "{s:?}\n{}", w.read("report.csv"));
    let rec = recorded_ids(&w.path("rec.jsonl"));
    assert_eq!(rec.len(), 8);
    assert!(rec.values().all(|n| *n == 1));
    for r in rows.iter().filter(|r| &r[3] == "sent") {
        assert!(
            !r[10].is_empty() && &r[11] == "1" && &r[12] == "200" && !r[15].is_empty(),
            "{r:?}"
        );
    }
}

#[test]
fn every_event_arrives_once_under_500s_throttling_and_latency() {
    for (faults, label) in [
        (
            vec![
                "--fail-rate",
                "0.3",
                "--seed",
                "11",
                "--latency-ms",
                "0..30",
            ],
            "30% 500s",
        ),
        (
            vec![
                "--throttle-rate",
                "0.3",
                "--throttle-http",
                "400",
                "--retry-after",
                "0",
                "--seed",
                "5",
            ],
            "throttled as 400",
        ),
        (
            vec![
                "--throttle-rate",
                "0.3",
                "--throttle-http",
                "429",
                "--retry-after",
                "0",
                "--seed",
                "6",
            ],
            "throttled as 429",
        ),
    ] {
        let w = Workdir::new();
        w.write("in.csv", &valid_csv(600, "e"));
        let mut args = vec!["--record", "rec.jsonl"];
        args.extend(faults.iter().copied());
        let emu = Emulator::builder(&w).args(&args).start();
        let out = send(
            &w,
            &emu,
            "in.csv",
            &["--batch-size", "50", "--max-retries", "12"],
        );
        assert_eq!(code(&out), 0, "{label}: {}", stderr(&out));
        let rows = report_rows(&w.read("report.csv"));
        assert_eq!(rows.len(), 600, "{label}");
        assert_eq!(statuses(&rows).get("sent"), Some(&600), "{label}");
        let rec = recorded_ids(&w.path("rec.jsonl"));
        assert_eq!(rec.len(), 600, "{label}");
        assert!(
            rec.values().all(|n| *n == 1),
            "{label}: an event arrived twice"
        );
        assert!(
            rows.iter().any(|r| r[11].parse::<u32>().unwrap_or(0) > 1),
            "{label}: some rows needed retries"
        );
    }
}

#[test]
fn dropped_connections_make_exactly_those_events_unknown_and_never_resent() {
    let w = Workdir::new();
    w.write("in.csv", &valid_csv(500, "d"));
    let emu = Emulator::builder(&w)
        .record()
        .log_requests()
        .drop_rate("0.3")
        .seed(3)
        .start();
    let out = send(&w, &emu, "in.csv", &["--batch-size", "50"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let rows = report_rows(&w.read("report.csv"));
    assert_eq!(rows.len(), 500);
    let rec = recorded_ids(&w.path("rec.jsonl"));
    assert!(rec.values().all(|n| *n == 1), "at most once");
    let sent: HashSet<String> = ids_with_status(&rows, "sent").into_iter().collect();
    let unknown: HashSet<String> = ids_with_status(&rows, "unknown").into_iter().collect();
    assert!(!unknown.is_empty(), "the seed drops some requests");
    assert_eq!(sent.len() + unknown.len(), 500);
    let recorded: HashSet<String> = rec.keys().cloned().collect();
    assert_eq!(
        recorded, sent,
        "exactly the sent events arrived; the unknown ones did not"
    );
    let dropped_events: u64 = log_lines(&w)
        .iter()
        .filter(|l| l["dropped"] == true)
        .map(|l| l["events"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(
        dropped_events as usize,
        unknown.len(),
        "unknown == the events of the dropped requests"
    );
}

#[test]
fn a_short_events_received_makes_the_batch_unknown_and_is_never_reposted() {
    let w = Workdir::new();
    // One dataset, three batches of 100; the middle one holds the event Meta will not count.
    let csv = one_dataset(&valid_csv(300, "u")).replace(",u150,", ",short150,");
    w.write("in.csv", &csv);
    let emu = Emulator::builder(&w)
        .record()
        .log_requests()
        .undercount_event_id("^short")
        .start();
    let extra = ["--batch-size", "100", "--state", "state.db"];
    let out = send(&w, &emu, "in.csv", &extra);
    assert_eq!(code(&out), 1, "unknown rows exit 1: {}", stderr(&out));
    let rows = report_rows(&w.read("report.csv"));
    assert_eq!(rows.len(), 300);
    let s = statuses(&rows);
    assert_eq!(
        (s.get("sent"), s.get("unknown")),
        (Some(&200), Some(&100)),
        "{s:?}"
    );
    let unknown: Vec<_> = rows.iter().filter(|r| &r[3] == "unknown").collect();
    let batch = &unknown[0][10];
    for r in &unknown {
        assert_eq!(&r[10], batch, "one batch: {r:?}");
        assert_eq!(&r[12], "200", "Meta's answer is kept: {r:?}");
        assert!(!r[15].is_empty(), "and its fbtrace_id: {r:?}");
        assert_eq!(
            &r[4],
            "Meta answered 200 but `events_received` was 99 for 100 events; some may have been recorded, so they are not resent"
        );
    }
    assert!(ids_with_status(&rows, "unknown").contains(&"short150".to_string()));
    // Posted once, never split or retried: three requests of 100 events.
    let log = log_lines(&w);
    assert_eq!(log.len(), 3, "{log:?}");
    assert!(log.iter().all(|l| l["events"] == 100 && l["status"] == 200));
    let rec = recorded_ids(&w.path("rec.jsonl"));
    assert_eq!(rec.len(), 299);
    assert!(rec.values().all(|n| *n == 1), "nothing arrived twice");

    // The ledger keeps the batch in flight: a rerun reports it `unknown` and sends nothing.
    let out = send(&w, &emu, "in.csv", &extra);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let s = statuses(&report_rows(&w.read("report.csv")));
    assert_eq!(
        (s.get("already_sent"), s.get("unknown")),
        (Some(&200), Some(&100)),
        "{s:?}"
    );
    assert_eq!(log_lines(&w).len(), 3, "the rerun posted nothing");
}

#[test]
fn bisection_isolates_three_poisoned_events_in_a_thousand() {
    let w = Workdir::new();
    let mut csv = valid_csv(1000, "ok");
    for i in [17, 500, 999] {
        csv = csv.replace(&format!(",ok{i},"), &format!(",poison{i},"));
    }
    w.write("in.csv", &csv);
    let emu = Emulator::builder(&w)
        .record()
        .log_requests()
        .reject_event_id("^poison")
        .start();
    // One dataset so the thousand events share one batch.
    w.write("in.csv", &one_dataset(&csv));
    let out = send(&w, &emu, "in.csv", &[]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let rows = report_rows(&w.read("report.csv"));
    let failed = ids_with_status(&rows, "failed");
    assert_eq!(failed, ["poison17", "poison500", "poison999"]);
    for r in rows.iter().filter(|r| &r[3] == "failed") {
        assert_eq!(&r[13], "100", "Meta's code on the failed row");
        assert!(
            !r[14].is_empty() && !r[4].is_empty(),
            "subcode and Meta's message: {r:?}"
        );
    }
    assert_eq!(statuses(&rows).get("sent"), Some(&997));
    assert_eq!(recorded_ids(&w.path("rec.jsonl")).len(), 997);
    let requests = log_lines(&w).len();
    // k bad events in n: at most 1 + 2·k·⌈log2 n⌉ requests.
    assert!(
        requests <= 1 + 2 * 3 * 10,
        "{requests} requests is not logarithmic"
    );
}

#[test]
fn a_token_that_expires_mid_run_stops_it_with_exit_3() {
    let w = Workdir::new();
    w.write("in.csv", &valid_csv(1000, "t"));
    let emu = Emulator::builder(&w)
        .record()
        .log_requests()
        .expire_token_after(3)
        .latency_ms("20")
        .start();
    let out = send(
        &w,
        &emu,
        "in.csv",
        &["--batch-size", "25", "--concurrency", "2"],
    );
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("190") || err.to_lowercase().contains("token"),
        "{err}"
    );
    let rows = report_rows(&w.read("report.csv"));
    assert_eq!(rows.len(), 1000, "every row is reported");
    let s = statuses(&rows);
    assert_eq!(
        s.get("sent").copied().unwrap_or(0),
        recorded_ids(&w.path("rec.jsonl")).len()
    );
    assert!(s.get("not_attempted").copied().unwrap_or(0) >= 800, "{s:?}");
    assert_eq!(s.get("unknown"), None, "{s:?}");
    let requests = log_lines(&w).len();
    assert!(
        requests <= 3 + 2 + 2,
        "stopped within one round of in-flight requests: {requests}"
    );
}

#[test]
fn rate_flag_is_honoured_at_the_emulator() {
    let w = Workdir::new();
    w.write("in.csv", &one_dataset(&valid_csv(60, "r")));
    let emu = Emulator::builder(&w).log_requests().start();
    let start = Instant::now();
    let out = send(
        &w,
        &emu,
        "in.csv",
        &["--batch-size", "4", "--rate", "5", "--concurrency", "8"],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let times: Vec<f64> = log_lines(&w)
        .iter()
        .filter_map(|l| l["t"].as_f64())
        .collect();
    assert_eq!(times.len(), 15);
    let span = times.iter().cloned().fold(f64::MIN, f64::max)
        - times.iter().cloned().fold(f64::MAX, f64::min);
    // 15 requests at 5/s with a burst of at most 5: at least 10 paced intervals of 0.2 s.
    assert!(span >= 1.8, "15 requests took only {span:.2}s at --rate 5");
    assert!(start.elapsed() < Duration::from_secs(20));
}

#[test]
fn sigint_mid_run_writes_the_full_report_and_exits_130() {
    let w = Workdir::new();
    w.write("in.csv", &valid_csv(1500, "s"));
    let emu = Emulator::builder(&w).record().latency_ms("300").start();
    let child = send_cmd(
        &w,
        &emu,
        "in.csv",
        &["--batch-size", "25", "--concurrency", "2"],
    )
    .stderr(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    sigint(&child);
    let out = child.wait_with_output().unwrap();
    assert_eq!(code(&out), 130, "{}", stderr(&out));
    let rows = report_rows(&w.read("report.csv"));
    assert_eq!(rows.len(), 1500, "the full report");
    let s = statuses(&rows);
    assert!(s.get("not_attempted").copied().unwrap_or(0) > 0, "{s:?}");
    let reported: HashSet<String> = ids_with_status(&rows, "sent")
        .into_iter()
        .chain(ids_with_status(&rows, "unknown"))
        .collect();
    for id in recorded_ids(&w.path("rec.jsonl")).keys() {
        assert!(
            reported.contains(id),
            "{id} arrived at the emulator but the report does not say sent/unknown"
        );
    }
}

#[test]
fn secrets_never_appear_in_any_output() {
    let w = Workdir::new();
    w.copy("samples/mixed.csv");
    let app_secret = "app-secret-5e5e5e5e";
    w.write("app_secret.txt", app_secret);
    let emu = Emulator::builder(&w).record().log_requests().start();
    let out = send(
        &w,
        &emu,
        "mixed.csv",
        &[
            "--app-secret-file",
            "app_secret.txt",
            "--emit-payloads",
            "payloads",
            "--report-format",
            "csv",
        ],
    );
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let mut outputs = vec![
        String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr(&out),
        w.read("report.csv"),
        w.read("summary.json"),
    ];
    for e in std::fs::read_dir(w.path("payloads")).unwrap() {
        outputs.push(std::fs::read_to_string(e.unwrap().path()).unwrap());
    }
    for o in &outputs {
        assert!(!o.contains(TOKEN), "token leaked: {o}");
        assert!(!o.contains(app_secret), "app secret leaked: {o}");
    }
    // A dead token: the error message must not echo it either.
    let emu2 = Emulator::start(&w);
    let m = w.copy("mappings/mixed.yaml");
    let out = w
        .cmd(&[
            "send",
            "--mapping",
            m.to_str().unwrap(),
            "--now",
            NOW,
            "--endpoint",
            &emu2.url,
            "--report",
            "r2.csv",
            "mixed.csv",
        ])
        .env("MSGCAPI_ACCESS_TOKEN", "EAAB-wrong-token-123")
        .output()
        .unwrap();
    assert_eq!(code(&out), 3);
    assert!(
        !stderr(&out).contains("EAAB-wrong-token-123")
            && !w.read("r2.csv").contains("EAAB-wrong-token-123")
    );
}

#[test]
fn no_token_is_a_usage_error_and_argv_tokens_are_refused() {
    let w = Workdir::new();
    w.copy("samples/mixed.csv");
    let m = w.copy("mappings/mixed.yaml");
    let out = w.run(&[
        "send",
        "--mapping",
        m.to_str().unwrap(),
        "--now",
        NOW,
        "mixed.csv",
    ]);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("MSGCAPI_ACCESS_TOKEN"),
        "{}",
        stderr(&out)
    );
    let out = w.run(&[
        "send",
        "--access-token",
        "x",
        "--mapping",
        m.to_str().unwrap(),
        "mixed.csv",
    ]);
    assert_eq!(code(&out), 2, "there is no --access-token flag");
}

#[test]
fn send_with_the_builtin_emulator_runs_offline() {
    let w = Workdir::new();
    w.copy("samples/mixed.csv");
    let m = w.copy("mappings/mixed.yaml");
    let out = w.run(&[
        "send",
        "--emulator",
        "--mapping",
        m.to_str().unwrap(),
        "--now",
        NOW,
        "--report",
        "r.csv",
        "mixed.csv",
    ]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert_eq!(
        statuses(&report_rows(&w.read("r.csv"))).get("sent"),
        Some(&8)
    );
}

#[test]
fn max_errors_stops_a_runaway_run() {
    let w = Workdir::new();
    let mut csv = valid_csv(400, "m");
    csv = csv.replace(",m", ",poison");
    w.write("in.csv", &csv);
    let emu = Emulator::builder(&w).reject_event_id("^poison").start();
    let out = send(
        &w,
        &emu,
        "in.csv",
        &[
            "--batch-size",
            "10",
            "--concurrency",
            "1",
            "--max-errors",
            "5",
        ],
    );
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let rows = report_rows(&w.read("report.csv"));
    assert_eq!(rows.len(), 400);
    let s = statuses(&rows);
    assert!(s.get("failed").copied().unwrap_or(0) < 40, "{s:?}");
    assert!(s.get("not_attempted").copied().unwrap_or(0) > 300, "{s:?}");
}

#[test]
fn dataset_command_gets_and_creates_ids() {
    let w = Workdir::new();
    let emu = Emulator::start(&w);
    let get = |extra: &[&str]| {
        let mut args = vec![
            "dataset",
            "--page-id",
            "109876543210987",
            "--endpoint",
            emu.url.as_str(),
        ];
        args.extend_from_slice(extra);
        w.cmd(&args)
            .env("MSGCAPI_ACCESS_TOKEN", TOKEN)
            .output()
            .unwrap()
    };
    let a = get(&[]);
    assert_eq!(code(&a), 0, "{}", stderr(&a));
    let id = String::from_utf8_lossy(&a.stdout).trim().to_string();
    assert!(
        !id.is_empty() && id.chars().all(|c| c.is_ascii_digit()),
        "{id}"
    );
    let b = get(&["--create", "--json"]);
    assert_eq!(code(&b), 0, "{}", stderr(&b));
    let j: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&b.stdout).trim()).unwrap();
    assert!(j.to_string().contains(&id), "{j}");
    let bad = w
        .cmd(&["dataset", "--waba-id", "1", "--endpoint", emu.url.as_str()])
        .env("MSGCAPI_ACCESS_TOKEN", "nope")
        .output()
        .unwrap();
    assert_eq!(code(&bad), 3);
}

#[test]
fn an_unreachable_endpoint_prints_no_url_and_no_secret() {
    let w = Workdir::new();
    let app_secret = "app-secret-7a7a7a7a";
    let proof = msgcapi::secret::Secret::appsecret_proof(
        &msgcapi::secret::Secret::new(TOKEN),
        &msgcapi::secret::Secret::new(app_secret),
    );
    // A loopback port nobody listens on: the connection is refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let endpoint = format!("http://127.0.0.1:{port}");
    for create in [false, true] {
        let mut args = vec![
            "dataset",
            "--page-id",
            "109876543210987",
            "--max-outage",
            "1s",
        ];
        args.extend(["--endpoint", &endpoint]);
        if create {
            args.push("--create");
        }
        let out = w
            .cmd(&args)
            .env("MSGCAPI_ACCESS_TOKEN", TOKEN)
            .env("MSGCAPI_APP_SECRET", app_secret)
            .output()
            .unwrap();
        assert_eq!(code(&out), 3, "{}", stderr(&out));
        let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
        assert!(all.contains("cannot reach"), "{all}");
        for leak in [
            TOKEN,
            app_secret,
            proof.as_str(),
            "appsecret_proof",
            "access_token",
            "/dataset",
        ] {
            assert!(!all.contains(leak), "`{leak}` printed: {all}");
        }
    }
}

#[test]
fn a_throttle_on_one_dataset_pauses_the_other_too() {
    let w = Workdir::new();
    // Two datasets of 48 rows each: every other row moves to a second dataset.
    let csv: Vec<String> = one_dataset(&valid_csv(96, "p"))
        .lines()
        .enumerate()
        .map(|(i, l)| match i % 2 {
            0 => l.to_string(),
            _ => l.replacen(",1234567890,", ",1234567891,", 1),
        })
        .collect();
    w.write("in.csv", &(csv.join("\n") + "\n"));
    let emu = Emulator::builder(&w)
        .log_requests()
        .record()
        .throttle_rate("0.1")
        .throttle_http("400")
        .retry_after("1")
        .seed(12)
        .start();
    // Paced at 5 requests/s per dataset, and a slot for every batch: each dataset would keep
    // sending through a pause that only held the throttled one.
    let out = send(
        &w,
        &emu,
        "in.csv",
        &[
            "--batch-size",
            "6",
            "--rate",
            "5",
            "--concurrency",
            "16",
            "--max-retries",
            "8",
        ],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(
        statuses(&report_rows(&w.read("report.csv"))).get("sent"),
        Some(&96)
    );
    assert_eq!(recorded_ids(&w.path("rec.jsonl")).len(), 96);
    let log: Vec<(f64, String, bool)> = log_lines(&w)
        .iter()
        .map(|l| {
            (
                l["t"].as_f64().unwrap(),
                l["dataset_id"].as_str().unwrap().to_string(),
                l["code"].as_i64().is_some(),
            )
        })
        .collect();
    let throttles: Vec<&(f64, String, bool)> = log.iter().filter(|l| l.2).collect();
    assert!(!throttles.is_empty(), "the seed throttles some requests");
    let mut delayed = 0;
    for (t, ds, _) in throttles {
        let others: Vec<f64> = log
            .iter()
            .filter(|l| &l.1 != ds && l.0 > *t)
            .map(|l| l.0 - t)
            .collect();
        // Requests already in flight may land just after the throttle; none may start within
        // the Retry-After second that follows.
        assert!(
            others.iter().all(|d| *d < 0.5 || *d > 0.95),
            "the other dataset sent {others:?} s after a throttle on {ds}"
        );
        delayed += others.iter().filter(|d| **d > 0.95).count();
    }
    assert!(delayed > 0, "the other dataset still had requests to make");
}

#[test]
fn a_success_that_says_regain_access_later_holds_the_whole_run() {
    let w = Workdir::new();
    w.write("in.csv", &one_dataset(&valid_csv(30, "g")));
    // Every success carries `estimated_time_to_regain_access: 20` (minutes): longer than
    // msgcapi waits, so after the first batch nothing more is sent.
    let emu = Emulator::builder(&w)
        .log_requests()
        .record()
        .regain_minutes("20")
        .start();
    let start = Instant::now();
    let out = send(
        &w,
        &emu,
        "in.csv",
        &["--batch-size", "10", "--concurrency", "1"],
    );
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(start.elapsed() < Duration::from_secs(20));
    let rows = report_rows(&w.read("report.csv"));
    let s = statuses(&rows);
    assert_eq!(
        (s.get("sent"), s.get("not_attempted")),
        (Some(&10), Some(&20)),
        "{s:?}"
    );
    assert_eq!(log_lines(&w).len(), 1, "one request, then the run held");
    assert_eq!(recorded_ids(&w.path("rec.jsonl")).len(), 10);
    for r in rows.iter().filter(|r| &r[3] == "not_attempted") {
        assert_eq!(
            &r[4],
            "not sent: Meta asked to wait 20 min, longer than msgcapi waits (15 min); rerun later"
        );
    }
}

#[test]
fn max_retry_time_fails_a_batch_that_keeps_failing_with_the_last_error() {
    let w = Workdir::new();
    w.write("in.csv", &one_dataset(&valid_csv(20, "x")));
    let emu = Emulator::builder(&w).fail_rate("1").seed(3).start();
    let start = Instant::now();
    // Far more retries than 2 s allow (backoff from 20 ms, doubling): the retry time, not the
    // count, ends each batch.
    let out = send(
        &w,
        &emu,
        "in.csv",
        &[
            "--batch-size",
            "10",
            "--max-retries",
            "1000",
            "--max-retry-time",
            "2s",
        ],
    );
    let took = start.elapsed();
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(took < Duration::from_secs(8), "took {took:?}");
    let rows = report_rows(&w.read("report.csv"));
    assert_eq!(statuses(&rows).get("failed"), Some(&20));
    for r in &rows {
        assert!(
            r[4].starts_with("An unexpected error has occurred")
                && r[4].ends_with(": the retry time ran out, `--max-retry-time 2s`)"),
            "{}",
            &r[4]
        );
        let attempts: u32 = r[11].parse().unwrap();
        assert!((2..100).contains(&attempts), "{attempts} attempts");
        assert!(&r[12] == "500" || &r[12] == "503", "{r:?}");
    }
}

#[test]
fn max_retry_time_takes_a_duration() {
    let w = Workdir::new();
    w.write("in.csv", &valid_csv(1, "d"));
    let emu = Emulator::start(&w);
    let out = send(&w, &emu, "in.csv", &["--max-retry-time", "1w"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("unknown unit `w` in `1w`"),
        "{}",
        stderr(&out)
    );
}

/// 30 rows of one dataset, 10 per batch, one batch at a time, against an emulator that
/// throttles every request with HTTP `http` and `Retry-After: retry_after`. Returns the run's
/// output and how long it took.
fn send_always_throttled(
    w: &Workdir,
    http: &str,
    retry_after: &str,
    extra: &[&str],
) -> (std::process::Output, Duration) {
    w.write("in.csv", &one_dataset(&valid_csv(30, "y")));
    let emu = Emulator::builder(w)
        .log_requests()
        .throttle_rate("1")
        .throttle_http(http)
        .retry_after(retry_after)
        .start();
    let start = Instant::now();
    let mut args = vec!["--batch-size", "10", "--concurrency", "1"];
    args.extend_from_slice(extra);
    let out = send(w, &emu, "in.csv", &args);
    (out, start.elapsed())
}

#[test]
fn a_throttle_longer_than_max_retry_time_is_not_waited_for() {
    let w = Workdir::new();
    let (out, took) = send_always_throttled(&w, "429", "5", &["--max-retry-time", "2s"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(took < Duration::from_secs(4), "no 5 s wait");
    assert_eq!(log_lines(&w).len(), 1, "the throttle held every batch");
    let rows = report_rows(&w.read("report.csv"));
    assert_eq!(
        ids_with_status(&rows, "failed").len(),
        10,
        "{}",
        w.read("report.csv")
    );
    for r in &rows {
        if &r[3] == "failed" {
            assert_eq!(
                &r[4],
                "(#4) Application request limit reached (gave up after 1 attempt: the retry time ran out, `--max-retry-time 2s`)"
            );
        } else {
            assert_eq!(&r[3], "not_attempted");
            assert_eq!(
                &r[4],
                "not sent: Meta's throttling holds the run longer than `--max-retry-time 2s`; rerun later"
            );
        }
    }
}

#[test]
fn a_throttle_asking_for_more_than_15_minutes_says_so_and_exits_1() {
    let w = Workdir::new();
    let (out, took) = send_always_throttled(&w, "400", "1200", &[]);
    // Not an abort (exit 3): the rows need a rerun later, as the report says.
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(took < Duration::from_secs(10));
    assert_eq!(log_lines(&w).len(), 1);
    let rows = report_rows(&w.read("report.csv"));
    let s = statuses(&rows);
    assert_eq!(
        (s.get("failed"), s.get("not_attempted")),
        (Some(&10), Some(&20)),
        "{s:?}"
    );
    let wants = "Meta asked to wait 20 min, longer than msgcapi waits (15 min); rerun later";
    for r in &rows {
        let want = match &r[3] {
            "failed" => {
                format!("(#4) Application request limit reached (gave up after 1 attempt: {wants})")
            }
            _ => format!("not sent: {wants}"),
        };
        assert_eq!(&r[4], want);
    }
}

#[test]
fn sigint_during_a_throttle_pause_exits_at_once() {
    let w = Workdir::new();
    w.write("in.csv", &one_dataset(&valid_csv(40, "q")));
    // Every answer is a throttle asking for 60 s: the run is waiting when Ctrl-C comes.
    let emu = Emulator::builder(&w)
        .throttle_rate("1")
        .retry_after("60")
        .start();
    let child = send_cmd(&w, &emu, "in.csv", &["--batch-size", "10"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    sigint(&child);
    let signalled = Instant::now();
    let out = child.wait_with_output().unwrap();
    // Nothing is in flight, so neither the 60 s pause nor the 10 s grace is waited out.
    assert!(
        signalled.elapsed() < Duration::from_secs(5),
        "exit took {:?} after SIGINT",
        signalled.elapsed()
    );
    assert_eq!(code(&out), 130, "{}", stderr(&out));
    let rows = report_rows(&w.read("report.csv"));
    assert_eq!(statuses(&rows).get("not_attempted"), Some(&40));
}
