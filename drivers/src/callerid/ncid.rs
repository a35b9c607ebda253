//! NCID server lines (TCP 3333) and the NetCallerID serial box (4800 8N1).
//!
//! NCID (dgnorton/ncid, `NCID-API.md`) sends `LABEL: *KEY*value*KEY*value*…*`:
//! - `CID: *DATE*05112002*TIME*1525*LINE*1*NMBR*4075555000*MESG*NONE*NAME*CALL*`
//!   an incoming call (`NMBR` may be `PRIVATE`, `OUT-OF-AREA`, `ANONYMOUS` …);
//! - `CIDINFO: *LINE*1*RING*n*TIME*16:20:05*`: ring `n` ≥ 1, or the end of a
//!   call: `0` the modem stopped seeing rings, `-1` a gateway's caller hung
//!   up before pickup, `-2` hung up after pickup, `-3` busy, `-4` the server
//!   hung up automatically;
//! - `END: *HTYPE*BYE|CANCEL*…*CTYPE*IN|OUT*…`: a gateway's call ended
//!   (`BYE` after answer, `CANCEL` before);
//! - `HUP:` / `BLK:` the same fields as `CID:` for a call the server hung up
//!   on or blocked.
//!
//! - `OUT:` the same fields for a call dialed out on the line.
//!
//! Every record names its `LINE` (`-` when the server has one line): calls
//! on different lines are different calls.
//!
//! Everything else — the `200`/`300` start-up banners, the call log replayed
//! at connect (`CIDLOG:`, `LOG:` …), options and messages — has no live call
//! and is ignored.
//!
//! NetCallerID prints `###DATE08082225...NMBR14075551212...NAMEJOHN+++`.

use super::modem::withheld;
use super::{clean_name, clean_number, date_mmddhhmm, CallInfo, Signal};

/// NCID line labels that may come without `*` fields (options, messages).
const KNOWN_LABELS: [&str; 10] = [
    "OPT", "MSG", "LOG", "NOT", "INFO", "ACK", "RESP", "REQ", "WRK", "RLY",
];

/// The `*KEY*value*` pairs after a label.
fn pairs(rest: &str) -> Vec<(&str, &str)> {
    let fields: Vec<&str> = rest.trim().trim_matches('*').split('*').collect();
    fields
        .chunks(2)
        .filter_map(|c| match c {
            [k, v] => Some((k.trim(), v.trim())),
            _ => None,
        })
        .collect()
}

fn get<'a>(pairs: &[(&str, &'a str)], key: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
}

fn number_of(value: Option<&str>) -> String {
    match value {
        Some(n) => match withheld(n) {
            Some(w) => w.to_string(),
            // NCID words for a withheld number not in the modem list.
            None if n.chars().any(|c| c.is_ascii_alphabetic()) => {
                let up = n.to_ascii_uppercase();
                if up.contains("PRIV") || up.contains("ANON") {
                    super::PRIVATE.to_string()
                } else {
                    super::UNAVAILABLE.to_string()
                }
            }
            None => clean_number(n.as_bytes()),
        },
        None => super::UNAVAILABLE.to_string(),
    }
}

fn call_info(pairs: &[(&str, &str)]) -> CallInfo {
    let name = get(pairs, "NAME")
        .filter(|n| {
            let up = n.to_ascii_uppercase();
            withheld(n).is_none() && up != "NO NAME" && up != "-"
        })
        .and_then(|n| clean_name(n.as_bytes()));
    let line = line_of(pairs);
    // NCID's DATE is MMDDYYYY (DDMMYYYY where configured so); its first four
    // digits and TIME's HHMM make the box time either way it reads.
    let box_time = match (get(pairs, "DATE"), get(pairs, "TIME")) {
        (Some(d), Some(t)) => {
            let t: String = t.chars().filter(char::is_ascii_digit).take(4).collect();
            d.get(..4)
                .and_then(|d| date_mmddhhmm(format!("{d}{t}").as_bytes()))
        }
        _ => None,
    };
    CallInfo {
        number: number_of(get(pairs, "NMBR")),
        name,
        line,
        box_time,
    }
}

/// What one NCID line says, about which line.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Record {
    /// The `LINE` label; `None` for `-` (a one-line server).
    pub line: Option<String>,
    pub signals: Vec<Signal>,
}

/// Reads one NCID server line. `None` when it is not NCID at all; no
/// signals for NCID lines without a live call.
pub fn parse_ncid(line: &str) -> Option<Record> {
    let s = line.trim();
    if s.starts_with("200 ") || s.starts_with("300 ") || s == "200" || s == "300" {
        return Some(Record::default());
    }
    let (label, rest) = s.split_once(':')?;
    let label = label.trim();
    let known = KNOWN_LABELS.contains(&label);
    if label.is_empty()
        || !label.bytes().all(|b| b.is_ascii_uppercase())
        || !(known || rest.contains('*'))
    {
        return None;
    }
    let p = pairs(rest);
    let signals = match label {
        "CID" => vec![Signal::Info(call_info(&p))],
        "OUT" => vec![Signal::Outgoing(call_info(&p))],
        "HUP" | "BLK" => vec![
            Signal::Info(call_info(&p)),
            Signal::Ended { answered: None },
        ],
        "CIDINFO" => match get(&p, "RING").and_then(|r| r.parse::<i32>().ok()) {
            Some(n) if n > 0 => vec![Signal::Ring],
            Some(-1) => vec![Signal::Ended {
                answered: Some(false),
            }],
            Some(-2) => vec![Signal::Ended {
                answered: Some(true),
            }],
            Some(_) => vec![Signal::Ended { answered: None }],
            None => Vec::new(),
        },
        "END" if get(&p, "CTYPE").is_none_or(|c| c == "IN") => {
            let answered = match get(&p, "HTYPE") {
                Some("BYE") => Some(true),
                Some("CANCEL") => Some(false),
                _ => None,
            };
            vec![Signal::Ended { answered }]
        }
        _ => Vec::new(),
    };
    Some(Record {
        line: line_of(&p),
        signals,
    })
}

fn line_of(pairs: &[(&str, &str)]) -> Option<String> {
    get(pairs, "LINE")
        .filter(|l| !matches!(*l, "" | "-" | "NO-LINE"))
        .and_then(|l| clean_name(l.as_bytes()))
}

/// Reads one NetCallerID line (`###…+++`). `None` when it is not one.
pub fn parse_netcallerid(line: &str) -> Option<Signal> {
    let s = line.trim();
    let body = s.strip_prefix("###")?;
    let body = body.trim_end_matches('+');
    let mut number = None;
    let mut name = None;
    let mut date = None;
    for field in body.split("...") {
        if let Some(v) = field.strip_prefix("NMBR") {
            number = Some(v);
        } else if let Some(v) = field.strip_prefix("NAME") {
            name = Some(v);
        } else if let Some(v) = field.strip_prefix("DATE") {
            date = Some(v);
        }
    }
    // Message-waiting and other status lines carry no number.
    let number = number?;
    Some(Signal::Info(CallInfo {
        number: number_of(Some(number)),
        name: name
            .filter(|n| withheld(n).is_none())
            .and_then(|n| clean_name(n.as_bytes())),
        line: None,
        box_time: date.and_then(|d| date_mmddhhmm(d.as_bytes())),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(number: &str, name: Option<&str>, line: Option<&str>, t: Option<&str>) -> Signal {
        Signal::Info(CallInfo {
            number: number.into(),
            name: name.map(Into::into),
            line: line.map(Into::into),
            box_time: t.map(Into::into),
        })
    }

    fn signals(line: &str) -> Option<Vec<Signal>> {
        parse_ncid(line).map(|r| r.signals)
    }

    #[test]
    fn ncid_lines() {
        assert_eq!(
            signals("CID: *DATE*05112002*TIME*1525*LINE*1*NMBR*4075555000*MESG*NONE*NAME*CALL*"),
            Some(vec![info(
                "4075555000",
                Some("CALL"),
                Some("1"),
                Some("05-11 15:25")
            )])
        );
        assert_eq!(
            signals("CID: *DATE*11242026*TIME*1015*LINE*-*NMBR*PRIVATE*MESG*NONE*NAME*NO NAME*"),
            Some(vec![info("private", None, None, Some("11-24 10:15"))])
        );
        assert_eq!(
            signals("CID: *DATE*11242026*TIME*1015*LINE*POTS*NMBR*OUT-OF-AREA*MESG*NONE*NAME*O*"),
            Some(vec![info(
                "unavailable",
                None,
                Some("POTS"),
                Some("11-24 10:15")
            )])
        );
        assert_eq!(
            signals("CIDINFO: *LINE*1*RING*2*TIME*16:20:05*"),
            Some(vec![Signal::Ring])
        );
        assert_eq!(
            signals("CIDINFO: *LINE*POTS*RING*0*TIME*16:20:05*"),
            Some(vec![Signal::Ended { answered: None }])
        );
        assert_eq!(
            signals("CIDINFO: *LINE*VOIP*RING*-1*TIME*16:20:05*"),
            Some(vec![Signal::Ended {
                answered: Some(false)
            }])
        );
        assert_eq!(
            signals("CIDINFO: *LINE*VOIP*RING*-2*TIME*16:20:05*"),
            Some(vec![Signal::Ended {
                answered: Some(true)
            }])
        );
        assert_eq!(
            signals("END: *HTYPE*BYE*DATE*01152017*TIME*0011*SCALL*01/15/2017 00:10:47*ECALL*01/15/2017 00:11:01*CTYPE*IN*LINE*4901*NMBR*0123456*NAME*NONAME*"),
            Some(vec![Signal::Ended { answered: Some(true) }])
        );
        assert_eq!(signals("END: *HTYPE*CANCEL*CTYPE*OUT*"), Some(vec![]));
        for ignored in [
            "200 Server: ncidd (NCID) 1.11",
            "300 End of server startup",
            "CIDLOG: *DATE*05112002*TIME*1525*LINE*1*NMBR*4075555000*MESG*NONE*NAME*CALL*",
            "OPT: country: US*",
            "OPT: hangup-1",
            "MSG: Caller ID Logfile too big: (95000 > 90000) bytes",
        ] {
            assert_eq!(signals(ignored), Some(vec![]), "{ignored}");
        }
        assert_eq!(signals("NMBR = 123"), None);
        assert_eq!(
            signals(
                "OUT: *DATE*01152017*TIME*0010*LINE*4901*NMBR*012345611*MESG*NONE*NAME*NO NAME*"
            ),
            Some(vec![Signal::Outgoing(CallInfo {
                number: "012345611".into(),
                name: None,
                line: Some("4901".into()),
                box_time: Some("01-15 00:10".into()),
            })])
        );
        assert_eq!(signals("RING"), None);
    }

    #[test]
    fn every_record_names_its_line() {
        let line = |l: &str| parse_ncid(l).and_then(|r| r.line);
        assert_eq!(
            line("CIDINFO: *LINE*2*RING*1*TIME*16:20:05*").as_deref(),
            Some("2")
        );
        assert_eq!(
            line("END: *HTYPE*BYE*CTYPE*IN*LINE*VOIP*").as_deref(),
            Some("VOIP")
        );
        assert_eq!(line("CIDINFO: *LINE*-*RING*1*TIME*16:20:05*"), None);
        assert_eq!(line("200 Server: ncidd (NCID) 1.11"), None);
    }

    #[test]
    fn netcallerid_lines() {
        assert_eq!(
            parse_netcallerid("###DATE08082225...NMBR14075551212...NAMEJOHN+++"),
            Some(info("14075551212", Some("JOHN"), None, Some("08-08 22:25")))
        );
        assert_eq!(
            parse_netcallerid("###DATE10072333...NMBRP...NAMEP+++"),
            Some(info("private", None, None, Some("10-07 23:33")))
        );
        assert_eq!(
            parse_netcallerid("###DATE10072333...NMBRO...NAMEO+++"),
            Some(info("unavailable", None, None, Some("10-07 23:33")))
        );
        assert_eq!(parse_netcallerid("###DATE...NAME-MSG OFF-+++"), None);
        assert_eq!(parse_netcallerid("CID: *NMBR*1*"), None);
    }
}
