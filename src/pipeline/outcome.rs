//! What becomes of a row ([`Outcome`]), why a run stops sending or reading ([`Stop`],
//! [`RunEnd`]), and the one place every reason a user reads is worded ([`Outcome::render`],
//! [`Stop::reason`]). The exit code of a run that reports rows is derived here, once.

use std::time::Duration;

use super::accounts::{Unplaced, Why};
use crate::error::exit;
use crate::ledger::Entry;
use crate::report::Status;
use crate::report::summary::Failure;
use crate::sink::classify::{fatal_message, fatal_reason};
use crate::sink::client::MAX_WAIT;
use crate::sink::dataset::Owner;
use crate::sink::{Answer, Delivery, FatalKind, GaveUp, GraphError, NotSent};
use crate::time::flag_duration;

/// The final fate of one row, decided by admission, by delivery, or by a stop.
#[derive(Debug)]
pub enum Outcome<'a> {
    /// Passed every rule (validate); `batch` when its payload was written.
    Valid { batch: Option<u64> },
    /// Broke a rule: the row's own reason says which.
    Invalid,
    /// Older than Meta's window: the row's own reason says how old.
    Expired,
    /// Same dedup key as the row at this ordinal.
    Duplicate { first: u64 },
    /// The ledger says an earlier run delivered it.
    AlreadySent(&'a Entry),
    /// The ledger says an earlier run sent it without learning the outcome.
    UnknownEarlier(&'a Entry),
    /// A dry run that was interrupted reads on without checking.
    NotValidated,
    /// The run stopped sending before this row left.
    Stopped(&'a Stop),
    /// What the sink says happened to it.
    Delivered(&'a Delivery, Answer),
    /// The sender vanished while this row's request was out: it may have arrived.
    Lost,
    /// Its dataset was cut off by a permission error (Meta's): not sent.
    CutOff(&'a GraphError),
    /// `dataset_id: auto`: its account has no dataset, was refused, or could not be looked up
    /// (`None`: it was never looked up).
    Unplaced(Option<&'a Unplaced>),
    /// Another run holds its dataset in the shared ledger (`Ledger::claim_dataset`): not sent.
    DatasetBusy(&'a str),
}

impl Outcome<'_> {
    /// The status and reason a row gets; `own` is the row's reason from mapping (its problems,
    /// or notes on fields left out). Every reason text of the report is worded here.
    pub fn render(
        &self,
        own: &mut String,
        key_desc: &str,
        locate: impl Fn(u64) -> String,
    ) -> Status {
        let mut set = |s: String| *own = s;
        match self {
            Outcome::Valid { .. } => Status::Valid,
            Outcome::Invalid => Status::Invalid,
            Outcome::Expired => Status::Expired,
            Outcome::Duplicate { first } => {
                set(format!("same dedup key ({key_desc}) as {}", locate(*first)));
                Status::Duplicate
            }
            Outcome::AlreadySent(e) => {
                set(format!(
                    "Meta acknowledged this event in run {} (fbtrace_id {})",
                    e.run_id, e.fbtrace_id
                ));
                Status::AlreadySent
            }
            Outcome::UnknownEarlier(e) => {
                set(format!(
                    "run {} sent this event but its outcome is unknown (no answer, or an answer that did not count every event); it may have been delivered, so it is not resent (pass --resend-unknown to send it again)",
                    e.run_id
                ));
                Status::Unknown
            }
            Outcome::NotValidated => {
                set("not validated: the run was interrupted (SIGINT/SIGTERM)".into());
                Status::NotAttempted
            }
            Outcome::Stopped(stop) => {
                set(stop.reason());
                Status::NotAttempted
            }
            Outcome::Lost => {
                set("the sender stopped unexpectedly; outcome unknown, not resent".into());
                Status::Unknown
            }
            Outcome::CutOff(error) => {
                set(error.message.clone());
                Status::NotAttempted
            }
            Outcome::Unplaced(u) => {
                set(u.map_or_else(
                    || "not sent: the dataset of its account was not looked up".into(),
                    unplaced,
                ));
                Status::NotAttempted
            }
            Outcome::DatasetBusy(dataset) => {
                set(format!(
                    "not sent: dataset {dataset} is being sent by another run (it holds the dataset's lock in the state ledger, or sent to it after this run started); rerun when that run is done"
                ));
                Status::NotAttempted
            }
            Outcome::Delivered(d, _) => match d {
                Delivery::Sent { .. } => Status::Sent,
                Delivery::Failed { error, gave_up } => {
                    set(failed(error, *gave_up));
                    Status::Failed
                }
                Delivery::Unknown { error } => {
                    set(error.message.clone());
                    Status::Unknown
                }
                Delivery::NotSent { why, error } => {
                    set(not_sent(why, error.as_ref()));
                    Status::NotAttempted
                }
            },
        }
    }

    /// The report columns after `event_time`.
    pub fn answer(&self) -> Answer {
        match self {
            Outcome::Valid { batch } => Answer {
                batch: *batch,
                ..Answer::default()
            },
            Outcome::AlreadySent(e) => Answer {
                fbtrace_id: (!e.fbtrace_id.is_empty()).then(|| e.fbtrace_id.clone()),
                ..Answer::default()
            },
            Outcome::Delivered(_, a) => a.clone(),
            Outcome::Unplaced(Some(u)) if let Some(e) = u.error() => Answer {
                http_status: e.http_status,
                error_code: e.code,
                error_subcode: e.subcode,
                fbtrace_id: e.fbtrace_id.clone(),
                ..Answer::default()
            },
            Outcome::CutOff(e) => Answer {
                http_status: e.http_status,
                error_code: e.code,
                error_subcode: e.subcode,
                fbtrace_id: e.fbtrace_id.clone(),
                ..Answer::default()
            },
            _ => Answer::default(),
        }
    }
}

/// A failed row: Meta's last message, and why the retries ended if they did.
fn failed(error: &GraphError, gave_up: Option<GaveUp>) -> String {
    match gave_up {
        None => error.message.clone(),
        Some(GaveUp::Attempts(n)) => format!("{} (gave up after {})", error.message, attempts(n)),
        Some(GaveUp::OutOfTime {
            attempts: n,
            budget,
        }) => format!(
            "{} (gave up after {}: the retry time ran out, `--max-retry-time {}`)",
            error.message,
            attempts(n),
            flag_duration(budget)
        ),
        Some(GaveUp::MetaAsked { attempts: n, wait }) => format!(
            "{} (gave up after {}: {})",
            error.message,
            attempts(n),
            meta_asked(wait)
        ),
    }
}

/// A row the sink did not send (the run stopped: the pipeline words that, see
/// [`Outcome::Stopped`]).
/// Why an account's rows are not sent (`dataset_id: auto`).
fn unplaced(u: &Unplaced) -> String {
    let a = &u.account;
    match &u.why {
        Why::Missing => format!(
            "account {a} has no dataset; create it with `msgcapi dataset {} {a} --create` or pass --create-datasets",
            Owner::of(u.channel).flag()
        ),
        // The same reason as the rows of a dataset that was cut off: Meta's.
        Why::Refused(e) => e.message.clone(),
        Why::Failed(e) => format!(
            "not sent: the dataset of account {a} could not be found ({}); rerun later",
            e.message
        ),
        Why::Stopped => {
            format!("not sent: the run stopped before the dataset of account {a} was found")
        }
    }
}

fn not_sent(why: &NotSent, error: Option<&GraphError>) -> String {
    match why {
        NotSent::RunStopped => "not sent: the run stopped".into(),
        NotSent::RunStoppedWhileIsolating => {
            "not sent: the run stopped while isolating a rejected event".into()
        }
        NotSent::Refused => format!(
            "not sent: {}",
            error
                .map(|e| e.message.as_str())
                .unwrap_or("Meta refused it")
        ),
        NotSent::MetaAsked(wait) => format!("not sent: {}", meta_asked(*wait)),
        // The same reason as the rows of the request Meta refused.
        NotSent::CutOff => error.map(|e| e.message.clone()).unwrap_or_default(),
        NotSent::OutOfRetryTime { budget } => format!(
            "not sent: Meta's throttling holds the run longer than `--max-retry-time {}`; rerun later",
            flag_duration(*budget)
        ),
    }
}

/// Why a wait Meta asked for was not waited out, e.g. `Meta asked to wait 20 min, longer than
/// msgcapi waits (15 min); rerun later`.
fn meta_asked(wait: Duration) -> String {
    format!(
        "Meta asked to wait {} min, longer than msgcapi waits ({} min); rerun later",
        wait.as_secs().div_ceil(60),
        MAX_WAIT.as_secs() / 60
    )
}

/// `1 attempt`, `3 attempts`.
fn attempts(n: u32) -> String {
    if n == 1 {
        "1 attempt".into()
    } else {
        format!("{n} attempts")
    }
}

/// Why a run stopped sending before the end of its input.
#[derive(Clone, Debug, PartialEq)]
pub enum Stop {
    /// SIGINT or SIGTERM.
    Interrupted,
    /// `--max-errors` rows failed or have an unknown outcome.
    MaxErrors(u64),
    /// Meta refused the token or a permission: nothing further can succeed.
    Refused { kind: FatalKind, error: GraphError },
    /// The state ledger cannot record a batch or an answer.
    StateUnwritable(String),
    /// The report or a payload file cannot be written.
    OutputUnwritable(String),
    /// The report goes to stdout and its reader closed it (`msgcapi validate ... | head`): a
    /// quiet end, as for any command whose output is cut short.
    ReportClosed,
    /// The endpoint stayed unreachable for `--max-outage` (`lasted`): `cause` says how.
    Outage {
        host: String,
        lasted: Duration,
        cause: String,
    },
    /// The sender's runtime died.
    SenderLost,
    /// An input could not be read to its end (the message says which and where): what was
    /// read is reported, nothing more is sent.
    Unreadable(String),
}

impl Stop {
    /// The reason of a row not sent because of this stop.
    pub fn reason(&self) -> String {
        match self {
            Stop::Interrupted => "not sent: the run was interrupted (SIGINT/SIGTERM)".into(),
            Stop::MaxErrors(n) => {
                format!("not sent: the run stopped after {n} failed or unknown rows (--max-errors)")
            }
            Stop::Refused { kind, error } => {
                format!("not sent: the run stopped: {}", fatal_reason(*kind, error))
            }
            Stop::StateUnwritable(_) => {
                "not sent: the run stopped: the state file cannot be written".into()
            }
            Stop::OutputUnwritable(_) => {
                "not sent: the run stopped: the report cannot be written".into()
            }
            Stop::ReportClosed => "not sent: the report's reader closed stdout".into(),
            Stop::Outage {
                host,
                lasted,
                cause,
            } => format!(
                "not sent: {host} unreachable for {} ({cause}); rerun later",
                flag_duration(*lasted)
            ),
            Stop::SenderLost => "not sent: the sender stopped unexpectedly".into(),
            Stop::Unreadable(m) => format!("not sent: the run stopped: {m}"),
        }
    }

    /// The error line for stderr, when this stop is an error (not an interrupt or a limit).
    fn error(&self) -> Option<String> {
        match self {
            // The input's own message is the error (`RunEnd::unread`).
            Stop::Interrupted | Stop::MaxErrors(_) | Stop::ReportClosed | Stop::Unreadable(_) => {
                None
            }
            Stop::Refused { kind, error } => Some(fatal_message(*kind, error)),
            Stop::StateUnwritable(e) | Stop::OutputUnwritable(e) => Some(e.clone()),
            Stop::Outage {
                host,
                lasted,
                cause,
            } => Some(format!(
                "{host} unreachable for {} ({cause}); the rows not sent are not_attempted: rerun later",
                flag_duration(*lasted)
            )),
            Stop::SenderLost => Some("the sender stopped unexpectedly".into()),
        }
    }
}

/// How a run is ending, recorded as things happen: the first stop of sending wins, and reading
/// may end early on its own (the rows read are still delivered). The exit code, the stderr
/// lines and the summary's `stopped` all come from it.
#[derive(Debug, Default)]
pub struct RunEnd {
    pub stop: Option<Stop>,
    /// The input could not be read to its end: why.
    pub unread: Option<String>,
}

impl RunEnd {
    /// Stops sending, unless the run already stopped.
    pub fn stop(&mut self, s: Stop) {
        self.stop.get_or_insert(s);
    }

    /// Records that reading ended early: the run stops sending too (rows read and not yet
    /// sent are `not_attempted`), and ends with exit 3.
    pub fn unread(&mut self, message: String) {
        self.stop(Stop::Unreadable(message.clone()));
        self.unread.get_or_insert(message);
    }

    /// Reading goes on only to report the rest (never when the report itself is gone).
    pub fn reads_on(&self) -> bool {
        self.unread.is_none()
            && !matches!(
                self.stop,
                Some(Stop::OutputUnwritable(_) | Stop::ReportClosed)
            )
    }

    /// The report could not be written (or read): what to stop with.
    pub fn report_failed(&mut self, e: &std::io::Error) {
        self.stop(if e.kind() == std::io::ErrorKind::BrokenPipe {
            Stop::ReportClosed
        } else {
            Stop::OutputUnwritable(format!("cannot write the report: {e}"))
        });
    }

    /// The exit code of a run that got this far with `problems` rows needing a look.
    pub fn exit_code(&self, problems: u64) -> u8 {
        match (&self.stop, &self.unread) {
            (Some(Stop::Interrupted), _) => exit::INTERRUPTED,
            (Some(Stop::ReportClosed), _) => exit::REPORT_CLOSED,
            (None | Some(Stop::MaxErrors(_)), None) if problems > 0 => exit::ROWS,
            (None | Some(Stop::MaxErrors(_)), None) => exit::OK,
            _ => exit::ABORTED,
        }
    }

    /// The errors to print, one per line (`error: ` is added by the caller).
    pub fn errors(&self) -> Vec<String> {
        let mut v: Vec<String> = self.unread.iter().cloned().collect();
        v.extend(self.stop.as_ref().and_then(Stop::error));
        v
    }

    /// Why the run ended in error, for monitoring (`None` for a complete run or `--max-errors`).
    pub fn failure(&self) -> Option<Failure> {
        let kind = match (&self.stop, &self.unread) {
            (Some(Stop::Interrupted), _) => "interrupted",
            (_, Some(_)) => "input",
            (Some(Stop::Refused { kind, .. }), _) => match kind {
                FatalKind::Auth => "auth",
                FatalKind::Permission => "permission",
                FatalKind::Redirect => "usage",
                FatalKind::Outage => "outage",
            },
            (Some(Stop::Outage { .. }), _) => "outage",
            (Some(Stop::StateUnwritable(_)), _) => "state",
            (Some(Stop::OutputUnwritable(_)), _) => "output",
            (Some(Stop::SenderLost), _) => "internal",
            (Some(Stop::Unreadable(_)), _) => "input",
            (Some(Stop::ReportClosed), _) => "report_closed",
            (None | Some(Stop::MaxErrors(_)), None) => return None,
        };
        let message = self
            .errors()
            .into_iter()
            .next()
            .or_else(|| self.stopped())
            .unwrap_or_default();
        Some(Failure { kind, message })
    }

    /// How the summary tells this ending; `cut_off`: the datasets cut off, with Meta's error.
    pub fn ending(
        &self,
        exit_code: u8,
        cut_off: Vec<(String, GraphError)>,
        refused_accounts: &[crate::report::summary::CutOff],
    ) -> crate::report::summary::Ending {
        crate::report::summary::Ending {
            cut_off: cut_off
                .into_iter()
                .map(|(dataset_id, e)| crate::report::summary::CutOff {
                    dataset_id: Some(dataset_id),
                    account_id: None,
                    channel: None,
                    message: e.message,
                    code: e.code,
                    subcode: e.subcode,
                })
                .chain(refused_accounts.iter().cloned())
                .collect(),
            failure: self.failure(),
            exit_code,
            errors: self.errors(),
            stopped: self.stopped(),
            stop_line: self
                .stop
                .as_ref()
                .filter(|s| {
                    s.error().is_none() && !matches!(s, Stop::ReportClosed | Stop::Unreadable(_))
                })
                .map(Stop::reason),
            silent: self.stop == Some(Stop::ReportClosed),
        }
    }

    /// The summary's `stopped`: why sending or reading stopped early.
    pub fn stopped(&self) -> Option<String> {
        self.unread
            .clone()
            .or_else(|| self.stop.as_ref().map(Stop::reason))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_and_durations_read_as_the_flags_write_them() {
        assert_eq!(
            meta_asked(Duration::from_secs(15 * 60 + 1)),
            "Meta asked to wait 16 min, longer than msgcapi waits (15 min); rerun later"
        );
        assert_eq!(attempts(1), "1 attempt");
        assert_eq!(attempts(3), "3 attempts");
        for (secs, text) in [
            (0, "0s"),
            (2, "2s"),
            (90, "90s"),
            (1800, "30m"),
            (3600, "1h"),
            (5400, "1h30m"),
            (3601, "3601s"),
        ] {
            assert_eq!(flag_duration(Duration::from_secs(secs)), text);
        }
    }

    #[test]
    fn the_exit_code_follows_how_the_run_ended() {
        let end = |stop: Option<Stop>, unread: Option<&str>| RunEnd {
            stop,
            unread: unread.map(String::from),
        };
        assert_eq!(end(None, None).exit_code(0), exit::OK);
        assert_eq!(end(None, None).exit_code(3), exit::ROWS);
        assert_eq!(end(Some(Stop::MaxErrors(5)), None).exit_code(5), exit::ROWS);
        assert_eq!(
            end(Some(Stop::Interrupted), None).exit_code(0),
            exit::INTERRUPTED
        );
        assert_eq!(
            end(Some(Stop::Interrupted), Some("x")).exit_code(0),
            exit::INTERRUPTED
        );
        assert_eq!(end(None, Some("truncated")).exit_code(0), exit::ABORTED);
        let refused = Stop::Refused {
            kind: FatalKind::Auth,
            error: GraphError::default(),
        };
        assert_eq!(end(Some(refused), None).exit_code(0), exit::ABORTED);
        assert_eq!(
            end(Some(Stop::StateUnwritable("disk".into())), None).exit_code(0),
            exit::ABORTED
        );
        assert_eq!(
            end(Some(Stop::SenderLost), None).exit_code(0),
            exit::ABORTED
        );
        // The first stop wins.
        let mut e = RunEnd::default();
        e.stop(Stop::Interrupted);
        e.stop(Stop::MaxErrors(1));
        assert_eq!(e.stop, Some(Stop::Interrupted));
    }
}
