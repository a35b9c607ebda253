//! The commands above the daemon (contract §1): `check-config`, `simulate`,
//! `trust-cert`, `devices`, `doctor`, `udev-rules`. `main` parses the
//! arguments and calls these; nothing in the library below calls up into here.

pub mod devices;
pub mod doctor;
pub mod simulate;
pub mod trust_cert;

use std::process::ExitCode;

/// `posbridge check-config`: every problem with its key, or a one-line summary.
pub fn check_config(path: &std::path::Path, print: bool) -> ExitCode {
    match crate::load::load(path) {
        Ok(crate::load::Loaded { config, warnings }) => {
            for w in warnings {
                eprintln!("warning: {w}");
            }
            if print {
                return match effective_toml(&config) {
                    Ok(text) => {
                        println!("# The config in effect: {} and POSBRIDGE__ variables, defaults filled in, secrets redacted.\n{text}", path.display());
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("posbridge check-config: cannot print the config: {e}");
                        ExitCode::FAILURE
                    }
                };
            }
            println!(
                "{}: ok (store {}, {} device{})",
                path.display(),
                config.store.id,
                config.devices.len(),
                if config.devices.len() == 1 { "" } else { "s" }
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprint!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// `posbridge udev-rules`: the rules generated from the built-in catalog.
pub fn udev_rules() -> ExitCode {
    match posbridge_drivers::catalog::Catalog::builtin() {
        Ok(c) => {
            print!("{}", c.udev_rules());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("posbridge udev-rules: the built-in catalog is broken: {e}");
            ExitCode::FAILURE
        }
    }
}

/// What `check-config --print` shows in place of a secret.
const REDACTED: &str = "(redacted)";

/// The config in effect as TOML: the file plus `POSBRIDGE__` variables,
/// defaults filled in, each device's family keys as written, secrets
/// (token values, the broker password, a dongle's key, challenge and
/// answer) redacted.
pub fn effective_toml(config: &crate::Config) -> Result<String, String> {
    let mut v = toml::Value::try_from(config).map_err(|e| e.to_string())?;
    if let Some(devices) = v.get_mut("device").and_then(toml::Value::as_array_mut) {
        for (d, cfg) in devices.iter_mut().zip(&config.devices) {
            if let Some(t) = d.as_table_mut() {
                t.extend(cfg.options.clone());
            }
        }
    }
    redact(&mut v);
    toml::to_string(&v).map_err(|e| e.to_string())
}

/// Keys whose values are secrets wherever they sit in a device table: a
/// dongle's recorded challenge and answer are as good as its HMAC key.
const DEVICE_SECRETS: &[&str] = &["hmac_key", "challenge", "response", "token", "password"];

fn redact(v: &mut toml::Value) {
    fn hide(x: Option<&mut toml::Value>) {
        if let Some(x) = x {
            *x = toml::Value::String(REDACTED.into());
        }
    }
    /// Every key in `names`, at any depth.
    fn hide_all(v: &mut toml::Value, names: &[&str]) {
        match v {
            toml::Value::Table(t) => {
                for (k, x) in t.iter_mut() {
                    if names.contains(&k.as_str()) {
                        *x = toml::Value::String(REDACTED.into());
                    } else {
                        hide_all(x, names);
                    }
                }
            }
            toml::Value::Array(a) => a.iter_mut().for_each(|x| hide_all(x, names)),
            _ => {}
        }
    }
    if let Some(tokens) = v
        .get_mut("api")
        .and_then(|a| a.get_mut("tokens"))
        .and_then(toml::Value::as_array_mut)
    {
        for t in tokens {
            hide(t.get_mut("token"));
        }
    }
    hide(v.get_mut("uplink").and_then(|u| u.get_mut("password")));
    hide(v.get_mut("members").and_then(|m| m.get_mut("id_key")));
    if let Some(devices) = v.get_mut("device") {
        hide_all(devices, DEVICE_SECRETS);
    }
}
