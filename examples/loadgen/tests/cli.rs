//! The `loadgen` command line as a user meets it. (Having an integration
//! test also makes `cargo test --workspace` build the binary, which the
//! server's crash test runs.)

#![allow(clippy::unwrap_used)]

use std::process::Command;

fn help(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(args)
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn help_lists_the_commands_and_the_run_options() {
    let top = help(&[]);
    for command in ["run", "backfill", "plc"] {
        assert!(top.contains(command), "{top}");
    }
    let run = help(&["run"]);
    for option in [
        "--url",
        "--clients",
        "--seconds",
        "--mix",
        "--subscribers",
        "--json",
        "--ack-log",
    ] {
        assert!(run.contains(option), "{option} in {run}");
    }
}

#[test]
fn a_run_without_a_url_is_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .arg("run")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--url"));
}
