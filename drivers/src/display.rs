//! Customer displays (客显): what a page asks to show, as the bytes of the
//! display's command set (PROTOCOLS.md §7). Nothing is read back: pole
//! displays only listen. A request is checked whole before any byte exists,
//! so a page learns of text the display cannot show (and which field holds
//! it) instead of the shopper seeing garbage.

use crate::{Action, Instant, Protocol};
use unicode_width::UnicodeWidthChar;

const ESC: u8 = 0x1B;
const US: u8 = 0x1F;
const CLR: u8 = 0x0C;
const CR: u8 = 0x0D;

/// A display's command set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Model {
    /// Two-line VFD/LCD poles in CD5220 mode (`ESC Q A text CR`).
    #[default]
    Cd5220,
    /// Two-line poles in Epson's ESC/POS customer-display mode (`US $ x y`).
    EscposVfd,
    /// 8-digit LED price displays with price/total/paid/change lamps.
    Led8,
}

crate::config_names!(Model {
    "cd5220" => Model::Cd5220,
    "escpos-vfd" | "escpos_vfd" => Model::EscposVfd,
    "led8" => Model::Led8,
});

/// What characters a display's font holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Charset {
    /// Printable ASCII only.
    #[default]
    Ascii,
    /// ASCII plus the two-byte GBK/GB2312 characters, two columns wide.
    Gb18030,
}

crate::config_names!(Charset {
    "ascii" => Charset::Ascii,
    "gb18030" | "gbk" | "gb2312" => Charset::Gb18030,
});

/// The lamps of an 8-digit LED display (`ESC s n`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lamp {
    Price,
    Total,
    Paid,
    Change,
}

crate::config_names!(Lamp {
    "price" => Lamp::Price,
    "total" => Lamp::Total,
    "paid" => Lamp::Paid,
    "change" => Lamp::Change,
});

impl Lamp {
    /// The ASCII digit `ESC s` takes for it.
    fn digit(self) -> u8 {
        match self {
            Lamp::Price => b'1',
            Lamp::Total => b'2',
            Lamp::Paid => b'3',
            Lamp::Change => b'4',
        }
    }

    /// The caption a two-line display shows above an amount.
    fn caption(self, charset: Charset) -> &'static str {
        match (self, charset) {
            (Lamp::Price, Charset::Ascii) => "PRICE",
            (Lamp::Total, Charset::Ascii) => "TOTAL",
            (Lamp::Paid, Charset::Ascii) => "PAID",
            (Lamp::Change, Charset::Ascii) => "CHANGE",
            (Lamp::Price, Charset::Gb18030) => "单价",
            (Lamp::Total, Charset::Gb18030) => "合计",
            (Lamp::Paid, Charset::Gb18030) => "收款",
            (Lamp::Change, Charset::Gb18030) => "找零",
        }
    }
}

/// A display's settings, from its config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    pub model: Model,
    pub charset: Charset,
    /// Columns per line (20 on nearly every pole), or digits of an LED display (8).
    pub columns: usize,
    /// A CD5220 upper line longer than the display scrolls (`ESC Q D`)
    /// instead of being cut.
    pub scroll: bool,
    /// Brightness 1-4 sent after init, where the command set has it.
    pub brightness: Option<u8>,
}

impl Settings {
    pub fn new(model: Model) -> Settings {
        Settings {
            model,
            charset: Charset::Ascii,
            columns: if model == Model::Led8 { 8 } else { 20 },
            scroll: false,
            brightness: None,
        }
    }

    /// Lines a display of this model has.
    pub fn rows(&self) -> usize {
        if self.model == Model::Led8 {
            1
        } else {
            2
        }
    }
}

/// What a page asks a display to show.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Show {
    /// Up to one text per line, top first; missing lines are blanked.
    Lines(Vec<String>),
    /// A money amount under a lamp (LED) or a caption (two-line displays).
    Amount { amount: String, lamp: Lamp },
    /// Blank the display (and its lamps).
    Clear,
}

/// A request the display cannot show: the request field and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    pub field: String,
    pub why: String,
}

fn refused(field: impl Into<String>, why: impl Into<String>) -> Refused {
    Refused {
        field: field.into(),
        why: why.into(),
    }
}

/// The bytes that reset a display when its link opens: `ESC @`, the
/// brightness where asked (CD5220 `ESC * n`, ESC/POS `US X n`, n 1-4), the
/// cursor off on ESC/POS displays (a blinking block beside the total
/// distracts the shopper), then clear.
pub fn init(s: &Settings) -> Vec<u8> {
    let mut out = vec![ESC, b'@'];
    match (s.model, s.brightness) {
        (Model::Cd5220, Some(n)) => out.extend([ESC, b'*', n]),
        (Model::EscposVfd, Some(n)) => out.extend([US, b'X', n]),
        _ => {}
    }
    if s.model == Model::EscposVfd {
        out.extend([US, b'C', 0]);
    }
    out.push(CLR);
    out
}

/// The bytes that show `what`, or the field the display cannot show.
pub fn render(s: &Settings, what: &Show) -> Result<Vec<u8>, Refused> {
    match (s.model, what) {
        (Model::Led8, Show::Clear) => Ok(vec![ESC, b's', b'0', CLR]),
        (_, Show::Clear) => Ok(vec![CLR]),
        (Model::Led8, Show::Lines(_)) => Err(refused(
            "lines",
            "an 8-digit LED display shows numbers only; send amount and lamp",
        )),
        (Model::Led8, Show::Amount { amount, lamp }) => {
            let digits = led_digits(amount, s.columns)?;
            let mut out = vec![ESC, b's', lamp.digit(), ESC, b'Q', b'A'];
            out.extend(digits.bytes());
            out.push(CR);
            Ok(out)
        }
        (_, Show::Amount { amount, lamp }) => {
            let shown = money(amount)?;
            if shown.len() > s.columns {
                return Err(refused(
                    "amount",
                    format!("{amount:?} does not fit {} columns", s.columns),
                ));
            }
            let lower = format!("{shown:>width$}", width = s.columns);
            let lines = vec![lamp.caption(s.charset).to_owned(), lower];
            two_lines(s, &lines)
        }
        (_, Show::Lines(lines)) => two_lines(s, lines),
    }
}

/// Bytes for the two lines of a CD5220 or ESC/POS pole display.
fn two_lines(s: &Settings, lines: &[String]) -> Result<Vec<u8>, Refused> {
    if lines.len() > s.rows() {
        return Err(refused(
            "lines",
            format!("this display has {} lines, not {}", s.rows(), lines.len()),
        ));
    }
    // A scrolling line keeps scrolling until the display is cleared.
    let mut out = if s.scroll && s.model == Model::Cd5220 {
        vec![CLR]
    } else {
        Vec::new()
    };
    for row in 0..s.rows() {
        let text = lines.get(row).map(String::as_str).unwrap_or("");
        let field = format!("lines[{row}]");
        let glyphs = glyphs(text, s.charset).map_err(|why| refused(field, why))?;
        let scroll = s.scroll && row == 0 && s.model == Model::Cd5220;
        let long = width(&glyphs) > s.columns;
        let body = if scroll && long {
            let mut b = encode(&glyphs, SCROLL_COLUMNS.max(s.columns));
            // Cut, not padded: trailing spaces would scroll by too.
            b.truncate(b.iter().rposition(|&c| c != b' ').map_or(0, |i| i + 1));
            b
        } else {
            encode(&glyphs, s.columns)
        };
        match s.model {
            Model::Cd5220 => {
                let line = match (row, scroll && long) {
                    (0, true) => b'D',
                    (0, false) => b'A',
                    _ => b'B',
                };
                out.extend([ESC, b'Q', line]);
                out.extend(body);
                out.push(CR);
            }
            _ => {
                // `US $ x y`: column 1, row y (1-based), then the padded line.
                out.extend([US, b'$', 1, row as u8 + 1]);
                out.extend(body);
            }
        }
    }
    Ok(out)
}

/// One character as the display gets it: its bytes and its columns.
struct Glyph {
    bytes: Vec<u8>,
    width: usize,
}

/// The longest text one line takes: far more than any display shows, and
/// short enough that a cut is the only thing a longer one could need.
pub const MAX_LINE_CHARS: usize = 256;
/// What `ESC Q D` scrolls at most (CD5220 manual).
const SCROLL_COLUMNS: usize = 40;

/// The characters of `text` in the display's charset, or why one cannot be shown.
fn glyphs(text: &str, charset: Charset) -> Result<Vec<Glyph>, String> {
    if text.chars().count() > MAX_LINE_CHARS {
        return Err(format!("is longer than {MAX_LINE_CHARS} characters"));
    }
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            return Err(format!(
                "holds the control character U+{:04X}; displays take one line of text per entry",
                c as u32
            ));
        }
        if c.is_ascii() {
            out.push(Glyph {
                bytes: vec![c as u8],
                width: 1,
            });
            continue;
        }
        if c.width() == Some(0) {
            continue;
        }
        let gbk = match charset {
            Charset::Ascii => None,
            // ¥ is outside GBK; displays' fonts have the full-width ￥ (A3 A4).
            Charset::Gb18030 => two_byte_gbk(if c == '\u{a5}' { '\u{ffe5}' } else { c }),
        };
        match gbk {
            Some(bytes) => out.push(Glyph { bytes, width: 2 }),
            None => {
                return Err(format!(
                    "{c:?} is not in this display's charset ({}){}",
                    charset.name(),
                    if charset == Charset::Ascii {
                        "; set charset = \"gb18030\" if the model shows Chinese"
                    } else {
                        ""
                    }
                ))
            }
        }
    }
    Ok(out)
}

/// `c` as two GBK bytes, when the display's font can have it (GB18030's
/// four-byte characters are outside every pole display's font).
pub(crate) fn two_byte_gbk(c: char) -> Option<Vec<u8>> {
    let mut buf = [0u8; 4];
    let (bytes, _, unmappable) = encoding_rs::GB18030.encode(c.encode_utf8(&mut buf));
    (!unmappable && bytes.len() == 2).then(|| bytes.into_owned())
}

fn width(glyphs: &[Glyph]) -> usize {
    glyphs.iter().map(|g| g.width).sum()
}

/// The glyphs' bytes cut to `columns` (never inside a two-column character)
/// and padded with spaces to exactly `columns`.
fn encode(glyphs: &[Glyph], columns: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut used = 0;
    for g in glyphs {
        if used + g.width > columns {
            break;
        }
        used += g.width;
        out.extend(&g.bytes);
    }
    out.resize(out.len() + (columns - used), b' ');
    out
}

/// A money amount as written (`-12.5`, `128.50`), checked: an optional
/// minus, digits, at most one point. A currency sign in front is dropped.
fn money(amount: &str) -> Result<String, Refused> {
    let bare = amount.trim().trim_start_matches(['¥', '￥']);
    let (sign, digits) = match bare.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", bare),
    };
    let mut parts = digits.split('.');
    let whole = parts.next().unwrap_or("");
    let frac = parts.next();
    let ok_part = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    let valid = !whole.is_empty()
        && ok_part(whole)
        && frac.is_none_or(|f| !f.is_empty() && ok_part(f))
        && parts.next().is_none();
    if !valid {
        return Err(refused(
            "amount",
            format!("{amount:?} is not an amount like \"128.50\""),
        ));
    }
    Ok(format!("{sign}{digits}"))
}

/// An amount as an LED display shows it: the point takes no digit.
fn led_digits(amount: &str, digits: usize) -> Result<String, Refused> {
    let shown = money(amount)?;
    let used = shown.bytes().filter(|&b| b != b'.').count();
    if used > digits {
        return Err(refused(
            "amount",
            format!("{amount:?} needs {used} digits; this display has {digits}"),
        ));
    }
    Ok(shown)
}

/// The protocol of a display's link: it resets the display when the link
/// opens, and ignores whatever a display sends back.
#[derive(Debug)]
pub struct Display {
    settings: Settings,
}

impl Display {
    pub fn new(settings: Settings) -> Display {
        Display { settings }
    }
}

impl Protocol for Display {
    fn handle_open(&mut self, _now: Instant, out: &mut Vec<Action>) {
        out.push(Action::Write(init(&self.settings)));
    }

    fn handle_bytes(&mut self, _now: Instant, _bytes: &[u8], _out: &mut Vec<Action>) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cd() -> Settings {
        Settings::new(Model::Cd5220)
    }

    fn lines(l: &[&str]) -> Show {
        Show::Lines(l.iter().map(|s| s.to_string()).collect())
    }

    fn pad(s: &str, n: usize) -> Vec<u8> {
        let mut v = s.as_bytes().to_vec();
        v.resize(n, b' ');
        v
    }

    #[test]
    fn cd5220_lines_are_padded_and_blank_the_missing_line() {
        let got = render(&cd(), &lines(&["TOTAL"])).unwrap();
        let mut want = b"\x1bQA".to_vec();
        want.extend(pad("TOTAL", 20));
        want.extend(b"\r\x1bQB");
        want.extend(pad("", 20));
        want.push(b'\r');
        assert_eq!(got, want);
    }

    #[test]
    fn chinese_is_gbk_two_columns_and_cut_by_columns_never_bytes() {
        let s = Settings {
            charset: Charset::Gb18030,
            ..cd()
        };
        let got = render(&s, &lines(&["合计", "一二三四五六七八九十一"])).unwrap();
        let mut want = b"\x1bQA\xba\xcf\xbc\xc6".to_vec();
        want.extend([b' '; 16]);
        want.extend(b"\r\x1bQB");
        // Eleven characters are 22 columns: ten fit, the eleventh is cut whole.
        let (ten, _, _) = encoding_rs::GB18030.encode("一二三四五六七八九十");
        want.extend(ten.iter());
        want.push(b'\r');
        assert_eq!(got, want);
        // An odd column left over is a space, not half a character.
        let got = render(&s, &lines(&["a一二三四五六七八九十"])).unwrap();
        assert_eq!(&got[3..23][19..], b" ");
    }

    #[test]
    fn text_outside_the_charset_or_with_controls_names_its_line() {
        let e = render(&cd(), &lines(&["ok", "合计"])).unwrap_err();
        assert_eq!(e.field, "lines[1]");
        assert!(e.why.contains("gb18030"), "{}", e.why);
        let e = render(&cd(), &lines(&["a\x1b@"])).unwrap_err();
        assert_eq!(e.field, "lines[0]");
        let gb = Settings {
            charset: Charset::Gb18030,
            ..cd()
        };
        // An emoji is a four-byte GB18030 character: no display font has it.
        assert_eq!(render(&gb, &lines(&["😀"])).unwrap_err().field, "lines[0]");
        let e = render(&cd(), &lines(&["a", "b", "c"])).unwrap_err();
        assert_eq!(e.field, "lines");
    }

    #[test]
    fn yen_sign_becomes_the_full_width_one_the_font_has() {
        let s = Settings {
            charset: Charset::Gb18030,
            ..cd()
        };
        let got = render(&s, &lines(&["¥1"])).unwrap();
        assert_eq!(&got[3..6], b"\xa3\xa41");
    }

    #[test]
    fn a_long_upper_line_scrolls_when_asked() {
        let s = Settings {
            scroll: true,
            ..cd()
        };
        let text = "WELCOME TO OUR STORE TODAY";
        let got = render(&s, &lines(&[text])).unwrap();
        let mut want = b"\x0c\x1bQD".to_vec();
        want.extend(text.as_bytes());
        want.push(b'\r');
        assert!(got.starts_with(&want));
        // At most 40 columns scroll (the command's limit), never half a character.
        let gb = Settings {
            charset: Charset::Gb18030,
            ..s.clone()
        };
        let got = render(&gb, &lines(&[&"长".repeat(30)])).unwrap();
        let twenty = encoding_rs::GB18030.encode(&"长".repeat(20)).0.into_owned();
        assert_eq!(&got[4..44], &twenty[..]);
        assert_eq!(got[44], b'\r');
        // A line that fits is shown, not scrolled (after a clear, which stops any scroll).
        let got = render(&s, &lines(&["HI"])).unwrap();
        assert!(got.starts_with(b"\x0c\x1bQAHI"));
        let e = render(&cd(), &lines(&[&"x".repeat(MAX_LINE_CHARS + 1)])).unwrap_err();
        assert_eq!(e.field, "lines[0]");
    }

    #[test]
    fn escpos_displays_place_each_line_with_the_cursor() {
        let s = Settings::new(Model::EscposVfd);
        let got = render(&s, &lines(&["A", "B"])).unwrap();
        let mut want = vec![US, b'$', 1, 1];
        want.extend(pad("A", 20));
        want.extend([US, b'$', 1, 2]);
        want.extend(pad("B", 20));
        assert_eq!(got, want);
        let s = Settings {
            brightness: Some(2),
            ..s
        };
        assert_eq!(init(&s), vec![ESC, b'@', US, b'X', 2, US, b'C', 0, CLR]);
        assert_eq!(init(&cd()), vec![ESC, b'@', CLR]);
        let bright = Settings {
            brightness: Some(4),
            ..cd()
        };
        assert_eq!(init(&bright), vec![ESC, b'@', ESC, b'*', 4, CLR]);
        let s = Settings::new(Model::EscposVfd);
        let amount = Show::Amount {
            amount: "5".into(),
            lamp: Lamp::Paid,
        };
        let mut want = vec![US, b'$', 1, 1];
        want.extend(pad("PAID", 20));
        want.extend([US, b'$', 1, 2]);
        want.extend(format!("{:>20}", "5").as_bytes());
        assert_eq!(render(&s, &amount).unwrap(), want);
        assert_eq!(render(&s, &Show::Clear).unwrap(), vec![CLR]);
    }

    #[test]
    fn led8_amounts_light_their_lamp_and_must_fit_eight_digits() {
        let s = Settings::new(Model::Led8);
        for (lamp, n) in [
            (Lamp::Price, b'1'),
            (Lamp::Total, b'2'),
            (Lamp::Paid, b'3'),
            (Lamp::Change, b'4'),
        ] {
            let amount = "128.50".to_owned();
            let got = render(&s, &Show::Amount { amount, lamp }).unwrap();
            assert_eq!(
                got,
                [&[ESC, b's', n, ESC, b'Q', b'A'][..], b"128.50\r"].concat()
            );
        }
        let fits = Show::Amount {
            amount: "123456.78".into(),
            lamp: Lamp::Total,
        };
        assert!(render(&s, &fits).is_ok(), "the point takes no digit");
        for bad in ["1234567.89", "12a", "", "1.2.3", ".5", "5.", "--1"] {
            let show = Show::Amount {
                amount: bad.into(),
                lamp: Lamp::Total,
            };
            assert_eq!(render(&s, &show).unwrap_err().field, "amount", "{bad}");
        }
        assert_eq!(
            render(&s, &Show::Clear).unwrap(),
            vec![ESC, b's', b'0', CLR]
        );
        assert_eq!(render(&s, &lines(&["1"])).unwrap_err().field, "lines");
    }

    #[test]
    fn an_amount_on_a_pole_display_is_captioned_and_right_aligned() {
        let s = Settings {
            charset: Charset::Gb18030,
            ..cd()
        };
        let show = Show::Amount {
            amount: "¥128.50".into(),
            lamp: Lamp::Change,
        };
        let got = render(&s, &show).unwrap();
        let mut want = b"\x1bQA\xd5\xd2\xc1\xe3".to_vec();
        want.extend([b' '; 16]);
        want.extend(b"\r\x1bQB");
        want.extend(format!("{:>20}", "128.50").as_bytes());
        want.push(b'\r');
        assert_eq!(got, want);
        let show = Show::Amount {
            amount: "1".repeat(21),
            lamp: Lamp::Total,
        };
        assert_eq!(render(&s, &show).unwrap_err().field, "amount");
        assert_eq!(render(&s, &Show::Clear).unwrap(), vec![CLR]);
    }
}
