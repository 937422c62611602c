//! PURE: a valid [`Checked`] event → its JSON object, exactly as it is sent. Runs only when
//! payloads are wanted (`send`, `validate --emit-payloads`); a plain `validate` never gets here.

use std::fmt::Write as _;

use super::check::{Checked, Typed};
use crate::json::push_str;
use crate::mapping::Plan;

/// The event object; `channel` and `event_name` as the report shows them.
pub fn event(plan: &Plan, c: &Checked<'_>, channel: &str, event_name: &str, t: i64) -> Box<str> {
    let mut j = String::with_capacity(512);
    j.push_str("{\"event_name\":");
    push_str(&mut j, event_name);
    let _ = write!(
        j,
        ",\"event_time\":{t},\"action_source\":\"business_messaging\",\"messaging_channel\":"
    );
    push_str(&mut j, channel);
    if let Some(id) = c.event_id.as_deref().filter(|id| !id.is_empty()) {
        j.push_str(",\"event_id\":");
        push_str(&mut j, id);
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
        push_str(&mut j, uf.name());
        j.push(':');
        push_str(&mut j, v);
    }
    j.push('}');
    if !c.custom.is_empty() {
        j.push_str(",\"custom_data\":{");
        for (i, x) in c.custom.iter().enumerate() {
            if i > 0 {
                j.push(',');
            }
            push_str(&mut j, &x.field.name);
            j.push(':');
            value(&mut j, &x.value);
        }
        j.push('}');
    }
    if let Some(ldu) = &plan.data_processing_options {
        j.push_str(",\"data_processing_options\":[");
        for (i, o) in ldu.options.iter().enumerate() {
            if i > 0 {
                j.push(',');
            }
            push_str(&mut j, o);
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
    j.into_boxed_str()
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
