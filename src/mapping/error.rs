//! Mapping errors: fatal for the run (exit 2), reported before any row is read, always with
//! `file:line:column`, the key path, and a hint where one helps (style rule 13).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_saphyr::Location;

/// A problem with the mapping file. Fatal for the run (exit 2), reported before any row is read.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{}", self.render())]
pub struct MappingError {
    pub file: PathBuf,
    pub line: u64,
    pub column: u64,
    /// Key path, e.g. `custom_data.value.type`.
    pub key: String,
    pub message: String,
    pub hint: Option<String>,
}

impl MappingError {
    fn render(&self) -> String {
        if self.line == 0 {
            // Nothing was read: there is no position to point at.
            let mut s = format!("`{}`: {}", self.file.display(), self.message);
            if let Some(h) = &self.hint {
                let _ = write!(s, "\n  hint: {h}");
            }
            return s;
        }
        let mut s = format!("{}:{}:{}: ", self.file.display(), self.line, self.column);
        if !self.key.is_empty() {
            let _ = write!(s, "`{}`: ", self.key);
        }
        s.push_str(&self.message);
        if let Some(h) = &self.hint {
            let _ = write!(s, "\n  hint: {h}");
        }
        s
    }
}

impl MappingError {
    /// An error at a YAML location.
    pub(super) fn at(
        file: &Path,
        at: Location,
        key: &str,
        message: String,
        hint: Option<String>,
    ) -> Self {
        MappingError {
            file: file.to_path_buf(),
            line: at.line(),
            column: at.column(),
            key: key.to_string(),
            message,
            hint,
        }
    }

    /// The YAML library's error (syntax, unknown or missing key), in house style.
    pub(super) fn from_yaml(file: &Path, e: &serde_saphyr::Error) -> Self {
        let (line, column) = e
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((1, 1));
        let message = tidy_yaml_message(&e.without_snippet().to_string());
        let hint = if message.contains("unknown key") {
            Some(match did_you_mean(&message) {
                Some(k) => format!("did you mean `{k}`? (docs/mapping.md lists every key)"),
                None => "see docs/mapping.md for every key; keys are snake_case".to_string(),
            })
        } else if message.contains("missing field") {
            Some("`dataset_id`, `channel`, `event_name` and `event_time` are required".to_string())
        } else {
            None
        };
        MappingError {
            file: file.to_path_buf(),
            line,
            column,
            key: String::new(),
            message,
            hint,
        }
    }
}

/// Turns the YAML library's message into house style: no trailing location (we print it first),
/// names in backticks, `expected one of` after a semicolon.
fn tidy_yaml_message(raw: &str) -> String {
    let mut msg = raw
        .lines()
        .next()
        .unwrap_or("invalid YAML")
        .trim()
        .to_string();
    if let Some(i) = msg.rfind(" at line ") {
        msg.truncate(i);
    }
    if let Some(i) = msg.find(", expected one of ") {
        let names: Vec<String> = msg[i + 18..]
            .split(", ")
            .map(|n| format!("`{}`", n.trim_matches('`')))
            .collect();
        msg = format!("{}; expected one of {}", &msg[..i], names.join(", "));
    }
    if let Some(rest) = msg.strip_prefix("duplicate mapping key: ") {
        let key = rest.split(',').next().unwrap_or(rest).trim();
        return format!("`{key}` is given twice; each key may appear once");
    }
    msg.replace("unknown field", "unknown key")
}

/// For "unknown key `x`; expected one of `a`, `b`": the expected key closest to `x`, if close.
fn did_you_mean(msg: &str) -> Option<String> {
    let bad = msg.split('`').nth(1)?;
    let (_, expected) = msg.split_once("expected one of ")?;
    expected
        .split(", ")
        .map(|k| k.trim_matches('`'))
        .map(|k| (edit_distance(bad, k), k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min()
        .map(|(_, k)| k.to_string())
}

/// Levenshtein distance (keys are short).
pub(super) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}
