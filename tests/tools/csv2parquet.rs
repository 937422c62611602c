//! Makes the Parquet twins of the sample CSVs (and any test fixture):
//!
//! ```sh
//! cargo run --example csv2parquet -- IN.csv OUT.parquet [--delimiter ';'] [--type COL=TYPE]...
//!     [--row-group-rows N]
//! ```
//!
//! TYPE: `utf8` (default), `dict` (dictionary-encoded utf8), `int64`, `int32`, `float64`,
//! `decimal(P,S)`, `bool`, `date32`, `timestamp_s|_ms|_us|_ns` (naive) with an optional `_utc`
//! suffix (time zone "UTC"). Empty cells become nulls. Timestamps parse RFC 3339, naive
//! `YYYY-MM-DDTHH:MM:SS`, or Unix seconds. Written with zstd, by default in row groups of 4 rows
//! so even the small samples exercise several row groups (`--row-group-rows` for big inputs:
//! Parquet allows at most 32,767 row groups).

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use arrow_array::builder::{
    BooleanBuilder, Date32Builder, Decimal128Builder, Float64Builder, Int32Builder, Int64Builder,
    StringBuilder, StringDictionaryBuilder, TimestampMicrosecondBuilder,
    TimestampMillisecondBuilder, TimestampNanosecondBuilder, TimestampSecondBuilder,
};
use arrow_array::types::Int32Type;
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, TimeUnit};

fn parse_time(s: &str) -> Result<i64> {
    if let Ok(n) = s.parse::<i64>() {
        return Ok(n * 1_000_000_000);
    }
    if let Ok(d) = chrono::DateTime::parse_from_rfc3339(s) {
        return d.timestamp_nanos_opt().context("time out of range");
    }
    let n = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S")
        .with_context(|| format!("not a time: `{s}`"))?;
    n.and_utc()
        .timestamp_nanos_opt()
        .context("time out of range")
}

/// A column of values parsed from text with `FromStr`; empty cells become nulls.
macro_rules! parsed {
    ($cells:expr, $builder:ty, $dt:expr) => {{
        let mut b = <$builder>::new();
        for c in $cells {
            if c.trim().is_empty() {
                b.append_null();
            } else {
                b.append_value(
                    c.trim()
                        .parse()
                        .with_context(|| format!("not a {}: `{c}`", $dt))?,
                );
            }
        }
        ($dt, Arc::new(b.finish()) as ArrayRef)
    }};
}

fn column(ty: &str, cells: &[String]) -> Result<(DataType, ArrayRef)> {
    let empty = |s: &String| s.trim().is_empty();
    Ok(match ty {
        "utf8" => {
            let mut b = StringBuilder::new();
            cells.iter().for_each(|c| {
                if empty(c) {
                    b.append_null()
                } else {
                    b.append_value(c)
                }
            });
            (DataType::Utf8, Arc::new(b.finish()))
        }
        "dict" => {
            let mut b = StringDictionaryBuilder::<Int32Type>::new();
            cells.iter().for_each(|c| {
                if empty(c) {
                    b.append_null()
                } else {
                    b.append_value(c)
                }
            });
            let a = b.finish();
            (arrow_array::Array::data_type(&a).clone(), Arc::new(a))
        }
        "int64" => parsed!(cells, Int64Builder, DataType::Int64),
        "int32" => parsed!(cells, Int32Builder, DataType::Int32),
        "float64" => parsed!(cells, Float64Builder, DataType::Float64),
        "bool" => parsed!(cells, BooleanBuilder, DataType::Boolean),
        "date32" => {
            let mut b = Date32Builder::new();
            let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).context("epoch")?;
            for c in cells {
                if empty(c) {
                    b.append_null()
                } else {
                    let d = chrono::NaiveDate::parse_from_str(c.trim(), "%Y-%m-%d")
                        .with_context(|| format!("not a date: `{c}`"))?;
                    b.append_value((d - epoch).num_days() as i32)
                }
            }
            (DataType::Date32, Arc::new(b.finish()))
        }
        t if t.starts_with("decimal(") => {
            let inner = t.trim_start_matches("decimal(").trim_end_matches(')');
            let (p, s) = inner.split_once(',').context("decimal(P,S)")?;
            let (p, s): (u8, i8) = (p.trim().parse()?, s.trim().parse()?);
            let mut b = Decimal128Builder::new().with_precision_and_scale(p, s)?;
            for c in cells {
                if empty(c) {
                    b.append_null();
                    continue;
                }
                let c = c.trim();
                let neg = c.starts_with('-');
                let (int, frac) = c
                    .trim_start_matches('-')
                    .split_once('.')
                    .unwrap_or((c.trim_start_matches('-'), ""));
                if frac.len() > s as usize {
                    bail!("`{c}` has more than {s} decimals");
                }
                let digits = format!("{int}{frac:0<width$}", width = s as usize);
                let v: i128 = digits
                    .parse()
                    .with_context(|| format!("not a decimal: `{c}`"))?;
                b.append_value(if neg { -v } else { v });
            }
            (DataType::Decimal128(p, s), Arc::new(b.finish()))
        }
        t if t.starts_with("timestamp_") => {
            let utc = t.ends_with("_utc");
            let unit = t.trim_start_matches("timestamp_").trim_end_matches("_utc");
            let tz: Option<Arc<str>> = utc.then(|| Arc::from("UTC"));
            let mut ns = Vec::with_capacity(cells.len());
            for c in cells {
                ns.push(if empty(c) {
                    None
                } else {
                    Some(parse_time(c.trim())?)
                });
            }
            macro_rules! ts {
                ($builder:ty, $unit:expr, $div:expr) => {{
                    let mut b = <$builder>::new();
                    ns.iter().for_each(|v| match v {
                        Some(v) => b.append_value(v / $div),
                        None => b.append_null(),
                    });
                    let a = b.finish().with_timezone_opt(tz.clone());
                    (DataType::Timestamp($unit, tz), Arc::new(a) as ArrayRef)
                }};
            }
            match unit {
                "s" => ts!(TimestampSecondBuilder, TimeUnit::Second, 1_000_000_000),
                "ms" => ts!(
                    TimestampMillisecondBuilder,
                    TimeUnit::Millisecond,
                    1_000_000
                ),
                "us" => ts!(TimestampMicrosecondBuilder, TimeUnit::Microsecond, 1_000),
                "ns" => ts!(TimestampNanosecondBuilder, TimeUnit::Nanosecond, 1),
                _ => bail!("unknown timestamp unit in `{t}`"),
            }
        }
        other => bail!("unknown type `{other}`"),
    })
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut pos = Vec::new();
    let mut types: HashMap<String, String> = HashMap::new();
    let mut delimiter = b',';
    let mut row_group_rows = 4;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--type" => {
                let spec = it.next().context("--type COL=TYPE")?;
                let (c, t) = spec.split_once('=').context("--type COL=TYPE")?;
                types.insert(c.to_string(), t.to_string());
            }
            "--delimiter" => {
                delimiter = *it
                    .next()
                    .context("--delimiter CHAR")?
                    .as_bytes()
                    .first()
                    .context("empty delimiter")?
            }
            "--row-group-rows" => {
                row_group_rows = it
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|n| *n > 0)
                    .context("--row-group-rows N (N > 0)")?
            }
            _ => pos.push(a.clone()),
        }
    }
    let [input, output] = pos.as_slice() else {
        bail!(
            "usage: csv2parquet IN.csv OUT.parquet [--delimiter C] [--type COL=TYPE]... [--row-group-rows N]"
        )
    };
    let mut r = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .from_path(input)
        .with_context(|| format!("cannot read `{input}`"))?;
    let headers: Vec<String> = r.headers()?.iter().map(String::from).collect();
    let mut cols: Vec<Vec<String>> = vec![Vec::new(); headers.len()];
    for rec in r.records() {
        let rec = rec?;
        for (i, c) in rec.iter().enumerate().take(headers.len()) {
            cols[i].push(c.to_string());
        }
    }
    let mut fields = Vec::new();
    let mut arrays = Vec::new();
    for (h, cells) in headers.iter().zip(&cols) {
        let (dt, a) = column(types.get(h).map(String::as_str).unwrap_or("utf8"), cells)
            .with_context(|| format!("column `{h}`"))?;
        fields.push(Field::new(h, dt, true));
        arrays.push(a);
    }
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)?;
    let props = parquet::file::properties::WriterProperties::builder()
        .set_compression(parquet::basic::Compression::ZSTD(Default::default()))
        .set_max_row_group_size(row_group_rows)
        .build();
    let mut w = parquet::arrow::ArrowWriter::try_new(
        std::fs::File::create(output)?,
        batch.schema(),
        Some(props),
    )?;
    w.write(&batch)?;
    w.close()?;
    eprintln!("wrote {} rows to {output}", batch.num_rows());
    Ok(())
}
