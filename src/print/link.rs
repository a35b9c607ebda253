//! The byte pipes to a printer: TCP (port 9100 "raw" printing), serial,
//! a USB printer-class node (`/dev/usb/lpN`), a plain file, and a simulated
//! label printer. OS I/O only; the status bytes are decoded by the drivers
//! crate (`StatusReader` for ESC/POS, `tspl::status` for TSPL).

use crate::config::DeviceConfig;
use crate::transport::OpenError;
use futures_util::FutureExt;
use posbridge_drivers::escpos::{status_queries, PrinterStatus, StatusReader};
use posbridge_drivers::tspl;
use std::io;
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An open link to one printer.
pub enum Link {
    Tcp(tokio::net::TcpStream),
    Serial(tokio_serial::SerialStream),
    /// The kernel's usblp node, non-blocking under the runtime's reactor.
    Usb(AsyncFd<std::fs::File>),
    /// Bytes are appended to the file; no status (it is always ready).
    File(PathBuf),
    /// A simulated printer (`transport = "sim"`): always ready, takes every byte.
    Sim,
}

/// How a printer is asked its status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// ESC/POS: `DLE EOT 1`, `2`, `4`, one byte each.
    EscPos,
    /// TSPL: `ESC ! ?`, one byte.
    Tspl,
}

impl Dialect {
    /// The query, as a log or `last_error` names it.
    pub fn query_name(self) -> &'static str {
        match self {
            Dialect::EscPos => "DLE EOT",
            Dialect::Tspl => "ESC ! ?",
        }
    }
}

fn path(cfg: &DeviceConfig) -> &str {
    cfg.path.as_deref().unwrap_or_default()
}

impl Link {
    /// Opens the configured transport. `absent` errors (nothing listening,
    /// unplugged) show the device as disconnected; the rest as error.
    pub async fn open(cfg: &DeviceConfig) -> Result<Link, OpenError> {
        use crate::config::Transport as T;
        use crate::transport;
        match cfg.transport() {
            T::Tcp => transport::connect_tcp(cfg.address.as_deref().unwrap_or_default())
                .await
                .map(Link::Tcp),
            T::Serial => transport::open_serial(cfg).await.map(Link::Serial),
            T::Usb => {
                let (file, p) = transport::open_usblp(cfg).await?;
                // SAFETY: the File owns its descriptor and lives inside the
                // AsyncFd until it is dropped; nothing else closes or replaces it.
                unsafe { AsyncFd::register(file) }
                    .map(Link::Usb)
                    .map_err(|e| OpenError::from(format!("{p}: cannot be polled: {e}")))
            }
            T::File => {
                let p = PathBuf::from(path(cfg));
                // Checked and opened here once so a bad path shows on the device at start.
                transport::open_append(&p).map_err(OpenError::from)?;
                Ok(Link::File(p))
            }
            T::Sim => Ok(Link::Sim),
            t => Err(OpenError::from(format!(
                "transport {:?} is not a printer transport",
                t.name()
            ))),
        }
    }

    /// Whether the link can carry `DLE EOT` status answers back.
    pub fn has_status(&self) -> bool {
        !matches!(self, Link::File(_) | Link::Sim)
    }

    /// Whether to keep the link open while the queue is empty. A network
    /// printer usually takes one connection at a time, so it is released for
    /// other senders; a tty or usblp node is ours alone anyway.
    pub fn keep_when_idle(&self) -> bool {
        matches!(self, Link::Serial(_) | Link::Usb(_) | Link::Sim)
    }

    async fn read_some(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Link::Tcp(s) => s.read(buf).await,
            Link::Serial(s) => s.read(buf).await,
            Link::Usb(fd) => loop {
                let mut guard = fd.readable().await?;
                match guard.try_io(|f| io::Read::read(&mut f.get_ref(), buf)) {
                    Ok(r) => return r,
                    Err(_would_block) => continue,
                }
            },
            Link::File(_) | Link::Sim => std::future::pending().await,
        }
    }

    async fn write_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Link::Tcp(s) => {
                s.write_all(bytes).await?;
                s.flush().await
            }
            // No flush: on a tty it is tcdrain(), a blocking syscall that a
            // printer holding flow control (paper out) would hang a runtime
            // thread in. The bytes are with the kernel, as they are for TCP.
            Link::Serial(s) => s.write_all(bytes).await,
            Link::Usb(fd) => {
                let mut rest = bytes;
                while !rest.is_empty() {
                    let mut guard = fd.writable().await?;
                    match guard.try_io(|f| io::Write::write(&mut f.get_ref(), rest)) {
                        Ok(Ok(0)) => {
                            return Err(io::Error::new(
                                io::ErrorKind::WriteZero,
                                "the printer took no bytes",
                            ))
                        }
                        Ok(Ok(n)) => rest = rest.get(n..).unwrap_or_default(),
                        Ok(Err(e)) => return Err(e),
                        Err(_would_block) => continue,
                    }
                }
                Ok(())
            }
            Link::File(p) => {
                let p = p.clone();
                let bytes = bytes.to_vec();
                // One write of the whole job on an O_APPEND file: jobs never interleave.
                tokio::task::spawn_blocking(move || {
                    let mut f = crate::transport::open_append(&p).map_err(io::Error::other)?;
                    io::Write::write_all(&mut f, &bytes)?;
                    f.sync_data()
                })
                .await
                .map_err(io::Error::other)?
            }
            Link::Sim => {
                tracing::debug!(bytes = bytes.len(), "simulated printer took a job");
                Ok(())
            }
        }
    }

    /// Sends every byte, within `limit`.
    pub async fn write_all(&mut self, bytes: &[u8], limit: Duration) -> io::Result<()> {
        tokio::time::timeout(limit, self.write_raw(bytes))
            .await
            .map_err(|_| {
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("the printer took no more bytes for {} s", limit.as_secs()),
                )
            })?
    }

    /// Drops bytes already waiting (a late answer to an earlier query, or
    /// automatic status the printer sends on its own), so they cannot be
    /// read as the answer to the next query. `Err` when the link is gone.
    fn drain(&mut self) -> io::Result<()> {
        let mut buf = [0u8; 256];
        for _ in 0..64 {
            match self.read_some(&mut buf).now_or_never() {
                None => return Ok(()),
                Some(Ok(0)) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the printer closed the connection",
                    ))
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Some(Err(e)) => return Err(e),
            }
        }
        Ok(())
    }

    /// Lets go of the link after a job. A TCP socket closed with unread input
    /// (status the printer volunteered) is reset, and a reset throws away
    /// whatever of the job is still in our send buffer; so: read what is
    /// there, send FIN after the job, and wait briefly for the printer to
    /// close its side before dropping the socket.
    pub async fn release(mut self) {
        if let Link::Tcp(s) = &mut self {
            let _ = s.shutdown().await;
            let mut buf = [0u8; 256];
            let _ = tokio::time::timeout(Duration::from_millis(500), async {
                while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
            })
            .await;
        }
    }

    /// Asks the status — `DLE EOT 1`, `2` and `4`, or TSPL's `ESC ! ?` — and
    /// waits up to `wait` for the answer. `Ok(None)`: no (complete) answer in
    /// time — the printer is off, or does not answer status queries. Bytes that
    /// cannot be ESC/POS status answers are skipped.
    pub async fn status(
        &mut self,
        wait: Duration,
        dialect: Dialect,
    ) -> io::Result<Option<PrinterStatus>> {
        if !self.has_status() {
            return Ok(None);
        }
        self.drain()?;
        let deadline = tokio::time::Instant::now() + wait;
        let escpos = status_queries();
        let query: &[u8] = match dialect {
            Dialect::EscPos => &escpos,
            Dialect::Tspl => &tspl::STATUS_QUERY,
        };
        match tokio::time::timeout_at(deadline, self.write_raw(query)).await {
            Ok(r) => r?,
            Err(_) => return Ok(None),
        }
        let mut reader = StatusReader::new();
        let mut buf = [0u8; 64];
        loop {
            let n = match tokio::time::timeout_at(deadline, self.read_some(&mut buf)).await {
                Err(_) => return Ok(None),
                Ok(Err(e)) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Ok(r) => r?,
            };
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the printer closed the connection",
                ));
            }
            for &b in buf.get(..n).unwrap_or_default() {
                if dialect == Dialect::Tspl {
                    return Ok(Some(tspl::status(b)));
                }
                if let Ok(Some(s)) = reader.push(b) {
                    return Ok(Some(s));
                }
            }
        }
    }
}
