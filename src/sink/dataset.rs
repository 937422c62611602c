//! `msgcapi dataset`: get (GET) or create (POST) the dataset id of a page, WhatsApp Business
//! Account or Instagram account. Same token handling and error classification as `send`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;

use super::classify::{Action, classify, fatal_message};
use super::client::{http_client, response_headers, transport_detail};
use crate::secret::Secret;

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("owner").required(true).args(["page_id", "waba_id", "ig_user_id"])))]
pub struct DatasetArgs {
    /// Facebook Page id (Messenger)
    #[arg(long, value_name = "ID")]
    pub page_id: Option<String>,
    /// WhatsApp Business Account id
    #[arg(long, value_name = "ID")]
    pub waba_id: Option<String>,
    /// Instagram professional account id
    #[arg(long, value_name = "ID")]
    pub ig_user_id: Option<String>,
    /// Create the dataset if there is none (POST); default only looks it up (GET)
    #[arg(long)]
    pub create: bool,
    /// Print JSON for scripts
    #[arg(long)]
    pub json: bool,
    /// Graph API base URL
    #[arg(long, default_value = "https://graph.facebook.com", value_name = "URL")]
    pub endpoint: String,
    /// Graph API version
    #[arg(long, default_value = "v24.0", value_name = "VERSION")]
    pub api_version: String,
    /// File holding the access token (else env MSGCAPI_ACCESS_TOKEN)
    #[arg(long, value_name = "FILE")]
    pub access_token_file: Option<PathBuf>,
    /// File holding the app secret (else env MSGCAPI_APP_SECRET; optional)
    #[arg(long, value_name = "FILE")]
    pub app_secret_file: Option<PathBuf>,
    /// Seconds to wait for an answer
    #[arg(long, default_value = "30", value_name = "SECS")]
    pub timeout: f64,
}

/// Returns the exit code: 0 printed the id, 2 usage, 3 Meta refused or unreachable.
pub fn run_dataset(args: DatasetArgs) -> Result<u8> {
    let (owner, kind) = match (&args.page_id, &args.waba_id, &args.ig_user_id) {
        (Some(p), _, _) => (p.clone(), "page"),
        (_, Some(w), _) => (w.clone(), "whatsapp_business_account"),
        (_, _, Some(i)) => (i.clone(), "instagram_account"),
        _ => unreachable!("clap requires one owner"),
    };
    if !crate::capi::is_graph_id(&owner) {
        eprintln!(
            "error: `{owner}` is not an id; expected digits, e.g. `--page-id 109876543210987`"
        );
        return Ok(crate::exit::USAGE);
    }
    let Some(token) =
        Secret::from_env_or_file("MSGCAPI_ACCESS_TOKEN", args.access_token_file.as_deref())?
    else {
        eprintln!(
            "error: no access token: set `MSGCAPI_ACCESS_TOKEN` or pass `--access-token-file FILE`"
        );
        return Ok(crate::exit::USAGE);
    };
    let proof = Secret::from_env_or_file("MSGCAPI_APP_SECRET", args.app_secret_file.as_deref())?
        .map(|s| Secret::appsecret_proof(&token, &s));
    let client = http_client(
        &args.endpoint,
        Duration::from_secs_f64(args.timeout.max(1.0)),
    )?;
    let url = format!(
        "{}/{}/{}/dataset",
        args.endpoint.trim_end_matches('/'),
        args.api_version,
        owner
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = rt.block_on(async {
        // The token goes in a header (GET) or the body (POST): never in a URL that gets logged.
        let mut req = if args.create {
            let mut body = serde_json::json!({ "access_token": token.expose() });
            if let Some(p) = &proof {
                body["appsecret_proof"] = serde_json::json!(p);
            }
            client
                .post(&url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_string())
        } else {
            let mut r = client.get(&url).bearer_auth(token.expose());
            if let Some(p) = &proof {
                r = r.query(&[("appsecret_proof", p)]);
            }
            r
        };
        req = req.header(reqwest::header::ACCEPT, "application/json");
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let headers = response_headers(&resp);
        let body = resp.bytes().await?;
        Ok::<_, reqwest::Error>((status, headers, body))
    });
    let (status, headers, body) = match result {
        Ok(x) => x,
        Err(e) => {
            // Never `e.to_string()`: it prints the URL, whose query holds `appsecret_proof`.
            eprintln!(
                "error: cannot reach `{}`: {}",
                args.endpoint,
                transport_detail(e)
            );
            return Ok(crate::exit::ABORTED);
        }
    };
    if (200..300).contains(&status) {
        let j: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let id = j.get("id").and_then(|v| {
            v.as_str()
                .map(String::from)
                .or_else(|| v.as_u64().map(|n| n.to_string()))
        });
        let Some(id) = id else {
            eprintln!("error: Meta answered without a dataset id");
            return Ok(crate::exit::ABORTED);
        };
        if args.json {
            println!(
                "{}",
                serde_json::json!({ "dataset_id": id, "owner_id": owner, "owner_type": kind, "created": args.create })
            );
        } else {
            println!("{id}");
        }
        return Ok(crate::exit::OK);
    }
    let message = match classify(status, &headers, &body, 0, chrono::Utc::now()) {
        Action::Fatal { kind, error } => fatal_message(kind, &error),
        Action::Retry { error, .. } | Action::Throttle { error, .. } => {
            format!("Meta is busy, try again later: {}", error.message)
        }
        Action::Split { error } | Action::Unknown { error } => {
            format!(
                "Meta refused: {}{}",
                error.message,
                error
                    .code
                    .map(|c| format!(" (code {c})"))
                    .unwrap_or_default()
            )
        }
        Action::Success { .. } => "unexpected answer".into(),
    };
    eprintln!("error: {message}");
    Ok(crate::exit::ABORTED)
}
