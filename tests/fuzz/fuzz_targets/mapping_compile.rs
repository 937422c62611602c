//! Mapping compiler: arbitrary text → `Plan::compile`. Never panics; an error renders as text;
//! a plan that compiles is consistent (every column it reads is listed once, with a location)
//! and maps rows without panicking.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use msgcapi::event::{Rules, map_row};
use msgcapi::mapping::{Plan, Src};

/// A few variables set, some empty, the rest unset (`env:` in a mapping).
fn env(name: &str) -> Option<String> {
    match name.bytes().next() {
        Some(b'N') => Some("1234567890".into()),
        Some(b'E') => Some(String::new()),
        Some(b'S') => Some(format!("value of {name}")),
        _ => None,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let plan = match Plan::compile(Path::new("fuzz.yaml"), text, &env) {
        Ok(plan) => plan,
        Err(e) => {
            let shown = e.to_string();
            assert!(shown.starts_with("fuzz.yaml:"), "{shown}");
            return;
        }
    };
    let n = plan.columns.len();
    assert_eq!(plan.column_locations.len(), n);
    for (i, c) in plan.columns.iter().enumerate() {
        assert!(!plan.columns[..i].contains(c), "column `{c}` listed twice");
    }
    let fields = [
        &plan.dataset_id,
        &plan.channel,
        &plan.event_name,
        &plan.event_time.field,
    ]
    .into_iter()
    .chain(&plan.event_id)
    .chain(plan.user_data.iter().map(|(_, f)| f))
    .chain(&plan.custom_data)
    .chain(&plan.opt_out);
    for f in fields {
        if let Src::Column(i) = f.src {
            assert!(i < n, "field `{}` reads column {i} of {n}", f.name);
        }
    }
    let _ = plan.key_description();

    // The plan maps rows: a few generic ones, each way of rendering.
    let now = 1_795_176_000;
    for cell in [
        "",
        "1",
        "1795170000",
        "2026-11-20T10:00:00Z",
        "x,y",
        "{\"a\":1}",
        "true",
    ] {
        for payloads in [false, true] {
            let rules = Rules {
                now,
                expiry_margin_secs: 3600,
                payloads,
            };
            let m = map_row(&plan, &rules, |_| cell);
            if let Some(json) = &m.json {
                serde_json::from_str::<serde_json::Value>(json).expect("the event is JSON");
            }
        }
    }
});
