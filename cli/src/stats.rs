//! `delayshim stats FILE...`: sums statistics lines per function and family,
//! per executable and in total.

use std::path::PathBuf;

use delayshim_campaign::output;
use delayshim_campaign::StatsTable;

/// Sums statistics lines into a table per function and family.
///
/// Reads DELAYSHIM_STATS files (a run's stats.jsonl): calls, delayed, delay
/// time, faults and any other count the shim writes, per executable and in
/// total.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Statistics files: one JSON line per process.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    /// Print JSON instead of the table.
    #[arg(long)]
    json: bool,
}

pub fn main(args: Args) -> u8 {
    match StatsTable::read(&args.files) {
        Ok(table) if args.json => {
            output::print(&format!("{:#}\n", table.json()));
            0
        }
        Ok(table) => {
            output::print(&table.text());
            0
        }
        Err(error) => {
            eprintln!("delayshim stats: error: {error:#}");
            2
        }
    }
}
