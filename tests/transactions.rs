//! The durable outbox: 202 only once a transaction is on disk, idempotency by
//! id, the 400/409/413/507 cases, group commit, SIGKILL, and a damaged store.

use crate::common::*;
use serde_json::{json, Value};
use std::process::{Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_posbridge");

fn tx(id: &str) -> Value {
    json!({"id": id, "type": "recharge", "member": "M000123", "amount_fen": 10000})
}

#[tokio::test]
async fn accepted_transactions_survive_sigkill_and_concurrent_posts_share_commits() {
    let dir = tempfile::tempdir().expect("tmp");
    let state = dir.path().join("state");
    let p = Binary::start(&state, "", &[]).await;
    let http = reqwest::Client::new();
    let n = 300;
    let mut tasks = Vec::new();
    for i in 0..n {
        let (http, url) = (http.clone(), p.url.clone());
        tasks.push(tokio::spawn(async move {
            let r = http
                .post(format!("{url}/v1/transactions"))
                .json(&tx(&format!("t-{i:04}")))
                .send()
                .await
                .expect("post");
            r.status().as_u16()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.expect("join"), 202);
    }
    let up: Value = p.get_json("/v1/uplink").await;
    assert_eq!(up["backlog"].as_u64(), Some(n));
    let commits = up["commits_total"].as_u64().expect("commits");
    assert!(
        commits < n,
        "{n} concurrent posts were group-committed into {commits} commits"
    );

    // Power cut: no shutdown, no flush.
    p.kill();
    let p = Binary::start(&state, "", &[]).await;
    let up: Value = p.get_json("/v1/uplink").await;
    assert_eq!(
        up["backlog"].as_u64(),
        Some(n),
        "every accepted transaction is still there"
    );
    assert!(up["oldest_queued_at"].is_string());
    for i in [0, 1, n / 2, n - 1] {
        let v: Value = p.get_json(&format!("/v1/transactions/t-{i:04}")).await;
        assert_eq!(v["state"], "queued", "{v}");
        assert_eq!(v["attempts"], 0);
    }
    p.kill();
}

#[tokio::test]
async fn idempotency_and_bad_requests() {
    let d = Daemon::start(&sim_config("")).await;
    let post = |body: String| {
        d.http
            .post(d.url("/v1/transactions"))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let r = post(tx("a-1").to_string()).await.expect("r");
    assert_eq!(r.status(), 202);
    let v: Value = r.json().await.expect("json");
    assert_eq!(
        (v["id"].as_str(), v["state"].as_str()),
        (Some("a-1"), Some("queued"))
    );
    // The same body again, even with its keys in another order: 200 and its state.
    let r = post(
        r#"{"amount_fen": 10000, "member": "M000123", "type": "recharge", "id": "a-1"}"#.into(),
    )
    .await
    .expect("r");
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.expect("json")["state"], "queued");
    // Another body with the same id: 409.
    let r = post(json!({"id": "a-1", "amount_fen": 1}).to_string())
        .await
        .expect("r");
    assert_eq!(r.status(), 409);
    assert_eq!(
        r.json::<Value>().await.expect("json")["error"]["code"],
        "id_conflict"
    );
    // 400s: not an object, no id, an id too long, broken JSON.
    for body in [
        "[1,2]".to_owned(),
        json!({"amount": 1}).to_string(),
        json!({"id": "x".repeat(129)}).to_string(),
        json!({"id": 7}).to_string(),
        "{broken".into(),
    ] {
        let r = post(body.clone()).await.expect("r");
        assert_eq!(r.status(), 400, "{body}");
        assert!(r.json::<Value>().await.expect("json")["error"]["message"].is_string());
    }
    // Over 256 KiB: 413.
    let big = json!({"id": "big", "blob": "x".repeat(300 * 1024)}).to_string();
    let r = post(big).await.expect("r");
    assert_eq!(r.status(), 413);
    assert_eq!(
        r.json::<Value>().await.expect("json")["error"]["code"],
        "too_large"
    );
    // GET: known and unknown ids.
    assert_eq!(d.get_json("/v1/transactions/a-1").await["state"], "queued");
    let r = d
        .http
        .get(d.url("/v1/transactions/nope"))
        .send()
        .await
        .expect("r");
    assert_eq!(r.status(), 404);
    d.stop().await;
}

#[tokio::test]
async fn a_full_backlog_refuses_new_transactions_with_507_and_drops_nothing() {
    let d = Daemon::start(&sim_config("[storage]\nmax_backlog = 3")).await;
    let mut ws = d.ws("/v1/events?types=uplink.status").await;
    for i in 0..3 {
        let r = d
            .http
            .post(d.url("/v1/transactions"))
            .json(&tx(&format!("f-{i}")))
            .send()
            .await
            .expect("r");
        assert_eq!(r.status(), 202);
    }
    let r = d
        .http
        .post(d.url("/v1/transactions"))
        .json(&tx("f-3"))
        .send()
        .await
        .expect("r");
    assert_eq!(r.status(), 507);
    assert_eq!(
        r.json::<Value>().await.expect("json")["error"]["code"],
        "backlog_full"
    );
    let ev = next_event(&mut ws).await;
    assert_eq!(ev["data"]["backlog"].as_u64(), Some(3));
    assert!(ev["data"]["last_error"]
        .as_str()
        .unwrap_or("")
        .contains("backlog full"));
    // A retry of a queued one is still answered; nothing queued was dropped.
    let r = d
        .http
        .post(d.url("/v1/transactions"))
        .json(&tx("f-0"))
        .send()
        .await
        .expect("r");
    assert_eq!(r.status(), 200);
    assert_eq!(d.get_json("/v1/uplink").await["backlog"].as_u64(), Some(3));
    let r = d
        .http
        .get(d.url("/v1/transactions/f-3"))
        .send()
        .await
        .expect("r");
    assert_eq!(r.status(), 404, "the refused one was not stored");
    d.stop().await;
}

#[tokio::test]
async fn a_clean_stop_leaves_every_transaction_in_outbox_db_alone() {
    let dir = tempfile::tempdir().expect("tmp");
    let state = dir.path().join("state");
    let p = Binary::start(&state, "", &[]).await;
    let http = reqwest::Client::new();
    for i in 0..40 {
        let r = http
            .post(format!("{}/v1/transactions", p.url))
            .json(&tx(&format!("c-{i:02}")))
            .send()
            .await
            .expect("post");
        assert_eq!(r.status(), 202);
    }
    let log = p.stop_and_log();
    let wal = std::fs::metadata(state.join("outbox.db-wal")).map_or(0, |m| m.len());
    assert_eq!(wal, 0, "the WAL is folded in at a clean stop\n{log}");
    assert!(!log.contains("could not close the outbox"), "{log}");
    // The one file alone, as a backup would copy it, holds all of them.
    let copy = dir.path().join("backup.db");
    std::fs::copy(state.join("outbox.db"), &copy).expect("copy");
    let c = rusqlite::Connection::open(&copy).expect("open copy");
    let n: i64 = c
        .query_row("SELECT COUNT(*) FROM tx WHERE id LIKE 'c-%'", [], |r| {
            r.get(0)
        })
        .expect("count");
    assert_eq!(n, 40);
}

#[tokio::test]
async fn a_damaged_store_is_set_aside_reported_and_the_daemon_still_starts() {
    let dir = tempfile::tempdir().expect("tmp");
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).expect("dir");
    std::fs::write(
        state.join("outbox.db"),
        b"this is not a database at all, just garbage bytes ".repeat(100),
    )
    .expect("garbage");
    let p = Binary::start(&state, "", &[]).await;
    let http = reqwest::Client::new();
    let up: Value = p.get_json("/v1/uplink").await;
    let why = up["last_error"].as_str().unwrap_or("");
    assert!(why.contains("damaged") && why.contains("corrupt"), "{up}");
    let aside = std::fs::read_dir(&state)
        .expect("ls")
        .filter_map(Result::ok)
        .any(|e| e.file_name().to_string_lossy().contains(".corrupt-"));
    assert!(aside, "the damaged file is kept for inspection");
    let r = http
        .post(format!("{}/v1/transactions", p.url))
        .json(&tx("after-damage"))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 202, "a fresh store takes new transactions");
    p.kill();

    // A store whose tail is torn off mid-file: what is intact is kept and relayed later.
    let state2 = dir.path().join("state2");
    let p = Binary::start(&state2, "", &[]).await;
    for i in 0..50 {
        let r = http
            .post(format!("{}/v1/transactions", p.url))
            .json(&tx(&format!("k-{i}")))
            .send()
            .await
            .expect("post");
        assert_eq!(r.status(), 202);
    }
    p.kill();
    let wal = state2.join("outbox.db-wal");
    if let Ok(meta) = std::fs::metadata(&wal) {
        // Tear the write-ahead log: SQLite must keep every frame before the tear.
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&wal)
            .expect("open wal");
        f.set_len(meta.len() / 2).expect("truncate");
    }
    let p = Binary::start(&state2, "", &[]).await;
    let up: Value = p.get_json("/v1/uplink").await;
    let kept = up["backlog"].as_u64().expect("backlog");
    assert!(kept <= 50, "{up}");
    let r = http
        .post(format!("{}/v1/transactions", p.url))
        .json(&tx("k-new"))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 202);
    p.kill();
}

#[tokio::test]
async fn a_store_locked_by_another_process_is_never_set_aside_as_corrupt() {
    let dir = tempfile::tempdir().expect("tmp");
    let state = dir.path().join("state");
    let p = Binary::start(&state, "", &[]).await;
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{}/v1/transactions", p.url))
        .json(&tx("keep-me"))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 202);
    p.kill();

    // Someone (a backup job, an admin's sqlite3) holds the database exclusively.
    let locker = rusqlite::Connection::open(state.join("outbox.db")).expect("open");
    locker
        .execute_batch("PRAGMA locking_mode=EXCLUSIVE; BEGIN EXCLUSIVE;")
        .expect("lock");
    let cfg = state.with_extension("toml");
    let out = tokio::task::spawn_blocking(move || {
        let mut child = Command::new(BIN)
            .args(["run", "--config"])
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        // Either it starts (and waits for the lock on writes) or it refuses with a clear error;
        // give it the busy timeout, then stop it.
        std::thread::sleep(Duration::from_secs(7));
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = child.wait();
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut err);
        }
        err
    })
    .await
    .expect("join");
    let set_aside = std::fs::read_dir(&state)
        .expect("ls")
        .filter_map(Result::ok)
        .any(|e| e.file_name().to_string_lossy().contains("corrupt"));
    assert!(!set_aside, "a locked store was treated as damaged:\n{out}");
    drop(locker);
    // Lock released: the transaction is where it was.
    let p = Binary::start(&state, "", &[]).await;
    let v: Value = p.get_json("/v1/transactions/keep-me").await;
    assert_eq!(v["state"], "queued", "{v}");
    p.kill();
}
