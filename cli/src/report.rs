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
/// two directories counts once; one run (same seed, settings and
/// program) with different outcomes in two directories is shown with each
/// and flagged.
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
            let conflicts = merged.conflict_lines().len();
            if conflicts > 0 {
                eprintln!(
                    "delayshim report: warning: {conflicts} run{} had different outcomes in different directories; each outcome is shown and counted",
                    if conflicts == 1 { "" } else { "s" }
                );
            }
            if args.json {
                output::print(&format!("{:#}\n", merged.json()));
            } else {
                output::print(&merged.markdown());
                output::print(&delayshim_campaign::conflicts::campaign::markdown(
                    &args.dirs,
                ));
            }
            merged.exit_code()
        }
        Err(error) => {
            eprintln!("delayshim report: error: {error:#}");
            2
        }
    }
}
