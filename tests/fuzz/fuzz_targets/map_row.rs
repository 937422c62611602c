//! `map_row`: the repository's valid mappings, each with cells drawn from its sample export or
//! arbitrary, a clock and a margin in the ranges the CLI accepts → one verdict. Never panics, and:
//! a valid verdict has a dedup key; an event's JSON is there exactly when the row is valid and
//! payloads are wanted, and parses as a JSON object; a row that is not valid says why.
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use msgcapi::event::{Rules, Verdict, map_row};
use msgcapi::mapping::Plan;

/// A mapping, and for each column it reads, the values its sample export holds.
struct Case {
    plan: Plan,
    pool: Vec<Vec<String>>,
}

const CASES: [(&str, &str, &str, u8); 4] = [
    (
        "mixed.yaml",
        include_str!("../../../mappings/mixed.yaml"),
        include_str!("../../../samples/mixed.csv"),
        b',',
    ),
    (
        "whatsapp.yaml",
        include_str!("../../../mappings/whatsapp.yaml"),
        include_str!("../../../samples/whatsapp.csv"),
        b',',
    ),
    (
        "messenger.yaml",
        include_str!("../../../mappings/messenger.yaml"),
        include_str!("../../../samples/messenger.csv"),
        b',',
    ),
    (
        "instagram.yaml",
        include_str!("../../../mappings/instagram.yaml"),
        include_str!("../../../samples/instagram.tsv"),
        b'\t',
    ),
];

fn cases() -> &'static [Case] {
    static CASES_: OnceLock<Vec<Case>> = OnceLock::new();
    CASES_.get_or_init(|| {
        CASES
            .iter()
            .map(|(name, yaml, sample, delimiter)| {
                let plan = Plan::compile(Path::new(name), yaml, &|_| None).expect("valid mapping");
                let mut r = csv::ReaderBuilder::new()
                    .delimiter(*delimiter)
                    .from_reader(sample.as_bytes());
                let headers = r.headers().expect("sample header").clone();
                let rows: Vec<csv::StringRecord> =
                    r.records().map(|x| x.expect("sample row")).collect();
                let pool = plan
                    .columns
                    .iter()
                    .map(|c| {
                        let i = headers
                            .iter()
                            .position(|h| h == c)
                            .expect("sample has the column");
                        rows.iter().map(|row| row[i].to_string()).collect()
                    })
                    .collect();
                Case { plan, pool }
            })
            .collect()
    })
}

#[derive(Debug, Arbitrary)]
enum Cell {
    /// The value of this column in row `n` of the sample.
    Sample(u8),
    /// A sample value with something appended (a suffix, spaces, a second value...).
    Edited(u8, String),
    Any(String),
}

#[derive(Debug, Arbitrary)]
struct Input {
    case: u8,
    cells: Vec<Cell>,
    /// Seconds after the samples' time (`--now` takes anything within ±i64::MAX/4).
    now: Now,
    margin: u32,
    payloads: bool,
}

#[derive(Debug, Arbitrary)]
enum Now {
    /// Within 30 days of 2026-11-20, near the samples' event times (2026-11-18..19), so that
    /// many rows are in the window.
    Near(i32),
    Any(i64),
}

fuzz_target!(|input: Input| {
    let cases = cases();
    let case = &cases[usize::from(input.case) % cases.len()];
    let cells: Vec<String> = (0..case.plan.columns.len())
        .map(|k| {
            let pool = &case.pool[k];
            let sample = |n: u8| pool[usize::from(n) % pool.len()].clone();
            match input.cells.get(k) {
                None => sample(0),
                Some(Cell::Sample(n)) => sample(*n),
                Some(Cell::Edited(n, more)) => sample(*n) + more,
                Some(Cell::Any(s)) => s.clone(),
            }
        })
        .collect();
    let now = match input.now {
        Now::Near(d) => 1_795_176_000 + i64::from(d) % (30 * 86_400),
        Now::Any(n) => n % (i64::MAX / 4),
    };
    let rules = Rules {
        now,
        // `--expiry-margin` is under 7 days.
        expiry_margin_secs: i64::from(input.margin % (7 * 86_400)),
        payloads: input.payloads,
    };
    let m = map_row(&case.plan, &rules, |k| cells[k].as_str());
    match m.verdict {
        Verdict::Valid => {
            assert!(m.key.is_some(), "a valid row has a dedup key");
            assert_eq!(
                m.json.is_some(),
                rules.payloads,
                "JSON exactly when payloads are wanted"
            );
            if let Some(json) = &m.json {
                let v: serde_json::Value = serde_json::from_str(json).expect("the event is JSON");
                assert!(v.is_object(), "{json}");
            }
        }
        Verdict::Invalid | Verdict::Expired => {
            assert!(m.key.is_none() && m.json.is_none());
            assert!(!m.reason.is_empty(), "a row that is not valid says why");
        }
    }
});
