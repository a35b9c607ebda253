//! `posbridge devices`: what this machine sees, with catalog matches, as a
//! table with a header or, with `--json`, one JSON array.

use crate::sysfs::Node;
use posbridge_drivers::catalog::Catalog;
use posbridge_drivers::hotplug::NodeKind;
use serde::Serialize;
use std::process::ExitCode;

/// One device node or PC/SC reader, as both outputs show it.
#[derive(Serialize)]
pub struct Row {
    /// serial, hidraw, input, printer, usb or pcsc.
    pub kind: &'static str,
    /// The /dev node, or the PC/SC reader's name.
    pub path: String,
    pub usb: Option<Usb>,
    /// ok, permission denied or no device node (a PC/SC reader: ok).
    pub access: &'static str,
    pub catalog: Option<CatalogMatch>,
    /// The device's own product string, when it is not in the catalog.
    pub product: Option<String>,
    /// The driver that would claim it, and its transport.
    pub driver: Option<String>,
    pub transport: Option<String>,
}

#[derive(Serialize)]
pub struct Usb {
    pub vid: String,
    pub pid: String,
    pub serial: Option<String>,
}

#[derive(Serialize)]
pub struct CatalogMatch {
    pub id: String,
    pub vendor: String,
    pub model: String,
    pub verified: bool,
}

pub fn command(sysfs: &std::path::Path, dev: &std::path::Path, json: bool) -> ExitCode {
    let catalog = match Catalog::builtin() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("posbridge devices: the built-in catalog is broken: {e}");
            return ExitCode::FAILURE;
        }
    };
    let nodes = crate::sysfs::scan(sysfs, dev);
    let mut rows = rows(&nodes, catalog);
    let pcsc = super::doctor::pcsc_readers();
    if let Ok(readers) = &pcsc {
        rows.extend(readers.iter().map(|r| reader_row(r)));
    }
    if json {
        match serde_json::to_string_pretty(&rows) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("posbridge devices: {e}");
                return ExitCode::FAILURE;
            }
        }
        return ExitCode::SUCCESS;
    }
    print_table(&rows, sysfs, &pcsc);
    ExitCode::SUCCESS
}

fn print_table(rows: &[Row], sysfs: &std::path::Path, pcsc: &Result<Vec<String>, String>) {
    if rows.is_empty() {
        println!(
            "no serial, hidraw, input or printer devices under {}",
            sysfs.display()
        );
    } else {
        println!(
            "{:<7} {:<22} {:<28} {:<17} WHAT → CLAIMED BY",
            "KIND", "PATH", "USB ID", "ACCESS"
        );
    }
    for r in rows {
        println!("{}", line(r));
    }
    match pcsc {
        Ok(readers) if readers.is_empty() => println!("pcsc    (pcscd is running; no readers)"),
        Ok(_) => {}
        Err(e) => println!("pcsc    ({e})"),
    }
}

/// One row of the table.
pub fn line(r: &Row) -> String {
    let ids = match &r.usb {
        Some(u) => format!(
            "{}:{}{}",
            u.vid,
            u.pid,
            u.serial
                .as_deref()
                .map(|s| format!(" serial {s}"))
                .unwrap_or_default()
        ),
        None if r.kind == "pcsc" => "-".into(),
        None => "not USB".into(),
    };
    let claim = match (&r.driver, &r.transport) {
        (Some(d), Some(t)) => format!("driver {d} (transport {t})"),
        (Some(d), None) => format!("driver {d}"),
        (None, _) => "a bridge: set the driver for what is behind it".into(),
    };
    let what = match (&r.catalog, &r.product) {
        (Some(c), _) => format!(
            "{} {} [catalog {}{}] → {claim}",
            c.vendor,
            c.model,
            c.id,
            if c.verified { "" } else { ", unverified" }
        ),
        (None, _) if r.kind == "pcsc" => format!("→ {claim} (reader = \"{}\")", r.path),
        (None, Some(p)) => format!("{p} (not in the catalog)"),
        (None, None) => "not in the catalog".into(),
    };
    format!(
        "{:<7} {:<22} {ids:<28} {:<17} {what}",
        r.kind, r.path, r.access
    )
}

/// The rows for device nodes, with their catalog entries.
pub fn rows(nodes: &[Node], catalog: &Catalog) -> Vec<Row> {
    nodes.iter().map(|n| node_row(n, catalog)).collect()
}

fn node_row(n: &Node, catalog: &Catalog) -> Row {
    let entry = super::doctor::catalog_entry(catalog, n);
    Row {
        kind: match n.kind {
            NodeKind::Tty => "serial",
            NodeKind::Hidraw => "hidraw",
            NodeKind::Input => "input",
            NodeKind::Usblp => "printer",
            NodeKind::UsbDevice => "usb",
        },
        path: n.dev_path.display().to_string(),
        usb: n.usb.as_ref().map(|id| Usb {
            vid: format!("{:04x}", id.vid),
            pid: format!("{:04x}", id.pid),
            serial: id.serial.clone(),
        }),
        access: n.access.label(),
        catalog: entry.map(|e| CatalogMatch {
            id: e.id.clone(),
            vendor: e.vendor.clone(),
            model: e.model.clone(),
            verified: e.verified,
        }),
        product: entry.map_or_else(|| n.product.clone(), |_| None),
        driver: entry.and_then(|e| e.driver.clone()),
        transport: entry.and_then(|e| e.transport.clone()),
    }
}

fn reader_row(name: &str) -> Row {
    Row {
        kind: "pcsc",
        path: name.to_owned(),
        usb: None,
        access: "ok",
        catalog: None,
        product: None,
        driver: Some("pcsc".into()),
        transport: None,
    }
}
