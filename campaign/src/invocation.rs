//! One way to start the program, shared by a campaign's runs, their
//! run.json (which replays read) and every shell line shown to people:
//! program, arguments, environment, directory, timeout, and `--fresh-dir`
//! with its `--setup`. [`Invocation::shell_line`] is the one renderer of
//! such a line.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::fresh::RUN_DIR_VAR;

/// Quotes one word for a POSIX shell.
pub fn shell_word(word: &[u8]) -> String {
    let plain = !word.is_empty()
        && word
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"_-./:=,+@%".contains(b));
    let text = String::from_utf8_lossy(word);
    if plain {
        text.into_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

pub fn shell_words<'a>(words: impl IntoIterator<Item = &'a OsString>) -> String {
    words
        .into_iter()
        .map(|w| shell_word(w.as_bytes()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A run's program, environment and directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub program: OsString,
    pub args: Vec<OsString>,
    /// Every variable the campaign set for the run (LD_PRELOAD, settings,
    /// seed and files).
    pub env: Vec<(String, OsString)>,
    pub cwd: PathBuf,
    pub timeout: Duration,
    /// `--fresh-dir`: each replay in a new empty directory beside `cwd`
    /// (`{dir}` in `args` and `DELAYSHIM_RUN_DIR`), prepared by `setup`.
    pub fresh_dir: bool,
    pub setup: Option<OsString>,
    /// `--check`: a shell command run after the program, whose failure is
    /// the run's; replays run it too.
    pub check: Option<OsString>,
}

fn bytes(value: &OsString) -> serde_json::Value {
    // Hex keeps any bytes; the shell line below shows them to people.
    serde_json::Value::String(
        value
            .as_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
    )
}

fn unhex(value: &serde_json::Value) -> Option<OsString> {
    let text = value.as_str()?;
    let bytes: Option<Vec<u8>> = (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect();
    Some(OsString::from_vec(bytes?))
}

impl Invocation {
    pub fn write(&self, path: &Path) -> Result<()> {
        let json = serde_json::json!({
            "program": bytes(&self.program),
            "args": self.args.iter().map(bytes).collect::<Vec<_>>(),
            "env": self.env.iter().map(|(k, v)| serde_json::json!([k, bytes(v)])).collect::<Vec<_>>(),
            "cwd": bytes(&self.cwd.clone().into_os_string()),
            "timeout_seconds": self.timeout.as_secs_f64(),
            "fresh_dir": self.fresh_dir,
            "setup": self.setup.as_ref().map(bytes),
            "check": self.check.as_ref().map(bytes),
            "shell": self.shell_line(&[]),
        });
        std::fs::write(path, serde_json::to_string_pretty(&json)? + "\n")
            .with_context(|| format!("writing {}", path.display()))
    }

    pub fn read(path: &Path) -> Result<Invocation> {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!(
                "reading {}: not the directory of a run of delayshim fuzz",
                path.display()
            )
        })?;
        let json: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        let parse = || -> Option<Invocation> {
            Some(Invocation {
                program: unhex(&json["program"])?,
                args: json["args"]
                    .as_array()?
                    .iter()
                    .map(unhex)
                    .collect::<Option<_>>()?,
                env: json["env"]
                    .as_array()?
                    .iter()
                    .map(|pair| Some((pair[0].as_str()?.to_owned(), unhex(&pair[1])?)))
                    .collect::<Option<_>>()?,
                cwd: PathBuf::from(unhex(&json["cwd"])?),
                timeout: Duration::try_from_secs_f64(json["timeout_seconds"].as_f64()?).ok()?,
                fresh_dir: json["fresh_dir"].as_bool().unwrap_or(false),
                setup: match &json["setup"] {
                    serde_json::Value::Null => None,
                    setup => Some(unhex(setup)?),
                },
                check: match &json["check"] {
                    serde_json::Value::Null => None,
                    check => Some(unhex(check)?),
                },
            })
        };
        match parse() {
            Some(invocation) => Ok(invocation),
            None => bail!(
                "{} is not a run description of delayshim fuzz",
                path.display()
            ),
        }
    }

    /// The environment with `changes` applied (`None` removes a variable).
    pub fn env_with(&self, changes: &[(&str, Option<&OsString>)]) -> Vec<(String, OsString)> {
        let mut env: Vec<(String, OsString)> = self
            .env
            .iter()
            .filter(|(k, _)| !changes.iter().any(|(c, _)| c == k))
            .cloned()
            .collect();
        env.extend(
            changes
                .iter()
                .filter_map(|(k, v)| Some(((*k).to_owned(), (*v)?.clone()))),
        );
        env
    }

    /// The program and its arguments as shell words.
    pub fn command_line(&self) -> String {
        shell_words(std::iter::once(&self.program).chain(&self.args))
    }

    /// The one shell line that runs the program as this invocation does,
    /// with `changes` to its environment: in its directory, or with
    /// `fresh_dir` in a new one (`mktemp -d`, `--setup` run there first,
    /// `{dir}` and `DELAYSHIM_RUN_DIR` naming it).
    pub fn shell_line(&self, changes: &[(&str, Option<&OsString>)]) -> String {
        let mut line = if self.fresh_dir {
            let mut line = "d=$(mktemp -d) && cd \"$d\" && ".to_owned();
            if let Some(setup) = &self.setup {
                let _ = write!(
                    line,
                    "{RUN_DIR_VAR}=\"$d\" sh -c {} && ",
                    shell_word(setup.as_bytes())
                );
            }
            let _ = write!(line, "{RUN_DIR_VAR}=\"$d\" ");
            line
        } else {
            format!("cd {} && ", shell_word(self.cwd.as_os_str().as_bytes()))
        };
        for (name, value) in self.env_with(changes) {
            // A fresh directory's name is the new one's, "$d", above.
            if !(self.fresh_dir && name == RUN_DIR_VAR) {
                let _ = write!(line, "{name}={} ", shell_word(value.as_bytes()));
            }
        }
        let mut command = self.command_line();
        if self.fresh_dir {
            // Every word holding `{dir}` is single-quoted (`{` is not plain).
            command = command.replace("{dir}", "'\"$d\"'");
        }
        line + &command
    }

    /// The changes that replay `replay` (or turn delays off for `None`):
    /// nothing is recorded, and statistics and the log go nowhere.
    pub fn replay_changes(replay: Option<&OsString>) -> Vec<(&'static str, Option<&OsString>)> {
        vec![
            ("DELAYSHIM_REPLAY", replay),
            ("DELAYSHIM_RECORD", None),
            ("DELAYSHIM_STATS", None),
            ("DELAYSHIM_LOG", None),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_quoted_only_when_needed() {
        assert_eq!(shell_word(b"/usr/bin/driver"), "/usr/bin/driver");
        assert_eq!(shell_word(b"a b"), "'a b'");
        assert_eq!(shell_word(b"it's"), r"'it'\''s'");
        assert_eq!(shell_word(b""), "''");
        assert_eq!(shell_word(b"*.db"), "'*.db'");
    }

    #[test]
    fn a_fresh_directory_runs_line_makes_a_directory_of_its_own() {
        // As run.json has it: the run's own work directory, named in the
        // environment; `{dir}` left in the arguments.
        let run = Invocation {
            program: "prog".into(),
            args: vec!["{dir}/db".into()],
            env: vec![
                ("LD_PRELOAD".into(), "/x/libdelayshim.so".into()),
                (RUN_DIR_VAR.into(), "/out/run-3/work".into()),
            ],
            cwd: "/out/run-3/work".into(),
            timeout: Duration::from_secs(1),
            fresh_dir: true,
            setup: Some("touch a".into()),
            check: None,
        };
        let replay = OsString::from("/out/run-3/minimal.txt");
        let line = run.shell_line(&Invocation::replay_changes(Some(&replay)));
        assert_eq!(
            line,
            "d=$(mktemp -d) && cd \"$d\" && DELAYSHIM_RUN_DIR=\"$d\" sh -c 'touch a' && \
             DELAYSHIM_RUN_DIR=\"$d\" LD_PRELOAD=/x/libdelayshim.so \
             DELAYSHIM_REPLAY=/out/run-3/minimal.txt prog ''\"$d\"'/db'"
        );
        assert!(!line.contains("run-3/work"), "{line}");
    }
}
