//! The call life through [`CallerId`], with a shell stand-in that honours
//! `SetTimer` the way the daemon does.

use super::fsk::{build_message, mdmf_body};
use super::hid::{example_layout, tests::example_report};
use super::*;

/// ME Labs' published MDMF example (JOHN DOE, 800 555 1212, 03-24 09:02),
/// with its checksum corrected (see [`super::fsk`]'s tests).
use super::fsk::tests::MDMF_EXAMPLE;
/// ME Labs' published SDMF example ((609) 555-1212, 09-30 12:24).
const SDMF_EXAMPLE: [u8; 21] = [
    0x04, 0x12, 0x30, 0x39, 0x33, 0x30, 0x31, 0x32, 0x32, 0x34, 0x36, 0x30, 0x39, 0x35, 0x35, 0x35,
    0x31, 0x32, 0x31, 0x32, 0x51,
];
/// A modem transcript as NCID's docs show it (`AT+VCID=1`, US timing).
const MODEM_TRANSCRIPT: &[u8] = b"RING\r\n\r\nDATE = 0511\r\nTIME = 1852\r\nNMBR = 4075550000\r\nNAME = CALL\r\n\r\nRING\r\n\r\nRING\r\n";

/// The daemon's side: runs the protocol, fires its timer when time passes.
struct Shell {
    p: CallerId,
    now: u64,
    timer: Option<u64>,
    actions: Vec<Action>,
}

impl Shell {
    fn new(format: Format) -> Self {
        Self::with(Options {
            format,
            call_id_prefix: "phone-1-".into(),
            ..Options::default()
        })
    }

    fn with(opts: Options) -> Self {
        let mut s = Shell {
            p: CallerId::new(opts),
            now: 0,
            timer: None,
            actions: Vec::new(),
        };
        let mut out = Vec::new();
        s.p.handle_open(Instant(0), &mut out);
        s.take(out);
        s.actions.clear();
        s
    }

    fn take(&mut self, out: Vec<Action>) {
        for a in out {
            if let Action::SetTimer(t) = a {
                self.timer = Some(t.0);
            } else {
                self.actions.push(a);
            }
        }
    }

    /// Lets time pass to `to`, firing the timer on the way.
    fn advance(&mut self, to: u64) {
        while let Some(t) = self.timer.filter(|t| *t <= to) {
            self.timer = None;
            self.now = self.now.max(t);
            let mut out = Vec::new();
            self.p.handle_timer(Instant(self.now), &mut out);
            self.take(out);
        }
        self.now = self.now.max(to);
    }

    fn feed_at(&mut self, at: u64, bytes: &[u8]) {
        self.advance(at);
        let mut out = Vec::new();
        self.p.handle_bytes(Instant(self.now), bytes, &mut out);
        self.take(out);
    }

    fn feed(&mut self, bytes: &[u8]) {
        let now = self.now;
        self.feed_at(now, bytes);
    }

    fn events(&self) -> Vec<Event> {
        self.actions
            .iter()
            .filter_map(|a| match a {
                Action::Emit(e) => Some(e.clone()),
                _ => None,
            })
            .collect()
    }

    fn malformed(&self) -> Vec<String> {
        self.actions
            .iter()
            .filter_map(|a| match a {
                Action::Malformed(m) => Some(m.clone()),
                _ => None,
            })
            .collect()
    }
}

fn ringing(id: &str, number: &str, name: Option<&str>, box_time: Option<&str>) -> Event {
    Event::CallRinging {
        call_id: id.into(),
        number: number.into(),
        normalized: number::normalize(number, "86"),
        name: name.map(Into::into),
        line: None,
        at: None,
        box_time: box_time.map(Into::into),
    }
}

fn ended(id: &str, answered: Option<bool>) -> Event {
    Event::CallEnded {
        call_id: id.into(),
        answered,
    }
}

/// Feeds `bytes` split in two at every position, and byte by byte, and
/// checks each run gives `want` (after `settle` ms of quiet).
fn every_split(format: Format, bytes: &[u8], settle: u64, want: &[Event]) {
    let mut splits: Vec<Vec<&[u8]>> = (0..=bytes.len())
        .map(|i| {
            let (a, b) = bytes.split_at(i);
            vec![a, b]
        })
        .collect();
    splits.push(bytes.chunks(1).collect());
    for (n, chunks) in splits.iter().enumerate() {
        let mut s = Shell::new(format);
        for c in chunks {
            s.feed(c);
        }
        s.advance(settle);
        assert_eq!(s.events(), want, "{format:?} split #{n}");
        assert!(
            s.malformed().is_empty(),
            "{format:?} split #{n}: {:?}",
            s.malformed()
        );
    }
}

#[test]
fn modem_transcript_is_one_call_at_every_split() {
    let want = [
        ringing("phone-1-1", "4075550000", Some("CALL"), Some("05-11 18:52")),
        ended("phone-1-1", None),
    ];
    every_split(Format::Modem, MODEM_TRANSCRIPT, 20_000, &want);
    every_split(Format::Auto, MODEM_TRANSCRIPT, 20_000, &want);
}

#[test]
fn modem_call_with_real_ring_timing() {
    let mut s = Shell::new(Format::Modem);
    s.feed_at(0, b"RING\r\n");
    s.feed_at(
        3000,
        b"\r\nDATE = 0511\r\nTIME = 1852\r\nDDN_NMBR = 13812345678\r\n",
    );
    // No NAME line (number-only service): the block is complete after a short quiet.
    s.advance(3000 + BLOCK_WAIT_MS);
    assert_eq!(
        s.events(),
        [ringing(
            "phone-1-1",
            "13812345678",
            None,
            Some("05-11 18:52")
        )]
    );
    assert_eq!(s.events().first().map(Event::kind), Some("call.ringing"));
    s.feed_at(6000, b"RING\r\n");
    s.feed_at(12_000, b"RING\r\n");
    s.advance(19_999);
    assert_eq!(s.events().len(), 1, "still ringing");
    s.advance(20_000);
    assert_eq!(s.events().last(), Some(&ended("phone-1-1", None)));
    // The next call gets the next id.
    s.feed_at(30_000, b"RING\r\nNMBR = P\r\nNAME = P\r\n");
    assert_eq!(
        s.events().last(),
        Some(&ringing("phone-1-2", "private", None, None))
    );
}

#[test]
fn number_before_the_first_ring() {
    let mut s = Shell::new(Format::Modem);
    s.feed_at(0, b"NMBR = 075512345678\r\nNAME = ZHANG\r\n");
    s.feed_at(500, b"RING\r\n");
    s.feed_at(5500, b"RING\r\n");
    s.advance(30_000);
    let want = [
        Event::CallRinging {
            call_id: "phone-1-1".into(),
            number: "075512345678".into(),
            normalized: Some("+8675512345678".into()),
            name: Some("ZHANG".into()),
            line: None,
            at: None,
            box_time: None,
        },
        ended("phone-1-1", None),
    ];
    assert_eq!(s.events(), want);
}

#[test]
fn rings_without_a_number_are_announced_unavailable() {
    // At the second ring.
    let mut s = Shell::new(Format::Modem);
    s.feed_at(0, b"RING\r\n");
    s.advance(4000);
    assert!(s.events().is_empty());
    s.feed_at(4200, b"RING\r\n");
    assert_eq!(
        s.events(),
        [ringing("phone-1-1", "unavailable", None, None)]
    );
    // A late number changes nothing for this call.
    s.feed_at(4300, b"NMBR = 13812345678\r\nNAME = X\r\n");
    s.feed_at(9000, b"RING\r\n");
    s.advance(30_000);
    assert_eq!(
        s.events(),
        [
            ringing("phone-1-1", "unavailable", None, None),
            ended("phone-1-1", None)
        ]
    );
    // After cid_wait_ms when only one ring ever comes.
    let mut s = Shell::new(Format::Modem);
    s.feed_at(0, b"RING\r\n");
    s.advance(4499);
    assert!(s.events().is_empty());
    s.advance(4500);
    assert_eq!(
        s.events(),
        [ringing("phone-1-1", "unavailable", None, None)]
    );
    s.advance(8000);
    assert_eq!(s.events().last(), Some(&ended("phone-1-1", None)));
}

#[test]
fn init_commands_on_open() {
    let mut p = CallerId::new(Options {
        format: Format::Modem,
        ..Options::default()
    });
    let mut out = Vec::new();
    p.handle_open(Instant(0), &mut out);
    assert_eq!(
        out,
        [
            Action::Write(b"AT+VCID=1\r".to_vec()),
            Action::Write(b"AT#CID=1\r".to_vec()),
            Action::Write(b"AT+GCI=B5\r".to_vec()),
        ]
    );
    // Echoes and answers are chatter, not errors.
    let mut s = Shell::new(Format::Modem);
    s.feed(b"AT+VCID=1\r\r\nOK\r\nAT#CID=1\r\r\nERROR\r\n");
    assert!(s.actions.is_empty(), "{:?}", s.actions);
    for format in [Format::Mdmf, Format::Dtmf, Format::Ncid] {
        let mut p = CallerId::new(Options {
            format,
            ..Options::default()
        });
        let mut out = Vec::new();
        p.handle_open(Instant(0), &mut out);
        assert!(out.is_empty());
    }
}

#[test]
fn modem_raw_hex_lines() {
    let mut s = Shell::new(Format::Modem);
    s.feed(b"RING\r\n\r\n041230353131313835323430373535353030303059\r\n\r\nRING\r\n");
    assert_eq!(
        s.events(),
        [ringing(
            "phone-1-1",
            "4075550000",
            None,
            Some("05-11 18:52")
        )]
    );
}

fn with_preamble(msg: &[u8]) -> Vec<u8> {
    let mut v = vec![0x55; 30];
    v.extend_from_slice(&[0xFF; 18]);
    v.extend_from_slice(msg);
    v.extend_from_slice(&[0xFF; 3]);
    v
}

#[test]
fn fsk_messages_at_every_split() {
    let mdmf = [
        ringing(
            "phone-1-1",
            "8005551212",
            Some("JOHN DOE"),
            Some("03-24 09:02"),
        ),
        ended("phone-1-1", None),
    ];
    for format in [Format::Mdmf, Format::Etsi, Format::Auto] {
        every_split(format, &with_preamble(&MDMF_EXAMPLE), 20_000, &mdmf);
    }
    let sdmf = [
        ringing("phone-1-1", "6095551212", None, Some("09-30 12:24")),
        ended("phone-1-1", None),
    ];
    for format in [Format::Sdmf, Format::Auto] {
        every_split(format, &with_preamble(&SDMF_EXAMPLE), 20_000, &sdmf);
        every_split(format, &SDMF_EXAMPLE, 20_000, &sdmf);
    }
}

#[test]
fn fsk_bad_checksum_is_malformed_and_no_call() {
    let mut bad = MDMF_EXAMPLE;
    // The checksum as ME Labs printed it.
    bad[34] = 0x7D;
    for format in [Format::Mdmf, Format::Auto] {
        let mut s = Shell::new(format);
        s.feed(&with_preamble(&bad));
        s.advance(20_000);
        assert!(s.events().is_empty());
        let m = s.malformed();
        assert_eq!(m.len(), 1, "{m:?}");
        assert!(m[0].contains("checksum") && m[0].contains("0xF9"), "{m:?}");
        // The stream recovers: the next good message is read.
        s.feed(&MDMF_EXAMPLE);
        assert_eq!(s.events().len(), 1);
    }
}

#[test]
fn fsk_cut_short_is_dropped_after_quiet() {
    let mut s = Shell::new(Format::Mdmf);
    s.feed_at(0, &MDMF_EXAMPLE[..20]);
    s.advance(2000);
    assert_eq!(s.malformed().len(), 1);
    s.feed_at(3000, &MDMF_EXAMPLE);
    assert_eq!(s.events().len(), 1);
}

#[test]
fn fsk_private_unavailable_and_message_waiting() {
    let cases: [(Vec<u8>, &str); 4] = [
        (build_message(0x04, b"11241015P"), "private"),
        (build_message(0x04, b"11241015O"), "unavailable"),
        (
            build_message(
                0x80,
                &mdmf_body(&[(0x01, b"11241015"), (0x04, b"P"), (0x08, b"P")]),
            ),
            "private",
        ),
        (
            build_message(
                0x80,
                &mdmf_body(&[(0x01, b"11241015"), (0x04, b"O"), (0x08, b"O")]),
            ),
            "unavailable",
        ),
    ];
    for (msg, number) in cases {
        let mut s = Shell::new(Format::Auto);
        s.feed(&with_preamble(&msg));
        assert_eq!(
            s.events(),
            [ringing("phone-1-1", number, None, Some("11-24 10:15"))]
        );
    }
    let mut s = Shell::new(Format::Mdmf);
    s.feed(&build_message(0x82, &mdmf_body(&[(0x0B, &[0xFF])])));
    s.feed(&build_message(0x06, &[0x42, 0x42, 0x42]));
    s.advance(20_000);
    assert!(s.actions.is_empty(), "{:?}", s.actions);
}

#[test]
fn etsi_call_setup() {
    let body = mdmf_body(&[
        (0x01, b"11241015"),
        (0x11, &[0x01]),
        (0x02, b"13812345678"),
        (0x1A, b"01012345678"),
        (0x07, b"LI SI"),
    ]);
    let msg = build_message(0x80, &body);
    let want = [
        ringing(
            "phone-1-1",
            "13812345678",
            Some("LI SI"),
            Some("11-24 10:15"),
        ),
        ended("phone-1-1", None),
    ];
    every_split(Format::Etsi, &msg, 20_000, &want);
    assert_eq!(detect_format(&with_preamble(&msg)), Some(Format::Etsi));
    for ignored in [0x86, 0x89] {
        let mut s = Shell::new(Format::Etsi);
        s.feed(&build_message(ignored, &mdmf_body(&[(0x01, b"11241015")])));
        assert!(s.actions.is_empty());
    }
}

#[test]
fn dtmf_variants_through_the_protocol() {
    let cases: &[(&[u8], &str)] = &[
        (b"A13812345678C", "13812345678"),
        (b"A13812345678D075512345678B10C", "13812345678"),
        (b"AB00C", "unavailable"),
        (b"AB10C", "private"),
        (b"A075512345678#", "075512345678"),
        (b"D1#", "private"),
        (b"D2#", "unavailable"),
        (b"D3#", "unavailable"),
        (b"D13812345678C", "13812345678"),
        (b"13812345678#", "13812345678"),
    ];
    for (bytes, number) in cases {
        let want = [
            ringing("phone-1-1", number, None, None),
            ended("phone-1-1", None),
        ];
        every_split(Format::Dtmf, bytes, 20_000, &want);
        every_split(Format::Auto, bytes, 20_000, &want);
        // With a line end too.
        every_split(Format::Dtmf, &[*bytes, b"\r\n"].concat(), 20_000, &want);
    }
    // Unterminated: flushed after a quiet spell.
    let mut s = Shell::new(Format::Dtmf);
    s.feed_at(0, b"A13812345678");
    s.advance(FLUSH_MS);
    assert_eq!(
        s.events(),
        [ringing("phone-1-1", "13812345678", None, None)]
    );
    let mut s = Shell::new(Format::Dtmf);
    s.feed(b"D9#");
    assert_eq!(s.malformed().len(), 1);
    assert!(s.events().is_empty());
}

/// A Whozz Calling datagram: headers with binary unit and serial numbers.
fn whozz(record: &str) -> Vec<u8> {
    let mut d = b"^^<U>\x00\x01\x0d\x0a\xff\x24<S>\x10\x20\x5e\x5e\x00\x7f$".to_vec();
    d.extend_from_slice(record.as_bytes());
    d
}

#[test]
fn whozz_calling_deluxe_and_basic_units_give_one_call_each() {
    // A Deluxe unit: ring, the call record, off hook (answered), on hook, end.
    for format in [Format::Whozz, Format::Auto] {
        let mut s = Shell::new(format);
        s.feed_at(0, &whozz("01 R             09/26 11:28:03"));
        s.feed_at(
            1500,
            &whozz("01 I S 0000 G A1 09/26 11:28 AM 13812345678   王芳           "),
        );
        s.feed_at(5800, &whozz("01 R             09/26 11:28:09"));
        s.feed_at(7000, &whozz("01 F             09/26 11:28:10"));
        s.feed_at(60_000, &whozz("01 N             09/26 11:29:03"));
        s.feed_at(
            60_100,
            &whozz("01 I E 0060 G A2 09/26 11:28 AM 13812345678   王芳           "),
        );
        assert_eq!(
            s.events(),
            [
                Event::CallRinging {
                    call_id: "phone-1-1".into(),
                    number: "13812345678".into(),
                    normalized: Some("+8613812345678".into()),
                    name: Some("王芳".into()),
                    line: Some("1".into()),
                    at: None,
                    box_time: Some("09-26 11:28".into()),
                },
                ended("phone-1-1", Some(true)),
            ],
            "{format:?}"
        );
        assert!(s.malformed().is_empty(), "{:?}", s.malformed());
        assert_eq!(s.p.detected(), Some(Format::Whozz));
    }
    // A basic unit: only start and end records; the end ends the call.
    let mut s = Shell::new(Format::Whozz);
    s.feed_at(
        0,
        &whozz("02 I S 0000 G A1 09/26 11:30 AM PRIVATE       PRIVATE        "),
    );
    s.feed_at(
        9000,
        &whozz("02 I E 0000 G A3 09/26 11:30 AM PRIVATE       PRIVATE        "),
    );
    let ev = s.events();
    assert!(
        matches!(&ev[0], Event::CallRinging { number, name: None, line, .. } if number == "private" && line.as_deref() == Some("2")),
        "{ev:?}"
    );
    assert_eq!(ev[1], ended("phone-1-1", None));
    // A bad checksum: the call rings without a number, once.
    let mut s = Shell::new(Format::Whozz);
    s.feed_at(
        0,
        &whozz("01 I S 0000 B A1 09/26 11:31 AM 13812345678   王芳"),
    );
    s.advance(30_000);
    let mut unavailable = ringing("phone-1-1", "unavailable", None, None);
    if let Event::CallRinging { line, .. } = &mut unavailable {
        *line = Some("1".into());
    }
    assert_eq!(s.events(), [unavailable, ended("phone-1-1", None)]);
    assert_eq!(s.malformed().len(), 1);
    assert_eq!(
        super::detect_format(&whozz("01 R             09/26 11:28:03")),
        Some(Format::Whozz)
    );
}

/// The line and answer of each `call.ended`, by call id.
fn ends(ev: &[Event]) -> Vec<(String, Option<bool>)> {
    ev.iter()
        .filter_map(|e| match e {
            Event::CallEnded { call_id, answered } => Some((call_id.clone(), *answered)),
            _ => None,
        })
        .collect()
}

/// The call id, number and line of each `call.ringing`.
fn rings(ev: &[Event]) -> Vec<(String, String, Option<String>)> {
    ev.iter()
        .filter_map(|e| match e {
            Event::CallRinging {
                call_id,
                number,
                line,
                ..
            } => Some((call_id.clone(), number.clone(), line.clone())),
            _ => None,
        })
        .collect()
}

fn r(id: &str, number: &str, line: &str) -> (String, String, Option<String>) {
    (id.into(), number.into(), Some(line.into()))
}

#[test]
fn two_lines_of_one_whozz_unit_are_two_calls() {
    // Line 1 rings; while it does, line 2 rings too. A phone lifted on line
    // 2 answers line 2's call only; line 1's caller gives up (a Deluxe unit:
    // an end with no off-hook before it).
    let mut s = Shell::new(Format::Whozz);
    s.feed_at(0, &whozz("01 R             09/26 11:40:00"));
    s.feed_at(
        1500,
        &whozz("01 I S 0000 G A1 09/26 11:40 AM 13812345678   王芳"),
    );
    s.feed_at(2000, &whozz("02 R             09/26 11:40:02"));
    s.feed_at(
        2500,
        &whozz("02 I S 0000 G A1 09/26 11:40 AM 13900000000   李雷"),
    );
    s.feed_at(5500, &whozz("01 R             09/26 11:40:05"));
    s.feed_at(7000, &whozz("02 F             09/26 11:40:07"));
    s.feed_at(
        9000,
        &whozz("01 I E 0000 G A2 09/26 11:40 AM 13812345678   王芳"),
    );
    s.feed_at(
        9500,
        &whozz("02 I E 0003 G A1 09/26 11:40 AM 13900000000   李雷"),
    );
    let ev = s.events();
    assert_eq!(
        rings(&ev),
        [
            r("phone-1-1", "13812345678", "1"),
            r("phone-1-2", "13900000000", "2")
        ]
    );
    assert_eq!(
        ends(&ev),
        [
            ("phone-1-2".into(), Some(true)),
            ("phone-1-1".into(), Some(false))
        ]
    );
    // Each line keeps its own ring timer: line 2 goes quiet and ends while
    // line 1 still rings.
    let mut s = Shell::new(Format::Whozz);
    s.feed_at(
        0,
        &whozz("01 I S 0000 G A1 09/26 11:50 AM 13812345678   王芳"),
    );
    s.feed_at(
        1000,
        &whozz("02 I S 0000 G A1 09/26 11:50 AM 13900000000   李雷"),
    );
    for t in [5000, 10_000, 15_000] {
        s.feed_at(t, &whozz("01 R             09/26 11:50:05"));
    }
    let ev = s.events();
    assert_eq!(ends(&ev), [("phone-1-2".into(), None)], "{ev:?}");
    s.advance(40_000);
    assert_eq!(ends(&s.events()).len(), 2);
}

#[test]
fn outgoing_calls_are_reported_once_and_do_not_disturb_incoming_ones() {
    let mut s = Shell::new(Format::Whozz);
    s.feed_at(
        0,
        &whozz("01 I S 0000 G A1 09/26 11:32 AM 13812345678   王芳"),
    );
    s.feed_at(1000, &whozz("02 O S 0000 G A0 09/26 11:32 AM 02112345678"));
    s.feed_at(9000, &whozz("02 O E 0009 G A0 09/26 11:32 AM 02112345678"));
    s.advance(30_000);
    let ev = s.events();
    assert!(
        ev.contains(&Event::CallOutgoing {
            call_id: "phone-1-2".into(),
            number: "02112345678".into(),
            normalized: Some("+862112345678".into()),
            line: Some("2".into()),
        }),
        "{ev:?}"
    );
    assert_eq!(rings(&ev), [r("phone-1-1", "13812345678", "1")]);
    assert_eq!(ends(&ev), [("phone-1-1".into(), None)]);
    // NCID reports outgoing calls as `OUT:` lines.
    let mut s = Shell::new(Format::Ncid);
    s.feed(b"OUT: *DATE*01152017*TIME*0010*LINE*4901*NMBR*13900000000*MESG*NONE*NAME*NO NAME*\r\n");
    assert_eq!(
        s.events(),
        [Event::CallOutgoing {
            call_id: "phone-1-1".into(),
            number: "13900000000".into(),
            normalized: Some("+8613900000000".into()),
            line: Some("4901".into()),
        }]
    );
}

#[test]
fn ncid_lines_ring_separately() {
    let mut s = Shell::new(Format::Ncid);
    s.feed_at(
        0,
        b"CID: *DATE*05112002*TIME*1525*LINE*1*NMBR*13812345678*MESG*NONE*NAME*A*\r\n",
    );
    s.feed_at(
        500,
        b"CID: *DATE*05112002*TIME*1525*LINE*2*NMBR*13900000000*MESG*NONE*NAME*B*\r\n",
    );
    s.feed_at(3000, b"CIDINFO: *LINE*2*RING*-2*TIME*15:25:03*\r\n");
    s.feed_at(4000, b"CIDINFO: *LINE*1*RING*-1*TIME*15:25:04*\r\n");
    let ev = s.events();
    assert_eq!(
        rings(&ev),
        [
            r("phone-1-1", "13812345678", "1"),
            r("phone-1-2", "13900000000", "2")
        ]
    );
    assert_eq!(
        ends(&ev),
        [
            ("phone-1-2".into(), Some(true)),
            ("phone-1-1".into(), Some(false))
        ]
    );
}

#[test]
fn more_lines_than_followed_end_the_oldest_call() {
    let mut s = Shell::new(Format::Whozz);
    for n in 1..=super::MAX_CALLS + 1 {
        let rec = format!("{n:02} I S 0000 G A1 09/26 11:32 AM 138000000{n:02}   X");
        s.feed_at(n as u64 * 10, &whozz(&rec));
    }
    let ev = s.events();
    assert_eq!(rings(&ev).len(), super::MAX_CALLS + 1);
    assert_eq!(ends(&ev), [("phone-1-1".into(), None)]);
    s.advance(60_000);
    assert_eq!(ends(&s.events()).len(), super::MAX_CALLS + 1);
}

#[test]
fn modems_of_every_ncid_label_and_tci_units_give_their_calls() {
    // Kortex (France Telecom): `CID RING`, a block framed by CALLING/END MSG.
    let kortex = b"CID RING\r\n\r\nCALLING MSG\r\n\r\nDATE TIME=11/24 22:10\r\n\r\nNBR=0632727751\r\n\r\nEND MSG\r\n";
    for format in [Format::Auto, Format::Modem] {
        let mut s = Shell::new(format);
        s.feed_at(0, kortex);
        s.advance(20_000);
        let ev = s.events();
        assert_eq!(
            ev.first(),
            Some(&ringing(
                "phone-1-1",
                "0632727751",
                None,
                Some("11-24 22:10")
            )),
            "{format:?}"
        );
        assert_eq!(ev.len(), 2, "{ev:?}");
        assert!(s.malformed().is_empty(), "{:?}", s.malformed());
    }
    // A TCI unit: one line per call, two lines at once are two calls.
    let mut s = Shell::new(Format::Auto);
    s.feed_at(
        0,
        b"01      9/03      2:23 PM       407-555-1212           WIRELESS CALLER\r\n",
    );
    s.feed_at(
        800,
        b"02      9/03      2:23 PM            PRIVATE           PRIVATE        \r\n",
    );
    s.advance(30_000);
    let ev = s.events();
    assert_eq!(
        rings(&ev),
        [
            r("phone-1-1", "4075551212", "1"),
            r("phone-1-2", "private", "2")
        ]
    );
    assert_eq!(ends(&ev).len(), 2);
}

#[test]
fn ncid_calls_end_as_the_gateway_says() {
    let mut s = Shell::new(Format::Ncid);
    s.feed(b"200 Server: ncidd (NCID) 1.11\r\nCIDLOG: *DATE*05112002*TIME*1525*LINE*1*NMBR*4075555000*MESG*NONE*NAME*CALL*\r\n300 End of server startup\r\n");
    assert!(s.actions.is_empty(), "{:?}", s.actions);
    s.feed_at(1000, b"CIDINFO: *LINE*1*RING*1*TIME*15:25:01*\r\n");
    s.feed_at(
        3000,
        b"CID: *DATE*05112002*TIME*1525*LINE*1*NMBR*4075555000*MESG*NONE*NAME*CALL*\r\n",
    );
    s.feed_at(6000, b"CIDINFO: *LINE*1*RING*2*TIME*15:25:06*\r\n");
    s.feed_at(7000, b"CIDINFO: *LINE*1*RING*-1*TIME*15:25:07*\r\n");
    assert_eq!(
        s.events(),
        [
            Event::CallRinging {
                call_id: "phone-1-1".into(),
                number: "4075555000".into(),
                normalized: None,
                name: Some("CALL".into()),
                line: Some("1".into()),
                at: None,
                box_time: Some("05-11 15:25".into()),
            },
            ended("phone-1-1", Some(false)),
        ]
    );
    s.feed_at(
        10_000,
        b"CID: *DATE*05112002*TIME*1526*LINE*1*NMBR*PRIVATE*MESG*NONE*NAME*NO NAME*\r\n",
    );
    s.feed_at(12_000, b"CIDINFO: *LINE*1*RING*-2*TIME*15:26:30*\r\n");
    s.feed_at(14_000, b"END: *HTYPE*BYE*CTYPE*IN*LINE*1*\r\n");
    let ev = s.events();
    assert_eq!(ev.len(), 4);
    assert!(
        matches!(&ev[2], Event::CallRinging { number, line, .. } if number == "private" && line.as_deref() == Some("1"))
    );
    assert_eq!(ev[3], ended("phone-1-2", Some(true)));
}

#[test]
fn netcallerid_serial() {
    let want = [
        Event::CallRinging {
            call_id: "phone-1-1".into(),
            number: "14075551212".into(),
            // 140… is no 11-digit mobile range: not placeable in China.
            normalized: None,
            name: Some("JOHN".into()),
            line: None,
            at: None,
            box_time: Some("08-08 22:25".into()),
        },
        ended("phone-1-1", None),
    ];
    let line = b"###DATE08082225...NMBR14075551212...NAMEJOHN+++\r";
    every_split(Format::Ncid, line, 20_000, &want);
    every_split(Format::Auto, line, 20_000, &want);
    let mut s = Shell::new(Format::Ncid);
    s.feed(b"###DATE10072333...NMBRP...NAMEP+++\r");
    assert_eq!(
        s.events(),
        [ringing("phone-1-1", "private", None, Some("10-07 23:33"))]
    );
}

#[test]
fn hid_reports_through_a_layout() {
    let opts = || Options {
        format: Format::Hid,
        call_id_prefix: "phone-1-".into(),
        hid_layout: Some(example_layout()),
        ..Options::default()
    };
    // Ring with number, ring level repeated, then picked up.
    let mut s = Shell::with(opts());
    s.feed_at(0, &example_report(0x01, "13812345678"));
    s.feed_at(100, &example_report(0x01, "13812345678"));
    s.feed_at(200, &example_report(0x00, ""));
    s.feed_at(5000, &example_report(0x01, ""));
    s.feed_at(7000, &example_report(0x02, ""));
    s.feed_at(9000, &example_report(0x00, ""));
    s.advance(30_000);
    assert_eq!(
        s.events(),
        [
            ringing("phone-1-1", "13812345678", None, None),
            ended("phone-1-1", Some(true)),
        ]
    );
    // The caller gives up: hang-up before off-hook.
    let mut s = Shell::with(opts());
    s.feed_at(0, &example_report(0x01, ""));
    s.feed_at(2000, &example_report(0x00, "075512345678"));
    s.feed_at(4000, &example_report(0x04, ""));
    s.advance(30_000);
    assert_eq!(
        s.events(),
        [
            ringing("phone-1-1", "075512345678", None, None),
            ended("phone-1-1", Some(false)),
        ]
    );
    // A private call on a box that marks it `P`.
    let mut s = Shell::with(opts());
    s.feed(&example_report(0x01, "P"));
    assert_eq!(s.events(), [ringing("phone-1-1", "private", None, None)]);
    // No layout, or a short report: malformed, no event.
    let mut s = Shell::new(Format::Hid);
    s.feed(&example_report(0x01, "1"));
    let mut t = Shell::with(opts());
    t.feed(&[1, 1]);
    assert!(s.events().is_empty() && t.events().is_empty());
    assert_eq!((s.malformed().len(), t.malformed().len()), (1, 1));
}

#[test]
fn a_different_number_mid_call_is_a_new_call() {
    let mut s = Shell::new(Format::Ncid);
    s.feed_at(0, b"CID: *NMBR*13812345678*NAME*A*\r\n");
    s.feed_at(1000, b"CID: *NMBR*13812345678*NAME*A*\r\n");
    s.feed_at(2000, b"CID: *NMBR*13900000000*NAME*B*\r\n");
    let ev = s.events();
    assert_eq!(ev.len(), 3, "{ev:?}");
    assert_eq!(ev[1], ended("phone-1-1", None));
    assert!(matches!(&ev[2], Event::CallRinging { call_id, .. } if call_id == "phone-1-2"));
}

#[test]
fn auto_detects_each_format() {
    let cases: Vec<(Vec<u8>, Format)> = vec![
        (MODEM_TRANSCRIPT.to_vec(), Format::Modem),
        (with_preamble(&MDMF_EXAMPLE), Format::Mdmf),
        (SDMF_EXAMPLE.to_vec(), Format::Sdmf),
        (b"A13812345678C".to_vec(), Format::Dtmf),
        (b"13812345678#".to_vec(), Format::Dtmf),
        (
            b"CID: *DATE*05112002*TIME*1525*LINE*1*NMBR*4075555000*MESG*NONE*NAME*CALL*\r\n"
                .to_vec(),
            Format::Ncid,
        ),
        (
            b"###DATE08082225...NMBR14075551212...NAMEJOHN+++\r".to_vec(),
            Format::Ncid,
        ),
    ];
    for (bytes, format) in cases {
        assert_eq!(detect_format(&bytes), Some(format), "{bytes:?}");
        let mut s = Shell::new(Format::Auto);
        s.feed(&bytes);
        s.advance(FLUSH_MS);
        assert_eq!(s.p.detected(), Some(format));
        assert_eq!(s.events().len(), 1, "{format:?}: {:?}", s.actions);
    }
    assert_eq!(detect_format(b"hello world\r\n"), None);
    assert_eq!(detect_format(&[0x55; 20]), None);
}

#[test]
fn events_serialize_as_the_contract_says() {
    let ev = ringing("phone-1-1", "13812345678", None, Some("11-24 10:15"));
    assert_eq!(
        serde_json::to_string(&ev).unwrap_or_default(),
        r#"{"type":"call.ringing","data":{"call_id":"phone-1-1","number":"13812345678","normalized":"+8613812345678","box_time":"11-24 10:15"}}"#
    );
    assert_eq!(
        serde_json::to_string(&ended("c1", None)).unwrap_or_default(),
        r#"{"type":"call.ended","data":{"call_id":"c1","answered":null}}"#
    );
    let popup = Event::CallPopup {
        call_id: "c1".into(),
        number: "13812345678".into(),
        member: None,
        source: "none".into(),
        took_ms: 3,
    };
    assert_eq!(popup.kind(), "call.popup");
    assert_eq!(
        serde_json::to_string(&popup).unwrap_or_default(),
        r#"{"type":"call.popup","data":{"call_id":"c1","number":"13812345678","member":null,"source":"none","took_ms":3}}"#
    );
    let formats: Vec<Format> =
        serde_json::from_str(r#"["auto","modem","mdmf","sdmf","etsi","dtmf","ncid","hid"]"#)
            .unwrap_or_default();
    assert_eq!(formats.len(), 8);
    assert!(serde_json::from_str::<Format>(r#""MODEM""#).is_err());
}

#[test]
fn no_panic_and_one_ringing_per_call_on_arbitrary_bytes() {
    // A small deterministic generator stands in for the fuzzer in unit tests.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let pieces: [&[u8]; 24] = [
        MODEM_TRANSCRIPT,
        &MDMF_EXAMPLE,
        &SDMF_EXAMPLE,
        b"RING\r\n",
        b"A13812345678C",
        b"D1#",
        b"CIDINFO: *LINE*1*RING*-2*\r\n",
        b"CID: *NMBR*13900000000*\r\n",
        b"###DATE08082225...NMBR14075551212...NAMEJOHN+++\r",
        &[0x55, 0x55, 0xFF],
        b"NMBR = 1\r\n",
        &[0x80, 0x05, 0x02],
        b"^^<U>\x00\x01\x0d\x0a\xff\x24<S>\x10\x20\x5e\x5e\x00\x7f$01 R             09/26 11:28:03",
        b"^^<U>\x00\x01\x0d\x0a\xff\x24<S>\x10\x20\x5e\x5e\x00\x7f$01 I S 0000 G A1 09/26 11:28 AM 13812345678   W",
        b"^^<U>\x00\x01\x0d\x0a\xff\x24<S>\x10\x20\x5e\x5e\x00\x7f$01 I E 0000 G A1 09/26 11:28 AM 13812345678   W",
        b"^^<U>\x00\x01\x0d\x0a\xff\x24<S>\x10\x20\x5e\x5e\x00\x7f$01 F             09/26 11:28:10",
        b"^^<U>\x00\x01\x0d\x0a\xff\x24<S>\x10\x20\x5e\x5e\x00\x7f$02 I S 0000 G A1 09/26 11:28 AM 13900000000   L",
        b"^^<U>\x00\x01\x0d\x0a\xff\x24<S>\x10\x20\x5e\x5e\x00\x7f$03 O S 0000 G A0 09/26 11:28 AM 13900000000",
        b"^^<U>\x00\x01\x0d\x0a\xff\x24<S>\x10\x20\x5e\x5e\x00\x7f$02 F             09/26 11:28:10",
        b"CIDINFO: *LINE*2*RING*-1*\r\n",
        b"CID: *LINE*2*NMBR*13700000000*\r\n",
        b"OUT: *LINE*3*NMBR*13700000000*\r\n",
        b"03      9/03      2:23 PM       407-555-1212           WIRELESS CALLER\r\n",
        b"DATE TIME=11/24 22:10\r\nNBR=0632727751\r\n",
    ];
    for format in [
        Format::Auto,
        Format::Modem,
        Format::Mdmf,
        Format::Dtmf,
        Format::Ncid,
        Format::Hid,
        Format::Whozz,
    ] {
        let mut p = CallerId::new(Options {
            format,
            hid_layout: Some(example_layout()),
            ..Options::default()
        });
        let mut out = Vec::new();
        let mut now = 0u64;
        for _ in 0..3000 {
            let r = next();
            let bytes: Vec<u8> = if r % 3 == 0 {
                (0..r % 17).map(|_| next() as u8).collect()
            } else {
                pieces
                    .get((r >> 8) as usize % pieces.len())
                    .map(|p| p.to_vec())
                    .unwrap_or_default()
            };
            now += (r >> 16) % 3000;
            p.handle_bytes(Instant(now), &bytes, &mut out);
            if r % 5 == 0 {
                p.handle_timer(Instant(now + (r >> 20) % 9000), &mut out);
            }
        }
        for i in 1..=4 {
            p.handle_timer(Instant(now + i * 100_000), &mut out);
        }
        let (rung, over) = check_call_life(&out).unwrap_or_else(|e| panic!("{format:?}: {e}"));
        assert_eq!(rung, over, "{format:?}: every call ends");
        assert!(p.calls_in_progress().is_empty());
    }
}
