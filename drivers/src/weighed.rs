//! Weighed-goods barcodes (PROTOCOLS.md §8): labels a store's label scale
//! prints, whose digits carry a PLU and the weight or the price. Layouts are
//! per store, so each is a template: `22PPPPPWWWWWC` is prefix 22, a
//! five-digit PLU, the weight in grams and the EAN check digit.

pub use crate::escpos::gs1_check_digit;
use crate::Weighed;

/// Shortest and longest templates: EAN-8 to the 18-digit Chinese labels and a little room.
const LENGTHS: std::ops::RangeInclusive<usize> = 8..=24;

/// One configured layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    pattern: Vec<u8>,
}

impl Template {
    /// Reads a pattern: digits are the literal prefix (or any fixed digit),
    /// `P` the PLU, `W` the weight in grams, `E` the price in fen, `X` a digit
    /// that is ignored, and `C` the GS1 check digit, last.
    pub fn parse(pattern: &str) -> Result<Template, String> {
        let p = pattern.as_bytes();
        if !LENGTHS.contains(&p.len()) {
            return Err(format!(
                "{pattern:?} has {} characters; a label has {} to {} digits",
                p.len(),
                LENGTHS.start(),
                LENGTHS.end()
            ));
        }
        if let Some(c) = p.iter().find(|c| !b"0123456789PWECX".contains(c)) {
            return Err(format!(
                "{pattern:?}: {:?} is not a digit or P (PLU), W (grams), E (price in fen), X (ignored), C (check digit)",
                *c as char
            ));
        }
        if p.last() != Some(&b'C') || p.iter().filter(|&&c| c == b'C').count() != 1 {
            return Err(format!(
                "{pattern:?} must end in one C: the check digit is what tells a label from a misread"
            ));
        }
        for field in [b'P', b'W', b'E'] {
            let n = p.iter().filter(|&&c| c == field).count();
            let first = p.iter().position(|&c| c == field).unwrap_or(0);
            if n > 0 && p[first..first + n].iter().any(|&c| c != field) {
                return Err(format!(
                    "{pattern:?}: the {} digits must be together",
                    field as char
                ));
            }
            if n > 12 {
                return Err(format!(
                    "{pattern:?}: more than 12 {} digits",
                    field as char
                ));
            }
        }
        if !p.contains(&b'P') || !(p.contains(&b'W') || p.contains(&b'E')) {
            return Err(format!(
                "{pattern:?} needs P (the PLU) and W (grams) or E (price in fen)"
            ));
        }
        let t = Template {
            pattern: p.to_vec(),
        };
        if let Some(which) = t.payment_overlap() {
            return Err(format!(
                "{pattern:?} could also match {which}; a customer's payment code must never read as goods (use a prefix such as 20-24)"
            ));
        }
        Ok(t)
    }

    /// The payment code shape (PROTOCOLS.md §5) that texts of this template
    /// could have, if any.
    fn payment_overlap(&self) -> Option<&'static str> {
        let n = self.pattern.len();
        let can = |i: usize, digits: &[u8]| {
            self.pattern
                .get(i)
                .is_some_and(|c| !c.is_ascii_digit() || digits.contains(c))
        };
        if n == 18 && can(0, b"1") && can(1, b"012345") {
            return Some("WeChat Pay codes (18 digits starting 10-15)");
        }
        let alipay = (can(0, b"2") && can(1, b"56789")) || (can(0, b"3") && can(1, b"0"));
        if (16..=24).contains(&n) && alipay {
            return Some("Alipay codes (16-24 digits starting 25-30)");
        }
        if n == 19 && can(0, b"6") && can(1, b"2") {
            return Some("UnionPay QuickPass codes (19 digits starting 62)");
        }
        None
    }

    /// What `text` says when it is a label of this layout with a right check digit.
    pub fn decode(&self, text: &str) -> Option<Weighed> {
        let t = text.as_bytes();
        if t.len() != self.pattern.len() || !t.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let literal_ok = self
            .pattern
            .iter()
            .zip(t)
            .all(|(p, c)| !p.is_ascii_digit() || p == c);
        let (body, check) = t.split_at(t.len() - 1);
        if !literal_ok || gs1_check_digit(body) != check[0] {
            return None;
        }
        let field = |f: u8| -> String {
            self.pattern
                .iter()
                .zip(t)
                .filter(|(p, _)| **p == f)
                .map(|(_, c)| *c as char)
                .collect()
        };
        let number = |f: u8| {
            Some(field(f))
                .filter(|s| !s.is_empty())
                .and_then(|s| s.parse().ok())
        };
        Some(Weighed {
            plu: field(b'P'),
            grams: number(b'W'),
            price_fen: number(b'E'),
        })
    }
}

/// The first template `text` is a label of.
pub fn decode(templates: &[Template], text: &str) -> Option<Weighed> {
    templates.iter().find_map(|t| t.decode(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(p: &str) -> Template {
        Template::parse(p).unwrap()
    }

    /// `body` with its check digit appended.
    fn label(body: &str) -> String {
        format!("{body}{}", gs1_check_digit(body.as_bytes()) as char)
    }

    #[test]
    fn thirteen_digit_weight_and_price_labels_decode() {
        let code = label("220123401234");
        assert_eq!(
            t("22PPPPPWWWWWC").decode(&code),
            Some(Weighed {
                plu: "01234".into(),
                grams: Some(1234),
                price_fen: None
            })
        );
        let code = label("280004001580");
        assert_eq!(
            t("28PPPPEEEEEEC").decode(&code).unwrap().price_fen,
            Some(1580)
        );
    }

    #[test]
    fn eighteen_digit_labels_carry_weight_and_price() {
        let tpl = t("20PPPPPWWWWWEEEEEC");
        let code = label("20012340150002990");
        let w = tpl.decode(&code).unwrap();
        assert_eq!(
            (w.plu.as_str(), w.grams, w.price_fen),
            ("01234", Some(1500), Some(2990))
        );
    }

    #[test]
    fn a_wrong_check_digit_or_prefix_or_length_is_not_a_label() {
        let tpl = t("22PPPPPWWWWWC");
        let good = label("220123401234");
        let mut bad = good.clone().into_bytes();
        bad[12] = b'0' + (bad[12] - b'0' + 1) % 10;
        let bad = String::from_utf8(bad).unwrap();
        assert_eq!(tpl.decode(&bad), None);
        assert_eq!(tpl.decode(&label("230123401234")), None);
        assert_eq!(tpl.decode(&good[..12]), None);
        assert_eq!(tpl.decode("22012340123a"), None);
        assert!(decode(&[t("21PPPPPWWWWWC"), tpl], &good).is_some());
    }

    #[test]
    fn bad_templates_say_why() {
        for (p, says) in [
            ("22PPPPPWWWWW", "end in one C"),
            ("22PPPPPWWWWWCC", "end in one C"),
            ("22PPWPPWWWWWC", "together"),
            ("22PPPPPQQQQQC", "'Q'"),
            ("22PPPPPPPPPPC", "W (grams) or E"),
            ("2C", "characters"),
            ("25PPPPPPWWWWWEEEEC", "Alipay"),
            ("1PPPPPPWWWWWEEEEEC", "WeChat"),
            ("PPPPPPPPPPWWWWWWWC", "WeChat"),
        ] {
            let e = Template::parse(p).unwrap_err();
            assert!(e.contains(says), "{p}: {e}");
        }
        assert!(Template::parse("21PPPPPPWWWWWEEEEC").is_ok());
    }
}
