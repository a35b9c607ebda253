//! What HQ sees of a store (`P/S/inventory`, retained): version, uptime,
//! which config runs, each device and printer, the backlog, the certificate
//! that expires first and the free disk. Nothing secret and no card or ID
//! data: device errors are the daemon's own words about the device.

use crate::device::Devices;
use crate::print::Printers;
use crate::uplink::outbox::Outbox;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Everything the inventory is read from.
pub struct Sources {
    pub devices: Arc<Devices>,
    pub printers: Arc<Printers>,
    pub outbox: Arc<Outbox>,
    pub storage_dir: PathBuf,
    pub boot: String,
    pub started: std::time::Instant,
    /// SHA-256 of the running config (see [`config_hash`]); changed by a reload.
    pub config_hash: Mutex<String>,
    /// The earliest expiry among the store's certificates, RFC 3339.
    pub tls_expires: Option<String>,
}

/// SHA-256 (hex) of the effective config with its secrets redacted (what
/// `check-config --print` shows): it tells configs apart without putting a
/// hash of the broker password or a token at the broker. A `config.apply`
/// answers with the hash of the config it applied.
pub fn config_hash(config: &crate::Config) -> String {
    let text = crate::cli::effective_toml(config).unwrap_or_default();
    hex(ring::digest::digest(&ring::digest::SHA256, text.as_bytes()).as_ref())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The earliest `notAfter` of the uplink's client certificate and the
/// local HTTPS certificate, as RFC 3339.
pub fn tls_expires(config: &crate::Config) -> Option<String> {
    let mut found: Vec<i64> = Vec::new();
    if let Some(cert) = config.uplink.as_ref().and_then(|u| u.cert.as_ref()) {
        found.extend(pem_not_after(cert));
    }
    if config.api.tls {
        found.extend(crate::tls::leaf_not_after(&config.storage.dir.join("tls")));
    }
    let t = time::OffsetDateTime::from_unix_timestamp(found.into_iter().min()?).ok()?;
    t.format(&time::format_description::well_known::Rfc3339)
        .ok()
}

fn pem_not_after(path: &Path) -> Option<i64> {
    let text = std::fs::read(path).ok()?;
    let (_, pem) = x509_parser::pem::parse_x509_pem(&text).ok()?;
    let cert = pem.parse_x509().ok()?;
    Some(cert.validity().not_after.timestamp())
}

fn disk_free(dir: &Path) -> Option<u64> {
    let s = nix::sys::statvfs::statvfs(dir).ok()?;
    Some(s.blocks_available() as u64 * s.fragment_size() as u64)
}

impl Sources {
    /// The inventory now.
    pub async fn inventory(&self) -> Value {
        let (backlog, oldest) = self.outbox.backlog().await.unwrap_or((0, None));
        let devices: Vec<Value> = self
            .devices
            .list()
            .iter()
            .map(|d| {
                let v = d.view();
                json!({"id": v.id, "driver": v.driver, "state": v.state, "last_error": v.last_error})
            })
            .collect();
        let printers: Vec<Value> = self
            .printers
            .iter()
            .map(|p| {
                let s = p.status();
                json!({"id": p.id, "online": s.map(|s| s.online), "paper": s.map(|s| s.paper),
                       "cover_open": s.map(|s| s.cover_open)})
            })
            .collect();
        let hash = self
            .config_hash
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut v = json!({
            "version": env!("CARGO_PKG_VERSION"),
            "boot": self.boot,
            "uptime_s": self.started.elapsed().as_secs(),
            "config_hash": hash,
            "devices": devices,
            "printers": printers,
            "uplink": {"backlog": backlog, "oldest_queued_at": oldest},
            "disk_free_bytes": disk_free(&self.storage_dir),
            "time": crate::clock::now_rfc3339(),
        });
        if let Some(t) = &self.tls_expires {
            v["tls_expires"] = t.clone().into();
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::uplink::inventory_fingerprint as fingerprint;

    #[test]
    fn the_clock_is_no_change_and_the_disk_only_by_100_mb() {
        let a = json!({"time": "t1", "uptime_s": 5, "disk_free_bytes": 5_000_000_000u64, "devices": []});
        let mut b = a.clone();
        b["time"] = "t2".into();
        b["uptime_s"] = 9.into();
        b["disk_free_bytes"] = 5_050_000_000u64.into();
        assert_eq!(fingerprint(&a), fingerprint(&b));
        b["disk_free_bytes"] = 4_800_000_000u64.into();
        assert_ne!(fingerprint(&a), fingerprint(&b));
        let mut c = a.clone();
        c["devices"] = json!([{"id": "x", "state": "error"}]);
        assert_ne!(fingerprint(&a), fingerprint(&c));
    }
}
