//! The typed events devices produce. Serialized with `type` and `data` keys,
//! exactly as the contract's event table names them; the daemon wraps them in
//! the envelope (`seq`, `boot`, `id`, `time`, `store`, `device`).

use serde::Serialize;

/// One normalized device event.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", content = "data")]
pub enum Event {
    /// A barcode or QR code was scanned.
    #[serde(rename = "code.scanned")]
    CodeScanned {
        text: String,
        kind: CodeKind,
        #[serde(skip_serializing_if = "Option::is_none")]
        symbology: Option<String>,
    },
    /// A device's transport opened.
    #[serde(rename = "device.attached")]
    DeviceAttached {
        driver: String,
        transport: String,
        path: Option<String>,
    },
    /// A device's transport closed (unplugged, EOF, or shutdown).
    #[serde(rename = "device.detached")]
    DeviceDetached {
        driver: String,
        transport: String,
        path: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// A device could not be opened, or failed while open.
    #[serde(rename = "device.error")]
    DeviceError {
        driver: String,
        transport: String,
        path: Option<String>,
        error: String,
    },
}

impl Event {
    /// The contract's `type` string.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::CodeScanned { .. } => "code.scanned",
            Event::DeviceAttached { .. } => "device.attached",
            Event::DeviceDetached { .. } => "device.detached",
            Event::DeviceError { .. } => "device.error",
        }
    }

    /// The copy clients without the `idcard` scope see, when it differs.
    /// `None` means the event holds nothing that needs masking.
    pub fn masked(&self) -> Option<Event> {
        None
    }
}

/// What a scanned code is, decided from its text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CodeKind {
    PaymentWechat,
    PaymentAlipay,
    PaymentUnionpay,
    Url,
    Member,
    Other,
}
