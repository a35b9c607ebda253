//! Print jobs from HQ (`P/S/print`, contract §5): checked and rendered like
//! a page's, into the same durable queue, once per `job_id`. Every message
//! gets an outcome for HQ (`queued`, `printed`, `failed`, `expired`), stored
//! by the queue (queue.rs) for the relay to publish on `P/S/print/status`.

use super::queue::Remote;
use super::{Payload, Printers, SubmitError};
use posbridge_drivers::downlink::{BadJob, JobBody, PrintJob};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// `why` with every double-quoted run replaced by `"…"`.
fn unquoted(why: &str) -> String {
    let mut out = String::with_capacity(why.len());
    let mut inside = false;
    for c in why.chars() {
        if c == '"' {
            if !inside {
                out.push_str("\"…");
            }
            inside = !inside;
            if !inside {
                out.push('"');
            }
        } else if !inside {
            out.push(c);
        }
    }
    out
}

/// Whether an RFC 3339 time has passed.
pub fn expired(at: &str) -> Result<bool, String> {
    OffsetDateTime::parse(at, &Rfc3339)
        .map(|t| t <= OffsetDateTime::now_utc())
        .map_err(|e| format!("expire_at {at:?} is not an RFC 3339 time ({e})"))
}

impl Printers {
    /// Takes one message from `P/S/print`. `Err` only when the queue could
    /// not store it: the message is then not acknowledged, and comes again.
    pub async fn take_remote(&self, job: Result<PrintJob, BadJob>) -> Result<(), String> {
        // A job_id taken before keeps its outcome, whatever this copy says.
        let known = match &job {
            Ok(j) => Some(j.job_id.as_str()),
            Err(bad) => bad.job_id.as_deref(),
        };
        if let Some(job_id) = known {
            if let Some(local) = self.store.remote_known(job_id).await? {
                tracing::info!(remote = %job_id, job = %local, "HQ sent a print job again; it is not printed twice");
                return self.store.announce_again(&local).await;
            }
        }
        let job = match job {
            Ok(j) => j,
            Err(bad) => return self.refuse(bad.job_id, bad.why).await,
        };
        let id = Some(job.job_id.clone());
        let Some(p) = self.get(&job.printer) else {
            let why = format!("unknown printer {:?}", job.printer);
            return self.refuse(id, why).await;
        };
        if !p.accept_remote {
            return self.refuse(id, "not accepted".into()).await;
        }
        match job.expire_at.as_deref().map(expired).transpose() {
            Err(why) => return self.refuse(id, why).await,
            Ok(Some(true)) => {
                tracing::info!(printer = %p.id, remote = %job.job_id, "print job from HQ arrived expired");
                return self.store.outcome(id, "expired", None).await;
            }
            Ok(_) => {}
        }
        if let JobBody::Document(d) = &job.what {
            if d.get("open_drawer").and_then(serde_json::Value::as_bool) == Some(true) {
                let why = "document.open_drawer: the cash drawer is not opened from HQ";
                return self.refuse(id, why.into()).await;
            }
        }
        let payload = match job.what {
            JobBody::Document(v) => Payload::Document(v),
            JobBody::Label(v) => Payload::Label(v),
            JobBody::Raw(b64) => Payload::Raw(b64),
        };
        let (kind, bytes) = match self.prepare(p, payload).await {
            Ok(x) => x,
            Err(SubmitError::Storage(e)) => return Err(e),
            Err(
                SubmitError::Bad(m) | SubmitError::TooLarge(m) | SubmitError::UnknownPrinter(m),
            ) => return self.refuse(id, m).await,
        };
        let local = ulid::Ulid::new().to_string();
        let r = self
            .store
            .insert_remote(
                local,
                p.id.clone(),
                kind,
                bytes,
                job.job_id.clone(),
                job.expire_at,
            )
            .await?;
        if let Remote::New(v) = r {
            tracing::info!(printer = %p.id, remote = %job.job_id, job = %v.job, "print job from HQ queued");
            p.wake.notify_one();
        }
        Ok(())
    }

    /// Answers a message that is not a job this store prints: `failed` with why.
    async fn refuse(&self, job_id: Option<String>, why: String) -> Result<(), String> {
        // Orders carry names and addresses, and parse errors quote values:
        // the log gets the reason with quoted text left out; HQ gets it whole.
        tracing::warn!(remote = ?job_id, "print job from HQ refused: {}", unquoted(&why));
        self.store.outcome(job_id, "failed", Some(why)).await
    }

    /// Wakes when an outcome for HQ is stored.
    pub fn status_stored(&self) -> &tokio::sync::Notify {
        &self.store.status_stored
    }

    /// Outcomes for HQ after `after`, oldest first, as (seq, payload).
    pub async fn statuses_after(
        &self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<(i64, String)>, String> {
        self.store.statuses_after(after, limit).await
    }

    /// The broker has these outcomes.
    pub async fn statuses_sent(&self, seqs: Vec<i64>) -> Result<(), String> {
        self.store.statuses_sent(seqs).await
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn quoted_text_stays_out_of_the_log() {
        assert_eq!(
            super::unquoted(
                r#"document.lines[0].text: invalid type: string "北京市朝阳区", expected x"#
            ),
            r#"document.lines[0].text: invalid type: string "…", expected x"#
        );
        assert_eq!(
            super::unquoted(r#"unknown printer "a"b"#),
            r#"unknown printer "…"b"#
        );
    }
}
