use super::*;

fn weights(out: &[Action]) -> Vec<Weight> {
    out.iter()
        .filter_map(|a| match a {
            Action::Emit(Event::ScaleWeight(w)) => Some(w.clone()),
            _ => None,
        })
        .collect()
}

fn w(grams: i64, stable: bool) -> Weight {
    Weight {
        grams,
        stable,
        negative: grams < 0,
        ..Weight::default()
    }
}

#[test]
fn units_convert_exactly_and_round_half_away_from_zero() {
    assert_eq!(to_grams(1234, -3, Unit::Kilogram), Some(1234));
    assert_eq!(to_grams(1, 0, Unit::Pound), Some(454));
    assert_eq!(to_grams(-5, -1, Unit::Gram), Some(-1));
    assert_eq!(to_grams(16, 0, Unit::Ounce), Some(454));
    assert_eq!(to_grams(1500, 0, Unit::Milligram), Some(2));
    assert_eq!(to_grams(1, 10, Unit::Gram), None);
    assert_eq!(parse_decimal(" +  1.234"), Some((1234, -3)));
    assert_eq!(parse_decimal("-0.05"), Some((-5, -2)));
    for bad in ["", ".", "1.2.3", "1e3", "1234567890123", "- -1"] {
        assert_eq!(parse_decimal(bad), None, "{bad}");
    }
}

#[test]
fn toledo_polls_reads_weights_and_status_and_faults_when_silent() {
    let mut s = Scale::new(Options::new(Kind::Toledo));
    let mut out = Vec::new();
    s.handle_open(Instant(0), &mut out);
    assert_eq!(
        out,
        vec![Action::Write(b"W".to_vec()), Action::SetTimer(Instant(200))]
    );
    out.clear();
    s.handle_bytes(Instant(50), b"\x02  1.234\r", &mut out);
    assert_eq!(weights(&out), vec![w(1234, true)]);
    out.clear();
    // The same weight again is not news.
    s.handle_bytes(Instant(250), b"\x02  1.234\r", &mut out);
    assert!(weights(&out).is_empty());
    // Moving: `?` with bit 0; the last weight stands, not stable.
    s.handle_bytes(Instant(450), b"\x02?\x21\r", &mut out);
    let moving = weights(&out);
    assert_eq!(moving.len(), 1);
    assert!(!moving[0].stable && moving[0].net && moving[0].grams == 1234);
    out.clear();
    s.handle_bytes(Instant(650), b"\x020.500N\r", &mut out);
    assert_eq!(
        weights(&out),
        vec![Weight {
            net: true,
            ..w(500, true)
        }]
    );
    out.clear();
    // A status with no flag (the answer to T or Z) is no reading.
    s.handle_bytes(Instant(700), b"\x02?\x40\r", &mut out);
    assert!(weights(&out).is_empty());
    // Under zero and over capacity are flags.
    s.handle_bytes(Instant(850), b"\x02?\x24\r", &mut out);
    assert!(weights(&out)[0].negative && weights(&out)[0].grams == 0);
    out.clear();
    s.handle_bytes(Instant(1000), b"\x02?\x22\r", &mut out);
    assert!(weights(&out)[0].overload);
    out.clear();
    // Silence: polls go on, and after 2 s the scale is a fault, once.
    s.handle_timer(Instant(3000), &mut out);
    assert!(out.contains(&Action::Write(b"W".to_vec())));
    assert!(out.iter().any(|a| matches!(a, Action::Fault(_))));
    out.clear();
    s.handle_timer(Instant(3200), &mut out);
    assert!(!out.iter().any(|a| matches!(a, Action::Fault(_))));
    s.handle_bytes(Instant(3300), b"\x02  0.000\r", &mut out);
    assert!(out.contains(&Action::Recovered));
    out.clear();
    assert!(s.request_tare(Instant(3400), &mut out));
    assert!(s.request_zero(Instant(3400), &mut out));
    assert_eq!(
        out,
        vec![Action::Write(b"T".to_vec()), Action::Write(b"Z".to_vec())]
    );
}

#[test]
fn continuous_publishes_stable_changes_and_rate_limits_motion() {
    let mut s = Scale::new(Options::new(Kind::Continuous));
    let mut out = Vec::new();
    s.handle_open(Instant(0), &mut out);
    assert_eq!(out, vec![Action::SetTimer(Instant(1500))]);
    out.clear();
    let mut t = 0;
    let mut feed = |s: &mut Scale, frame: &str, out: &mut Vec<Action>| {
        t += 20;
        s.handle_bytes(Instant(t), frame.as_bytes(), out);
    };
    for f in [
        "US,GS,+  0.100kg\r\n",
        "US,GS,+  0.300kg\r\n",
        "US,GS,+  0.900kg\r\n",
    ] {
        feed(&mut s, f, &mut out);
    }
    // Three frames in 60 ms: one unstable event.
    assert_eq!(weights(&out), vec![w(100, false)]);
    out.clear();
    for _ in 0..5 {
        feed(&mut s, "ST,GS,+  1.000kg\r\n", &mut out);
    }
    assert_eq!(weights(&out), vec![w(1000, true)]);
    out.clear();
    feed(&mut s, "ST,NT,-  0.020kg\r\n", &mut out);
    feed(&mut s, "ST,GS,+   250 g\r\n", &mut out);
    feed(&mut s, "ST,GS,+ 1.00lb\r\n", &mut out);
    feed(&mut s, "ST,GS    20.7g\r\n", &mut out);
    feed(&mut s, "OL,GS,+ -----kg\r\n", &mut out);
    let got = weights(&out);
    assert_eq!(
        got[..4],
        [
            Weight {
                net: true,
                ..w(-20, true)
            },
            w(250, true),
            w(454, true),
            w(21, true)
        ]
    );
    assert!(got[4].overload && !got[4].stable);
    out.clear();
    feed(&mut s, "XX,GS,+ 1kg\r\n", &mut out);
    feed(&mut s, "ST,GS,+ 1 stone\r\n", &mut out);
    assert_eq!(
        out.iter()
            .filter(|a| matches!(a, Action::Malformed(_)))
            .count(),
        2
    );
    // A streaming scale silent for 3 s is a fault.
    out.clear();
    s.handle_timer(Instant(t + 3000), &mut out);
    assert!(out.iter().any(|a| matches!(a, Action::Fault(_))));
    assert!(
        !s.request_tare(Instant(0), &mut out),
        "no command configured"
    );
}

#[test]
fn hid_reports_decode_status_units_and_faults() {
    let mut s = Scale::new(Options::new(Kind::Hid));
    let mut out = Vec::new();
    s.handle_open(Instant(0), &mut out);
    assert!(out.is_empty(), "HID scales are not polled");
    // DYMO M25 style: stable, grams, exponent 0, 0x01F4 = 500 g.
    s.handle_bytes(Instant(10), &[3, 4, 2, 0, 0xF4, 0x01], &mut out);
    // 12.5 oz in tenths: exponent -1.
    s.handle_bytes(Instant(20), &[3, 4, 11, 0xFF, 125, 0], &mut out);
    s.handle_bytes(Instant(30), &[3, 2, 2, 0, 0, 0], &mut out);
    s.handle_bytes(Instant(40), &[3, 5, 2, 0, 7, 0], &mut out);
    assert_eq!(
        weights(&out),
        vec![w(500, true), w(354, true), w(0, true), w(-7, false)]
    );
    out.clear();
    s.handle_bytes(Instant(50), &[3, 8, 2, 0, 0, 0], &mut out);
    assert!(matches!(&out[..], [Action::Fault(why)] if why.contains("re-zero")));
    out.clear();
    s.handle_bytes(Instant(60), &[3, 4, 2, 0, 1, 0], &mut out);
    assert_eq!(out[0], Action::Recovered);
    out.clear();
    s.handle_bytes(Instant(70), &[4, 1, 2], &mut out);
    assert!(out.is_empty(), "other reports are not weight data");
    for bad in [&[3u8, 4, 2][..], &[3, 4, 99, 0, 1, 0], &[3, 42, 2, 0, 1, 0]] {
        s.handle_bytes(Instant(80), bad, &mut out);
    }
    assert_eq!(out.len(), 3);
    assert!(out.iter().all(|a| matches!(a, Action::Malformed(_))));
}

#[test]
fn aclas_frames_of_any_length_are_errors_not_panics() {
    for n in 0..40 {
        let mut f = vec![
            0x01, 0x02, b'S', b' ', b'0', b'0', b'3', b'0', b'3', b'0', b'4',
        ];
        f.resize(n, 0x03);
        assert!(aclas::decode(&f).is_err(), "{n}");
    }
}

#[test]
fn no_input_panics_or_grows_without_bound() {
    for kind in [Kind::Toledo, Kind::Continuous, Kind::Aclas, Kind::Hid] {
        let mut s = Scale::new(Options::new(kind));
        let mut out = Vec::new();
        let junk: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
        s.handle_bytes(Instant(0), &junk, &mut out);
        s.handle_bytes(Instant(0), &[0x02; 500], &mut out);
        assert!(out.len() < 400, "{kind:?}: {}", out.len());
    }
}

/// An OS2 frame as the manual lays it out, with its checksum.
fn os2(flag: u8, sign: u8, weight: &[u8; 6], unit: &[u8; 2], flag2: u8) -> Vec<u8> {
    let mut f = vec![0x01, 0x02, flag, sign];
    f.extend(weight);
    f.extend(unit);
    let bcc = f.iter().fold(0u8, |a, b| a ^ b);
    f.extend([bcc, 0x03, 0x04, flag2]);
    f
}

#[test]
fn aclas_frames_decode_across_reads_and_resync_after_noise() {
    let mut s = Scale::new(Options::new(Kind::Aclas));
    let mut out = Vec::new();
    let a = os2(b'S', b' ', b" 1.235", b"kg", 0);
    let b = os2(b'U', b' ', b" 1.300", b"kg", 0);
    let c = os2(b'S', b'-', b" 0.010", b"kg", 0x20);
    let mut stream = vec![0xFF, 0x01, 0x00];
    stream.extend(&a);
    stream.extend(&b);
    stream.extend(&c);
    for chunk in stream.chunks(5) {
        s.handle_bytes(Instant(0), chunk, &mut out);
    }
    assert_eq!(
        weights(&out),
        vec![
            w(1235, true),
            w(1300, false),
            Weight {
                net: true,
                ..w(-10, true)
            }
        ]
    );
    out.clear();
    let mut bad = a.clone();
    bad[12] ^= 0x55;
    s.handle_bytes(Instant(500), &bad, &mut out);
    let over = os2(b'F', b' ', b"      ", b"kg", 0x40);
    s.handle_bytes(Instant(900), &over, &mut out);
    assert!(matches!(&out[0], Action::Malformed(m) if m.contains("checksum")));
    assert!(weights(&out)[0].overload);
}
