//! `delayshim report DIR...`: several campaigns' or shards' output
//! directories in one summary.

use std::path::PathBuf;

use delayshim_campaign::merge::merge;
use delayshim_campaign::output;

/// Merges campaigns' or shards' output directories into one summary.
///
/// For the shards of one campaign (`delayshim fuzz --shard I/N`) or several
/// campaigns: runs, results by kind, failing seeds with their reproduce
/// lines, and figures per strategy, as Markdown (or JSON). A run found in
/// two directories counts once.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Campaign output directories (each holds a summary.json).
    #[arg(required = true, value_name = "DIR")]
    dirs: Vec<PathBuf>,
    /// Print JSON instead of Markdown.
    #[arg(long)]
    json: bool,
}

pub fn main(args: Args) -> u8 {
    match merge(&args.dirs) {
        Ok(merged) => {
            if args.json {
                output::print(&format!("{:#}\n", merged.json()));
            } else {
                output::print(&merged.markdown());
            }
            merged.exit_code()
        }
        Err(error) => {
            eprintln!("delayshim report: error: {error:#}");
            2
        }
    }
}
