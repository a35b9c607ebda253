//! `passthrough`: raw bytes both ways, for devices posbridge has no protocol
//! for (a pole display on a COM port, an unusual scale). What the device
//! sends becomes `passthrough.data` events, cut only where reads cut them;
//! what pages send (QZ Tray's `serial.sendData`) is written as it is.

use crate::{Action, Event, Instant, Protocol};
use base64::Engine;

/// Largest `passthrough.data` payload; a longer read is split.
pub const MAX_CHUNK: usize = 4096;

/// Emits every read as it came.
#[derive(Debug, Default)]
pub struct Passthrough;

impl Protocol for Passthrough {
    fn handle_bytes(&mut self, _now: Instant, bytes: &[u8], out: &mut Vec<Action>) {
        for chunk in bytes.chunks(MAX_CHUNK) {
            out.push(Action::Emit(Event::PassthroughData {
                data: base64::engine::general_purpose::STANDARD.encode(chunk),
                len: chunk.len(),
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(out: &[Action]) -> Vec<(String, usize)> {
        out.iter()
            .filter_map(|a| match a {
                Action::Emit(Event::PassthroughData { data, len }) => Some((data.clone(), *len)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn each_read_is_one_event_and_long_reads_are_split() {
        let mut p = Passthrough;
        let mut out = Vec::new();
        p.handle_bytes(Instant(0), b"ST,GS,+  1.234kg\r\n", &mut out);
        assert_eq!(
            data(&out),
            vec![("U1QsR1MsKyAgMS4yMzRrZw0K".to_owned(), 18)]
        );
        out.clear();
        p.handle_bytes(Instant(1), &[0u8; MAX_CHUNK + 1], &mut out);
        let lens: Vec<usize> = data(&out).iter().map(|d| d.1).collect();
        assert_eq!(lens, vec![MAX_CHUNK, 1]);
        out.clear();
        p.handle_bytes(Instant(2), b"", &mut out);
        assert!(out.is_empty());
    }
}
