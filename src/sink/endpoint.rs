//! The Graph API base URL, checked once: https anywhere, plain http only to a loopback address
//! (the emulator). `send` and `dataset` share it, so both refuse the same URLs, before any
//! connection is attempted.

use std::fmt;
use std::net::IpAddr;

use reqwest::Url;

/// A checked base URL, e.g. `https://graph.facebook.com` or `http://127.0.0.1:41231`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// Without a trailing slash.
    base: String,
    host: String,
    port: u16,
    scheme: &'static str,
    loopback: bool,
}

impl Endpoint {
    /// Parses and checks `--endpoint`. The message says what is wrong and shows a good value.
    pub fn parse(s: &str) -> Result<Endpoint, String> {
        let example = "e.g. `https://graph.facebook.com`";
        let url = Url::parse(s.trim())
            .map_err(|e| format!("`--endpoint` is not a URL ({e}), {example}; got `{s}`"))?;
        let scheme = match url.scheme() {
            "https" => "https",
            "http" => "http",
            other => {
                return Err(format!(
                    "`--endpoint` must be an https URL, {example}; got the scheme `{other}`"
                ));
            }
        };
        let Some(host) = url.host_str().filter(|h| !h.is_empty()) else {
            return Err(format!(
                "`--endpoint` must name a host, {example}; got `{s}`"
            ));
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err(
                "`--endpoint` must not hold a user name or password (it would be printed); the token comes from `MSGCAPI_ACCESS_TOKEN` or `--access-token-file`".into(),
            );
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(format!(
                "`--endpoint` is a base URL without `?` or `#`, {example}; got `{s}`"
            ));
        }
        let loopback = is_loopback(host);
        if scheme == "http" && !loopback {
            return Err(format!(
                "`--endpoint` must be an https URL (plain http only for loopback, such as the emulator's `http://127.0.0.1:PORT`), {example}; got `{s}`"
            ));
        }
        let port = url.port_or_known_default().unwrap_or(443);
        let base = url.as_str().trim_end_matches('/').to_string();
        Ok(Endpoint {
            base,
            host: host.to_string(),
            port,
            scheme,
            loopback,
        })
    }

    /// `POST` target for a batch of events.
    pub fn events_url(&self, api_version: &str, dataset_id: &str) -> String {
        format!("{}/{api_version}/{dataset_id}/events", self.base)
    }

    /// `GET`/`POST` target of the Dataset API.
    pub fn dataset_url(&self, api_version: &str, owner_id: &str) -> String {
        format!("{}/{api_version}/{owner_id}/dataset", self.base)
    }

    /// 127.0.0.0/8, ::1 or `localhost`: no proxy is used, and plain http is allowed.
    pub fn is_loopback(&self) -> bool {
        self.loopback
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn scheme(&self) -> &'static str {
        self.scheme
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.base)
    }
}

fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => bare.eq_ignore_ascii_case("localhost"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_anywhere_http_only_to_loopback() {
        for ok in [
            "https://graph.facebook.com",
            "https://graph.facebook.com/",
            "http://127.0.0.1:8080",
            "http://127.9.9.9",
            "http://localhost:1234/",
            "http://[::1]:99",
        ] {
            let e = Endpoint::parse(ok).unwrap_or_else(|m| panic!("{ok}: {m}"));
            assert!(!e.to_string().ends_with('/'), "{e}");
        }
        for bad in [
            "http://graph.facebook.com",
            // A host that merely starts like a loopback address.
            "http://127.evil.example",
            "http://127.0.0.1.nip.io",
            "http://localhost.evil.example",
            "ftp://127.0.0.1",
            "https://user:pw@graph.facebook.com",
            "https://graph.facebook.com/?access_token=x",
            "graph.facebook.com",
            "",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn urls_and_parts() {
        let e = Endpoint::parse("http://127.0.0.1:4000/").unwrap();
        assert_eq!(
            e.events_url("v24.0", "123"),
            "http://127.0.0.1:4000/v24.0/123/events"
        );
        assert_eq!(
            e.dataset_url("v24.0", "9"),
            "http://127.0.0.1:4000/v24.0/9/dataset"
        );
        assert!(e.is_loopback());
        assert_eq!(
            (e.scheme(), e.host(), e.port()),
            ("http", "127.0.0.1", 4000)
        );
        let g = Endpoint::parse("https://graph.facebook.com").unwrap();
        assert_eq!((g.port(), g.is_loopback()), (443, false));
    }
}
