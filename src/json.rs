//! The one JSON string writer: request bodies and events are assembled as text (it is the hot
//! path of `send` and `--emit-payloads`), and every string in them goes through [`push_str`].
//! Also [`decimal`], integers as text without `fmt` (dedup keys, report lines).

use std::fmt::Write as _;

/// Appends `s` as a JSON string (quotes and escapes, exactly as `serde_json` writes it), without
/// allocating.
pub fn push_str(out: &mut String, s: &str) {
    out.push('"');
    // Without a short-circuit, the check vectorizes: most strings need no escape at all.
    let plain = !s.bytes().fold(false, |any, b| {
        any | (b < 0x20) | (b == b'"') | (b == b'\\')
    });
    if plain {
        out.push_str(s);
    } else {
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{8}' => out.push_str("\\b"),
                '\u{c}' => out.push_str("\\f"),
                c if (c as u32) < 0x20 => {
                    let _ = write!(out, "\\u{:04x}", c as u32);
                }
                c => out.push(c),
            }
        }
    }
    out.push('"');
}

/// `n` in decimal, as `n.to_string()` writes it, into `buf` (20 bytes fit any i64).
pub fn decimal(n: i64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    let mut u = n.unsigned_abs();
    loop {
        i -= 1;
        buf[i] = b'0' + (u % 10) as u8;
        u /= 10;
        if u == 0 {
            break;
        }
    }
    if n < 0 {
        i -= 1;
        buf[i] = b'-';
    }
    &buf[i..]
}

#[cfg(test)]
mod tests {
    #[test]
    fn escapes_exactly_like_serde_json() {
        let controls: String = (0u8..0x20).map(char::from).collect();
        for s in [
            "plain",
            "quo\"te",
            "back\\slash",
            "new\nline\r\t",
            controls.as_str(),
            "ünï©ødé 👍 \u{7f}",
            "",
        ] {
            let mut out = String::new();
            super::push_str(&mut out, s);
            assert_eq!(out, serde_json::to_string(s).unwrap());
            assert_eq!(serde_json::from_str::<String>(&out).unwrap(), s);
        }
    }
}
