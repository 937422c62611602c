//! What users read when a command cannot run: the message of every exit-2 and exit-3 path,
//! pinned as snapshots; flags that must be refused at the edge (never a panic); and the
//! endpoint rule, checked before any connection is attempted.

use std::net::TcpListener;

use crate::util::*;

/// One way to fail: files it needs, the command line, and extra environment.
struct Case {
    name: &'static str,
    files: &'static [(&'static str, &'static str)],
    args: &'static [&'static str],
    env: &'static [(&'static str, &'static str)],
    code: i32,
}

/// A path that cannot be a directory: a file stands where its parent should be.
const BLOCKED: &str = "blocker/r.csv";

fn cases() -> Vec<Case> {
    let c = |name, files, args, env, code| Case {
        name,
        files,
        args,
        env,
        code,
    };
    let token: &[(&str, &str)] = &[("MSGCAPI_ACCESS_TOKEN", TOKEN)];
    let csv: &[(&str, &str)] = &[("in.csv", "chan,stage\n")];
    vec![
        // exit 2: the command line or the mapping.
        c(
            "no_mapping_file",
            &[],
            &["validate", "--mapping", "nosuch.yaml", "in.csv"],
            &[],
            2,
        ),
        c(
            "mapping_not_text",
            &[("m.yaml", "dataset_id: \"1\"\nchannel: whats\u{0}app\n")],
            &["validate", "--mapping", "m.yaml", "in.csv"],
            &[],
            2,
        ),
        c(
            "max_cell_bytes",
            &[],
            &[
                "validate",
                "--mapping",
                "mixed.yaml",
                "--max-cell-bytes",
                "1e9",
                "in.csv",
            ],
            &[],
            2,
        ),
        c(
            "yaml_syntax",
            &[("m.yaml", "dataset_id: [\n")],
            &["validate", "--mapping", "m.yaml", "in.csv"],
            &[],
            2,
        ),
        c(
            "unknown_key",
            &[("m.yaml", "datset_id: 1\n")],
            &["validate", "--mapping", "m.yaml", "in.csv"],
            &[],
            2,
        ),
        c(
            "missing_column",
            csv,
            &["validate", "--mapping", "mixed.yaml", "in.csv"],
            &[],
            2,
        ),
        c(
            "stdin_twice",
            &[],
            &["validate", "--mapping", "mixed.yaml", "-", "-"],
            &[],
            2,
        ),
        c(
            "batch_size",
            &[],
            &[
                "validate",
                "--mapping",
                "mixed.yaml",
                "--batch-size",
                "1001",
                "in.csv",
            ],
            &[],
            2,
        ),
        c(
            "delimiter",
            &[],
            &[
                "validate",
                "--mapping",
                "mixed.yaml",
                "--delimiter",
                ";;",
                "in.csv",
            ],
            &[],
            2,
        ),
        c(
            "expiry_margin",
            &[],
            &[
                "validate",
                "--mapping",
                "mixed.yaml",
                "--expiry-margin",
                "7d",
                "in.csv",
            ],
            &[],
            2,
        ),
        c(
            "now",
            &[],
            &[
                "validate",
                "--mapping",
                "mixed.yaml",
                "--now",
                "yesterday",
                "in.csv",
            ],
            &[],
            2,
        ),
        c(
            "no_token",
            &[],
            &["send", "--mapping", "mixed.yaml", "in.csv"],
            &[],
            2,
        ),
        c(
            "argv_token",
            &[],
            &[
                "send",
                "--mapping",
                "mixed.yaml",
                "--access-token",
                "EAAB",
                "in.csv",
            ],
            &[],
            2,
        ),
        c(
            "endpoint_scheme",
            &[],
            &[
                "send",
                "--mapping",
                "mixed.yaml",
                "--endpoint",
                "ftp://127.0.0.1:9",
                "in.csv",
            ],
            token,
            2,
        ),
        c(
            "endpoint_password",
            &[],
            &[
                "send",
                "--mapping",
                "mixed.yaml",
                "--endpoint",
                "https://u:pw@127.0.0.1:9",
                "in.csv",
            ],
            token,
            2,
        ),
        c(
            "grace_inf",
            &[],
            &[
                "send",
                "--mapping",
                "mixed.yaml",
                "--grace",
                "inf",
                "in.csv",
            ],
            token,
            2,
        ),
        c(
            "timeout_huge",
            &[],
            &[
                "send",
                "--mapping",
                "mixed.yaml",
                "--timeout",
                "18446744073709551615",
                "in.csv",
            ],
            token,
            2,
        ),
        c(
            "dataset_timeout_inf",
            &[],
            &["dataset", "--page-id", "1", "--timeout", "inf"],
            token,
            2,
        ),
        c(
            "dataset_not_an_id",
            &[],
            &["dataset", "--page-id", "page-one"],
            token,
            2,
        ),
        c(
            "dataset_endpoint_query",
            &[],
            &[
                "dataset",
                "--page-id",
                "1",
                "--endpoint",
                "http://127.0.0.1:9/?access_token=x",
            ],
            token,
            2,
        ),
        c(
            "dataset_no_token",
            &[],
            &["dataset", "--page-id", "1"],
            &[],
            2,
        ),
        // exit 3: an input, the state file, an output.
        c(
            "missing_input",
            &[],
            &["validate", "--mapping", "mixed.yaml", "nope.csv"],
            &[],
            3,
        ),
        c(
            "not_parquet",
            &[("x.parquet", "not parquet")],
            &["validate", "--mapping", "mixed.yaml", "x.parquet"],
            &[],
            3,
        ),
        c(
            "unknown_format",
            &[("x.xlsx", "")],
            &["validate", "--mapping", "mixed.yaml", "x.xlsx"],
            &[],
            3,
        ),
        c(
            "foreign_state",
            &[("s.db", "hello, not a database")],
            &[
                "validate",
                "--mapping",
                "mixed.yaml",
                "--state",
                "s.db",
                "mixed.csv",
            ],
            &[],
            3,
        ),
        c(
            "report_unwritable",
            &[("blocker", "")],
            &[
                "validate",
                "--mapping",
                "mixed.yaml",
                "--report",
                BLOCKED,
                "mixed.csv",
            ],
            &[],
            3,
        ),
        c(
            "payloads_unwritable",
            &[("blocker", "")],
            &[
                "validate",
                "--mapping",
                "mixed.yaml",
                "--emit-payloads",
                "blocker/p",
                "mixed.csv",
            ],
            &[],
            3,
        ),
        c(
            "summary_unwritable",
            &[("blocker", "")],
            &[
                "validate",
                "--mapping",
                "mixed.yaml",
                "--summary-json",
                "blocker/s.json",
                "mixed.csv",
            ],
            &[],
            3,
        ),
        c(
            "token_file_missing",
            &[],
            &[
                "send",
                "--mapping",
                "mixed.yaml",
                "--access-token-file",
                "nope.txt",
                "mixed.csv",
            ],
            &[],
            2,
        ),
        c(
            "state_missing",
            &[],
            &["state", "stats", "--state", "nope.db"],
            &[],
            3,
        ),
    ]
}

/// Temp paths, ports and clap's usage lines vary; the message does not.
fn tidy(text: &str, w: &Workdir) -> String {
    let dir = w.dir.path().display().to_string();
    text.replace(&dir, "[DIR]")
        .lines()
        .filter(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_string()
}

#[test]
fn every_exit_2_and_3_path_says_what_is_wrong() {
    for case in cases() {
        let w = Workdir::new();
        w.copy("mappings/mixed.yaml");
        w.copy("samples/mixed.csv");
        for (name, text) in case.files {
            w.write(name, text);
        }
        let mut args: Vec<&str> = case.args.to_vec();
        if args[0] == "validate" || args[0] == "send" {
            // Runs report to a file, quietly, unless the case says otherwise.
            if !args.contains(&"--report") {
                args.splice(1..1, ["--report", "r.csv"]);
            }
            args.insert(1, "--quiet");
        }
        let mut c = w.cmd(&args);
        for (k, v) in case.env {
            c.env(k, v);
        }
        let out = c.stdin(std::process::Stdio::null()).output().unwrap();
        let err = stderr(&out);
        assert_eq!(code(&out), case.code, "{}: {err}", case.name);
        assert!(!err.contains("panicked"), "{}: {err}", case.name);
        assert!(!err.contains(TOKEN), "{}: {err}", case.name);
        insta::assert_snapshot!(case.name, tidy(&err, &w));
        if case.code == 2 {
            assert!(
                !w.path("r.csv").exists(),
                "{}: nothing is processed",
                case.name
            );
        }
    }
}

#[test]
fn numbers_and_durations_are_refused_at_the_edge_never_panicking() {
    let w = Workdir::new();
    w.copy("mappings/mixed.yaml");
    w.write("in.csv", &valid_csv(1, "f"));
    let flags = [
        "--grace",
        "--timeout",
        "--max-retry-time",
        "--expiry-margin",
        "--rate",
    ];
    let values = ["inf", "-inf", "nan", "-1", "1e300", "18446744073709551615"];
    for flag in flags {
        for value in values {
            let out = w
                .cmd(&[
                    "send",
                    "--mapping",
                    "mixed.yaml",
                    "--now",
                    NOW,
                    // `--flag=-1`: a value, not a flag.
                    &format!("{flag}={value}"),
                    "in.csv",
                ])
                .env("MSGCAPI_ACCESS_TOKEN", TOKEN)
                .output()
                .unwrap();
            let err = stderr(&out);
            assert_eq!(code(&out), 2, "{flag} {value}: {err}");
            assert!(err.contains(flag), "{flag} {value}: {err}");
            assert!(!err.contains("panicked"), "{flag} {value}: {err}");
        }
    }
    for value in values {
        let out = w
            .cmd(&["dataset", "--page-id", "1", &format!("--timeout={value}")])
            .env("MSGCAPI_ACCESS_TOKEN", TOKEN)
            .output()
            .unwrap();
        assert_eq!(code(&out), 2, "dataset --timeout {value}: {}", stderr(&out));
    }
}

/// A refused endpoint is refused before any connection: a listener on loopback sees nothing.
#[test]
fn a_refused_endpoint_is_refused_before_any_connection() {
    let w = Workdir::new();
    w.copy("mappings/mixed.yaml");
    w.write("in.csv", &valid_csv(3, "g"));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let refused = [
        format!("ftp://127.0.0.1:{port}"),
        format!("http://user:secret@127.0.0.1:{port}"),
        format!("http://127.0.0.1:{port}/?access_token=x"),
        format!("http://127.0.0.1:{port}#x"),
    ];
    for endpoint in &refused {
        let send = w.send("mixed.yaml", endpoint, &["in.csv"]);
        let dataset = w
            .cmd(&["dataset", "--page-id", "1", "--endpoint", endpoint])
            .env("MSGCAPI_ACCESS_TOKEN", TOKEN)
            .output()
            .unwrap();
        for out in [send, dataset] {
            let err = stderr(&out);
            assert_eq!(code(&out), 2, "{endpoint}: {err}");
            assert!(err.contains("`--endpoint`"), "{endpoint}: {err}");
            assert!(!err.contains("secret"), "{endpoint}: {err}");
        }
        assert!(
            listener.accept().is_err(),
            "{endpoint}: a connection was attempted"
        );
    }
    // The same port, allowed: the connection is attempted (and refused: nobody answers HTTP).
    drop(listener);
}
