//! Phone numbers to E.164, and the keys a member cache matches them by.
//!
//! Caller-ID boxes deliver numbers the way the exchange dialled them
//! (`13812345678`, `075512345678`, `4075550000`); members type theirs in any
//! style (`138-1234-5678`, `+86 755 1234 5678`, `(0755)12345678`). Both sides
//! go through [`lookup_keys`], so a caller matches a member however either was
//! written.
//!
//! China (`country = "86"`, the default) is handled in detail; `"1"` (NANP)
//! knows 10/11-digit numbers; any other country code gets the generic rule
//! (international prefix `00`/`+`, trunk prefix `0`).

/// Which country a number without its own country code belongs to, by calling code.
pub const DEFAULT_COUNTRY: &str = "86";

/// Shortest and longest E.164 digit counts (without `+`) accepted.
const E164_MIN: usize = 8;
const E164_MAX: usize = 15;

/// Removes the separators people write numbers with: spaces, dashes, dots,
/// parentheses. Returns `None` when anything else but digits and one leading
/// `+` remains (a withheld marker, letters).
fn compact(number: &str) -> Option<String> {
    let s: String = number
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')' | '\u{3000}' | '\t'))
        .collect();
    let digits = s.strip_prefix('+').unwrap_or(&s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s)
}

fn is_cn_mobile(d: &str) -> bool {
    // 13x–19x; 140–144 are 13-digit IoT numbers, not phones.
    d.len() == 11
        && d.starts_with('1')
        && matches!(d.as_bytes().get(1), Some(b'3'..=b'9'))
        && !matches!(d.get(..3), Some("140" | "141" | "142" | "143" | "144"))
}

/// A Chinese national significant number (no trunk 0): an 11-digit mobile,
/// a landline of area code + 7–8 digits (9–11 digits, Beijing's `10` being the
/// only area code starting with 1), or a 400/800 service number.
fn is_cn_nsn(d: &str) -> bool {
    if is_cn_mobile(d) {
        return true;
    }
    if d.len() == 10 && (d.starts_with("400") || d.starts_with("800")) {
        return true;
    }
    match d.as_bytes().first() {
        Some(b'1') => d.starts_with("10") && matches!(d.len(), 9 | 10),
        Some(b'2'..=b'9') => (9..=11).contains(&d.len()),
        _ => false,
    }
}

/// The national significant number of `digits` (no `+`, no international
/// prefix) in `country`, when it is a plausible national number.
fn national(digits: &str, country: &str) -> Option<String> {
    match country {
        "86" => match digits.strip_prefix('0') {
            // Trunk 0: any national number (landline, or a mobile dialled with 0).
            Some(d) => is_cn_nsn(d).then(|| d.to_string()),
            // Without it only a mobile or 400/800 number is surely national: a
            // landline is always delivered with its 0 when the area code is there.
            None => (is_cn_mobile(digits)
                || (digits.len() == 10
                    && (digits.starts_with("400") || digits.starts_with("800"))))
            .then(|| digits.to_string()),
        },
        "1" => {
            let d = if digits.len() == 11 {
                digits.strip_prefix('1')?
            } else {
                digits
            };
            // NANP area codes and exchanges never start with 0 or 1.
            let ok = d.len() == 10
                && matches!(d.as_bytes().first(), Some(b'2'..=b'9'))
                && matches!(d.as_bytes().get(3), Some(b'2'..=b'9'));
            ok.then(|| d.to_string())
        }
        _ => {
            // Generic: only a trunk-prefixed number is surely national (a bare
            // short number may be local, missing its area code).
            let d = digits.strip_prefix('0')?;
            let ok = !d.starts_with('0') && (6..=E164_MAX - country.len()).contains(&d.len());
            ok.then(|| d.to_string())
        }
    }
}

fn valid_country(country: &str) -> bool {
    (1..=3).contains(&country.len())
        && country.bytes().all(|b| b.is_ascii_digit())
        && !country.starts_with('0')
}

/// E.164 form (`+8613812345678`) of a number as a line or a person wrote it,
/// for a line in `country` (calling code without `+`, e.g. `"86"`).
///
/// `None` when it cannot be derived: `private`/`unavailable`, letters, a
/// 7–8 digit local number without its area code, or an implausible length.
pub fn normalize(number: &str, country: &str) -> Option<String> {
    let country = if valid_country(country) {
        country
    } else {
        DEFAULT_COUNTRY
    };
    let s = compact(number)?;
    let international = if let Some(rest) = s.strip_prefix('+') {
        Some(rest)
    } else {
        s.strip_prefix("00")
    };
    if let Some(intl) = international {
        // A number in our own country must also be a valid national number.
        if let Some(nsn) = intl.strip_prefix(country) {
            if country == "86" {
                // After +86 the area code stands without its trunk 0 (tolerated).
                let d = nsn.strip_prefix('0').unwrap_or(nsn);
                return is_cn_nsn(d).then(|| format!("+86{d}"));
            }
            if country == "1" {
                return national(nsn, country).map(|n| format!("+1{n}"));
            }
        }
        let ok = (E164_MIN..=E164_MAX).contains(&intl.len()) && !intl.starts_with('0');
        return ok.then(|| format!("+{intl}"));
    }
    if let Some(nsn) = national(&s, country) {
        return Some(format!("+{country}{nsn}"));
    }
    // The country code without `+`: `8613812345678` (some boxes deliver it so).
    if let Some(nsn) = s.strip_prefix(country) {
        if country == "86" && is_cn_mobile(nsn) {
            return Some(format!("+86{nsn}"));
        }
    }
    None
}

/// The keys a member cache should store for a phone, and look a caller up by:
/// a caller matches a member when any key of one equals any key of the other.
///
/// In order: the E.164 form (`+8675512345678`), the national significant
/// number (`75512345678`), the national dialled form with trunk 0
/// (`075512345678`, landlines only — mobiles are not written with it), and
/// finally the digits as written, so a local number without area code
/// (`12345678`) still matches a member stored exactly so. Empty for
/// `private`/`unavailable` or anything without digits.
pub fn lookup_keys(number: &str, country: &str) -> Vec<String> {
    let mut keys: Vec<String> = Vec::new();
    let mut add = |k: String| {
        if !k.is_empty() && !keys.contains(&k) {
            keys.push(k);
        }
    };
    let country = if valid_country(country) {
        country
    } else {
        DEFAULT_COUNTRY
    };
    if let Some(e164) = normalize(number, country) {
        let own = e164.strip_prefix('+').and_then(|d| d.strip_prefix(country));
        add(e164.clone());
        if let Some(nsn) = own {
            add(nsn.to_string());
            let mobile = (country == "86" && is_cn_mobile(nsn)) || country == "1";
            if !mobile {
                add(format!("0{nsn}"));
            }
        }
    }
    if let Some(s) = compact(number) {
        add(s.trim_start_matches('+').to_string());
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalization_table() {
        let cases: &[(&str, &str, Option<&str>)] = &[
            ("13812345678", "86", Some("+8613812345678")),
            ("138-1234-5678", "86", Some("+8613812345678")),
            ("+86 138 1234 5678", "86", Some("+8613812345678")),
            ("008613812345678", "86", Some("+8613812345678")),
            ("8613812345678", "86", Some("+8613812345678")),
            ("013812345678", "86", Some("+8613812345678")),
            ("010 12345678", "86", Some("+861012345678")),
            ("01012345678", "86", Some("+861012345678")),
            ("0755-12345678", "86", Some("+8675512345678")),
            ("(0755)12345678", "86", Some("+8675512345678")),
            ("021-1234567", "86", Some("+86211234567")),
            ("0571 8765 4321", "86", Some("+8657187654321")),
            ("4008123123", "86", Some("+864008123123")),
            ("4075550000", "86", None),
            ("75512345678", "86", None),
            ("14012345678", "86", None),
            ("+1 407 555 0000", "86", Some("+14075550000")),
            ("0014075550000", "86", Some("+14075550000")),
            ("+85223456789", "86", Some("+85223456789")),
            // Local numbers without area code cannot be placed.
            ("12345678", "86", None),
            ("1234567", "86", None),
            ("95555", "86", None),
            ("12345678901", "86", None),
            ("+86 12345", "86", None),
            ("private", "86", None),
            ("unavailable", "86", None),
            ("P", "86", None),
            ("", "86", None),
            ("138 1234 567x", "86", None),
            ("4075550000", "1", Some("+14075550000")),
            ("14075550000", "1", Some("+14075550000")),
            ("(609) 555-1212", "1", Some("+16095551212")),
            ("5551212", "1", None),
            ("030 1234567", "49", Some("+49301234567")),
            ("1234567", "49", None),
            // A bad country setting falls back to China, never panics.
            ("13812345678", "x", Some("+8613812345678")),
        ];
        for (input, country, want) in cases {
            assert_eq!(
                normalize(input, country).as_deref(),
                *want,
                "{input} in {country}"
            );
        }
    }

    #[test]
    fn lookup_keys_meet_across_styles() {
        assert_eq!(
            lookup_keys("0755-12345678", "86"),
            ["+8675512345678", "75512345678", "075512345678"]
        );
        assert_eq!(
            lookup_keys("+86 138 1234 5678", "86"),
            ["+8613812345678", "13812345678", "8613812345678"]
        );
        assert_eq!(lookup_keys("12345678", "86"), ["12345678"]);
        assert!(lookup_keys("private", "86").is_empty());
        // The caller as the box delivers it and the member as typed share a key.
        let caller = lookup_keys("075512345678", "86");
        let member = lookup_keys("+86 (755) 1234-5678", "86");
        assert!(caller.iter().any(|k| member.contains(k)));
    }
}
