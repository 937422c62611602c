//! Exit codes, and the one error type a command returns when it cannot report rows. Its
//! [`Error::exit_code`] is the only place an error becomes an exit code; a run that reports rows
//! derives its code from how it ended (`pipeline::RunEnd`), from the same constants.

use crate::ledger::LedgerError;
use crate::mapping::MappingError;

/// Exit codes (README.md documents them).
pub mod exit {
    /// Every row valid, duplicate, sent or already sent.
    pub const OK: u8 = 0;
    /// Completed, but some rows invalid, expired, failed, unknown or not attempted.
    pub const ROWS: u8 = 1;
    /// Usage or mapping error: nothing processed.
    pub const USAGE: u8 = 2;
    /// Input unreadable, or the run aborted (auth, permission, state file, unrecoverable I/O).
    pub const ABORTED: u8 = 3;
    /// Interrupted (SIGINT/SIGTERM); the report is complete.
    pub const INTERRUPTED: u8 = 130;
    /// The report went to stdout and its reader closed it (`| head`): nothing more was read or
    /// sent. 128 + SIGPIPE, what a shell reports for a writer a closed pipe stopped.
    pub const REPORT_CLOSED: u8 = 141;
}

/// Why a command stopped before it could report its rows.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The command line asks for something msgcapi will not do (exit 2).
    #[error("{0}")]
    Usage(String),
    /// The mapping file is wrong (exit 2).
    #[error(transparent)]
    Mapping(#[from] MappingError),
    /// An input cannot be opened or read (exit 3).
    #[error("{0}")]
    Input(String),
    /// The state file cannot be used (exit 3), or refuses what the command asks: another
    /// endpoint, an import into a file with records (exit 2).
    #[error(transparent)]
    State(#[from] LedgerError),
    /// A report, payload, summary or export cannot be written (exit 3).
    #[error("{what}: {source}")]
    Output {
        what: String,
        source: std::io::Error,
    },
    /// Meta refused, or could not be reached (exit 3).
    #[error("{0}")]
    Remote(String),
    /// Anything else that stops a command (exit 3).
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) | Error::Mapping(_) => exit::USAGE,
            Error::State(e) if e.is_usage() => exit::USAGE,
            Error::Input(_)
            | Error::State(_)
            | Error::Output { .. }
            | Error::Remote(_)
            | Error::Other(_) => exit::ABORTED,
        }
    }

    /// The kind `--summary-json` gives this error (see `report::summary::Failure`).
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Usage(_) => "usage",
            Error::Mapping(_) => "mapping",
            Error::Input(_) => "input",
            Error::State(_) => "state",
            Error::Output { .. } => "output",
            Error::Remote(_) => "outage",
            Error::Other(_) => "internal",
        }
    }

    /// A write to a closed pipe (`msgcapi ... | head`): a normal end, not an error.
    pub fn is_broken_pipe(&self) -> bool {
        let io = match self {
            Error::Output { source, .. } => Some(source),
            Error::Other(e) => e.chain().find_map(|c| c.downcast_ref::<std::io::Error>()),
            _ => None,
        };
        io.is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    }

    /// An output that cannot be written.
    pub fn output(what: impl Into<String>, source: std::io::Error) -> Error {
        Error::Output {
            what: what.into(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
