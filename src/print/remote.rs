//! Print jobs from HQ (`P/S/print`, contract §5): checked and rendered like
//! a page's, into the same durable queue, once per `job_id`. Every message
//! gets an outcome for HQ (`queued`, `printed`, `failed`, `expired`), stored
//! by the queue (queue.rs) for the relay to publish on `P/S/print/status`.

use super::queue::Remote;
use super::{Payload, Printers, SubmitError};
use posbridge_drivers::downlink::{BadJob, JobBody, PrintJob};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

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
        if let Some(local) = self.store.remote_known(&job.job_id).await? {
            tracing::info!(printer = %p.id, remote = %job.job_id, job = %local, "HQ sent a print job again; it is not printed twice");
            return self.store.announce_again(&local).await;
        }
        match job.expire_at.as_deref().map(expired).transpose() {
            Err(why) => return self.refuse(id, why).await,
            Ok(Some(true)) => {
                tracing::info!(printer = %p.id, remote = %job.job_id, "print job from HQ arrived expired");
                return self.store.outcome(id, "expired", None).await;
            }
            Ok(_) => {}
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
        tracing::warn!(remote = ?job_id, "print job from HQ refused: {why}");
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
