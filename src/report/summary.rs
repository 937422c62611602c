//! The run summary: counts per status, channel and event name (kept while the report is
//! written), the paragraph on stderr, and `--summary-json`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::{ReportRow, Status};
use crate::error::{Error, Result};

/// Counts for the summary.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Summary {
    pub rows: u64,
    pub by_status: BTreeMap<&'static str, u64>,
    pub by_channel: BTreeMap<String, BTreeMap<&'static str, u64>>,
    pub by_event_name: BTreeMap<String, BTreeMap<&'static str, u64>>,
    /// Rows, sent, failed, unknown, not attempted, per dataset (at most [`MAX_DATASETS`]).
    #[serde(skip)]
    pub by_dataset: std::collections::HashMap<String, DatasetCounts>,
}

/// Datasets counted apart; rows of any further one are counted under `(other)`.
pub const MAX_DATASETS: usize = 100_000;

/// One dataset's counts in the summary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DatasetCounts {
    pub rows: u64,
    pub sent: u64,
    pub failed: u64,
    pub unknown: u64,
    pub not_attempted: u64,
}

impl DatasetCounts {
    fn problems(&self) -> u64 {
        self.failed + self.unknown + self.not_attempted
    }
}

/// Distinct channels or event names the summary keeps apart; rows with any further value are
/// counted under `(other)`, so an export full of junk names cannot grow the summary unbounded.
pub const MAX_SUMMARY_KEYS: usize = 100;

/// The key of rows whose channel or event name could not be mapped: every row is counted.
pub const UNMAPPED: &str = "(unmapped)";

/// Counts status `s` under `key` (`(unmapped)` when empty), allocating only for a new key.
fn bump(map: &mut BTreeMap<String, BTreeMap<&'static str, u64>>, key: &str, s: &'static str) {
    let key = if key.is_empty() { UNMAPPED } else { key };
    if let Some(per) = map.get_mut(key) {
        return bump_status(per, s);
    }
    let key = if map.len() < MAX_SUMMARY_KEYS {
        key
    } else {
        "(other)"
    };
    match map.get_mut(key) {
        Some(per) => bump_status(per, s),
        None => {
            map.entry(key.to_string()).or_default().insert(s, 1);
        }
    }
}

fn bump_status(per: &mut BTreeMap<&'static str, u64>, s: &'static str) {
    match per.get_mut(s) {
        Some(n) => *n += 1,
        None => {
            per.insert(s, 1);
        }
    }
}

impl Summary {
    pub(super) fn count(&mut self, r: &ReportRow) {
        self.rows += 1;
        let s = r.status.as_str();
        bump_status(&mut self.by_status, s);
        bump(&mut self.by_channel, &r.identity.channel, s);
        bump(&mut self.by_event_name, &r.identity.event_name, s);
        let ds = &r.identity.dataset_id;
        if !ds.is_empty() {
            let c = match self.by_dataset.get_mut(ds.as_str()) {
                Some(c) => c,
                None => {
                    let key = if self.by_dataset.len() < MAX_DATASETS {
                        ds.as_str()
                    } else {
                        "(other)"
                    };
                    self.by_dataset.entry(key.to_string()).or_default()
                }
            };
            c.rows += 1;
            match r.status {
                Status::Sent => c.sent += 1,
                Status::Failed => c.failed += 1,
                Status::Unknown => c.unknown += 1,
                Status::NotAttempted => c.not_attempted += 1,
                _ => {}
            }
        }
    }

    /// The datasets the summary shows: every one with a failed, unknown or not attempted row,
    /// and the 100 with the most rows.
    pub fn datasets_to_show(&self) -> BTreeMap<&str, DatasetCounts> {
        let mut by_volume: Vec<(&String, &DatasetCounts)> = self.by_dataset.iter().collect();
        by_volume.sort_by(|a, b| b.1.rows.cmp(&a.1.rows).then(a.0.cmp(b.0)));
        let top = by_volume.iter().take(100);
        let failing = self.by_dataset.iter().filter(|(_, c)| c.problems() > 0);
        top.copied()
            .chain(failing)
            .map(|(d, c)| (d.as_str(), *c))
            .collect()
    }

    pub fn get(&self, s: Status) -> u64 {
        self.by_status.get(s.as_str()).copied().unwrap_or(0)
    }

    pub fn problems(&self) -> u64 {
        self.by_status
            .iter()
            .filter(|(k, _)| {
                matches!(
                    **k,
                    "invalid" | "expired" | "failed" | "unknown" | "not_attempted"
                )
            })
            .map(|(_, v)| *v)
            .sum()
    }
}

/// What the summary says about the run besides its counts.
pub struct RunInfo<'a> {
    /// `validate` or `send`.
    pub command: &'static str,
    pub run_id: &'a str,
    pub files: Vec<String>,
    pub mapping: String,
    pub now: i64,
    pub api_version: Option<&'a str>,
    pub report: Option<&'a PathBuf>,
    pub summary_json: Option<&'a PathBuf>,
    pub quiet: bool,
    /// `--shard K/N`, as given.
    pub shard: Option<String>,
    /// `dataset_id: auto`: the lookups of the run.
    pub accounts: Option<&'a AccountCounts>,
}

/// Why a run ended in error, for monitoring: `kind` is one of `usage`, `mapping`, `input`,
/// `state`, `auth`, `permission`, `outage`, `interrupted`, `output` (a report, payload or
/// summary could not be written), `internal` (a bug).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Failure {
    pub kind: &'static str,
    pub message: String,
}

/// Where `--summary-json` goes, known from the command line before anything can fail, so that
/// every exit writes it (a monitor never reads a stale file).
static EARLY: std::sync::OnceLock<(PathBuf, &'static str)> = std::sync::OnceLock::new();

/// Remembers `--summary-json` (and the command) as soon as the command line is read.
pub fn register(path: Option<&PathBuf>, command: &'static str) {
    if let Some(p) = path {
        let _ = EARLY.set((p.clone(), command));
    }
}

/// The summary of a run that ended before (or without) reporting its rows: zero counts, the
/// exit code and why. Written only when `--summary-json` was registered; best effort.
pub fn write_failure(exit_code: u8, failure: Failure) {
    let Some((path, command)) = EARLY.get() else {
        return;
    };
    let message = crate::secret::scrub(&failure.message).into_owned();
    let j = serde_json::json!({
        "command": command,
        "rows": 0,
        "by_status": {},
        "by_channel": {},
        "by_event_name": {},
        "exit_code": exit_code,
        "error": {"kind": failure.kind, "message": message},
        "stopped": message,
    });
    let _ = super::create_private(path).and_then(|mut f| {
        serde_json::to_writer_pretty(&mut f, &j)?;
        std::io::Write::write_all(&mut f, b"\n")
    });
}

/// Where `--summary-json` was registered to go, as given (a path or an object URL).
pub fn registered() -> Option<&'static std::path::Path> {
    EARLY.get().map(|(p, _)| p.as_path())
}

/// Makes the summary already written tell that the run ended in error after all (an output
/// could not be uploaded): `exit_code` and `error` are replaced, the counts kept. Without a
/// summary written yet, writes the failure summary. Best effort.
pub fn amend_failure(exit_code: u8, failure: Failure) {
    let Some((path, _)) = EARLY.get() else {
        return;
    };
    let local = crate::store::local_output(path, false).ok();
    let written = local
        .and_then(|l| std::fs::read(l).ok())
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
    let Some(mut j) = written.filter(serde_json::Value::is_object) else {
        return write_failure(exit_code, failure);
    };
    let message = crate::secret::scrub(&failure.message).into_owned();
    j["exit_code"] = exit_code.into();
    j["error"] = serde_json::json!({"kind": failure.kind, "message": message});
    let _ = super::create_private(path).and_then(|mut f| {
        serde_json::to_writer_pretty(&mut f, &j)?;
        std::io::Write::write_all(&mut f, b"\n")
    });
}

/// A dataset the run stopped sending to (a client revoked access, or its object is gone), or
/// with `dataset_id: auto` an account Meta refused to look up (`dataset_id` null).
#[derive(Clone, Debug, serde::Serialize)]
pub struct CutOff {
    pub dataset_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<&'static str>,
    pub message: String,
    pub code: Option<i64>,
    pub subcode: Option<i64>,
}

impl CutOff {
    /// "dataset 77…", or "account 1042… (whatsapp)".
    fn what(&self) -> String {
        match (&self.dataset_id, &self.account_id) {
            (Some(d), _) => format!("dataset {d}"),
            (None, Some(a)) => format!("account {a} ({})", self.channel.unwrap_or_default()),
            (None, None) => "a dataset".into(),
        }
    }
}

/// `dataset_id: auto`: the accounts the run looked up with the Dataset API.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct AccountCounts {
    /// Accounts asked about (cached ones are not).
    pub looked_up: u64,
    /// ... whose dataset was there,
    pub found: u64,
    /// ... created (`--create-datasets`),
    pub created: u64,
    /// ... that have none (their rows `not_attempted`),
    pub without_dataset: u64,
    /// ... that Meta refused (listed in `cut_off`),
    pub refused: u64,
    /// ... whose lookup failed after its retries, or was cut short by the run's end.
    pub failed: u64,
    /// The refused accounts, for `cut_off`.
    #[serde(skip)]
    pub refused_accounts: Vec<CutOff>,
}

/// How the run ended, as the summary tells it.
pub struct Ending {
    /// Datasets cut off by a permission error (their rows failed or not attempted).
    pub cut_off: Vec<CutOff>,
    /// Why the run ended in error, if it did.
    pub failure: Option<Failure>,
    pub exit_code: u8,
    /// One line each, without `error: `.
    pub errors: Vec<String>,
    /// Why sending or reading stopped early, as a row's reason says it (`--summary-json`).
    pub stopped: Option<String>,
    /// A stop that is not an error (Ctrl-C, `--max-errors`), for the paragraph.
    pub stop_line: Option<String>,
    /// The report's reader closed stdout: one line instead of the paragraph.
    pub silent: bool,
}

/// Writes `--summary-json` and tells stderr how the run went (with `--quiet`, only its errors).
pub fn tell(info: &RunInfo<'_>, s: &Summary, end: &Ending, elapsed: Duration) -> Result<()> {
    let elapsed = elapsed.as_secs_f64();
    if let Some(p) = info.summary_json {
        write_json(p, info, s, end, elapsed)
            .map_err(|e| Error::output(format!("cannot write `{}`", p.display()), e))?;
    }
    if end.silent {
        // No paragraph into a pipeline that is going away; one line says why the run is short.
        if !info.quiet {
            eprintln!(
                "msgcapi: the report's reader closed stdout: nothing more was read or sent (exit {})",
                end.exit_code
            );
        }
        return Ok(());
    }
    use crate::secret::scrub;
    if info.quiet {
        for e in &end.errors {
            eprintln!("error: {}", scrub(e));
        }
    } else {
        eprintln!("{}", scrub(&paragraph(info, s, end, elapsed)));
    }
    Ok(())
}

fn write_json(
    p: &std::path::Path,
    info: &RunInfo<'_>,
    s: &Summary,
    end: &Ending,
    elapsed: f64,
) -> std::io::Result<()> {
    let j = serde_json::json!({
        "command": info.command,
        "run_id": info.run_id,
        "files": info.files,
        "mapping": info.mapping,
        "now": info.now,
        "api_version": info.api_version,
        "rows": s.rows,
        "by_status": s.by_status,
        "by_channel": s.by_channel,
        "by_event_name": s.by_event_name,
        "duration_secs": elapsed,
        "rows_per_sec": if elapsed > 0.0 { s.rows as f64 / elapsed } else { 0.0 },
        "peak_rss_bytes": peak_rss_bytes(),
        "datasets": s.datasets_to_show(),
        "shard": info.shard,
        "accounts": info.accounts,
        "cut_off": end.cut_off,
        "exit_code": end.exit_code,
        "error": end.failure.as_ref().map(|f| serde_json::json!({
            "kind": f.kind,
            "message": crate::secret::scrub(&f.message),
        })),
        "stopped": end.stopped.as_deref().map(crate::secret::scrub),
    });
    let mut f = super::create_private(p)?;
    serde_json::to_writer_pretty(&mut f, &j)?;
    std::io::Write::write_all(&mut f, b"\n")
}

/// Peak resident memory of this process (Linux `VmHWM`), for the summary and the benchmark.
fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn paragraph(info: &RunInfo<'_>, s: &Summary, end: &Ending, elapsed: f64) -> String {
    let counts: Vec<String> = s
        .by_status
        .iter()
        .map(|(k, v)| format!("{v} {k}"))
        .collect();
    let rate = if elapsed > 0.0 {
        s.rows as f64 / elapsed
    } else {
        0.0
    };
    let n = info.files.len();
    // A rate over less than a second says more about start-up than about speed.
    let speed = if elapsed >= 1.0 {
        format!(" ({rate:.0} rows/s)")
    } else {
        String::new()
    };
    let mut p = format!(
        "msgcapi {}: {} rows from {} file{} in {:.2}s{speed}: {}.",
        info.command,
        s.rows,
        n,
        if n == 1 { "" } else { "s" },
        elapsed,
        if counts.is_empty() {
            "nothing to do".into()
        } else {
            counts.join(", ")
        }
    );
    if let Some(r) = info.report {
        p.push_str(&format!(" Report: {}.", r.display()));
    }
    for e in &end.errors {
        p.push_str(&format!("\nerror: {e}"));
    }
    if let Some(shard) = &info.shard {
        p.push_str(&format!(
            "\nshard {shard}: the rows of the other shards were skipped"
        ));
    }
    if let Some(a) = info.accounts.filter(|a| a.looked_up > 0) {
        p.push_str(&format!(
            "\naccounts: {} looked up: {} found, {} created, {} without a dataset, {} refused, {} failed",
            a.looked_up, a.found, a.created, a.without_dataset, a.refused, a.failed
        ));
    }
    for c in end.cut_off.iter().take(20) {
        let code = c.code.map(|c| format!(" (code {c})")).unwrap_or_default();
        p.push_str(&format!(
            "\ncut off: {}{code}: {}; its other rows are not_attempted",
            c.what(),
            c.message
        ));
    }
    if end.cut_off.len() > 20 {
        p.push_str(&format!(
            "\n... and {} more cut off (see the summary's `cut_off`)",
            end.cut_off.len() - 20
        ));
    }
    if let Some(st) = &end.stop_line {
        p.push_str(&format!(
            "\nstopped: {}",
            st.trim_start_matches("not sent: ")
        ));
    }
    let meaning = match end.exit_code {
        0 => "all rows accounted for, none need attention",
        1 => "completed; some rows need attention (see the report)",
        3 => "aborted; rows not processed are in the report as not_attempted",
        130 => "interrupted",
        _ => "",
    };
    p.push_str(&format!("\nexit {}: {meaning}", end.exit_code));
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Status;
    use crate::report::tests::row;

    #[test]
    fn summary_keeps_a_bounded_number_of_event_names() {
        let mut s = Summary::default();
        for i in 0..MAX_SUMMARY_KEYS + 50 {
            let mut r = row(Status::Invalid);
            r.identity.event_name = format!("junk{i}").into();
            s.count(&r);
            s.count(&r);
        }
        s.count(&row(Status::Sent));
        assert_eq!(s.by_event_name.len(), MAX_SUMMARY_KEYS + 1);
        assert_eq!(s.by_event_name["junk0"]["invalid"], 2);
        assert_eq!(s.by_event_name["(other)"]["invalid"], 100);
        assert_eq!(s.by_event_name["(other)"]["sent"], 1);
        assert_eq!(s.by_channel["whatsapp"]["invalid"], 300);
    }
}
