//! `delayshim manpage [SUBCOMMAND] [--dir DIR]`: roff pages from the same
//! clap definitions as --help (clap_mangen), one per subcommand, each with
//! the shim's settings as its ENVIRONMENT section.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::CommandFactory as _;
use delayshim_settings::SETTINGS;

/// Prints a man page, or writes every one to a directory.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The subcommand whose page to print, delayshim-SUBCOMMAND(1)
    /// (default: delayshim(1)).
    subcommand: Option<String>,
    /// Write every page (delayshim.1, delayshim-run.1, ...) into DIR.
    #[arg(long, value_name = "DIR", conflicts_with = "subcommand")]
    dir: Option<PathBuf>,
}

/// The command with its subcommands named `delayshim-NAME`, as man pages
/// call them.
fn built() -> clap::Command {
    let mut command = crate::Cli::command().disable_help_subcommand(true);
    command.build();
    command
}

/// The page of `command` followed by the ENVIRONMENT section.
fn render(command: clap::Command, out: &mut dyn Write) -> std::io::Result<()> {
    clap_mangen::Man::new(command).render(out)?;
    out.write_all(environment().as_bytes())
}

/// Every `DELAYSHIM_*` setting, its option and default.
fn environment() -> String {
    let escape = |text: &str| text.replace('\\', "\\e").replace('-', "\\-");
    let mut roff = String::from(".SH ENVIRONMENT\n");
    roff.push_str(&escape(
        "The shim reads these settings once, when it is loaded; run and fuzz take each as the option named. A bad value or an unknown DELAYSHIM_* name stops the program with exit status 64.",
    ));
    roff.push('\n');
    for setting in SETTINGS {
        let option = setting
            .option
            .map(|option| format!(" (--{option})"))
            .unwrap_or_default();
        let default = if setting.default.is_empty() {
            String::new()
        } else {
            format!("; default {}", setting.default)
        };
        roff.push_str(&format!(
            ".TP\n\\fB{}\\fR{}\n{}{}\n",
            escape(setting.var),
            escape(&option),
            escape(setting.help),
            escape(&default)
        ));
    }
    roff
}

pub fn main(args: Args) -> u8 {
    let result = (|| -> Result<()> {
        let command = built();
        if let Some(dir) = &args.dir {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            let mut pages = vec![command.clone()];
            pages.extend(
                command
                    .get_subcommands()
                    .filter(|s| !s.is_hide_set())
                    .cloned(),
            );
            for page in pages {
                let name = page
                    .get_display_name()
                    .unwrap_or(page.get_name())
                    .to_owned();
                let path = dir.join(format!("{name}.1"));
                let mut file = std::fs::File::create(&path)
                    .with_context(|| format!("writing {}", path.display()))?;
                render(page, &mut file).with_context(|| format!("writing {}", path.display()))?;
            }
            return Ok(());
        }
        let page = match &args.subcommand {
            None => command,
            Some(name) => command.find_subcommand(name).cloned().with_context(|| {
                let names: Vec<&str> = command
                    .get_subcommands()
                    .filter(|s| !s.is_hide_set())
                    .map(|s| s.get_name())
                    .collect();
                format!("no subcommand {name:?}: {}", names.join(", "))
            })?,
        };
        let mut text = Vec::new();
        render(page, &mut text)?;
        delayshim_campaign::output::print(&String::from_utf8_lossy(&text));
        Ok(())
    })();
    match result {
        Ok(()) => 0,
        Err(error) => {
            eprintln!("delayshim manpage: error: {error:#}");
            2
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_subcommand_has_a_page_with_the_settings() {
        let command = built();
        for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
            let mut page = Vec::new();
            render(sub.clone(), &mut page).unwrap();
            let page = String::from_utf8(page).unwrap();
            let name = format!("delayshim-{}", sub.get_name());
            assert!(page.contains(&format!(".TH {name} 1 ")), "{page}");
            assert!(page.contains(".SH ENVIRONMENT"), "{name}");
            assert!(
                page.contains("DELAYSHIM_MEAN_US\\fR (\\-\\-mean)"),
                "{name}"
            );
        }
    }
}
