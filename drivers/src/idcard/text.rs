//! The 256-byte text block: UCS-2 little-endian, space-padded fields at fixed
//! offsets, one layout per card type, told apart by the character at offset
//! 248 (PROTOCOLS.md §1).

use crate::{IdCard, IdCardType};
use std::collections::BTreeMap;
use std::fmt;

/// Length of the text block.
pub const TEXT_LEN: usize = 256;
/// Length of the photo (WLT) in a read answer.
pub const PHOTO_LEN: usize = 1024;
/// Byte offset of the card type flag (one UCS-2 character).
pub const FLAG_OFFSET: usize = 248;

/// `extra` key: GAT residence permit number (`'J'` cards).
pub const EXTRA_PERMIT_NUMBER: &str = "permit_number";
/// `extra` key: how many times the GAT permit was issued (`'J'` cards).
pub const EXTRA_ISSUE_COUNT: &str = "issue_count";
/// `extra` key: English name (foreigner cards; on 2023 cards both name parts joined).
pub const EXTRA_ENGLISH_NAME: &str = "english_name";
/// `extra` key: 3-letter nationality code (foreigner cards; also in `nation`).
pub const EXTRA_NATIONALITY: &str = "nationality";
/// `extra` key: card version (old foreigner cards).
pub const EXTRA_VERSION: &str = "version";
/// `extra` key: issuing authority code (old foreigner cards).
pub const EXTRA_AUTHORITY_CODE: &str = "authority_code";
/// `extra` key: renewal count (2023 foreigner cards).
pub const EXTRA_RENEWAL_COUNT: &str = "renewal_count";
/// `extra` key: link to the holder's old-layout card (2023 foreigner cards).
pub const EXTRA_OLD_CARD_NUMBER: &str = "old_card_number";

/// The four text layouts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TextLayout {
    /// Flag `' '`: mainland resident identity card.
    Resident,
    /// Flag `'J'`: Hong Kong / Macao / Taiwan residence permit (resident
    /// layout plus permit number and issue count).
    GatResidence,
    /// Flag `'I'`: foreigner permanent residence card, old layout.
    ForeignOld,
    /// Flag `'Y'`: foreigner permanent residence card, 2023 layout.
    Foreign2023,
}

impl TextLayout {
    /// The flag character at offset 248.
    pub fn flag(self) -> char {
        match self {
            TextLayout::Resident => ' ',
            TextLayout::GatResidence => 'J',
            TextLayout::ForeignOld => 'I',
            TextLayout::Foreign2023 => 'Y',
        }
    }

    /// The layout a flag names. A NUL counts as resident: first-generation
    /// blocks leave the reserved area zeroed on some readers (tolerance, not
    /// from a source).
    pub fn from_flag(flag: u16) -> Option<TextLayout> {
        match flag {
            0x20 | 0x00 => Some(TextLayout::Resident),
            0x4A => Some(TextLayout::GatResidence),
            0x49 => Some(TextLayout::ForeignOld),
            0x59 => Some(TextLayout::Foreign2023),
            _ => None,
        }
    }

    /// The layout of a text block, from its flag.
    pub fn of(text: &[u8]) -> Option<TextLayout> {
        let b = text.get(FLAG_OFFSET..FLAG_OFFSET + 2)?;
        TextLayout::from_flag(u16::from_le_bytes([*b.first()?, *b.get(1)?]))
    }

    /// The contract's card type.
    pub fn card_type(self) -> IdCardType {
        match self {
            TextLayout::Resident => IdCardType::Resident,
            TextLayout::GatResidence => IdCardType::GatResidence,
            TextLayout::ForeignOld | TextLayout::Foreign2023 => IdCardType::ForeignPermanent,
        }
    }
}

/// Why a text block could not be decoded. Never holds card text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextError {
    /// The block is not [`TEXT_LEN`] bytes.
    Length(usize),
    /// The flag at offset 248 names no known layout (the flag's code unit).
    UnknownCardType(u16),
    /// The id number field is blank: not a usable card.
    MissingIdNumber,
}

impl fmt::Display for TextError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TextError::Length(n) => write!(f, "text block is {n} bytes, not {TEXT_LEN}"),
            TextError::UnknownCardType(flag) => {
                write!(f, "unknown card type flag U+{flag:04X} in text block")
            }
            TextError::MissingIdNumber => write!(f, "text block has no id number"),
        }
    }
}

/// The 56 ethnic groups in GB 3304 order (code = index + 1), without 族.
pub const NATIONS: [&str; 56] = [
    "汉",
    "蒙古",
    "回",
    "藏",
    "维吾尔",
    "苗",
    "彝",
    "壮",
    "布依",
    "朝鲜",
    "满",
    "侗",
    "瑶",
    "白",
    "土家",
    "哈尼",
    "哈萨克",
    "傣",
    "黎",
    "傈僳",
    "佤",
    "畲",
    "高山",
    "拉祜",
    "水",
    "东乡",
    "纳西",
    "景颇",
    "柯尔克孜",
    "土",
    "达斡尔",
    "仫佬",
    "羌",
    "布朗",
    "撒拉",
    "毛南",
    "仡佬",
    "锡伯",
    "阿昌",
    "普米",
    "塔吉克",
    "怒",
    "乌孜别克",
    "俄罗斯",
    "鄂温克",
    "德昂",
    "保安",
    "裕固",
    "京",
    "塔塔尔",
    "独龙",
    "鄂伦春",
    "赫哲",
    "门巴",
    "珞巴",
    "基诺",
];

/// A nation code's name: 01–56 the groups, 97 其他, 98 外国血统. Anything
/// else (a blank field, a code not in GB 3304) is kept as the card says.
pub fn nation_name(code: &str) -> String {
    let known = match code {
        "97" => Some("其他"),
        "98" => Some("外国血统"),
        c if c.len() == 2 && c.bytes().all(|b| b.is_ascii_digit()) => c
            .parse::<usize>()
            .ok()
            .and_then(|n| n.checked_sub(1))
            .and_then(|i| NATIONS.get(i).copied()),
        _ => None,
    };
    known.map_or_else(|| code.to_string(), str::to_string)
}

/// The inverse of [`nation_name`].
fn nation_code(name: &str) -> String {
    match name {
        "其他" => "97".into(),
        "外国血统" => "98".into(),
        _ => NATIONS
            .iter()
            .position(|n| *n == name)
            .map_or_else(|| name.to_string(), |i| format!("{:02}", i + 1)),
    }
}

/// Gender code → the card's word: 0 未知, 1 男, 2 女, 9 未说明. Anything else
/// is kept as is.
pub fn gender_name(code: &str) -> String {
    match code {
        "0" => "未知".into(),
        "1" => "男".into(),
        "2" => "女".into(),
        "9" => "未说明".into(),
        other => other.into(),
    }
}

fn gender_code(name: &str) -> String {
    match name {
        "未知" => "0".into(),
        "男" => "1".into(),
        "女" => "2".into(),
        "未说明" => "9".into(),
        other => other.into(),
    }
}

fn is_valid_date(d: &str) -> bool {
    if d.len() != 8 || !d.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let num = |r: std::ops::Range<usize>| d.get(r).and_then(|s| s.parse::<u32>().ok());
    let (Some(y), Some(m), Some(day)) = (num(0..4), num(4..6), num(6..8)) else {
        return false;
    };
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&day)
}

/// `YYYYMMDD` → `YYYY-MM-DD`. Anything that is not a real calendar date
/// (长期, a blank, a corrupted field) is kept exactly as the card says rather
/// than guessed at, so a client can still show it.
pub fn format_date(raw: &str) -> String {
    match (raw.get(0..4), raw.get(4..6), raw.get(6..8)) {
        (Some(y), Some(m), Some(d)) if is_valid_date(raw) => format!("{y}-{m}-{d}"),
        _ => raw.to_string(),
    }
}

/// The inverse of [`format_date`].
fn unformat_date(s: &str) -> String {
    let b = s.as_bytes();
    if b.len() == 10 && b.get(4) == Some(&b'-') && b.get(7) == Some(&b'-') {
        let digits: String = s.chars().filter(|c| *c != '-').collect();
        if is_valid_date(&digits) {
            return digits;
        }
    }
    s.to_string()
}

/// The UCS-2 code units of `width` bytes at `off` (missing bytes: none).
fn units(text: &[u8], off: usize, width: usize) -> Vec<u16> {
    text.get(off..off + width)
        .unwrap_or(&[])
        .chunks_exact(2)
        .filter_map(|c| Some(u16::from_le_bytes([*c.first()?, *c.get(1)?])))
        .collect()
}

/// Code units → text, with padding (spaces, NULs) trimmed from both ends.
/// An unpaired surrogate (not valid UCS-2) becomes U+FFFD.
fn to_string(units: &[u16]) -> String {
    let s: String = char::decode_utf16(units.iter().copied())
        .map(|r| r.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect();
    s.trim_matches(|c| c == ' ' || c == '\0').to_string()
}

fn field(text: &[u8], off: usize, width: usize) -> String {
    to_string(&units(text, off, width))
}

fn put_extra(extra: &mut BTreeMap<String, String>, key: &str, value: String) {
    if !value.is_empty() {
        extra.insert(key.to_string(), value);
    }
}

/// Decodes a text block (exactly [`TEXT_LEN`] bytes) of any of the four
/// layouts.
///
/// - Dates become `YYYY-MM-DD`; anything else (长期, blanks, impossible
///   dates) is kept as the card says.
/// - `gender` is 男 / 女 / 未知 / 未说明; `nation` the group's name (97 其他,
///   98 外国血统; unknown codes kept as digits). GAT permits carry no nation
///   (blank).
/// - Foreigner cards: `nation` is the 3-letter nationality code, `name` the
///   Chinese name if there is one, else the English name, `id_number` the
///   card number, `address` blank. Old cards (`'I'`) have no authority name:
///   `authority` is blank and the code goes to `extra["authority_code"]`.
///   2023 cards (`'Y'`): `authority` is read from the resident position
///   158/30 (PROTOCOLS.md leaves that range unlisted; blank if unused).
/// - Type-specific fields go to `extra`, only when non-blank: see the
///   `EXTRA_*` keys.
///
/// `photo_wlt` is left `None`: the photo is not in the text block.
pub fn decode_text(text: &[u8]) -> Result<IdCard, TextError> {
    if text.len() != TEXT_LEN {
        return Err(TextError::Length(text.len()));
    }
    let flag = units(text, FLAG_OFFSET, 2).first().copied().unwrap_or(0);
    let layout = TextLayout::from_flag(flag).ok_or(TextError::UnknownCardType(flag))?;
    let mut extra = BTreeMap::new();
    let card = match layout {
        TextLayout::Resident | TextLayout::GatResidence => {
            if layout == TextLayout::GatResidence {
                put_extra(&mut extra, EXTRA_PERMIT_NUMBER, field(text, 220, 18));
                put_extra(&mut extra, EXTRA_ISSUE_COUNT, field(text, 238, 4));
            }
            IdCard {
                card_type: layout.card_type(),
                name: field(text, 0, 30),
                gender: gender_name(&field(text, 30, 2)),
                nation: nation_name(&field(text, 32, 4)),
                birth: format_date(&field(text, 36, 16)),
                address: field(text, 52, 70),
                id_number: field(text, 122, 36),
                authority: field(text, 158, 30),
                valid_from: format_date(&field(text, 188, 16)),
                valid_to: format_date(&field(text, 204, 16)),
                photo_wlt: None,
                extra,
            }
        }
        TextLayout::ForeignOld => {
            let english = field(text, 0, 120);
            let chinese = field(text, 158, 30);
            let nationality = field(text, 152, 6);
            put_extra(&mut extra, EXTRA_ENGLISH_NAME, english.clone());
            put_extra(&mut extra, EXTRA_NATIONALITY, nationality.clone());
            put_extra(&mut extra, EXTRA_VERSION, field(text, 236, 4));
            put_extra(&mut extra, EXTRA_AUTHORITY_CODE, field(text, 240, 8));
            IdCard {
                card_type: layout.card_type(),
                name: if chinese.is_empty() { english } else { chinese },
                gender: gender_name(&field(text, 120, 2)),
                nation: nationality,
                birth: format_date(&field(text, 220, 16)),
                address: String::new(),
                id_number: field(text, 122, 30),
                authority: String::new(),
                valid_from: format_date(&field(text, 188, 16)),
                valid_to: format_date(&field(text, 204, 16)),
                photo_wlt: None,
                extra,
            }
        }
        TextLayout::Foreign2023 => {
            // The English name continues from 52/70 into 220/22: join the raw
            // units before trimming, so a space at the seam survives.
            let mut en = units(text, 52, 70);
            en.extend(units(text, 220, 22));
            let english = to_string(&en);
            let chinese = field(text, 0, 30);
            let nationality = field(text, 242, 6);
            put_extra(&mut extra, EXTRA_ENGLISH_NAME, english.clone());
            put_extra(&mut extra, EXTRA_NATIONALITY, nationality.clone());
            put_extra(&mut extra, EXTRA_RENEWAL_COUNT, field(text, 32, 4));
            put_extra(&mut extra, EXTRA_OLD_CARD_NUMBER, field(text, 250, 6));
            IdCard {
                card_type: layout.card_type(),
                name: if chinese.is_empty() { english } else { chinese },
                gender: gender_name(&field(text, 30, 2)),
                nation: nationality,
                birth: format_date(&field(text, 36, 16)),
                address: String::new(),
                id_number: field(text, 122, 36),
                authority: field(text, 158, 30),
                valid_from: format_date(&field(text, 188, 16)),
                valid_to: format_date(&field(text, 204, 16)),
                photo_wlt: None,
                extra,
            }
        }
    };
    if card.id_number.is_empty() {
        return Err(TextError::MissingIdNumber);
    }
    Ok(card)
}

/// Writes `s`'s UTF-16 units into `width` bytes at `off`, cut to fit (never
/// splitting a surrogate pair); the rest stays padding.
fn put_units(buf: &mut [u8; TEXT_LEN], off: usize, width: usize, units: &[u16]) {
    let mut n = units.len().min(width / 2);
    // Do not leave half of a pair at the end.
    if n > 0
        && n < units.len()
        && units
            .get(n - 1)
            .is_some_and(|u| (0xD800..0xDC00).contains(u))
    {
        n -= 1;
    }
    for (i, u) in units.iter().take(n).enumerate() {
        let at = off + 2 * i;
        if let Some(dst) = buf.get_mut(at..at + 2) {
            dst.copy_from_slice(&u.to_le_bytes());
        }
    }
}

fn put(buf: &mut [u8; TEXT_LEN], off: usize, width: usize, s: &str) {
    let u: Vec<u16> = s.encode_utf16().collect();
    put_units(buf, off, width, &u);
}

fn extra<'a>(card: &'a IdCard, key: &str) -> &'a str {
    card.extra.get(key).map_or("", String::as_str)
}

/// Builds the text block a card of `layout` would hold for `card` (for the
/// reader simulator and tests): the inverse of [`decode_text`], so
/// `decode_text(&encode_text(&c, l))` gives back `c` for any `c` that
/// `decode_text` produced from a block of layout `l` (`photo_wlt` aside).
/// Fields too long for their slot are cut; `card.card_type` is not consulted
/// (the layout decides).
pub fn encode_text(card: &IdCard, layout: TextLayout) -> [u8; TEXT_LEN] {
    let mut buf = [0u8; TEXT_LEN];
    for pair in buf.chunks_exact_mut(2) {
        pair.copy_from_slice(&[0x20, 0x00]);
    }
    let b = &mut buf;
    match layout {
        TextLayout::Resident | TextLayout::GatResidence => {
            put(b, 0, 30, &card.name);
            put(b, 30, 2, &gender_code(&card.gender));
            put(b, 32, 4, &nation_code(&card.nation));
            put(b, 36, 16, &unformat_date(&card.birth));
            put(b, 52, 70, &card.address);
            put(b, 122, 36, &card.id_number);
            put(b, 158, 30, &card.authority);
            put(b, 188, 16, &unformat_date(&card.valid_from));
            put(b, 204, 16, &unformat_date(&card.valid_to));
            if layout == TextLayout::GatResidence {
                put(b, 220, 18, extra(card, EXTRA_PERMIT_NUMBER));
                put(b, 238, 4, extra(card, EXTRA_ISSUE_COUNT));
            }
        }
        TextLayout::ForeignOld | TextLayout::Foreign2023 => {
            let english = extra(card, EXTRA_ENGLISH_NAME);
            // decode_text shows the English name when there is no Chinese one.
            let chinese = if card.name == english {
                ""
            } else {
                card.name.as_str()
            };
            let nationality = if card.nation.is_empty() {
                extra(card, EXTRA_NATIONALITY)
            } else {
                card.nation.as_str()
            };
            put(b, 188, 16, &unformat_date(&card.valid_from));
            put(b, 204, 16, &unformat_date(&card.valid_to));
            if layout == TextLayout::ForeignOld {
                put(b, 0, 120, english);
                put(b, 120, 2, &gender_code(&card.gender));
                put(b, 122, 30, &card.id_number);
                put(b, 152, 6, nationality);
                put(b, 158, 30, chinese);
                put(b, 220, 16, &unformat_date(&card.birth));
                put(b, 236, 4, extra(card, EXTRA_VERSION));
                put(b, 240, 8, extra(card, EXTRA_AUTHORITY_CODE));
            } else {
                put(b, 0, 30, chinese);
                put(b, 30, 2, &gender_code(&card.gender));
                put(b, 32, 4, extra(card, EXTRA_RENEWAL_COUNT));
                put(b, 36, 16, &unformat_date(&card.birth));
                let en: Vec<u16> = english.encode_utf16().collect();
                let split = en.len().min(35);
                put_units(b, 52, 70, en.get(..split).unwrap_or(&[]));
                put_units(b, 220, 22, en.get(split..).unwrap_or(&[]));
                put(b, 122, 36, &card.id_number);
                put(b, 158, 30, &card.authority);
                put(b, 242, 6, nationality);
                put(b, 250, 6, extra(card, EXTRA_OLD_CARD_NUMBER));
            }
        }
    }
    let flag = (layout.flag() as u16).to_le_bytes();
    if let Some(dst) = buf.get_mut(FLAG_OFFSET..FLAG_OFFSET + 2) {
        dst.copy_from_slice(&flag);
    }
    buf
}
