//! `msgcapi send`: validate, then deliver the valid events to the Conversions API.

use crate::cli::SendArgs;
use crate::error::Result;

pub fn run(args: SendArgs) -> Result<u8> {
    crate::report::summary::register(args.run.summary_json.as_ref(), "send");
    let (cfg, emulator) = crate::config::send(args, super::interrupt_flag())?;
    let outcome = crate::pipeline::run(cfg);
    // The built-in emulator (`--emulator`) serves until the run is over.
    drop(emulator);
    Ok(outcome?.exit_code)
}
