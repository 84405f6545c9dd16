//! What a campaign tells as it goes. The library reports through
//! [`Events`]; the command decides what to show (a line per run, a live
//! progress line on a terminal) and tests record what was told.

use std::time::Duration;

use crate::report::Summary;
use crate::run::RunResult;

/// Where a campaign stands: what a progress line shows.
#[derive(Debug)]
pub struct Standing<'a> {
    /// The totals so far.
    pub summary: &'a Summary,
    /// Since the campaign started.
    pub elapsed: Duration,
    /// `--strategy auto`'s leading cell (arm and scale), once it has one.
    pub leading: Option<String>,
}

/// The campaign's reports, all made from the thread that called
/// [`crate::run_campaign`].
pub trait Events {
    /// A line about the campaign as a whole: what it will run, what the
    /// calibration run found.
    fn notice(&mut self, text: &str);
    /// A run ended: its result, the lines that describe it (a failure's
    /// output, reproduce line and replays included) and where the
    /// campaign stands now.
    fn run_ended(&mut self, result: &RunResult, lines: &str, standing: &Standing<'_>);
    /// No run ended for a while: where the campaign stands.
    fn waiting(&mut self, standing: &Standing<'_>);
    /// The campaign ended: its totals and their closing lines.
    fn finished(&mut self, summary: &Summary, text: &str);
    /// The campaign stopped on an error (which the caller gets).
    fn stopped(&mut self) {}
}
