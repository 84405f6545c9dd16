//! A campaign's events as `delayshim fuzz` prints them: a line per run
//! and the closing lines; on a terminal, one live progress line instead
//! of a line per passing run.

use delayshim_campaign::events::{Events, Standing};
use delayshim_campaign::output;
use delayshim_campaign::report::{Summary, PREFIX};
use delayshim_campaign::run::RunResult;

/// Prints what a campaign tells, to standard output (which may close).
#[derive(Debug)]
pub struct Printer {
    /// Show the live progress line (standard output is a terminal).
    progress: bool,
    /// Whether the progress line is on the screen now.
    shown: bool,
}

impl Printer {
    pub fn new(progress: bool) -> Printer {
        Printer {
            progress,
            shown: false,
        }
    }

    fn show(&mut self, standing: &Standing<'_>) {
        if !self.progress {
            return;
        }
        let Standing {
            summary,
            elapsed,
            leading,
        } = standing;
        let left = if summary.done == 0 {
            "time left unknown".to_owned()
        } else {
            let per_run = elapsed.as_secs_f64() / summary.done as f64;
            let seconds = per_run * summary.planned.saturating_sub(summary.done) as f64;
            format!("about {} left", human_seconds(seconds))
        };
        let leading = leading
            .as_ref()
            .map_or(String::new(), |cell| format!(", leading {cell}"));
        output::print(&format!(
            "\r\x1b[K{PREFIX}: {}/{} runs done, {} failed, {:.0} s elapsed, {left}{leading}",
            summary.done,
            summary.planned,
            summary.failures(),
            elapsed.as_secs_f64()
        ));
        self.shown = true;
    }

    fn clear(&mut self) {
        if self.shown {
            output::print("\r\x1b[K");
            self.shown = false;
        }
    }
}

impl Events for Printer {
    fn notice(&mut self, text: &str) {
        self.clear();
        output::print(text);
    }

    fn run_ended(&mut self, result: &RunResult, lines: &str, standing: &Standing<'_>) {
        self.clear();
        if !self.progress || !result.outcome.is_pass() {
            output::print(lines);
        }
        self.show(standing);
    }

    fn waiting(&mut self, standing: &Standing<'_>) {
        self.show(standing);
    }

    fn finished(&mut self, _summary: &Summary, text: &str) {
        self.clear();
        output::print(text);
    }

    fn stopped(&mut self) {
        self.clear();
    }
}

fn human_seconds(seconds: f64) -> String {
    if seconds < 90.0 {
        format!("{seconds:.0} s")
    } else if seconds < 5400.0 {
        format!("{:.0} min", seconds / 60.0)
    } else {
        format!("{:.1} h", seconds / 3600.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_left_reads_naturally() {
        assert_eq!(human_seconds(12.4), "12 s");
        assert_eq!(human_seconds(600.0), "10 min");
        assert_eq!(human_seconds(7200.0), "2.0 h");
    }
}
