//! The ledger in PostgreSQL (`--state postgres://...`): the real binary against the emulator
//! and a real server on loopback. `MSGCAPI_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`); each test keeps its ledger in a schema of its own,
//! dropped after. Without a server the tests print a notice and pass, unless
//! `MSGCAPI_REQUIRE_POSTGRES=1` (CI).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::util::*;

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// One test's ledger: a schema of its own in the test database.
pub(crate) struct Pg {
    /// The server's URL, as the tests were given it (no `schema`).
    base: String,
    schema: String,
}

impl Pg {
    /// `None` (with a notice) when no server answers and none is required.
    pub(crate) fn new(tag: &str) -> Option<Pg> {
        let base = std::env::var("MSGCAPI_TEST_POSTGRES_URL")
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| DEFAULT_URL.into());
        let cfg: ::postgres::Config = base.parse().expect("MSGCAPI_TEST_POSTGRES_URL");
        for h in cfg.get_hosts() {
            if let ::postgres::config::Host::Tcp(h) = h {
                let ok = h == "localhost"
                    || h.trim_matches(['[', ']'])
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback());
                assert!(ok, "tests talk to loopback only");
            }
        }
        let schema = format!("it_{}_{tag}", std::process::id());
        let pg = Pg { base, schema };
        match pg.client() {
            Ok(mut c) => {
                c.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", pg.schema))
                    .unwrap();
                Some(pg)
            }
            Err(e) => {
                let required = std::env::var("MSGCAPI_REQUIRE_POSTGRES").is_ok_and(|v| v == "1");
                assert!(
                    !required,
                    "MSGCAPI_REQUIRE_POSTGRES=1 and no PostgreSQL: {e}"
                );
                eprintln!("note: PostgreSQL ledger tests skipped: no server ({e})");
                None
            }
        }
    }

    fn client(&self) -> Result<::postgres::Client, ::postgres::Error> {
        let mut cfg: ::postgres::Config = self.base.parse()?;
        cfg.connect_timeout(Duration::from_secs(5));
        cfg.connect(::postgres::NoTls)
    }

    /// `--state` for this test's ledger, with more URL parameters if given.
    pub(crate) fn url(&self, extra: &str) -> String {
        let sep = if self.base.contains('?') { '&' } else { '?' };
        format!("{}{sep}schema={}{extra}", self.base, self.schema)
    }

    /// Waits until no session named `app` is left (a killed run's session ends when the server
    /// sees its connection closed; its dataset locks go with it).
    pub(crate) fn wait_gone(&self, app: &str) {
        let mut c = self.client().unwrap();
        let t = Instant::now();
        loop {
            let n: i64 = c
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
                    &[&app],
                )
                .unwrap()
                .get(0);
            if n == 0 {
                return;
            }
            assert!(t.elapsed() < Duration::from_secs(10), "{app} stays");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        if let Ok(mut c) = self.client() {
            let _ = c.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema));
        }
    }
}

fn send(url: &str, state: &str, report: &str, input: &str, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = [
        "send",
        "--mapping",
        "mixed.yaml",
        "--now",
        NOW,
        "--endpoint",
        url,
        "--report",
        report,
        "--state",
        state,
        "--backoff-base-ms",
        "20",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.extend(extra.iter().map(|s| s.to_string()));
    a.push(input.to_string());
    a
}

fn run(w: &Workdir, args: &[String]) -> std::process::Output {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    w.cmd(&args)
        .env("MSGCAPI_ACCESS_TOKEN", TOKEN)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run msgcapi")
}

#[test]
fn a_second_send_with_the_same_postgres_ledger_sends_nothing_again() {
    let Some(pg) = Pg::new("twice") else { return };
    let w = Workdir::new();
    w.copy("mappings/mixed.yaml");
    w.write("in.csv", &valid_csv(300, "t"));
    let emu = Emulator::builder(&w).record().start();
    let state = pg.url("");
    let a = run(&w, &send(&emu.url, &state, "r1.csv", "in.csv", &[]));
    assert_eq!(code(&a), 0, "{}", stderr(&a));
    assert_eq!(
        statuses(&report_rows(&w.read("r1.csv"))).get("sent"),
        Some(&300)
    );
    // A dry run reads the same ledger.
    let v = w.run(&[
        "validate",
        "--mapping",
        "mixed.yaml",
        "--now",
        NOW,
        "--state",
        &state,
        "--report",
        "v.csv",
        "in.csv",
    ]);
    assert_eq!(code(&v), 0, "{}", stderr(&v));
    assert_eq!(
        statuses(&report_rows(&w.read("v.csv"))).get("already_sent"),
        Some(&300)
    );
    let b = run(&w, &send(&emu.url, &state, "r2.csv", "in.csv", &[]));
    assert_eq!(code(&b), 0, "{}", stderr(&b));
    let s = statuses(&report_rows(&w.read("r2.csv")));
    assert_eq!(s.get("already_sent"), Some(&300), "{s:?}");
    let rec = recorded_ids(&w.path("rec.jsonl"));
    assert_eq!(rec.len(), 300);
    assert!(rec.values().all(|n| *n == 1), "an event arrived twice");
}

#[test]
fn two_concurrent_runs_send_each_event_once() {
    let Some(pg) = Pg::new("concurrent") else {
        return;
    };
    let w = Workdir::new();
    w.copy("mappings/mixed.yaml");
    w.write("in.csv", &valid_csv(300, "c"));
    let emu = Emulator::builder(&w).record().latency_ms("150").start();
    let state = pg.url("");
    let slow = ["--batch-size", "20", "--concurrency", "1"];
    let args = send(&emu.url, &state, "r1.csv", "in.csv", &slow);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let first = w
        .cmd(&args)
        .env("MSGCAPI_ACCESS_TOKEN", TOKEN)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    let second = run(&w, &send(&emu.url, &state, "r2.csv", "in.csv", &slow));
    let first = first.wait_with_output().unwrap();
    assert!(code(&first) <= 1, "{}", stderr(&first));
    assert_eq!(code(&second), 1, "rows not attempted: {}", stderr(&second));

    let rec = recorded_ids(&w.path("rec.jsonl"));
    assert_eq!(rec.len(), 300, "every event delivered");
    assert!(rec.values().all(|n| *n == 1), "an event arrived twice");
    let (r1, r2) = (
        report_rows(&w.read("r1.csv")),
        report_rows(&w.read("r2.csv")),
    );
    let sent: Vec<HashSet<String>> = [&r1, &r2]
        .iter()
        .map(|r| ids_with_status(r, "sent").into_iter().collect())
        .collect();
    assert!(sent[0].is_disjoint(&sent[1]));
    assert_eq!(sent[0].len() + sent[1].len(), 300);
    // The first run sent everything. The second knew, when it opened the ledger, what the
    // first had delivered (already_sent) or had in flight (unknown: it may have arrived); the
    // first run held the rest of those datasets (not_attempted).
    assert_eq!(sent[0].len(), 300);
    let mut busy = 0;
    for r in &r2 {
        match &r[3] {
            "already_sent" | "unknown" => {}
            "not_attempted" => {
                assert!(r[4].contains("is being sent by another run"), "{:?}", r);
                assert!(r[4].contains("dataset 123456789"), "{:?}", r);
                busy += 1;
            }
            other => panic!("{other}: {r:?}"),
        }
    }
    assert!(busy > 0, "the runs overlapped");
}

#[test]
fn kill_9_mid_run_then_rerun_never_double_sends() {
    let Some(pg) = Pg::new("kill") else { return };
    let w = Workdir::new();
    w.copy("mappings/mixed.yaml");
    w.write("in.csv", &valid_csv(2000, "k"));
    let emu = Emulator::builder(&w).record().latency_ms("150").start();
    let app = format!("msgcapi-kill-{}", std::process::id());
    let state = pg.url(&format!("&application_name={app}"));
    let args = send(
        &emu.url,
        &state,
        "r1.csv",
        "in.csv",
        &["--batch-size", "40", "--concurrency", "2"],
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut child = w
        .cmd(&args)
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
    pg.wait_gone(&app);

    let b = run(
        &w,
        &send(
            &emu.url,
            &pg.url(""),
            "r2.csv",
            "in.csv",
            &["--batch-size", "40"],
        ),
    );
    assert!(code(&b) <= 1, "{}", stderr(&b));
    let r2 = report_rows(&w.read("r2.csv"));
    assert_eq!(r2.len(), 2000);
    let after = recorded_ids(&w.path("rec.jsonl"));
    let unknown = assert_arrived_once_or_unknown(&after, &r2, "k", 2000);
    assert!(unknown.len() <= (2 + 1 + 2) * 40, "{}", unknown.len());
}

#[test]
fn state_stats_export_and_prune_read_a_postgres_ledger() {
    let Some(pg) = Pg::new("stats") else { return };
    let w = Workdir::new();
    w.copy("mappings/mixed.yaml");
    w.copy("samples/mixed.csv");
    let emu = Emulator::start(&w);
    let state = pg.url("");
    // Before any send: no ledger there.
    let s = w.run(&["state", "stats", "--state", &state]);
    assert_eq!(code(&s), 3, "{}", stderr(&s));
    assert!(stderr(&s).contains("does not exist"), "{}", stderr(&s));

    let out = run(&w, &send(&emu.url, &state, "r.csv", "mixed.csv", &[]));
    assert_eq!(code(&out), 1, "{}", stderr(&out));

    let s = w.run(&["state", "stats", "--state", &state, "--json"]);
    assert_eq!(code(&s), 0, "{}", stderr(&s));
    let j: serde_json::Value = serde_json::from_slice(&s.stdout).unwrap();
    assert_eq!(j["entries"], 8, "{j}");
    assert_eq!(j["acknowledged"], 8, "{j}");
    assert_eq!(j["accounts"], 0, "{j}");
    let endpoint = j["endpoint"].as_str().unwrap_or_default().to_string();
    assert!(endpoint.starts_with("http://127.0.0.1:"), "{j}");
    let s = w.run(&["state", "stats", "--state", &state]);
    let text = String::from_utf8_lossy(&s.stdout);
    assert!(
        text.starts_with(&format!(
            "{}: 8 entries (8 acknowledged, 0 in flight)",
            state
        )),
        "{text}"
    );

    let p = w.run(&["state", "prune", "--state", &state, "--now", NOW]);
    assert_eq!(code(&p), 0, "{}", stderr(&p));
    assert_eq!(String::from_utf8_lossy(&p.stdout), "pruned 0 entries\n");
    let e = w.run(&["state", "export", "--state", &state, "out.csv"]);
    assert_eq!(code(&e), 0, "{}", stderr(&e));
    let csv = w.read("out.csv");
    assert_eq!(csv.lines().count(), 1 + 8);
    assert!(
        csv.lines()
            .skip(1)
            .all(|l| l.ends_with(&format!(",{endpoint}"))),
        "{csv}"
    );

    // Import into another schema: the same rows.
    let other = format!("{}_copy", pg.schema);
    let copy = state.replace(&format!("schema={}", pg.schema), &format!("schema={other}"));
    let _drop_copy = Pg {
        base: pg.base.clone(),
        schema: other,
    };
    let i = w.run(&["state", "import", "--state", &copy, "out.csv"]);
    assert_eq!(code(&i), 0, "{}", stderr(&i));
    let e = w.run(&["state", "export", "--state", &copy, "-"]);
    assert_eq!(String::from_utf8_lossy(&e.stdout), csv);

    // Thirty days later nothing can be sent again: all pruned.
    let p = w.run(&[
        "state",
        "prune",
        "--state",
        &state,
        "--now",
        "2026-12-20T12:00:00Z",
    ]);
    assert_eq!(String::from_utf8_lossy(&p.stdout), "pruned 8 entries\n");
    w.run(&["state", "export", "--state", &state, "out.csv"]);
    assert_eq!(w.read("out.csv").lines().count(), 1);
}

#[test]
fn the_password_is_never_printed() {
    let Some(pg) = Pg::new("secret") else { return };
    let w = Workdir::new();
    w.copy("mappings/mixed.yaml");
    w.copy("samples/mixed.csv");
    let emu = Emulator::start(&w);
    let secret = "Ledger-Pw-9c8b7a6f5e";
    // The password in the URL (the test server trusts loopback, so any password is taken).
    let with = pg
        .url("")
        .replacen("://postgres@", &format!("://postgres:{secret}@"), 1);
    assert!(
        with.contains(secret),
        "the test URL names user postgres: {with}"
    );
    let shown = pg.url("");
    let mut outputs: Vec<(String, std::process::Output)> = Vec::new();
    let mut args = send(&emu.url, &with, "r.csv", "mixed.csv", &[]);
    args.splice(1..1, ["--summary-json".to_string(), "s.json".to_string()]);
    outputs.push(("send".into(), run(&w, &args)));
    outputs.push(("stats".into(), w.run(&["state", "stats", "--state", &with])));
    // Refusals: a missing ledger, an unsupported `sslmode`, another endpoint.
    let missing = with.replace(&pg.schema, &format!("{}_none", pg.schema));
    outputs.push((
        "missing".into(),
        w.run(&["state", "stats", "--state", &missing]),
    ));
    outputs.push((
        "sslmode".into(),
        w.run(&[
            "state",
            "stats",
            "--state",
            &format!("{with}&sslmode=require"),
        ]),
    ));
    // Another endpoint (loopback, refused before anything is read or sent).
    let other = send("http://127.0.0.1:9", &with, "r2.csv", "mixed.csv", &[]);
    outputs.push(("endpoint".into(), run(&w, &other)));
    // The password from the environment.
    outputs.push((
        "PGPASSWORD".into(),
        w.cmd(&["state", "stats", "--state", &missing])
            .env("PGPASSWORD", secret)
            .output()
            .unwrap(),
    ));
    let mut seen: HashMap<String, String> = HashMap::new();
    for (what, o) in &outputs {
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(!all.contains(secret), "{what}: {all}");
        seen.insert(what.clone(), all);
    }
    assert_eq!(code(&outputs[0].1), 1, "{}", seen["send"]);
    assert!(
        seen["missing"].contains("does not exist"),
        "{}",
        seen["missing"]
    );
    assert!(
        seen["missing"].contains(&format!(
            "`{}`",
            shown.replace(&pg.schema, &format!("{}_none", pg.schema))
        )),
        "{}",
        seen["missing"]
    );
    assert!(
        seen["sslmode"].contains("`sslmode=require` is not supported"),
        "{}",
        seen["sslmode"]
    );
    assert_eq!(code(&outputs[4].1), 2, "{}", seen["endpoint"]);
    assert!(
        seen["endpoint"].contains("this run sends to http://127.0.0.1:9"),
        "{}",
        seen["endpoint"]
    );
    for f in ["r.csv", "s.json"] {
        assert!(!w.read(f).contains(secret), "{f}");
    }
}
