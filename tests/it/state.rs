//! The state ledger (`--state`): no double counting across runs, crash safety, one writer.

use std::time::{Duration, Instant};

use crate::util::*;

fn send_args<'a>(
    m: &'a str,
    url: &'a str,
    report: &'a str,
    input: &'a str,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut a = vec![
        "send",
        "--mapping",
        m,
        "--now",
        NOW,
        "--endpoint",
        url,
        "--report",
        report,
        "--state",
        "state.db",
        "--backoff-base-ms",
        "20",
    ];
    a.extend_from_slice(extra);
    a.push(input);
    a
}

fn run_send(w: &Workdir, args: &[&str]) -> std::process::Output {
    w.cmd(args)
        .env("MSGCAPI_ACCESS_TOKEN", TOKEN)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run send")
}

#[test]
fn overlapping_exports_in_two_runs_send_each_event_once() {
    let w = Workdir::new();
    let all = valid_csv(300, "o");
    let lines: Vec<&str> = all.lines().collect();
    // Night 1: rows 0..200. Night 2 re-exports rows 100..300.
    w.write("night1.csv", &(lines[..201].join("\n") + "\n"));
    w.write(
        "night2.csv",
        &(format!("{}\n{}\n", lines[0], lines[101..].join("\n"))),
    );
    let emu = Emulator::builder(&w).record().start();
    let m = w.copy("mappings/mixed.yaml");
    let m = m.to_str().unwrap();
    let a = run_send(&w, &send_args(m, &emu.url, "r1.csv", "night1.csv", &[]));
    assert_eq!(code(&a), 0, "{}", stderr(&a));
    // A dry run predicts the overlap.
    let v = w.run(&[
        "validate",
        "--mapping",
        m,
        "--now",
        NOW,
        "--state",
        "state.db",
        "--report",
        "v.csv",
        "night2.csv",
    ]);
    assert_eq!(code(&v), 0, "{}", stderr(&v));
    assert_eq!(
        statuses(&report_rows(&w.read("v.csv"))).get("already_sent"),
        Some(&100)
    );
    let b = run_send(&w, &send_args(m, &emu.url, "r2.csv", "night2.csv", &[]));
    assert_eq!(code(&b), 0, "{}", stderr(&b));
    let r2 = report_rows(&w.read("r2.csv"));
    let s = statuses(&r2);
    assert_eq!(s.get("already_sent"), Some(&100), "{s:?}");
    assert_eq!(s.get("sent"), Some(&100), "{s:?}");
    let already = r2.iter().find(|r| &r[3] == "already_sent").unwrap();
    assert!(already[4].contains("acknowledged"), "{:?}", already);
    let rec = recorded_ids(&w.path("rec.jsonl"));
    assert_eq!(rec.len(), 300);
    assert!(rec.values().all(|n| *n == 1), "an event arrived twice");
}

#[test]
fn kill_9_mid_run_then_rerun_never_double_sends() {
    let w = Workdir::new();
    w.write("in.csv", &valid_csv(2000, "k"));
    let emu = Emulator::builder(&w).record().latency_ms("150").start();
    let m = w.copy("mappings/mixed.yaml");
    let m = m.to_str().unwrap();
    let mut child = w
        .cmd(&send_args(
            m,
            &emu.url,
            "r1.csv",
            "in.csv",
            &["--batch-size", "40", "--concurrency", "2"],
        ))
        .env("MSGCAPI_ACCESS_TOKEN", TOKEN)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    child.kill().unwrap(); // SIGKILL: no cleanup at all
    child.wait().unwrap();
    let before = recorded_ids(&w.path("rec.jsonl"));
    assert!(
        !before.is_empty() && before.len() < 2000,
        "killed mid-run: {} arrived",
        before.len()
    );

    let b = run_send(
        &w,
        &send_args(m, &emu.url, "r2.csv", "in.csv", &["--batch-size", "40"]),
    );
    assert!(code(&b) <= 1, "{}", stderr(&b));
    let r2 = report_rows(&w.read("r2.csv"));
    assert_eq!(r2.len(), 2000, "the rerun's report accounts for every row");
    let after = recorded_ids(&w.path("rec.jsonl"));
    let unknown = assert_arrived_once_or_unknown(&after, &r2, "k", 2000);
    assert!(
        // `concurrency` requests in flight, the batch handed over, and the answers settled in
        // memory whose record rides with the next batch's commit (at most one per request).
        unknown.len() <= (2 + 1 + 2) * 40,
        "only the in-flight batches are unknown: {}",
        unknown.len()
    );
}

#[test]
fn a_second_run_on_the_same_state_file_fails_at_once() {
    let w = Workdir::new();
    w.write("in.csv", &valid_csv(400, "c"));
    let emu = Emulator::builder(&w).latency_ms("200").start();
    let m = w.copy("mappings/mixed.yaml");
    let m = m.to_str().unwrap();
    let mut first = w
        .cmd(&send_args(
            m,
            &emu.url,
            "r1.csv",
            "in.csv",
            &["--batch-size", "20", "--concurrency", "1"],
        ))
        .env("MSGCAPI_ACCESS_TOKEN", TOKEN)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    let t = Instant::now();
    let second = run_send(&w, &send_args(m, &emu.url, "r2.csv", "in.csv", &[]));
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "it must not wait for the lock"
    );
    assert_eq!(code(&second), 3, "{}", stderr(&second));
    assert!(stderr(&second).contains("state.db"), "{}", stderr(&second));
    let _ = first.kill();
    let _ = first.wait();
}

#[test]
fn a_corrupt_or_foreign_state_file_is_a_clear_error_and_left_alone() {
    let w = Workdir::new();
    w.copy("samples/mixed.csv");
    w.write("state.db", "this is not a ledger\n");
    let emu = Emulator::builder(&w).record().start();
    let m = w.copy("mappings/mixed.yaml");
    let out = run_send(
        &w,
        &send_args(m.to_str().unwrap(), &emu.url, "r.csv", "mixed.csv", &[]),
    );
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(stderr(&out).contains("state.db"), "{}", stderr(&out));
    assert_eq!(
        w.read("state.db"),
        "this is not a ledger\n",
        "never silently reset"
    );
    assert!(
        recorded_ids(&w.path("rec.jsonl")).is_empty(),
        "nothing sent"
    );
}

#[test]
fn prune_keeps_what_is_inside_the_window_and_stats_export_work() {
    let w = Workdir::new();
    w.copy("samples/mixed.csv");
    let emu = Emulator::start(&w);
    let m = w.copy("mappings/mixed.yaml");
    let out = run_send(
        &w,
        &send_args(m.to_str().unwrap(), &emu.url, "r.csv", "mixed.csv", &[]),
    );
    assert_eq!(code(&out), 1, "{}", stderr(&out));

    let stats = w.run(&["state", "stats", "--state", "state.db", "--json"]);
    assert_eq!(code(&stats), 0, "{}", stderr(&stats));
    assert!(
        String::from_utf8_lossy(&stats.stdout).contains('8'),
        "{}",
        String::from_utf8_lossy(&stats.stdout)
    );

    // Same clock: every entry is inside the window.
    let p = w.run(&["state", "prune", "--state", "state.db", "--now", NOW]);
    assert_eq!(code(&p), 0, "{}", stderr(&p));
    let e = w.run(&["state", "export", "--state", "state.db", "out.csv"]);
    assert_eq!(code(&e), 0, "{}", stderr(&e));
    assert_eq!(w.read("out.csv").lines().count(), 1 + 8);

    // Thirty days later nothing can be sent again: all pruned.
    let p = w.run(&[
        "state",
        "prune",
        "--state",
        "state.db",
        "--now",
        "2026-12-20T12:00:00Z",
    ]);
    assert_eq!(code(&p), 0, "{}", stderr(&p));
    w.run(&["state", "export", "--state", "state.db", "out.csv"]);
    assert_eq!(w.read("out.csv").lines().count(), 1);
}

#[test]
fn a_state_file_belongs_to_the_endpoint_of_its_first_send() {
    let w = Workdir::new();
    w.copy("samples/mixed.csv");
    let m = w.copy("mappings/mixed.yaml");
    let m = m.to_str().unwrap();
    let emulator = |report: &str| {
        w.run(&[
            "send",
            "--emulator",
            "--mapping",
            m,
            "--now",
            NOW,
            "--state",
            "demo.db",
            "--report",
            report,
            "mixed.csv",
        ])
    };
    // Two runs of the built-in emulator (a new port each time) share a state file.
    let a = emulator("a.csv");
    assert_eq!(code(&a), 1, "{}", stderr(&a));
    let b = emulator("b.csv");
    assert_eq!(code(&b), 1, "{}", stderr(&b));
    assert_eq!(
        statuses(&report_rows(&w.read("b.csv"))).get("already_sent"),
        Some(&8)
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(w.path("demo.db"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "state files are private");
    }

    // A real endpoint on that file is refused before anything is read: exit 2, both named.
    let before = std::fs::read(w.path("demo.db")).unwrap();
    let emu = Emulator::builder(&w).record().start();
    let mut args = send_args(m, &emu.url, "c.csv", "mixed.csv", &[]);
    let at = args.iter().position(|a| *a == "state.db").unwrap();
    args[at] = "demo.db";
    let c = run_send(&w, &args);
    assert_eq!(code(&c), 2, "{}", stderr(&c));
    assert!(
        stderr(&c).contains(&format!(
            "error: state file `demo.db` belongs to the built-in emulator (`send --emulator`); this run sends to {}:",
            emu.url.rsplit_once(':').unwrap().0
        )),
        "{}",
        stderr(&c)
    );
    assert!(stderr(&c).contains("hint: "), "{}", stderr(&c));
    assert!(!w.path("c.csv").exists(), "no row was read");
    assert!(
        recorded_ids(&w.path("rec.jsonl")).is_empty(),
        "nothing sent"
    );
    assert_eq!(std::fs::read(w.path("demo.db")).unwrap(), before);

    // And the other way round: a file bound to an endpoint refuses the emulator.
    let d = run_send(&w, &send_args(m, &emu.url, "d.csv", "mixed.csv", &[]));
    assert_eq!(code(&d), 1, "{}", stderr(&d));
    let e = emulator("e.csv");
    let e = {
        // (the same command on state.db)
        drop(e);
        w.run(&[
            "send",
            "--emulator",
            "--mapping",
            m,
            "--now",
            NOW,
            "--state",
            "state.db",
            "mixed.csv",
        ])
    };
    assert_eq!(code(&e), 2, "{}", stderr(&e));
    let url = emu.url.replace("http://127.0.0.1:", "");
    assert!(
        stderr(&e).contains(&format!(
            "belongs to http://127.0.0.1:{url}; this run sends to the emulator (http://127.0.0.1:"
        )),
        "{}",
        stderr(&e)
    );

    // Stats and export show it.
    let s = w.run(&["state", "stats", "--state", "state.db"]);
    assert!(
        String::from_utf8_lossy(&s.stdout).contains(&format!("endpoint: {}\n", emu.url)),
        "{}",
        String::from_utf8_lossy(&s.stdout)
    );
    let s = w.run(&["state", "stats", "--state", "demo.db", "--json"]);
    let j: serde_json::Value = serde_json::from_slice(&s.stdout).unwrap();
    assert_eq!(j["endpoint"], "emulator");
    assert_eq!(j["entries"], 8);
    let x = w.run(&["state", "export", "--state", "state.db", "-"]);
    let text = String::from_utf8_lossy(&x.stdout).into_owned();
    assert!(
        text.lines()
            .skip(1)
            .all(|l| l.ends_with(&format!(",{}", emu.url))),
        "{text}"
    );
}

#[test]
fn export_says_when_meta_answered_not_the_pinned_clock() {
    let w = Workdir::new();
    w.copy("samples/mixed.csv");
    let emu = Emulator::start(&w);
    let m = w.copy("mappings/mixed.yaml");
    let started = chrono::Utc::now().timestamp();
    let out = run_send(
        &w,
        &send_args(m.to_str().unwrap(), &emu.url, "r.csv", "mixed.csv", &[]),
    );
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let x = w.run(&["state", "export", "--state", "state.db", "out.csv"]);
    assert_eq!(code(&x), 0, "{}", stderr(&x));
    let text = w.read("out.csv");
    let mut r = csv::Reader::from_reader(text.as_bytes());
    let mut n = 0;
    for row in r.records() {
        let row = row.unwrap();
        let at = chrono::DateTime::parse_from_rfc3339(&row[5])
            .unwrap()
            .timestamp();
        assert!(
            (started - 2..=chrono::Utc::now().timestamp() + 2).contains(&at),
            "recorded_at {} is not the wall clock (--now is {NOW})",
            &row[5]
        );
        n += 1;
    }
    assert_eq!(n, 8);
}

#[test]
fn import_reads_what_export_wrote() {
    let w = Workdir::new();
    w.write("in.csv", &valid_csv(120, "i"));
    let emu = Emulator::builder(&w).record().start();
    let m = w.copy("mappings/mixed.yaml");
    let m = m.to_str().unwrap();
    let out = run_send(
        &w,
        &send_args(m, &emu.url, "r.csv", "in.csv", &["--batch-size", "7"]),
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let x = w.run(&["state", "export", "--state", "state.db", "one.csv"]);
    assert_eq!(code(&x), 0, "{}", stderr(&x));
    let i = w.run(&["state", "import", "--state", "new.sqlite", "one.csv"]);
    assert_eq!(code(&i), 0, "{}", stderr(&i));
    assert!(
        stderr(&i).contains("imported 120 entries"),
        "{}",
        stderr(&i)
    );
    let x = w.run(&["state", "export", "--state", "new.sqlite", "two.csv"]);
    assert_eq!(code(&x), 0, "{}", stderr(&x));
    assert_eq!(w.read("one.csv"), w.read("two.csv"));
    // Into a file that has records: refused (exit 2), left alone.
    let before = std::fs::read(w.path("new.sqlite")).unwrap();
    let again = w.run(&["state", "import", "--state", "new.sqlite", "one.csv"]);
    assert_eq!(code(&again), 2, "{}", stderr(&again));
    assert_eq!(std::fs::read(w.path("new.sqlite")).unwrap(), before);
    // The imported ledger works: a rerun against the same endpoint sends nothing.
    let mut args = send_args(m, &emu.url, "r2.csv", "in.csv", &[]);
    let at = args.iter().position(|a| *a == "state.db").unwrap();
    args[at] = "new.sqlite";
    let out = run_send(&w, &args);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(
        statuses(&report_rows(&w.read("r2.csv"))).get("already_sent"),
        Some(&120)
    );
    assert!(recorded_ids(&w.path("rec.jsonl")).values().all(|n| *n == 1));
}

#[test]
fn a_ledger_of_the_earlier_redb_msgcapi_is_refused_with_the_way_forward() {
    let w = Workdir::new();
    w.copy("samples/mixed.csv");
    let mut redb = b"redb\x1A\x0A\xA9\x0D\x0A".to_vec();
    redb.resize(4096 * 3, 0);
    std::fs::write(w.path("acme.db"), &redb).unwrap();
    let m = w.copy("mappings/mixed.yaml");
    for args in [
        vec!["state", "stats", "--state", "acme.db"],
        vec![
            "validate",
            "--mapping",
            m.to_str().unwrap(),
            "--state",
            "acme.db",
            "mixed.csv",
        ],
    ] {
        let o = w.run(&args);
        assert_eq!(code(&o), 3, "{}", stderr(&o));
        assert!(
            stderr(&o).contains(
                "export it with the earlier msgcapi (`msgcapi state export --state acme.db old.csv`), then `msgcapi state import --state acme.sqlite old.csv`"
            ),
            "{}",
            stderr(&o)
        );
    }
    assert_eq!(std::fs::read(w.path("acme.db")).unwrap(), redb);
}

#[test]
fn an_export_into_a_closed_pipe_is_a_normal_end() {
    use std::io::{BufRead, BufReader};
    let w = Workdir::new();
    // A ledger bigger than a pipe's buffer, made by import (no send needed).
    let mut csv = String::from(
        "key,state,dataset_id,event_id,event_time,recorded_at,run_id,batch,fbtrace_id\n",
    );
    for i in 0..3000u32 {
        csv.push_str(&format!(
            "{:032x},acknowledged,1234567890,wamid.{i:020},2026-11-19T10:00:00Z,2026-11-19T10:05:00Z,run-1,{},FBTRACE\n",
            u128::from(i) * 7919 + 1,
            i / 500
        ));
    }
    w.write("old.csv", &csv);
    let i = w.run(&["state", "import", "--state", "s.sqlite", "old.csv"]);
    assert_eq!(code(&i), 0, "{}", stderr(&i));
    let mut child = w
        .cmd(&["state", "export", "--state", "s.sqlite", "-"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.starts_with("key,state,"), "{first}");
    let out = child.wait_with_output().unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(!stderr(&out).contains("state file"), "{}", stderr(&out));
}
