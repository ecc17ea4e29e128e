//! The binaries as an operator meets them: `--help` lists every declared setting with its
//! default, `--version` answers, and a development secret stops the ingestor at start.

use std::process::Command;

use hookline_core::config::SettingSpec;

fn help_lists(binary: &str, specs: &[SettingSpec]) {
    let output = Command::new(binary)
        .arg("--help")
        .env_clear()
        .output()
        .expect("the binary runs");
    assert!(output.status.success(), "{binary} --help");
    let help = String::from_utf8_lossy(&output.stdout);
    for spec in specs {
        assert!(
            help.contains(&format!("  {}  (", spec.name)),
            "{} missing in {help}",
            spec.name
        );
    }
    let version = Command::new(binary)
        .arg("--version")
        .output()
        .expect("the binary runs");
    assert!(
        String::from_utf8_lossy(&version.stdout).contains(env!("CARGO_PKG_VERSION")),
        "{binary} --version"
    );
}

#[test]
fn help_lists_every_setting() {
    help_lists(
        env!("CARGO_BIN_EXE_hookline-ingestor"),
        hookline_ingestor::settings::SETTINGS,
    );
    help_lists(
        env!("CARGO_BIN_EXE_hookline-send"),
        hookline_ingestor::settings::send::SETTINGS,
    );
    let help = Command::new(env!("CARGO_BIN_EXE_hookline-ingestor"))
        .arg("--help")
        .output()
        .expect("the ingestor runs");
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("HOOKLINE_CONFIRM_TIMEOUT_MS  (milliseconds; default: 2000)"),
        "{help}"
    );
}

#[test]
fn the_development_secret_stops_the_ingestor_unless_in_development() {
    let output = Command::new(env!("CARGO_BIN_EXE_hookline-ingestor"))
        .env("HOOKLINE_SHOPIFY_SECRETS", "hookline_dev_secret")
        .env("HOOKLINE_HTTP_ADDR", "127.0.0.1:0")
        .env_remove("HOOKLINE_DEV")
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("the ingestor runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("HOOKLINE_SHOPIFY_SECRETS") && stderr.contains("HOOKLINE_DEV=1"),
        "{stderr}"
    );
}

#[test]
fn hookline_send_takes_its_secret_from_a_file() {
    let output = Command::new(env!("CARGO_BIN_EXE_hookline-send"))
        .args(["--topic", "orders/paid", "/nonexistent/body.json"])
        .env_remove("HOOKLINE_SEND_SECRET")
        .env("HOOKLINE_SEND_SECRET_FILE", "/nonexistent/secret")
        .output()
        .expect("hookline-send runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("HOOKLINE_SEND_SECRET_FILE=\"/nonexistent/secret\" cannot be read"),
        "{stderr}"
    );
}
