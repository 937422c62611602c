//! `msgcapi state stats|prune|export|import`: look into and maintain the state ledger.

use std::io::Write;

use super::stdout;
use crate::cli::{StateArgs, StateCmd};
use crate::error::{Error, Result, exit};
use crate::ledger::{Ledger, LedgerError, Mode};

pub fn run(args: StateArgs) -> Result<u8> {
    match args.cmd {
        StateCmd::Stats { state, json } => {
            Ledger::must_exist(&state)?;
            let s = Ledger::open(&state, Mode::ReadOnly)?.stats()?;
            let mut out = String::new();
            if json {
                out = serde_json::to_string_pretty(&s).map_err(anyhow::Error::from)?;
                out.push('\n');
            } else {
                let ts = |t: Option<i64>| {
                    t.and_then(|t| chrono::DateTime::from_timestamp(t, 0))
                        .map(|d| d.to_rfc3339())
                        .unwrap_or_else(|| "-".into())
                };
                out.push_str(&format!(
                    "{}: {} entries ({} acknowledged, {} in flight), {} bytes\n",
                    state, s.entries, s.acknowledged, s.in_flight, s.file_bytes
                ));
                out.push_str(&match s.endpoint.as_deref() {
                    Some("emulator") => {
                        "endpoint: the built-in emulator (`send --emulator`)\n".to_string()
                    }
                    Some(e) => format!("endpoint: {e}\n"),
                    None => "endpoint: none yet (the next `send` records its own)\n".to_string(),
                });
                if s.accounts > 0 {
                    out.push_str(&format!(
                        "accounts: {} with their dataset remembered\n",
                        s.accounts
                    ));
                }
                if s.entries > 0 {
                    out.push_str(&format!(
                        "events from {} to {}\n",
                        ts(s.oldest_event_time),
                        ts(s.newest_event_time)
                    ));
                }
                for (d, n) in &s.by_dataset {
                    out.push_str(&format!("  dataset {d}: {n}\n"));
                }
            }
            stdout(&out)?;
            Ok(exit::OK)
        }
        StateCmd::Prune { state, now, margin } => {
            Ledger::must_exist(&state)?;
            let now = crate::time::now_or_clock(now);
            let n = Ledger::open(&state, Mode::ReadWrite)?
                .prune(now, crate::capi::MAX_AGE_SECS + margin)?;
            stdout(&format!("pruned {n} entries\n"))?;
            Ok(exit::OK)
        }
        StateCmd::Export { state, file } => {
            Ledger::must_exist(&state)?;
            let l = Ledger::open_for_export(&state)?;
            // A write that fails is the output's fault (a closed pipe is a normal end), not the
            // state file's.
            let written = |what: String| {
                move |e: LedgerError| match e {
                    LedgerError::Output(io) => Error::output(what, io),
                    e => e.into(),
                }
            };
            let n = if file.as_os_str() == "-" {
                l.export_csv(&mut std::io::stdout().lock())
                    .map_err(written("cannot write to stdout".into()))?
            } else {
                let what = || format!("cannot write `{}`", file.display());
                let f =
                    crate::report::create_private(&file).map_err(|e| Error::output(what(), e))?;
                let mut f = std::io::BufWriter::new(f);
                let n = l.export_csv(&mut f).map_err(written(what()))?;
                f.flush().map_err(|e| Error::output(what(), e))?;
                n
            };
            let endpoint = match l.binding() {
                Some(b) => format!(" of {b}"),
                None => String::new(),
            };
            eprintln!("exported {n} entries{endpoint}");
            Ok(exit::OK)
        }
        StateCmd::Import { state, csv } => {
            let name = csv.display().to_string();
            let n = if csv.as_os_str() == "-" {
                Ledger::import_csv(&state, &mut std::io::stdin().lock(), "-")?
            } else {
                let f = std::fs::File::open(&csv)
                    .map_err(|e| Error::Input(format!("cannot read `{name}`: {e}")))?;
                Ledger::import_csv(&state, &mut std::io::BufReader::new(f), &name)?
            };
            eprintln!(
                "imported {n} entries into `{state}`; it takes the endpoint of its next `send` unless the CSV named one"
            );
            Ok(exit::OK)
        }
    }
}
