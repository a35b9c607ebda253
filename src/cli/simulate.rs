//! `posbridge simulate`: bytes into a `sim` device through the running daemon's API.

use crate::config::Config;
use anyhow::Context;

pub fn send(
    device: &str,
    payload: &str,
    hex: bool,
    raw: bool,
    config: &std::path::Path,
    url: Option<String>,
    token: Option<String>,
) -> anyhow::Result<()> {
    let base = match url {
        Some(u) => u.trim_end_matches('/').to_owned(),
        None => {
            let c = Config::load(config).map_err(|e| anyhow::anyhow!("{e}"))?;
            let a = c.api.listen;
            let host = if a.ip().is_unspecified() {
                "127.0.0.1".to_owned()
            } else if a.is_ipv6() {
                format!("[{}]", a.ip())
            } else {
                a.ip().to_string()
            };
            format!("http://{host}:{}", a.port())
        }
    };
    let body = if hex {
        serde_json::json!({ "hex": payload })
    } else if raw || payload.ends_with('\n') || payload.ends_with('\r') {
        serde_json::json!({ "data": payload })
    } else {
        serde_json::json!({ "data": format!("{payload}\r\n") })
    };
    let endpoint = format!("{base}/v1/devices/{device}/simulate");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(10)))
        .build()
        .into();
    let mut req = agent.post(&endpoint);
    if let Some(t) = token {
        req = req.header("Authorization", &format!("Bearer {t}"));
    }
    let mut resp = req
        .send_json(&body)
        .with_context(|| format!("cannot reach the daemon at {base} (is it running?)"))?;
    let status = resp.status();
    let text = resp.body_mut().read_to_string().unwrap_or_default();
    if status.is_success() {
        println!("{text}");
        Ok(())
    } else {
        anyhow::bail!("{status}: {text}")
    }
}
