//! `msgcapi validate`: read, map, validate and deduplicate; report every row; send nothing.

use crate::cli::RunArgs;
use crate::error::Result;

pub fn run(args: RunArgs) -> Result<u8> {
    let cfg = crate::config::validate(args, super::interrupt_flag())?;
    Ok(crate::pipeline::run(cfg)?.exit_code)
}
