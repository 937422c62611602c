//! Where the ledger lives (`--state`): a file, or a PostgreSQL database. Parsed once, at the
//! command line's edge, into a [`StateLocation`]; nothing downstream looks at the text again.
//!
//! A PostgreSQL URL may carry a password. It never leaves this module except into the client's
//! connection settings: every message shows [`redact`]'s form (no password), the password is
//! registered with [`crate::secret::register`] so anything that echoes it is scrubbed, and
//! `Debug` shows the redacted form too. A URL that cannot be parsed is never echoed back.

use std::fmt;
use std::path::{Path, PathBuf};

/// The schema a PostgreSQL ledger lives in unless the URL says `?schema=NAME`.
pub const DEFAULT_SCHEMA: &str = "msgcapi";

/// `--state`: a file (SQLite) or a PostgreSQL database (`postgres://` or `postgresql://`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StateLocation {
    File(PathBuf),
    Postgres(Box<PgUrl>),
}

/// A PostgreSQL ledger: the connection settings, and the schema that holds the ledger (one
/// ledger per database and schema).
#[derive(Clone)]
pub struct PgUrl {
    /// The connection settings, password included (from the URL only; the environment's is
    /// added when connecting).
    config: ::postgres::Config,
    schema: String,
    /// The URL as given, without its password: what messages show.
    shown: String,
}

impl PgUrl {
    pub fn config(&self) -> &::postgres::Config {
        &self.config
    }

    /// The schema the ledger's tables live in.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// The URL without its password.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// The same database with the ledger in `schema` (for hints and tests).
    pub fn with_schema(&self, schema: &str) -> PgUrl {
        let mut u = self.clone();
        u.schema = schema.to_string();
        u.shown = with_param(&strip_param(&self.shown, "schema"), "schema", schema);
        u
    }
}

impl PartialEq for PgUrl {
    fn eq(&self, other: &PgUrl) -> bool {
        self.shown == other.shown && self.schema == other.schema
    }
}

impl Eq for PgUrl {}

impl fmt::Debug for PgUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PgUrl").field(&self.shown).finish()
    }
}

impl StateLocation {
    /// Parses `--state`: `postgres://...` or `postgresql://...` is a PostgreSQL ledger, any
    /// other `scheme://` is refused, anything else is a file path. The error never holds the
    /// text given (it may hold a password).
    pub fn parse(s: &str) -> Result<StateLocation, String> {
        let Some((scheme, _)) = s.split_once("://") else {
            return Ok(StateLocation::File(PathBuf::from(s)));
        };
        if scheme != "postgres" && scheme != "postgresql" {
            if !scheme.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '+')
            {
                return Err(format!(
                    "`--state` is a file path or a PostgreSQL URL (`postgres://user@host:5432/db`); got a `{scheme}://` URL"
                ));
            }
            return Ok(StateLocation::File(PathBuf::from(s)));
        }
        parse_pg(s).map(|u| StateLocation::Postgres(Box::new(u)))
    }

    /// What messages call it: ``state file `s.db` `` or ``PostgreSQL ledger `postgres://...` ``.
    pub fn describe(&self) -> super::Place {
        match self {
            StateLocation::File(p) => super::Place::file(p),
            StateLocation::Postgres(u) => super::Place::postgres(&u.shown),
        }
    }

    pub fn file(&self) -> Option<&Path> {
        match self {
            StateLocation::File(p) => Some(p),
            StateLocation::Postgres(_) => None,
        }
    }
}

impl From<&Path> for StateLocation {
    fn from(p: &Path) -> StateLocation {
        StateLocation::File(p.to_path_buf())
    }
}

/// The path, or the URL without its password.
impl fmt::Display for StateLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateLocation::File(p) => write!(f, "{}", p.display()),
            StateLocation::Postgres(u) => f.write_str(&u.shown),
        }
    }
}

fn parse_pg(s: &str) -> Result<PgUrl, String> {
    let shown = redact(s);
    // The query starts after the userinfo (see `redact`).
    let from = s.rfind('@').unwrap_or(0);
    let (base, query) = match s[from..].find('?') {
        Some(i) => (&s[..from + i], Some(&s[from + i + 1..])),
        None => (s, None),
    };
    let mut schema = DEFAULT_SCHEMA.to_string();
    let mut kept: Vec<&str> = Vec::new();
    for pair in query.into_iter().flat_map(|q| q.split('&')) {
        if pair.is_empty() {
            continue;
        }
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "schema" => {
                if !is_schema_name(v) {
                    return Err(format!(
                        "`--state`: `schema` is a lower-case name of letters, digits and `_` (at most 63), e.g. `?schema=acme_ledger`; got `{v}`"
                    ));
                }
                schema = v.to_string();
            }
            "sslmode" if !matches!(v, "disable" | "allow" | "prefer") => {
                return Err(format!(
                    "`--state`: `sslmode={v}` is not supported: msgcapi connects to PostgreSQL without TLS\n  hint: use a server on loopback or a private network (drop `sslmode`, or `sslmode=disable`), or a TLS tunnel on localhost"
                ));
            }
            _ => kept.push(pair),
        }
    }
    let conn = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    let config: ::postgres::Config = conn.parse().map_err(|e: ::postgres::Error| {
        format!(
            "`--state` `{shown}` is not a PostgreSQL URL this client reads ({}), e.g. `postgres://msgcapi@127.0.0.1:5432/ledgers?schema=acme`",
            error_chain(&e)
        )
    })?;
    if let Some(p) = config.get_password() {
        register_password(p);
    }
    Ok(PgUrl {
        config,
        schema,
        shown,
    })
}

/// An error and its causes, `: `-separated (the PostgreSQL client's own `Display` leaves the
/// cause out), scrubbed of registered secrets.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let next = c.to_string();
        if !text.ends_with(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        cause = c.source();
    }
    crate::secret::scrub(&text).into_owned()
}

/// Registers a password (the bytes as given, and as text) for [`crate::secret::scrub`].
pub fn register_password(p: &[u8]) {
    let text = String::from_utf8_lossy(p);
    crate::secret::register(&text);
}

/// A schema name msgcapi creates and quotes: lower case, so that it reads the same quoted or not.
fn is_schema_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some('a'..='z' | '_'))
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'))
        && s.len() <= 63
}

/// A PostgreSQL URL without its password, for messages: the userinfo's password and any
/// `password=` parameter are dropped. Never fails, and never keeps any text that could be a
/// password: when the URL cannot be made sense of, only its scheme is kept.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "(a URL)".into();
    };
    // The userinfo ends at the last `@`: a password may hold `@`, `/` or `?` unencoded.
    let (user, hostpart) = match rest.rfind('@') {
        Some(at) => {
            let info = &rest[..at];
            let user = info.split(':').next().unwrap_or_default();
            (Some(user), &rest[at + 1..])
        }
        None => (None, rest),
    };
    let (host, query) = match hostpart.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (hostpart, None),
    };
    let mut out = format!("{scheme}://");
    if let Some(u) = user.filter(|u| !u.is_empty()) {
        out.push_str(u);
        out.push('@');
    }
    out.push_str(host);
    if let Some(q) = query {
        let kept: Vec<&str> = q
            .split('&')
            .filter(|p| !p.is_empty())
            .filter(|p| {
                let k = p.split('=').next().unwrap_or_default();
                !k.eq_ignore_ascii_case("password")
            })
            .collect();
        if !kept.is_empty() {
            out.push('?');
            out.push_str(&kept.join("&"));
        }
    }
    out
}

fn strip_param(url: &str, key: &str) -> String {
    let Some((base, q)) = url.split_once('?') else {
        return url.to_string();
    };
    let kept: Vec<&str> = q
        .split('&')
        .filter(|p| !p.is_empty() && p.split('=').next() != Some(key))
        .collect();
    if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    }
}

fn with_param(url: &str, key: &str, value: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{key}={value}")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn redact_drops_every_password() {
        for (url, want) in [
            (
                "postgres://msgcapi:s3cret@db.internal:5432/ledgers",
                "postgres://msgcapi@db.internal:5432/ledgers",
            ),
            (
                "postgresql://u:p%40ss@127.0.0.1/test?schema=acme",
                "postgresql://u@127.0.0.1/test?schema=acme",
            ),
            // Unencoded `@`, `/` and `?` in the password: the userinfo ends at the last `@`.
            (
                "postgres://u:p@s/s?w@127.0.0.1/test",
                "postgres://u@127.0.0.1/test",
            ),
            (
                "postgres://127.0.0.1/test?password=hunter22&sslmode=disable",
                "postgres://127.0.0.1/test?sslmode=disable",
            ),
            (
                "postgres://u@h/db?PASSWORD=x&schema=s",
                "postgres://u@h/db?schema=s",
            ),
            ("postgres://:onlypass@h/db", "postgres://h/db"),
            ("postgres://h", "postgres://h"),
            ("no scheme at all:secret", "(a URL)"),
        ] {
            assert_eq!(redact(url), want, "{url}");
        }
    }

    #[test]
    fn state_is_a_file_or_a_postgres_url() {
        assert_eq!(
            StateLocation::parse("ledger.sqlite").unwrap(),
            StateLocation::File("ledger.sqlite".into())
        );
        assert_eq!(
            StateLocation::parse("dir/with:colon.db").unwrap(),
            StateLocation::File("dir/with:colon.db".into())
        );
        let StateLocation::Postgres(u) =
            StateLocation::parse("postgres://u:pw-1234567@127.0.0.1:5433/test?schema=acme_1")
                .unwrap()
        else {
            panic!("a URL")
        };
        assert_eq!(u.schema(), "acme_1");
        assert_eq!(u.shown(), "postgres://u@127.0.0.1:5433/test?schema=acme_1");
        assert_eq!(u.config().get_password(), Some(&b"pw-1234567"[..]));
        assert_eq!(u.config().get_ports(), [5433]);
        assert_eq!(u.config().get_dbname(), Some("test"));
        assert!(!format!("{u:?}").contains("pw-1234567"));
        assert_eq!(crate::secret::scrub("x pw-1234567 y"), "x *** y");
        let StateLocation::Postgres(d) =
            StateLocation::parse("postgresql://127.0.0.1/test").unwrap()
        else {
            panic!("a URL")
        };
        assert_eq!(d.schema(), DEFAULT_SCHEMA);
        assert_eq!(
            d.with_schema("other").shown(),
            "postgresql://127.0.0.1/test?schema=other"
        );
    }

    #[test]
    fn refusals_never_echo_the_url() {
        for (url, says) in [
            ("mysql://root:topsecret@h/db", "got a `mysql://` URL"),
            ("POSTGRES://u:topsecret@h/db", "got a `POSTGRES://` URL"),
            (
                "postgres://u:topsecret@h/db?sslmode=require",
                "`sslmode=require` is not supported",
            ),
            (
                "postgres://u:topsecret@h/db?schema=Bad-Name",
                "`schema` is a lower-case name",
            ),
            (
                "postgres://u:topsecret@h/db?nosuchoption=1",
                "unknown option `nosuchoption`",
            ),
        ] {
            let e = StateLocation::parse(url).unwrap_err();
            assert!(e.contains(says), "{url}: {e}");
            assert!(!e.contains("topsecret"), "{url}: {e}");
        }
    }
}
