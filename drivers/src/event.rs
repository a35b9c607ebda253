//! The typed events devices produce. Serialized with `type` and `data` keys,
//! exactly as the contract's event table names them; the daemon wraps them in
//! the envelope (`seq`, `boot`, `id`, `time`, `store`, `device`).

use serde::Serialize;

/// One normalized device event.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", content = "data")]
pub enum Event {
    /// A membership magstripe card was swiped. Never a payment card: those are
    /// `CardRejected` and their track data is dropped.
    #[serde(rename = "card.swiped")]
    CardSwiped {
        /// The member number: track 2's PAN field, else track 1's, else track 3's.
        card_no: String,
        /// Track contents without sentinels (and without LRC).
        tracks: Tracks,
    },
    /// A swipe that must not or could not be used.
    #[serde(rename = "card.rejected")]
    CardRejected {
        reason: RejectReason,
        /// First 6 and last 4 digits of the number, the rest `*`; absent when unreadable.
        #[serde(skip_serializing_if = "Option::is_none")]
        masked: Option<String>,
    },
    /// A contactless card or tag was presented.
    #[serde(rename = "card.tapped")]
    CardTapped {
        /// Upper-case hex.
        uid: String,
        /// Upper-case hex ATR; empty for readers that have none (125 kHz wedges).
        atr: String,
        card_type: CardType,
        /// The reader's name (PC/SC) or the device id (wedge readers).
        reader: String,
        /// For EM4100: the number as printed on the card (10 decimal digits).
        #[serde(skip_serializing_if = "Option::is_none")]
        decimal: Option<String>,
    },
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
            Event::CardSwiped { .. } => "card.swiped",
            Event::CardRejected { .. } => "card.rejected",
            Event::CardTapped { .. } => "card.tapped",
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

/// Magstripe tracks, keyed "1", "2", "3" as in the contract.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Tracks {
    #[serde(rename = "1", skip_serializing_if = "Option::is_none")]
    pub t1: Option<String>,
    #[serde(rename = "2", skip_serializing_if = "Option::is_none")]
    pub t2: Option<String>,
    #[serde(rename = "3", skip_serializing_if = "Option::is_none")]
    pub t3: Option<String>,
}

/// Why a swipe was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// A bank card: its track data is dropped, never emitted, logged or stored.
    PaymentCard,
    /// The reader delivered an LRC and it did not match.
    BadLrc,
    /// Nothing usable on any track.
    Unreadable,
}

/// The contract's card types.
// Named one by one: serde's snake_case would write `mifare_classic1k`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum CardType {
    #[serde(rename = "mifare_classic_1k")]
    MifareClassic1k,
    #[serde(rename = "mifare_classic_4k")]
    MifareClassic4k,
    #[serde(rename = "mifare_ultralight")]
    MifareUltralight,
    #[serde(rename = "desfire")]
    Desfire,
    #[serde(rename = "iso14443_4")]
    Iso14443_4,
    #[serde(rename = "em4100")]
    Em4100,
    #[serde(rename = "unknown")]
    Unknown,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_match_the_contract() {
        let names: Vec<String> = [
            CardType::MifareClassic1k,
            CardType::MifareClassic4k,
            CardType::MifareUltralight,
            CardType::Desfire,
            CardType::Iso14443_4,
            CardType::Em4100,
            CardType::Unknown,
        ]
        .iter()
        .map(|c| serde_json::to_string(c).unwrap_or_default())
        .collect();
        assert_eq!(
            names,
            [
                "\"mifare_classic_1k\"",
                "\"mifare_classic_4k\"",
                "\"mifare_ultralight\"",
                "\"desfire\"",
                "\"iso14443_4\"",
                "\"em4100\"",
                "\"unknown\""
            ]
        );
        let swiped = Event::CardSwiped {
            card_no: "123".into(),
            tracks: Tracks {
                t2: Some("123".into()),
                ..Tracks::default()
            },
        };
        assert_eq!(
            serde_json::to_string(&swiped).unwrap_or_default(),
            r#"{"type":"card.swiped","data":{"card_no":"123","tracks":{"2":"123"}}}"#
        );
        let rejected = Event::CardRejected {
            reason: RejectReason::PaymentCard,
            masked: Some("411111******1111".into()),
        };
        assert_eq!(
            serde_json::to_string(&rejected).unwrap_or_default(),
            r#"{"type":"card.rejected","data":{"reason":"payment_card","masked":"411111******1111"}}"#
        );
    }
}
