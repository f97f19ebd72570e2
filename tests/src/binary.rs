//! Finding the `gateway` executable.
//!
//! Cargo only sets `CARGO_BIN_EXE_gateway` for tests inside the `gateway`
//! package, so this separate test package looks for the binary itself:
//! `GATEWAY_BIN` when set, else beside the test executable
//! (`target/<profile>/deps/contract-*` -> `target/<profile>/gateway`). It never
//! builds anything.

use std::path::PathBuf;

/// The path of the gateway binary under test; panics with a hint when missing.
pub fn gateway_bin() -> PathBuf {
    let path = match std::env::var_os("GATEWAY_BIN") {
        Some(path) => PathBuf::from(path),
        None => beside_test_exe(),
    };
    assert!(
        path.is_file(),
        "gateway binary not found at {}: build it first with `cargo build -p gateway` \
         (or point GATEWAY_BIN at it)",
        path.display()
    );
    path
}

fn beside_test_exe() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable has a path");
    let mut dir = exe
        .parent()
        .expect("the test executable has a directory")
        .to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir.join(format!("gateway{}", std::env::consts::EXE_SUFFIX))
}
