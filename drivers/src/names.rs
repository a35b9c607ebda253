//! Enums spelled by name in the config (`suffix = "crlf"`, `parity = "even"`):
//! one macro gives each its parser, its list of names and a serde
//! `Deserialize` whose error lists what would have been accepted.

/// `"a"`, `"a or b"`, `"a, b or c"`: the names an error offers.
pub fn or_list(names: &[&str]) -> String {
    match names {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
    }
}

/// Implements `parse` (ASCII case-insensitive), `NAMES` (the first spelling
/// of each value, as errors show them), `name` and `Deserialize` for an enum:
///
/// ```
/// #[derive(Clone, Copy, Debug, PartialEq)]
/// pub enum Cut { Partial, Full }
/// posbridge_drivers::config_names!(Cut { "partial" => Cut::Partial, "full" | "whole" => Cut::Full });
/// assert_eq!(Cut::parse("WHOLE"), Some(Cut::Full));
/// assert_eq!(Cut::Full.name(), "full");
/// ```
#[macro_export]
macro_rules! config_names {
    ($ty:ident { $($first:literal $(| $alias:literal)* => $value:expr),+ $(,)? }) => {
        impl $ty {
            /// Every value's config spelling (aliases aside).
            pub const NAMES: &'static [&'static str] = &[$($first),+];

            /// Reads a config spelling, ignoring ASCII case.
            pub fn parse(s: &str) -> Option<$ty> {
                $(
                    if s.eq_ignore_ascii_case($first) $(|| s.eq_ignore_ascii_case($alias))* {
                        return Some($value);
                    }
                )+
                None
            }

            /// The config spelling of this value.
            pub fn name(self) -> &'static str {
                $(if self == $value { return $first; })+
                ""
            }
        }

        impl $crate::__serde::Serialize for $ty {
            fn serialize<S: $crate::__serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.name())
            }
        }

        impl<'de> $crate::__serde::Deserialize<'de> for $ty {
            fn deserialize<D: $crate::__serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <String as $crate::__serde::Deserialize>::deserialize(d)?;
                $ty::parse(&s).ok_or_else(|| {
                    <D::Error as $crate::__serde::de::Error>::custom(format!(
                        "{s:?} is not {}",
                        $crate::names::or_list($ty::NAMES)
                    ))
                })
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::or_list;

    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Parity {
        None,
        Odd,
        Even,
    }
    crate::config_names!(Parity { "none" => Parity::None, "odd" => Parity::Odd, "even" | "e" => Parity::Even });

    #[test]
    fn names_parse_in_any_case_and_errors_list_them() {
        assert_eq!(Parity::parse("EVEN"), Some(Parity::Even));
        assert_eq!(Parity::parse("e"), Some(Parity::Even));
        assert_eq!(Parity::parse("mark"), None);
        assert_eq!(Parity::Odd.name(), "odd");
        let err = serde_json::from_str::<Parity>("\"mark\"").expect_err("refused");
        assert!(
            err.to_string()
                .starts_with("\"mark\" is not none, odd or even"),
            "{err}"
        );
        let err = serde_json::from_str::<Parity>("7").expect_err("refused");
        assert!(err.to_string().contains("expected a string"), "{err}");
    }

    #[test]
    fn lists_read_like_a_sentence() {
        assert_eq!(or_list(&[]), "");
        assert_eq!(or_list(&["A"]), "A");
        assert_eq!(or_list(&["A", "B"]), "A or B");
        assert_eq!(or_list(&["5", "6", "7", "8"]), "5, 6, 7 or 8");
    }
}
