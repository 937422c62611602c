//! `msgcapi emulator`: serve a local stand-in for the Graph API until killed.

use crate::cli::EmulatorArgs;
use crate::error::{Result, exit};

pub fn run(args: EmulatorArgs) -> Result<u8> {
    crate::emulator::run(args)?;
    Ok(exit::OK)
}
