//! Builds libdelayshim.so for the command to carry inside itself. A crate
//! cannot depend on a cdylib's file on stable Rust, so this runs a nested
//! `cargo build --release -p delayshim` with its own target directory
//! under OUT_DIR, and main.rs embeds the result with `include_bytes!`.
//! Works both in the workspace and under `cargo install --path cli`.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(env("CARGO_MANIFEST_DIR"));
    let workspace = manifest_dir.parent().expect("cli/ sits in the workspace");
    for watched in ["shim", "settings", "Cargo.lock"] {
        println!(
            "cargo:rerun-if-changed={}",
            workspace.join(watched).display()
        );
    }
    let target_dir = PathBuf::from(env("OUT_DIR")).join("shim-target");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .args([
            "build",
            "--release",
            "--locked",
            "-p",
            "delayshim",
            "--manifest-path",
        ])
        .arg(workspace.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir);
    // What cargo sets for this build script would steer the nested build
    // (its profile, flags, target directory, jobserver): clear it, keeping
    // the user's own cargo configuration (home, registries, network).
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy().into_owned();
        let keep = [
            "CARGO_HOME",
            "CARGO_NET_OFFLINE",
            "CARGO_HTTP_",
            "CARGO_REGISTRIES_",
            "CARGO_REGISTRY_",
        ]
        .iter()
        .any(|kept| name.starts_with(kept));
        let steering = name.starts_with("CARGO_")
            || name.starts_with("RUSTC")
            || name.starts_with("DEP_")
            || [
                "RUSTFLAGS",
                "RUSTDOCFLAGS",
                "MAKEFLAGS",
                "MFLAGS",
                "OUT_DIR",
                "TARGET",
                "HOST",
                "PROFILE",
                "OPT_LEVEL",
                "DEBUG",
                "NUM_JOBS",
            ]
            .contains(&name.as_str());
        if steering && !keep {
            command.env_remove(&name);
        }
    }
    let status = command.status().expect("running cargo for the shim");
    assert!(
        status.success(),
        "building libdelayshim.so failed: {status}"
    );
    let shim = target_dir.join("release/libdelayshim.so");
    assert!(shim.is_file(), "cargo built no {}", shim.display());
    println!("cargo:rustc-env=DELAYSHIM_EMBEDDED_SHIM={}", shim.display());
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("cargo sets {name}"))
}
