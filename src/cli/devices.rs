//! `posbridge devices`: what this machine sees, with catalog matches.

use std::process::ExitCode;

pub fn command(sysfs: &std::path::Path, dev: &std::path::Path) -> ExitCode {
    let catalog = match posbridge_drivers::catalog::Catalog::builtin() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("posbridge devices: the built-in catalog is broken: {e}");
            return ExitCode::FAILURE;
        }
    };
    let nodes = crate::sysfs::scan(sysfs, dev);
    if nodes.is_empty() {
        println!(
            "no serial, hidraw, input or printer devices under {}",
            sysfs.display()
        );
    }
    for line in super::doctor::describe(&nodes, catalog) {
        println!("{line}");
    }
    match super::doctor::pcsc_readers() {
        Ok(readers) if readers.is_empty() => println!("pcsc    (pcscd is running; no readers)"),
        Ok(readers) => {
            for r in readers {
                println!("pcsc    {r:<50} → driver pcsc (reader = \"{r}\")");
            }
        }
        Err(e) => println!("pcsc    ({e})"),
    }
    ExitCode::SUCCESS
}
