//! `docs/configuration.md` is generated from the settings' declarations, and every binary's
//! `--help` lists its settings. Regenerate the file with `make config-docs`
//! (`HOOKLINE_WRITE_CONFIG_DOCS=1 cargo test -p hookline-worker --test api config_docs`).

use std::path::Path;
use std::process::Command;

const HEADER: &str = "# Configuration

Every hookline binary is configured by environment variables. This file is generated from the
settings' declarations in the code (`Setting` constants; `hookline_core::config`), the same ones
that parse the variables and print `--help`; a test fails when it is out of date. Regenerate it
with `make config-docs`.

- A blank variable counts as unset: the default applies.
- A value that does not parse stops the process at start, with the variable's name and what it
  expects (e.g. `HOOKLINE_CONFIRM_TIMEOUT_MS=\"soon\" is invalid: expected milliseconds`).
- Secrets never appear in logs or errors. Each may also be given as `<NAME>_FILE`, the path of a
  file holding it (a mounted Kubernetes secret); setting both is refused, and so is a secret
  still holding the placeholder `REPLACE_ME` of `deploy/k8s/secrets.yaml`.
- Development values are refused unless `HOOKLINE_DEV` is set: the ingestor with the Shopify
  secret `hookline_dev_secret`, the worker with the sandbox's sevDesk token and a sevDesk URL
  that is not on this machine.
- Settings of the same name mean the same in every binary; `HOOKLINE_QUEUE_MAX_LENGTH` must
  also be equal in all of them.
- Not listed: `RUST_LOG` (log filter, default `info`), `OTEL_EXPORTER_OTLP_ENDPOINT` (traces
  are exported over OTLP/HTTP when set) and `OTEL_SERVICE_NAME`.
";

fn generated() -> String {
    [
        HEADER.to_owned(),
        hookline_ingestor::settings::config_docs(),
        hookline_worker::settings::config_docs(),
        hookctl::config_docs(),
        hookline_ingestor::settings::send::config_docs(),
        hookline_sandbox::config_docs(),
    ]
    .join("\n")
}

#[test]
fn config_docs_are_up_to_date() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/configuration.md");
    let generated = generated();
    if std::env::var_os("HOOKLINE_WRITE_CONFIG_DOCS").is_some() {
        std::fs::write(&path, &generated).expect("docs/configuration.md is writable");
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/configuration.md is not what the settings declare: run `make config-docs`"
    );
}

#[test]
fn config_docs_of_the_binary_are_its_section() {
    let output = Command::new(env!("CARGO_BIN_EXE_hookline-worker"))
        .arg("--print-config-docs")
        .output()
        .expect("the worker binary runs");
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        hookline_worker::settings::config_docs()
    );
}

#[test]
fn worker_help_lists_every_setting_with_its_default() {
    let output = Command::new(env!("CARGO_BIN_EXE_hookline-worker"))
        .arg("--help")
        .env_clear()
        .output()
        .expect("the worker binary runs");
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for spec in hookline_worker::settings::SETTINGS {
        assert!(
            help.contains(&format!("  {}  (", spec.name)),
            "{} in {help}",
            spec.name
        );
    }
    assert!(help.contains("HOOKLINE_WORKER_DOMAINS  (a comma-separated list of inventory, orders, compliance; default: inventory,orders,compliance)"), "{help}");
    let version = Command::new(env!("CARGO_BIN_EXE_hookline-worker"))
        .arg("--version")
        .output()
        .expect("the worker binary runs");
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        concat!("hookline-worker ", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn a_bad_value_stops_the_worker_naming_the_variable() {
    let output = Command::new(env!("CARGO_BIN_EXE_hookline-worker"))
        .arg("migrate")
        .env("HOOKLINE_OUTBOX_BATCH", "lots")
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("the worker binary runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("HOOKLINE_OUTBOX_BATCH=\"lots\" is invalid: expected a whole number"),
        "{stderr}"
    );
}
