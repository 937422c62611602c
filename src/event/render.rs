//! PURE: a valid [`Checked`] event → its JSON object, exactly as it is sent. Runs only when
//! payloads are wanted (`send`, `validate --emit-payloads`); a plain `validate` never gets here.

use std::fmt::Write as _;

use super::check::{Checked, Typed};
use crate::json::push_str;
use crate::mapping::Plan;

thread_local! {
    /// Each mapping thread renders into one buffer, then copies the event out at its exact size
    /// (instead of a generous allocation shrunk by a reallocation per event).
    static SCRATCH: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// The event object; `channel` and `event_name` as the report shows them.
pub fn event(plan: &Plan, c: &Checked<'_>, channel: &str, event_name: &str, t: i64) -> Box<str> {
    SCRATCH.with(|s| match s.try_borrow_mut() {
        Ok(mut j) => {
            j.clear();
            write_event(&mut j, plan, c, channel, event_name, t);
            Box::from(j.as_str())
        }
        Err(_) => {
            let mut j = String::new();
            write_event(&mut j, plan, c, channel, event_name, t);
            j.into_boxed_str()
        }
    })
}

fn write_event(
    j: &mut String,
    plan: &Plan,
    c: &Checked<'_>,
    channel: &str,
    event_name: &str,
    t: i64,
) {
    j.push_str("{\"event_name\":");
    push_str(j, event_name);
    let _ = write!(
        j,
        ",\"event_time\":{t},\"action_source\":\"business_messaging\",\"messaging_channel\":"
    );
    push_str(j, channel);
    if let Some(id) = c.event_id.as_deref().filter(|id| !id.is_empty()) {
        j.push_str(",\"event_id\":");
        push_str(j, id);
    }
    j.push_str(",\"user_data\":{");
    let mut first = true;
    for (uf, _) in &plan.user_data {
        let Some(v) = &c.user[uf.index()] else {
            continue;
        };
        if !first {
            j.push(',');
        }
        first = false;
        push_str(j, uf.name());
        j.push(':');
        push_str(j, v);
    }
    j.push('}');
    if !c.custom.is_empty() {
        j.push_str(",\"custom_data\":{");
        for (i, x) in c.custom.iter().enumerate() {
            if i > 0 {
                j.push(',');
            }
            push_str(j, &x.field.name);
            j.push(':');
            match x.value {
                // The text as written, when that is exactly how the number prints.
                Typed::Number(_) if plain_decimal(j, &x.text) => {}
                ref v => value(j, v),
            }
        }
        j.push('}');
    }
    if let Some(ldu) = &plan.data_processing_options {
        j.push_str(",\"data_processing_options\":[");
        for (i, o) in ldu.options.iter().enumerate() {
            if i > 0 {
                j.push(',');
            }
            push_str(j, o);
        }
        j.push(']');
        if let Some(c) = ldu.country {
            let _ = write!(j, ",\"data_processing_options_country\":{c}");
        }
        if let Some(s) = ldu.state {
            let _ = write!(j, ",\"data_processing_options_state\":{s}");
        }
    }
    if let Some(o) = c.opt_out {
        let _ = write!(j, ",\"opt_out\":{o}");
    }
    j.push('}');
}

/// Writes `text` as the number [`value`] would write for it, when that can be told from the text
/// alone: a plain decimal (no exponent) of at most 15 significant digits, which an `f64` holds
/// exactly enough that its shortest form is those digits. Returns false (writing nothing)
/// otherwise. Saves formatting a float per event.
fn plain_decimal(out: &mut String, text: &str) -> bool {
    let (neg, body) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    if int.is_empty() && frac.is_empty()
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return false;
    }
    let int = int.trim_start_matches('0');
    let frac = frac.trim_end_matches('0');
    let significant = if int.is_empty() {
        frac.trim_start_matches('0').len()
    } else {
        int.len() + frac.len()
    };
    if significant > 15 {
        return false;
    }
    if int.is_empty() && frac.is_empty() {
        out.push('0');
        return true;
    }
    if neg {
        out.push('-');
    }
    out.push_str(if int.is_empty() { "0" } else { int });
    if !frac.is_empty() {
        out.push('.');
        out.push_str(frac);
    }
    true
}

fn value(out: &mut String, v: &Typed<'_>) {
    match v {
        Typed::Text(s) => push_str(out, s),
        Typed::Number(n) => {
            if n.fract() == 0.0 && n.abs() < 1e15 {
                let _ = write!(out, "{}", *n as i64);
            } else {
                let _ = write!(out, "{n}");
            }
        }
        Typed::Integer(n) => {
            let _ = write!(out, "{n}");
        }
        Typed::Bool(b) => {
            let _ = write!(out, "{b}");
        }
        // Serializing a `Value` cannot fail (string keys only).
        Typed::Json(v) => out.push_str(&serde_json::to_string(v).unwrap_or_default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The text fast path writes exactly what formatting the parsed number writes.
    #[test]
    fn plain_decimals_print_as_their_numbers() {
        let mut rng = fastrand::Rng::with_seed(7);
        let mut cases: Vec<String> = [
            "0",
            "-0",
            "-0.000",
            "+5",
            "007",
            "0.50",
            ".5",
            "-.5",
            "5.",
            "12.000",
            "1299.90",
            "0.0000001",
            "10000000000000000",
            "100000000000000000000000",
            "999999999999999",
            "123456789012345.6",
            "1e5",
            "-",
            "",
            ".",
            "1.2.3",
            "0.1",
            "0.3",
            "4.35",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for _ in 0..20_000 {
            let int: String = (0..rng.usize(0..18)).map(|_| rng.digit(10)).collect();
            let frac: String = (0..rng.usize(0..18)).map(|_| rng.digit(10)).collect();
            let sign = ["", "-", "+"][rng.usize(0..3)];
            cases.push(format!("{sign}{int}.{frac}"));
            cases.push(format!("{sign}{int}"));
        }
        for text in cases {
            let Some(n) = crate::event::parse_number(&text) else {
                continue;
            };
            let mut fast = String::new();
            if plain_decimal(&mut fast, &text) {
                let mut slow = String::new();
                value(&mut slow, &Typed::Number(n));
                assert_eq!(fast, slow, "{text}");
            }
        }
    }
}
