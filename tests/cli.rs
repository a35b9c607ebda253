//! The `posbridge` binary: config errors stop start-up and name the key,
//! `check-config` lists every problem, SIGTERM stops it cleanly and quickly,
//! `simulate` feeds a running daemon.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_posbridge");

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write config");
    p
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

const BAD: &str = r#"
[store]
id = "store 1"
[api]
listen = "127.0.0.1:8731"
allowed_origins = ["https://pos.example.com/"]
[[device]]
id = "a"
driver = "barcode"
transport = "sim"
[[device]]
id = "b"
driver = "barcode"
path = "/dev/ttyUSB0"
baud = "fast"
[[device]]
id = "c"
driver = "barcode"
transport = "sim"
colour = "red"
"#;

#[test]
fn check_config_prints_every_problem_with_its_key_and_exits_1() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = write(dir.path(), "bad.toml", BAD);
    let out = Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(&path)
        .env_remove("RUST_LOG")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for want in [
        "store.id: must be",
        "api.allowed_origins[0]:",
        "device[1].baud: invalid type: string \"fast\", expected an integer",
        "device[2].colour: unknown field `colour`",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
    assert!(err.contains("4 problems"), "{err}");
}

#[test]
fn run_refuses_to_start_on_a_bad_config_and_names_the_key() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = write(dir.path(), "bad.toml", BAD);
    let out = Command::new(BIN)
        .args(["run", "--config"])
        .env("POSBRIDGE__STORAGE__DIR", dir.path().join("state"))
        .arg(&path)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("device[1].baud"), "{err}");
    assert!(err.contains("not starting"), "{err}");
    // Garbage that is not TOML at all.
    let path = write(dir.path(), "garbage.toml", "\u{0}\u{1}[[[ store = ");
    let out = Command::new(BIN)
        .args(["run", "--config"])
        .env("POSBRIDGE__STORAGE__DIR", dir.path().join("state"))
        .arg(&path)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not valid TOML"));
    // A missing file.
    let out = Command::new(BIN)
        .args(["run", "--config", "/nonexistent/posbridge.toml"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read the config file"));
}

#[test]
fn environment_overrides_apply_and_are_checked() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = write(dir.path(), "ok.toml", "[store]\nid = \"s1\"\n[[device]]\nid = \"d\"\ndriver = \"barcode\"\npath = \"/dev/ttyS9\"\n");
    let ok = Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(&path)
        .env("POSBRIDGE__DEVICE__0__BAUD", "115200")
        .output()
        .expect("run");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let bad = Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(&path)
        .env("POSBRIDGE__API__LISTEN", "0.0.0.0:9000")
        .env("POSBRIDGE__API__LISTN", "x")
        .output()
        .expect("run");
    assert_eq!(bad.status.code(), Some(1));
    let err = String::from_utf8_lossy(&bad.stderr);
    // Both, each blamed on its variable (issue 19: the unknown key had hidden the address).
    assert!(
        err.contains("api.listn (from POSBRIDGE__API__LISTN): unknown field"),
        "{err}"
    );
    assert!(
        err.contains(
            "api.listen (from POSBRIDGE__API__LISTEN): 0.0.0.0:9000 is not a loopback address"
        ),
        "{err}"
    );
}

#[test]
fn sigterm_stops_the_daemon_cleanly_and_quickly_and_simulate_feeds_it() {
    let dir = tempfile::tempdir().expect("tmp");
    let port = free_port();
    let cfg = format!(
        "[store]\nid = \"s1\"\n[api]\nlisten = \"127.0.0.1:{port}\"\n[log]\nlevel = \"info\"\n[[device]]\nid = \"scan-1\"\ndriver = \"barcode\"\ntransport = \"sim\"\n"
    );
    let path = write(dir.path(), "ok.toml", &cfg);
    let mut child = Command::new(BIN)
        .args(["run", "--config"])
        .env("POSBRIDGE__STORAGE__DIR", dir.path().join("state"))
        .arg(&path)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // Wait until it answers.
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "daemon did not start listening");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = Command::new(BIN)
        .args(["simulate", "scan-1", "M000123", "--config"])
        .arg(&path)
        .output()
        .expect("simulate");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(BIN)
        .args([
            "simulate",
            "nope",
            "x",
            "--url",
            &format!("http://127.0.0.1:{port}"),
        ])
        .output()
        .expect("simulate");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown_device"));

    let t = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("kill");
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "daemon did not stop within 5 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "exit status {status}");
    let mut log = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut log)
        .expect("read");
    let mut out = String::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut out)
        .expect("read");
    log.push_str(&out);
    // Issue 19: the first line says what runs, from which file, where to reach it.
    let first = log.lines().next().unwrap_or_default();
    for fact in [
        "posbridge starting",
        &format!("version={}", env!("CARGO_PKG_VERSION")),
        &format!("config={}", path.display()),
        &format!("api=http://127.0.0.1:{port}/"),
    ] {
        assert!(first.contains(fact), "first line lacks {fact:?}: {first}");
    }
    for fact in [
        "posbridge started",
        "device attached",
        "SIGTERM received",
        "posbridge stopped",
    ] {
        assert!(log.contains(fact), "log lacks {fact:?}:\n{log}");
    }
    // Scanned text is member data, not a secret, but tokens and card data never appear.
    assert!(
        !log.contains("M000123"),
        "scanned codes are not logged:\n{log}"
    );
}

#[test]
fn a_config_others_can_write_is_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod dir");
    let path = write(dir.path(), "ok.toml", "[store]\nid = \"s1\"\n");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let out = Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .expect("run");
    assert!(out.status.success());
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("warning"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    let out = Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .expect("run");
    assert!(out.status.success(), "a warning, not an error");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("writable by other users") && err.contains("chmod go-w"),
        "{err}"
    );
}

/// Issue 19: `doctor --json` says whether the daemon answers on its API and
/// whether `storage.dir` is writable, as one JSON object.
#[tokio::test]
async fn doctor_json_says_whether_the_daemon_answers_and_storage_is_writable() {
    let dir = tempfile::tempdir().expect("tmp");
    let state = dir.path().join("state");
    let p = crate::common::Binary::start(&state, "", &[]).await;
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).expect("mkdir");
    let doctor = || {
        let out = Command::new(BIN)
            .args(["doctor", "--json", "--config"])
            .arg(state.with_extension("toml"))
            .arg("--sysfs")
            .arg(&empty)
            .arg("--dev")
            .arg(&empty)
            .arg("--rules-dir")
            .arg(&empty)
            .args(["--user", &whoami()])
            .output()
            .expect("doctor");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
        (out.status.code(), v)
    };
    let finding = |v: &serde_json::Value, starts: &str| {
        v["findings"]
            .as_array()
            .expect("findings")
            .iter()
            .find(|f| f["what"].as_str().is_some_and(|w| w.starts_with(starts)))
            .unwrap_or_else(|| panic!("no finding {starts:?} in {v:#}"))
            .clone()
    };
    let (_, v) = doctor();
    let port = p.url.rsplit(':').next().unwrap_or_default().to_owned();
    let api = finding(&v, "the daemon answers");
    assert_eq!(api["level"], "ok", "{api}");
    assert!(
        api["what"]
            .as_str()
            .is_some_and(|w| w.contains(&format!("127.0.0.1:{port}/ (HTTP 200)"))),
        "{api}"
    );
    let shown = state.display();
    let storage = finding(
        &v,
        &format!("storage.dir {shown} is writable for user {}", whoami()),
    );
    assert_eq!(storage["level"], "ok", "{storage}");
    // Outside StateDirectory the unit's ProtectSystem=strict forbids writes.
    let outside = finding(
        &v,
        &format!("storage.dir {shown} is outside /var/lib/posbridge"),
    );
    assert_eq!(outside["level"], "problem", "{outside}");
    assert!(
        outside["fix"]
            .as_str()
            .is_some_and(|f| f.contains(&format!("ReadWritePaths={shown}"))),
        "{outside}"
    );
    assert!(v["problems"].as_u64().is_some(), "{v}");
    p.stop_and_log();
    let (code, v) = doctor();
    assert_eq!(code, Some(1));
    let api = finding(&v, "no daemon answers");
    assert_eq!(api["level"], "problem");
    assert!(
        api["fix"]
            .as_str()
            .is_some_and(|f| f.contains("systemctl start posbridge")),
        "{api}"
    );
}

fn whoami() -> String {
    nix::unistd::User::from_uid(nix::unistd::geteuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| "root".into())
}

/// Issue 19: `check-config --print` shows the config in effect: the file,
/// the environment's overrides, every default, and no secret.
#[test]
fn check_config_print_shows_the_config_in_effect_without_secrets() {
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = write(
        dir.path(),
        "c.toml",
        "[store]\nid = \"s\"\n[[api.tokens]]\nname = \"t\"\ntoken = \"0123456789abcdef0123456789abcdef\"\nscopes = [\"events\"]\n[[device]]\nid = \"a\"\ndriver = \"barcode\"\ntransport = \"sim\"\nsuffix = \"crlf\"\n[[device]]\nid = \"key-1\"\ndriver = \"dongle\"\ntransport = \"sim\"\nmatch = { vid = \"0529\", pid = \"0001\" }\ncheck = { hmac_key = \"feedfacecafebeef\" }\n[[device]]\nid = \"key-2\"\ndriver = \"dongle\"\ntransport = \"sim\"\nmatch = { vid = \"0529\", pid = \"0002\" }\ncheck = { challenge = \"c0ffee11\", response = \"deadbea7\" }\n[uplink]\nurl = \"mqtt://127.0.0.1:1883\"\nusername = \"u\"\npassword = \"hunter2-secret\"\n",
    );
    let print = |cfg: &Path| {
        let out = Command::new(BIN)
            .args(["check-config", "--print", "--config"])
            .arg(cfg)
            .env("POSBRIDGE__EVENTS__BUFFER", "2048")
            .output()
            .expect("check-config");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8")
    };
    let text = print(&cfg);
    let v: toml::Table = text.parse().expect("the print is TOML");
    assert_eq!(
        v["events"]["buffer"].as_integer(),
        Some(2048),
        "from the environment"
    );
    assert_eq!(
        v["api"]["listen"].as_str(),
        Some("127.0.0.1:8731"),
        "a default"
    );
    assert_eq!(
        v["storage"]["retain_days"].as_integer(),
        Some(7),
        "a default"
    );
    assert_eq!(
        v["device"][0]["suffix"].as_str(),
        Some("crlf"),
        "a family key"
    );
    assert_eq!(v["uplink"]["topic_prefix"].as_str(), Some("posbridge"));
    for secret in [
        "0123456789abcdef",
        "hunter2",
        "feedfacecafebeef",
        "c0ffee11",
        "deadbea7",
    ] {
        assert!(!text.contains(secret), "{text}");
    }
    assert_eq!(v["api"]["tokens"][0]["token"].as_str(), Some("(redacted)"));
    assert_eq!(v["uplink"]["password"].as_str(), Some("(redacted)"));
    // Without secrets, what it prints is itself a config that prints the same.
    let plain = write(
        dir.path(),
        "plain.toml",
        "[store]\nid = \"s\"\n[[device]]\nid = \"a\"\ndriver = \"barcode\"\ntransport = \"sim\"\n",
    );
    let once = print(&plain);
    let again = write(dir.path(), "again.toml", &once);
    assert_eq!(
        print(&again).lines().skip(1).collect::<Vec<_>>(),
        once.lines().skip(1).collect::<Vec<_>>()
    );
}

/// Issue 19: the manual pages and completions come from the CLI's own
/// definition: a page per command, completions bash can load.
#[test]
fn manual_pages_and_completions_are_generated_from_the_cli() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = Command::new(BIN)
        .arg("generate")
        .arg(dir.path())
        .output()
        .expect("generate");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let man = dir.path().join("man");
    for cmd in [
        "run",
        "check-config",
        "devices",
        "doctor",
        "simulate",
        "trust-cert",
        "udev-rules",
    ] {
        let page = man.join(format!("posbridge-{cmd}.8"));
        let text = std::fs::read_to_string(&page).unwrap_or_else(|e| panic!("{cmd}: {e}"));
        assert!(text.contains(".TH POSBRIDGE-"), "{cmd}: {text}");
    }
    assert!(
        !man.join("posbridge-generate.8").exists(),
        "hidden commands have no page"
    );
    // man renders it, with the commands and the options of one.
    let render = |page: &str| {
        // As man would, as plain text (-cbou: no colour, bold or underline).
        let out = Command::new("groff")
            .args(["-man", "-Tutf8", "-P-cbou", "-rLL=100n", "-ww"])
            .arg(man.join(page))
            .output()
            .expect("groff");
        assert!(
            out.stderr.is_empty(),
            "{page}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let main = render("posbridge.8");
    for want in [
        "posbridge-run(8)",
        "posbridge-doctor(8)",
        "/etc/posbridge/posbridge.toml",
    ] {
        assert!(main.contains(want), "{want}:\n{main}");
    }
    assert!(!main.contains("posbridge-help"), "{main}");
    let doctor = render("posbridge-doctor.8");
    assert!(
        doctor.contains("--json") && doctor.contains("--user"),
        "{doctor}"
    );
    // bash loads the completion and registers it for posbridge.
    let bash = dir.path().join("completions/posbridge");
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source {} && complete -p posbridge",
            bash.display()
        ))
        .output()
        .expect("bash");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for file in ["_posbridge", "posbridge.fish"] {
        let text = std::fs::read_to_string(dir.path().join("completions").join(file)).expect(file);
        assert!(
            text.contains("check-config") && text.contains("doctor"),
            "{file}"
        );
    }
}
