//! PURE: contact fields (`em`, `ph`, ...) normalized per Meta's customer-information rules,
//! then SHA-256 hashed (capi-spec.md §2). A value that already is a digest passes through.

use std::borrow::Cow;

use chrono::NaiveDate;
use sha2::{Digest, Sha256};

use crate::capi::{PiiKind, is_sha256_hex};

/// Normalizes a contact value per Meta's rules; `Err` says why it cannot be used.
pub fn normalize(kind: PiiKind, text: &str) -> Result<String, String> {
    let t = text.trim();
    let out = match kind {
        PiiKind::Email => {
            let e = t.to_lowercase();
            let ok = e.split_once('@').is_some_and(|(a, b)| {
                !a.is_empty() && b.contains('.') && !e.contains(char::is_whitespace)
            });
            if !ok {
                return Err("is not an email address".into());
            }
            e
        }
        PiiKind::Phone => {
            let digits: String = t.chars().filter(char::is_ascii_digit).collect();
            let digits = digits.trim_start_matches('0').to_string();
            if digits.len() < 7 || digits.len() > 15 {
                return Err("is not a phone number with country code (7 to 15 digits)".into());
            }
            digits
        }
        PiiKind::Name => t
            .to_lowercase()
            .chars()
            .filter(|c| !c.is_ascii_punctuation() && !c.is_whitespace())
            .collect(),
        PiiKind::City => t
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric())
            .collect(),
        PiiKind::State => {
            let s: String = t
                .to_lowercase()
                .chars()
                .filter(|c| c.is_alphanumeric())
                .collect();
            s
        }
        PiiKind::Zip => {
            let z: String = t
                .to_lowercase()
                .chars()
                .filter(|c| !c.is_whitespace() && *c != '-')
                .collect();
            // US ZIP+4 → the first five digits.
            if z.len() == 9 && z.bytes().all(|b| b.is_ascii_digit()) && t.contains('-') {
                z[..5].to_string()
            } else {
                z
            }
        }
        PiiKind::Country => {
            let c = t.to_lowercase();
            if !crate::capi::is_country(&c) {
                return Err("is not an ISO 3166-1 alpha-2 country code (e.g. `us`)".into());
            }
            c
        }
        PiiKind::DateOfBirth => {
            let d = ["%Y%m%d", "%Y-%m-%d", "%Y/%m/%d", "%m/%d/%Y", "%d.%m.%Y"]
                .iter()
                .find_map(|f| NaiveDate::parse_from_str(t, f).ok());
            match d {
                Some(d) => d.format("%Y%m%d").to_string(),
                None => return Err("is not a date of birth (YYYYMMDD or YYYY-MM-DD)".into()),
            }
        }
        PiiKind::Gender => match t.to_lowercase().chars().next() {
            Some(c @ ('f' | 'm')) => c.to_string(),
            _ => return Err("is not a gender (f or m)".into()),
        },
        PiiKind::ExternalId => t.to_string(),
    };
    if out.is_empty() {
        return Err("is empty after normalization".into());
    }
    Ok(out)
}

/// A phone number written without an international prefix (`+` or `00`) gets the country
/// calling code in front, its national trunk zeros dropped: `(650)555-1212` with 1 →
/// `16505551212`, `020 7946 0018` with 44 → `442079460018`. Numbers with a prefix are kept.
pub(super) fn with_country_code(text: Cow<'_, str>, cc: u16) -> Cow<'_, str> {
    let t = text.trim_start();
    if t.starts_with('+') || t.starts_with("00") || is_sha256_hex(t.trim_end()) {
        return text;
    }
    let national = t.chars().filter(char::is_ascii_digit).collect::<String>();
    Cow::Owned(format!("{cc}{}", national.trim_start_matches('0')))
}

/// Whether `hash_pii` would accept the value, without hashing it.
pub fn check_pii(kind: PiiKind, text: &str) -> Result<(), String> {
    let t = text.trim();
    if is_sha256_hex(t) {
        return Ok(());
    }
    normalize(kind, t).map(drop)
}

/// Lower-case hex SHA-256 of the normalized value; 64-hex input is taken as already hashed.
pub fn hash_pii(kind: PiiKind, text: &str) -> Result<String, String> {
    let t = text.trim();
    if is_sha256_hex(t) {
        return Ok(t.to_ascii_lowercase());
    }
    let n = normalize(kind, t)?;
    let digest = Sha256::digest(n.as_bytes());
    let mut buf = [0u8; 64];
    // hex::encode_to_slice cannot fail: the buffer is exactly twice the digest.
    let _ = hex::encode_to_slice(digest, &mut buf);
    Ok(String::from_utf8_lossy(&buf).into_owned())
}
