//! The Dataset API: get (GET) or create (POST) the dataset of a page, WhatsApp Business Account
//! or Instagram account. Same client, error classification and secret handling as sending.

use std::time::Duration;

use super::classify::{Action, FatalKind, classify, fatal_message};
use super::client::{
    MAX_ANSWER_BYTES, http_client, read_bounded, response_headers, transport_detail,
};
use super::{Auth, Endpoint};

/// What owns a dataset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    Page,
    WhatsappBusinessAccount,
    InstagramAccount,
}

impl Owner {
    pub fn kind(self) -> &'static str {
        match self {
            Owner::Page => "page",
            Owner::WhatsappBusinessAccount => "whatsapp_business_account",
            Owner::InstagramAccount => "instagram_account",
        }
    }
}

/// Why no dataset id came back. The message never holds the URL or a secret.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("cannot reach `{endpoint}`: {detail}")]
    Unreachable { endpoint: String, detail: String },
    #[error("Meta answered without a dataset id")]
    NoId,
    #[error("{0}")]
    Refused(String),
    #[error("cannot start the HTTP client: {0}")]
    Client(String),
}

/// Gets (or with `create`, creates) the dataset id of `owner_id`.
pub fn get_or_create(
    endpoint: &Endpoint,
    api_version: &str,
    owner_id: &str,
    create: bool,
    auth: &Auth,
    timeout: Duration,
) -> Result<String, DatasetError> {
    let client = http_client(endpoint, timeout).map_err(|e| DatasetError::Client(e.to_string()))?;
    let url = endpoint.dataset_url(api_version, owner_id);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| DatasetError::Client(e.to_string()))?;
    let result = rt.block_on(async {
        // The token goes in a header (GET) or the body (POST): never in a URL that gets logged.
        let mut req = if create {
            let mut body = serde_json::json!({ "access_token": auth.token.expose() });
            if let Some(p) = &auth.appsecret_proof {
                body["appsecret_proof"] = serde_json::json!(p);
            }
            client
                .post(&url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_string())
        } else {
            let mut r = client.get(&url).bearer_auth(auth.token.expose());
            if let Some(p) = &auth.appsecret_proof {
                r = r.query(&[("appsecret_proof", p)]);
            }
            r
        };
        req = req.header(reqwest::header::ACCEPT, "application/json");
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let headers = response_headers(&resp);
        let body = read_bounded(resp, MAX_ANSWER_BYTES).await?;
        Ok::<_, reqwest::Error>((status, headers, body))
    });
    // Never `e.to_string()`: it prints the URL, whose query holds `appsecret_proof`.
    let (status, headers, body) = result.map_err(|e| DatasetError::Unreachable {
        endpoint: endpoint.to_string(),
        detail: transport_detail(e),
    })?;
    let Some(body) = body else {
        return Err(DatasetError::Refused(format!(
            "Meta answered HTTP {status} with a body over {} MiB; it was not read",
            MAX_ANSWER_BYTES >> 20
        )));
    };
    if (200..300).contains(&status) {
        let j: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        return j
            .get("id")
            .and_then(|v| {
                v.as_str()
                    .map(String::from)
                    .or_else(|| v.as_u64().map(|n| n.to_string()))
            })
            .ok_or(DatasetError::NoId);
    }
    let mut action = classify(status, &headers, &body, 0, chrono::Utc::now());
    action.scrub();
    let message = match action {
        Action::Fatal { kind, error } => fatal_message(kind, &error),
        Action::Retry { error, .. } | Action::Throttle { error, .. } => {
            format!("Meta is busy, try again later: {}", error.message)
        }
        Action::CutOff { error } => fatal_message(FatalKind::Permission, &error),
        Action::Split { error } | Action::Unknown { error } | Action::Reject { error } => {
            format!(
                "Meta refused: {}{}",
                error.message,
                error
                    .code
                    .map(|c| format!(" (code {c})"))
                    .unwrap_or_default()
            )
        }
        Action::Success { .. } | Action::Unreachable { .. } => "unexpected answer".into(),
    };
    Err(DatasetError::Refused(message))
}
