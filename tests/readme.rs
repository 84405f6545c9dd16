//! Every ```sh block of README.md runs as written, from the repository's
//! root, and exits as it says (`# expect exit N`, else 0). The one
//! ```bash block is the test command itself, which CI runs.

use std::path::Path;
use std::time::Duration;

use crate::util::{artifacts, clean_command, run, target_dir, text};

/// The README's ```sh blocks, in order.
fn sh_blocks(readme: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in readme.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```sh") => current = Some(String::new()),
            (Some(block), "```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), line) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

fn expected_exit(block: &str) -> i32 {
    block
        .lines()
        .find_map(|line| line.trim().strip_prefix("# expect exit "))
        .map_or(0, |code| {
            code.parse().expect("a status after '# expect exit'")
        })
}

#[test]
fn every_sh_block_in_the_readme_runs() {
    artifacts();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let blocks = sh_blocks(&readme);
    assert!(blocks.len() >= 6, "found {} blocks", blocks.len());
    // The README names the default target directory.
    let release = target_dir().join("release");
    for block in blocks {
        let script = block
            .replace("$PWD/target/release/", "target/release/")
            .replace("target/release/", &format!("{}/", release.display()));
        let out = run(
            clean_command("bash")
                .args(["-eo", "pipefail", "-c", &script])
                .env("CARGO_TARGET_DIR", target_dir())
                .current_dir(root),
            Duration::from_secs(300),
        );
        assert_eq!(
            out.status.code(),
            Some(expected_exit(&block)),
            "README block:\n{block}\nstdout:\n{}\nstderr:\n{}",
            text(&out.stdout),
            text(&out.stderr)
        );
    }
}

#[test]
fn blocks_are_found_and_annotated() {
    let blocks =
        sh_blocks("text\n```sh\necho a\n# expect exit 1\n```\n```bash\nno\n```\n```sh\nb\n```\n");
    assert_eq!(blocks, ["echo a\n# expect exit 1\n", "b\n"]);
    assert_eq!(expected_exit(&blocks[0]), 1);
    assert_eq!(expected_exit(&blocks[1]), 0);
}
