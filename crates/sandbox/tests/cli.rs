//! `hookline-sandbox --help` lists its settings; `--version` answers.

use std::process::Command;

#[test]
fn help_lists_every_setting_and_version_answers() {
    let output = Command::new(env!("CARGO_BIN_EXE_hookline-sandbox"))
        .arg("--help")
        .env_clear()
        .output()
        .expect("the sandbox runs");
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for spec in hookline_sandbox::SETTINGS {
        assert!(help.contains(&format!("  {}  (", spec.name)), "{help}");
    }
    let version = Command::new(env!("CARGO_BIN_EXE_hookline-sandbox"))
        .arg("--version")
        .output()
        .expect("the sandbox runs");
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        concat!("hookline-sandbox ", env!("CARGO_PKG_VERSION"))
    );
}
