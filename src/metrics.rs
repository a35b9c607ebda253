//! Counters for `GET /metrics` (Prometheus text format). A handful of atomics;
//! per-type and per-device series are small, fixed sets.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

#[derive(Default)]
pub struct Metrics {
    events_by_type: Mutex<BTreeMap<&'static str, u64>>,
    subscribers: AtomicU64,
    clients_cut_off: AtomicU64,
    http_requests: AtomicU64,
    http_refused: AtomicU64,
    malformed: AtomicU64,
    limited: AtomicU64,
}

impl Metrics {
    pub fn event_published(&self, kind: &'static str) {
        let mut m = self
            .events_by_type
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        *m.entry(kind).or_default() += 1;
    }
    pub fn set_subscribers(&self, n: usize) {
        self.subscribers.store(n as u64, Relaxed);
    }
    pub fn client_cut_off(&self) {
        self.clients_cut_off.fetch_add(1, Relaxed);
    }
    pub fn http_request(&self) {
        self.http_requests.fetch_add(1, Relaxed);
    }
    pub fn http_refused(&self) {
        self.http_refused.fetch_add(1, Relaxed);
    }
    /// A connection or stream refused by an `api.max_*` limit.
    pub fn limited(&self) {
        self.limited.fetch_add(1, Relaxed);
    }
    pub fn malformed_input(&self) {
        self.malformed.fetch_add(1, Relaxed);
    }

    /// Renders every series; `extra` appends the device gauges the caller owns.
    pub fn render(&self, uptime_s: u64, devices: &[(String, &'static str, u64)]) -> String {
        let mut s = String::new();
        let mut counter = |name: &str, help: &str, v: u64| {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        };
        counter(
            "posbridge_ws_clients_cut_off_total",
            "Stream clients closed with 4008 for falling behind.",
            self.clients_cut_off.load(Relaxed),
        );
        counter(
            "posbridge_http_requests_total",
            "HTTP requests received.",
            self.http_requests.load(Relaxed),
        );
        counter(
            "posbridge_http_refused_total",
            "Requests refused by the Host, Origin or token guards.",
            self.http_refused.load(Relaxed),
        );
        counter(
            "posbridge_http_limited_total",
            "Connections and streams refused by api.max_connections / max_streams limits.",
            self.limited.load(Relaxed),
        );
        counter(
            "posbridge_malformed_input_total",
            "Device input a driver could not decode.",
            self.malformed.load(Relaxed),
        );
        let _ = writeln!(s, "# HELP posbridge_events_total Events published, by type.\n# TYPE posbridge_events_total counter");
        for (k, v) in self
            .events_by_type
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(s, "posbridge_events_total{{type=\"{k}\"}} {v}");
        }
        let _ = writeln!(s, "# HELP posbridge_stream_clients Connected event-stream subscribers.\n# TYPE posbridge_stream_clients gauge\nposbridge_stream_clients {}", self.subscribers.load(Relaxed));
        let _ = writeln!(s, "# HELP posbridge_uptime_seconds Seconds since start.\n# TYPE posbridge_uptime_seconds gauge\nposbridge_uptime_seconds {uptime_s}");
        let _ = writeln!(s, "# HELP posbridge_device_up 1 when the device is connected.\n# TYPE posbridge_device_up gauge");
        for (id, state, _) in devices {
            let _ = writeln!(
                s,
                "posbridge_device_up{{device=\"{id}\"}} {}",
                u8::from(*state == "connected")
            );
        }
        let _ = writeln!(s, "# HELP posbridge_device_events_total Events from each device.\n# TYPE posbridge_device_events_total counter");
        for (id, _, n) in devices {
            let _ = writeln!(s, "posbridge_device_events_total{{device=\"{id}\"}} {n}");
        }
        s
    }
}
