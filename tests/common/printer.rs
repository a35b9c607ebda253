//! A fake receipt printer for the tests: a network printer on 127.0.0.1
//! (port 9100 style: raw bytes in, one status byte out per `DLE EOT n`), or
//! one played on a pty master; it captures what the daemon sends and
//! answers status queries with chosen bytes.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Answers to `DLE EOT 1`, `2`, `4`.
pub const NORMAL: [u8; 3] = [0x12, 0x12, 0x12];
/// Paper end: `DLE EOT 4` bits 5 and 6, `DLE EOT 2` bit 5 (stopped by paper end).
pub const PAPER_OUT: [u8; 3] = [0x12, 0x32, 0x72];
/// Cover open: `DLE EOT 2` bit 2.
pub const COVER_OPEN: [u8; 3] = [0x12, 0x16, 0x12];

/// A network printer. Everything but status queries is captured; a status
/// query (`10 04 n`, which no golden receipt contains) is answered from
/// `answers` and left out of the capture, wherever a read splits it.
pub struct FakePrinter {
    pub addr: SocketAddr,
    data: Arc<Mutex<Vec<u8>>>,
    answers: Arc<Mutex<[u8; 3]>>,
    queries: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

pub type Capture = Arc<Mutex<Vec<u8>>>;
pub type Answers = Arc<Mutex<[u8; 3]>>;

/// Splits what a printer receives into captured bytes and status queries:
/// ESC/POS `DLE EOT n`, or with `tspl` TSPL's `ESC ! ?` (answered with `answers[0]`).
#[derive(Default)]
pub struct Parser {
    state: u8,
    tspl: bool,
}

impl Parser {
    /// Captures `bytes` into `data` and returns the answers to the queries in them.
    pub fn feed(
        &mut self,
        bytes: &[u8],
        data: &Mutex<Vec<u8>>,
        answers: &Mutex<[u8; 3]>,
        queries: &std::sync::atomic::AtomicUsize,
    ) -> Vec<u8> {
        if self.tspl {
            return self.feed_tspl(bytes, data, answers, queries);
        }
        let mut reply = Vec::new();
        let mut out = data.lock().expect("lock");
        for &b in bytes {
            match (self.state, b) {
                (0, 0x10) => self.state = 1,
                (0, _) => out.push(b),
                (1, 0x04) => self.state = 2,
                (1, _) => {
                    out.extend_from_slice(&[0x10, b]);
                    self.state = 0;
                }
                _ => {
                    let ans = *answers.lock().expect("lock");
                    let i = match b {
                        1 => Some(0),
                        2 => Some(1),
                        4 => Some(2),
                        _ => None,
                    };
                    if let Some(i) = i {
                        reply.push(ans[i]);
                        queries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    self.state = 0;
                }
            }
        }
        reply
    }
}

impl Parser {
    fn feed_tspl(
        &mut self,
        bytes: &[u8],
        data: &Mutex<Vec<u8>>,
        answers: &Mutex<[u8; 3]>,
        queries: &std::sync::atomic::AtomicUsize,
    ) -> Vec<u8> {
        let mut reply = Vec::new();
        let mut out = data.lock().expect("lock");
        for &b in bytes {
            match (self.state, b) {
                (0, 0x1b) => self.state = 1,
                (0, _) => out.push(b),
                (1, b'!') => self.state = 2,
                (1, _) => {
                    out.extend_from_slice(&[0x1b, b]);
                    self.state = 0;
                }
                (_, b'?') => {
                    reply.push(answers.lock().expect("lock")[0]);
                    queries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    self.state = 0;
                }
                (_, _) => {
                    out.extend_from_slice(&[0x1b, b'!', b]);
                    self.state = 0;
                }
            }
        }
        reply
    }
}

/// Plays a printer on a pty master in a thread: the daemon has the slave as
/// its serial port, or as a stand-in for /dev/usb/lp0 (both are character
/// devices it reads and writes). Returns the capture and the answers to set.
pub fn pty_printer(master: std::fs::File, answers: [u8; 3]) -> (Capture, Answers) {
    use std::io::{Read, Write};
    let data = Arc::new(Mutex::new(Vec::new()));
    let answers = Arc::new(Mutex::new(answers));
    let (d, a) = (data.clone(), answers.clone());
    std::thread::spawn(move || {
        let q = std::sync::atomic::AtomicUsize::new(0);
        let mut parser = Parser::default();
        let mut master = master;
        let mut buf = [0u8; 4096];
        while let Ok(n) = master.read(&mut buf) {
            if n == 0 {
                return;
            }
            let reply = parser.feed(&buf[..n], &d, &a, &q);
            if !reply.is_empty() && master.write_all(&reply).is_err() {
                return;
            }
        }
    });
    (data, answers)
}

impl FakePrinter {
    pub async fn start(answers: [u8; 3]) -> FakePrinter {
        Self::start_at("127.0.0.1:0".parse().expect("addr"), answers).await
    }

    /// A TSPL label printer answering `ESC ! ?` with `status`.
    pub async fn start_tspl(status: u8) -> FakePrinter {
        let addr = "127.0.0.1:0".parse().expect("addr");
        Self::listen(addr, [status, 0, 0], true).await
    }

    pub async fn start_at(addr: SocketAddr, answers: [u8; 3]) -> FakePrinter {
        Self::listen(addr, answers, false).await
    }

    async fn listen(addr: SocketAddr, answers: [u8; 3], tspl: bool) -> FakePrinter {
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let data = Arc::new(Mutex::new(Vec::new()));
        let answers = Arc::new(Mutex::new(answers));
        let queries = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (d, a, q) = (data.clone(), answers.clone(), queries.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let (d, a, q) = (d.clone(), a.clone(), q.clone());
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let mut parser = Parser {
                        tspl,
                        ..Parser::default()
                    };
                    loop {
                        let n = match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        let reply = parser.feed(&buf[..n], &d, &a, &q);
                        if !reply.is_empty() && s.write_all(&reply).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        FakePrinter {
            addr,
            data,
            answers,
            queries,
            task,
        }
    }

    pub fn set(&self, answers: [u8; 3]) {
        *self.answers.lock().expect("lock") = answers;
    }

    pub fn data(&self) -> Vec<u8> {
        self.data.lock().expect("lock").clone()
    }

    pub fn status_queries(&self) -> usize {
        self.queries.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for FakePrinter {
    fn drop(&mut self) {
        self.task.abort();
    }
}
