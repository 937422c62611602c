//! The serde mirror of the mapping YAML. Field names are the public contract (docs/mapping.md).
//! Every struct denies unknown fields, and every value keeps its `Spanned` location so that the
//! compiler can still point at `file:line:column`.
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
    /// Numbers only: the decimal separator, `.` (default) or `,` (`1.299,90`).
    pub decimal: Option<String>,
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
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Value, A::Error> {
                Spec::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(|s| Value::Spec(Box::new(s)))
            }
        }
        d.deserialize_any(V)
    }
}
