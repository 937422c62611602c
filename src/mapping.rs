//! The mapping: a YAML file that says how an export's columns become Conversions API events.
//!
//! Two stages (style rule 2): [`raw`] mirrors the YAML with serde (`deny_unknown_fields`, every
//! value wrapped in `Spanned` so later checks can still point at `file:line:column`), then
//! [`Plan::compile`] resolves it into a checked, immutable [`Plan`]: constants and environment
//! variables resolved, value maps built, time formats parsed, the columns to read listed once.
//! No row is read before a `Plan` exists. Every key is documented in `docs/mapping.md`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_saphyr::{Location, Spanned};

use crate::event::{PiiKind, UserField};

/// A problem with the mapping file. Fatal for the run (exit 2), reported before any row is read.
#[derive(Debug, thiserror::Error)]
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

/// The serde mirror of the YAML file. Field names are the public contract.
pub mod raw {
    use std::collections::BTreeMap;

    use serde::Deserialize;
    use serde_saphyr::Spanned;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Mapping {
        pub dataset_id: Spanned<Value>,
        #[serde(default)]
        pub partner_agent: Option<Spanned<String>>,
        pub channel: Spanned<Value>,
        pub event_name: Spanned<Value>,
        #[serde(default)]
        pub allow_custom_event_names: bool,
        pub event_time: Spanned<Value>,
        #[serde(default)]
        pub event_id: Option<Spanned<Value>>,
        #[serde(default)]
        pub user_data: Ordered<Spanned<Value>>,
        #[serde(default)]
        pub custom_data: Ordered<Spanned<Value>>,
        #[serde(default)]
        pub opt_out: Option<Spanned<Value>>,
        #[serde(default)]
        pub data_processing_options: Option<Spanned<Vec<String>>>,
        #[serde(default)]
        pub data_processing_options_country: Option<Spanned<i64>>,
        #[serde(default)]
        pub data_processing_options_state: Option<Spanned<i64>>,
        #[serde(default)]
        pub dedup: Option<Dedup>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Dedup {
        pub key: Spanned<Vec<String>>,
    }

    /// A YAML mapping kept in file order (so events list fields as the mapping does); a key
    /// given twice is an error rather than a silent overwrite.
    #[derive(Debug)]
    pub struct Ordered<V>(pub Vec<(String, V)>);

    impl<V> Default for Ordered<V> {
        fn default() -> Self {
            Ordered(Vec::new())
        }
    }

    impl<'de, V: Deserialize<'de>> Deserialize<'de> for Ordered<V> {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct Vis<V>(std::marker::PhantomData<V>);
            impl<'de, V: Deserialize<'de>> serde::de::Visitor<'de> for Vis<V> {
                type Value = Ordered<V>;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("a table of fields")
                }
                fn visit_map<A: serde::de::MapAccess<'de>>(
                    self,
                    mut map: A,
                ) -> Result<Ordered<V>, A::Error> {
                    let mut out: Vec<(String, V)> = Vec::new();
                    while let Some((k, v)) = map.next_entry::<String, V>()? {
                        if out.iter().any(|(x, _)| *x == k) {
                            return Err(serde::de::Error::custom(format!("`{k}` is given twice")));
                        }
                        out.push((k, v));
                    }
                    Ok(Ordered(out))
                }
            }
            d.deserialize_map(Vis(std::marker::PhantomData))
        }
    }

    /// A value source: a scalar constant (`whatsapp`, `"123"`, `12.5`, `true`) or a table.
    #[derive(Debug, Clone)]
    pub enum Value {
        Constant(String),
        Spec(Box<Spec>),
    }

    #[derive(Debug, Clone, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Spec {
        /// Read this column of the input.
        pub column: Option<String>,
        /// A constant (same as writing the scalar directly).
        pub constant: Option<Scalar>,
        /// Read this environment variable once at start.
        pub env: Option<String>,
        /// Used when the cell is empty.
        pub default: Option<Scalar>,
        /// Translate cell values (exact match after trimming).
        pub values: Option<BTreeMap<String, Scalar>>,
        /// Keep values that have no entry in `values` instead of rejecting the row.
        #[serde(default)]
        pub passthrough: bool,
        /// string | number | integer | bool | list | json
        #[serde(rename = "type")]
        pub ty: Option<String>,
        /// sha256 | none (PII fields only; default sha256 for them)
        pub hash: Option<String>,
        /// `ph` only: calling code for numbers written without `+`/`00`.
        pub country_code: Option<Scalar>,
        /// Time parsing (event_time only): unix | unix_ms | rfc3339 | strftime pattern.
        pub format: Option<String>,
        /// Zone for times without an offset: IANA name or UTC.
        pub timezone: Option<String>,
    }

    /// A YAML scalar kept as text (numbers and booleans are written back as they were).
    #[derive(Debug, Clone)]
    pub struct Scalar(pub String);

    impl<'de> Deserialize<'de> for Scalar {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(ScalarVisitor).map(Scalar)
        }
    }

    struct ScalarVisitor;

    impl<'de> serde::de::Visitor<'de> for ScalarVisitor {
        type Value = String;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a string, number or boolean")
        }
        fn visit_str<E>(self, v: &str) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_string<E>(self, v: String) -> Result<String, E> {
            Ok(v)
        }
        fn visit_i64<E>(self, v: i64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_u64<E>(self, v: u64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_f64<E>(self, v: f64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_bool<E>(self, v: bool) -> Result<String, E> {
            Ok(v.to_string())
        }
    }

    impl<'de> Deserialize<'de> for Value {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> serde::de::Visitor<'de> for V {
                type Value = Value;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("a constant, or a table such as `{column: NAME}`")
                }
                fn visit_str<E>(self, v: &str) -> Result<Value, E> {
                    Ok(Value::Constant(v.to_string()))
                }
                fn visit_string<E>(self, v: String) -> Result<Value, E> {
                    Ok(Value::Constant(v))
                }
                fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
                    Ok(Value::Constant(v.to_string()))
                }
                fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
                    Ok(Value::Constant(v.to_string()))
                }
                fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
                    Ok(Value::Constant(v.to_string()))
                }
                fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
                    Ok(Value::Constant(v.to_string()))
                }
                fn visit_map<A: serde::de::MapAccess<'de>>(
                    self,
                    map: A,
                ) -> Result<Value, A::Error> {
                    Spec::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                        .map(|s| Value::Spec(Box::new(s)))
                }
            }
            d.deserialize_any(V)
        }
    }
}

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

/// The checked, resolved mapping. Immutable; shared by every worker.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The file this plan came from (for messages).
    pub file: PathBuf,
    /// Input columns the plan reads, in the order readers must project them.
    pub columns: Vec<String>,
    pub dataset_id: Field,
    pub partner_agent: Option<String>,
    pub channel: Field,
    pub event_name: Field,
    pub allow_custom_event_names: bool,
    pub event_time: TimeSpec,
    pub event_id: Option<Field>,
    pub user_data: Vec<(UserField, Field)>,
    pub custom_data: Vec<Field>,
    pub opt_out: Option<Field>,
    pub data_processing_options: Option<(Vec<String>, Option<i64>, Option<i64>)>,
    pub dedup_key: Vec<KeyPart>,
    /// Where each projected column is first used, to point at it when the input lacks it.
    pub column_locations: Vec<(u64, u64, String)>,
}

/// Custom-data fields whose type is not a string by default.
fn custom_default_type(name: &str) -> ValueType {
    match name {
        "value" | "predicted_ltv" | "net_revenue" => ValueType::Number,
        "num_items" => ValueType::Integer,
        "content_ids" => ValueType::List,
        "contents" => ValueType::Json,
        _ => ValueType::String,
    }
}

struct Compiler<'a> {
    file: &'a Path,
    columns: Vec<String>,
    column_locations: Vec<(u64, u64, String)>,
    env: &'a dyn Fn(&str) -> Option<String>,
}

impl Compiler<'_> {
    fn err(&self, at: Location, key: &str, message: String, hint: Option<String>) -> MappingError {
        MappingError {
            file: self.file.to_path_buf(),
            line: at.line(),
            column: at.column(),
            key: key.to_string(),
            message,
            hint,
        }
    }

    fn column_slot(&mut self, name: &str, at: Location, key: &str) -> usize {
        if let Some(i) = self.columns.iter().position(|c| c == name) {
            return i;
        }
        self.columns.push(name.to_string());
        self.column_locations
            .push((at.line(), at.column(), key.to_string()));
        self.columns.len() - 1
    }

    /// Resolves one value source. `kind` limits which table keys make sense for this field.
    fn field(
        &mut self,
        key: &str,
        name: &str,
        v: &Spanned<raw::Value>,
        default_ty: ValueType,
    ) -> Result<Field, MappingError> {
        let at = v.referenced;
        let spec = match &v.value {
            raw::Value::Constant(c) => {
                return Ok(Field {
                    name: name.to_string(),
                    src: Src::Constant(c.clone()),
                    default: None,
                    values: None,
                    passthrough: false,
                    ty: default_ty,
                    hash: None,
                    country_code: None,
                    in_key: false,
                });
            }
            raw::Value::Spec(s) => s,
        };
        let sources = [
            spec.column.is_some(),
            spec.constant.is_some(),
            spec.env.is_some(),
        ];
        let n = sources.iter().filter(|b| **b).count();
        if n != 1 {
            return Err(self.err(
                at,
                key,
                if n == 0 {
                    "says nowhere where the value comes from".into()
                } else {
                    "has more than one source".into()
                },
                Some(
                    "give exactly one of `column: NAME`, `constant: VALUE` or `env: VARIABLE`"
                        .into(),
                ),
            ));
        }
        let src = if let Some(c) = &spec.column {
            if c.trim().is_empty() {
                return Err(self.err(
                    at,
                    &format!("{key}.column"),
                    "is empty".into(),
                    Some("name a column of the input header, e.g. `column: email`".into()),
                ));
            }
            Src::Column(self.column_slot(c.trim(), at, key))
        } else if let Some(c) = &spec.constant {
            Src::Constant(c.0.clone())
        } else {
            let var = spec.env.as_deref().unwrap_or_default();
            match (self.env)(var) {
                Some(val) if !val.trim().is_empty() => Src::Constant(val.trim().to_string()),
                _ => {
                    return Err(self.err(
                        at,
                        &format!("{key}.env"),
                        format!("environment variable `{var}` is not set"),
                        Some(format!(
                            "export {var}=... before running, or use a constant"
                        )),
                    ));
                }
            }
        };
        let ty = match spec.ty.as_deref() {
            None => default_ty,
            Some("string") => ValueType::String,
            Some("number") => ValueType::Number,
            Some("integer") => ValueType::Integer,
            Some("bool") => ValueType::Bool,
            Some("list") => ValueType::List,
            Some("json") => ValueType::Json,
            Some(other) => {
                return Err(self.err(
                    at,
                    &format!("{key}.type"),
                    format!("unknown type `{other}`; expected one of `string`, `number`, `integer`, `bool`, `list`, `json`"),
                    None,
                ));
            }
        };
        let values = spec.values.as_ref().map(|m| {
            m.iter()
                .map(|(k, v)| (k.trim().to_string(), v.0.clone()))
                .collect::<BTreeMap<_, _>>()
        });
        if spec.passthrough && values.is_none() {
            return Err(self.err(
                at,
                &format!("{key}.passthrough"),
                "only makes sense with `values`".into(),
                None,
            ));
        }
        if spec.format.is_some() || spec.timezone.is_some() {
            return Err(self.err(
                at,
                key,
                "`format` and `timezone` belong to `event_time` only".into(),
                None,
            ));
        }
        if spec.hash.is_some() {
            return Err(self.err(
                at,
                &format!("{key}.hash"),
                "only `user_data` contact fields (em, ph, fn, ...) are hashed".into(),
                None,
            ));
        }
        if spec.country_code.is_some() {
            return Err(self.err(
                at,
                &format!("{key}.country_code"),
                "only `user_data.ph` takes a country code".into(),
                None,
            ));
        }
        Ok(Field {
            name: name.to_string(),
            src,
            default: spec.default.as_ref().map(|d| d.0.clone()),
            values,
            passthrough: spec.passthrough,
            ty,
            hash: None,
            country_code: None,
            in_key: false,
        })
    }

    fn strip_time_keys(
        v: &Spanned<raw::Value>,
    ) -> (Spanned<raw::Value>, Option<String>, Option<String>) {
        let mut v2 = v.clone();
        let (mut f, mut tz) = (None, None);
        if let raw::Value::Spec(s) = &mut v2.value {
            f = s.format.take();
            tz = s.timezone.take();
        }
        (v2, f, tz)
    }
}

fn location_of_error(e: &serde_saphyr::Error) -> (u64, u64) {
    e.location()
        .map(|l| (l.line(), l.column()))
        .unwrap_or((1, 1))
}

impl Plan {
    /// Reads and compiles a mapping file. Environment variables are read through `env`.
    pub fn load(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Plan, MappingError> {
        let text = std::fs::read_to_string(path).map_err(|e| MappingError {
            file: path.to_path_buf(),
            line: 0,
            column: 0,
            key: String::new(),
            message: format!("cannot read the mapping: {e}"),
            hint: None,
        })?;
        Plan::compile(path, &text, env)
    }

    pub fn compile(
        path: &Path,
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Plan, MappingError> {
        let raw: raw::Mapping = serde_saphyr::from_str(text).map_err(|e| {
            let (line, column) = location_of_error(&e);
            let msg = tidy_yaml_message(&e.without_snippet().to_string());
            let hint = if msg.contains("unknown key") {
                Some(match did_you_mean(&msg) {
                    Some(k) => format!("did you mean `{k}`? (docs/mapping.md lists every key)"),
                    None => "see docs/mapping.md for every key; keys are snake_case".to_string(),
                })
            } else if msg.contains("missing field") {
                Some(
                    "`dataset_id`, `channel`, `event_name` and `event_time` are required"
                        .to_string(),
                )
            } else {
                None
            };
            MappingError {
                file: path.to_path_buf(),
                line,
                column,
                key: String::new(),
                message: msg,
                hint,
            }
        })?;
        let mut c = Compiler {
            file: path,
            columns: Vec::new(),
            column_locations: Vec::new(),
            env,
        };

        let dataset_id = c.field(
            "dataset_id",
            "dataset_id",
            &raw.dataset_id,
            ValueType::String,
        )?;
        if let Src::Constant(id) = &dataset_id.src
            && !is_graph_id(id)
        {
            return Err(c.err(
                raw.dataset_id.referenced,
                "dataset_id",
                format!(
                    "`{id}` is not a dataset id; expected digits, e.g. `dataset_id: \"1234567890\"`"
                ),
                Some("`msgcapi dataset --page-id ID` prints the dataset id of a page".into()),
            ));
        }
        let channel = c.field("channel", "channel", &raw.channel, ValueType::String)?;
        check_constant_in(
            &c,
            &raw.channel,
            &channel,
            "channel",
            &["whatsapp", "messenger", "instagram"],
        )?;
        let event_name = c.field(
            "event_name",
            "event_name",
            &raw.event_name,
            ValueType::String,
        )?;
        if !raw.allow_custom_event_names {
            check_constant_in(
                &c,
                &raw.event_name,
                &event_name,
                "event_name",
                crate::event::EVENT_NAMES,
            )?;
        }

        let (et, format, tz) = Compiler::strip_time_keys(&raw.event_time);
        let time_field = c.field("event_time", "event_time", &et, ValueType::Integer)?;
        let format = match format.as_deref() {
            None | Some("unix") => TimeFormat::Unix,
            Some("unix_ms") => TimeFormat::UnixMs,
            Some("rfc3339") | Some("iso8601") => TimeFormat::Rfc3339,
            Some(p) if p.contains('%') => {
                check_strftime(p).map_err(|m| {
                    c.err(
                        raw.event_time.referenced,
                        "event_time.format",
                        m,
                        Some("e.g. `format: \"%Y-%m-%d %H:%M:%S\"`".into()),
                    )
                })?;
                TimeFormat::Pattern(p.to_string())
            }
            Some(other) => {
                return Err(c.err(
                    raw.event_time.referenced,
                    "event_time.format",
                    format!("unknown time format `{other}`; expected one of `unix`, `unix_ms`, `rfc3339`, or a strftime pattern such as `%Y-%m-%d %H:%M:%S`"),
                    None,
                ));
            }
        };
        let timezone = match tz.as_deref() {
            None => chrono_tz::UTC,
            Some(name) => name.parse::<chrono_tz::Tz>().map_err(|_| {
                c.err(
                    raw.event_time.referenced,
                    "event_time.timezone",
                    format!("unknown time zone `{name}`"),
                    Some(
                        "use an IANA name such as `UTC`, `America/Sao_Paulo` or `Asia/Kolkata`"
                            .into(),
                    ),
                )
            })?,
        };
        let event_time = TimeSpec {
            field: time_field,
            format,
            timezone,
        };

        let event_id = match &raw.event_id {
            Some(v) => Some(c.field("event_id", "event_id", v, ValueType::String)?),
            None => None,
        };

        let mut user_data = Vec::new();
        for (k, v) in &raw.user_data.0 {
            let key = format!("user_data.{k}");
            let Some(uf) = UserField::from_name(k) else {
                return Err(c.err(
                    v.referenced,
                    &key,
                    format!(
                        "unknown user_data field `{k}`; expected one of {}",
                        UserField::ALL
                            .iter()
                            .map(|f| format!("`{}`", f.name()))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    None,
                ));
            };
            let (hash_opt, country_opt) = match &v.value {
                raw::Value::Spec(s) => (s.hash.clone(), s.country_code.clone()),
                raw::Value::Constant(_) => (None, None),
            };
            let mut v2 = v.clone();
            if let raw::Value::Spec(s) = &mut v2.value {
                s.hash = None;
                s.country_code = None;
            }
            let mut f = c.field(&key, k, &v2, ValueType::String)?;
            f.hash = match (uf.pii(), hash_opt.as_deref()) {
                (None, None) => None,
                (None, Some(_)) => {
                    return Err(c.err(
                        v.referenced,
                        &format!("{key}.hash"),
                        format!(
                            "`{k}` is a channel id and is never hashed (Meta matches it as is)"
                        ),
                        Some("remove `hash:` from this field".into()),
                    ));
                }
                (Some(kind), None | Some("sha256")) => Some(kind),
                (Some(_), Some("none")) => None,
                (Some(_), Some(other)) => {
                    return Err(c.err(
                        v.referenced,
                        &format!("{key}.hash"),
                        format!("unknown hash `{other}`; expected `sha256` or `none`"),
                        None,
                    ));
                }
            };
            if let Some(cc) = country_opt {
                let key = format!("{key}.country_code");
                if uf != UserField::Ph {
                    return Err(c.err(
                        v.referenced,
                        &key,
                        "only `user_data.ph` takes a country code".into(),
                        None,
                    ));
                }
                if f.hash.is_none() {
                    return Err(c.err(
                        v.referenced,
                        &key,
                        "applies to numbers msgcapi normalizes; with `hash: none` the export already holds hashes".into(),
                        Some("remove `country_code`, or `hash: none`".into()),
                    ));
                }
                let code = cc.0.trim().trim_start_matches('+');
                f.country_code = match code.parse::<u16>() {
                    Ok(n @ 1..=999) if code.bytes().all(|b| b.is_ascii_digit()) => Some(n),
                    _ => {
                        return Err(c.err(
                            v.referenced,
                            &key,
                            format!("`{}` is not a country calling code", cc.0),
                            Some(
                                "1 to 3 digits, e.g. `country_code: 1` (US) or `55` (Brazil)"
                                    .into(),
                            ),
                        ));
                    }
                };
            }
            user_data.push((uf, f));
        }

        let mut custom_data = Vec::new();
        for (k, v) in &raw.custom_data.0 {
            let f = c.field(&format!("custom_data.{k}"), k, v, custom_default_type(k))?;
            if k == "value" && !matches!(f.ty, ValueType::Number | ValueType::Integer) {
                return Err(c.err(
                    v.referenced,
                    "custom_data.value.type",
                    "must be `number` or `integer`: Meta requires value to be a number".into(),
                    Some("remove `type:` (number is the default for `value`)".into()),
                ));
            }
            custom_data.push(f);
        }
        let opt_out = match &raw.opt_out {
            Some(v) => Some(c.field("opt_out", "opt_out", v, ValueType::Bool)?),
            None => None,
        };

        let data_processing_options = match &raw.data_processing_options {
            None => {
                if let Some(x) = raw
                    .data_processing_options_country
                    .as_ref()
                    .or(raw.data_processing_options_state.as_ref())
                {
                    return Err(c.err(
                        x.referenced,
                        "data_processing_options_country",
                        "needs `data_processing_options: [LDU]`".into(),
                        None,
                    ));
                }
                None
            }
            Some(opts) => {
                for o in &opts.value {
                    if o != "LDU" {
                        return Err(c.err(
                            opts.referenced,
                            "data_processing_options",
                            format!("unknown option `{o}`; expected `[LDU]` or `[]`"),
                            None,
                        ));
                    }
                }
                let country = raw
                    .data_processing_options_country
                    .as_ref()
                    .map(|x| x.value);
                let state = raw.data_processing_options_state.as_ref().map(|x| x.value);
                let hint = || {
                    Some("California: `data_processing_options_country: 1` with `data_processing_options_state: 1000`; geolocate: 0 and 0".into())
                };
                match (country, state) {
                    (Some(_), None) => {
                        return Err(c.err(
                            opts.referenced,
                            "data_processing_options_state",
                            "is required when a country is given".into(),
                            hint(),
                        ));
                    }
                    (None, Some(_)) => {
                        return Err(c.err(
                            opts.referenced,
                            "data_processing_options_country",
                            "is required when a state is given".into(),
                            hint(),
                        ));
                    }
                    _ => {}
                }
                if let Some(x) = &raw.data_processing_options_country
                    && !matches!(x.value, 0 | 1)
                {
                    return Err(c.err(
                        x.referenced,
                        "data_processing_options_country",
                        format!("`{}` is not a country Meta knows for LDU; expected 1 (US) or 0 (geolocate)", x.value),
                        hint(),
                    ));
                }
                if let Some(x) = &raw.data_processing_options_state
                    && !matches!(x.value, 0 | 1000)
                {
                    return Err(c.err(
                        x.referenced,
                        "data_processing_options_state",
                        format!("`{}` is not a state Meta knows for LDU; expected 1000 (California) or 0 (geolocate)", x.value),
                        hint(),
                    ));
                }
                Some((opts.value.clone(), country, state))
            }
        };

        let dedup_key = match &raw.dedup {
            Some(d) => {
                if d.key.value.is_empty() {
                    return Err(c.err(
                        d.key.referenced,
                        "dedup.key",
                        "is empty".into(),
                        Some("e.g. `key: [event_id]`".into()),
                    ));
                }
                let mut parts = Vec::new();
                for name in &d.key.value {
                    let part = match name.as_str() {
                        "dataset_id" => KeyPart::DatasetId,
                        "channel" | "messaging_channel" => KeyPart::Channel,
                        "event_name" => KeyPart::EventName,
                        "event_time" => KeyPart::EventTime,
                        "event_id" if event_id.is_some() => KeyPart::EventId,
                        n if let Some((u, _)) = user_data.iter().find(|(u, _)| u.name() == n) => {
                            KeyPart::User(*u)
                        }
                        n if custom_data.iter().any(|f| f.name == n) => {
                            KeyPart::Custom(n.to_string())
                        }
                        n => {
                            return Err(c.err(
                                d.key.referenced,
                                "dedup.key",
                                format!("`{n}` is not a field of this mapping"),
                                Some("name event fields the mapping sets: `event_id`, `event_name`, `event_time`, `channel`, or a `user_data`/`custom_data` field".into()),
                            ));
                        }
                    };
                    parts.push(part);
                }
                parts
            }
            None if event_id.is_some() => vec![KeyPart::EventId],
            None => {
                let mut parts = vec![KeyPart::Channel];
                for (u, _) in &user_data {
                    if u.is_channel_id() {
                        parts.push(KeyPart::User(*u));
                    }
                }
                parts.extend([KeyPart::EventName, KeyPart::EventTime]);
                parts
            }
        };

        for (u, f) in &mut user_data {
            f.in_key = dedup_key.contains(&KeyPart::User(*u));
        }
        for f in &mut custom_data {
            f.in_key = dedup_key.contains(&KeyPart::Custom(f.name.clone()));
        }

        Ok(Plan {
            file: path.to_path_buf(),
            columns: c.columns,
            dataset_id,
            partner_agent: raw.partner_agent.map(|p| p.value),
            channel,
            event_name,
            allow_custom_event_names: raw.allow_custom_event_names,
            event_time,
            event_id,
            user_data,
            custom_data,
            opt_out,
            data_processing_options,
            dedup_key,
            column_locations: c.column_locations,
        })
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
fn edit_distance(a: &str, b: &str) -> usize {
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

/// Graph ids are decimal digits.
pub fn is_graph_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 32 && s.bytes().all(|b| b.is_ascii_digit())
}

/// A constant (or every `values` target) must be one of `allowed`.
fn check_constant_in(
    c: &Compiler<'_>,
    v: &Spanned<raw::Value>,
    f: &Field,
    key: &str,
    allowed: &[&str],
) -> Result<(), MappingError> {
    let expected = || {
        allowed
            .iter()
            .map(|a| format!("`{a}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let check = |val: &str, what: &str| {
        if allowed.contains(&val) {
            Ok(())
        } else {
            Err(c.err(
                v.referenced,
                key,
                format!(
                    "{what}`{val}` is not allowed; expected one of {}",
                    expected()
                ),
                None,
            ))
        }
    };
    if let Src::Constant(k) = &f.src {
        check(k, "")?;
    }
    if let Some(values) = &f.values {
        let mut targets: Vec<_> = values.values().collect();
        targets.sort();
        for t in targets {
            check(t, "value map target ")?;
        }
    }
    if let Some(d) = &f.default {
        check(d, "default ")?;
    }
    Ok(())
}

/// Rejects strftime patterns chrono cannot use, and patterns without a date.
fn check_strftime(p: &str) -> Result<(), String> {
    use chrono::format::{Item, StrftimeItems};
    if StrftimeItems::new(p).any(|i| matches!(i, Item::Error)) {
        return Err(format!("`{p}` is not a valid strftime pattern"));
    }
    if !(p.contains("%Y")
        || p.contains("%y")
        || p.contains("%F")
        || p.contains("%s")
        || p.contains("%D")
        || p.contains("%c"))
    {
        return Err(format!(
            "`{p}` has no year; a time without a date cannot be placed"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;

/// Test fixtures other modules' tests share.
#[cfg(test)]
pub mod tests_support {
    pub use super::tests::ISSUE_EXAMPLE;
}
