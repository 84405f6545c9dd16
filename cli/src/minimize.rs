//! `delayshim minimize RUN_DIR`: the explanation of a failure, the fewest
//! delays that still make it fail. Not built yet: it needs the shim's
//! record and replay (DELAYSHIM_RECORD, DELAYSHIM_REPLAY).

use std::path::PathBuf;

/// Not built yet: the fewest delays that still make a failing run fail.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A failing run's directory, like fuzz-out/SEED/run-3.
    run_dir: PathBuf,
}

/// Says so and exits 2: no output that could pass for an explanation.
pub fn main(args: Args) -> u8 {
    eprintln!(
        "delayshim minimize: not built yet: {} was not examined (it needs the shim's record and replay)",
        args.run_dir.display()
    );
    2
}
