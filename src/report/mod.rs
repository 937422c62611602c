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

pub use progress::{Progress, ProgressMode};
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
    Csv(BufWriter<Box<dyn Write + Send>>),
    Jsonl(BufWriter<Box<dyn Write + Send>>),
}

/// Writes report lines and keeps the summary counts.
pub struct ReportWriter {
    out: Out,
    files: Vec<String>,
    pub summary: Summary,
    /// One CSV line, assembled before it is written.
    line: Vec<u8>,
}

/// Appends field `i` of a CSV line as RFC 4180 (and the `csv` crate) write it: a separating
/// comma, then the text, quoted (quotes doubled) when it holds a comma, a quote or a line
/// break, and with line breaks as spaces.
fn csv_field(line: &mut Vec<u8>, i: usize, text: &[u8]) {
    if i > 0 {
        line.push(b',');
    }
    // Without a short-circuit, the check vectorizes; most fields need no quotes.
    let quote = text.iter().fold(false, |q, &b| {
        q | (b == b',') | (b == b'"') | (b == b'\n') | (b == b'\r')
    });
    if !quote {
        line.extend_from_slice(text);
        return;
    }
    // A line break inside a cell (an id from a multi-line CSV cell) becomes a space: one
    // physical line per row, always.
    line.push(b'"');
    for &b in text {
        match b {
            b'"' => line.extend_from_slice(b"\"\""),
            b'\n' | b'\r' => line.push(b' '),
            b => line.push(b),
        }
    }
    line.push(b'"');
}

/// Creates `path` for writing with mode 0600 (the report and payloads may identify customers).
pub fn create_private(path: &Path) -> io::Result<File> {
    // An object URL is written to a private temporary file, uploaded when the run ends.
    let path = crate::store::local_output(path, false)?;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o.open(&path)
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
                let mut w = BufWriter::with_capacity(1 << 16, sink);
                let mut line = Vec::new();
                for (i, c) in COLUMNS.iter().enumerate() {
                    csv_field(&mut line, i, c.as_bytes());
                }
                line.push(b'\n');
                w.write_all(&line)?;
                Out::Csv(w)
            }
            ReportFormat::Jsonl => Out::Jsonl(BufWriter::new(sink)),
        };
        Ok(ReportWriter {
            out,
            files,
            summary: Summary::default(),
            line: Vec::with_capacity(512),
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
                let (id, a) = (&r.identity, &r.answer);
                let l = &mut self.line;
                l.clear();
                let mut digits = [0u8; 20];
                let mut num = |l: &mut Vec<u8>, i, n: Option<i64>| {
                    let text = n.map_or(&[][..], |n| crate::json::decimal(n, &mut digits));
                    csv_field(l, i, text);
                };
                csv_field(l, 0, file.as_bytes());
                num(l, 1, i64::try_from(r.row).ok());
                num(l, 2, i64::try_from(r.line).ok());
                csv_field(l, 3, r.status.as_str().as_bytes());
                csv_field(l, 4, crate::secret::scrub(&r.reason).as_bytes());
                csv_field(l, 5, id.dataset_id.as_bytes());
                csv_field(l, 6, id.channel.as_bytes());
                csv_field(l, 7, id.event_name.as_bytes());
                csv_field(l, 8, id.event_id.as_bytes());
                num(l, 9, id.event_time);
                num(l, 10, a.batch.and_then(|b| i64::try_from(b).ok()));
                num(l, 11, a.attempts.map(i64::from));
                num(l, 12, a.http_status.map(i64::from));
                num(l, 13, a.error_code);
                num(l, 14, a.error_subcode);
                let fbtrace = crate::secret::scrub(a.fbtrace_id.as_deref().unwrap_or(""));
                csv_field(l, 15, fbtrace.as_bytes());
                l.push(b'\n');
                w.write_all(l)
            }
            Out::Jsonl(w) => {
                let (id, a) = (&r.identity, &r.answer);
                let j = serde_json::json!({
                    "file": file, "row": r.row, "line": r.line, "status": r.status.as_str(),
                    "reason": crate::secret::scrub(&r.reason), "dataset_id": id.dataset_id, "channel": id.channel,
                    "event_name": id.event_name, "event_id": id.event_id, "event_time": id.event_time,
                    "batch": a.batch, "attempts": a.attempts, "http_status": a.http_status,
                    "error_code": a.error_code, "error_subcode": a.error_subcode,
                    "fbtrace_id": a.fbtrace_id.as_deref().map(crate::secret::scrub),
                });
                serde_json::to_writer(&mut *w, &j).map_err(io::Error::other)?;
                w.write_all(b"\n")
            }
        }
    }

    pub fn finish(self) -> io::Result<Summary> {
        match self.out {
            Out::Csv(mut w) | Out::Jsonl(mut w) => w.flush()?,
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
        // One physical line per row: a line break in a cell is a space.
        assert!(text.contains("in.csv,1,2,sent,\"a, \"\"quoted\"\" reason\",123,whatsapp,Purchase,e1,1763640000,3,2,200,,,AbC"));
        assert_eq!(text.lines().count(), 2);
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
