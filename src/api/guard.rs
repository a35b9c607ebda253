//! The always-on guards: Host (DNS rebinding), Origin, CORS and Private
//! Network Access preflight, and bearer tokens with scopes.

use super::error::ApiError;
use super::AppState;
use crate::config::{ApiConfig, Scope};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

/// The scopes a request holds, set by [`guard`] for handlers to read.
#[derive(Clone, Copy, Debug, Default)]
pub struct Grant(u8);

/// The presented token's expiry (Unix seconds), for streams that outlive a request.
#[derive(Clone, Copy, Debug, Default)]
pub struct TokenExpiry(pub Option<i64>);

impl Grant {
    fn with(self, s: Scope) -> Grant {
        Grant(self.0 | 1 << s as u8)
    }
    pub fn has(self, s: Scope) -> bool {
        self.0 & (1 << s as u8) != 0
    }
}

struct Token {
    secret: Vec<u8>,
    grant: Grant,
    /// Unix seconds after which the token is refused.
    expires: Option<i64>,
}

/// Why a presented token is refused.
enum BadToken {
    Unknown,
    Expired,
}

/// Guard settings, prepared once from the config and the bound port.
pub struct Guard {
    port: u16,
    /// What a Host without a port means: 443 under TLS, else 80.
    default_port: u16,
    hosts: HashSet<String>,
    origins: HashSet<String>,
    tokens: Vec<Token>,
    pub streams: Arc<Streams>,
}

/// Open event streams, overall and per Origin (`api.max_streams*`).
pub struct Streams {
    max_total: usize,
    max_per_origin: usize,
    /// Origin ("" for none) → open streams; the total is their sum.
    open: Mutex<(usize, HashMap<String, usize>)>,
}

/// One open stream; its place is given back when dropped.
pub struct StreamSlot {
    streams: Arc<Streams>,
    origin: String,
}

impl Streams {
    /// Takes a place for a stream from `origin`, or says which limit is full.
    pub fn open(self: &Arc<Self>, origin: &str) -> Result<StreamSlot, String> {
        let mut g = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let (total, per) = &mut *g;
        if *total >= self.max_total {
            return Err(format!(
                "too many event streams ({} open, api.max_streams); try again later",
                self.max_total
            ));
        }
        let n = per.entry(origin.to_owned()).or_insert(0);
        if *n >= self.max_per_origin {
            return Err(format!(
                "too many event streams from this origin ({} open, api.max_streams_per_origin); try again later",
                self.max_per_origin
            ));
        }
        *n += 1;
        *total += 1;
        Ok(StreamSlot {
            streams: self.clone(),
            origin: origin.to_owned(),
        })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut g = self.streams.open.lock().unwrap_or_else(|p| p.into_inner());
        let (total, per) = &mut *g;
        *total = total.saturating_sub(1);
        if let Some(n) = per.get_mut(&self.origin) {
            *n -= 1;
            if *n == 0 {
                per.remove(&self.origin);
            }
        }
    }
}

impl Guard {
    pub fn new(api: &ApiConfig, port: u16) -> Guard {
        let mut hosts: HashSet<String> = ["127.0.0.1", "localhost", "[::1]"]
            .into_iter()
            .map(str::to_owned)
            .collect();
        hosts.extend(api.allowed_hosts.iter().map(|h| h.to_ascii_lowercase()));
        let mut origins: HashSet<String> = api
            .allowed_origins
            .iter()
            .map(|o| o.to_ascii_lowercase())
            .collect();
        // The daemon's own pages are always allowed to call it.
        let (scheme, default_port) = if api.tls {
            ("https", 443)
        } else {
            ("http", 80)
        };
        for h in ["127.0.0.1", "localhost", "[::1]"] {
            origins.insert(format!("{scheme}://{h}:{port}"));
            // A browser leaves the scheme's default port out of Origin.
            if port == default_port {
                origins.insert(format!("{scheme}://{h}"));
            }
        }
        let tokens = api
            .tokens
            .iter()
            .map(|t| Token {
                secret: t.token.as_bytes().to_vec(),
                grant: t.scopes.iter().fold(Grant::default(), |g, s| g.with(*s)),
                expires: t.expires_unix(),
            })
            .collect();
        Guard {
            port,
            default_port,
            hosts,
            origins,
            tokens,
            streams: Arc::new(Streams {
                max_total: api.max_streams,
                max_per_origin: api.max_streams_per_origin,
                open: Mutex::new((0, HashMap::new())),
            }),
        }
    }

    pub(crate) fn host_ok(&self, headers: &HeaderMap) -> bool {
        // Exactly one Host: with two, proxies and we might disagree on which counts.
        let mut all = headers.get_all(header::HOST).iter();
        let (Some(host), None) = (all.next(), all.next()) else {
            return false;
        };
        let Ok(host) = host.to_str() else {
            return false;
        };
        let host = host.to_ascii_lowercase();
        // `[::1]:8731`, `localhost:8731`, or no port (the scheme's default).
        let (name, port) = match host.rfind(':') {
            Some(i) if !host[i..].contains(']') => (&host[..i], host[i + 1..].parse::<u16>().ok()),
            _ => (host.as_str(), Some(self.default_port)),
        };
        port == Some(self.port) && self.hosts.contains(name)
    }

    pub(crate) fn origin_ok(&self, origin: &str) -> bool {
        self.origins.contains(&origin.to_ascii_lowercase())
    }

    /// When the presented token stops being valid (Unix seconds), if it does.
    fn expiry(&self, presented: Option<&str>) -> Option<i64> {
        let p = presented?;
        self.tokens
            .iter()
            .find(|t| ct_eq(&t.secret, p.as_bytes()))
            .and_then(|t| t.expires)
    }

    /// The grant for a presented token; `Err` when a token is presented but
    /// unknown or expired.
    fn grant(&self, presented: Option<&str>) -> Result<Grant, BadToken> {
        if self.tokens.is_empty() {
            // Without tokens, every scope but `idcard`, which always needs one.
            let all = Scope::ALL
                .iter()
                .filter(|s| **s != Scope::Idcard)
                .fold(Grant::default(), |g, s| g.with(*s));
            return Ok(all);
        }
        let Some(p) = presented else {
            return Ok(Grant::default());
        };
        // Compare against every token in full so timing says nothing about which matched.
        let mut found = None;
        for t in &self.tokens {
            if ct_eq(&t.secret, p.as_bytes()) {
                found = Some(t);
            }
        }
        let t = found.ok_or(BadToken::Unknown)?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        match t.expires {
            Some(e) if now >= e => Err(BadToken::Expired),
            _ => Ok(t.grant),
        }
    }

    pub fn tokens_configured(&self) -> bool {
        !self.tokens.is_empty()
    }
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn presented_token(req: &Request) -> Option<String> {
    if let Some(v) = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        if let Some(t) = v
            .strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
        {
            return Some(t.trim().to_owned());
        }
    }
    let query = req.uri().query()?;
    form_urlencoded_get(query, "token")
}

/// Reads one key from a query string, percent-decoded.
pub fn form_urlencoded_get(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == key).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex_val(b[i + 1]), hex_val(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_val(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// Pages anyone may open from a link: they show nothing until their own
/// same-origin requests, which pass the guards on their own.
const NAVIGABLE: &[&str] = &["/", "/popup", "/favicon.ico"];

/// Fetch Metadata resource isolation, for requests without an Origin (whose
/// Origin, when there is one, was checked already): a browser's request from
/// another site is refused, except a top-level navigation to a page. Requests
/// without `Sec-Fetch-Site` (native clients, curl, old browsers) pass as before.
fn fetch_site_ok(req: &Request) -> bool {
    let h = req.headers();
    let Some(site) = h.get("sec-fetch-site") else {
        return true;
    };
    match site.as_bytes() {
        // Typed into the address bar or a bookmark, or the daemon's own page.
        b"none" | b"same-origin" => true,
        // cross-site, same-site, or a value this build does not know.
        _ => {
            let is = |name: &str, want: &str| h.get(name).is_some_and(|v| v == want);
            req.method() == Method::GET
                && is("sec-fetch-mode", "navigate")
                && is("sec-fetch-dest", "document")
                && NAVIGABLE.contains(&req.uri().path())
        }
    }
}

/// Whether a request that passed the guards may also cause an effect outside
/// the daemon (a member lookup sent to HQ). A browser navigation the user
/// typed, bookmarked or opened from another program (`Sec-Fetch-Site: none`)
/// passes the guards, so a status URL can be opened by hand, but a link in
/// a chat message must not make the store ask HQ: such requests get what the
/// daemon already has. Pages calling the API (an Origin, a token in a header,
/// or the daemon's own same-origin pages) and native clients (no Fetch
/// Metadata) may.
pub fn may_reach_out(h: &HeaderMap) -> bool {
    let site = h.get("sec-fetch-site").map(HeaderValue::as_bytes);
    matches!(site, None | Some(b"same-origin"))
        || h.contains_key(header::ORIGIN)
        || h.contains_key(header::AUTHORIZATION)
}

fn refuse(state: &AppState, status: StatusCode, code: &'static str, msg: String) -> Response {
    state.metrics.http_refused();
    ApiError::new(status, code, msg).into_response()
}

fn cors_headers(h: &mut HeaderMap, origin: &HeaderValue) {
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    h.append(header::VARY, HeaderValue::from_static("Origin"));
}

/// Runs before every route: Host, Origin, Fetch Metadata, preflight,
/// token → [`Grant`].
pub async fn guard(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    state.metrics.http_request();
    let origin = match where_from(&state, &req) {
        Ok(origin) => origin,
        Err(refused) => return *refused,
    };
    if let Some(answer) = origin.as_ref().and_then(|o| preflight(&req, o)) {
        return answer;
    }
    let presented = presented_token(&req);
    let grant = match state.guard.grant(presented.as_deref()) {
        Ok(gr) => gr,
        Err(why) => {
            let (code, msg) = match why {
                BadToken::Unknown => ("invalid_token", "the token is not one of api.tokens"),
                BadToken::Expired => (
                    "token_expired",
                    "the token has expired (api.tokens expires); ask for a new one",
                ),
            };
            let mut resp = refuse(&state, StatusCode::UNAUTHORIZED, code, msg.into());
            if let Some(o) = &origin {
                cors_headers(resp.headers_mut(), o);
            }
            return resp;
        }
    };
    req.extensions_mut().insert(grant);
    // A stream outliving its token is closed when the token expires (ws.rs).
    req.extensions_mut()
        .insert(TokenExpiry(state.guard.expiry(presented.as_deref())));
    let mut resp = next.run(req).await;
    if let Some(o) = &origin {
        cors_headers(resp.headers_mut(), o);
    }
    resp
}

/// Host, Origin and Fetch Metadata: where the request comes from, and
/// whether that may reach the API. `Ok` carries the (allowed) Origin.
fn where_from(state: &AppState, req: &Request) -> Result<Option<HeaderValue>, Box<Response>> {
    let g = &state.guard;
    if !g.host_ok(req.headers()) {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        tracing::debug!(
            host,
            "refused: Host is not a loopback name with the listen port"
        );
        return Err(Box::new(refuse(
            state,
            StatusCode::FORBIDDEN,
            "forbidden_host",
            format!(
                "Host {:?} is not allowed; use http://127.0.0.1:{} (protects against DNS rebinding)",
                host, g.port
            ),
        )));
    }
    let origin = req.headers().get(header::ORIGIN).cloned();
    if let Some(o) = &origin {
        if !o.to_str().map(|s| g.origin_ok(s)).unwrap_or(false) {
            let shown = String::from_utf8_lossy(o.as_bytes()).into_owned();
            tracing::info!(origin = %shown, "refused: origin not in api.allowed_origins");
            return Err(Box::new(refuse(
                state,
                StatusCode::FORBIDDEN,
                "forbidden_origin",
                format!("origin {shown:?} is not in api.allowed_origins"),
            )));
        }
    }
    if origin.is_none() && !fetch_site_ok(req) {
        // A foreign page's no-cors request (`<img src>`, `fetch(…, {mode:
        // "no-cors"})`) carries no Origin, but the browser says where it came from.
        // Debug, not info: any page can send these, as often as it likes.
        tracing::debug!(
            path = req.uri().path(),
            "refused: a request from another site without an allowed Origin"
        );
        return Err(Box::new(refuse(
            state,
            StatusCode::FORBIDDEN,
            "forbidden_site",
            "a request from another site must come from a page in api.allowed_origins \
             (the browser sent Sec-Fetch-Site but no Origin)"
                .into(),
        )));
    }
    Ok(origin)
}

/// The answer to an allowed origin's CORS (and Private Network Access)
/// preflight; `None` for any other request.
fn preflight(req: &Request, origin: &HeaderValue) -> Option<Response> {
    if req.method() != Method::OPTIONS
        || !req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
    {
        return None;
    }
    let mut resp = StatusCode::NO_CONTENT.into_response();
    let h = resp.headers_mut();
    cors_headers(h, origin);
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, DELETE, OPTIONS"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("authorization, content-type"),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    // Chrome's Private Network Access: a public page may reach loopback.
    h.insert(
        "access-control-allow-private-network",
        HeaderValue::from_static("true"),
    );
    Some(resp)
}

/// Per-route: the request's grant must hold `scope`.
pub async fn require(scope: Scope, state: AppState, req: Request, next: Next) -> Response {
    let grant = req.extensions().get::<Grant>().copied().unwrap_or_default();
    if grant.has(scope) {
        return next.run(req).await;
    }
    let origin = req.headers().get(header::ORIGIN).cloned();
    let mut resp = if state.guard.tokens_configured() && presented_token(&req).is_none() {
        refuse(
            &state,
            StatusCode::UNAUTHORIZED,
            "token_required",
            format!(
                "this needs a token with scope {:?} (Authorization: Bearer … or ?token=…)",
                scope.name()
            ),
        )
    } else {
        refuse(
            &state,
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            format!("this needs scope {:?}", scope.name()),
        )
    };
    if let Some(o) = &origin {
        cors_headers(resp.headers_mut(), o);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding_handles_edges() {
        assert_eq!(percent_decode("a%20b+c"), "a b c");
        assert_eq!(percent_decode("%"), "%");
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(
            form_urlencoded_get("x=1&token=ab%2Bc", "token").as_deref(),
            Some("ab+c")
        );
    }

    #[test]
    fn host_needs_loopback_name_and_port() {
        let g = Guard::new(&ApiConfig::default(), 8731);
        let ok = |h: &str| {
            let mut m = HeaderMap::new();
            m.insert(
                header::HOST,
                HeaderValue::from_str(h).unwrap_or(HeaderValue::from_static("")),
            );
            g.host_ok(&m)
        };
        assert!(ok("127.0.0.1:8731"));
        assert!(ok("LOCALHOST:8731"));
        assert!(ok("[::1]:8731"));
        assert!(!ok("127.0.0.1:8732"));
        assert!(!ok("evil.example:8731"));
        assert!(!ok("localhost"));
        assert!(!ok("[::1]"));
        assert!(!ok("127.0.0.1.nip.io:8731"));
    }

    #[test]
    fn fetch_metadata_refuses_other_sites_but_navigations_to_pages() {
        let req = |method: Method, path: &str, headers: &[(&'static str, &'static str)]| {
            let mut r = Request::builder().method(method).uri(path);
            for (k, v) in headers {
                r = r.header(*k, *v);
            }
            r.body(axum::body::Body::empty()).unwrap_or_default()
        };
        let cross = [
            ("sec-fetch-site", "cross-site"),
            ("sec-fetch-mode", "no-cors"),
        ];
        assert!(!fetch_site_ok(&req(
            Method::GET,
            "/v1/members/lookup",
            &cross
        )));
        assert!(!fetch_site_ok(&req(
            Method::GET,
            "/v1/events/poll",
            &[("sec-fetch-site", "same-site")]
        )));
        assert!(!fetch_site_ok(&req(
            Method::GET,
            "/v1/health",
            &[("sec-fetch-site", "weird")]
        )));
        let nav = [
            ("sec-fetch-site", "cross-site"),
            ("sec-fetch-mode", "navigate"),
            ("sec-fetch-dest", "document"),
        ];
        assert!(fetch_site_ok(&req(Method::GET, "/popup", &nav)));
        assert!(fetch_site_ok(&req(Method::GET, "/", &nav)));
        assert!(
            !fetch_site_ok(&req(Method::GET, "/v1/calls", &nav)),
            "only pages"
        );
        assert!(!fetch_site_ok(&req(Method::POST, "/", &nav)), "only GET");
        let framed = [
            ("sec-fetch-site", "cross-site"),
            ("sec-fetch-mode", "navigate"),
            ("sec-fetch-dest", "iframe"),
        ];
        assert!(!fetch_site_ok(&req(Method::GET, "/popup", &framed)));
        assert!(fetch_site_ok(&req(
            Method::GET,
            "/v1/calls",
            &[("sec-fetch-site", "same-origin")]
        )));
        assert!(fetch_site_ok(&req(
            Method::GET,
            "/v1/calls",
            &[("sec-fetch-site", "none")]
        )));
        assert!(
            fetch_site_ok(&req(Method::GET, "/v1/calls", &[])),
            "curl sends none"
        );
    }

    #[test]
    fn a_typed_or_linked_navigation_never_reaches_out() {
        let h = |pairs: &[(&'static str, &'static str)]| {
            let mut m = HeaderMap::new();
            for (k, v) in pairs {
                m.insert(*k, HeaderValue::from_static(v));
            }
            m
        };
        assert!(may_reach_out(&h(&[])), "curl, native clients");
        assert!(may_reach_out(&h(&[("sec-fetch-site", "same-origin")])));
        assert!(may_reach_out(&h(&[
            ("sec-fetch-site", "cross-site"),
            ("origin", "https://pos.example.com")
        ])));
        assert!(may_reach_out(&h(&[
            ("sec-fetch-site", "none"),
            ("authorization", "Bearer x")
        ])));
        assert!(!may_reach_out(&h(&[
            ("sec-fetch-site", "none"),
            ("sec-fetch-mode", "navigate")
        ])));
    }

    /// On the scheme's default port a browser sends neither the port in Host
    /// nor in Origin: `https://localhost` on 443 is the daemon itself.
    #[test]
    fn a_host_without_a_port_means_the_schemes_default() {
        let host_ok = |g: &Guard, h: &'static str| {
            let mut m = HeaderMap::new();
            m.insert(header::HOST, HeaderValue::from_static(h));
            g.host_ok(&m)
        };
        let tls = ApiConfig {
            tls: true,
            ..ApiConfig::default()
        };
        let g = Guard::new(&tls, 443);
        assert!(host_ok(&g, "localhost"));
        assert!(host_ok(&g, "localhost:443"));
        assert!(g.origin_ok("https://localhost"));
        assert!(!g.origin_ok("http://localhost"));
        let g = Guard::new(&tls, 8731);
        assert!(!host_ok(&g, "localhost"), "443 is not 8731");
        assert!(!g.origin_ok("https://localhost"));
        let g = Guard::new(&ApiConfig::default(), 80);
        assert!(host_ok(&g, "localhost"));
        assert!(g.origin_ok("http://localhost"));
        let g = Guard::new(&ApiConfig::default(), 443);
        assert!(!host_ok(&g, "localhost"), "no port over http means 80");
    }
}
