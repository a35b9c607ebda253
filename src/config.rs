//! Configuration: TOML, overridden by `POSBRIDGE__SECTION__KEY` environment
//! variables, strictly typed (unknown keys are errors) and validated as a
//! whole, so `check-config` can list every problem with the key it is on.

use serde::Deserialize;
use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

pub const DEFAULT_PATH: &str = "/etc/posbridge/posbridge.toml";
pub const ENV_PREFIX: &str = "POSBRIDGE__";

/// The whole config, after validation.
#[derive(Clone, Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub store: StoreConfig,
    #[serde(default)]
    pub api: ApiConfig,
    #[serde(default)]
    pub storage: StorageConfig,
    #[serde(default)]
    pub events: EventsConfig,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default, rename = "device")]
    pub devices: Vec<DeviceConfig>,
    #[serde(default)]
    pub uplink: Option<UplinkConfig>,
    /// `[devices]`: plug and play (the catalog and USB hotplug).
    #[serde(default, rename = "devices")]
    pub plug: PlugConfig,
    /// `[qz]`: answer pages written for QZ Tray's qz-tray.js.
    #[serde(default)]
    pub qz: QzConfig,
    /// `[print]`: images on receipts and the logos printed by name.
    #[serde(default)]
    pub print: PrintConfig,
    /// `[members]`: the member cache (the ID-card key).
    #[serde(default)]
    pub members: MembersConfig,
    /// `[popup]`: the front desk's caller popup page.
    #[serde(default)]
    pub popup: PopupConfig,
}

/// `[popup]`: how the caller popup words things.
#[derive(Clone, Debug, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PopupConfig {
    /// `hotel` (上次入住), `restaurant` or `retail` (上次到店; the default).
    pub business: Business,
}

/// The kind of business the popup speaks for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Business {
    Hotel,
    Restaurant,
    #[default]
    Retail,
}

/// `[print]`: what receipts may carry beyond text.
#[derive(Clone, Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrintConfig {
    /// Largest image, in pixels (width × height), a document or a logo may be.
    pub max_image_pixels: u64,
    /// `[[print.logo]]`: pictures printed by name, `{"logo": "name"}`.
    #[serde(rename = "logo")]
    pub logos: Vec<LogoConfig>,
}

impl Default for PrintConfig {
    fn default() -> Self {
        PrintConfig {
            max_image_pixels: posbridge_drivers::escpos::DEFAULT_MAX_IMAGE_PIXELS,
            logos: Vec::new(),
        }
    }
}

/// One `[[print.logo]]`: a PNG or JPEG file read at start.
#[derive(Clone, Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogoConfig {
    pub name: String,
    pub file: PathBuf,
}

/// `[qz]`: a second loopback listener speaking QZ Tray's page protocol, so
/// pages written for qz-tray.js print through posbridge's printers.
#[derive(Clone, Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct QzConfig {
    pub enabled: bool,
    /// `ws://` here (qz-tray.js tries 8182 first on http pages).
    pub listen: SocketAddr,
    /// `wss://` here too when `api.tls` is on (8181 is tried first on https pages).
    pub secure_listen: SocketAddr,
    /// With API tokens configured, these origins (each also in
    /// `api.allowed_origins`) may use the QZ listener — print, and read and
    /// write `passthrough` ports: a QZ page has no token to send.
    pub allowed_origins: Vec<String>,
    /// What `printers.getDefault` answers: a printer's id or `qz_name`.
    pub default_printer: Option<String>,
    /// The site's QZ certificate (PEM file). When set, every call qz-tray.js
    /// signs must carry a valid signature by it.
    pub certificate: Option<PathBuf>,
}

impl Default for QzConfig {
    fn default() -> Self {
        QzConfig {
            enabled: false,
            listen: SocketAddr::from(([127, 0, 0, 1], 8182)),
            secure_listen: SocketAddr::from(([127, 0, 0, 1], 8181)),
            allowed_origins: Vec::new(),
            default_printer: None,
            certificate: None,
        }
    }
}

/// `[devices]`: how USB devices are found.
#[derive(Clone, Debug, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PlugConfig {
    /// Claim every catalog device marked `auto` (ids `auto-<catalog id>`) that
    /// no `[[device]]` already matches by VID:PID.
    pub auto: bool,
}

#[derive(Clone, Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    pub id: String,
}

#[derive(Clone, Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    pub listen: SocketAddr,
    pub allow_remote: bool,
    pub allowed_origins: Vec<String>,
    /// Extra Host names accepted besides the loopback ones; only with `allow_remote`.
    pub allowed_hosts: Vec<String>,
    pub tokens: Vec<TokenConfig>,
    /// Open connections at most; the next one gets 503 and is closed.
    pub max_connections: usize,
    /// Open WebSocket event streams at most (all clients); the next is closed with 1013.
    pub max_streams: usize,
    /// Open event streams per Origin (requests without one share a bucket).
    pub max_streams_per_origin: usize,
    /// A request's header must arrive within this (slowloris), and an idle
    /// keep-alive connection is closed after it.
    pub header_timeout_ms: u64,
    /// The largest WebSocket message (and frame) a client may send.
    pub max_ws_message_bytes: usize,
    /// Serve https:// and wss:// with a locally generated CA and certificate
    /// (storage.dir/tls/); `posbridge trust-cert` installs the CA.
    pub tls: bool,
    /// Renew the certificate when it expires within this many days.
    pub tls_renew_days: u64,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8731)),
            allow_remote: false,
            allowed_origins: Vec::new(),
            allowed_hosts: Vec::new(),
            tokens: Vec::new(),
            max_connections: 512,
            max_streams: 128,
            max_streams_per_origin: 16,
            header_timeout_ms: 10_000,
            max_ws_message_bytes: 64 * 1024,
            tls: false,
            tls_renew_days: 30,
        }
    }
}

#[derive(Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    pub name: String,
    pub token: String,
    pub scopes: Vec<Scope>,
    /// RFC 3339 time after which the token is refused (401 `token_expired`).
    #[serde(default)]
    pub expires: Option<String>,
}

impl TokenConfig {
    /// The expiry as Unix seconds; `None` for a token that never expires
    /// (or one whose `expires` is invalid, which validation reports).
    pub fn expires_unix(&self) -> Option<i64> {
        let e = self.expires.as_deref()?;
        time::OffsetDateTime::parse(e, &time::format_description::well_known::Rfc3339)
            .ok()
            .map(|t| t.unix_timestamp())
    }
}

// The token itself never reaches a log line.
impl fmt::Debug for TokenConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenConfig")
            .field("name", &self.name)
            .field("token", &"<redacted>")
            .field("scopes", &self.scopes)
            .field("expires", &self.expires)
            .finish()
    }
}

/// What a token lets its holder do.
#[derive(Clone, Copy, Debug, Deserialize, serde::Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Events,
    Idcard,
    Transactions,
    Print,
    Members,
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 6] = [
        Scope::Events,
        Scope::Idcard,
        Scope::Transactions,
        Scope::Print,
        Scope::Members,
        Scope::Admin,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scope::Events => "events",
            Scope::Idcard => "idcard",
            Scope::Transactions => "transactions",
            Scope::Print => "print",
            Scope::Members => "members",
            Scope::Admin => "admin",
        }
    }
}

#[derive(Clone, Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    pub dir: PathBuf,
    /// Transactions HQ does not have yet, at most; beyond it new ones get 507.
    pub max_backlog: u64,
    /// Days a finished transaction stays readable by `GET /v1/transactions/{id}`.
    pub retain_days: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            dir: PathBuf::from("/var/lib/posbridge"),
            max_backlog: 1_000_000,
            retain_days: 7,
        }
    }
}

/// The event bus and stream tuning.
#[derive(Clone, Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// Events kept for resume (`since`) and long-poll.
    pub buffer: usize,
    /// Events one WebSocket client may have queued before it is closed with 4008.
    pub client_queue: usize,
    /// How long one frame may take to write before the client counts as stalled.
    pub stall_timeout_ms: u64,
    /// WebSocket ping interval; a client that misses two pongs is dropped.
    pub ping_interval_s: u64,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            buffer: 1024,
            client_queue: 256,
            stall_timeout_ms: 5000,
            ping_interval_s: 20,
        }
    }
}

#[derive(Clone, Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A tracing filter (`info`, `posbridge=debug,warn`); `RUST_LOG` wins when set.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
        }
    }
}

/// One `[[device]]` table, read in two steps: here the keys every family
/// shares (which device, which driver, how it is reached); the rest stay in
/// `options` until loading reads them into the family's own options type
/// (src/family), so a key no family takes is an error naming it.
#[derive(Clone, Debug, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    pub id: String,
    pub driver: String,
    /// Loading fills in the family's first transport when none is given.
    pub transport: Option<Transport>,
    pub path: Option<String>,
    #[serde(rename = "match")]
    pub usb_match: Option<UsbMatch>,
    /// tcp: the host:port to connect to; udp: the local address to listen on.
    pub address: Option<String>,
    /// udp: the only sender whose datagrams are taken (the unit's IP address).
    pub from: Option<String>,
    /// evdev: take the input device exclusively so keystrokes never reach the desktop (default true).
    pub grab: Option<bool>,
    pub baud: Option<u32>,
    /// Serial framing: 5-8 data bits (default 8).
    pub data_bits: Option<u8>,
    /// Serial parity (default none).
    pub parity: Option<Parity>,
    /// Serial stop bits: 1 or 2 (default 1).
    pub stop_bits: Option<u8>,
    /// Serial flow control (default none).
    pub flow_control: Option<FlowControl>,
    /// Card readers and scanners: publish `member.identified` for what they
    /// read (default: when `[uplink]` is set or the member cache holds members).
    pub identify: Option<bool>,
    /// The family's own keys, as written; see `crate::family::FamilyOptions`.
    #[serde(skip)]
    pub options: toml::Table,
}

impl DeviceConfig {
    /// The transport; loading fills in the driver's default when the config
    /// names none (the first its family lists).
    pub fn transport(&self) -> Transport {
        self.transport.unwrap_or(Transport::Serial)
    }

    /// The transport's config spelling, for messages and the API.
    pub fn transport_name(&self) -> &'static str {
        self.transport().name()
    }
}

/// How a device is reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    Serial,
    Evdev,
    Hid,
    Pcsc,
    Tcp,
    Udp,
    Usb,
    File,
    Sim,
}

posbridge_drivers::config_names!(Transport {
    "serial" => Transport::Serial,
    "evdev" => Transport::Evdev,
    "hid" => Transport::Hid,
    "pcsc" => Transport::Pcsc,
    "tcp" => Transport::Tcp,
    "udp" => Transport::Udp,
    "usb" => Transport::Usb,
    "file" => Transport::File,
    "sim" => Transport::Sim,
});

/// Serial parity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parity {
    None,
    Odd,
    Even,
}

posbridge_drivers::config_names!(Parity {
    "none" => Parity::None,
    "odd" => Parity::Odd,
    "even" => Parity::Even,
});

/// Serial flow control.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlowControl {
    None,
    Software,
    Hardware,
}

posbridge_drivers::config_names!(FlowControl {
    "none" => FlowControl::None,
    "software" => FlowControl::Software,
    "hardware" => FlowControl::Hardware,
});

/// The keys a serde struct takes, read from its derived `Deserialize`, so
/// which keys exist is written once: in the struct. Empty for a type that
/// is not a struct.
pub fn keys_of<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    use serde::de::{self, Visitor};
    struct Probe<'a>(&'a mut &'static [&'static str]);
    impl<'de> de::Deserializer<'de> for Probe<'_> {
        type Error = de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("not a struct"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(de::Error::custom("probed"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Probe(&mut fields));
    fields
}

#[derive(Clone, Debug, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct UsbMatch {
    pub vid: String,
    pub pid: String,
    pub serial: Option<String>,
}

/// HQ relay settings (contract §2). Parsed and validated now so configs written
/// against the contract load; the relay itself lives in `uplink/`.
#[derive(Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct UplinkConfig {
    /// One broker. `urls` names several instead (not both).
    #[serde(default)]
    pub url: String,
    /// Brokers of one cluster, tried in this order: the first is preferred.
    #[serde(default)]
    pub urls: Vec<String>,
    pub client_id: Option<String>,
    #[serde(default = "default_topic_prefix")]
    pub topic_prefix: String,
    #[serde(default = "default_ack")]
    pub ack: String,
    #[serde(default = "default_lookup_timeout")]
    pub lookup_timeout_ms: u64,
    /// With `ack = "hq"`: a transaction HQ has not acknowledged this long
    /// after it was published goes again on the same connection.
    #[serde(default = "default_resend_after")]
    pub resend_after_ms: u64,
    /// How long member pushes stay unsubscribed after HQ keeps sending a
    /// message over the size limit (one retained on a member topic).
    #[serde(default = "default_members_pause")]
    pub members_pause_ms: u64,
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub username: Option<String>,
    pub password: Option<String>,
    #[serde(default = "default_keep_alive")]
    pub keep_alive_s: u64,
    #[serde(default)]
    pub forward_events: Vec<String>,
    /// Reconnects wait a random time up to this (doubling while they fail,
    /// to 30 s): a broker restart does not bring its stores back at once.
    #[serde(default = "default_reconnect_spread")]
    pub reconnect_spread_ms: u64,
    /// After an outage the backlog goes up at most this many transactions
    /// per second (unset: as fast as the broker acknowledges).
    pub drain_rate: Option<u64>,
    /// Ed25519 public keys (base64 of the raw 32 bytes) whose signed
    /// commands the store runs; none = every command is refused.
    #[serde(default)]
    pub command_keys: Vec<String>,
}

// The password never reaches a log line.
impl fmt::Debug for UplinkConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UplinkConfig")
            .field("url", &self.url)
            .field("urls", &self.urls)
            .field("client_id", &self.client_id)
            .field("topic_prefix", &self.topic_prefix)
            .field("ack", &self.ack)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "…"))
            .finish_non_exhaustive()
    }
}

/// Where the broker is, from `uplink.url`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerAddr {
    pub tls: bool,
    pub host: String,
    pub port: u16,
}

impl UplinkConfig {
    /// The brokers in the order they are tried: `urls`, or `url` alone.
    pub fn broker_urls(&self) -> Vec<&str> {
        if self.urls.is_empty() {
            vec![self.url.as_str()]
        } else {
            self.urls.iter().map(String::as_str).collect()
        }
    }

    /// Every broker, parsed, with its config key for errors.
    pub fn brokers(&self) -> Result<Vec<(String, BrokerAddr)>, String> {
        let key = |i: usize| {
            if self.urls.is_empty() {
                "uplink.url".to_owned()
            } else {
                format!("uplink.urls[{i}]")
            }
        };
        self.broker_urls()
            .into_iter()
            .enumerate()
            .map(|(i, u)| {
                broker_addr(u)
                    .map(|b| (u.to_owned(), b))
                    .map_err(|e| format!("{}: {e}", key(i)))
            })
            .collect()
    }

    /// The first broker (`mqtt://host[:port]`, `mqtts://…`).
    pub fn broker(&self) -> Result<BrokerAddr, String> {
        broker_addr(self.broker_urls().first().copied().unwrap_or_default())
    }
}

/// `mqtt://host[:port]` or `mqtts://host[:port]` (IPv6 in brackets).
pub fn broker_addr(url: &str) -> Result<BrokerAddr, String> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("mqtts://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("mqtt://") {
        (false, r)
    } else {
        return Err("must start with mqtt:// or mqtts://".into());
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let default_port = if tls { 8883 } else { 1883 };
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or("an IPv6 host needs its closing ]")?;
        (h, after.strip_prefix(':'))
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        }
    };
    if host.is_empty() || host.contains(['/', '@', '?', '#']) {
        return Err(format!("{:?} is not host[:port]", rest));
    }
    let port = match port {
        None => default_port,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("port {p:?} is not a number from 1 to 65535"))?,
    };
    Ok(BrokerAddr {
        tls,
        host: host.to_owned(),
        port,
    })
}

impl UplinkConfig {
    pub fn client_id_for(&self, store: &str) -> String {
        self.client_id
            .clone()
            .unwrap_or_else(|| format!("posbridge-{store}"))
    }
}

fn default_topic_prefix() -> String {
    "posbridge".into()
}
fn default_reconnect_spread() -> u64 {
    2000
}
fn default_members_pause() -> u64 {
    600_000
}

fn default_resend_after() -> u64 {
    60_000
}

fn default_ack() -> String {
    "broker".into()
}
fn default_lookup_timeout() -> u64 {
    1500
}
fn default_keep_alive() -> u64 {
    30
}

/// One problem with the config, and the key it is on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.key, self.message)
        }
    }
}

/// Every problem found, with where the config came from.
#[derive(Debug)]
pub struct ConfigError {
    pub source: String,
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        writeln!(
            f,
            "{}: {} problem{}",
            self.source,
            n,
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            writeln!(f, "  {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// A config read as far as its own text goes, the first of loading's two
/// steps: TOML, the environment's overrides, every section typed and its
/// values checked, each device's common keys read. What needs the driver
/// families or the machine is the second step (`crate::load`).
pub struct Draft {
    pub config: Config,
    /// `device_index[i]` is the `[[device]]` position of `config.devices[i]`
    /// (devices that failed to parse are absent but keep their numbering).
    pub device_index: Vec<usize>,
    pub problems: Vec<Problem>,
    pub source: String,
    /// Keys step one found wrong and left out of their device: checks after
    /// it would only say they are missing.
    left_out: HashSet<String>,
    /// Keys set by `POSBRIDGE__…` variables, and the variable: a problem
    /// there is blamed on the variable, not the file.
    from_env: Vec<(String, String)>,
}

impl Draft {
    /// Where a problem with `config.devices[n]` is reported: `device[N].key`,
    /// or for devices `[devices] auto` added, `devices.auto (id).key`.
    pub fn device_key(&self, n: usize, key: &str) -> String {
        match self.device_index.get(n) {
            Some(i) => format!("device[{i}].{key}"),
            None => format!(
                "devices.auto ({}).{key}",
                self.config.devices.get(n).map_or("?", |d| d.id.as_str())
            ),
        }
    }

    pub fn problem(&mut self, key: String, message: String) {
        self.problems.push(Problem { key, message });
    }

    /// The config, or every problem found in both steps, in the order of
    /// the file: section by section, each device's problems together.
    pub(crate) fn finish(mut self) -> Result<Config, ConfigError> {
        if self.problems.is_empty() {
            return Ok(self.config);
        }
        self.problems.sort_by_key(|p| problem_order(&p.key));
        // A wrong value step one left out is not also "required" in step
        // two: for those keys the first problem (step one's) is the only one.
        let left_out = &self.left_out;
        let under = |k: &str| {
            left_out
                .iter()
                .find(|r| {
                    k.strip_prefix(r.as_str())
                        .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
                })
                .cloned()
        };
        let mut seen = HashSet::new();
        self.problems
            .retain(|p| under(&p.key).is_none_or(|r| seen.insert(r)));
        let under = |key: &str, top: &str| {
            key.strip_prefix(top)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
        };
        for p in &mut self.problems {
            // The variable set this key, or a key inside it (one that made the table).
            let var = self
                .from_env
                .iter()
                .find(|(k, _)| under(&p.key, k) || under(k, &p.key));
            if let Some((_, var)) = var {
                p.key = format!("{} (from {var})", p.key);
            }
        }
        Err(ConfigError {
            source: self.source,
            problems: self.problems,
        })
    }
}

/// Checks across keys, as (the key reported on, a key the check reads).
const CROSS_KEY_CHECKS: &[(&str, &str)] = &[
    ("api.listen", "api.allow_remote"),
    ("api.allowed_hosts", "api.allow_remote"),
    ("uplink.password", "uplink.username"),
    ("qz.allowed_origins", "api.allowed_origins"),
    ("qz.listen", "api.listen"),
    ("qz.secure_listen", "api.listen"),
];

/// Whether a problem's key is `on` or one of its items (`on[2]`).
fn on_key(key: &str, on: &str) -> bool {
    key.strip_prefix(on)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('['))
}

/// The levels `log.level` takes, alone or as `target=level`.
const LOG_LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// `log.level` is a level, or a filter whose every part ends in one. A bare
/// word that is not a level (`"warning"`) would parse as a target name and
/// silence every log line, so it is refused.
fn check_log_level(level: &str) -> Result<(), String> {
    let names = LOG_LEVELS.join(", ");
    let parts: Vec<&str> = level.split(',').map(str::trim).collect();
    for part in &parts {
        let lvl = part.rsplit_once('=').map_or(*part, |(_, l)| l);
        if !LOG_LEVELS.iter().any(|n| n.eq_ignore_ascii_case(lvl)) {
            return Err(format!(
                "{part:?} is not a level: use one of {names}, or target=level pairs (\"info,posbridge::uplink=debug\")"
            ));
        }
    }
    tracing_subscriber::EnvFilter::try_new(level)
        .map(|_| ())
        .map_err(|e| format!("{level:?} is not a log filter: {e}"))
}

impl Config {
    /// Step one: parses TOML text, applies `POSBRIDGE__…` overrides from
    /// `env` and checks what the text alone can tell. `Err` only for text
    /// that is not TOML; other problems are collected in the draft.
    pub fn draft(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
        source: &str,
    ) -> Result<Draft, ConfigError> {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| ConfigError {
            source: source.to_owned(),
            problems: vec![Problem {
                key: String::new(),
                message: format!("not valid TOML: {}", e.to_string().trim_end()),
            }],
        })?;
        let mut problems = Vec::new();
        let mut root = toml::Value::Table(table);
        let from_env = apply_env(&mut root, env, &mut problems);
        // set_path only inserts below the root, so it is still a table.
        let table = match root {
            toml::Value::Table(t) => t,
            _ => toml::Table::new(),
        };
        let mut left_out = HashSet::new();
        let (config, device_index) = deserialize_all(table, &mut problems, &mut left_out);
        let mut checked = Vec::new();
        config.validate(&device_index, &mut checked);
        // A check across keys that read a key step one left out would judge
        // its default, and only mislead.
        problems.extend(checked.into_iter().filter(|p| {
            !CROSS_KEY_CHECKS
                .iter()
                .any(|(on, reads)| on_key(&p.key, on) && left_out.contains(*reads))
        }));
        Ok(Draft {
            config,
            device_index,
            problems,
            source: source.to_owned(),
            left_out,
            from_env,
        })
    }

    /// `device_index[i]` is the `[[device]]` position of `self.devices[i]` (devices
    /// that failed to parse are absent but keep their numbering in messages).
    fn validate(&self, device_index: &[usize], problems: &mut Vec<Problem>) {
        let mut err = |key: String, message: String| problems.push(Problem { key, message });
        if !is_id(&self.store.id) {
            err(
                "store.id".into(),
                "must be 1-64 characters of A-Z a-z 0-9 . _ - (it is used in MQTT topics)".into(),
            );
        }
        for (key, v, lo, hi) in self.ranges() {
            if !(lo..=hi).contains(&v) {
                let why = match hi {
                    u64::MAX => format!("must be at least {lo}"),
                    86_400_000 => format!("must be from {lo} to {hi} (a day)"),
                    _ => format!("must be from {lo} to {hi}"),
                };
                err(key.into(), why);
            }
        }
        self.validate_api(&mut err);
        self.validate_qz(&mut err);
        self.validate_logos(&mut err);
        if let Some(k) = &self.members.id_key {
            if k.chars().count() < 16 {
                err(
                    "members.id_key".into(),
                    "must be at least 16 characters (a random secret, e.g. `openssl rand -hex 32`)"
                        .into(),
                );
            }
        }
        if let Err(why) = check_log_level(&self.log.level) {
            err("log.level".into(), why);
        }
        self.validate_devices(device_index, &mut err);
        if let Some(u) = &self.uplink {
            u.validate(&self.store.id, &mut err);
        }
    }

    /// Every bounded number in the config, as (key, value, lowest, highest):
    /// one table, one message. The bounds also keep deadlines computed from
    /// these values from overflowing.
    fn ranges(&self) -> Vec<(&'static str, u64, u64, u64)> {
        let (api, ev, st) = (&self.api, &self.events, &self.storage);
        let mut r = vec![
            ("api.max_connections", api.max_connections as u64, 4, 65_536),
            ("api.max_streams", api.max_streams as u64, 1, 10_000),
            (
                "api.max_streams_per_origin",
                api.max_streams_per_origin as u64,
                1,
                10_000,
            ),
            ("api.header_timeout_ms", api.header_timeout_ms, 100, 600_000),
            (
                "api.max_ws_message_bytes",
                api.max_ws_message_bytes as u64,
                1024,
                16 << 20,
            ),
            ("api.tls_renew_days", api.tls_renew_days, 1, 300),
            ("storage.max_backlog", st.max_backlog, 1, u64::MAX),
            ("storage.retain_days", st.retain_days, 1, 3650),
            ("events.buffer", ev.buffer as u64, 16, 1_000_000),
            ("events.client_queue", ev.client_queue as u64, 8, 100_000),
            ("events.stall_timeout_ms", ev.stall_timeout_ms, 100, 600_000),
            ("events.ping_interval_s", ev.ping_interval_s, 1, 3600),
            (
                "print.max_image_pixels",
                self.print.max_image_pixels,
                10_000,
                100_000_000,
            ),
        ];
        if let Some(u) = &self.uplink {
            r.extend([
                ("uplink.keep_alive_s", u.keep_alive_s, 5, 3600),
                ("uplink.lookup_timeout_ms", u.lookup_timeout_ms, 100, 60_000),
                ("uplink.resend_after_ms", u.resend_after_ms, 100, 86_400_000),
                (
                    "uplink.reconnect_spread_ms",
                    u.reconnect_spread_ms,
                    100,
                    600_000,
                ),
                ("uplink.drain_rate", u.drain_rate.unwrap_or(1), 1, 1_000_000),
                (
                    "uplink.members_pause_ms",
                    u.members_pause_ms,
                    1000,
                    86_400_000,
                ),
            ]);
        }
        r
    }

    fn validate_api(&self, err: &mut impl FnMut(String, String)) {
        let api = &self.api;
        if !api.allow_remote && !api.listen.ip().is_loopback() {
            err(
                "api.listen".into(),
                format!(
                    "{} is not a loopback address; the API would be reachable from the network. \
                     Use 127.0.0.1, or set api.allow_remote = true if that is really wanted",
                    api.listen
                ),
            );
        }
        if !api.allowed_hosts.is_empty() && !api.allow_remote {
            err(
                "api.allowed_hosts".into(),
                "only applies with api.allow_remote = true".into(),
            );
        }
        for (i, o) in api.allowed_origins.iter().enumerate() {
            if let Err(why) = check_origin(o) {
                err(format!("api.allowed_origins[{i}]"), why);
            }
        }
        self.validate_tokens(err);
    }

    /// Logo names are what documents say (`{"logo": "shop"}`): one each, plain.
    fn validate_logos(&self, err: &mut impl FnMut(String, String)) {
        for (i, l) in self.print.logos.iter().enumerate() {
            if !is_id(&l.name) {
                err(
                    format!("print.logo[{i}].name"),
                    "must be 1-64 characters of A-Z a-z 0-9 . _ -".into(),
                );
            } else if self.print.logos[..i].iter().any(|o| o.name == l.name) {
                err(
                    format!("print.logo[{i}].name"),
                    format!("{:?} is already the name of another logo", l.name),
                );
            }
        }
    }

    /// `[qz]` on its own and beside `[api]`: loopback only (there is no
    /// `allow_remote` for it), its ports its own, its origins the API's.
    fn validate_qz(&self, err: &mut impl FnMut(String, String)) {
        let qz = &self.qz;
        for (key, addr) in [
            ("qz.listen", qz.listen),
            ("qz.secure_listen", qz.secure_listen),
        ] {
            if !addr.ip().is_loopback() {
                err(
                    key.into(),
                    format!("{addr} is not a loopback address; the QZ listener is loopback only"),
                );
            } else if addr.port() != 0 && addr == self.api.listen {
                err(
                    key.into(),
                    format!("{addr} is api.listen too; give QZ its own port"),
                );
            }
        }
        if self.api.tls && qz.listen.port() != 0 && qz.listen == qz.secure_listen {
            err(
                "qz.secure_listen".into(),
                format!(
                    "{} is qz.listen too; the secure port needs its own",
                    qz.listen
                ),
            );
        }
        let api: HashSet<String> = self
            .api
            .allowed_origins
            .iter()
            .map(|o| o.to_ascii_lowercase())
            .collect();
        for (i, o) in qz.allowed_origins.iter().enumerate() {
            if let Err(why) = check_origin(o) {
                err(format!("qz.allowed_origins[{i}]"), why);
            } else if !api.contains(&o.to_ascii_lowercase()) {
                err(
                    format!("qz.allowed_origins[{i}]"),
                    format!("{o:?} is not in api.allowed_origins; list it there too"),
                );
            }
        }
    }

    fn validate_tokens(&self, err: &mut impl FnMut(String, String)) {
        let mut names = HashSet::new();
        let mut secrets = HashSet::new();
        for (i, t) in self.api.tokens.iter().enumerate() {
            let key = |k: &str| format!("api.tokens[{i}].{k}");
            if t.name.is_empty() {
                err(key("name"), "must not be empty".into());
            } else if !names.insert(t.name.as_str()) {
                err(key("name"), format!("duplicate token name {:?}", t.name));
            }
            if t.token.len() < 16 {
                err(
                    key("token"),
                    "must be at least 16 characters (use a random string)".into(),
                );
            } else if !secrets.insert(t.token.as_str()) {
                err(key("token"), "the same token is configured twice".into());
            }
            if t.scopes.is_empty() {
                err(key("scopes"), "must name at least one scope".into());
            }
            if t.expires.is_some() && t.expires_unix().is_none() {
                err(
                    key("expires"),
                    "must be an RFC 3339 time such as \"2026-12-31T23:59:59Z\"".into(),
                );
            }
        }
    }

    fn validate_devices(&self, device_index: &[usize], err: &mut impl FnMut(String, String)) {
        let mut ids = HashSet::new();
        for (n, d) in self.devices.iter().enumerate() {
            let i = device_index.get(n).copied();
            // Devices [devices] auto added come after the configured ones.
            let key = |k: &str| match i {
                Some(i) => format!("device[{i}].{k}"),
                None => format!("devices.auto ({}).{k}", d.id),
            };
            if !is_id(&d.id) {
                err(
                    key("id"),
                    "must be 1-64 characters of A-Z a-z 0-9 . _ -".into(),
                );
            } else if !ids.insert(d.id.as_str()) {
                err(key("id"), format!("duplicate device id {:?}", d.id));
            }
            if d.identify.is_some() && !IDENTIFIERS.contains(&d.driver.as_str()) {
                err(
                    key("identify"),
                    format!(
                        "only card readers and scanners identify members ({}); remove it",
                        IDENTIFIERS.join(", ")
                    ),
                );
            }
        }
    }
}

impl UplinkConfig {
    /// What is wrong in `[uplink]` beyond the number ranges.
    fn validate(&self, store: &str, err: &mut impl FnMut(String, String)) {
        let u = self;
        match (u.url.is_empty(), u.urls.is_empty()) {
            (true, true) => err(
                "uplink.url".into(),
                "missing: give the broker as url, or several as urls".into(),
            ),
            (false, false) => err("uplink.urls".into(), "give url or urls, not both".into()),
            _ => {}
        }
        let urls = if u.urls.is_empty() && u.url.is_empty() {
            Vec::new()
        } else {
            u.broker_urls()
        };
        for (i, url) in urls.into_iter().enumerate() {
            let key = if u.urls.is_empty() {
                "uplink.url".to_owned()
            } else {
                format!("uplink.urls[{i}]")
            };
            match broker_addr(url) {
                Err(why) => err(key, why),
                Ok(b) if !b.tls && (u.ca.is_some() || u.cert.is_some()) => err(
                    key,
                    "ca/cert/key are set but the url is mqtt://; use mqtts:// for TLS".into(),
                ),
                Ok(_) => {}
            }
        }
        if u.cert.is_some() != u.key.is_some() {
            err(
                "uplink.key".into(),
                "a client certificate needs both cert and key".into(),
            );
        }
        if u.password.is_some() && u.username.is_none() {
            err(
                "uplink.password".into(),
                "a password needs a username".into(),
            );
        }
        let id = u.client_id_for(store);
        if id.is_empty() || id.len() > 128 {
            err(
                "uplink.client_id".into(),
                "must be 1 to 128 characters".into(),
            );
        }
        for (i, f) in u.forward_events.iter().enumerate() {
            if f.is_empty() || f.contains(['+', '#', '/']) {
                err(
                    format!("uplink.forward_events[{i}]"),
                    "an event type or glob (card.*), without MQTT wildcards or /".into(),
                );
            }
        }
        for (i, k) in u.command_keys.iter().enumerate() {
            if let Err(why) = posbridge_drivers::command::parse_key(k) {
                err(format!("uplink.command_keys[{i}]"), why);
            }
        }
        if u.ack != "broker" && u.ack != "hq" {
            err("uplink.ack".into(), "must be \"broker\" or \"hq\"".into());
        }
        if u.topic_prefix.is_empty() || u.topic_prefix.contains(['+', '#']) {
            err(
                "uplink.topic_prefix".into(),
                "must be non-empty and contain no MQTT wildcards".into(),
            );
        }
    }
}

/// The drivers whose reads identify members (`identify`).
pub const IDENTIFIERS: [&str; 5] = ["magstripe", "rfid-wedge", "pcsc", "barcode", "idcard-sam"];

/// `[members]`: the member cache.
#[derive(Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MembersConfig {
    /// The store's key for ID-card numbers: the cache keeps and HQ is asked
    /// for HMAC-SHA256(id_key, number), never the number.
    pub id_key: Option<String>,
}

impl fmt::Debug for MembersConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MembersConfig")
            .field("id_key", &self.id_key.as_ref().map(|_| "…"))
            .finish()
    }
}

/// The config's sections, in the order they are read and reported.
const SECTIONS: [&str; 12] = [
    "store", "api", "storage", "events", "log", "device", "devices", "uplink", "qz", "print",
    "members", "popup",
];

/// Where a problem's key sits in the file: its section (in the order the
/// sections are read), then its device or token number. A stable sort keeps
/// the order problems were found in within one place.
fn problem_order(key: &str) -> (usize, usize) {
    let section = key.split(['.', '[', ' ']).next().unwrap_or("");
    let rank = SECTIONS
        .iter()
        .position(|s| *s == section)
        .map_or(0, |i| i + 1);
    let index = key
        .split_once('[')
        .and_then(|(_, rest)| rest.split_once(']'))
        .and_then(|(n, _)| n.parse().ok())
        .unwrap_or(0);
    (rank, index)
}

/// A store or device id: 1-64 characters of A-Z a-z 0-9 . _ - (they go into MQTT topics).
pub fn is_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// An origin is `scheme://host[:port]`, nothing more (that is what browsers send).
fn check_origin(o: &str) -> Result<(), String> {
    if o == "null" {
        return Err(
            "\"null\" would let any sandboxed or file:// page in; list real origins".into(),
        );
    }
    let Some((scheme, rest)) = o.split_once("://") else {
        return Err(format!(
            "{o:?} is not an origin like https://pos.example.com"
        ));
    };
    if !matches!(scheme, "http" | "https") {
        return Err(format!("{o:?}: scheme must be http or https"));
    }
    if rest.is_empty() || rest.contains('/') || rest.contains('*') || o.ends_with('/') {
        return Err(format!(
            "{o:?} must be exactly scheme://host[:port] with no path, slash or wildcard"
        ));
    }
    Ok(())
}

/// Deserializes section by section and device by device, so one bad key does
/// not hide the problems in the others. A section that fails is replaced by its
/// default (and a failed device left out) so the remaining checks still run;
/// the recorded problems make the load fail either way.
// Over 80 lines: section by section so every problem is collected with its key in one pass.
fn deserialize_all(
    table: toml::Table,
    problems: &mut Vec<Problem>,
    left_out: &mut HashSet<String>,
) -> (Config, Vec<usize>) {
    fn part<T: serde::de::DeserializeOwned>(
        prefix: &str,
        value: toml::Value,
        problems: &mut Vec<Problem>,
    ) -> Option<T> {
        match serde_path_to_error::deserialize::<_, T>(value) {
            Ok(v) => Some(v),
            Err(e) => {
                problems.push(Problem {
                    key: join_key(prefix, &e.path().to_string()),
                    message: clean_serde_message(&e.into_inner().to_string()),
                });
                None
            }
        }
    }

    // Each section key by key: one wrong value does not hide the next, nor
    // the checks of the values that were right (a bad token scope once hid
    // a 0.0.0.0 listen address).
    fn each<T: serde::de::DeserializeOwned>(
        name: &str,
        value: toml::Value,
        vital: &[&str],
        problems: &mut Vec<Problem>,
        left_out: &mut HashSet<String>,
    ) -> Option<T> {
        let toml::Value::Table(table) = value else {
            return part(name, value, problems);
        };
        let (read, wrong) = read_each::<T>(table, vital);
        for (key, message) in wrong {
            let top = key.split(['.', '[']).next().unwrap_or_default();
            left_out.insert(join_key(name, top));
            problems.push(Problem {
                key: join_key(name, &key),
                message,
            });
        }
        read
    }

    let mut config = Config {
        // Stands in only while other sections are checked; a missing store is reported.
        store: StoreConfig { id: "unset".into() },
        api: ApiConfig::default(),
        storage: StorageConfig::default(),
        events: EventsConfig::default(),
        log: LogConfig::default(),
        devices: Vec::new(),
        uplink: None,
        plug: PlugConfig::default(),
        qz: QzConfig::default(),
        print: PrintConfig::default(),
        members: MembersConfig::default(),
        popup: PopupConfig::default(),
    };
    let mut device_index = Vec::new();
    let mut have_store = false;
    for (k, v) in table {
        match k.as_str() {
            "store" => {
                have_store = true;
                if let Some(x) = each("store", v, &["id"], problems, left_out) {
                    config.store = x;
                }
            }
            "api" => config.api = each("api", v, &[], problems, left_out).unwrap_or_default(),
            "storage" => {
                config.storage = each("storage", v, &[], problems, left_out).unwrap_or_default()
            }
            "events" => {
                config.events = each("events", v, &[], problems, left_out).unwrap_or_default()
            }
            "log" => config.log = each("log", v, &[], problems, left_out).unwrap_or_default(),
            "qz" => config.qz = each("qz", v, &[], problems, left_out).unwrap_or_default(),
            "print" => config.print = each("print", v, &[], problems, left_out).unwrap_or_default(),
            "members" => {
                config.members = each("members", v, &[], problems, left_out).unwrap_or_default()
            }
            "popup" => config.popup = each("popup", v, &[], problems, left_out).unwrap_or_default(),
            "uplink" => config.uplink = each("uplink", v, &[], problems, left_out),
            "devices" => {
                config.plug = each("devices", v, &[], problems, left_out).unwrap_or_default()
            }
            "device" => match v {
                toml::Value::Array(items) => {
                    for (i, item) in items.into_iter().enumerate() {
                        let at = format!("device[{i}]");
                        let d = match item {
                            toml::Value::Table(t) => device(&at, t, problems, left_out),
                            other => part(&at, other, problems),
                        };
                        if let Some(d) = d {
                            config.devices.push(d);
                            device_index.push(i);
                        }
                    }
                }
                _ => problems.push(Problem {
                    key: "device".into(),
                    message: "must be written as [[device]] tables".into(),
                }),
            },
            _ => problems.push(Problem {
                key: k,
                message: format!("unknown section; expected one of {}", SECTIONS.join(", ")),
            }),
        }
    }
    if !have_store {
        problems.push(Problem {
            key: "store.id".into(),
            message: "missing; every config needs [store] id = \"…\"".into(),
        });
    }
    (config, device_index)
}

/// Step one of a `[[device]]` table: its common keys, each wrong one
/// reported; the rest kept for its family (`DeviceConfig::options`).
fn device(
    at: &str,
    mut table: toml::Table,
    problems: &mut Vec<Problem>,
    left_out: &mut HashSet<String>,
) -> Option<DeviceConfig> {
    let common = keys_of::<DeviceConfig>();
    let options: toml::Table = table
        .iter()
        .filter(|(k, _)| !common.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    table.retain(|k, _| common.contains(&k));
    // Without its id, driver or transport nothing else about a device can be checked.
    let (device, wrong) = read_each::<DeviceConfig>(table, &["id", "driver", "transport"]);
    for (key, message) in wrong {
        let top = key.split(['.', '[']).next().unwrap_or_default();
        left_out.insert(join_key(at, top));
        problems.push(Problem {
            key: join_key(at, &key),
            message,
        });
    }
    device.map(|d| DeviceConfig { options, ..d })
}

/// Reads `table` into `T`, reporting every key that is wrong as (path,
/// message): a wrong key is left out and the rest read again, so one wrong
/// value does not hide the next (a key named more than once keeps its first
/// problem, see `Draft::finish`). `None` when the table as a whole or a key
/// in `vital` is wrong: going on without it would only mislead.
pub fn read_each<T: serde::de::DeserializeOwned>(
    mut table: toml::Table,
    vital: &[&str],
) -> (Option<T>, Vec<(String, String)>) {
    let mut wrong = Vec::new();
    loop {
        let value = toml::Value::Table(table.clone());
        match serde_path_to_error::deserialize::<_, T>(value) {
            Ok(v) => return (Some(v), wrong),
            Err(e) => {
                let path = e.path().to_string();
                // The key the path starts with; a quoted key may hold dots ("a.b").
                let top = table
                    .keys()
                    .filter(|k| {
                        path.strip_prefix(k.as_str())
                            .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
                    })
                    .max_by_key(|k| k.len())
                    .cloned()
                    .unwrap_or_default();
                wrong.push((path, clean_serde_message(&e.into_inner().to_string())));
                if vital.contains(&top.as_str()) || table.remove(&top).is_none() {
                    return (None, wrong);
                }
            }
        }
    }
}

/// `prefix.path`, where serde_path_to_error's "." is the prefix itself.
fn join_key(prefix: &str, path: &str) -> String {
    match (prefix.is_empty(), path) {
        (_, ".") => prefix.to_owned(),
        (true, _) => path.to_owned(),
        (false, _) => format!("{prefix}.{path}"),
    }
}

/// serde's messages say "invalid type: string \"x\", expected u32"; keep them
/// but say "an integer" where a Rust type name would puzzle IT staff.
fn clean_serde_message(m: &str) -> String {
    // toml appends context lines ("in `baud`"); the key already says where.
    let mut m = m.lines().next().unwrap_or_default().trim().to_owned();
    for (rust, plain) in [
        ("expected u8", "expected an integer 0-255"),
        ("expected u16", "expected an integer 0-65535"),
        ("expected u32", "expected an integer"),
        ("expected u64", "expected an integer"),
        ("expected usize", "expected an integer"),
        ("expected a boolean", "expected true or false"),
    ] {
        m = m.replace(rust, plain);
    }
    m
}

/// Applies `POSBRIDGE__A__B=value` as `a.b = value`. A numeric segment indexes
/// an array (`POSBRIDGE__DEVICE__0__BAUD`). The value is read as a TOML value
/// (`9600`, `true`, `["a","b"]`) unless the key already holds a string.
/// Returns each key set, as problems name it (`device[0].baud`), with its variable.
fn apply_env(
    root: &mut toml::Value,
    env: impl IntoIterator<Item = (String, String)>,
    problems: &mut Vec<Problem>,
) -> Vec<(String, String)> {
    let mut set = Vec::new();
    let mut vars: Vec<(String, String)> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX) && k.len() > ENV_PREFIX.len())
        .collect();
    vars.sort();
    for (name, raw) in vars {
        let segments: Vec<String> = name[ENV_PREFIX.len()..]
            .split("__")
            .map(|s| s.to_ascii_lowercase())
            .collect();
        if segments.iter().any(String::is_empty) {
            problems.push(Problem {
                key: name.clone(),
                message: "empty key segment in environment override".into(),
            });
            continue;
        }
        match set_path(root, &segments, &raw) {
            Ok(()) => set.push((problem_key(&segments), name)),
            Err(message) => problems.push(Problem {
                key: format!("{} (from {name})", segments.join(".")),
                message,
            }),
        }
    }
    set
}

/// `["device", "0", "baud"]` as problems name it: `device[0].baud`.
fn problem_key(segments: &[String]) -> String {
    let mut key = String::new();
    for s in segments {
        if s.parse::<usize>().is_ok() {
            key.push_str(&format!("[{s}]"));
        } else {
            if !key.is_empty() {
                key.push('.');
            }
            key.push_str(s);
        }
    }
    key
}

fn set_path(root: &mut toml::Value, segs: &[String], raw: &str) -> Result<(), String> {
    let (last, parents) = segs.split_last().ok_or("empty key")?;
    let mut cur = root;
    for seg in parents {
        cur = child(cur, seg, true)?;
    }
    let existing_is_string = child(cur, last, false).map(|v| v.is_str()).unwrap_or(false);
    let value = if existing_is_string {
        toml::Value::String(raw.to_owned())
    } else {
        parse_scalar(raw)
    };
    match cur {
        toml::Value::Table(t) => {
            t.insert(last.clone(), value);
            Ok(())
        }
        toml::Value::Array(a) => {
            let i: usize = last
                .parse()
                .map_err(|_| format!("{last:?} is not an array index"))?;
            match a.get_mut(i) {
                Some(slot) => {
                    *slot = value;
                    Ok(())
                }
                None => Err(format!("index {i} is past the end (there are {})", a.len())),
            }
        }
        _ => Err("the key above it is not a table".into()),
    }
}

fn child<'a>(
    v: &'a mut toml::Value,
    seg: &str,
    create: bool,
) -> Result<&'a mut toml::Value, String> {
    match v {
        toml::Value::Table(t) => {
            if create && !t.contains_key(seg) {
                t.insert(seg.to_owned(), toml::Value::Table(toml::Table::new()));
            }
            t.get_mut(seg).ok_or_else(|| format!("no key {seg:?}"))
        }
        toml::Value::Array(a) => {
            let i: usize = seg
                .parse()
                .map_err(|_| format!("{seg:?} is not an array index"))?;
            let n = a.len();
            a.get_mut(i)
                .ok_or_else(|| format!("index {i} is past the end (there are {n})"))
        }
        _ => Err(format!(
            "cannot set {seg:?} inside a value that is not a table"
        )),
    }
}

fn parse_scalar(raw: &str) -> toml::Value {
    let doc = format!("v = {raw}");
    match doc.parse::<toml::Table>() {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(raw.to_owned())),
        Err(_) => toml::Value::String(raw.to_owned()),
    }
}
