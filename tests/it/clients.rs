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
    let out = w
        .cmd(&[
            "send",
            "--mapping",
            "mixed.yaml",
            "--now",
            NOW,
            "--endpoint",
            &emu.url,
            "--batch-size",
            "20",
            "--concurrency",
            "2",
            "--report",
            "r.csv",
            "--summary-json",
            "summary.json",
            "in.csv",
        ])
        .env("MSGCAPI_ACCESS_TOKEN", TOKEN)
        .output()
        .unwrap();
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
    let out = w
        .cmd(&[
            "send",
            "--mapping",
            "mixed.yaml",
            "--now",
            NOW,
            "--endpoint",
            &emu.url,
            "--batch-size",
            "20",
            "--concurrency",
            "1",
            "--report",
            "r.csv",
            "in.csv",
        ])
        .env("MSGCAPI_ACCESS_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let st = statuses(&report_rows(&w.read("r.csv")));
    assert!(
        st.get("not_attempted").copied().unwrap_or(0) >= 200,
        "{st:?}"
    );
}
