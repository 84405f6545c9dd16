//! One option per user-facing `DELAYSHIM_*` setting, built from the
//! settings table with clap's builder API, so `run`, `fuzz`, the README and
//! the shim cannot drift apart. Values are checked by the shim itself (the
//! preflight); here only units and paths are converted.

use std::path::Path;

use clap::{Arg, ArgMatches, Command};
use delayshim_campaign::plan::PER_RUN_VARS;
use delayshim_settings::{Kind, Setting, SETTINGS};

/// The settings given as options. `CAMPAIGN` leaves out the variables a
/// campaign sets for each run itself (and replaying one fixed record,
/// which would make every run the same).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShimSettings<const CAMPAIGN: bool> {
    /// The variable and its converted value, in the table's order.
    pub values: Vec<(&'static str, String)>,
}

impl<const CAMPAIGN: bool> ShimSettings<CAMPAIGN> {
    /// The settings that are options of this command.
    pub fn options() -> impl Iterator<Item = (&'static Setting, &'static str)> {
        SETTINGS.iter().filter_map(|setting| {
            let option = setting.option?;
            let campaign_owned =
                PER_RUN_VARS.contains(&setting.var) || setting.var == "DELAYSHIM_REPLAY";
            (!(CAMPAIGN && campaign_owned)).then_some((setting, option))
        })
    }

    /// The value given for `var`, converted.
    pub fn get(&self, var: &str) -> Option<&str> {
        self.values
            .iter()
            .find(|(name, _)| *name == var)
            .map(|(_, v)| v.as_str())
    }

    /// Takes `var` out of the settings, returning its value.
    pub fn take(&mut self, var: &str) -> Option<String> {
        let at = self.values.iter().position(|(name, _)| *name == var)?;
        Some(self.values.remove(at).1)
    }

    /// As environment variables.
    pub fn env(&self) -> Vec<(String, String)> {
        self.values
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }
}

impl<const CAMPAIGN: bool> clap::FromArgMatches for ShimSettings<CAMPAIGN> {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let values = Self::options()
            .filter_map(|(setting, option)| {
                let value = matches.get_one::<String>(option)?;
                Some((setting.var, value.clone()))
            })
            .collect();
        Ok(ShimSettings { values })
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

impl<const CAMPAIGN: bool> clap::Args for ShimSettings<CAMPAIGN> {
    fn augment_args(command: Command) -> Command {
        let command =
            command.next_help_heading("Shim settings (each sets the DELAYSHIM_* variable named)");
        Self::options().fold(command, |command, (setting, option)| {
            let kind = setting.kind;
            let var = setting.var;
            let help = if CAMPAIGN && var == "DELAYSHIM_STRATEGY" {
                format!(
                    "{}; or auto: each run draws a strategy and its parameters from its seed, \
                     or locks: every, over lock calls only. {var}, default auto in a campaign",
                    capitalized(setting.help)
                )
            } else {
                format!(
                    "{}. {var}, default {}",
                    capitalized(setting.help),
                    setting.default
                )
            };
            command.arg(
                Arg::new(option)
                    .long(option)
                    .value_name(setting.value_name)
                    .help(help)
                    .value_parser(move |value: &str| match var {
                        "DELAYSHIM_FUNCS" => check_funcs(value),
                        _ => convert(kind, value),
                    }),
            )
        })
    }

    fn augment_args_for_update(command: Command) -> Command {
        Self::augment_args(command)
    }
}

/// `--funcs`: every entry a family, a function the shim interposes, or
/// `all`; a wrong one is named, with the nearest right one.
pub fn check_funcs(value: &str) -> Result<String, String> {
    let names: Vec<&str> = std::iter::once("all")
        .chain(delayshim_settings::FAMILIES.iter().map(|f| f.name))
        .chain(
            delayshim_settings::FAMILIES
                .iter()
                .flat_map(|f| f.functions.iter().copied()),
        )
        .collect();
    for entry in value.split(',').map(str::trim) {
        if !names.contains(&entry) {
            let families: Vec<&str> = delayshim_settings::FAMILIES
                .iter()
                .map(|f| f.name)
                .collect();
            return Err(format!(
                "no family or function named {entry:?}{}; families: {} (delayshim check PROGRAM lists the functions)",
                crate::suggest::did_you_mean(entry, names.iter().copied()),
                families.join(", ")
            ));
        }
    }
    Ok(value.to_owned())
}

fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// An option's value as the shim reads it: microseconds without a unit,
/// absolute paths.
pub fn convert(kind: Kind, value: &str) -> Result<String, String> {
    match kind {
        Kind::Text => Ok(value.to_owned()),
        Kind::Micros => Ok(micros(value)),
        Kind::MicrosRange => match value.split_once('-') {
            Some((min, max)) => Ok(format!("{}-{}", micros(min), micros(max))),
            None => Ok(value.to_owned()),
        },
        Kind::Path if value == "stderr" || value.is_empty() => Ok(value.to_owned()),
        // The usual spellings of standard error: the shim's own name for
        // it writes there without opening a path (/dev/stderr is a link).
        Kind::Path if value == "-" || value == "/dev/stderr" => Ok("stderr".to_owned()),
        Kind::Path => {
            let cwd = std::env::current_dir().map_err(|e| format!("the current directory: {e}"))?;
            Ok(cwd.join(Path::new(value)).to_string_lossy().into_owned())
        }
    }
}

/// `500us`, `2ms`, `1.5s` to microseconds; anything else unchanged, for the
/// shim to accept or refuse.
fn micros(value: &str) -> String {
    let value = value.trim();
    let units = [("us", 1.0), ("µs", 1.0), ("ms", 1e3), ("s", 1e6)];
    for (unit, factor) in units {
        if let Some(number) = value.strip_suffix(unit) {
            if let Ok(n) = number.trim().parse::<f64>() {
                if n.is_finite() && n >= 0.0 {
                    let us = n * factor;
                    return if us.fract() == 0.0 {
                        format!("{us:.0}")
                    } else {
                        format!("{us}")
                    };
                }
            }
        }
    }
    value.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Args as _, FromArgMatches as _};

    #[test]
    fn units_become_microseconds() {
        assert_eq!(micros("500us"), "500");
        assert_eq!(micros("2ms"), "2000");
        assert_eq!(micros("1s"), "1000000");
        assert_eq!(micros("1.5ms"), "1500");
        assert_eq!(micros("0.5us"), "0.5");
        assert_eq!(micros("250"), "250");
        assert_eq!(micros("fast"), "fast", "left for the shim to refuse");
        assert_eq!(convert(Kind::MicrosRange, "10us-2ms").unwrap(), "10-2000");
        assert_eq!(convert(Kind::Path, "stderr").unwrap(), "stderr");
        assert_eq!(convert(Kind::Path, "-").unwrap(), "stderr");
        assert_eq!(convert(Kind::Path, "/dev/stderr").unwrap(), "stderr");
        assert_eq!(
            check_funcs("write, fsync,flock").unwrap(),
            "write, fsync,flock"
        );
        let error = check_funcs("write,fsycn").unwrap_err();
        assert!(
            error.starts_with("no family or function named \"fsycn\" (did you mean fsync?)"),
            "{error}"
        );
        assert!(convert(Kind::Path, "s.jsonl").unwrap().starts_with('/'));
    }

    #[test]
    fn every_user_setting_is_an_option_and_campaigns_own_theirs() {
        let run = ShimSettings::<false>::augment_args(Command::new("run"));
        for setting in SETTINGS {
            let found = run.get_arguments().any(|a| a.get_long() == setting.option);
            assert_eq!(found, setting.option.is_some(), "{}", setting.var);
        }
        let fuzz = ShimSettings::<true>::augment_args(Command::new("fuzz"));
        for var in PER_RUN_VARS {
            let option = delayshim_settings::find(var).unwrap().option;
            assert!(
                !fuzz.get_arguments().any(|a| a.get_long() == option),
                "{var} is the campaign's"
            );
        }
        let matches = run
            .try_get_matches_from(["run", "--mean", "2ms", "--funcs", "write,flock"])
            .unwrap();
        let settings = ShimSettings::<false>::from_arg_matches(&matches).unwrap();
        assert_eq!(
            settings.values,
            [
                ("DELAYSHIM_MEAN_US", "2000".to_owned()),
                ("DELAYSHIM_FUNCS", "write,flock".to_owned())
            ]
        );
        assert_eq!(settings.get("DELAYSHIM_FUNCS"), Some("write,flock"));
    }
}
