//! How a test says that a suite did not run because an optional tool is missing.
//!
//! Plain `cargo test` runs without promtool, schemathesis, a browser or
//! kubernetes-validate and skips what needs them; `scripts/test` installs them and sets
//! the `SPEEDY_REQUIRE_*` variables, under which a missing tool fails the test instead.
//! A skip is written straight to the terminal (libtest captures the output of passing
//! tests), so it shows under its test binary's name with the command that runs it.

use std::io::Write;

/// Skips `suite` because `missing` is not installed: panics if `require_var` is set
/// (the tool is required there), else says so on stderr past libtest's capture.
pub fn skip(suite: &str, missing: &str, require_var: &str) {
    assert!(
        std::env::var_os(require_var).is_none(),
        "{suite}: {missing} is required here ({require_var} is set) but missing"
    );
    let line = format!(
        "SKIPPED {suite}: {missing} is not installed; scripts/test installs it and runs every suite\n"
    );
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}
