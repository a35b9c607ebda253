//! PC/SC contactless readers: ATR classification, the APDUs a tap needs, and
//! a plan for reading configured MIFARE Classic blocks.
//!
//! The daemon's PC/SC thread does the I/O (the `pcsc` crate: connect,
//! `status2` for the ATR, `transmit`); everything it decides is here, so it
//! stays a dumb loop: send [`get_uid`], [`classify_atr`] the ATR, then send
//! each [`Step`] of a [`ReadPlan`] in order, stopping at the first answer
//! [`check`] refuses, and hand all answers to [`collect`].
//!
//! `card.removed` needs no parsing: the card is gone by then and cannot be
//! asked for its UID, so the thread remembers the UID it read at the tap, per
//! reader, and reports that one.
//!
//! Commands are the PC/SC part 3 pseudo-APDUs (class `FF`), which the reader
//! itself answers or translates into MIFARE commands; see PROTOCOLS.md §4.

use crate::CardType;
use std::collections::BTreeMap;
use std::fmt::{self, Write as _};

/// The ATR a PC/SC part 3 reader builds for a storage card (MIFARE Classic,
/// Ultralight …), up to and without `SS NN NN 00 00 00 00 TCK`: T0 = 8F (15
/// historical bytes), TD1, TD2, then category 80, tag 4F (AID), length 0C,
/// and the PC/SC RID `A0 00 00 03 06`.
const STORAGE_PREFIX: [u8; 12] = [
    0x3B, 0x8F, 0x80, 0x01, 0x80, 0x4F, 0x0C, 0xA0, 0x00, 0x00, 0x03, 0x06,
];

/// MIFARE DESFire (EV1 and later, and DESFire-based tags such as NTAG 424
/// DNA): the reader's pseudo-ATR around the ATS historical byte `80`
/// (ATS `06 75 77 81 02 80`). Widely used as the DESFire ATR.
const DESFIRE_ATR: [u8; 6] = [0x3B, 0x81, 0x80, 0x01, 0x80, 0x80];

/// What card an ATR names.
///
/// - A PC/SC storage-card ATR (`3B 8F 80 01 80 4F 0C A0 00 00 03 06 SS NN NN
///   00 00 00 00 TCK`, exactly 20 bytes) by its card name NN NN: `0001`
///   Classic 1K, `0002` Classic 4K, `0003` Ultralight and `003A` Ultralight C.
///   Everything else is `Unknown`, on purpose: MIFARE Mini (`0026`) has 5
///   sectors, not 16, and calling it a 1K would promise blocks it lacks;
///   Plus (`0036`–`0039`) may run in security level 3, where Classic
///   authentication fails; Topaz, FeliCa and the rest have no card type.
/// - [`DESFIRE_ATR`] exactly: `Desfire`.
/// - Any other well-formed contactless ISO 14443-4 ATR (`3B 8n 80 01`, n
///   historical bytes, TCK): `Iso14443_4`. Only DESFire's exact bytes are
///   trusted; other cards' historical bytes (JCOP, bank cards, …) say too
///   little to name a family.
/// - Anything else (contact cards, garbage, truncated ATRs): `Unknown`.
///
/// TCK is not verified: it only guards the transport, and a wrong one would
/// not make the card something else.
pub fn classify_atr(atr: &[u8]) -> CardType {
    if let Some(rest) = atr.strip_prefix(&STORAGE_PREFIX[..]) {
        // A storage-card prefix of the wrong length is a damaged ATR, not an
        // ISO 14443-4 card: don't fall through.
        return match rest {
            [_ss, n1, n2, _, _, _, _, _tck] => match u16::from_be_bytes([*n1, *n2]) {
                0x0001 => CardType::MifareClassic1k,
                0x0002 => CardType::MifareClassic4k,
                0x0003 | 0x003A => CardType::MifareUltralight,
                _ => CardType::Unknown,
            },
            _ => CardType::Unknown,
        };
    }
    if atr == DESFIRE_ATR {
        return CardType::Desfire;
    }
    match atr {
        [0x3B, t0, 0x80, 0x01, hist @ .., _tck]
            if t0 & 0xF0 == 0x80 && hist.len() == usize::from(t0 & 0x0F) =>
        {
            CardType::Iso14443_4
        }
        _ => CardType::Unknown,
    }
}

/// Upper-case hex, no separators (the contract's `uid` and `atr` form).
pub fn hex_upper(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        // Writing to a String cannot fail.
        let _ = write!(s, "{b:02X}");
    }
    s
}

/// Which MIFARE Classic key a sector key is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KeyType {
    #[default]
    A,
    B,
}

crate::config_names!(KeyType { "A" => KeyType::A, "B" => KeyType::B });

/// GET DATA for the UID: `FF CA 00 00 00` (Le 0 = the whole UID).
pub fn get_uid() -> [u8; 5] {
    [0xFF, 0xCA, 0x00, 0x00, 0x00]
}

/// LOAD KEYS into the reader's volatile key slot `slot`: `FF 82 00 slot 06 key`.
pub fn load_key(slot: u8, key: &[u8; 6]) -> Vec<u8> {
    let mut apdu = vec![0xFF, 0x82, 0x00, slot, 0x06];
    apdu.extend_from_slice(key);
    apdu
}

/// GENERAL AUTHENTICATE `block`'s sector with the key in `slot`:
/// `FF 86 00 00 05 01 00 block 60|61 slot` (60 = key A, 61 = key B).
pub fn authenticate(block: u8, key_type: KeyType, slot: u8) -> Vec<u8> {
    let kt = match key_type {
        KeyType::A => 0x60,
        KeyType::B => 0x61,
    };
    vec![0xFF, 0x86, 0x00, 0x00, 0x05, 0x01, 0x00, block, kt, slot]
}

/// READ BINARY of one 16-byte block: `FF B0 00 block 10`.
pub fn read_block(block: u8) -> [u8; 5] {
    [0xFF, 0xB0, 0x00, block, 0x10]
}

/// Why the reader refused a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApduError {
    /// Fewer than the two status bytes (or no answer at all: the card left).
    Short,
    /// `63 00`: the sector key did not authenticate.
    AuthFailed,
    /// `6A 81`: the reader or card does not support the command.
    NotSupported,
    /// `6A 82`: the block does not exist on this card.
    NotFound,
    /// Any other status word.
    Sw(u16),
    /// `90 00`, but a block read returned this many data bytes instead of 16.
    BadLength(usize),
}

impl fmt::Display for ApduError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApduError::Short => f.write_str("no complete answer from the card (removed too soon?)"),
            ApduError::AuthFailed => f.write_str("authentication failed (wrong key?)"),
            ApduError::NotSupported => {
                f.write_str("not supported by the reader or card (status 6A81)")
            }
            ApduError::NotFound => f.write_str("no such block on this card (status 6A82)"),
            ApduError::Sw(sw) => write!(f, "the card answered status {sw:04X}"),
            ApduError::BadLength(n) => write!(f, "expected 16 data bytes, got {n}"),
        }
    }
}

impl std::error::Error for ApduError {}

/// Splits a response APDU into its data and status word (SW1 SW2).
pub fn split_response(resp: &[u8]) -> Result<(&[u8], u16), ApduError> {
    match resp.split_last_chunk::<2>() {
        Some((data, sw)) => Ok((data, u16::from_be_bytes(*sw))),
        None => Err(ApduError::Short),
    }
}

/// The data of a response whose status is `90 00`, else why not.
pub fn check(resp: &[u8]) -> Result<&[u8], ApduError> {
    let (data, sw) = split_response(resp)?;
    match sw {
        0x9000 => Ok(data),
        0x6300 => Err(ApduError::AuthFailed),
        0x6A81 => Err(ApduError::NotSupported),
        0x6A82 => Err(ApduError::NotFound),
        other => Err(ApduError::Sw(other)),
    }
}

/// The reader key slot the plan loads its key into. Slot 0 exists on every
/// reader that has volatile slots (ACR122U: 0–1, Omnikey: 0x20…, but 0 is
/// the common denominator for readers following part 3).
pub const KEY_SLOT: u8 = 0;

/// The MIFARE Classic sector holding `block`: 4-block sectors 0–31 for
/// blocks 0–127, then 16-block sectors 32–39 (4K cards only).
pub fn sector_of(block: u8) -> u8 {
    if block < 128 {
        block / 4
    } else {
        32 + (block - 128) / 16
    }
}

/// Whether `block` is its sector's trailer (keys and access bits).
pub fn is_trailer(block: u8) -> bool {
    if block < 128 {
        block % 4 == 3
    } else {
        block % 16 == 15
    }
}

/// Parses a 6-byte MIFARE key written as 12 hex digits (`FFFFFFFFFFFF`;
/// `:`, `-` and spaces between digits are ignored). Errors never repeat the
/// key: it is a secret and they end up in logs.
pub fn parse_key(hex: &str) -> Result<[u8; 6], String> {
    let mut key = [0u8; 6];
    let mut n = 0usize;
    for c in hex.chars() {
        if matches!(c, ':' | '-' | ' ') {
            continue;
        }
        let Some(v) = c.to_digit(16) else {
            return Err("must be 12 hex digits (0-9, A-F)".into());
        };
        if let Some(b) = key.get_mut(n / 2) {
            // Two digits per byte, high nibble first; v < 16 so the cast is exact.
            *b = (*b << 4) | v as u8;
        }
        n += 1;
    }
    if n != 12 {
        return Err(format!("must be 12 hex digits (6 bytes), got {n} digits"));
    }
    Ok(key)
}

/// What one step of a [`ReadPlan`] does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepKind {
    LoadKey,
    Auth { block: u8 },
    Read { block: u8 },
}

/// One APDU to send, and what it is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    pub apdu: Vec<u8>,
    pub kind: StepKind,
}

/// Why configured blocks could not be read; the tap itself still counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadError {
    pub step: StepKind,
    pub error: ApduError,
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.step {
            StepKind::LoadKey => write!(f, "loading the key into the reader: {}", self.error),
            StepKind::Auth { block } | StepKind::Read { block } => {
                write!(f, "block {block}: {}", self.error)
            }
        }
    }
}

impl std::error::Error for ReadError {}

/// Which MIFARE Classic blocks to read on each tap, with which key.
#[derive(Clone, PartialEq, Eq)]
pub struct ReadPlan {
    /// Sorted, without duplicates or sector trailers (see [`ReadPlan::new`]).
    pub blocks: Vec<u8>,
    pub key: [u8; 6],
    pub key_type: KeyType,
}

// The key is a secret: Debug (logs, panics) never shows it.
impl fmt::Debug for ReadPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadPlan")
            .field("blocks", &self.blocks)
            .field("key_type", &self.key_type)
            .finish_non_exhaustive()
    }
}

impl ReadPlan {
    /// Checks and normalizes the configured blocks. Sector trailers are refused:
    /// they hold the keys (a readable key B would end up in events), and reading
    /// them is never what a membership card layout needs. Blocks are sorted and
    /// deduplicated so each sector is authenticated once.
    pub fn new(mut blocks: Vec<u8>, key: [u8; 6], key_type: KeyType) -> Result<ReadPlan, String> {
        if blocks.is_empty() {
            return Err("list at least one block (or leave `blocks` out)".into());
        }
        if let Some(t) = blocks.iter().find(|b| is_trailer(**b)) {
            return Err(format!(
                "block {t} is the trailer of sector {} and holds its keys; it cannot be read",
                sector_of(*t)
            ));
        }
        blocks.sort_unstable();
        blocks.dedup();
        Ok(ReadPlan {
            blocks,
            key,
            key_type,
        })
    }

    /// The APDUs to send, in order: load the key, then for each sector
    /// authenticate its first wanted block (authentication covers the whole
    /// sector) and read its wanted blocks.
    pub fn steps(&self) -> Vec<Step> {
        let mut steps = vec![Step {
            apdu: load_key(KEY_SLOT, &self.key),
            kind: StepKind::LoadKey,
        }];
        let mut sector = None;
        for &block in &self.blocks {
            if sector != Some(sector_of(block)) {
                sector = Some(sector_of(block));
                steps.push(Step {
                    apdu: authenticate(block, self.key_type, KEY_SLOT),
                    kind: StepKind::Auth { block },
                });
            }
            steps.push(Step {
                apdu: read_block(block).to_vec(),
                kind: StepKind::Read { block },
            });
        }
        steps
    }
}

/// Interprets the answers to `steps` (in order; the sender may stop after the
/// first failure, so there may be fewer): block number in decimal → 32
/// upper-case hex digits, or the first step that failed. A missing answer
/// counts as [`ApduError::Short`]; extra answers are ignored.
pub fn collect(
    steps: &[Step],
    responses: &[Vec<u8>],
) -> Result<BTreeMap<String, String>, ReadError> {
    let mut blocks = BTreeMap::new();
    for (i, step) in steps.iter().enumerate() {
        let resp = responses.get(i).map(Vec::as_slice).unwrap_or_default();
        let fail = |error| ReadError {
            step: step.kind,
            error,
        };
        let data = check(resp).map_err(fail)?;
        if let StepKind::Read { block } = step.kind {
            if data.len() != 16 {
                return Err(fail(ApduError::BadLength(data.len())));
            }
            blocks.insert(block.to_string(), hex_upper(data));
        }
    }
    Ok(blocks)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        let digits: Vec<u8> = s
            .bytes()
            .filter(u8::is_ascii_hexdigit)
            .filter_map(|b| char::from(b).to_digit(16))
            .map(|d| d as u8)
            .collect();
        digits
            .chunks(2)
            .map(|p| p.iter().fold(0, |a, d| (a << 4) | d))
            .collect()
    }

    fn storage_atr(nn: u16) -> Vec<u8> {
        let mut atr = STORAGE_PREFIX.to_vec();
        atr.push(0x03);
        atr.extend_from_slice(&nn.to_be_bytes());
        atr.extend_from_slice(&[0, 0, 0, 0]);
        let tck = atr.iter().skip(1).fold(0, |a, b| a ^ b);
        atr.push(tck);
        atr
    }

    const OK: [u8; 2] = [0x90, 0x00];

    #[test]
    fn storage_card_atrs_name_their_card() {
        let classic_1k = unhex("3B8F8001804F0CA000000306030001000000006A");
        assert_eq!(storage_atr(0x0001), classic_1k, "TCK as the fixture has it");
        assert_eq!(classify_atr(&classic_1k), CardType::MifareClassic1k);
        let classic_4k = unhex("3B 8F 80 01 80 4F 0C A0 00 00 03 06 03 00 02 00 00 00 00 69");
        assert_eq!(classify_atr(&classic_4k), CardType::MifareClassic4k);
        let ultralight = unhex("3B 8F 80 01 80 4F 0C A0 00 00 03 06 03 00 03 00 00 00 00 68");
        assert_eq!(classify_atr(&ultralight), CardType::MifareUltralight);
        assert_eq!(
            classify_atr(&storage_atr(0x003A)),
            CardType::MifareUltralight
        );
        // Mini, Plus, Topaz, FeliCa: no honest card type.
        for nn in [
            0x0026, 0x0030, 0x0036, 0x0037, 0x0038, 0x0039, 0x003B, 0xFFFF,
        ] {
            assert_eq!(
                classify_atr(&storage_atr(nn)),
                CardType::Unknown,
                "{nn:04X}"
            );
        }
        // A truncated or stretched storage ATR is damaged, not ISO 14443-4.
        assert_eq!(classify_atr(&classic_1k[..19]), CardType::Unknown);
        let mut long = classic_1k.clone();
        long.push(0);
        assert_eq!(classify_atr(&long), CardType::Unknown);
    }

    #[test]
    fn iso14443_4_atrs() {
        assert_eq!(classify_atr(&unhex("3B 81 80 01 80 80")), CardType::Desfire);
        // A JCOP / EMV contactless card: ISO 14443-4, family unknown.
        let jcop = unhex("3B 8A 80 01 00 31 C1 73 C8 40 00 00 90 00 90");
        assert_eq!(classify_atr(&jcop), CardType::Iso14443_4);
        // DESFire's byte with a wrong TCK still is a 14443-4 card, but not trusted as DESFire.
        assert_eq!(
            classify_atr(&unhex("3B 81 80 01 80 81")),
            CardType::Iso14443_4
        );
        // No historical bytes at all.
        assert_eq!(classify_atr(&unhex("3B 80 80 01 01")), CardType::Iso14443_4);
        // Historical byte count that does not match the length.
        assert_eq!(classify_atr(&unhex("3B 82 80 01 80 80")), CardType::Unknown);
        // A contact card (T=0).
        assert_eq!(
            classify_atr(&unhex("3B 9F 95 81 31 FE 9F 00 66 46 53 05")),
            CardType::Unknown
        );
    }

    #[test]
    fn garbage_atrs_are_unknown() {
        assert_eq!(classify_atr(&[]), CardType::Unknown);
        assert_eq!(classify_atr(&[0x3B]), CardType::Unknown);
        assert_eq!(classify_atr(&[0xAB; 100]), CardType::Unknown);
        let mut hundred = STORAGE_PREFIX.to_vec();
        hundred.resize(100, 0);
        assert_eq!(classify_atr(&hundred), CardType::Unknown);
    }

    #[test]
    fn hex_is_upper_case() {
        assert_eq!(hex_upper(&[0x04, 0xA1, 0xB2, 0xff, 0x00]), "04A1B2FF00");
        assert_eq!(hex_upper(&[]), "");
    }

    #[test]
    fn apdus_are_exact() {
        assert_eq!(get_uid(), [0xFF, 0xCA, 0x00, 0x00, 0x00]);
        assert_eq!(
            load_key(1, &[0xA0, 0xA1, 0xA2, 0xA3, 0xA4, 0xA5]),
            unhex("FF 82 00 01 06 A0 A1 A2 A3 A4 A5")
        );
        assert_eq!(
            authenticate(4, KeyType::A, 0),
            unhex("FF 86 00 00 05 01 00 04 60 00")
        );
        assert_eq!(
            authenticate(200, KeyType::B, 1),
            unhex("FF 86 00 00 05 01 00 C8 61 01")
        );
        assert_eq!(read_block(8), [0xFF, 0xB0, 0x00, 0x08, 0x10]);
    }

    #[test]
    fn responses_split_and_check() {
        let uid = unhex("04A1B2C3D4E5F6 9000");
        assert_eq!(split_response(&uid), Ok((&uid[..7], 0x9000)));
        assert_eq!(check(&uid), Ok(&uid[..7]));
        assert_eq!(check(&OK), Ok(&[][..]));
        assert_eq!(check(&[0x63, 0x00]), Err(ApduError::AuthFailed));
        assert_eq!(check(&[0x6A, 0x81]), Err(ApduError::NotSupported));
        assert_eq!(check(&[0x6A, 0x82]), Err(ApduError::NotFound));
        assert_eq!(check(&[1, 2, 0x69, 0x82]), Err(ApduError::Sw(0x6982)));
        assert_eq!(check(&[0x90]), Err(ApduError::Short));
        assert_eq!(check(&[]), Err(ApduError::Short));
        assert_eq!(
            ApduError::AuthFailed.to_string(),
            "authentication failed (wrong key?)"
        );
        assert_eq!(
            ApduError::Sw(0x6982).to_string(),
            "the card answered status 6982"
        );
    }

    #[test]
    fn keys_parse_without_echoing() {
        assert_eq!(parse_key("FFFFFFFFFFFF"), Ok([0xFF; 6]));
        assert_eq!(
            parse_key("a0:a1:a2:a3:a4:a5"),
            Ok([0xA0, 0xA1, 0xA2, 0xA3, 0xA4, 0xA5])
        );
        assert_eq!(
            parse_key("D3 F7 D3 F7 D3 F7"),
            Ok([0xD3, 0xF7, 0xD3, 0xF7, 0xD3, 0xF7])
        );
        for bad in [
            "",
            "FFFFFFFFFF",
            "FFFFFFFFFFFFFF",
            "1234567890AZ",
            "１２３４５６７８９０１２",
        ] {
            let e = parse_key(bad).err().unwrap_or_default();
            assert!(e.starts_with("must be 12 hex digits"), "{bad}: {e}");
        }
        let e = parse_key("0123456789ABCD").err().unwrap_or_default();
        assert!(!e.contains("0123"), "{e}");
        let plan = ReadPlan::new(vec![4], [0x5A; 6], KeyType::A);
        assert!(!format!("{plan:?}").contains("90"), "{plan:?}");
    }

    fn plan(blocks: &[u8]) -> Result<ReadPlan, String> {
        ReadPlan::new(blocks.to_vec(), [0xFF; 6], KeyType::A)
    }

    #[test]
    fn steps_authenticate_once_per_sector() {
        let Ok(p) = plan(&[8, 5, 4, 5]) else {
            panic!("valid plan refused");
        };
        assert_eq!(p.blocks, [4, 5, 8]);
        let steps = p.steps();
        let kinds: Vec<StepKind> = steps.iter().map(|s| s.kind).collect();
        assert_eq!(
            kinds,
            [
                StepKind::LoadKey,
                StepKind::Auth { block: 4 },
                StepKind::Read { block: 4 },
                StepKind::Read { block: 5 },
                StepKind::Auth { block: 8 },
                StepKind::Read { block: 8 },
            ]
        );
        let apdus: Vec<Vec<u8>> = steps.into_iter().map(|s| s.apdu).collect();
        assert_eq!(
            apdus,
            [
                unhex("FF 82 00 00 06 FF FF FF FF FF FF"),
                unhex("FF 86 00 00 05 01 00 04 60 00"),
                unhex("FF B0 00 04 10"),
                unhex("FF B0 00 05 10"),
                unhex("FF 86 00 00 05 01 00 08 60 00"),
                unhex("FF B0 00 08 10"),
            ]
        );
        // 4K upper sectors are 16 blocks: 128 and 142 share one, 144 starts the next.
        let Ok(p) = plan(&[128, 142, 144]) else {
            panic!("valid plan refused");
        };
        let auths = p
            .steps()
            .iter()
            .filter(|s| matches!(s.kind, StepKind::Auth { .. }))
            .count();
        assert_eq!(auths, 2);
    }

    #[test]
    fn trailers_and_empty_lists_are_refused() {
        for t in [3, 7, 63, 127, 143, 255] {
            let e = plan(&[4, t]).err().unwrap_or_default();
            assert!(e.contains(&format!("block {t} is the trailer")), "{e}");
        }
        assert!(plan(&[]).is_err());
        assert!(plan(&[0, 1, 2, 128, 254]).is_ok());
    }

    fn block_answer(fill: u8) -> Vec<u8> {
        let mut r = vec![fill; 16];
        r.extend_from_slice(&OK);
        r
    }

    #[test]
    fn collect_reads_blocks() {
        let Ok(p) = plan(&[4, 5, 8]) else {
            panic!("valid plan refused");
        };
        let steps = p.steps();
        let responses = vec![
            OK.to_vec(),
            OK.to_vec(),
            block_answer(4),
            block_answer(5),
            OK.to_vec(),
            block_answer(8),
        ];
        let got = collect(&steps, &responses);
        let want: BTreeMap<String, String> = [("4", "04"), ("5", "05"), ("8", "08")]
            .iter()
            .map(|(b, h)| (b.to_string(), h.repeat(16)))
            .collect();
        assert_eq!(got, Ok(want));
    }

    #[test]
    fn collect_names_the_failing_block() {
        let Ok(p) = plan(&[4, 5, 8]) else {
            panic!("valid plan refused");
        };
        let steps = p.steps();
        // The sender stops at the first failure: the wrong key.
        let e = collect(&steps, &[OK.to_vec(), vec![0x63, 0x00]]);
        assert_eq!(
            e.map_err(|e| e.to_string()),
            Err("block 4: authentication failed (wrong key?)".into())
        );
        // The card left halfway: answers run out.
        let e = collect(&steps, &[OK.to_vec(), OK.to_vec(), block_answer(4)]);
        assert_eq!(
            e,
            Err(ReadError {
                step: StepKind::Read { block: 5 },
                error: ApduError::Short
            })
        );
        // A short block.
        let e = collect(&steps, &[OK.to_vec(), OK.to_vec(), vec![1, 2, 0x90, 0x00]]);
        assert_eq!(
            e.map_err(|e| e.to_string()),
            Err("block 4: expected 16 data bytes, got 2".into())
        );
        let e = collect(&steps, &[vec![0x6A, 0x81]]);
        assert!(e.is_err_and(|e| e.to_string().starts_with("loading the key")));
        assert_eq!(collect(&[], &[]), Ok(BTreeMap::new()));
    }

    #[test]
    fn no_panic_on_arbitrary_bytes() {
        // A small deterministic generator stands in for the fuzzer in unit tests.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        // Mostly bytes the parsers look for, so every path is reached.
        const INTERESTING: &[u8] = &[0x3B, 0x8F, 0x80, 0x01, 0x81, 0x90, 0x00, 0x63, 0x6A, 0x82];
        for _ in 0..3000 {
            let len = (next() % 24) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    let r = next();
                    let i = (r >> 8) as usize % (INTERESTING.len() + 4);
                    INTERESTING.get(i).copied().unwrap_or(r as u8)
                })
                .collect();
            let _ = classify_atr(&bytes);
            if let Ok((data, _)) = split_response(&bytes) {
                assert_eq!(data.len() + 2, bytes.len());
            }
            let blocks: Vec<u8> = bytes.iter().take(4).copied().collect();
            if let Ok(p) = ReadPlan::new(blocks, [0; 6], KeyType::B) {
                let steps = p.steps();
                let responses: Vec<Vec<u8>> = bytes
                    .chunks(usize::from(bytes.first().copied().unwrap_or(1) % 19) + 1)
                    .map(<[u8]>::to_vec)
                    .collect();
                if let Ok(map) = collect(&steps, &responses) {
                    assert!(map.values().all(|v| v.len() == 32));
                }
            }
        }
    }
}
