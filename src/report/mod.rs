//! The report: one line per input data row, in input order, with its final status and why; plus
//! the run summary (`summary.rs`: counts, the paragraph on stderr, `--summary-json`) and the
//! progress bar (`progress.rs`).
//!
//! The report holds no PII beyond the ids Meta needs: never a raw email or phone (hashed or not).
//! Report files are created with mode 0600.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

mod progress;
pub mod summary;

pub use progress::Progress;
pub use summary::Summary;

use crate::event::Identity;
use crate::sink::Answer;

/// The final status of a row. Exactly one per input row (the product's core invariant).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Passed every rule (validate; or send before delivery).
    Valid,
    Invalid,
    /// Older than Meta's 7-day window (minus the margin).
    Expired,
    /// Same dedup key as an earlier row of this run.
    Duplicate,
    /// The state ledger says Meta already acknowledged this key in an earlier run.
    AlreadySent,
    Sent,
    Failed,
    /// Sent, but no answer came: it may or may not have been delivered.
    Unknown,
    /// Valid but never sent: the run stopped first.
    NotAttempted,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Valid => "valid",
            Status::Invalid => "invalid",
            Status::Expired => "expired",
            Status::Duplicate => "duplicate",
            Status::AlreadySent => "already_sent",
            Status::Sent => "sent",
            Status::Failed => "failed",
            Status::Unknown => "unknown",
            Status::NotAttempted => "not_attempted",
        }
    }

    /// Does this status make the run "completed with problems" (exit 1)?
    pub fn is_problem(self) -> bool {
        matches!(
            self,
            Status::Invalid
                | Status::Expired
                | Status::Failed
                | Status::Unknown
                | Status::NotAttempted
        )
    }
}

/// One report line.
#[derive(Clone, Debug, PartialEq)]
pub struct ReportRow {
    /// Index into the run's input list.
    pub file: u32,
    pub row: u64,
    pub line: u64,
    pub status: Status,
    pub reason: String,
    pub identity: Identity,
    pub answer: Answer,
}

pub const COLUMNS: [&str; 16] = [
    "file",
    "row",
    "line",
    "status",
    "reason",
    "dataset_id",
    "channel",
    "event_name",
    "event_id",
    "event_time",
    "batch",
    "attempts",
    "http_status",
    "error_code",
    "error_subcode",
    "fbtrace_id",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    Csv,
    Jsonl,
}

enum Out {
    Csv(Box<csv::Writer<Box<dyn Write + Send>>>),
    Jsonl(BufWriter<Box<dyn Write + Send>>),
}

/// Writes report lines and keeps the summary counts.
pub struct ReportWriter {
    out: Out,
    files: Vec<String>,
    pub summary: Summary,
    scratch: [String; 9],
}

/// Creates `path` for writing with mode 0600 (the report and payloads may identify customers).
pub fn create_private(path: &Path) -> io::Result<File> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o.open(path)
}

impl ReportWriter {
    /// `path = None` writes to stdout.
    pub fn create(
        path: Option<&Path>,
        format: ReportFormat,
        files: Vec<String>,
    ) -> io::Result<ReportWriter> {
        let sink: Box<dyn Write + Send> = match path {
            Some(p) if p.as_os_str() != "-" => {
                Box::new(BufWriter::with_capacity(1 << 20, create_private(p)?))
            }
            _ => Box::new(BufWriter::new(io::stdout())),
        };
        let out = match format {
            ReportFormat::Csv => {
                let mut w = csv::WriterBuilder::new()
                    .buffer_capacity(1 << 16)
                    .from_writer(sink);
                w.write_record(COLUMNS).map_err(io::Error::other)?;
                Out::Csv(Box::new(w))
            }
            ReportFormat::Jsonl => Out::Jsonl(BufWriter::new(sink)),
        };
        Ok(ReportWriter {
            out,
            files,
            summary: Summary::default(),
            scratch: Default::default(),
        })
    }

    pub fn write(&mut self, r: &ReportRow) -> io::Result<()> {
        self.summary.count(r);
        let file = self
            .files
            .get(r.file as usize)
            .map(String::as_str)
            .unwrap_or("");
        match &mut self.out {
            Out::Csv(w) => {
                use std::fmt::Write as _;
                let s = &mut self.scratch;
                for x in s.iter_mut() {
                    x.clear();
                }
                let _ = write!(s[0], "{}", r.row);
                let _ = write!(s[1], "{}", r.line);
                let (id, a) = (&r.identity, &r.answer);
                if let Some(v) = id.event_time {
                    let _ = write!(s[2], "{v}");
                }
                if let Some(v) = a.batch {
                    let _ = write!(s[3], "{v}");
                }
                if let Some(v) = a.attempts {
                    let _ = write!(s[4], "{v}");
                }
                if let Some(v) = a.http_status {
                    let _ = write!(s[5], "{v}");
                }
                if let Some(v) = a.error_code {
                    let _ = write!(s[6], "{v}");
                }
                if let Some(v) = a.error_subcode {
                    let _ = write!(s[7], "{v}");
                }
                w.write_record([
                    file,
                    &s[0],
                    &s[1],
                    r.status.as_str(),
                    &r.reason,
                    &id.dataset_id,
                    &id.channel,
                    &id.event_name,
                    &id.event_id,
                    &s[2],
                    &s[3],
                    &s[4],
                    &s[5],
                    &s[6],
                    &s[7],
                    a.fbtrace_id.as_deref().unwrap_or(""),
                ])
                .map_err(io::Error::other)
            }
            Out::Jsonl(w) => {
                let (id, a) = (&r.identity, &r.answer);
                let j = serde_json::json!({
                    "file": file, "row": r.row, "line": r.line, "status": r.status.as_str(),
                    "reason": r.reason, "dataset_id": id.dataset_id, "channel": id.channel,
                    "event_name": id.event_name, "event_id": id.event_id, "event_time": id.event_time,
                    "batch": a.batch, "attempts": a.attempts, "http_status": a.http_status,
                    "error_code": a.error_code, "error_subcode": a.error_subcode, "fbtrace_id": a.fbtrace_id,
                });
                serde_json::to_writer(&mut *w, &j).map_err(io::Error::other)?;
                w.write_all(b"\n")
            }
        }
    }

    pub fn finish(self) -> io::Result<Summary> {
        match self.out {
            Out::Csv(mut w) => w.flush()?,
            Out::Jsonl(mut w) => w.flush()?,
        }
        Ok(self.summary)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn row(status: Status) -> ReportRow {
        ReportRow {
            file: 0,
            row: 1,
            line: 2,
            status,
            reason: "a, \"quoted\"\nreason".into(),
            identity: Identity {
                dataset_id: "123".into(),
                channel: "whatsapp".into(),
                event_name: "Purchase".into(),
                event_id: "e1".into(),
                event_time: Some(1_763_640_000),
            },
            answer: Answer {
                batch: Some(3),
                attempts: Some(2),
                http_status: Some(200),
                error_code: None,
                error_subcode: None,
                fbtrace_id: Some("AbC".into()),
            },
        }
    }

    #[test]
    fn csv_report_has_contract_columns_and_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.csv");
        let mut w =
            ReportWriter::create(Some(&p), ReportFormat::Csv, vec!["in.csv".into()]).unwrap();
        w.write(&row(Status::Sent)).unwrap();
        let s = w.finish().unwrap();
        assert_eq!(s.get(Status::Sent), 1);
        let text = std::fs::read_to_string(&p).unwrap();
        let mut lines = text.lines();
        assert_eq!(
            lines.next().unwrap(),
            "file,row,line,status,reason,dataset_id,channel,event_name,event_id,event_time,batch,attempts,http_status,error_code,error_subcode,fbtrace_id"
        );
        assert!(text.contains("in.csv,1,2,sent,\"a, \"\"quoted\"\"\nreason\",123,whatsapp,Purchase,e1,1763640000,3,2,200,,,AbC"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
    }

    #[test]
    fn jsonl_report_has_every_column() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.jsonl");
        let mut w =
            ReportWriter::create(Some(&p), ReportFormat::Jsonl, vec!["in.csv".into()]).unwrap();
        w.write(&row(Status::Failed)).unwrap();
        w.finish().unwrap();
        let v: serde_json::Value =
            serde_json::from_str(std::fs::read_to_string(&p).unwrap().trim()).unwrap();
        for c in COLUMNS {
            assert!(v.get(c).is_some(), "missing {c}");
        }
        assert_eq!(v["status"], "failed");
    }
}
