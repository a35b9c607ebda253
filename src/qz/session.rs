//! One qz-tray.js connection: its frames answered in order, and the printer
//! statuses and serial data it listens to pushed as QZ stream events.

use super::Shared;
use crate::event::{Filter, Published, Resume};
use crate::print::{Payload, Printer, SubmitError};
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use posbridge_drivers::qz::{self, serial::Framer, Call};
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

/// Who is connected, as the guards judged the upgrade.
pub(crate) struct Who {
    pub origin: String,
    /// Tokens are off, or the origin is in `qz.allowed_origins`.
    pub may_print: bool,
}

/// How long one frame may take to reach the page before it is cut off.
const SEND_WAIT: Duration = Duration::from_secs(10);
/// Closing codes: a refused page (policy), and the daemon stopping.
const CLOSE_REFUSED: u16 = 1008;
const CLOSE_GOING_AWAY: u16 = 1001;
const CLOSE_TOO_SLOW: u16 = 4008;

struct Session {
    who: Who,
    shared: Arc<Shared>,
    /// The certificate message was accepted.
    connected: bool,
    /// Printer ids whose statuses this page listens to.
    listening: Option<BTreeSet<String>>,
    /// Open passthrough ports: device id → (the page's name for it, its framing).
    ports: HashMap<String, (String, Framer)>,
    /// Set when the page is refused: close after the reply.
    close: Option<String>,
}

/// Serves one connection until the page or the daemon ends it.
pub(crate) async fn run(socket: WebSocket, who: Who, shared: Arc<Shared>) {
    let (mut sink, mut incoming) = socket.split();
    let filter = Filter::new(["printer.status", "passthrough.data"], []);
    let mut sub = shared.bus.subscribe(filter, &Resume::default());
    let cancel = shared.cancel.clone();
    let mut s = Session {
        who,
        shared,
        connected: false,
        listening: None,
        ports: HashMap::new(),
        close: None,
    };
    loop {
        let out = tokio::select! {
            _ = cancel.cancelled() => return bye(sink, CLOSE_GOING_AWAY, "posbridge is stopping").await,
            _ = sub.overflow.cancelled() => return bye(sink, CLOSE_TOO_SLOW, "too slow to keep up").await,
            m = incoming.next() => match m {
                Some(Ok(Message::Text(t))) => s.frame(t.as_str()).await,
                Some(Ok(Message::Binary(_))) => vec![qz::error(None, "binary frames are not QZ messages")],
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return,
            },
            Some(p) = sub.rx.recv() => s.event(&p),
        };
        for text in out {
            match tokio::time::timeout(SEND_WAIT, sink.send(Message::Text(text.into()))).await {
                Ok(Ok(())) => {}
                _ => return,
            }
        }
        if let Some(why) = s.close.take() {
            return bye(sink, CLOSE_REFUSED, &why).await;
        }
    }
}

async fn bye(mut sink: futures_util::stream::SplitSink<WebSocket, Message>, code: u16, why: &str) {
    // A close reason is at most 123 bytes.
    let mut reason = why.to_owned();
    while reason.len() > 123 {
        reason.pop();
    }
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    let _ = tokio::time::timeout(SEND_WAIT, sink.send(Message::Close(Some(frame)))).await;
}

fn now_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as f64)
        .unwrap_or(0.0)
}

impl Session {
    /// Answers one text frame; stream events a call causes come before its reply.
    async fn frame(&mut self, text: &str) -> Vec<String> {
        match qz::parse(text) {
            Ok(qz::Message::Ping) => Vec::new(),
            Err(e) => vec![qz::error(e.uid.as_deref(), &e.why)],
            Ok(qz::Message::Certificate { uid, pem }) => vec![self.certificate(&uid, pem)],
            Ok(qz::Message::Call(c)) => {
                let uid = c.uid.clone();
                let mut out = Vec::new();
                let reply = match self.call(c, &mut out).await {
                    Ok(v) => qz::result(&uid, v),
                    Err(why) => qz::error(Some(&uid), &why),
                };
                out.push(reply);
                out
            }
        }
    }

    /// The connect handshake: whether this page may use posbridge at all.
    fn certificate(&mut self, uid: &str, pem: Option<String>) -> String {
        let refusal = if !self.who.may_print {
            Some(format!(
                "posbridge refused this page: API tokens are configured and its origin {:?} is not in qz.allowed_origins",
                self.who.origin
            ))
        } else {
            match (&self.shared.site, pem) {
                (Some(_), None) => Some("posbridge requires this site's QZ certificate (qz.certificate); the page sent none (qz.security.setCertificatePromise)".to_owned()),
                (Some(site), Some(pem)) if !site.is(&pem) => Some("posbridge requires this site's QZ certificate (qz.certificate); the page sent another".to_owned()),
                _ => None,
            }
        };
        match refusal {
            Some(why) => {
                tracing::info!(origin = %self.who.origin, "QZ: {why}");
                self.close = Some(why.clone());
                qz::error(Some(uid), &why)
            }
            None => {
                self.connected = true;
                qz::result(uid, Value::Null)
            }
        }
    }

    async fn call(&mut self, c: Call, out: &mut Vec<String>) -> Result<Value, String> {
        if c.name == "getVersion" {
            return Ok(version(&c.params));
        }
        if !self.connected {
            return Err("send the certificate first (qz.websocket.connect does)".into());
        }
        if let Some(site) = &self.shared.site {
            site.check(&c, now_ms()).inspect_err(|why| {
                tracing::info!(origin = %self.who.origin, call = %c.name, "QZ: refused a call: {why}");
            })?;
        }
        if let Some(why) = qz::refused(&c.name) {
            return Err(why);
        }
        let p = &c.params;
        match c.name.as_str() {
            "printers.find" => self.find(p),
            "printers.getDefault" => Ok(self
                .default_printer()
                .map_or(Value::Null, |pr| name(pr).into())),
            "printers.detail" => Ok(self.detail()),
            "printers.startListening" => self.listen(p),
            "printers.stopListening" => {
                self.listening = None;
                Ok(Value::Null)
            }
            "printers.getStatus" => self.statuses(out),
            "print" => self.print(p).await,
            "serial.findPorts" => Ok(self.ports().into_iter().map(|(n, _)| n).collect()),
            "serial.openPort" => self.open_port(p),
            "serial.sendData" => self.send(p).await,
            "serial.closePort" => self.close_port(p),
            // Loopback only: posbridge tells pages nothing about the machine's network.
            "websocket.getNetworkInfo" => {
                Ok(json!({ "ipAddress": "127.0.0.1", "macAddress": null }))
            }
            // What qz-tray.js 2.1+ sends for qz.websocket.getNetworkInfo(): loopback too.
            "networking.device" => {
                Ok(json!({ "ip": "127.0.0.1", "ip4": ["127.0.0.1"], "primary": true, "up": true }))
            }
            _ => Ok(Value::Null), // security.* and api.*: nothing to do here.
        }
    }

    fn printers(&self) -> Vec<&Arc<Printer>> {
        self.shared.printers.iter().collect()
    }

    fn printer(&self, query: &str) -> Option<&Arc<Printer>> {
        let all = self.printers();
        let names: Vec<&str> = all.iter().map(|p| name(p)).collect();
        let found = qz::find(&names, query)?;
        all.into_iter().find(|p| name(p) == found)
    }

    fn default_printer(&self) -> Option<&Arc<Printer>> {
        match &self.shared.default_printer {
            Some(d) => self
                .printers()
                .into_iter()
                .find(|p| p.id == *d || name(p) == d),
            None => self.printers().into_iter().next(),
        }
    }

    fn find(&self, p: &Value) -> Result<Value, String> {
        match p.get("query") {
            None => Ok(self.printers().iter().map(|p| name(p)).collect()),
            Some(q) => {
                let q = q.as_str().map_or_else(|| q.to_string(), str::to_owned);
                self.printer(&q)
                    .map(|p| name(p).into())
                    .ok_or_else(|| "Specified printer could not be found.".to_owned())
            }
        }
    }

    fn detail(&self) -> Value {
        let default = self.default_printer().map(|p| p.id.clone());
        self.printers()
            .iter()
            .map(|p| {
                json!({
                    "name": name(p),
                    "driver": format!("posbridge {}", p.cfg.driver),
                    "connection": p.cfg.path.as_ref().or(p.cfg.address.as_ref()).map_or_else(|| p.cfg.transport_name().to_owned(), |a| format!("{}:{a}", p.cfg.transport_name())),
                    "default": default.as_deref() == Some(p.id.as_str()),
                    "density": -1,
                })
            })
            .collect()
    }

    fn listen(&mut self, p: &Value) -> Result<Value, String> {
        let names = p.get("printerNames").and_then(Value::as_array);
        let all = names.is_none_or(|n| n.is_empty() || n.iter().any(Value::is_null));
        let ids = if all {
            self.printers().iter().map(|p| p.id.clone()).collect()
        } else {
            let mut ids = BTreeSet::new();
            for n in names.into_iter().flatten() {
                let n = n.as_str().unwrap_or_default();
                let pr = self
                    .printer(n)
                    .filter(|_| !n.is_empty())
                    .ok_or_else(|| format!("Cannot find printer with name \"{n}\""))?;
                ids.insert(pr.id.clone());
            }
            ids
        };
        self.listening.get_or_insert_with(BTreeSet::new).extend(ids);
        Ok(Value::Null)
    }

    /// The current status of every printer listened to, as stream events.
    fn statuses(&self, out: &mut Vec<String>) -> Result<Value, String> {
        let ids = self
            .listening
            .as_ref()
            .ok_or("No printer listeners started for this client.")?;
        for pr in self.printers().into_iter().filter(|p| ids.contains(&p.id)) {
            out.extend(status_events(pr));
        }
        Ok(Value::Null)
    }

    async fn print(&self, p: &Value) -> Result<Value, String> {
        if p.get("printer").is_none_or(Value::is_null) {
            return Err("A printer must be specified before printing".into());
        }
        let job = qz::print_job(p, crate::print::MAX_JOB_BYTES)?;
        let pr = self
            .printer(&job.printer)
            .filter(|_| !job.printer.is_empty())
            .ok_or_else(|| format!("Cannot find printer with name \"{}\"", job.printer))?;
        let queued = self
            .shared
            .printers
            .print(&pr.id, Payload::Bytes(job.bytes))
            .await
            .map_err(|e| match e {
                SubmitError::UnknownPrinter(m) | SubmitError::Bad(m) | SubmitError::TooLarge(m) => {
                    m
                }
                SubmitError::Storage(m) => format!("the job could not be stored: {m}"),
            })?;
        tracing::info!(origin = %self.who.origin, printer = %pr.id, job = %queued.job, "QZ: print job queued");
        Ok(Value::Null)
    }

    /// Passthrough devices as QZ ports: (the page's name, device id).
    fn ports(&self) -> Vec<(String, String)> {
        self.shared
            .devices
            .list()
            .iter()
            .filter(|d| crate::family::takes_bytes(&d.cfg))
            .map(|d| {
                let n = crate::family::qz_name_of(&d.cfg).unwrap_or(&d.cfg.id);
                (n.to_owned(), d.cfg.id.clone())
            })
            .collect()
    }

    fn port_param(p: &Value) -> Result<String, String> {
        match p.get("port") {
            Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            _ => Err("port: expected a port name (qz.serial.findPorts lists them)".into()),
        }
    }

    fn open_port(&mut self, p: &Value) -> Result<Value, String> {
        let port = Self::port_param(p)?;
        let Some((_, id)) = self.ports().into_iter().find(|(n, _)| *n == port) else {
            return Err(format!("Unable to open serial port [{port}]: posbridge has no passthrough device of that name (serial.findPorts lists them)"));
        };
        if self.ports.contains_key(&id) {
            return Err(format!("Serial port [{port}] is already open."));
        }
        let framer = Framer::new(p.get("options").unwrap_or(&Value::Null))?;
        self.ports.insert(id, (port, framer));
        Ok(Value::Null)
    }

    fn open_id(&self, port: &str) -> Option<String> {
        self.ports
            .iter()
            .find(|(_, (n, _))| n == port)
            .map(|(id, _)| id.clone())
    }

    async fn send(&self, p: &Value) -> Result<Value, String> {
        let port = Self::port_param(p)?;
        let id = self
            .open_id(&port)
            .ok_or_else(|| format!("Serial port [{port}] must be opened first."))?;
        let bytes = qz::serial_bytes(p)?;
        let dev = self
            .shared
            .devices
            .get(&id)
            .ok_or_else(|| format!("Serial port [{port}] is gone (the config was reloaded)"))?;
        dev.send(bytes)
            .await
            .map_err(|e| format!("Serial port [{port}]: {e}"))?;
        Ok(Value::Null)
    }

    fn close_port(&mut self, p: &Value) -> Result<Value, String> {
        let port = Self::port_param(p)?;
        let id = self
            .open_id(&port)
            .ok_or_else(|| format!("Serial port [{port}] is not open."))?;
        self.ports.remove(&id);
        Ok(Value::Null)
    }

    /// A bus event this page listens to, as QZ stream messages.
    fn event(&mut self, p: &Published) -> Vec<String> {
        let Some(device) = p.device.as_deref() else {
            return Vec::new();
        };
        match p.kind {
            "printer.status" if self.listening.as_ref().is_some_and(|l| l.contains(device)) => self
                .shared
                .printers
                .get(device)
                .map(|pr| status_events(pr))
                .unwrap_or_default(),
            "passthrough.data" => self.serial_data(device, p),
            _ => Vec::new(),
        }
    }

    fn serial_data(&mut self, device: &str, p: &Published) -> Vec<String> {
        let Some((port, framer)) = self.ports.get_mut(device) else {
            return Vec::new();
        };
        let bytes = serde_json::from_str::<Value>(p.json.as_str())
            .ok()
            .and_then(|v| v["data"]["data"].as_str().map(str::to_owned))
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .unwrap_or_default();
        framer
            .push(&bytes)
            .into_iter()
            .map(|output| {
                qz::stream(
                    "SERIAL",
                    &json!({ "portName": port, "output": output, "type": "RECEIVE" }),
                )
            })
            .collect()
    }
}

/// A printer's name on the QZ listener: its `qz_name`, else its id.
fn name(p: &Printer) -> &str {
    crate::family::qz_name_of(&p.cfg).unwrap_or(&p.id)
}

fn status_events(p: &Printer) -> Vec<String> {
    let s = p.status().map(|s| (s.online, s.paper, s.cover_open));
    qz::statuses(s)
        .into_iter()
        .map(|st| qz::stream("PRINTER", &qz::status_event(name(p), st)))
        .collect()
}

/// `getVersion`: the version qz-tray.js takes as 2.2; with `{details: true}`
/// (qz-tray.js 2.3) who is answering.
fn version(params: &Value) -> Value {
    if params.get("details").and_then(Value::as_bool) == Some(true) {
        json!({
            "title": "posbridge",
            "version": qz::VERSION,
            "vendor": "posbridge",
            "posbridge": env!("CARGO_PKG_VERSION"),
        })
    } else {
        qz::VERSION.into()
    }
}
