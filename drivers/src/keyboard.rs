//! Keystrokes → text, for keyboard-wedge readers (barcode scanners, magstripe
//! readers, 125 kHz RFID readers) that type their data.
//!
//! Two sources of keystrokes:
//! - [`KeyDecoder`]: Linux evdev `EV_KEY` events, `(code, value)` pairs, from
//!   a grabbed `/dev/input/event*` node.
//! - [`HidKeyboard`]: 8-byte HID boot-keyboard input reports from a `hidraw`
//!   node.
//!
//! Both only turn keys into bytes. Framing (Enter/Tab ends a read, idle
//! flush) stays in the protocols the serial transport already feeds —
//! [`crate::barcode`], the magstripe decoder, [`crate::rfid`] — so a wedge
//! device and its serial twin behave the same. The transport does, per read:
//!
//! ```
//! # use posbridge_drivers::keyboard::KeyDecoder;
//! # use posbridge_drivers::{barcode, Instant, Protocol};
//! # let mut proto = barcode::Barcode::new(barcode::Options::default());
//! # let mut out = Vec::new();
//! let mut keys = KeyDecoder::new();
//! let mut text = Vec::new();
//! for (code, value) in [(2u16, 1i32), (2, 0), (28, 1), (28, 0)] {
//!     keys.feed(code, value, &mut text);
//! }
//! proto.handle_bytes(Instant(0), &text, &mut out);
//! assert_eq!(text, b"1\r");
//! ```
//!
//! Only the US layout is mapped: wedge readers type their ASCII data as US
//! key positions unless reconfigured, whatever the host's layout.

/// Linux keycodes used here, as in `<linux/input-event-codes.h>` (checked
/// against linux-libc-dev 6.1's `/usr/include/linux/input-event-codes.h`).
mod code {
    pub const KEY_TAB: u16 = 15;
    pub const KEY_ENTER: u16 = 28;
    pub const KEY_LEFTSHIFT: u16 = 42;
    pub const KEY_RIGHTSHIFT: u16 = 54;
    pub const KEY_KPENTER: u16 = 96;
}

/// Evdev key event values.
const RELEASE: i32 = 0;
const PRESS: i32 = 1;

/// US-layout character for a Linux keycode: (unshifted, shifted).
fn evdev_char(code: u16) -> Option<(u8, u8)> {
    // Rows of the main block in keycode order (KEY_1 = 2 … KEY_EQUAL = 13,
    // KEY_Q = 16 … KEY_RIGHTBRACE = 27, KEY_A = 30 … KEY_GRAVE = 41,
    // KEY_BACKSLASH = 43 … KEY_SLASH = 53).
    const ROW1: &[u8; 12] = b"1234567890-=";
    const ROW1_SHIFT: &[u8; 12] = b"!@#$%^&*()_+";
    const ROW2: &[u8; 12] = b"qwertyuiop[]";
    const ROW2_SHIFT: &[u8; 12] = b"QWERTYUIOP{}";
    const ROW3: &[u8; 12] = b"asdfghjkl;'`";
    const ROW3_SHIFT: &[u8; 12] = b"ASDFGHJKL:\"~";
    const ROW4: &[u8; 11] = b"\\zxcvbnm,./";
    const ROW4_SHIFT: &[u8; 11] = b"|ZXCVBNM<>?";
    let at = |row: &[u8], shifted: &[u8], first: u16| {
        let i = usize::from(code.checked_sub(first)?);
        Some((*row.get(i)?, *shifted.get(i)?))
    };
    match code {
        2..=13 => at(ROW1, ROW1_SHIFT, 2),
        16..=27 => at(ROW2, ROW2_SHIFT, 16),
        30..=41 => at(ROW3, ROW3_SHIFT, 30),
        43..=53 => at(ROW4, ROW4_SHIFT, 43),
        code::KEY_TAB => Some((b'\t', b'\t')),
        code::KEY_ENTER | code::KEY_KPENTER => Some((b'\r', b'\r')),
        57 => Some((b' ', b' ')),
        // Keypad: Shift does not change what these type on a wedge.
        55 => Some((b'*', b'*')),
        71 => Some((b'7', b'7')),
        72 => Some((b'8', b'8')),
        73 => Some((b'9', b'9')),
        74 => Some((b'-', b'-')),
        75 => Some((b'4', b'4')),
        76 => Some((b'5', b'5')),
        77 => Some((b'6', b'6')),
        78 => Some((b'+', b'+')),
        79 => Some((b'1', b'1')),
        80 => Some((b'2', b'2')),
        81 => Some((b'3', b'3')),
        82 => Some((b'0', b'0')),
        83 => Some((b'.', b'.')),
        98 => Some((b'/', b'/')),
        _ => None,
    }
}

/// Turns evdev `EV_KEY` events into the bytes the keys type.
///
/// Feed it only `EV_KEY` events (the transport filters `EV_SYN`, `EV_MSC`…).
/// Tracks the two Shift keys; CapsLock, Ctrl and Alt are not tracked —
/// wedge readers type upper case with Shift and never lock it.
#[derive(Debug, Default)]
pub struct KeyDecoder {
    left_shift: bool,
    right_shift: bool,
    unknown: u64,
}

impl KeyDecoder {
    pub fn new() -> Self {
        KeyDecoder::default()
    }

    /// One key event: `value` 1 press, 0 release, 2 autorepeat. A press of a
    /// mapped key appends its character to `out`.
    pub fn feed(&mut self, code: u16, value: i32, out: &mut Vec<u8>) {
        match (code, value) {
            (code::KEY_LEFTSHIFT, PRESS | RELEASE) => self.left_shift = value == PRESS,
            (code::KEY_RIGHTSHIFT, PRESS | RELEASE) => self.right_shift = value == PRESS,
            // A reader holding a key long enough to repeat is a stuck key,
            // not data: repeats (2) and releases type nothing.
            (_, PRESS) => match evdev_char(code) {
                Some((plain, shifted)) => out.push(if self.shifted() { shifted } else { plain }),
                None => self.unknown = self.unknown.saturating_add(1),
            },
            _ => {}
        }
    }

    /// Several events at once.
    pub fn feed_all(&mut self, events: &[(u16, i32)], out: &mut Vec<u8>) {
        for &(code, value) in events {
            self.feed(code, value, out);
        }
    }

    /// Presses of keys that type nothing here (counted for `posbridge devices`).
    pub fn unknown_keys(&self) -> u64 {
        self.unknown
    }

    /// Forgets held modifiers (the device was reopened; releases may be lost).
    pub fn reset(&mut self) {
        self.left_shift = false;
        self.right_shift = false;
    }

    fn shifted(&self) -> bool {
        self.left_shift || self.right_shift
    }
}

/// US-layout character for a HID Keyboard/Keypad page usage (HID Usage
/// Tables §10): (unshifted, shifted).
fn hid_char(usage: u8) -> Option<(u8, u8)> {
    const LETTERS: &[u8; 26] = b"abcdefghijklmnopqrstuvwxyz";
    const DIGITS: &[u8; 10] = b"1234567890";
    const DIGITS_SHIFT: &[u8; 10] = b"!@#$%^&*()";
    // 0x2D..=0x38; 0x32 is "Non-US # and ~", which Linux also maps to KEY_BACKSLASH.
    const PUNCT: &[u8; 12] = b"-=[]\\\\;'`,./";
    const PUNCT_SHIFT: &[u8; 12] = b"_+{}||:\"~<>?";
    const KEYPAD: &[u8; 16] = b"/*-+\r1234567890.";
    let i = usize::from(usage);
    match usage {
        0x04..=0x1D => {
            let c = *LETTERS.get(i - 0x04)?;
            Some((c, c.to_ascii_uppercase()))
        }
        0x1E..=0x27 => Some((*DIGITS.get(i - 0x1E)?, *DIGITS_SHIFT.get(i - 0x1E)?)),
        0x28 => Some((b'\r', b'\r')),
        0x2B => Some((b'\t', b'\t')),
        0x2C => Some((b' ', b' ')),
        0x2D..=0x38 => Some((*PUNCT.get(i - 0x2D)?, *PUNCT_SHIFT.get(i - 0x2D)?)),
        // Keypad / * - + Enter 1..9 0 .
        0x54..=0x63 => {
            let c = *KEYPAD.get(i - 0x54)?;
            Some((c, c))
        }
        _ => None,
    }
}

/// Modifier byte bits for Left Shift and Right Shift (HID 1.11 appendix B.1).
const HID_SHIFT_BITS: u8 = 0x02 | 0x20;

/// Usages 1–3 fill the key array when the keyboard cannot report the keys
/// (ErrorRollOver, POSTFail, ErrorUndefined): the report says nothing.
fn is_error_usage(usage: u8) -> bool {
    (1..=3).contains(&usage)
}

/// Turns HID boot-keyboard input reports (`hidraw`) into the bytes the keys type.
///
/// A report lists the keys held (up to six). A key counts as pressed in the
/// first report that lists it; while later reports keep listing it, it is
/// still the same press, so a reader's rollover typing yields each key once.
#[derive(Debug, Default)]
pub struct HidKeyboard {
    report_id: Option<u8>,
    held: [u8; 6],
    unknown: u64,
}

impl HidKeyboard {
    /// For devices whose keyboard reports carry no report id (8 bytes).
    pub fn new() -> Self {
        HidKeyboard::default()
    }

    /// For composite devices whose keyboard reports start with a report id
    /// (9 bytes from hidraw); reports with another id are skipped.
    pub fn with_report_id(id: u8) -> Self {
        HidKeyboard {
            report_id: Some(id),
            ..HidKeyboard::default()
        }
    }

    /// One input report, as hidraw returned it. Appends the characters of
    /// newly pressed keys to `out`. Errors name the problem, never the bytes.
    pub fn report_to_text(&mut self, report: &[u8], out: &mut Vec<u8>) -> Result<(), &'static str> {
        let body = match self.report_id {
            None => report,
            Some(id) => match report.split_first() {
                Some((first, rest)) if *first == id => rest,
                Some(_) => return Ok(()),
                None => return Err("empty keyboard report"),
            },
        };
        let [modifiers, _reserved, k0, k1, k2, k3, k4, k5] = match body {
            [a, b, c, d, e, f, g, h] => [*a, *b, *c, *d, *e, *f, *g, *h],
            _ => return Err("keyboard report is not 8 bytes (modifiers, reserved, 6 keys)"),
        };
        let keys = [k0, k1, k2, k3, k4, k5];
        if keys.iter().any(|&k| is_error_usage(k)) {
            // Keep the last good state so keys still held are not typed twice.
            return Ok(());
        }
        let shifted = modifiers & HID_SHIFT_BITS != 0;
        for (i, &k) in keys.iter().enumerate() {
            // A repeated usage within one report is one key.
            let seen_now = keys.get(..i).is_some_and(|before| before.contains(&k));
            if k == 0 || self.held.contains(&k) || seen_now {
                continue;
            }
            match hid_char(k) {
                Some((plain, shift)) => out.push(if shifted { shift } else { plain }),
                None => self.unknown = self.unknown.saturating_add(1),
            }
        }
        self.held = keys;
        Ok(())
    }

    /// Presses of keys that type nothing here.
    pub fn unknown_keys(&self) -> u64 {
        self.unknown
    }

    /// Forgets held keys (the device was reopened).
    pub fn reset(&mut self) {
        self.held = [0; 6];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LSHIFT: u16 = 42;
    const RSHIFT: u16 = 54;

    /// Press and release, as a reader types one key.
    fn tap(code: u16) -> [(u16, i32); 2] {
        [(code, 1), (code, 0)]
    }

    fn shifted_tap(shift: u16, code: u16) -> [(u16, i32); 4] {
        [(shift, 1), (code, 1), (code, 0), (shift, 0)]
    }

    fn decode(events: &[(u16, i32)]) -> (Vec<u8>, u64) {
        let mut d = KeyDecoder::new();
        let mut out = Vec::new();
        d.feed_all(events, &mut out);
        (out, d.unknown_keys())
    }

    #[test]
    fn magstripe_track_two_typed_with_shift() {
        // ";12345?" + Enter as a MagTek-style wedge types it: `?` needs Shift.
        let mut ev = Vec::new();
        ev.extend(tap(39)); // ;
        for code in [2, 3, 4, 5, 6] {
            ev.extend(tap(code));
        }
        ev.extend(shifted_tap(LSHIFT, 53)); // ?
        ev.extend(tap(28));
        assert_eq!(decode(&ev), (b";12345?\r".to_vec(), 0));
    }

    #[test]
    fn rfid_reader_on_the_keypad() {
        // "0012345678" + KP Enter, typed with keypad digits.
        let kp = [82u16, 82, 79, 80, 81, 75, 76, 77, 71, 72];
        let mut ev: Vec<(u16, i32)> = kp.iter().flat_map(|&c| tap(c)).collect();
        ev.extend(tap(96));
        assert_eq!(decode(&ev), (b"0012345678\r".to_vec(), 0));
    }

    #[test]
    fn letters_follow_either_shift_and_repeats_are_ignored() {
        let mut ev = Vec::new();
        ev.extend(shifted_tap(RSHIFT, 30)); // A
        ev.extend(tap(48)); // b
        ev.push((46, 1));
        ev.push((46, 2)); // autorepeat of c
        ev.push((46, 2));
        ev.push((46, 0));
        ev.extend(shifted_tap(LSHIFT, 2)); // !
        ev.extend(tap(15)); // Tab
        ev.extend(tap(1)); // Esc: unknown
        ev.extend(tap(58)); // CapsLock: not tracked
        ev.extend(tap(44)); // still lower case
        assert_eq!(decode(&ev), (b"Abc!\tz".to_vec(), 2));
    }

    #[test]
    fn every_listed_key_maps_as_the_us_layout() {
        let mut ev = Vec::new();
        for code in 2u16..=57 {
            ev.extend(tap(code));
        }
        let (plain, _) = decode(&ev);
        assert_eq!(
            plain,
            b"1234567890-=\tqwertyuiop[]\rasdfghjkl;'`\\zxcvbnm,./* ".to_vec()
        );
        let mut ev = vec![(LSHIFT, 1)];
        for code in (2u16..=53).filter(|&c| c != LSHIFT) {
            ev.extend(tap(code));
        }
        let (shifted, _) = decode(&ev);
        assert_eq!(
            shifted,
            b"!@#$%^&*()_+\tQWERTYUIOP{}\rASDFGHJKL:\"~|ZXCVBNM<>?".to_vec()
        );
        let pad: Vec<(u16, i32)> = [71u16, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 83, 98]
            .iter()
            .flat_map(|&c| tap(c))
            .collect();
        assert_eq!(decode(&pad).0, b"789-456+1230./".to_vec());
    }

    #[test]
    fn reset_forgets_a_held_shift() {
        let mut d = KeyDecoder::new();
        let mut out = Vec::new();
        d.feed(LSHIFT, 1, &mut out);
        d.reset();
        d.feed_all(&tap(30), &mut out);
        assert_eq!(out, b"a");
    }

    fn report(modifiers: u8, keys: &[u8]) -> [u8; 8] {
        let mut r = [0u8; 8];
        r[0] = modifiers;
        for (slot, k) in r[2..].iter_mut().zip(keys) {
            *slot = *k;
        }
        r
    }

    fn hid_text(kb: &mut HidKeyboard, reports: &[[u8; 8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for r in reports {
            assert_eq!(kb.report_to_text(r, &mut out), Ok(()));
        }
        out
    }

    #[test]
    fn boot_reports_with_rollover_type_each_key_once() {
        let mut kb = HidKeyboard::new();
        let out = hid_text(
            &mut kb,
            &[
                report(0, &[0x33]),       // ;
                report(0, &[0x33, 0x1E]), // 1 pressed while ; still held
                report(0, &[0x1E]),       // ; released
                report(0, &[0x1E, 0x1F]), // 2
                report(0, &[]),           // all up
                report(0x20, &[0x38]),    // right shift + / = ?
                report(0x20, &[0x38]),    // same press, still held
                report(0, &[]),
                report(0, &[0x28]), // Enter
                report(0, &[]),
                report(0x02, &[0x04, 0x05]), // AB with left shift
                report(0, &[]),
                report(0, &[0x1E]), // 1 again after a release: a new press
            ],
        );
        assert_eq!(out, b";12?\rAB1".to_vec());
    }

    #[test]
    fn phantom_and_odd_reports() {
        let mut kb = HidKeyboard::new();
        let mut out = Vec::new();
        assert!(kb.report_to_text(&[0u8; 7], &mut out).is_err());
        assert_eq!(kb.report_to_text(&report(0, &[0x27]), &mut out), Ok(()));
        // ErrorRollOver: the held 0 is not typed again afterwards.
        assert_eq!(kb.report_to_text(&report(0, &[1; 6]), &mut out), Ok(()));
        assert_eq!(kb.report_to_text(&report(0, &[0x27]), &mut out), Ok(()));
        // A usage listed twice in one report, and an unmapped F1.
        assert_eq!(
            kb.report_to_text(&report(0, &[0x62, 0x62, 0x3A]), &mut out),
            Ok(())
        );
        assert_eq!(out, b"00".to_vec());
        assert_eq!(kb.unknown_keys(), 1);

        let mut kb = HidKeyboard::with_report_id(1);
        let mut out = Vec::new();
        let mut with_id = vec![1u8];
        with_id.extend(report(0, &[0x58]));
        assert_eq!(kb.report_to_text(&with_id, &mut out), Ok(()));
        with_id[0] = 3; // another collection's report
        assert_eq!(kb.report_to_text(&with_id, &mut out), Ok(()));
        assert_eq!(out, b"\r".to_vec());
    }

    #[test]
    fn no_panic_on_arbitrary_events_and_reports() {
        // A small deterministic generator stands in for the fuzzer in unit tests.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut d = KeyDecoder::new();
        let mut kb = HidKeyboard::new();
        let mut out = Vec::new();
        for _ in 0..20_000 {
            let r = next();
            d.feed(
                r as u16 % 300,
                (r >> 16) as i32 % 4 - (r >> 20) as i32 % 2,
                &mut out,
            );
            let len = (r >> 24) as usize % 10;
            let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            let _ = kb.report_to_text(&bytes, &mut out);
        }
        assert!(out
            .iter()
            .all(|&b| b == b'\r' || b == b'\t' || (b' '..=b'~').contains(&b)));
    }
}
