//! The daemon's own recent log lines, in memory, for HQ's `log.tail`: a
//! second output of the same log (same filter, so the same lines the journal
//! gets, which by policy never hold card, ID or token data), bounded so a
//! chatty level cannot grow the daemon.

use std::collections::VecDeque;
use std::io;
use std::sync::Mutex;

/// Lines kept.
pub const KEEP: usize = 2000;
/// A line longer than this is cut (a log line is normally under 300 bytes).
const MAX_LINE: usize = 2048;

/// The ring every log line is copied into (`main` installs the writer).
pub static RING: Ring = Ring {
    lines: Mutex::new(VecDeque::new()),
};

pub struct Ring {
    lines: Mutex<VecDeque<String>>,
}

impl Ring {
    fn push(&self, line: &str) {
        let mut cut = line.trim_end().to_owned();
        if cut.len() > MAX_LINE {
            let mut at = MAX_LINE;
            while !cut.is_char_boundary(at) {
                at -= 1;
            }
            cut.truncate(at);
        }
        let mut lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        if lines.len() == KEEP {
            lines.pop_front();
        }
        lines.push_back(cut);
    }

    /// The last `n` lines, oldest first.
    pub fn tail(&self, n: usize) -> Vec<String> {
        let lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        let skip = lines.len().saturating_sub(n);
        lines.iter().skip(skip).cloned().collect()
    }
}

/// One log event's text, copied into [`RING`] when the formatter is done.
pub struct RingWriter(Vec<u8>);

impl io::Write for RingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for RingWriter {
    fn drop(&mut self) {
        for line in String::from_utf8_lossy(&self.0).lines() {
            if !line.trim().is_empty() {
                RING.push(line);
            }
        }
    }
}

/// For `tracing_subscriber::fmt::layer().with_writer(MakeRing)`.
#[derive(Clone, Copy, Default)]
pub struct MakeRing;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for MakeRing {
    type Writer = RingWriter;
    fn make_writer(&'a self) -> RingWriter {
        RingWriter(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_keeps_the_newest_lines_and_cuts_long_ones() {
        let ring = Ring {
            lines: Mutex::new(VecDeque::new()),
        };
        for i in 0..KEEP + 5 {
            ring.push(&format!("line {i}\n"));
        }
        let t = ring.tail(3);
        assert_eq!(
            t,
            [KEEP + 2, KEEP + 3, KEEP + 4].map(|i| format!("line {i}"))
        );
        assert_eq!(ring.tail(usize::MAX).len(), KEEP);
        ring.push(&"é".repeat(MAX_LINE));
        assert!(ring.tail(1)[0].len() <= MAX_LINE);
    }
}
