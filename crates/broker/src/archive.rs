//! The dead-letter archive: dead letters an operator has decided not to replay, moved out of
//! RabbitMQ into PostgreSQL's `dead_letter_archive` (created by the worker's migrations) with their
//! reason, headers and body, so the queues stay short and nothing is thrown away unseen.
//!
//! Each dead letter is acked only after its row is committed. A crash in between leaves the
//! message in the queue with its row already written; archiving it again finds the row by its
//! fingerprint (body, queue and last failure) and adds nothing, so a dead letter is archived once.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::dlq::{self, DeadLetter, DlqError, Filter, Taken};

/// Why archiving failed.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// Broker error: what was not archived yet stays in its queue.
    #[error(transparent)]
    Dlq(#[from] DlqError),
    /// Database error: the dead letter being archived stays in its queue.
    #[error("database error (has `hookline-worker migrate` created dead_letter_archive?)")]
    Database(#[from] tokio_postgres::Error),
}

impl From<lapin::Error> for ArchiveError {
    fn from(e: lapin::Error) -> Self {
        ArchiveError::Dlq(e.into())
    }
}

/// The identity of one dead-lettering of one message: replayed and dead-lettered again, it is a
/// new row.
pub fn fingerprint(taken: &Taken) -> String {
    let mut hash = Sha256::new();
    hash.update(&taken.body);
    hash.update(b"\n");
    hash.update(taken.dead.queue.as_bytes());
    hash.update(b"\n");
    hash.update(
        taken
            .dead
            .last_failure
            .map(|t| t.to_rfc3339())
            .unwrap_or_default()
            .as_bytes(),
    );
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes `taken` to the archive. With `erase`, the body and the payload are not stored (a
/// privacy request asked for them to be erased); the row still records that there was such a
/// dead letter and why. Returns `false` if it was archived before.
pub async fn insert(
    db: &tokio_postgres::Client,
    taken: &Taken,
    erase: bool,
) -> Result<bool, tokio_postgres::Error> {
    let envelope: Option<serde_json::Value> = serde_json::from_slice(&taken.body).ok();
    let payload = envelope.as_ref().map(|e| e["payload"].clone());
    let (body, payload) = if erase {
        (None, None)
    } else {
        (
            Some(String::from_utf8_lossy(&taken.body).into_owned()),
            payload,
        )
    };
    let d = &taken.dead;
    let inserted = db
        .execute(
            "INSERT INTO dead_letter_archive
                (fingerprint, queue, event_id, topic, shop_domain, reason, attempts, last_error, last_failure, headers, body, payload, redacted_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, CASE WHEN $13 THEN now() END)
             ON CONFLICT (fingerprint) DO NOTHING",
            &[
                &fingerprint(taken),
                &d.queue,
                &d.event_id,
                &d.topic,
                &d.shop,
                &d.reason,
                &i32::try_from(d.attempts).unwrap_or(i32::MAX),
                &d.last_error,
                &d.last_failure,
                &taken.headers,
                &body,
                &payload,
                &erase,
            ],
        )
        .await?;
    Ok(inserted == 1)
}

/// Moves the dead letters matching `filter` into the archive; returns them.
pub async fn archive(
    connection: &lapin::Connection,
    db: &tokio_postgres::Client,
    filter: &Filter,
) -> Result<Vec<DeadLetter>, ArchiveError> {
    dlq::take(
        connection,
        filter,
        |_, _| true,
        |taken| async move {
            insert(db, &taken, false).await?;
            Ok::<_, ArchiveError>(())
        },
    )
    .await
}

/// Deletes archived dead letters archived before `before`; returns how many.
pub async fn purge(
    db: &tokio_postgres::Client,
    before: DateTime<Utc>,
) -> Result<u64, tokio_postgres::Error> {
    db.execute(
        "DELETE FROM dead_letter_archive WHERE archived_at < $1",
        &[&before],
    )
    .await
}

/// Parses an age such as `30d`, `12h`, `90m` or `45s`.
pub fn parse_age(text: &str) -> Option<chrono::Duration> {
    let text = text.trim();
    let unit = text.chars().last()?;
    let number = &text[..text.len() - unit.len_utf8()];
    let n: i64 = number.parse().ok().filter(|n| *n >= 0)?;
    match unit.to_string().as_str() {
        "d" => chrono::Duration::try_days(n),
        "h" => chrono::Duration::try_hours(n),
        "m" => chrono::Duration::try_minutes(n),
        "s" => chrono::Duration::try_seconds(n),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_are_read_with_their_unit() {
        assert_eq!(parse_age("30d"), chrono::Duration::try_days(30));
        assert_eq!(parse_age("12h"), chrono::Duration::try_hours(12));
        assert_eq!(parse_age(" 90m "), chrono::Duration::try_minutes(90));
        assert_eq!(parse_age("0s"), Some(chrono::Duration::zero()));
        for bad in ["", "d", "30", "30w", "-1d", "1.5h", "ä", "1ä", "äd"] {
            assert_eq!(parse_age(bad), None, "{bad}");
        }
    }
}
