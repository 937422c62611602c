//! The mapping: a YAML file that says how an export's columns become Conversions API events.
//!
//! Two stages (style rule 2): [`raw`] mirrors the YAML with serde (`deny_unknown_fields`, every
//! value wrapped in `Spanned` so later checks can still point at `file:line:column`), then
//! [`compile`] resolves it into a checked, immutable [`Plan`]: constants and environment
//! variables resolved, value maps built, time formats parsed, the columns to read listed once.
//! No row is read before a `Plan` exists. Every key is documented in `docs/mapping.md`.
//!
//! Adding a mapping key: a field in `raw.rs`, its compile step in `compile.rs` (the compiler
//! destructures the raw mapping, so a key without one does not build), the resolved value in
//! [`Plan`], its use in `event`, and its documentation in `docs/mapping.md`.

mod compile;
mod error;
pub mod raw;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use error::MappingError;

use crate::capi::{PiiKind, UserField};

/// Where a field's text comes from, once resolved.
#[derive(Debug, Clone, PartialEq)]
pub enum Src {
    Constant(String),
    /// Index into [`Plan::columns`] (the projected columns, in reading order).
    Column(usize),
}

/// The type a field's text is converted to in the event JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueType {
    String,
    Number,
    Integer,
    Bool,
    /// Comma-separated text → JSON array of strings.
    List,
    /// The cell holds JSON (e.g. `contents`).
    Json,
}

/// A resolved field: source, default, value map, type, PII treatment.
#[derive(Debug, Clone)]
pub struct Field {
    /// Output name (`em`, `value`, ...).
    pub name: String,
    pub src: Src,
    pub default: Option<String>,
    /// Ordered: a lookup is a few string comparisons, cheaper than hashing for maps this small.
    pub values: Option<BTreeMap<String, String>>,
    pub passthrough: bool,
    pub ty: ValueType,
    /// `Some` = normalize for this kind, then SHA-256 (64-hex input passes through).
    pub hash: Option<PiiKind>,
    /// `ph` only: country calling code put in front of numbers written without `+` or `00`.
    pub country_code: Option<u16>,
    /// The dedup key reads this `user_data`/`custom_data` field.
    pub in_key: bool,
    /// Numbers written with a decimal comma (`1.299,90`, `129,90`).
    pub decimal_comma: bool,
}

/// Where an event's dataset comes from.
#[derive(Debug, Clone)]
pub enum DatasetSource {
    /// A constant, a column or an environment variable.
    Field(Field),
    /// `dataset_id: auto`: the dataset of the row's business account (its channel's account id:
    /// `whatsapp_business_account_id`, `page_id` or `instagram_business_account_id`), found with
    /// the Dataset API.
    Auto,
}

impl DatasetSource {
    pub fn is_auto(&self) -> bool {
        matches!(self, DatasetSource::Auto)
    }
}

/// How `event_time` text is parsed.
#[derive(Debug, Clone, PartialEq)]
pub enum TimeFormat {
    Unix,
    UnixMs,
    Rfc3339,
    /// A strftime pattern (chrono syntax), e.g. `%d/%m/%Y %H:%M`.
    Pattern(String),
}

#[derive(Debug, Clone)]
pub struct TimeSpec {
    pub field: Field,
    pub format: TimeFormat,
    pub timezone: chrono_tz::Tz,
}

/// One part of the dedup key: an event field, by its output name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyPart {
    DatasetId,
    Channel,
    EventName,
    EventTime,
    EventId,
    User(UserField),
    Custom(String),
}

impl KeyPart {
    pub fn name(&self) -> &str {
        match self {
            KeyPart::DatasetId => "dataset_id",
            KeyPart::Channel => "channel",
            KeyPart::EventName => "event_name",
            KeyPart::EventTime => "event_time",
            KeyPart::EventId => "event_id",
            KeyPart::User(u) => u.name(),
            KeyPart::Custom(n) => n,
        }
    }
}

/// Limited Data Use: `data_processing_options` with its country and state, as Meta takes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ldu {
    /// `[LDU]`, or `[]` to say explicitly that none applies.
    pub options: Vec<String>,
    pub country: Option<i64>,
    pub state: Option<i64>,
}

/// The checked, resolved mapping. Immutable; shared by every worker.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The file this plan came from (for messages).
    pub file: PathBuf,
    /// Input columns the plan reads, in the order readers must project them.
    pub columns: Vec<String>,
    pub dataset_id: DatasetSource,
    pub partner_agent: Option<String>,
    pub channel: Field,
    pub event_name: Field,
    pub allow_custom_event_names: bool,
    pub event_time: TimeSpec,
    pub event_id: Option<Field>,
    pub user_data: Vec<(UserField, Field)>,
    pub custom_data: Vec<Field>,
    pub opt_out: Option<Field>,
    pub data_processing_options: Option<Ldu>,
    pub dedup_key: Vec<KeyPart>,
    /// Where each projected column is first used, to point at it when the input lacks it.
    pub column_locations: Vec<(u64, u64, String)>,
    /// What compiled but looks like a mistake (printed on stderr before any row is read).
    pub warnings: Vec<MappingError>,
}

impl Plan {
    /// The dedup key's parts as a reason names them: `event_id`, `channel+ctwa_clid+...`.
    pub fn key_description(&self) -> String {
        let names: Vec<&str> = self.dedup_key.iter().map(KeyPart::name).collect();
        names.join("+")
    }

    /// Reads and compiles a mapping file. Environment variables are read through `env`; with
    /// `strict`, what would be a warning is an error.
    pub fn load(
        path: &Path,
        env: &dyn Fn(&str) -> Option<String>,
        strict: bool,
    ) -> Result<Plan, MappingError> {
        let text = std::fs::read_to_string(path).map_err(|e| MappingError {
            file: path.to_path_buf(),
            line: 0,
            column: 0,
            key: String::new(),
            message: format!("cannot read the mapping file: {e}"),
            hint: Some(
                "`--mapping` names the YAML file that maps the export's columns (docs/mapping.md)"
                    .into(),
            ),
        })?;
        if let Some(at) = text.find('\0') {
            let line = text[..at].matches('\n').count() + 1;
            let column = at - text[..at].rfind('\n').map_or(0, |n| n + 1) + 1;
            return Err(MappingError {
                file: path.to_path_buf(),
                line: line as u64,
                column: column as u64,
                key: String::new(),
                message: "is not a text file: it holds a NUL byte".into(),
                hint: Some("a mapping is YAML text; see docs/mapping.md".into()),
            });
        }
        let plan = Plan::compile(path, &text, env)?;
        match plan.warnings.first() {
            Some(w) if strict => Err(w.clone()),
            _ => Ok(plan),
        }
    }

    /// Compiles mapping text (`path` names it in messages).
    pub fn compile(
        path: &Path,
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Plan, MappingError> {
        let raw: raw::Mapping =
            serde_saphyr::from_str(text).map_err(|e| MappingError::from_yaml(path, &e))?;
        compile::compile(path, raw, env)
    }

    /// The field whose constant value is `secret`, if any (an environment variable a mapping
    /// reads may hold the token under another name).
    pub fn holds(&self, secret: &str) -> Option<&str> {
        let dataset = match &self.dataset_id {
            DatasetSource::Field(f) => Some(f),
            DatasetSource::Auto => None,
        };
        let fields = [&self.channel, &self.event_name, &self.event_time.field]
            .into_iter()
            .chain(dataset)
            .chain(&self.event_id)
            .chain(self.user_data.iter().map(|(_, f)| f))
            .chain(&self.custom_data)
            .chain(&self.opt_out);
        fields
            .filter(|f| match &f.src {
                Src::Constant(c) => c == secret,
                Src::Column(_) => false,
            })
            .map(|f| f.name.as_str())
            .next()
    }

    /// The mapping error for an input that lacks some of the plan's columns.
    pub fn missing_columns_error(
        &self,
        input: &str,
        missing: &[String],
        found: &[String],
    ) -> MappingError {
        let first = missing
            .first()
            .and_then(|m| self.columns.iter().position(|c| c == m));
        let (line, column, key) = first
            .and_then(|i| self.column_locations.get(i).cloned())
            .unwrap_or((1, 1, String::new()));
        MappingError {
            file: self.file.clone(),
            line,
            column,
            key,
            message: format!(
                "column{} {} not in the header of `{input}`",
                if missing.len() > 1 { "s" } else { "" },
                missing
                    .iter()
                    .map(|m| format!("`{m}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            hint: Some(format!(
                "the header has {}",
                found
                    .iter()
                    .map(|m| format!("`{m}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }
}

#[cfg(test)]
mod tests;

/// Test fixtures other modules' tests share.
#[cfg(test)]
pub mod tests_support {
    pub use super::tests::ISSUE_EXAMPLE;
}
