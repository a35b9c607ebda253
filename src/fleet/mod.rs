//! A chain's fleet: what HQ sees of the store (`inventory`) and the signed
//! commands it may send (`commands`), over the MQTT link the relay keeps;
//! `log` keeps the daemon's recent log lines for `log.tail`.

pub mod commands;
pub mod inventory;
pub mod log;

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

/// HQ asked for a restart (`restart`): `main` exits with [`RESTART_EXIT`]
/// once the daemon has stopped, and systemd starts it again.
static RESTART: AtomicBool = AtomicBool::new(false);

/// The exit status of a restart HQ asked for; the unit treats it as a clean
/// exit that is always restarted (`SuccessExitStatus`, `RestartForceExitStatus`).
pub const RESTART_EXIT: u8 = 75;

pub fn request_restart() {
    RESTART.store(true, Relaxed);
}

pub fn restart_requested() -> bool {
    RESTART.load(Relaxed)
}

/// The inventory and the commands, handed to the relay.
pub struct Fleet {
    pub inventory: inventory::Sources,
    pub commands: std::sync::Arc<commands::Commands>,
}

impl crate::uplink::Steward for Fleet {
    fn inventory(&self) -> crate::uplink::Pending<'_, serde_json::Value> {
        Box::pin(self.inventory.inventory())
    }
    fn command<'a>(&'a self, payload: &'a [u8]) -> crate::uplink::Pending<'a, serde_json::Value> {
        Box::pin(self.commands.handle(payload))
    }
    fn take_late(&self) -> Option<tokio::sync::mpsc::Receiver<serde_json::Value>> {
        self.commands.take_late()
    }
}
