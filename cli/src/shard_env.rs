//! `--shard auto`: this machine's share of a campaign from the variables
//! the engine that started it sets, so that a campaign runs on an existing
//! engine without a wrapper script.

use delayshim_campaign::Shard;

/// An engine's index variable, whether it counts from 0, and its count
/// variable if it has one.
const ENGINES: [(&str, &str, bool, Option<&str>); 6] = [
    (
        "Slurm job array",
        "SLURM_ARRAY_TASK_ID",
        false,
        Some("SLURM_ARRAY_TASK_COUNT"),
    ),
    ("Kubernetes Indexed Job", "JOB_COMPLETION_INDEX", true, None),
    (
        "GitLab CI parallel",
        "CI_NODE_INDEX",
        false,
        Some("CI_NODE_TOTAL"),
    ),
    (
        "CircleCI parallelism",
        "CIRCLE_NODE_INDEX",
        true,
        Some("CIRCLE_NODE_TOTAL"),
    ),
    (
        "Buildkite parallelism",
        "BUILDKITE_PARALLEL_JOB",
        true,
        Some("BUILDKITE_PARALLEL_JOB_COUNT"),
    ),
    ("GNU parallel's job slot", "PARALLEL_JOBSLOT", false, None),
];

/// `--shard`'s value: `I/N`, `auto` or `auto/N` (N given where the
/// engine does not say it: Kubernetes, GNU parallel).
pub fn parse(value: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Shard, String> {
    let Some(rest) = value.strip_prefix("auto") else {
        return value.parse();
    };
    let given: Option<u64> = match rest.strip_prefix('/') {
        Some(count) => Some(
            count
                .parse()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("expected auto/N with N at least 1; got {value:?}"))?,
        ),
        None if rest.is_empty() => None,
        None => return Err(format!("expected I/N, auto or auto/N; got {value:?}")),
    };
    let names: Vec<&str> = ENGINES.iter().map(|e| e.1).collect();
    let (engine, index_var, from_zero, count_var) = ENGINES
        .iter()
        .find(|engine| env(engine.1).is_some())
        .ok_or_else(|| {
            format!(
                "--shard auto: no shard index in the environment (looked for {})",
                names.join(", ")
            )
        })?;
    let number = |var: &str| -> Result<u64, String> {
        env(var).unwrap_or_default().trim().parse().map_err(|_| {
            format!(
                "--shard auto: {var}={:?} is not a number",
                env(var).unwrap_or_default()
            )
        })
    };
    let mut index = number(index_var)?;
    if *index_var == "SLURM_ARRAY_TASK_ID" {
        // An array may start anywhere (--array=5-8).
        if let Some(min) = env("SLURM_ARRAY_TASK_MIN") {
            index -= min.trim().parse::<u64>().unwrap_or(0).min(index);
            index += 1;
        }
    } else if *from_zero {
        index += 1;
    }
    let counted = count_var.map(number).transpose()?;
    let count = match (given, counted) {
        (Some(given), Some(counted)) if given != counted => {
            return Err(format!(
                "--shard auto/{given}: the {engine} says {counted} ({})",
                count_var.unwrap_or_default()
            ))
        }
        (Some(count), _) | (None, Some(count)) => count,
        (None, None) => {
            return Err(format!(
                "--shard auto: the {engine} ({index_var}) does not say how many shards there are: give --shard auto/N"
            ))
        }
    };
    format!("{index}/{count}")
        .parse()
        .map_err(|e: String| format!("--shard auto from the {engine}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn each_engine_gives_index_and_count() {
        let shard =
            |value: &str, vars: &[(&str, &str)]| parse(value, &with(vars)).map(|s| s.to_string());
        assert_eq!(shard("2/4", &[]), Ok("2/4".into()));
        assert_eq!(
            shard(
                "auto",
                &[
                    ("SLURM_ARRAY_TASK_ID", "6"),
                    ("SLURM_ARRAY_TASK_MIN", "5"),
                    ("SLURM_ARRAY_TASK_COUNT", "4")
                ]
            ),
            Ok("2/4".into())
        );
        assert_eq!(
            shard("auto/8", &[("JOB_COMPLETION_INDEX", "0")]),
            Ok("1/8".into())
        );
        assert!(shard("auto", &[("JOB_COMPLETION_INDEX", "0")])
            .unwrap_err()
            .contains("give --shard auto/N"));
        assert_eq!(
            shard("auto", &[("CI_NODE_INDEX", "3"), ("CI_NODE_TOTAL", "3")]),
            Ok("3/3".into())
        );
        assert_eq!(
            shard(
                "auto",
                &[("CIRCLE_NODE_INDEX", "0"), ("CIRCLE_NODE_TOTAL", "2")]
            ),
            Ok("1/2".into())
        );
        assert_eq!(
            shard(
                "auto",
                &[
                    ("BUILDKITE_PARALLEL_JOB", "4"),
                    ("BUILDKITE_PARALLEL_JOB_COUNT", "5")
                ]
            ),
            Ok("5/5".into())
        );
        assert_eq!(
            shard("auto/4", &[("PARALLEL_JOBSLOT", "4")]),
            Ok("4/4".into())
        );
        assert!(shard("auto", &[])
            .unwrap_err()
            .contains("no shard index in the environment"));
        assert!(
            shard("auto/3", &[("CI_NODE_INDEX", "1"), ("CI_NODE_TOTAL", "2")])
                .unwrap_err()
                .contains("says 2")
        );
        assert!(shard("auto", &[("CI_NODE_INDEX", "3"), ("CI_NODE_TOTAL", "2")]).is_err());
        assert!(shard("autox", &[]).is_err());
    }
}
