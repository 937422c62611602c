//! Many clients in one run: one client's revoked permission stays that client's problem.

use crate::util::*;

fn summary(w: &Workdir) -> serde_json::Value {
    serde_json::from_str(&w.read("summary.json")).expect("summary JSON")
}

/// A client that revoked access (code 200 on its dataset) is cut off: the batch that met the
/// error is `failed` with Meta's code, the rest of that dataset's rows are `not_attempted` with
/// the same reason, every other dataset is sent in full; exit 1; the summary names it.
#[test]
fn a_denied_client_is_cut_off_and_the_others_go_on() {
    let w = Workdir::new();
    w.copy("mappings/mixed.yaml");
    // Messenger rows (page 109876543210987) go to dataset 1234567891.
    w.write("in.csv", &valid_csv(600, "cut"));
    let emu = Emulator::builder(&w)
        .record()
        .args(&["--deny-account", "^109876543210987$"])
        .start();
    let out = w.send(
        "mixed.yaml",
        &emu.url,
        &[
            "--batch-size",
            "20",
            "--concurrency",
            "2",
            "--report",
            "r.csv",
            "--summary-json",
            "summary.json",
            "in.csv",
        ],
    );
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let rows = report_rows(&w.read("r.csv"));
    assert_eq!(rows.len(), 600);
    let (cut, others): (Vec<_>, Vec<_>) = rows.iter().partition(|r| &r[5] == "1234567891");
    assert_eq!(cut.len(), 200);
    assert!(others.iter().all(|r| &r[3] == "sent"), "the others go on");
    let failed = cut.iter().filter(|r| &r[3] == "failed").count();
    let not_attempted = cut.iter().filter(|r| &r[3] == "not_attempted").count();
    assert!(
        failed >= 20,
        "at least the batch that met the error: {failed}"
    );
    assert_eq!(
        failed + not_attempted,
        200,
        "nothing of the cut client is sent"
    );
    assert!(
        failed < 200,
        "the rest is not attempted after the first error"
    );
    for r in &cut {
        assert_eq!(&r[13], "200", "Meta's code on every row: {r:?}");
        assert_eq!(&r[4], &cut[0][4], "one reason for the whole client");
        assert!(r[4].contains("permission"), "Meta's message: {}", &r[4]);
    }
    let recorded = recorded_ids(&w.path("rec.jsonl"));
    assert_eq!(recorded.len(), 400);
    assert!(recorded.values().all(|&n| n == 1));
    let err = stderr(&out);
    assert!(
        err.contains("cut off: dataset 1234567891 (code 200)"),
        "{err}"
    );
    let s = summary(&w);
    assert_eq!(s["cut_off"][0]["dataset_id"], "1234567891", "{s:#}");
    assert_eq!(s["cut_off"][0]["code"], 200, "{s:#}");
    let ds = &s["datasets"]["1234567891"];
    assert_eq!(ds["failed"].as_u64().unwrap() as usize, failed, "{s:#}");
    assert_eq!(
        ds["not_attempted"].as_u64().unwrap() as usize,
        not_attempted
    );
    assert_eq!(s["datasets"]["1234567890"]["sent"], 200, "{s:#}");
}

/// A token error is the partner's, not a client's: it still stops everything (exit 3).
#[test]
fn a_dead_token_still_stops_every_client() {
    let w = Workdir::new();
    w.copy("mappings/mixed.yaml");
    w.write("in.csv", &valid_csv(300, "tok"));
    let emu = Emulator::builder(&w).expire_token_after(1).start();
    let out = w.send(
        "mixed.yaml",
        &emu.url,
        &[
            "--batch-size",
            "20",
            "--concurrency",
            "1",
            "--report",
            "r.csv",
            "in.csv",
        ],
    );
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let st = statuses(&report_rows(&w.read("r.csv")));
    assert!(
        st.get("not_attempted").copied().unwrap_or(0) >= 200,
        "{st:?}"
    );
}

/// Accounts of the many-clients export: 100 per channel, as (chan code, account id).
fn client_accounts() -> Vec<(&'static str, String)> {
    (0..300)
        .map(|i| match i % 3 {
            0 => ("WA", format!("1022900000{i:05}")),
            1 => ("FB", format!("1098700000{i:05}")),
            _ => ("IG", format!("1784140000{i:05}")),
        })
        .collect()
}

/// Two accounts the emulator denies (code 200): one WhatsApp, one Messenger.
const DENIED: &str = "^(102290000000003|109870000000004)$";

/// `rows` valid rows for mappings/many-clients.yaml, spread over the 300 accounts.
fn many_clients_csv(rows: usize, prefix: &str) -> String {
    let accounts = client_accounts();
    let mut s = String::from(MIXED_HEADER);
    s.push('\n');
    for i in 0..rows {
        let ts = format!("2026-11-19T{:02}:{:02}:00Z", (i / 60) % 24, i % 60);
        let (chan, acct) = &accounts[i % accounts.len()];
        let line = match *chan {
            "WA" => format!(
                "WA,paid,{ts},{prefix}{i},,{acct},clk-{i},,,,,u{i}@example.com,,{}.50,BRL,ORD-{i}",
                i % 300
            ),
            "FB" => format!("FB,lead,{ts},{prefix}{i},,,,{acct},6789{i:08},,,,,,,"),
            _ => format!("IG,cart,{ts},{prefix}{i},,,,,,{acct},555{i:08},,,,,"),
        };
        s.push_str(&line);
        s.push('\n');
    }
    s
}

/// The account an emulator-recorded event belongs to.
fn account_of(event: &serde_json::Value) -> String {
    let u = &event["user_data"];
    [
        "whatsapp_business_account_id",
        "page_id",
        "instagram_business_account_id",
    ]
    .iter()
    .find_map(|f| u[f].as_str())
    .unwrap_or_default()
    .to_string()
}

fn many_clients_send(w: &Workdir, url: &str, report: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "--state",
        "state.db",
        "--concurrency",
        "8",
        "--report",
        report,
        "--summary-json",
        "summary.json",
    ];
    args.extend_from_slice(extra);
    args.push("in.csv");
    w.send("many-clients.yaml", url, &args)
}

/// 300 client accounts over three channels, 5 % without a dataset, 2 denied, 30,000 rows, with
/// `dataset_id: auto`: every valid row of an allowed account is sent once, to the dataset its
/// account owns; the denied accounts' rows are not sent and carry Meta's code; exit 1; a second
/// run with the same ledger asks about no account it already knows.
#[test]
fn dataset_auto_serves_hundreds_of_clients_in_one_run() {
    let w = Workdir::new();
    w.copy("mappings/many-clients.yaml");
    w.write("in.csv", &many_clients_csv(30_000, "mc"));
    let emu = Emulator::builder(&w)
        .record()
        .log_requests()
        .args(&["--no-dataset-rate", "0.05", "--deny-account", DENIED])
        .start();
    let out = many_clients_send(&w, &emu.url, "r1.csv", &["--create-datasets"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let rows = report_rows(&w.read("r1.csv"));
    assert_eq!(rows.len(), 30_000);

    // Where each account's events must go: the emulator's answer, asked afterwards.
    let mut list = String::from("channel,account_id\n");
    for (chan, acct) in client_accounts() {
        let ch = match chan {
            "WA" => "whatsapp",
            "FB" => "messenger",
            _ => "instagram",
        };
        list.push_str(&format!("{ch},{acct}\n"));
    }
    w.write("accounts.csv", &list);
    let listed = w
        .cmd(&[
            "dataset",
            "--endpoint",
            &emu.url,
            "--accounts",
            "accounts.csv",
        ])
        .env("MSGCAPI_ACCESS_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert_eq!(
        code(&listed),
        1,
        "two accounts are denied: {}",
        stderr(&listed)
    );
    let owned: std::collections::HashMap<String, String> =
        csv::Reader::from_reader(listed.stdout.as_slice())
            .records()
            .map(|r| r.unwrap())
            .filter(|r| &r[3] == "found")
            .map(|r| (r[1].to_string(), r[2].to_string()))
            .collect();
    assert_eq!(owned.len(), 298, "created datasets are found now");

    let denied = regex::Regex::new(DENIED).unwrap();
    let recorded = jsonl(&w.path("rec.jsonl"));
    let mut seen = std::collections::HashSet::new();
    for r in &recorded {
        let id = r["event"]["event_id"].as_str().unwrap().to_string();
        assert!(seen.insert(id.clone()), "{id} arrived twice");
        let account = account_of(&r["event"]);
        assert!(
            !denied.is_match(&account),
            "a denied account's event was sent"
        );
        assert_eq!(
            r["dataset_id"].as_str(),
            owned.get(&account).map(String::as_str)
        );
    }
    for r in &rows {
        let account = match &r[6] {
            "whatsapp" | "messenger" | "instagram" => {
                let i: usize = r[8][2..].parse().unwrap();
                client_accounts()[i % 300].1.clone()
            }
            other => panic!("channel {other}"),
        };
        if denied.is_match(&account) {
            assert_eq!(&r[3], "not_attempted", "{r:?}");
            assert_eq!(&r[13], "200", "Meta's code: {r:?}");
            assert!(r[5].is_empty(), "no dataset: {r:?}");
        } else {
            assert_eq!(&r[3], "sent", "{r:?}");
            assert_eq!(Some(&r[5]), owned.get(&account).map(String::as_str));
        }
    }
    assert_eq!(seen.len(), 30_000 - 2 * 100);
    let s: serde_json::Value = serde_json::from_str(&w.read("summary.json")).unwrap();
    assert_eq!(s["accounts"]["looked_up"], 300, "{s:#}");
    assert_eq!(s["accounts"]["refused"], 2);
    let created = s["accounts"]["created"].as_u64().unwrap();
    assert!((5..=30).contains(&created), "about 5 % created: {created}");
    assert_eq!(s["cut_off"].as_array().unwrap().len(), 2, "{s:#}");
    assert!(stderr(&out).contains("cut off: account 102290000000003 (whatsapp) (code 200)"));

    // Offline, `validate` shows the datasets the ledger's cache knows.
    let v = w.run(&[
        "validate",
        "--mapping",
        "many-clients.yaml",
        "--now",
        NOW,
        "--state",
        "state.db",
        "--report",
        "v.csv",
        "in.csv",
    ]);
    assert_eq!(code(&v), 0, "all already sent: {}", stderr(&v));
    for r in report_rows(&w.read("v.csv")).iter().take(600) {
        let i: usize = r[8][2..].parse().unwrap();
        let account = &client_accounts()[i % 300].1;
        if !denied.is_match(account) {
            assert_eq!(Some(&r[5]), owned.get(account).map(String::as_str), "{r:?}");
            assert_eq!(&r[3], "already_sent");
        }
    }

    // The second night: only the denied accounts are asked about again.
    let requests_before = jsonl(&w.path("requests.jsonl")).len();
    w.write("in.csv", &many_clients_csv(30_000, "mc2-"));
    let again = many_clients_send(&w, &emu.url, "r2.csv", &["--create-datasets"]);
    assert_eq!(code(&again), 1, "{}", stderr(&again));
    let lookups: Vec<String> = jsonl(&w.path("requests.jsonl"))[requests_before..]
        .iter()
        .filter(|r| r["path"].as_str().unwrap().ends_with("/dataset"))
        .map(|r| r["dataset_id"].as_str().unwrap().to_string())
        .collect();
    assert!(
        lookups.iter().all(|a| denied.is_match(a)),
        "known accounts asked again: {lookups:?}"
    );
    let st = statuses(&report_rows(&w.read("r2.csv")));
    assert_eq!(st.get("sent"), Some(&(30_000 - 200)), "{st:?}");
}

/// `msgcapi dataset --accounts`: one line per account, with and without `--create`.
#[test]
fn dataset_accounts_lists_every_account() {
    let w = Workdir::new();
    let emu = Emulator::builder(&w)
        .args(&["--no-dataset-rate", "0.05", "--deny-account", DENIED])
        .start();
    let mut list = String::from("channel,account_id,note\n");
    for (chan, acct) in client_accounts() {
        let ch = match chan {
            "WA" => "whatsapp",
            "FB" => "messenger",
            _ => "instagram",
        };
        list.push_str(&format!("{ch},{acct},x\n"));
    }
    list.push_str("fax,123,x\nwhatsapp,12ab,x\n");
    w.write("accounts.csv", &list);
    let run = |extra: &[&str]| {
        let mut args = vec![
            "dataset",
            "--endpoint",
            &emu.url,
            "--accounts",
            "accounts.csv",
        ];
        args.extend_from_slice(extra);
        let out = w
            .cmd(&args)
            .env("MSGCAPI_ACCESS_TOKEN", TOKEN)
            .output()
            .unwrap();
        let lines: Vec<csv::StringRecord> = csv::Reader::from_reader(out.stdout.as_slice())
            .records()
            .map(|r| r.unwrap())
            .collect();
        (code(&out), lines, stderr(&out))
    };
    let (c, lines, err) = run(&[]);
    assert_eq!(c, 1, "{err}");
    assert_eq!(lines.len(), 302, "one line per input line");
    let count = |lines: &[csv::StringRecord], s: &str| lines.iter().filter(|r| &r[3] == s).count();
    let missing = count(&lines, "missing");
    assert!((5..=30).contains(&missing), "about 5 %: {missing}");
    assert_eq!(count(&lines, "refused"), 2);
    assert_eq!(count(&lines, "invalid"), 2);
    assert_eq!(count(&lines, "found"), 300 - 2 - missing);
    let refused = lines.iter().find(|r| &r[3] == "refused").unwrap();
    assert!(refused[4].contains("(code 200)"), "{refused:?}");
    assert!(lines.iter().all(|r| (&r[3] == "found") != r[2].is_empty()));

    let (c, lines, err) = run(&["--create"]);
    assert_eq!(c, 1, "the denied ones still have none: {err}");
    assert_eq!(count(&lines, "created"), missing);
    assert_eq!(count(&lines, "missing"), 0);

    // Every account has a dataset: exit 0.
    let ok: String = list
        .lines()
        .filter(|l| !l.contains("fax") && !l.contains("12ab"))
        .filter(|l| {
            let a = l.split(',').nth(1).unwrap_or_default();
            !regex::Regex::new(DENIED).unwrap().is_match(a)
        })
        .map(|l| format!("{l}\n"))
        .collect();
    w.write("accounts.csv", &ok);
    let (c, lines, err) = run(&[]);
    assert_eq!(c, 0, "{err}");
    assert_eq!(count(&lines, "found"), 298);
}

/// `--shard K/N`: the shards' reports together hold every row exactly once, by dataset (or,
/// with `dataset_id: auto`, by business account); each summary names its shard.
#[test]
fn shards_split_the_rows_by_dataset_or_account() {
    let w = Workdir::new();
    w.copy("mappings/mixed.yaml");
    w.copy("mappings/many-clients.yaml");
    // Many datasets: each row's dataset is one of 40.
    let csv: String = valid_csv(2_000, "sh")
        .lines()
        .enumerate()
        .map(|(i, l)| {
            let l = if i == 0 {
                l.to_string()
            } else {
                l.replacen(",123456789", &format!(",77{:02}", i % 40), 1)
            };
            format!("{l}\n")
        })
        .collect();
    w.write("in.csv", &csv);
    w.write("clients.csv", &many_clients_csv(3_000, "cl"));
    for (mapping, input, rows) in [
        ("mixed.yaml", "in.csv", 2_000),
        ("many-clients.yaml", "clients.csv", 3_000),
    ] {
        let mut seen: std::collections::HashMap<String, usize> = Default::default();
        let mut groups: std::collections::HashMap<String, usize> = Default::default();
        for k in 0..3 {
            let shard = format!("{k}/3");
            let report = format!("r{k}.csv");
            let out = w.run(&[
                "validate",
                "--mapping",
                mapping,
                "--now",
                NOW,
                "--shard",
                &shard,
                "--report",
                &report,
                "--summary-json",
                "summary.json",
                input,
            ]);
            assert!(code(&out) <= 1, "{}", stderr(&out));
            let s: serde_json::Value = serde_json::from_str(&w.read("summary.json")).unwrap();
            assert_eq!(s["shard"], shard.as_str());
            let rows = report_rows(&w.read(&report));
            assert_eq!(s["rows"], rows.len());
            for r in &rows {
                *seen.entry(r[1].to_string()).or_default() += 1;
                // The group (dataset, or account) a row belongs to is in one shard only.
                let group = if mapping == "mixed.yaml" {
                    r[5].to_string()
                } else {
                    let i: usize = r[8][2..].parse().unwrap();
                    client_accounts()[i % 300].1.clone()
                };
                let at = *groups.entry(group.clone()).or_insert(k);
                assert_eq!(at, k, "{group} is in two shards");
            }
        }
        assert_eq!(seen.len(), rows, "{mapping}: every row in one shard");
        assert!(seen.values().all(|&n| n == 1));
        let per: Vec<usize> = (0..3)
            .map(|k| groups.values().filter(|&&s| s == k).count())
            .collect();
        assert!(per.iter().all(|&n| n > 0), "{mapping}: shards {per:?}");
    }
    for bad in ["3/3", "0/0", "1", "a/b", "1/-3"] {
        let out = w.run(&[
            "validate",
            "--mapping",
            "mixed.yaml",
            "--shard",
            bad,
            "in.csv",
        ]);
        assert_eq!(code(&out), 2, "{bad}: {}", stderr(&out));
        assert!(stderr(&out).contains("is not a shard"), "{}", stderr(&out));
    }
}
