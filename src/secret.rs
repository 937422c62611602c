//! Secrets (access token, app secret) behind a type that cannot be printed by accident.
//!
//! `Debug` and `Display` show `***`; the only way to the text is [`Secret::expose`], so a grep for
//! `expose(` lists every place a secret leaves this type.

use std::borrow::Cow;
use std::fmt;
use std::path::Path;
use std::sync::RwLock;

use anyhow::{Context, Result, bail};

/// A secret string. Masked in `Debug`/`Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The secret text. Use only to build a request body or an HMAC.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Reads a secret from the environment variable `var`, else from `file` (first line, trimmed),
    /// and registers it for [`scrub`]. Returns `None` when neither is set.
    pub fn from_env_or_file(var: &str, file: Option<&Path>) -> Result<Option<Secret>> {
        if let Some(path) = file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read secret file `{}`", path.display()))?;
            let value = text.lines().next().unwrap_or("").trim().to_string();
            if value.is_empty() {
                bail!("secret file `{}` is empty", path.display());
            }
            register(&value);
            return Ok(Some(Secret(value)));
        }
        match std::env::var(var) {
            Ok(v) if !v.trim().is_empty() => {
                register(v.trim());
                Ok(Some(Secret(v.trim().to_string())))
            }
            _ => Ok(None),
        }
    }

    /// `appsecret_proof`: lower-case hex HMAC-SHA256 of the token keyed by the app secret.
    pub fn appsecret_proof(token: &Secret, app_secret: &Secret) -> String {
        use hmac::{Hmac, Mac};
        // HMAC accepts keys of any length; `new_from_slice` cannot fail for Hmac<Sha256>.
        let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(app_secret.0.as_bytes())
            .expect("HMAC takes keys of any length");
        mac.update(token.0.as_bytes());
        let proof = hex::encode(mac.finalize().into_bytes());
        register(&proof);
        proof
    }
}

/// Every secret text this process holds (token, app secret, `appsecret_proof`), for [`scrub`].
static KNOWN: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Secrets shorter than this are not real tokens and are not scrubbed (scrubbing `t` would
/// mangle every message).
const MIN_SCRUBBED: usize = 8;

/// Registers a secret text: from now on [`scrub`] masks it wherever it appears.
pub fn register(text: &str) {
    if text.len() < MIN_SCRUBBED {
        return;
    }
    if let Ok(mut k) = KNOWN.write()
        && !k.iter().any(|x| x == text)
    {
        k.push(text.to_string());
    }
}

/// `text` with every registered secret replaced by `***`. Applied to whatever leaves the
/// process and could hold text from outside: report reasons, stderr, the summary, Meta's
/// answers (an endpoint can echo the request body, token included).
pub fn scrub(text: &str) -> Cow<'_, str> {
    let Ok(known) = KNOWN.read() else {
        return Cow::Borrowed(text);
    };
    let mut out = Cow::Borrowed(text);
    for secret in known.iter() {
        if out.contains(secret.as_str()) {
            out = Cow::Owned(out.replace(secret.as_str(), "***"));
        }
    }
    out
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_in_debug_and_display() {
        let s = Secret::new("EAAB-very-secret");
        assert_eq!(format!("{s:?} {s}"), "Secret(***) ***");
    }

    #[test]
    fn registered_secrets_are_scrubbed_wherever_they_appear() {
        register("EAAB-scrub-me-123");
        register("short");
        assert_eq!(
            scrub("bad token EAAB-scrub-me-123 in {\"access_token\":\"EAAB-scrub-me-123\"}"),
            "bad token *** in {\"access_token\":\"***\"}"
        );
        assert_eq!(scrub("a short word"), "a short word");
        assert!(matches!(scrub("nothing here"), Cow::Borrowed(_)));
    }

    #[test]
    fn appsecret_proof_is_hmac_sha256_hex() {
        // Expected value from `printf token | openssl dgst -sha256 -hmac key`.
        let proof = Secret::appsecret_proof(&Secret::new("token"), &Secret::new("key"));
        assert_eq!(proof.len(), 64);
        assert_eq!(
            proof,
            "646b8eac0c4ae4178299c9bd924e2bf073dfb07e024901a8c864f65b9462bf0d"
        );
    }
}
