//! License dongles: `dongle.attached` / `dongle.detached`, and an optional
//! challenge-response check behind `licensed`.
//!
//! The check is a HID feature-report exchange, written as byte frames so it
//! stays sans-IO: the protocol emits [`Action::Write`] with a request frame
//! (`report_id` then the challenge, zero-padded to `report_len`); the HID
//! link sends it as a feature report, reads the feature report back and hands
//! the reply to [`Protocol::handle_bytes`] (`report_id` then the response).
//!
//! What counts as the right answer is data, not code, since every vendor's
//! dongle answers differently and none documents it:
//! - [`Check::Recorded`]: a fixed challenge and the response a genuine dongle
//!   gave to it (captured once on a known-good dongle). Replayable, so it
//!   proves the model is there rather than the licence, but works with any
//!   dongle that answers deterministically.
//! - [`Check::Hmac`]: for dongles programmed with a shared key (e.g. a
//!   vendor's HMAC slot): a fresh challenge per plug-in, derived from a seed
//!   the daemon supplies, and the expected answer HMAC-SHA256(key, challenge)
//!   truncated to `response_len` bytes. Not replayable.
//!
//! `licensed` is `true`/`false` after a check, `null` when none is configured.

use crate::{Action, Event, Instant, Protocol};

/// What the check compares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Check {
    Recorded {
        challenge: Vec<u8>,
        response: Vec<u8>,
    },
    Hmac {
        key: Vec<u8>,
        challenge_len: usize,
        response_len: usize,
    },
}

/// One dongle's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// 4 lower-case hex digits, as in the event.
    pub vid: String,
    pub pid: String,
    pub serial: Option<String>,
    pub check: Option<Check>,
    /// Feature report id used for both directions.
    pub report_id: u8,
    /// Request frames are padded to this many bytes (after the id).
    pub report_len: usize,
    /// No answer within this long counts as not licensed.
    pub timeout_ms: u64,
    /// Seed for HMAC challenges (the daemon passes random bytes).
    pub seed: [u8; 16],
}

impl Default for Options {
    fn default() -> Self {
        Options {
            vid: String::new(),
            pid: String::new(),
            serial: None,
            check: None,
            report_id: 0,
            report_len: 32,
            timeout_ms: 2000,
            seed: [0; 16],
        }
    }
}

/// Largest feature report handled (the HID spec's limit for full-speed is far lower).
pub const MAX_REPORT: usize = 4096;

pub struct Dongle {
    opts: Options,
    counter: u64,
    /// The expected response while an exchange is outstanding.
    waiting: Option<Vec<u8>>,
    licensed: Option<bool>,
    attached: bool,
}

impl Dongle {
    pub fn new(opts: Options) -> Dongle {
        Dongle {
            opts,
            counter: 0,
            waiting: None,
            licensed: None,
            attached: false,
        }
    }

    /// The challenge for exchange number `n` (HMAC mode).
    fn challenge(&self, n: u64, len: usize) -> Vec<u8> {
        let mut input = self.opts.seed.to_vec();
        input.extend_from_slice(&n.to_le_bytes());
        let mut out = Vec::with_capacity(len);
        let mut block = 0u32;
        while out.len() < len {
            let mut b = input.clone();
            b.extend_from_slice(&block.to_le_bytes());
            out.extend_from_slice(&sha256(&b));
            block = block.wrapping_add(1);
        }
        out.truncate(len);
        out
    }

    /// The request frame: report id, challenge, zero padding.
    pub fn request_frame(&self, challenge: &[u8]) -> Vec<u8> {
        let mut f = Vec::with_capacity(1 + self.opts.report_len.max(challenge.len()));
        f.push(self.opts.report_id);
        f.extend_from_slice(challenge);
        while f.len() < 1 + self.opts.report_len {
            f.push(0);
        }
        f
    }

    fn attached_event(&self) -> Event {
        Event::DongleAttached {
            vid: self.opts.vid.clone(),
            pid: self.opts.pid.clone(),
            serial: self.opts.serial.clone(),
            licensed: self.licensed,
        }
    }

    fn finish(&mut self, licensed: bool, out: &mut Vec<Action>) {
        self.waiting = None;
        self.licensed = Some(licensed);
        self.attached = true;
        out.push(Action::Emit(self.attached_event()));
    }
}

/// Whether a reply frame carries the expected response.
pub fn verify(report_id: u8, reply: &[u8], expected: &[u8]) -> bool {
    let body = match reply.split_first() {
        Some((&id, rest)) if id == report_id => rest,
        _ => return false,
    };
    match body.get(..expected.len()) {
        Some(got) => constant_time_eq(got, expected),
        None => false,
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Protocol for Dongle {
    fn handle_open(&mut self, now: Instant, out: &mut Vec<Action>) {
        self.licensed = None;
        self.attached = false;
        self.waiting = None;
        let (challenge, expected) = match &self.opts.check {
            None => {
                self.attached = true;
                out.push(Action::Emit(self.attached_event()));
                return;
            }
            Some(Check::Recorded {
                challenge,
                response,
            }) => (challenge.clone(), response.clone()),
            Some(Check::Hmac {
                key,
                challenge_len,
                response_len,
            }) => {
                let c = self.challenge(self.counter, *challenge_len);
                let mut mac = hmac_sha256(key, &c).to_vec();
                mac.truncate(*response_len);
                (c, mac)
            }
        };
        self.counter = self.counter.wrapping_add(1);
        self.waiting = Some(expected);
        out.push(Action::Write(self.request_frame(&challenge)));
        out.push(Action::SetTimer(now.plus_ms(self.opts.timeout_ms)));
    }

    fn handle_bytes(&mut self, _now: Instant, bytes: &[u8], out: &mut Vec<Action>) {
        let Some(expected) = self.waiting.take() else {
            // Input reports some dongles send on their own mean nothing to us.
            return;
        };
        if bytes.len() > MAX_REPORT {
            out.push(Action::Malformed(format!(
                "dongle answered {} bytes; a feature report is at most {MAX_REPORT}",
                bytes.len()
            )));
            self.finish(false, out);
            return;
        }
        let ok = verify(self.opts.report_id, bytes, &expected);
        if !ok {
            out.push(Action::Malformed(
                "dongle answered the challenge wrongly: not licensed".into(),
            ));
        }
        self.finish(ok, out);
    }

    fn handle_timer(&mut self, _now: Instant, out: &mut Vec<Action>) {
        if self.waiting.is_some() {
            out.push(Action::Malformed(format!(
                "dongle did not answer the challenge within {} ms: not licensed",
                self.opts.timeout_ms
            )));
            self.finish(false, out);
        }
    }

    fn handle_close(&mut self, _now: Instant, out: &mut Vec<Action>) {
        // Only a dongle that was announced is announced gone.
        if std::mem::take(&mut self.attached) {
            out.push(Action::Emit(Event::DongleDetached {
                vid: self.opts.vid.clone(),
                pid: self.opts.pid.clone(),
                serial: self.opts.serial.clone(),
                licensed: self.licensed,
            }));
        }
        self.waiting = None;
    }
}

/// SHA-256 (FIPS 180-4). Small and dependency-free: the drivers crate is
/// fuzzed with sanitizers, where a C-backed crypto crate is a burden.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
        0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
        0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
        0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
        0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
        0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
        0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
        0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];
    let mut h: [u32; 8] = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
        0x5be0cd19,
    ];
    let mut msg = data.to_vec();
    let bit_len = (data.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bit_len.to_be_bytes());
    for chunk in msg.chunks_exact(64) {
        let mut w = [0u32; 64];
        for (i, word) in chunk.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..64 {
            let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
            let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16]
                .wrapping_add(s0)
                .wrapping_add(w[i - 7])
                .wrapping_add(s1);
        }
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut hh] = h;
        for i in 0..64 {
            let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
            let ch = (e & f) ^ (!e & g);
            let t1 = hh
                .wrapping_add(s1)
                .wrapping_add(ch)
                .wrapping_add(K[i])
                .wrapping_add(w[i]);
            let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
            let maj = (a & b) ^ (a & c) ^ (b & c);
            let t2 = s0.wrapping_add(maj);
            hh = g;
            g = f;
            f = e;
            e = d.wrapping_add(t1);
            d = c;
            c = b;
            b = a;
            a = t1.wrapping_add(t2);
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e, f, g, hh]) {
            *x = x.wrapping_add(y);
        }
    }
    let mut out = [0u8; 32];
    for (o, x) in out.chunks_exact_mut(4).zip(h) {
        o.copy_from_slice(&x.to_be_bytes());
    }
    out
}

/// HMAC-SHA256 (RFC 2104).
pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&sha256(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = k.iter().map(|b| b ^ 0x36).collect::<Vec<u8>>();
    inner.extend_from_slice(msg);
    let mut outer = k.iter().map(|b| b ^ 0x5c).collect::<Vec<u8>>();
    outer.extend_from_slice(&sha256(&inner));
    sha256(&outer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    }

    #[test]
    fn sha256_and_hmac_match_the_standard_vectors() {
        assert_eq!(
            sha256(b"abc").to_vec(),
            hex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        );
        assert_eq!(
            sha256(b"").to_vec(),
            hex("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        );
        // Two blocks (56 bytes of message).
        assert_eq!(
            sha256(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq").to_vec(),
            hex("248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        );
        // RFC 4231 test cases 1 and 2.
        assert_eq!(
            hmac_sha256(&[0x0b; 20], b"Hi There").to_vec(),
            hex("b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7")
        );
        assert_eq!(
            hmac_sha256(b"Jefe", b"what do ya want for nothing?").to_vec(),
            hex("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
        );
        // Case 6: a key longer than the block.
        assert_eq!(
            hmac_sha256(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )
            .to_vec(),
            hex("60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54")
        );
    }

    fn opts(check: Option<Check>) -> Options {
        Options {
            vid: "1bc0".into(),
            pid: "8101".into(),
            serial: Some("SS0001".into()),
            check,
            report_id: 2,
            report_len: 16,
            timeout_ms: 1000,
            seed: [7; 16],
        }
    }

    fn attached(out: &[Action]) -> Option<Option<bool>> {
        out.iter().find_map(|a| match a {
            Action::Emit(Event::DongleAttached { licensed, .. }) => Some(*licensed),
            _ => None,
        })
    }

    #[test]
    fn without_a_check_licensed_is_null_and_detach_follows_attach() {
        let mut d = Dongle::new(opts(None));
        let mut out = Vec::new();
        d.handle_open(Instant(0), &mut out);
        assert_eq!(attached(&out), Some(None));
        let json = match &out[0] {
            Action::Emit(e) => serde_json::to_value(e).expect("json"),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            json,
            serde_json::json!({"type": "dongle.attached", "data": {"vid": "1bc0", "pid": "8101", "serial": "SS0001", "licensed": null}})
        );
        out.clear();
        d.handle_close(Instant(5), &mut out);
        assert!(matches!(
            &out[..],
            [Action::Emit(Event::DongleDetached { licensed: None, .. })]
        ));
        // Closing twice announces nothing more.
        out.clear();
        d.handle_close(Instant(6), &mut out);
        assert!(out.is_empty());
    }

    // A recorded exchange: the request the daemon sends and the genuine reply.
    const RECORDED_CHALLENGE: &str = "a1b2c3d4";
    const RECORDED_REPLY: &str = "025ac9e1f00b7744aa0000000000000000";

    #[test]
    fn recorded_exchange_licenses_the_right_answer_only() {
        let check = Check::Recorded {
            challenge: hex(RECORDED_CHALLENGE),
            response: hex("5ac9e1f00b7744aa"),
        };
        let mut d = Dongle::new(opts(Some(check)));
        let mut out = Vec::new();
        d.handle_open(Instant(0), &mut out);
        assert_eq!(
            out,
            vec![
                Action::Write(hex("02a1b2c3d4000000000000000000000000")),
                Action::SetTimer(Instant(1000)),
            ]
        );
        out.clear();
        d.handle_bytes(Instant(10), &hex(RECORDED_REPLY), &mut out);
        assert_eq!(attached(&out), Some(Some(true)));

        // Replugged: a wrong answer is not licensed, and says why.
        out.clear();
        d.handle_open(Instant(2000), &mut out);
        out.clear();
        d.handle_bytes(Instant(2010), &hex("025ac9e1f00b7744ab"), &mut out);
        assert_eq!(attached(&out), Some(Some(false)));
        assert!(out
            .iter()
            .any(|a| matches!(a, Action::Malformed(m) if m.contains("wrongly"))));
        // Wrong report id, short reply.
        assert!(!verify(
            2,
            &hex("035ac9e1f00b7744aa"),
            &hex("5ac9e1f00b7744aa")
        ));
        assert!(!verify(2, &hex("025ac9"), &hex("5ac9e1f00b7744aa")));
        assert!(!verify(2, &[], &hex("5a")));
    }

    #[test]
    fn silence_is_not_licensed() {
        let check = Check::Recorded {
            challenge: vec![1],
            response: vec![2],
        };
        let mut d = Dongle::new(opts(Some(check)));
        let mut out = Vec::new();
        d.handle_open(Instant(0), &mut out);
        out.clear();
        d.handle_timer(Instant(1000), &mut out);
        assert_eq!(attached(&out), Some(Some(false)));
        // A late answer changes nothing.
        out.clear();
        d.handle_bytes(Instant(1100), &[2, 2], &mut out);
        assert!(out.is_empty());
        out.clear();
        d.handle_close(Instant(1200), &mut out);
        assert!(matches!(
            &out[..],
            [Action::Emit(Event::DongleDetached {
                licensed: Some(false),
                ..
            })]
        ));
    }

    #[test]
    fn hmac_challenges_are_fresh_and_checked_with_the_key() {
        let key = b"store-key-0123456789".to_vec();
        let check = Check::Hmac {
            key: key.clone(),
            challenge_len: 8,
            response_len: 16,
        };
        let mut d = Dongle::new(opts(Some(check)));
        let mut challenges = Vec::new();
        for i in 0..2u64 {
            let mut out = Vec::new();
            d.handle_open(Instant(i * 5000), &mut out);
            let Some(Action::Write(frame)) = out.first() else {
                panic!("no request: {out:?}");
            };
            assert_eq!(frame.len(), 17);
            assert_eq!(frame[0], 2);
            let challenge = frame[1..9].to_vec();
            // A genuine dongle: HMAC of the challenge with the shared key.
            let mut reply = vec![2];
            reply.extend_from_slice(&hmac_sha256(&key, &challenge)[..16]);
            out.clear();
            d.handle_bytes(Instant(i * 5000 + 5), &reply, &mut out);
            assert_eq!(attached(&out), Some(Some(true)));
            challenges.push(challenge);
        }
        assert_ne!(
            challenges[0], challenges[1],
            "a replayed answer must not pass"
        );
        // An answer made with another key fails.
        let mut out = Vec::new();
        d.handle_open(Instant(20_000), &mut out);
        let Some(Action::Write(frame)) = out.first().cloned() else {
            panic!("no request");
        };
        let mut reply = vec![2];
        reply.extend_from_slice(&hmac_sha256(b"other", &frame[1..9])[..16]);
        out.clear();
        d.handle_bytes(Instant(20_005), &reply, &mut out);
        assert_eq!(attached(&out), Some(Some(false)));
    }
}
