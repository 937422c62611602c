//! `msgcapi dataset`: the dataset of a page, WhatsApp Business Account or Instagram account
//! (created with `--create`), or of every account of a CSV file (`--accounts`). The lookups go
//! through the sender: rate-limited, retried, concurrent, with the token's errors classified as
//! for events.

use std::io::Read;

use crate::capi::Channel;
use crate::cli::DatasetArgs;
use crate::error::{Error, Result, exit};
use crate::sink::classify::{FatalKind, GraphError, fatal_message};
use crate::sink::dataset::{Owner, Resolution};
use crate::sink::{Sender, SinkMessage};

/// The largest `--accounts` file read (a line per account: a few MB for 100,000 accounts).
const MAX_ACCOUNTS_BYTES: u64 = 64 << 20;

/// One account: 0 printed its dataset id; 1 it has none (without `--create`); 2 usage; 3 Meta
/// refused or could not be reached. `--accounts`: 0 when every account has a dataset, 1
/// otherwise, 3 when the run stopped (a refused token, an outage).
pub fn run(args: DatasetArgs) -> Result<u8> {
    let endpoint = crate::config::endpoint(&args.graph)?;
    let lines = match &args.accounts {
        Some(path) => read_accounts(path)?,
        None => vec![one_account(&args)?],
    };
    let auth = crate::config::credentials(&args.graph)?;
    let shown = endpoint.to_string();
    let graph = args.graph.clone();
    let cfg = crate::config::sink_config(endpoint, graph, auth, &args.delivery, None, None);
    let (sender, messages) = Sender::<()>::start(cfg).map_err(Error::Other)?;
    let mut wanted: Vec<(Owner, String)> = lines
        .iter()
        .filter_map(|l| Some((Owner::of(l.channel?), l.account_id.clone())))
        .collect();
    wanted.sort_by(|a, b| (a.0.kind(), &a.1).cmp(&(b.0.kind(), &b.1)));
    wanted.dedup();
    let found = sender.resolver().resolve(&wanted, args.create);
    sender.finish();
    let fatal = messages.try_iter().find_map(|m| match m {
        SinkMessage::Fatal { kind, error } => Some(match kind {
            FatalKind::Outage => Error::Remote(format!(
                "cannot reach `{shown}`: {} (for `--max-outage` {})",
                error.message,
                crate::time::flag_duration(args.delivery.max_outage)
            )),
            kind => Error::Remote(fatal_message(kind, &error)),
        }),
        _ => None,
    });
    let answer = |l: &Line| -> Option<&Resolution> {
        let key = (Owner::of(l.channel?), l.account_id.clone());
        let i = wanted.binary_search_by(|w| (w.0.kind(), &w.1).cmp(&(key.0.kind(), &key.1)));
        found.get(i.ok()?)
    };
    if args.accounts.is_none() {
        return one_result(args.json, &lines[0], answer(&lines[0]), fatal);
    }
    let mut out = csv::Writer::from_writer(std::io::stdout().lock());
    let mut all = true;
    let write = |out: &mut csv::Writer<std::io::StdoutLock<'_>>, cells: [&str; 5]| {
        out.write_record(cells).map_err(written)
    };
    write(
        &mut out,
        ["channel", "account_id", "dataset_id", "status", "error"],
    )?;
    for l in &lines {
        let (dataset, status, error) = match (&l.problem, answer(l)) {
            (Some(p), _) => (String::new(), "invalid", p.clone()),
            (
                None,
                Some(Resolution::Found {
                    dataset_id,
                    created,
                }),
            ) => (
                dataset_id.clone(),
                if *created { "created" } else { "found" },
                String::new(),
            ),
            (None, Some(Resolution::Missing)) => (
                String::new(),
                "missing",
                "the account has no dataset; pass --create to create it".into(),
            ),
            (None, Some(Resolution::Refused(e))) => (String::new(), "refused", meta_error(e)),
            (None, Some(Resolution::Failed(e))) => (String::new(), "failed", meta_error(e)),
            (None, Some(Resolution::Stopped) | None) => (
                String::new(),
                "not_attempted",
                "the lookups stopped before this account".into(),
            ),
        };
        all &= matches!(status, "found" | "created");
        let channel = match l.channel {
            Some(c) => c.name(),
            None => l.channel_text.as_str(),
        };
        let error = crate::secret::scrub(&error).replace(['\r', '\n'], " ");
        write(
            &mut out,
            [channel, &l.account_id, &dataset, status, error.as_str()],
        )?;
    }
    out.flush()
        .map_err(|e| Error::output("cannot write to stdout", e))?;
    if let Some(e) = fatal {
        return Err(e);
    }
    Ok(if all { exit::OK } else { exit::ROWS })
}

/// A line that cannot be written (a closed pipe is a normal end: see `Error::is_broken_pipe`).
fn written(e: csv::Error) -> Error {
    match e.into_kind() {
        csv::ErrorKind::Io(io) => Error::output("cannot write to stdout", io),
        other => Error::Other(anyhow::anyhow!("cannot write a line: {other:?}")),
    }
}

/// One line of the accounts file (or the one account of the flags).
struct Line {
    channel: Option<Channel>,
    channel_text: String,
    account_id: String,
    /// Why the line is not looked up.
    problem: Option<String>,
}

impl Line {
    fn new(channel_text: &str, account_id: &str) -> Line {
        let (channel_text, account_id) = (channel_text.trim(), account_id.trim());
        let channel = Channel::parse(&channel_text.to_ascii_lowercase());
        let problem = if channel.is_none() {
            Some(format!(
                "channel `{channel_text}` is not whatsapp, messenger or instagram"
            ))
        } else if !crate::capi::is_graph_id(account_id) {
            Some(format!(
                "account_id `{account_id}` is not an id; expected digits, e.g. `102290129340398`"
            ))
        } else {
            None
        };
        Line {
            channel: channel.filter(|_| problem.is_none()),
            channel_text: channel_text.to_string(),
            account_id: account_id.to_string(),
            problem,
        }
    }
}

fn one_account(args: &DatasetArgs) -> Result<Line> {
    let (id, channel) = match (&args.page_id, &args.waba_id, &args.ig_user_id) {
        (Some(p), _, _) => (p, Channel::Messenger),
        (_, Some(w), _) => (w, Channel::Whatsapp),
        (_, _, Some(i)) => (i, Channel::Instagram),
        // clap requires one of the three, or `--accounts`.
        _ => {
            return Err(Error::Usage(
                "give `--page-id`, `--waba-id`, `--ig-user-id` or `--accounts FILE`".into(),
            ));
        }
    };
    if !crate::capi::is_graph_id(id) {
        return Err(Error::Usage(format!(
            "`{id}` is not an id; expected digits, e.g. `{} 109876543210987`",
            Owner::of(channel).flag()
        )));
    }
    Ok(Line::new(channel.name(), id))
}

fn one_result(
    json: bool,
    line: &Line,
    answer: Option<&Resolution>,
    fatal: Option<Error>,
) -> Result<u8> {
    if let Some(e) = fatal {
        return Err(e);
    }
    let owner = line.channel.map(Owner::of);
    let (id, created) = match answer {
        Some(Resolution::Found {
            dataset_id,
            created,
        }) => (dataset_id, *created),
        Some(Resolution::Missing) => {
            eprintln!(
                "error: account {} has no dataset\n  hint: `msgcapi dataset {} {} --create` creates it",
                line.account_id,
                owner.map_or("--page-id", Owner::flag),
                line.account_id
            );
            return Ok(exit::ROWS);
        }
        Some(Resolution::Refused(e)) => {
            let kind = if matches!(e.code, Some(10 | 200..=299)) {
                return Err(Error::Remote(fatal_message(FatalKind::Permission, e)));
            } else {
                "Meta refused"
            };
            return Err(Error::Remote(format!("{kind}: {}", meta_error(e))));
        }
        Some(Resolution::Failed(e)) => {
            return Err(Error::Remote(format!(
                "Meta did not answer in time, try again later: {}",
                meta_error(e)
            )));
        }
        Some(Resolution::Stopped) | None => {
            return Err(Error::Remote("the lookup stopped before an answer".into()));
        }
    };
    let text = if json {
        serde_json::json!({
            "dataset_id": id,
            "owner_id": line.account_id,
            "owner_type": owner.map_or("", Owner::kind),
            "created": created,
        })
        .to_string()
    } else {
        id.clone()
    };
    super::stdout(&format!("{text}\n"))?;
    Ok(exit::OK)
}

/// Meta's message with its code: "Permissions error (code 200)".
fn meta_error(e: &GraphError) -> String {
    match (e.code, e.subcode) {
        (Some(c), Some(s)) => format!("{} (code {c}, subcode {s})", e.message),
        (Some(c), None) => format!("{} (code {c})", e.message),
        _ => e.message.clone(),
    }
}

/// The accounts of a CSV file with columns `channel` and `account_id` (others are ignored).
fn read_accounts(path: &std::path::Path) -> Result<Vec<Line>> {
    let name = path.display().to_string();
    let input: Box<dyn Read> = if path.as_os_str() == "-" {
        Box::new(std::io::stdin())
    } else {
        Box::new(
            std::fs::File::open(path)
                .map_err(|e| Error::Input(format!("cannot read `{name}`: {e}")))?,
        )
    };
    let mut bytes = Vec::new();
    input
        .take(MAX_ACCOUNTS_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::Input(format!("cannot read `{name}`: {e}")))?;
    if bytes.len() as u64 > MAX_ACCOUNTS_BYTES {
        return Err(Error::Input(format!(
            "`{name}` is over {} MiB; split it into several files",
            MAX_ACCOUNTS_BYTES >> 20
        )));
    }
    let mut r = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(bytes.as_slice());
    let header = r
        .headers()
        .map_err(|e| Error::Input(format!("cannot read `{name}`: {e}")))?
        .clone();
    let col = |n: &str| header.iter().position(|h| h.trim() == n);
    let (Some(c), Some(a)) = (col("channel"), col("account_id")) else {
        return Err(Error::Usage(format!(
            "`{name}` needs the columns `channel` and `account_id`; its header has {}",
            header
                .iter()
                .map(|h| format!("`{h}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    };
    let mut lines = Vec::new();
    for (i, rec) in r.records().enumerate() {
        let rec =
            rec.map_err(|e| Error::Input(format!("cannot read `{name}` at line {}: {e}", i + 2)))?;
        lines.push(Line::new(
            rec.get(c).unwrap_or_default(),
            rec.get(a).unwrap_or_default(),
        ));
    }
    Ok(lines)
}
