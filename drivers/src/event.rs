//! The typed events devices produce. Serialized with `type` and `data` keys,
//! exactly as the contract's event table names them; the daemon wraps them in
//! the envelope (`seq`, `boot`, `id`, `time`, `store`, `device`).

use crate::escpos::Paper;
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
        /// First 6 and last 4 digits of the number, the rest `*`; `null` when no
        /// number could be read (the contract lists the field, so it is always there).
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
        /// Configured MIFARE blocks that were read: block number → 32 hex digits.
        #[serde(skip_serializing_if = "Option::is_none")]
        blocks: Option<std::collections::BTreeMap<String, String>>,
        /// Why the configured block read failed (e.g. a wrong key); the tap still counts.
        #[serde(skip_serializing_if = "Option::is_none")]
        read_error: Option<String>,
    },
    /// A contactless card left the reader.
    #[serde(rename = "card.removed")]
    CardRemoved { uid: String, reader: String },
    /// A second-generation ID card was read (hotel check-in, member sign-up).
    #[serde(rename = "idcard.read")]
    IdcardRead(Box<IdCard>),
    /// A barcode or QR code was scanned.
    #[serde(rename = "code.scanned")]
    CodeScanned {
        text: String,
        kind: CodeKind,
        #[serde(skip_serializing_if = "Option::is_none")]
        symbology: Option<String>,
        /// What a weighed-goods label says (`kind: "weighed"` only).
        #[serde(skip_serializing_if = "Option::is_none")]
        weighed: Option<Weighed>,
    },
    /// A call is coming in: one per call, not per ring (caller-ID boxes).
    #[serde(rename = "call.ringing")]
    CallRinging {
        call_id: String,
        /// Digits as the line delivered them, or `private` / `unavailable` when withheld.
        number: String,
        /// E.164 (`+8613812345678`) when it can be derived from `number`.
        #[serde(skip_serializing_if = "Option::is_none")]
        normalized: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        /// The box's line label, for boxes that serve several lines.
        #[serde(skip_serializing_if = "Option::is_none")]
        line: Option<String>,
        /// Wall-clock RFC 3339 time; the daemon fills it (protocols read no clock).
        #[serde(skip_serializing_if = "Option::is_none")]
        at: Option<String>,
        /// The box's own `MM-DD HH:MM` stamp, when it sent one.
        #[serde(skip_serializing_if = "Option::is_none")]
        box_time: Option<String>,
    },
    /// The call's ringing is over (answered, abandoned, or the rings stopped).
    #[serde(rename = "call.ended")]
    CallEnded {
        call_id: String,
        /// `true` when the box reported off-hook, `false` when it reported the
        /// caller gave up first, `null` when the rings just stopped.
        answered: Option<bool>,
    },
    /// A phone on a line the box watches dialed out (boxes that report
    /// outgoing calls: Whozz Calling units, NCID servers). One per call.
    #[serde(rename = "call.outgoing")]
    CallOutgoing {
        call_id: String,
        /// Digits as the box reported them.
        number: String,
        /// E.164 when it can be derived from `number`.
        #[serde(skip_serializing_if = "Option::is_none")]
        normalized: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        line: Option<String>,
    },
    /// The member looked up for a ringing call (built by the daemon).
    #[serde(rename = "call.popup")]
    CallPopup {
        call_id: String,
        number: String,
        /// The member record, `null` when none was found.
        member: Option<serde_json::Value>,
        /// `cache`, `hq` or `none`.
        source: String,
        took_ms: u64,
    },
    /// The member a card, a member code or an ID card belongs to (built by
    /// the daemon from the card event; a member's ID number is never in it).
    #[serde(rename = "member.identified")]
    MemberIdentified {
        /// `magstripe`, `rfid`, `code` or `idcard`.
        via: String,
        /// The envelope `id` of the card event.
        event_id: String,
        /// The member record, `null` when none was found.
        member: Option<serde_json::Value>,
        /// `cache`, `hq` or `none`.
        source: String,
        took_ms: u64,
    },
    /// A printer's status changed (ESC/POS `DLE EOT`, TSPL `ESC ! ?`).
    #[serde(rename = "printer.status")]
    PrinterStatus {
        online: bool,
        paper: Paper,
        cover_open: bool,
        /// Label printers: only present when true.
        #[serde(default, skip_serializing_if = "is_false")]
        ribbon_out: bool,
        #[serde(default, skip_serializing_if = "is_false")]
        jammed: bool,
    },
    /// The HQ uplink's state changed, or a transaction was refused for a full backlog.
    #[serde(rename = "uplink.status")]
    UplinkStatus {
        connected: bool,
        backlog: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        last_error: Option<String>,
    },
    /// A license dongle was plugged in (and, with a check configured, answered it).
    #[serde(rename = "dongle.attached")]
    DongleAttached {
        vid: String,
        pid: String,
        serial: Option<String>,
        /// The challenge-response result; `null` when no check is configured.
        licensed: Option<bool>,
    },
    /// A license dongle was removed.
    #[serde(rename = "dongle.detached")]
    DongleDetached {
        vid: String,
        pid: String,
        serial: Option<String>,
        licensed: Option<bool>,
    },
    /// Bytes from a `passthrough` device, as one read delivered them.
    #[serde(rename = "passthrough.data")]
    PassthroughData {
        /// Base64 of the bytes.
        data: String,
        /// How many bytes `data` holds.
        len: usize,
    },
    /// A scale's reading: each stable reading that differs from the last
    /// one published, and (at most ten a second) readings while it moves.
    #[serde(rename = "scale.weight")]
    ScaleWeight(Weight),
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

/// Every event's `type`, in the order of [`Event::kind_index`]: a subscriber's
/// `types=` globs are matched against this list once, not per event.
pub const KINDS: &[&str] = &[
    "card.swiped",
    "card.rejected",
    "card.tapped",
    "card.removed",
    "idcard.read",
    "code.scanned",
    "call.ringing",
    "call.ended",
    "call.popup",
    "printer.status",
    "uplink.status",
    "dongle.attached",
    "dongle.detached",
    "device.attached",
    "device.detached",
    "device.error",
    "passthrough.data",
    "scale.weight",
    "member.identified",
    "call.outgoing",
];

impl Event {
    /// The contract's `type` string.
    pub fn kind(&self) -> &'static str {
        KINDS[self.kind_index()]
    }

    /// This event's place in [`KINDS`].
    pub fn kind_index(&self) -> usize {
        match self {
            Event::CardSwiped { .. } => 0,
            Event::CardRejected { .. } => 1,
            Event::CardTapped { .. } => 2,
            Event::CardRemoved { .. } => 3,
            Event::IdcardRead(_) => 4,
            Event::CodeScanned { .. } => 5,
            Event::CallRinging { .. } => 6,
            Event::CallEnded { .. } => 7,
            Event::CallPopup { .. } => 8,
            Event::PrinterStatus { .. } => 9,
            Event::UplinkStatus { .. } => 10,
            Event::DongleAttached { .. } => 11,
            Event::DongleDetached { .. } => 12,
            Event::DeviceAttached { .. } => 13,
            Event::DeviceDetached { .. } => 14,
            Event::DeviceError { .. } => 15,
            Event::PassthroughData { .. } => 16,
            Event::ScaleWeight(_) => 17,
            Event::MemberIdentified { .. } => 18,
            Event::CallOutgoing { .. } => 19,
        }
    }

    /// The copy clients without the `idcard` scope see, when it differs.
    /// `None` means the event holds nothing that needs masking.
    pub fn masked(&self) -> Option<Event> {
        match self {
            Event::IdcardRead(card) => Some(Event::IdcardRead(Box::new(card.masked()))),
            _ => None,
        }
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
    /// A weighed-goods label matching one of the scanner's templates.
    Weighed,
    Other,
}

/// What a weighed-goods barcode carries (`code.scanned`'s `weighed`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Weighed {
    /// The product's PLU as printed (leading zeros kept).
    pub plu: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grams: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub price_fen: Option<u64>,
}

/// One scale reading (contract: `scale.weight`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Weight {
    /// The weight shown, in grams; below zero when the scale reads negative.
    pub grams: i64,
    /// The scale reports the reading settled (a price may be computed on it).
    pub stable: bool,
    /// The weight is net of a tare.
    pub net: bool,
    /// The tare, where the scale reports it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tare_grams: Option<i64>,
    /// Over capacity: `grams` is not a weight.
    pub overload: bool,
    /// Below zero (`grams` is negative, or the scale says so without a number).
    pub negative: bool,
}

/// What an ID card says (contract: `idcard.read`).
#[derive(Clone, PartialEq, Eq, Serialize, Default)]
pub struct IdCard {
    pub card_type: IdCardType,
    pub name: String,
    /// 男, 女, 未知 or 未说明 (the card's own words).
    pub gender: String,
    /// The ethnic group's name (汉, 蒙古 …), or the nationality code on foreigner cards.
    pub nation: String,
    /// YYYY-MM-DD.
    pub birth: String,
    pub address: String,
    pub id_number: String,
    pub authority: String,
    /// YYYY-MM-DD.
    pub valid_from: String,
    /// YYYY-MM-DD, or 长期 (no expiry) as the card says.
    pub valid_to: String,
    /// Base64 of the raw 1024-byte WLT photo; only for clients with scope `idcard`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub photo_wlt: Option<String>,
    /// Fields only some card types carry (English name, permit number, issue count …).
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub extra: std::collections::BTreeMap<String, String>,
}

// Never print a full ID number or address (logs, panics): Debug shows the masked form.
impl std::fmt::Debug for IdCard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let m = self.masked();
        f.debug_struct("IdCard")
            .field("card_type", &m.card_type)
            .field("id_number", &m.id_number)
            .field("address", &m.address)
            .finish_non_exhaustive()
    }
}

impl IdCard {
    /// The copy for clients without scope `idcard`. Nothing in it rebuilds
    /// or narrows the number: every character of `id_number` that encodes the
    /// birth date is starred, and so is its check digit (which would cut the
    /// candidate dates elevenfold); `birth` is starred, and `valid_from` too
    /// (with `valid_to` it gives the validity term, which is set by age);
    /// `address` keeps its first 6 characters, other card numbers are
    /// starred and the photo is dropped. `valid_to` stays: a page checks it.
    pub fn masked(&self) -> IdCard {
        let mut m = self.clone();
        m.id_number = mask_id_number(&self.id_number);
        for date in [&mut m.birth, &mut m.valid_from] {
            if !date.is_empty() {
                *date = MASKED_BIRTH.into();
            }
        }
        m.address = self.address.chars().take(6).collect();
        m.photo_wlt = None;
        if let Some(v) = m.extra.get_mut("permit_number") {
            *v = mask_middle(v, 6, 4);
        }
        // The holder's older card number: its own birth digits go too.
        if let Some(v) = m.extra.get_mut("old_card_number") {
            *v = mask_id_number(v);
        }
        m
    }
}

/// What `birth` and `valid_from` read as without scope `idcard`.
pub const MASKED_BIRTH: &str = "****-**-**";

/// For `skip_serializing_if`: a flag that is only sent when set.
pub(crate) fn is_false(b: &bool) -> bool {
    !*b
}

/// Masks an ID number so no digit of the birth date shows, nor anything
/// computed from it. 18 characters (resident cards, HK/Macao/Taiwan permits,
/// 2023 foreigner cards): region 6, birth 8, sequence 3, check 1 — the region
/// and the sequence stay. 15 characters (older foreigner cards: nationality
/// 3, place 4, birth YYMMDD 6, sequence 2): the first 3 and last 2 stay.
/// Any other length is a layout we do not know, so all of it is starred.
pub fn mask_id_number(number: &str) -> String {
    let keep = |i: usize| match number.chars().count() {
        18 => i < 6 || (14..17).contains(&i),
        15 => !(3..13).contains(&i),
        _ => false,
    };
    number
        .chars()
        .enumerate()
        .map(|(i, c)| if keep(i) { c } else { '*' })
        .collect()
}

/// Keeps the first `head` and last `tail` characters, stars the rest.
pub fn mask_middle(s: &str, head: usize, tail: usize) -> String {
    let chars: Vec<char> = s.chars().collect();
    if chars.len() <= head + tail {
        return "*".repeat(chars.len());
    }
    chars
        .iter()
        .enumerate()
        .map(|(i, c)| {
            if i < head || i >= chars.len() - tail {
                *c
            } else {
                '*'
            }
        })
        .collect()
}

/// The contract's ID card types.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IdCardType {
    /// Mainland resident identity card.
    #[default]
    Resident,
    /// Foreigner permanent residence card (old and 2023 layouts).
    ForeignPermanent,
    /// Hong Kong / Macao / Taiwan residence permit.
    GatResidence,
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
    fn id_cards_are_masked_as_the_contract_says() {
        let card = IdCard {
            id_number: "11010519491231002X".into(),
            address: "北京市东城区景山前街4号".into(),
            photo_wlt: Some("AAAA".into()),
            ..IdCard::default()
        };
        let m = card.masked();
        assert_eq!(m.id_number, "110105********002*");
        assert_eq!(m.birth, "", "an empty birth stays empty");
        assert_eq!(m.address, "北京市东城区");
        assert_eq!(m.photo_wlt, None);
        let debug = format!("{card:?}");
        assert!(
            !debug.contains("11010519491231002X") && !debug.contains("景山"),
            "{debug}"
        );
        let json =
            serde_json::to_string(&Event::IdcardRead(Box::new(card.clone()))).unwrap_or_default();
        assert!(
            json.starts_with(r#"{"type":"idcard.read","data":{"card_type":"resident","#),
            "{json}"
        );
        assert!(Event::IdcardRead(Box::new(card)).masked().is_some());
    }

    /// Issue 16: `110101********1237` beside `birth: 1990-01-01` was the
    /// whole number. Whatever the layout, no masked field holds a digit of
    /// the birth date, and the full number cannot be put back together.
    #[test]
    fn a_masked_card_holds_no_part_of_the_birth_date() {
        let cases = [
            (IdCardType::Resident, "110101199001011237", "1990-01-01"),
            (IdCardType::GatResidence, "810000199905050016", "1999-05-05"),
            (
                IdCardType::ForeignPermanent,
                "911156199001010014",
                "1990-01-01",
            ),
            (
                IdCardType::ForeignPermanent,
                "USA110086040101",
                "1986-04-01",
            ),
            (IdCardType::Resident, "99999", "1990-01-01"),
        ];
        for (card_type, number, birth) in cases {
            let mut card = IdCard {
                card_type,
                id_number: number.into(),
                birth: birth.into(),
                address: "北京市东城区景山前街4号".into(),
                valid_from: "2015-06-01".into(),
                ..IdCard::default()
            };
            card.extra
                .insert("old_card_number".into(), "USA110086040101".into());
            card.extra
                .insert("permit_number".into(), "H1234578801".into());
            let m = card.masked();
            assert_eq!(m.birth, MASKED_BIRTH, "{number}");
            assert_eq!(m.valid_from, MASKED_BIRTH, "{number}");
            let shown =
                serde_json::to_string(&Event::IdcardRead(Box::new(m.clone()))).unwrap_or_default();
            assert!(!shown.contains(number), "{number}: {shown}");
            // The birth digits as the number writes them (YYYYMMDD or YYMMDD).
            let compact: String = birth.chars().filter(char::is_ascii_digit).collect();
            for digits in [&compact[..], &compact[2..], &compact[..4]] {
                assert!(!m.id_number.contains(digits), "{number}: {}", m.id_number);
            }
            assert_eq!(m.extra["old_card_number"], "USA**********01");
            assert_eq!(m.extra["permit_number"], "H12345*8801");
            assert_eq!(
                m.id_number.chars().count(),
                number.chars().count(),
                "the masked number keeps its length"
            );
        }
        assert_eq!(mask_id_number("110101199001011237"), "110101********123*");
        assert_eq!(mask_id_number("USA110086040101"), "USA**********01");
        assert_eq!(mask_id_number("12345"), "*****");
    }

    /// `kind()` is what a client filters on and `type` is what it reads:
    /// they must agree for every variant, and each kind is listed once.
    #[test]
    fn every_kind_is_its_serialized_type_and_listed_once() {
        let s = String::new;
        let one_of_each = [
            Event::CardSwiped {
                card_no: s(),
                tracks: Tracks::default(),
            },
            Event::CardRejected {
                reason: RejectReason::Unreadable,
                masked: None,
            },
            Event::CardTapped {
                uid: s(),
                atr: s(),
                card_type: CardType::Unknown,
                reader: s(),
                decimal: None,
                blocks: None,
                read_error: None,
            },
            Event::CardRemoved {
                uid: s(),
                reader: s(),
            },
            Event::IdcardRead(Box::default()),
            Event::CodeScanned {
                text: s(),
                kind: CodeKind::Other,
                symbology: None,
                weighed: None,
            },
            Event::CallRinging {
                call_id: s(),
                number: s(),
                normalized: None,
                name: None,
                line: None,
                at: None,
                box_time: None,
            },
            Event::CallEnded {
                call_id: s(),
                answered: None,
            },
            Event::CallPopup {
                call_id: s(),
                number: s(),
                member: None,
                source: s(),
                took_ms: 0,
            },
            Event::PrinterStatus {
                online: true,
                paper: Paper::Ok,
                cover_open: false,
                ribbon_out: false,
                jammed: false,
            },
            Event::UplinkStatus {
                connected: true,
                backlog: 0,
                last_error: None,
            },
            Event::DongleAttached {
                vid: s(),
                pid: s(),
                serial: None,
                licensed: None,
            },
            Event::DongleDetached {
                vid: s(),
                pid: s(),
                serial: None,
                licensed: None,
            },
            Event::DeviceAttached {
                driver: s(),
                transport: s(),
                path: None,
            },
            Event::DeviceDetached {
                driver: s(),
                transport: s(),
                path: None,
                error: None,
            },
            Event::DeviceError {
                driver: s(),
                transport: s(),
                path: None,
                error: s(),
            },
            Event::PassthroughData { data: s(), len: 0 },
            Event::ScaleWeight(Weight::default()),
            Event::MemberIdentified {
                via: s(),
                event_id: s(),
                member: None,
                source: s(),
                took_ms: 0,
            },
            Event::CallOutgoing {
                call_id: s(),
                number: s(),
                normalized: None,
                line: None,
            },
        ];
        assert_eq!(one_of_each.len(), KINDS.len());
        for (i, e) in one_of_each.iter().enumerate() {
            let v = serde_json::to_value(e).unwrap_or_default();
            assert_eq!(v["type"], e.kind(), "{e:?}");
            assert_eq!(e.kind_index(), i);
        }
        let unique: std::collections::BTreeSet<_> = KINDS.iter().collect();
        assert_eq!(unique.len(), KINDS.len());
        // Filters keep the matching kinds as bits of a u64.
        assert!(KINDS.len() <= 64);
    }

    #[test]
    fn an_unreadable_swipe_still_carries_masked_as_null() {
        let ev = Event::CardRejected {
            reason: RejectReason::Unreadable,
            masked: None,
        };
        assert_eq!(
            serde_json::to_string(&ev).unwrap_or_default(),
            r#"{"type":"card.rejected","data":{"reason":"unreadable","masked":null}}"#
        );
    }

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
