//! `raw::Mapping` → [`Plan`], one function per section of the mapping.
//!
//! The raw mapping and every field table are destructured, never read field by field: a key
//! added to `raw.rs` without a compile step here is a build error, not a key silently ignored.

use std::collections::BTreeMap;
use std::path::Path;

use serde_saphyr::{Location, Spanned};

use super::raw;
use super::{
    DatasetSource, Field, KeyPart, MappingError, Plan, Src, TimeFormat, TimeSpec, ValueType,
};
use crate::capi::{self, Channel, CustomKind, UserField};

pub(super) fn compile(
    path: &Path,
    raw: raw::Mapping,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Plan, MappingError> {
    let raw::Mapping {
        dataset_id,
        partner_agent,
        channel,
        event_name,
        allow_custom_event_names,
        event_time,
        event_id,
        user_data,
        custom_data,
        opt_out,
        data_processing_options,
        data_processing_options_country,
        data_processing_options_state,
        dedup,
    } = raw;
    let mut c = Compiler {
        file: path,
        columns: Vec::new(),
        column_locations: Vec::new(),
        env,
        warnings: Vec::new(),
    };
    let dataset_id = c.dataset_id(&dataset_id)?;
    let channel_at = channel.referenced;
    let channel = c.channel(&channel)?;
    let user_data_raw = user_data;
    let event_name = c.event_name(&event_name, allow_custom_event_names)?;
    let event_time = c.event_time(&event_time)?;
    let event_id = match &event_id {
        Some(v) => Some(c.plain("event_id", "event_id", v, ValueType::String)?),
        None => None,
    };
    let mut user_data = c.user_data(&user_data_raw)?;
    c.constant_channel_ids(&channel, channel_at, &user_data)?;
    let mut custom_data = c.custom_data(&custom_data)?;
    let opt_out = match &opt_out {
        Some(v) => Some(c.plain("opt_out", "opt_out", v, ValueType::Bool)?),
        None => None,
    };
    let data_processing_options = c.data_processing_options(
        data_processing_options.as_ref(),
        data_processing_options_country.as_ref(),
        data_processing_options_state.as_ref(),
    )?;
    let dedup_key = c.dedup_key(dedup.as_ref(), event_id.is_some(), &user_data, &custom_data)?;
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
        partner_agent: partner_agent.map(|p| p.value),
        channel,
        event_name,
        allow_custom_event_names,
        event_time,
        event_id,
        user_data,
        custom_data,
        opt_out,
        data_processing_options,
        dedup_key,
        column_locations: c.column_locations,
        warnings: c.warnings,
    })
}

struct Compiler<'a> {
    file: &'a Path,
    columns: Vec<String>,
    column_locations: Vec<(u64, u64, String)>,
    env: &'a dyn Fn(&str) -> Option<String>,
    warnings: Vec<MappingError>,
}

/// Which of the keys that only some fields take a field accepts.
#[derive(Clone, Copy, Default)]
struct Takes {
    /// `hash`, `country_code` (`user_data`).
    contact: bool,
    /// `format`, `timezone` (`event_time`).
    time: bool,
}

/// The keys of a field table beyond its source, when the field takes them.
#[derive(Default)]
struct Extra {
    hash: Option<String>,
    country_code: Option<raw::Scalar>,
    format: Option<String>,
    timezone: Option<String>,
}

impl Compiler<'_> {
    fn err(&self, at: Location, key: &str, message: String, hint: Option<String>) -> MappingError {
        MappingError::at(self.file, at, key, message, hint)
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

    /// A field that takes none of the special keys.
    fn plain(
        &mut self,
        key: &str,
        name: &str,
        v: &Spanned<raw::Value>,
        default_ty: ValueType,
    ) -> Result<Field, MappingError> {
        self.field(key, name, v, default_ty, Takes::default())
            .map(|(f, _)| f)
    }

    /// Resolves one value source: where it comes from, default, value map, type. Keys `takes`
    /// allows come back in [`Extra`]; any other special key is an error.
    fn field(
        &mut self,
        key: &str,
        name: &str,
        v: &Spanned<raw::Value>,
        default_ty: ValueType,
        takes: Takes,
    ) -> Result<(Field, Extra), MappingError> {
        let at = v.referenced;
        let spec = match &v.value {
            raw::Value::Constant(c) => {
                let f = Field {
                    name: name.to_string(),
                    src: Src::Constant(c.clone()),
                    default: None,
                    values: None,
                    passthrough: false,
                    ty: default_ty,
                    hash: None,
                    country_code: None,
                    in_key: false,
                    decimal_comma: false,
                };
                return Ok((f, Extra::default()));
            }
            raw::Value::Spec(s) => s,
        };
        let raw::Spec {
            column,
            constant,
            env,
            default,
            values,
            passthrough,
            ty,
            hash,
            country_code,
            format,
            timezone,
            decimal,
        } = spec.as_ref();
        let src = self.source(key, at, column, constant, env)?;
        let ty = match ty.as_deref() {
            None => default_ty,
            Some(t) => value_type(t).ok_or_else(|| {
                self.err(
                    at,
                    &format!("{key}.type"),
                    format!("unknown type `{t}`; expected one of `string`, `number`, `integer`, `bool`, `list`, `json`"),
                    None,
                )
            })?,
        };
        let values = values.as_ref().map(|m| {
            m.iter()
                .map(|(k, v)| (k.trim().to_string(), v.0.clone()))
                .collect::<BTreeMap<_, _>>()
        });
        if *passthrough && values.is_none() {
            return Err(self.err(
                at,
                &format!("{key}.passthrough"),
                "only makes sense with `values`".into(),
                None,
            ));
        }
        if !takes.time && (format.is_some() || timezone.is_some()) {
            return Err(self.err(
                at,
                key,
                "`format` and `timezone` belong to `event_time` only".into(),
                None,
            ));
        }
        if !takes.contact && hash.is_some() {
            return Err(self.err(
                at,
                &format!("{key}.hash"),
                "only `user_data` contact fields (em, ph, fn, ...) are hashed".into(),
                None,
            ));
        }
        if !takes.contact && country_code.is_some() {
            return Err(self.err(
                at,
                &format!("{key}.country_code"),
                "only `user_data.ph` takes a country code".into(),
                None,
            ));
        }
        let decimal_comma = match decimal.as_deref() {
            None | Some(".") => false,
            Some(",") if matches!(ty, ValueType::Number) => true,
            Some(",") => {
                return Err(self.err(
                    at,
                    &format!("{key}.decimal"),
                    "applies to numbers only (`type: number`)".into(),
                    None,
                ));
            }
            Some(other) => {
                return Err(self.err(
                    at,
                    &format!("{key}.decimal"),
                    format!("`{other}` is not a decimal separator; expected `.` or `,`"),
                    Some("`decimal: \",\"` reads `1.299,90` and `129,90`".into()),
                ));
            }
        };
        let field = Field {
            name: name.to_string(),
            src,
            default: default.as_ref().map(|d| d.0.clone()),
            values,
            passthrough: *passthrough,
            ty,
            hash: None,
            country_code: None,
            in_key: false,
            decimal_comma,
        };
        let extra = Extra {
            hash: hash.clone(),
            country_code: country_code.clone(),
            format: format.clone(),
            timezone: timezone.clone(),
        };
        Ok((field, extra))
    }

    /// Where a field table's value comes from: exactly one of `column`, `constant`, `env`.
    fn source(
        &mut self,
        key: &str,
        at: Location,
        column: &Option<String>,
        constant: &Option<raw::Scalar>,
        env: &Option<String>,
    ) -> Result<Src, MappingError> {
        let n = [column.is_some(), constant.is_some(), env.is_some()]
            .iter()
            .filter(|b| **b)
            .count();
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
        if let Some(c) = column {
            if c.trim().is_empty() {
                return Err(self.err(
                    at,
                    &format!("{key}.column"),
                    "is empty".into(),
                    Some("name a column of the input header, e.g. `column: email`".into()),
                ));
            }
            return Ok(Src::Column(self.column_slot(c.trim(), at, key)));
        }
        if let Some(c) = constant {
            return Ok(Src::Constant(c.0.clone()));
        }
        let var = env.as_deref().unwrap_or_default();
        if SECRETS.contains(&var) {
            return Err(self.err(
                at,
                &format!("{key}.env"),
                format!("`{var}` holds a secret; a mapping cannot read it"),
                Some(
                    "secrets never go into events, payload files or messages: map another variable"
                        .into(),
                ),
            ));
        }
        match (self.env)(var) {
            Some(val) if !val.trim().is_empty() => Ok(Src::Constant(val.trim().to_string())),
            _ => Err(self.err(
                at,
                &format!("{key}.env"),
                format!("environment variable `{var}` is not set"),
                Some(format!(
                    "export {var}=... before running, or use a constant"
                )),
            )),
        }
    }

    fn dataset_id(&mut self, v: &Spanned<raw::Value>) -> Result<DatasetSource, MappingError> {
        if let raw::Value::Constant(c) = &v.value
            && c == "auto"
        {
            return Ok(DatasetSource::Auto);
        }
        let f = self.plain("dataset_id", "dataset_id", v, ValueType::String)?;
        if let Src::Constant(id) = &f.src
            && !capi::is_graph_id(id)
        {
            return Err(self.err(
                v.referenced,
                "dataset_id",
                format!(
                    "`{id}` is not a dataset id; expected digits, e.g. `dataset_id: \"1234567890\"`, or `auto`"
                ),
                Some("`auto` finds each row's dataset from its business account; `msgcapi dataset --page-id ID` prints the dataset id of a page".into()),
            ));
        }
        Ok(DatasetSource::Field(f))
    }

    fn channel(&mut self, v: &Spanned<raw::Value>) -> Result<Field, MappingError> {
        let f = self.plain("channel", "channel", v, ValueType::String)?;
        self.check_constant_in(v, &f, "channel", &Channel::NAMES)?;
        Ok(f)
    }

    fn event_name(
        &mut self,
        v: &Spanned<raw::Value>,
        allow_custom: bool,
    ) -> Result<Field, MappingError> {
        let f = self.plain("event_name", "event_name", v, ValueType::String)?;
        if !allow_custom {
            self.check_constant_in(v, &f, "event_name", capi::EVENT_NAMES)?;
        }
        Ok(f)
    }

    fn event_time(&mut self, v: &Spanned<raw::Value>) -> Result<TimeSpec, MappingError> {
        let takes = Takes {
            time: true,
            ..Takes::default()
        };
        let (field, extra) =
            self.field("event_time", "event_time", v, ValueType::Integer, takes)?;
        let at = v.referenced;
        let format = match extra.format.as_deref() {
            None | Some("unix") => TimeFormat::Unix,
            Some("unix_ms") => TimeFormat::UnixMs,
            Some("rfc3339") | Some("iso8601") => TimeFormat::Rfc3339,
            Some(p) if p.contains('%') => {
                check_strftime(p).map_err(|m| {
                    self.err(
                        at,
                        "event_time.format",
                        m,
                        Some("e.g. `format: \"%Y-%m-%d %H:%M:%S\"`".into()),
                    )
                })?;
                TimeFormat::Pattern(p.to_string())
            }
            Some(other) => {
                return Err(self.err(
                    at,
                    "event_time.format",
                    format!("unknown time format `{other}`; expected one of `unix`, `unix_ms`, `rfc3339`, or a strftime pattern such as `%Y-%m-%d %H:%M:%S`"),
                    None,
                ));
            }
        };
        let timezone = match extra.timezone.as_deref() {
            None => chrono_tz::UTC,
            Some(name) => name.parse::<chrono_tz::Tz>().map_err(|_| {
                self.err(
                    at,
                    "event_time.timezone",
                    format!("unknown time zone `{name}`"),
                    Some(
                        "use an IANA name such as `UTC`, `America/Sao_Paulo` or `Asia/Kolkata`"
                            .into(),
                    ),
                )
            })?,
        };
        Ok(TimeSpec {
            field,
            format,
            timezone,
        })
    }

    fn user_data(
        &mut self,
        fields: &raw::Ordered<Spanned<raw::Value>>,
    ) -> Result<Vec<(UserField, Field)>, MappingError> {
        let mut out = Vec::new();
        for (k, v) in &fields.0 {
            let key = format!("user_data.{k}");
            let Some(uf) = UserField::from_name(k) else {
                return Err(self.err(
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
            let takes = Takes {
                contact: true,
                ..Takes::default()
            };
            let (mut f, extra) = self.field(&key, k, v, ValueType::String, takes)?;
            f.hash = match (uf.pii(), extra.hash.as_deref()) {
                (None, None) => None,
                (None, Some(_)) => {
                    return Err(self.err(
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
                    return Err(self.err(
                        v.referenced,
                        &format!("{key}.hash"),
                        format!("unknown hash `{other}`; expected `sha256` or `none`"),
                        None,
                    ));
                }
            };
            if let Some(cc) = &extra.country_code {
                f.country_code = Some(self.country_code(v, &key, uf, &f, cc)?);
            }
            out.push((uf, f));
        }
        Ok(out)
    }

    /// A channel given as a constant needs its ids mapped, or every row would be invalid: that
    /// is a mistake of the mapping, reported before any row is read. (A channel from a column
    /// keeps the row-level check: other rows may be other channels.)
    fn constant_channel_ids(
        &self,
        channel: &Field,
        at: Location,
        user_data: &[(UserField, Field)],
    ) -> Result<(), MappingError> {
        let Src::Constant(name) = &channel.src else {
            return Ok(());
        };
        let Some(ch) = Channel::parse(name) else {
            return Ok(());
        };
        let missing: Vec<&str> = ch
            .required_ids()
            .into_iter()
            .filter(|id| !user_data.iter().any(|(u, _)| u == id))
            .map(UserField::name)
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let list = missing
            .iter()
            .map(|m| format!("`user_data.{m}`"))
            .collect::<Vec<_>>()
            .join(" and ");
        Err(self.err(
            at,
            "channel",
            format!("is always `{name}`, whose events need {list}, which the mapping does not set"),
            Some(format!(
                "add {}, e.g. `{}: {{column: NAME}}`",
                list,
                missing.first().copied().unwrap_or_default()
            )),
        ))
    }

    /// `user_data.ph.country_code`: a calling code for numbers written without one.
    fn country_code(
        &self,
        v: &Spanned<raw::Value>,
        field_key: &str,
        uf: UserField,
        f: &Field,
        cc: &raw::Scalar,
    ) -> Result<u16, MappingError> {
        let key = format!("{field_key}.country_code");
        if uf != UserField::Ph {
            return Err(self.err(
                v.referenced,
                &key,
                "only `user_data.ph` takes a country code".into(),
                None,
            ));
        }
        if f.hash.is_none() {
            return Err(self.err(
                v.referenced,
                &key,
                "applies to numbers msgcapi normalizes; with `hash: none` the export already holds hashes".into(),
                Some("remove `country_code`, or `hash: none`".into()),
            ));
        }
        let code = cc.0.trim().trim_start_matches('+');
        match code.parse::<u16>() {
            Ok(n @ 1..=999) if code.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
            _ => Err(self.err(
                v.referenced,
                &key,
                format!("`{}` is not a country calling code", cc.0),
                Some("1 to 3 digits, e.g. `country_code: 1` (US) or `55` (Brazil)".into()),
            )),
        }
    }

    fn custom_data(
        &mut self,
        fields: &raw::Ordered<Spanned<raw::Value>>,
    ) -> Result<Vec<Field>, MappingError> {
        let mut out = Vec::new();
        for (k, v) in &fields.0 {
            if let Some(known) = near_miss(k) {
                let w = self.err(
                    v.referenced,
                    &format!("custom_data.{k}"),
                    format!("did you mean `{known}`? `{k}` is sent as a custom field of its own"),
                    Some(format!(
                        "rename it to `{known}`, or keep it (pass `--strict-keys` to make this an error)"
                    )),
                );
                self.warnings.push(w);
            }
            let default_ty = match capi::custom_field_kind(k) {
                CustomKind::String => ValueType::String,
                CustomKind::Number => ValueType::Number,
                CustomKind::Integer => ValueType::Integer,
                CustomKind::List => ValueType::List,
                CustomKind::Json => ValueType::Json,
            };
            let f = self.plain(&format!("custom_data.{k}"), k, v, default_ty)?;
            if k == "value" && !matches!(f.ty, ValueType::Number | ValueType::Integer) {
                return Err(self.err(
                    v.referenced,
                    "custom_data.value.type",
                    "must be `number` or `integer`: Meta requires value to be a number".into(),
                    Some("remove `type:` (number is the default for `value`)".into()),
                ));
            }
            out.push(f);
        }
        Ok(out)
    }

    /// LDU: `[LDU]` with a country and a state Meta knows, given together (capi-spec.md §2).
    fn data_processing_options(
        &self,
        opts: Option<&Spanned<Vec<String>>>,
        country: Option<&Spanned<i64>>,
        state: Option<&Spanned<i64>>,
    ) -> Result<Option<super::Ldu>, MappingError> {
        let Some(opts) = opts else {
            if let Some(x) = country.or(state) {
                return Err(self.err(
                    x.referenced,
                    "data_processing_options_country",
                    "needs `data_processing_options: [LDU]`".into(),
                    None,
                ));
            }
            return Ok(None);
        };
        for o in &opts.value {
            if o != "LDU" {
                return Err(self.err(
                    opts.referenced,
                    "data_processing_options",
                    format!("unknown option `{o}`; expected `[LDU]` or `[]`"),
                    None,
                ));
            }
        }
        let hint = || {
            Some("California: `data_processing_options_country: 1` with `data_processing_options_state: 1000`; geolocate: 0 and 0".into())
        };
        match (country, state) {
            (Some(_), None) => {
                return Err(self.err(
                    opts.referenced,
                    "data_processing_options_state",
                    "is required when a country is given".into(),
                    hint(),
                ));
            }
            (None, Some(_)) => {
                return Err(self.err(
                    opts.referenced,
                    "data_processing_options_country",
                    "is required when a state is given".into(),
                    hint(),
                ));
            }
            _ => {}
        }
        if let Some(x) = country
            && !matches!(x.value, 0 | 1)
        {
            return Err(self.err(
                x.referenced,
                "data_processing_options_country",
                format!(
                    "`{}` is not a country Meta knows for LDU; expected 1 (US) or 0 (geolocate)",
                    x.value
                ),
                hint(),
            ));
        }
        if let Some(x) = state
            && !matches!(x.value, 0 | 1000)
        {
            return Err(self.err(
                x.referenced,
                "data_processing_options_state",
                format!(
                    "`{}` is not a state Meta knows for LDU; expected 1000 (California) or 0 (geolocate)",
                    x.value
                ),
                hint(),
            ));
        }
        Ok(Some(super::Ldu {
            options: opts.value.clone(),
            country: country.map(|x| x.value),
            state: state.map(|x| x.value),
        }))
    }

    /// The dedup key: the mapping's `dedup.key`, else `event_id`, else the channel's ids with
    /// the event name and time.
    fn dedup_key(
        &self,
        dedup: Option<&raw::Dedup>,
        has_event_id: bool,
        user_data: &[(UserField, Field)],
        custom_data: &[Field],
    ) -> Result<Vec<KeyPart>, MappingError> {
        let Some(raw::Dedup { key }) = dedup else {
            if has_event_id {
                return Ok(vec![KeyPart::EventId]);
            }
            let mut parts = vec![KeyPart::Channel];
            parts.extend(
                user_data
                    .iter()
                    .filter(|(u, _)| u.is_channel_id())
                    .map(|(u, _)| KeyPart::User(*u)),
            );
            parts.extend([KeyPart::EventName, KeyPart::EventTime]);
            return Ok(parts);
        };
        if key.value.is_empty() {
            return Err(self.err(
                key.referenced,
                "dedup.key",
                "is empty".into(),
                Some("e.g. `key: [event_id]`".into()),
            ));
        }
        let mut parts = Vec::new();
        for name in &key.value {
            let part = match name.as_str() {
                "dataset_id" => KeyPart::DatasetId,
                "channel" | "messaging_channel" => KeyPart::Channel,
                "event_name" => KeyPart::EventName,
                "event_time" => KeyPart::EventTime,
                "event_id" if has_event_id => KeyPart::EventId,
                n if let Some((u, _)) = user_data.iter().find(|(u, _)| u.name() == n) => {
                    KeyPart::User(*u)
                }
                n if custom_data.iter().any(|f| f.name == n) => KeyPart::Custom(n.to_string()),
                n => {
                    return Err(self.err(
                        key.referenced,
                        "dedup.key",
                        format!("`{n}` is not a field of this mapping"),
                        Some("name event fields the mapping sets: `event_id`, `event_name`, `event_time`, `channel`, or a `user_data`/`custom_data` field".into()),
                    ));
                }
            };
            parts.push(part);
        }
        Ok(parts)
    }

    /// A constant (or every `values` target, or the default) must be one of `allowed`.
    fn check_constant_in(
        &self,
        v: &Spanned<raw::Value>,
        f: &Field,
        key: &str,
        allowed: &[&str],
    ) -> Result<(), MappingError> {
        let check = |val: &str, what: &str| {
            if allowed.contains(&val) {
                return Ok(());
            }
            let expected = allowed
                .iter()
                .map(|a| format!("`{a}`"))
                .collect::<Vec<_>>()
                .join(", ");
            Err(self.err(
                v.referenced,
                key,
                format!("{what}`{val}` is not allowed; expected one of {expected}"),
                None,
            ))
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
}

/// Environment variables that hold msgcapi's secrets: never a field's source.
const SECRETS: [&str; 4] = [
    "MSGCAPI_ACCESS_TOKEN",
    "MSGCAPI_APP_SECRET",
    "MSGCAPI_EMULATOR_TOKEN",
    "MSGCAPI_EMULATOR_APP_SECRET",
];

/// The documented `custom_data` key that `key` is probably a typo of (`orderid`, `curency`,
/// `contents_ids`): within two edits, or the same but for case. A key that is one of them, or
/// far from all, is fine (partners may send their own fields).
fn near_miss(key: &str) -> Option<&'static str> {
    if capi::CUSTOM_KEYS.contains(&key) {
        return None;
    }
    let lower = key.to_ascii_lowercase();
    capi::CUSTOM_KEYS
        .iter()
        .map(|k| (super::error::edit_distance(&lower, k), *k))
        .filter(|(d, k)| *d == 0 || (*d <= 2 && k.len() > 4 && lower.len() > 3))
        .min()
        .map(|(_, k)| k)
}

/// A `type:` name.
fn value_type(name: &str) -> Option<ValueType> {
    Some(match name {
        "string" => ValueType::String,
        "number" => ValueType::Number,
        "integer" => ValueType::Integer,
        "bool" => ValueType::Bool,
        "list" => ValueType::List,
        "json" => ValueType::Json,
        _ => return None,
    })
}

/// Rejects strftime patterns chrono cannot use, and patterns without a date.
fn check_strftime(p: &str) -> Result<(), String> {
    use chrono::format::{Item, StrftimeItems};
    if StrftimeItems::new(p).any(|i| matches!(i, Item::Error)) {
        return Err(format!("`{p}` is not a valid strftime pattern"));
    }
    if !["%Y", "%y", "%F", "%s", "%D", "%c"]
        .iter()
        .any(|d| p.contains(d))
    {
        return Err(format!(
            "`{p}` has no year; a time without a date cannot be placed"
        ));
    }
    Ok(())
}
