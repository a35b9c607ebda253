//! wss:// and https:// on localhost (`api.tls = true`), for browsers that
//! refuse ws:// from an https page.
//!
//! A local CA and a leaf certificate for `localhost`, `127.0.0.1` and `::1`
//! live in `storage.dir/tls/` (keys mode 0600). The CA carries name
//! constraints (localhost, 127.0.0.0/8, ::1), so even if its key leaked it
//! could not vouch for any other site once trusted. The leaf is renewed when
//! it expires within `api.tls_renew_days`, at start and daily; the CA stays,
//! so a renewal needs no new `posbridge trust-cert`.

use rcgen::{
    BasicConstraints, CertificateParams, CidrSubnet, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, GeneralSubtree, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    NameConstraints,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use time::{Duration as TimeDelta, OffsetDateTime};

const CA_DAYS: i64 = 3650;
/// Below the 398 days browsers accept for a server certificate.
const LEAF_DAYS: i64 = 365;
/// The name `trust-cert` installs the CA under (NSS nickname, file name).
pub const CA_NAME: &str = "posbridge local CA";
pub const CA_FILE_NAME: &str = "posbridge-local-ca.crt";

#[derive(Clone, Serialize, Deserialize, Default)]
struct Meta {
    /// The CA's common name, unique per install; the leaf's issuer must match it.
    ca_cn: String,
    ca_not_after: i64,
    leaf_not_after: i64,
}

/// The current server config; swapped in place when the leaf is renewed.
pub struct TlsState {
    dir: PathBuf,
    renew_days: u64,
    config: RwLock<Arc<rustls::ServerConfig>>,
}

impl TlsState {
    /// Loads `dir` (storage.dir/tls), creating the CA and leaf when missing
    /// and renewing what is due.
    pub fn open(dir: &Path, renew_days: u64) -> Result<Arc<TlsState>, String> {
        ensure_certs(dir, renew_days, OffsetDateTime::now_utc())?;
        let config = server_config(dir)?;
        Ok(Arc::new(TlsState {
            dir: dir.to_owned(),
            renew_days,
            config: RwLock::new(config),
        }))
    }

    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        let cfg = self
            .config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        tokio_rustls::TlsAcceptor::from(cfg)
    }

    /// Renews the leaf if it is due; new connections use the new one.
    pub fn renew_if_due(&self) -> Result<bool, String> {
        let renewed = ensure_certs(&self.dir, self.renew_days, OffsetDateTime::now_utc())?;
        if renewed {
            let cfg = server_config(&self.dir)?;
            *self.config.write().unwrap_or_else(|p| p.into_inner()) = cfg;
        }
        Ok(renewed)
    }
}

pub fn ca_path(dir: &Path) -> PathBuf {
    dir.join("ca.pem")
}

fn ca_params(cn: &str, now: OffsetDateTime) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn.push(DnType::OrganizationName, "posbridge");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.name_constraints = Some(NameConstraints {
        permitted_subtrees: vec![
            GeneralSubtree::DnsName("localhost".into()),
            GeneralSubtree::IpAddress(CidrSubnet::V4([127, 0, 0, 0], [255, 0, 0, 0])),
            GeneralSubtree::IpAddress(CidrSubnet::V6(
                std::net::Ipv6Addr::LOCALHOST.octets(),
                [0xff; 16],
            )),
        ],
        excluded_subtrees: vec![],
    });
    p.not_before = now - TimeDelta::days(1);
    p.not_after = now + TimeDelta::days(CA_DAYS);
    p
}

/// When the local HTTPS certificate in `dir` expires (Unix seconds), if
/// one was made.
pub fn leaf_not_after(dir: &Path) -> Option<i64> {
    let meta: Meta = serde_json::from_str(&read(dir, "state.json").ok()?).ok()?;
    (meta.leaf_not_after > 0).then_some(meta.leaf_not_after)
}

fn read(dir: &Path, name: &str) -> Result<String, String> {
    let path = dir.join(name);
    std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Writes via a temp file and rename, so a crash never leaves half a key;
/// `secret` files are 0600 from the start.
fn write(dir: &Path, name: &str, text: &str, secret: bool) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp"));
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(if secret { 0o600 } else { 0o644 })
        .open(&tmp)
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, &path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Creates or renews what is missing or due at `now`; `Ok(true)` when the
/// leaf changed.
// Over 80 lines: create-or-reuse of the CA and leaf in one place, so the order of checks (CA first, leaf signed by it) stays visible.
fn ensure_certs(dir: &Path, renew_days: u64, now: OffsetDateTime) -> Result<bool, String> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    let renew_at = now.unix_timestamp() + renew_days as i64 * 86_400;
    let meta: Option<Meta> = read(dir, "state.json")
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    let ca_key = read(dir, "ca.key")
        .ok()
        .and_then(|k| KeyPair::from_pem(&k).ok());
    let (meta, ca_key) = match (meta, ca_key) {
        (Some(m), Some(k)) if m.ca_not_after > renew_at && dir.join("ca.pem").exists() => (m, k),
        _ => {
            // A new CA: the old one (if any) is no longer trusted by anything
            // we sign, so `trust-cert` must run again.
            let key = KeyPair::generate().map_err(|e| format!("generating the CA key: {e}"))?;
            let cn = format!("{CA_NAME} {}", ulid::Ulid::new());
            let params = ca_params(&cn, now);
            let cert = params
                .self_signed(&key)
                .map_err(|e| format!("creating the CA: {e}"))?;
            write(dir, "ca.key", &key.serialize_pem(), true)?;
            write(dir, "ca.pem", &cert.pem(), false)?;
            tracing::warn!(
                path = %dir.join("ca.pem").display(),
                "created a new local CA for wss://; run `posbridge trust-cert` so browsers accept it"
            );
            let meta = Meta {
                ca_cn: cn,
                ca_not_after: params.not_after.unix_timestamp(),
                leaf_not_after: 0,
            };
            (meta, key)
        }
    };
    let leaf_ok = meta.leaf_not_after > renew_at
        && dir.join("cert.pem").exists()
        && dir.join("key.pem").exists();
    if leaf_ok {
        return Ok(false);
    }
    let mut leaf = CertificateParams::new(vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ])
    .map_err(|e| format!("certificate names: {e}"))?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "posbridge localhost");
    leaf.distinguished_name = dn;
    leaf.is_ca = IsCa::ExplicitNoCa;
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.use_authority_key_identifier_extension = true;
    leaf.not_before = now - TimeDelta::days(1);
    // Never past the CA: a chain is only as valid as its shortest link.
    let leaf_end = (now + TimeDelta::days(LEAF_DAYS)).unix_timestamp();
    leaf.not_after = OffsetDateTime::from_unix_timestamp(leaf_end.min(meta.ca_not_after))
        .map_err(|e| format!("certificate expiry: {e}"))?;
    let issuer = Issuer::new(ca_params(&meta.ca_cn, now), ca_key);
    let key = KeyPair::generate().map_err(|e| format!("generating the server key: {e}"))?;
    let cert = leaf
        .signed_by(&key, &issuer)
        .map_err(|e| format!("signing the server certificate: {e}"))?;
    // Key and certificate are two files: mark the leaf invalid first, so a
    // crash between the two writes means "issue again" at the next start,
    // never a key that does not match its certificate.
    let invalid = Meta {
        leaf_not_after: 0,
        ..meta.clone()
    };
    let text = serde_json::to_string(&invalid).map_err(|e| format!("state.json: {e}"))?;
    write(dir, "state.json", &text, false)?;
    write(dir, "key.pem", &key.serialize_pem(), true)?;
    write(dir, "cert.pem", &cert.pem(), false)?;
    let meta = Meta {
        leaf_not_after: leaf.not_after.unix_timestamp(),
        ..meta
    };
    let text = serde_json::to_string(&meta).map_err(|e| format!("state.json: {e}"))?;
    write(dir, "state.json", &text, false)?;
    tracing::info!(
        expires = %leaf.not_after,
        "issued the localhost certificate for wss://"
    );
    Ok(true)
}

fn server_config(dir: &Path) -> Result<Arc<rustls::ServerConfig>, String> {
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    let cert = CertificateDer::from_pem_file(&cert_path)
        .map_err(|e| format!("{}: {e}", cert_path.display()))?;
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .map_err(|e| format!("{}: {e}", key_path.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .map_err(|e| format!("{}: {e}", cert_path.display()))?;
    // HTTP/1.1 only: WebSocket upgrades need it, and it is all we serve.
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Where `trust-cert` puts the CA.
pub struct TrustTargets {
    /// Directory for `update-ca-certificates` (normally
    /// /usr/local/share/ca-certificates); `None` skips the system store.
    pub system_dir: Option<PathBuf>,
    /// The command that rebuilds the system store after the copy.
    pub update_command: Option<String>,
    /// NSS databases (Chromium's ~/.pki/nssdb, Firefox profiles).
    pub nss_dbs: Vec<PathBuf>,
    /// The user (uid, gid) whose NSS databases these are, when root installs
    /// for them: certutil then runs as that user, so the files it creates
    /// are theirs and nothing in their home is written with root's rights
    /// (a symlink planted there cannot aim a write at /etc).
    pub nss_owner: Option<(u32, u32)>,
}

/// The NSS databases of the user whose home is `home`: Chromium's (created
/// when missing, as Chromium itself would) and every Firefox profile.
pub fn nss_dbs_in(home: &Path) -> Vec<PathBuf> {
    let mut dbs = vec![home.join(".pki/nssdb")];
    for base in [".mozilla/firefox", "snap/firefox/common/.mozilla/firefox"] {
        if let Ok(rd) = std::fs::read_dir(home.join(base)) {
            let mut profiles: Vec<PathBuf> = rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.join("cert9.db").exists())
                .collect();
            profiles.sort();
            dbs.extend(profiles);
        }
    }
    dbs
}

fn run(cmd: &mut std::process::Command) -> Result<(), String> {
    run_with_input(cmd, None)
}

/// Runs `cmd` to the end with `input` on its stdin; `Err` quotes its stderr.
fn run_with_input(cmd: &mut std::process::Command, input: Option<&[u8]>) -> Result<(), String> {
    use std::process::Stdio;
    let shown = format!("{cmd:?}");
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("{shown}: {e}"))?;
    if let (Some(data), Some(mut stdin)) = (input, child.stdin.take()) {
        use std::io::Write;
        // A command that exits early says why on stderr, below.
        let _ = stdin.write_all(data);
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("{shown}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{shown}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Installs the CA at `ca` into every target; one line per target saying
/// what happened. `Err` when any target failed.
pub fn trust(ca: &Path, targets: &TrustTargets) -> Result<Vec<String>, Vec<String>> {
    let pem = std::fs::read_to_string(ca).map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::PermissionDenied {
            "the service keeps it private: run `sudo posbridge trust-cert`, which installs it \
             for the user running sudo too"
        } else {
            "start the daemon once with api.tls = true to create it"
        };
        vec![format!("{}: {e} ({hint})", ca.display())]
    })?;
    if CertificateDer::from_pem_slice(pem.as_bytes()).is_err() {
        return Err(vec![format!("{}: not a PEM certificate", ca.display())]);
    }
    let mut done = Vec::new();
    let mut failed = Vec::new();
    if let Some(dir) = &targets.system_dir {
        let dest = dir.join(CA_FILE_NAME);
        let r = std::fs::create_dir_all(dir)
            .and_then(|()| std::fs::write(&dest, &pem))
            .map_err(|e| format!("{}: {e}", dest.display()))
            .and_then(|()| match &targets.update_command {
                Some(c) => run(&mut std::process::Command::new(c)),
                None => Ok(()),
            });
        match r {
            Ok(()) => done.push(format!("system store: {}", dest.display())),
            Err(e) => failed.push(format!("system store: {e}")),
        }
    }
    if !targets.nss_dbs.is_empty() {
        let certutil_ok = std::process::Command::new("certutil")
            .arg("-H")
            .output()
            .is_ok();
        if !certutil_ok {
            failed.push(
                "NSS (Chromium, Firefox): certutil not found; install libnss3-tools and run again"
                    .into(),
            );
        } else {
            for db in &targets.nss_dbs {
                let owner = targets.nss_owner.or_else(|| owner_as_root(db));
                match trust_nss(db, &pem, owner) {
                    Ok(()) => done.push(format!("NSS database: {}", db.display())),
                    Err(e) => failed.push(format!("NSS database {}: {e}", db.display())),
                }
            }
        }
    }
    if failed.is_empty() {
        Ok(done)
    } else {
        failed.extend(done);
        Err(failed)
    }
}

/// Run as root for no named user: a database in a directory someone else
/// owns (a user's home given with --home or --nss-db) is still theirs, and
/// certutil must not run as root there: it loads the PKCS#11 modules the
/// db's pkcs11.txt names, and writes through links planted in it.
fn owner_as_root(db: &Path) -> Option<(u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    if !nix::unistd::geteuid().is_root() {
        return None;
    }
    // The nearest part of the path that exists, not followed if a link.
    let m = db
        .ancestors()
        .find_map(|p| std::fs::symlink_metadata(p).ok())?;
    (m.uid() != 0).then(|| {
        let gid = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(m.uid()))
            .ok()
            .flatten()
            .map_or(m.gid(), |u| u.gid.as_raw());
        (m.uid(), gid)
    })
}

/// `program`, run as `owner` when there is one (std drops root's
/// supplementary groups with the uid).
fn command(program: &str, owner: Option<(u32, u32)>) -> std::process::Command {
    let mut c = std::process::Command::new(program);
    if let Some((uid, gid)) = owner {
        use std::os::unix::process::CommandExt;
        c.uid(uid).gid(gid);
    }
    c
}

fn trust_nss(db: &Path, pem: &str, owner: Option<(u32, u32)>) -> Result<(), String> {
    let spec = format!("sql:{}", db.display());
    if !db.join("cert9.db").exists() {
        run(command("mkdir", owner).arg("-p").arg(db))?;
        run(command("certutil", owner).args(["-N", "-d", &spec, "--empty-password"]))?;
    }
    // A CA from an earlier install goes first, so the name is unambiguous
    // (a few at most: more means something keeps adding them).
    for _ in 0..8 {
        if run(command("certutil", owner).args(["-D", "-d", &spec, "-n", CA_NAME])).is_err() {
            break;
        }
    }
    // The CA goes in on stdin: the user certutil runs as cannot read
    // storage.dir, where it lives.
    run_with_input(
        command("certutil", owner).args(["-A", "-a", "-d", &spec, "-t", "C,,", "-n", CA_NAME]),
        Some(pem.as_bytes()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_leaf_is_renewed_when_due_and_the_ca_kept() {
        let dir = tempfile::tempdir().expect("tmp");
        let now = OffsetDateTime::now_utc();
        assert!(ensure_certs(dir.path(), 30, now).expect("create"));
        let ca = std::fs::read_to_string(dir.path().join("ca.pem")).expect("ca");
        let cert = std::fs::read_to_string(dir.path().join("cert.pem")).expect("cert");
        assert!(
            !ensure_certs(dir.path(), 30, now).expect("again"),
            "not due yet"
        );
        // 340 days on, the 365-day leaf is within 30 days of expiry.
        let later = now + TimeDelta::days(340);
        assert!(ensure_certs(dir.path(), 30, later).expect("renew"));
        assert_ne!(
            std::fs::read_to_string(dir.path().join("cert.pem")).expect("c"),
            cert
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("ca.pem")).expect("c"),
            ca
        );
        use std::os::unix::fs::PermissionsExt;
        for k in ["ca.key", "key.pem"] {
            let mode = std::fs::metadata(dir.path().join(k))
                .expect("m")
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "{k} is private");
        }
        server_config(dir.path()).expect("rustls accepts the pair");
    }
}
