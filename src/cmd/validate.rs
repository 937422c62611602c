//! `msgcapi validate`: read, map, validate and deduplicate; report every row; send nothing.

use crate::cli::RunArgs;
use crate::error::Result;

pub fn run(args: RunArgs) -> Result<u8> {
    crate::report::summary::register(args.summary_json.as_ref(), "validate");
    let cfg = crate::config::validate(args, super::interrupt_flag())?;
    Ok(crate::pipeline::run(cfg)?.exit_code)
}
