//! `msgcapi dataset`: print the dataset id of a page, WhatsApp Business Account or Instagram
//! account, creating it with `--create`.

use crate::cli::DatasetArgs;
use crate::error::{Error, Result, exit};
use crate::sink::dataset::{Owner, get_or_create};

/// 0 printed the id; 2 usage; 3 Meta refused or could not be reached.
pub fn run(args: DatasetArgs) -> Result<u8> {
    let (owner_id, owner) = match (&args.page_id, &args.waba_id, &args.ig_user_id) {
        (Some(p), _, _) => (p, Owner::Page),
        (_, Some(w), _) => (w, Owner::WhatsappBusinessAccount),
        (_, _, Some(i)) => (i, Owner::InstagramAccount),
        // clap requires exactly one of the three.
        _ => {
            return Err(Error::Usage(
                "give `--page-id`, `--waba-id` or `--ig-user-id`".into(),
            ));
        }
    };
    if !crate::capi::is_graph_id(owner_id) {
        return Err(Error::Usage(format!(
            "`{owner_id}` is not an id; expected digits, e.g. `--page-id 109876543210987`"
        )));
    }
    let endpoint = crate::config::endpoint(&args.graph)?;
    let auth = crate::config::credentials(&args.graph)?;
    let g = &args.graph;
    let id = get_or_create(
        &endpoint,
        &g.api_version,
        owner_id,
        args.create,
        &auth,
        g.timeout,
    )
    .map_err(|e| Error::Remote(e.to_string()))?;
    if args.json {
        println!(
            "{}",
            serde_json::json!({ "dataset_id": id, "owner_id": owner_id, "owner_type": owner.kind(), "created": args.create })
        );
    } else {
        println!("{id}");
    }
    Ok(exit::OK)
}
