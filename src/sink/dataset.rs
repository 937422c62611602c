//! The Dataset API: the dataset of a page, WhatsApp Business Account or Instagram account, found
//! (`GET /{account}/dataset`) or created (`POST`), for `msgcapi dataset` and for the mapping's
//! `dataset_id: auto`. The requests go through the sender's runtime: the same rate limiter (keyed
//! by account), retry classifier, run-wide pauses, outage handling and secret handling as events.
//! Both requests are idempotent (a POST returns the existing dataset), so an answer that never
//! came is retried, unlike an event batch.

use std::sync::Arc;
use std::time::Instant;

use super::classify::{Action, GraphError, Transport, classify, classify_transport};
use super::client::{
    Ended, MAX_ANSWER_BYTES, Shared, TooLong, read_bounded, response_headers, transport_detail,
    with_retries,
};
use crate::capi::Channel;

/// What owns a dataset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
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

    /// The business account a channel's events belong to.
    pub fn of(channel: Channel) -> Owner {
        match channel {
            Channel::Whatsapp => Owner::WhatsappBusinessAccount,
            Channel::Messenger => Owner::Page,
            Channel::Instagram => Owner::InstagramAccount,
        }
    }

    /// The `msgcapi dataset` flag that names this kind of account.
    pub fn flag(self) -> &'static str {
        match self {
            Owner::Page => "--page-id",
            Owner::WhatsappBusinessAccount => "--waba-id",
            Owner::InstagramAccount => "--ig-user-id",
        }
    }
}

/// What became of one account's lookup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// The account's dataset; `created` when this lookup made it.
    Found { dataset_id: String, created: bool },
    /// The account has no dataset, and none was to be created.
    Missing,
    /// Meta refused this account (a permission it lacks, an object that does not exist or
    /// cannot be seen, an invalid id): its rows are not sent; the run goes on.
    Refused(GraphError),
    /// Transient errors outlasted the retries, or Meta asked to wait too long: try again later.
    Failed(GraphError),
    /// The run stopped (a dead token, an outage, Ctrl-C) before an answer.
    Stopped,
}

/// Looks accounts' datasets up on a sender's runtime (any thread may call it; it blocks).
pub struct Resolver<T> {
    shared: Arc<Shared<T>>,
    rt: tokio::runtime::Handle,
}

impl<T: Send + 'static> Resolver<T> {
    pub(super) fn new(shared: Arc<Shared<T>>, rt: tokio::runtime::Handle) -> Resolver<T> {
        Resolver { shared, rt }
    }

    /// Each account's dataset (created when it has none and `create`), in the order asked; at
    /// most `--concurrency` requests at once.
    pub fn resolve(&self, accounts: &[(Owner, String)], create: bool) -> Vec<Resolution> {
        let sh = &self.shared;
        let width = sh.cfg.concurrency.get();
        self.rt.block_on(async {
            let mut out: Vec<Option<Resolution>> = vec![None; accounts.len()];
            let mut running = tokio::task::JoinSet::new();
            let mut next = accounts.iter().enumerate();
            loop {
                while running.len() < width {
                    let Some((i, (_, id))) = next.next() else {
                        break;
                    };
                    let (sh, id) = (sh.clone(), id.clone());
                    running.spawn(async move { (i, resolve_one(&sh, &id, create).await) });
                }
                match running.join_next().await {
                    Some(Ok((i, r))) => out[i] = Some(r),
                    // A task that panicked: its account is looked up again next run.
                    Some(Err(_)) => {}
                    None => break,
                }
            }
            out.into_iter()
                .map(|r| r.unwrap_or(Resolution::Stopped))
                .collect()
        })
    }
}

/// One account: GET its dataset, POST to create it when it has none and `create`.
async fn resolve_one<T>(sh: &Shared<T>, account: &str, create: bool) -> Resolution {
    match request(sh, account, false).await {
        Ok(Some(dataset_id)) => Resolution::Found {
            dataset_id,
            created: false,
        },
        Ok(None) if create => match request(sh, account, true).await {
            Ok(Some(dataset_id)) => Resolution::Found {
                dataset_id,
                created: true,
            },
            Ok(None) => Resolution::Failed(GraphError {
                message: "Meta answered the creation of the dataset without its id".into(),
                ..GraphError::default()
            }),
            Err(r) => r,
        },
        Ok(None) => Resolution::Missing,
        Err(r) => r,
    }
}

/// One Dataset API request with retries: `Ok(Some(id))`, `Ok(None)` when the account has no
/// dataset, or how it failed.
async fn request<T>(
    sh: &Shared<T>,
    account: &str,
    create: bool,
) -> Result<Option<String>, Resolution> {
    let url = sh.cfg.endpoint.dataset_url(&sh.cfg.api_version, account);
    let deadline = Instant::now().checked_add(sh.cfg.max_retry_time);
    let (ended, _) = with_retries(sh, account, deadline, || once(sh, &url, create)).await;
    match ended {
        Ended::Done(Ok(id)) => Ok(id),
        Ended::Done(Err(Action::Fatal { kind, error })) => {
            sh.fatal(kind, &error);
            Err(Resolution::Stopped)
        }
        Ended::Done(Err(
            Action::CutOff { error } | Action::Reject { error } | Action::Split { error },
        )) => Err(Resolution::Refused(error)),
        Ended::Done(Err(
            Action::Retry { error, .. }
            | Action::Throttle { error, .. }
            | Action::Unknown { error },
        )) => Err(Resolution::Failed(error)),
        Ended::Done(Err(Action::Success { .. } | Action::Unreachable { .. }))
        | Ended::NotSent(_)
        | Ended::CutOff(_) => Err(Resolution::Stopped),
        Ended::GaveUp { last, why } => {
            Err(Resolution::Failed(last.unwrap_or_else(|| GraphError {
                message: match why {
                    TooLong::MetaAsked(wait) => format!(
                        "Meta asked to wait {}s before the next request",
                        wait.as_secs()
                    ),
                    TooLong::OutOfTime => "throttled past `--max-retry-time`".into(),
                },
                ..GraphError::default()
            })))
        }
    }
}

/// Sends one GET (or POST) and reads the answer: `Ok` with the id (`None`: the account has no
/// dataset), or the classifier's verdict. The token goes in a header (GET) or the body (POST),
/// never in a URL that gets logged.
async fn once<T>(sh: &Shared<T>, url: &str, create: bool) -> Result<Option<String>, Action> {
    let auth = &sh.cfg.auth;
    let req = if create {
        let mut body = serde_json::json!({ "access_token": auth.token.expose() });
        if let Some(p) = &auth.appsecret_proof {
            body["appsecret_proof"] = serde_json::json!(p);
        }
        sh.client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string())
    } else {
        let mut r = sh.client.get(url).bearer_auth(auth.token.expose());
        if let Some(p) = &auth.appsecret_proof {
            r = r.query(&[("appsecret_proof", p)]);
        }
        r
    };
    let resp = match req
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
    {
        Ok(r) => r,
        // Never `e.to_string()`: it prints the URL, whose query holds `appsecret_proof`.
        Err(e) if e.is_connect() => {
            return Err(classify_transport(
                Transport::ConnectFailed,
                &transport_detail(e),
            ));
        }
        Err(e) => return Err(retry(transport_detail(e))),
    };
    let status = resp.status().as_u16();
    let headers = response_headers(&resp);
    let body = match read_bounded(resp, MAX_ANSWER_BYTES).await {
        Ok(Some(b)) => b,
        Ok(None) => {
            return Err(Action::Reject {
                error: GraphError {
                    http_status: Some(status),
                    message: format!(
                        "Meta answered HTTP {status} with a body over {} MiB; it was not read",
                        MAX_ANSWER_BYTES >> 20
                    ),
                    ..GraphError::default()
                },
            });
        }
        Err(e) => return Err(retry(transport_detail(e))),
    };
    if (200..300).contains(&status) {
        return dataset_id(&body).ok_or_else(|| Action::Reject {
            error: GraphError {
                http_status: Some(status),
                message: "Meta answered without a dataset id".into(),
                ..GraphError::default()
            },
        });
    }
    let mut action = classify(status, &headers, &body, 0, chrono::Utc::now());
    action.scrub();
    Err(match action {
        // Looking up again is harmless: retry what would be an unknown outcome for events.
        Action::Unknown { error } => Action::Retry { after: None, error },
        other => other,
    })
}

/// No answer came: a lookup is safe to repeat.
fn retry(detail: String) -> Action {
    Action::Retry {
        after: None,
        error: GraphError {
            message: format!("no answer: {detail}"),
            ..GraphError::default()
        },
    }
}

/// The dataset id of an answer: `{"id": "..."}` (also a number), or the first of
/// `{"data": [{"id": ...}]}`; `Some(None)` when the account has none (`{"data": []}`), `None`
/// for an answer that says neither.
fn dataset_id(body: &[u8]) -> Option<Option<String>> {
    let j: serde_json::Value = serde_json::from_slice(body).ok()?;
    let id = match j.get("id") {
        Some(id) => id,
        None => match j.get("data")?.as_array()?.first() {
            Some(d) => d.get("id")?,
            None => return Some(None),
        },
    };
    let id = id
        .as_str()
        .map(String::from)
        .or_else(|| id.as_u64().map(|n| n.to_string()))?;
    crate::capi::is_graph_id(&id).then_some(Some(id))
}

#[cfg(test)]
mod tests {
    use super::dataset_id;

    #[test]
    fn the_id_comes_from_either_answer_shape() {
        assert_eq!(dataset_id(br#"{"id":"123"}"#), Some(Some("123".into())));
        assert_eq!(dataset_id(br#"{"id":123}"#), Some(Some("123".into())));
        assert_eq!(
            dataset_id(br#"{"data":[{"id":"77"}]}"#),
            Some(Some("77".into()))
        );
        assert_eq!(dataset_id(br#"{"data":[]}"#), Some(None));
        assert_eq!(dataset_id(br#"{"success":true}"#), None);
        assert_eq!(dataset_id(br#"{"id":"../x"}"#), None, "not an id");
        assert_eq!(dataset_id(b"<html>"), None);
    }
}
