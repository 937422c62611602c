//! Damaged state files (issue 10 §3): a real ledger, built by real sends, is truncated, has bits
//! flipped, 4 KiB pages zeroed and pages swapped; every copy goes through `state stats`,
//! `state export`, `validate --state` and `send --state`. Damage is an error (exit 3) or is
//! harmless, never a gap: no delivered event is reported `valid` or sent again, readers leave the
//! file byte-identical, nothing panics. Seeded and bounded (~50 copies).

use std::collections::HashMap;
use std::path::Path;

use crate::util::*;

const PAGE: usize = 4096;

/// One damaged copy: what was done, and the bytes.
struct Copy {
    what: String,
    bytes: Vec<u8>,
}

/// Seeded damage: truncations, bit flips at random offsets, zeroed pages, swapped pages.
fn damaged(full: &[u8], seed: u64) -> Vec<Copy> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let pages = full.len().div_ceil(PAGE);
    let mut out = Vec::new();
    for cut in [
        0,
        50,
        100,
        PAGE,
        full.len() / 2,
        full.len() - PAGE,
        full.len() - 1,
    ] {
        out.push(Copy {
            what: format!("truncated to {cut} bytes"),
            bytes: full[..cut].to_vec(),
        });
    }
    for _ in 0..5 {
        let cut = rng.usize(1..full.len());
        out.push(Copy {
            what: format!("truncated to {cut} bytes"),
            bytes: full[..cut].to_vec(),
        });
    }
    for i in 0..18 {
        let mut b = full.to_vec();
        let flips: Vec<(usize, u8)> = (0..1 + i % 3)
            .map(|_| (rng.usize(..b.len()), rng.u8(0..8)))
            .collect();
        for (at, bit) in &flips {
            b[*at] ^= 1 << bit;
        }
        out.push(Copy {
            what: format!("bits flipped at {flips:?}"),
            bytes: b,
        });
    }
    // Every page zeroed once (the file is a handful of pages), then random ones.
    for p in (0..pages).chain((0..4).map(|_| rng.usize(..pages))) {
        let mut b = full.to_vec();
        let end = ((p + 1) * PAGE).min(b.len());
        b[p * PAGE..end].fill(0);
        out.push(Copy {
            what: format!("page {p} zeroed"),
            bytes: b,
        });
    }
    for _ in 0..10 {
        let (x, y) = (rng.usize(..pages - 1), rng.usize(..pages - 1));
        if x == y {
            continue;
        }
        let mut b = full.to_vec();
        let px = b[x * PAGE..(x + 1) * PAGE].to_vec();
        let py = b[y * PAGE..(y + 1) * PAGE].to_vec();
        b[x * PAGE..(x + 1) * PAGE].copy_from_slice(&py);
        b[y * PAGE..(y + 1) * PAGE].copy_from_slice(&px);
        out.push(Copy {
            what: format!("pages {x} and {y} swapped"),
            bytes: b,
        });
    }
    out
}

fn all_output(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The command's exit code is 0, 1 or 3 and nothing panicked.
fn check_exit(o: &std::process::Output, what: &str, cmd: &str) -> i32 {
    let c = code(o);
    let out = all_output(o);
    assert!([0, 1, 3].contains(&c), "{what}: `{cmd}` exited {c}: {out}");
    assert!(!out.contains("panicked"), "{what}: `{cmd}`: {out}");
    c
}

fn files_beside(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    v.sort();
    v
}

#[test]
fn damaged_state_files_are_errors_or_harmless_never_a_gap() {
    let w = Workdir::new();
    let all = valid_csv(600, "d");
    let lines: Vec<&str> = all.lines().collect();
    let header = lines[0];
    // Three nights of overlapping exports.
    for (name, from, to) in [
        ("n1.csv", 0, 200),
        ("n2.csv", 150, 400),
        ("n3.csv", 350, 600),
    ] {
        w.write(
            name,
            &format!("{header}\n{}\n", lines[1 + from..1 + to].join("\n")),
        );
    }
    w.write("all.csv", &all);
    let emu = Emulator::builder(&w).record().start();
    let m = w.copy("mappings/mixed.yaml");
    let m = m.to_str().unwrap();
    let send = |state: &str, input: &str| {
        w.cmd(&[
            "send",
            "--mapping",
            m,
            "--now",
            NOW,
            "--endpoint",
            &emu.url,
            "--report",
            "send.csv",
            "--state",
            state,
            "--batch-size",
            "25",
            "--quiet",
            input,
        ])
        .env("MSGCAPI_ACCESS_TOKEN", TOKEN)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run send")
    };
    for night in ["n1.csv", "n2.csv", "n3.csv"] {
        let o = send("state.db", night);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
    }
    let delivered = recorded_ids(&w.path("rec.jsonl"));
    assert_eq!(delivered.len(), 600);
    let full = std::fs::read(w.path("state.db")).unwrap();
    assert!(full.len() >= 4 * PAGE, "a file of several pages");

    std::fs::create_dir(w.path("c")).unwrap();
    let copies = damaged(&full, 0x5eed);
    assert!((40..=60).contains(&copies.len()), "{}", copies.len());
    let mut errors: HashMap<i32, usize> = HashMap::new();
    for (i, copy) in copies.iter().enumerate() {
        let what = &copy.what;
        let dir = w.path(&format!("c/{i}"));
        std::fs::create_dir(&dir).unwrap();
        let file = format!("c/{i}/state.db");
        std::fs::write(w.path(&file), &copy.bytes).unwrap();

        // The readers: exit 0 or 3, the file byte-identical, nothing made beside it.
        for args in [
            vec!["state", "stats", "--state", &file],
            vec!["state", "stats", "--json", "--state", &file],
            vec!["state", "export", "--state", &file, "-"],
        ] {
            let o = w.run(&args);
            check_exit(&o, what, &args.join(" "));
        }
        let report = format!("c/{i}/validate.csv");
        let args = [
            "validate",
            "--mapping",
            m,
            "--now",
            NOW,
            "--state",
            &file,
            "--report",
            &report,
            "all.csv",
        ];
        let o = w.run(&args);
        let c = check_exit(&o, what, "validate --state");
        if c != 3 {
            let rows = report_rows(&w.read(&report));
            assert_eq!(rows.len(), 600, "{what}");
            let valid = ids_with_status(&rows, "valid");
            assert!(
                valid.is_empty(),
                "{what}: delivered events reported valid: {:?}",
                &valid[..valid.len().min(5)]
            );
        }
        assert!(
            std::fs::read(w.path(&file)).unwrap() == copy.bytes,
            "{what}: a reader changed the file"
        );
        let beside = files_beside(&dir);
        assert!(
            beside
                .iter()
                .all(|f| f == "state.db" || f == "validate.csv"),
            "{what}: {beside:?}"
        );

        // The writer: exit 0 or 3, and nothing delivered again.
        let o = send(&file, "all.csv");
        let c = check_exit(&o, what, "send --state");
        *errors.entry(c).or_default() += 1;
        let now = recorded_ids(&w.path("rec.jsonl"));
        let again: Vec<_> = now
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(id, _)| id)
            .collect();
        assert!(
            again.is_empty() && now.len() == 600,
            "{what}: send delivered {} events again, e.g. {:?}",
            again.len(),
            &again[..again.len().min(5)]
        );
    }
    // The damage is noticed: most copies are refused.
    assert!(
        errors.get(&3).copied().unwrap_or(0) >= copies.len() / 2,
        "{errors:?}"
    );
}
