//! QZ Tray's signed calls: the site's certificate (`qz.certificate`) and
//! the check of each call's signature, as qz-tray.js makes them — the page
//! hashes `{call, params, timestamp}` (SHA-256, lowercase hex) and its
//! server signs that hex text with the site's RSA key (PKCS #1 v1.5 with
//! SHA-1, SHA-256 or SHA-512, as `signAlgorithm` says; SHA-1 when absent).

use base64::Engine;
use posbridge_drivers::qz::{der, Call};
use ring::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use std::path::Path;

/// How far a call's timestamp may be from this machine's clock (QZ Tray's
/// own window). Within it a captured signed frame could be sent again; only
/// allowed origins can connect at all, so capturing one needs such a page.
pub const WINDOW_MS: f64 = 15.0 * 60.0 * 1000.0;

/// The calls qz-tray.js sends unsigned (its `needsSigned`); they read or
/// stop things and are answered without a signature.
const UNSIGNED: &[&str] = &[
    "getVersion",
    "printers.getStatus",
    "printers.stopListening",
    "usb.isClaimed",
    "usb.closeStream",
    "usb.releaseDevice",
    "hid.stopListening",
    "hid.isClaimed",
    "hid.closeStream",
    "hid.releaseDevice",
    "file.stopListening",
];

/// The site certificate every signed call is checked against.
#[derive(Clone, Debug)]
pub struct SiteCert {
    der: Vec<u8>,
    /// Its RSA public key (PKCS #1).
    key: Vec<u8>,
}

impl SiteCert {
    /// Reads a PEM file (the first certificate in it).
    pub fn load(path: &Path) -> Result<SiteCert, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        SiteCert::from_pem(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn from_pem(text: &str) -> Result<SiteCert, String> {
        let der = first_certificate(text)
            .ok_or("no PEM certificate (-----BEGIN CERTIFICATE-----) in it")?;
        let key = der::rsa_public_key(&der)
            .ok_or("the certificate holds no RSA public key (QZ signatures are RSA)")?
            .to_vec();
        Ok(SiteCert { der, key })
    }

    /// Whether a page's certificate message carries this certificate.
    pub fn is(&self, pem: &str) -> bool {
        first_certificate(pem).is_some_and(|d| d == self.der)
    }

    /// Whether `call` may run: unsigned calls always; the rest need a valid
    /// signature and a timestamp within [`WINDOW_MS`] of `now_ms`.
    pub fn check(&self, call: &Call, now_ms: f64) -> Result<(), String> {
        if UNSIGNED.contains(&call.name.as_str()) {
            return Ok(());
        }
        let sig = match call.signature.as_deref() {
            None | Some("") => {
                return Err(format!(
                    "{} was not signed; this posbridge requires calls signed with the site's certificate (qz.security.setSignaturePromise)",
                    call.name
                ))
            }
            Some(s) => s,
        };
        let ts = call
            .timestamp
            .ok_or("the call has no timestamp to check its signature against")?;
        if (ts - now_ms).abs() > WINDOW_MS {
            return Err(format!(
                "the call's timestamp is {:.0} minutes off this machine's clock (at most 15); check both clocks",
                (ts - now_ms).abs() / 60_000.0
            ));
        }
        let alg = algorithm(call.algorithm.as_deref())?;
        let sig = base64::engine::general_purpose::STANDARD
            .decode(sig.split_whitespace().collect::<String>())
            .map_err(|_| format!("{}: the signature is not base64", call.name))?;
        let hash = hex::encode(ring::digest::digest(
            &ring::digest::SHA256,
            call.signed.as_bytes(),
        ));
        UnparsedPublicKey::new(alg, &self.key)
            .verify(hash.as_bytes(), &sig)
            .map_err(|_| {
                format!(
                    "{}: invalid signature (not made by the site's certificate for this call)",
                    call.name
                )
            })
    }
}

/// `signAlgorithm` as qz-tray.js sends it (any case); none is SHA-1.
fn algorithm(name: Option<&str>) -> Result<&'static dyn VerificationAlgorithm, String> {
    match name.map(str::to_ascii_uppercase).as_deref() {
        None | Some("SHA1") => Ok(&signature::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY),
        Some("SHA256") => Ok(&signature::RSA_PKCS1_2048_8192_SHA256),
        Some("SHA512") => Ok(&signature::RSA_PKCS1_2048_8192_SHA512),
        Some(other) => Err(format!(
            "signAlgorithm {other:?} is not SHA1, SHA256 or SHA512"
        )),
    }
}

/// The DER of the first `CERTIFICATE` block of a PEM text.
fn first_certificate(pem: &str) -> Option<Vec<u8>> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let start = pem.find(BEGIN)? + BEGIN.len();
    let end = start + pem[start..].find(END)?;
    let body: String = pem[start..end]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD.decode(body).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use posbridge_drivers::qz::{parse, Message};

    const CERT: &str = include_str!("../../tests/fixtures/qz/site-cert.pem");
    const OTHER: &str = include_str!("../../tests/fixtures/qz/other-cert.pem");

    /// Signs like a site's server: `openssl dgst -sha512 -sign key` over the hex hash.
    fn sign(key: &str, alg: &str, text: &str) -> String {
        let hash = hex::encode(ring::digest::digest(&ring::digest::SHA256, text.as_bytes()));
        let dir = tempfile::tempdir().expect("dir");
        let (data, keyfile) = (dir.path().join("h"), dir.path().join("k"));
        std::fs::write(&data, hash).expect("write");
        std::fs::write(&keyfile, key).expect("write");
        let out = std::process::Command::new("openssl")
            .args(["dgst", &format!("-{alg}"), "-sign"])
            .arg(&keyfile)
            .arg(&data)
            .output()
            .expect("openssl");
        base64::engine::general_purpose::STANDARD.encode(out.stdout)
    }

    fn call(name: &str, sig: Option<&str>, alg: Option<&str>, ts: u64) -> Call {
        let mut v = serde_json::json!({"call": name, "params": {"query": "XP"}, "timestamp": ts, "uid": "u"});
        if let Some(s) = sig {
            v["signature"] = s.into();
        }
        if let Some(a) = alg {
            v["signAlgorithm"] = a.into();
        }
        match parse(&v.to_string()) {
            Ok(Message::Call(c)) => c,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn signatures_by_the_site_pass_and_others_are_refused() {
        let site = SiteCert::from_pem(CERT).expect("cert");
        assert!(site.is(CERT) && !site.is(OTHER) && !site.is("junk"));
        let key = include_str!("../../tests/fixtures/qz/site-key.pem");
        let other = include_str!("../../tests/fixtures/qz/other-key.pem");
        let now = 1_733_250_000_000u64;
        let text = call("printers.find", None, None, now).signed;
        for (alg, name) in [("sha512", "SHA512"), ("sha1", "SHA1"), ("sha256", "sha256")] {
            let good = sign(key, alg, &text);
            assert_eq!(
                site.check(
                    &call("printers.find", Some(&good), Some(name), now),
                    now as f64
                ),
                Ok(())
            );
            let forged = sign(other, alg, &text);
            let e = site.check(
                &call("printers.find", Some(&forged), Some(name), now),
                now as f64,
            );
            assert!(e.is_err_and(|e| e.contains("invalid signature")));
        }
        // Pre-signed calls carry no signAlgorithm: SHA-1.
        let sha1 = sign(key, "sha1", &text);
        assert_eq!(
            site.check(&call("printers.find", Some(&sha1), None, now), now as f64),
            Ok(())
        );
        // A signature for other params does not fit these.
        let e = site.check(&call("print", Some(&sha1), None, now), now as f64);
        assert!(e.is_err_and(|e| e.contains("invalid signature")));
    }

    #[test]
    fn unsigned_stale_and_unknown_algorithms_are_refused_with_reasons() {
        let site = SiteCert::from_pem(CERT).expect("cert");
        let now = 1_733_250_000_000u64;
        assert_eq!(
            site.check(&call("getVersion", None, None, now), now as f64),
            Ok(())
        );
        assert_eq!(
            site.check(&call("printers.getStatus", None, None, now), now as f64),
            Ok(())
        );
        let e = site
            .check(&call("print", None, None, now), now as f64)
            .unwrap_err();
        assert!(e.contains("was not signed"), "{e}");
        let e = site
            .check(&call("print", Some(""), None, now), now as f64)
            .unwrap_err();
        assert!(e.contains("was not signed"), "{e}");
        let late = now + 16 * 60 * 1000;
        let e = site
            .check(&call("print", Some("c2ln"), None, now), late as f64)
            .unwrap_err();
        assert!(e.contains("16 minutes off"), "{e}");
        let e = site
            .check(&call("print", Some("c2ln"), Some("MD5"), now), now as f64)
            .unwrap_err();
        assert!(e.contains("\"MD5\""), "{e}");
        assert!(
            SiteCert::from_pem("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----")
                .is_err()
        );
        assert!(SiteCert::from_pem("nothing")
            .unwrap_err()
            .contains("no PEM certificate"));
    }
}
