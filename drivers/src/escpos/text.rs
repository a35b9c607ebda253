//! Text for the printer: cleaning, display width, wrapping and encoding.
//!
//! Width follows the printer, not Unicode alone. In Chinese mode (`FS &`) a
//! printer prints every multi-byte GB18030 character from its 24×24 font,
//! two Font A columns wide — including `·`, `×`, `—` and `é`, which
//! `unicode-width` calls narrow. So in GB18030 every non-ASCII character is
//! two columns; `unicode-width` still decides which characters take no room
//! at all (combining marks, zero-width joiners, variation selectors), and
//! those are dropped because a printer cannot compose them.

use super::Encoding;
use unicode_width::UnicodeWidthChar;

/// One character as it will print, with its width in columns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Glyph {
    ch: char,
    width: usize,
}

/// Maps a character to what the printer gets, or `None` to drop it.
fn glyph(c: char, encoding: Encoding) -> Option<Glyph> {
    // Control characters would be read as commands (ESC, GS …): never pass them.
    let c = match c {
        '\t' => ' ',
        c if c.is_control() => return None,
        c => c,
    };
    if c.is_ascii() {
        return Some(Glyph { ch: c, width: 1 });
    }
    if c.width() == Some(0) {
        return None;
    }
    Some(match encoding {
        Encoding::Ascii => Glyph { ch: '?', width: 1 },
        Encoding::Gb18030 => Glyph {
            // ¥ is outside GBK (GB18030 gives it four bytes, which GBK-only
            // printers misprint); the full-width ￥ (A3 A4) is what Chinese
            // receipts print anyway.
            ch: if c == '\u{a5}' { '\u{ffe5}' } else { c },
            width: 2,
        },
    })
}

/// Splits `text` at `\n` (a trailing one adds no empty line, `""` is one empty
/// line) and wraps each part to `cap` columns. Latin words break at spaces
/// when they fit on a line, CJK characters anywhere; a character is never
/// split, and one wider than `cap` gets a line to itself.
pub(crate) fn wrap(text: &str, cap: usize, encoding: Encoding) -> Vec<String> {
    let cap = cap.max(1);
    let mut out = Vec::new();
    for part in text.lines() {
        let glyphs: Vec<Glyph> = part.chars().filter_map(|c| glyph(c, encoding)).collect();
        wrap_glyphs(&glyphs, cap, &mut out);
    }
    if out.is_empty() {
        out.push(String::new());
    }
    out
}

/// Characters that must not start a line: closing brackets and
/// punctuation (a light form of the Chinese/Japanese line-breaking rules).
const NO_BREAK_BEFORE: &str = ",.;:!?)]}%，。、；：？！）」』】》〉〕｝］”’…%‰℃°";
/// Characters that must not end a line: opening brackets and currency
/// signs, so `￥25.60` stays whole and no line ends in `（`.
const NO_BREAK_AFTER: &str = "([{（「『【《〈〔｛［“‘￥$£€#";

/// Greedy line filling over unbreakable clusters; see [`wrap`].
fn wrap_glyphs(glyphs: &[Glyph], cap: usize, out: &mut Vec<String>) {
    let mut w = Wrapper {
        cap,
        line: String::new(),
        width: 0,
        wrapped: false,
        out,
        pushed: 0,
    };
    let mut i = 0;
    while let Some(g) = glyphs.get(i) {
        if g.ch == ' ' {
            w.space();
            i += 1;
            continue;
        }
        // A cluster: a run of narrow characters (a Latin word or number), or a
        // wide one, glued to neighbours the line must not be broken between.
        let mut end = i + 1;
        while let (Some(prev), Some(next)) = (glyphs.get(end - 1), glyphs.get(end)) {
            let glued = next.ch != ' '
                && ((prev.width == 1 && next.width == 1)
                    || NO_BREAK_AFTER.contains(prev.ch)
                    || NO_BREAK_BEFORE.contains(next.ch));
            if !glued {
                break;
            }
            end += 1;
        }
        let cluster = &glyphs[i..end];
        let cw: usize = cluster.iter().map(|g| g.width).sum();
        if w.width > 0 && w.width + cw > cap && cw <= cap {
            w.break_line();
        }
        // A cluster longer than a line breaks between characters.
        for g in cluster {
            w.place(*g);
        }
        i = end;
    }
    // The last line, unless a wrap just ended it (trailing spaces).
    if !w.line.is_empty() || w.pushed == 0 {
        w.out.push(w.line);
    }
}

struct Wrapper<'a> {
    cap: usize,
    line: String,
    width: usize,
    /// The current line was started by wrapping: leading spaces are dropped.
    wrapped: bool,
    out: &'a mut Vec<String>,
    pushed: usize,
}

impl Wrapper<'_> {
    fn break_line(&mut self) {
        let kept = self.line.trim_end_matches(' ').len();
        self.line.truncate(kept);
        self.out.push(std::mem::take(&mut self.line));
        self.width = 0;
        self.wrapped = true;
        self.pushed += 1;
    }

    fn space(&mut self) {
        if self.width == 0 && self.wrapped {
            return;
        }
        if self.width + 1 > self.cap {
            // The break eats the space.
            self.break_line();
            return;
        }
        self.line.push(' ');
        self.width += 1;
    }

    fn place(&mut self, g: Glyph) {
        if self.width > 0 && self.width + g.width > self.cap {
            self.break_line();
        }
        self.line.push(g.ch);
        self.width += g.width;
    }
}

/// The printed width of a cleaned line, in columns.
#[cfg(test)]
pub(crate) fn width(line: &str, encoding: Encoding) -> usize {
    line.chars()
        .filter_map(|c| glyph(c, encoding))
        .map(|g| g.width)
        .sum()
}

/// Bytes for a line [`wrap`] produced (only printable characters are left).
pub(crate) fn encode(line: &str, encoding: Encoding) -> Vec<u8> {
    match encoding {
        Encoding::Ascii => line
            .chars()
            .map(|c| if c.is_ascii() { c as u8 } else { b'?' })
            .collect(),
        Encoding::Gb18030 => {
            // GB18030 maps all of Unicode, so nothing is unmappable.
            let (bytes, _, _) = encoding_rs::GB18030.encode(line);
            bytes.into_owned()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GB: Encoding = Encoding::Gb18030;

    #[test]
    fn latin_wraps_at_spaces_and_long_words_break() {
        assert_eq!(
            wrap("the quick brown fox", 10, GB),
            ["the quick", "brown fox"]
        );
        assert_eq!(wrap("abcdefghijkl xy", 5, GB), ["abcde", "fghij", "kl xy"]);
        // Leading spaces the caller wrote are kept; those after a wrap are not.
        assert_eq!(wrap("  ab   cd", 5, GB), ["  ab", "cd"]);
        assert_eq!(wrap("abcde ", 5, GB), ["abcde"]);
    }

    #[test]
    fn cjk_wraps_anywhere_and_never_splits_a_character() {
        assert_eq!(wrap("会员充值", 5, GB), ["会员", "充值"]);
        assert_eq!(wrap("积分VIP会员", 6, GB), ["积分", "VIP会", "员"]);
        // A character wider than the line still prints, alone.
        assert_eq!(wrap("会员", 1, GB), ["会", "员"]);
    }

    #[test]
    fn punctuation_and_prices_stay_with_their_neighbours() {
        assert_eq!(wrap("谢谢惠顾，欢迎", 8, GB), ["谢谢惠", "顾，欢迎"]);
        assert_eq!(wrap("合计 ￥25.60", 10, GB), ["合计", "￥25.60"]);
        assert_eq!(wrap("苹果（赠品）", 6, GB), ["苹果", "（赠", "品）"]);
        // Glue never makes a line overflow: a cluster too long still breaks.
        assert_eq!(wrap("，，，，，", 4, GB), ["，，", "，，", "，"]);
    }

    #[test]
    fn newlines_controls_and_zero_width() {
        assert_eq!(wrap("a\nb\n", 10, GB), ["a", "b"]);
        assert_eq!(wrap("", 10, GB), [""]);
        assert_eq!(wrap("\n", 10, GB), [""]);
        assert_eq!(wrap("a\r\n\nb", 10, GB), ["a", "", "b"]);
        assert_eq!(wrap("x\u{1b}@\u{1d}V\ty", 10, GB), ["x@V y"]);
        assert_eq!(wrap("e\u{301}\u{200b}!", 10, GB), ["e!"]);
    }

    #[test]
    fn width_follows_the_printer() {
        assert_eq!(width("¥1·", GB), 5);
        assert_eq!(width("¥1·", Encoding::Ascii), 3);
        assert_eq!(wrap("¥", 10, GB), ["￥"]);
        assert_eq!(
            encode("会员充值 ￥1", GB),
            b"\xbb\xe1\xd4\xb1\xb3\xe4\xd6\xb5 \xa3\xa41"
        );
        assert_eq!(wrap("会员 ok", 10, Encoding::Ascii), ["?? ok"]);
    }
}
