//! The commands above the daemon (contract §1): `check-config`, `simulate`,
//! `trust-cert`, `devices`, `doctor`, `udev-rules`. `main` parses the
//! arguments and calls these; nothing in the library below calls up into here.

pub mod devices;
pub mod doctor;
pub mod simulate;
pub mod trust_cert;

use std::process::ExitCode;

/// `posbridge check-config`: every problem with its key, or a one-line summary.
pub fn check_config(path: &std::path::Path) -> ExitCode {
    match crate::load::load(path) {
        Ok(crate::load::Loaded { config, warnings }) => {
            for w in warnings {
                eprintln!("warning: {w}");
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
