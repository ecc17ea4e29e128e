//! Idempotency: Redis is the fast path, PostgreSQL the truth.
//!
//! Before handling an envelope the worker claims its key in Redis with one atomic command
//! (`SET key processing:<event_id> NX GET EX <claim ttl>`): no GET-then-SET window. The answer
//! decides what happens:
//!
//! - claimed → handle it; afterwards `done` with a long TTL (or the claim is released on failure);
//! - `done` → a duplicate: ack without touching anything;
//! - `processing:<other event>` → someone is on it (or crashed on it): retry later, never in
//!   parallel. A stale claim expires with its TTL;
//! - `processing:<this event>` → a redelivery of this very message after the consumer that held
//!   it went away: take the claim over at once instead of waiting for the TTL.
//!
//! Redis keeps nothing on disk and may be flushed or down. That is why every effect's own
//! transaction also inserts the key into `processed_events` ([`record_in_transaction`]): a
//! duplicate that slips past Redis still commits nothing. With Redis down the worker carries on
//! on that guard alone, and says so (`hookline_worker_redis_available` = 0, one log line per
//! transition).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hookline_core::Envelope;
use redis::aio::ConnectionManager;

/// What a claim attempt found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This worker now holds the key.
    Claimed,
    /// The key was processed already.
    Done,
    /// Another delivery holds the key; retry after about this long.
    Busy {
        /// Remaining lifetime of the other claim, when Redis told us.
        retry_in: Option<Duration>,
    },
    /// Redis is unavailable: proceed on the PostgreSQL guard alone.
    Unavailable,
}

/// Redis claims for one worker process.
#[derive(Clone)]
pub struct Claims {
    redis: ConnectionManager,
    prefix: String,
    claim_ttl: Duration,
    done_ttl: Duration,
    /// Whether Redis answered last time, to log transitions once rather than per message.
    available: std::sync::Arc<AtomicBool>,
}

/// Compare-and-delete: release our claim only if it is still ours.
const RELEASE: &str = r"if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";

impl Claims {
    /// Connects lazily: a Redis that is down at start-up is not an error, only a slower path.
    pub fn new(
        redis_url: &str,
        prefix: &str,
        claim_ttl: Duration,
        done_ttl: Duration,
    ) -> Result<Self, redis::RedisError> {
        let client = redis::Client::open(redis_url)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_millis(500)))
            .set_response_timeout(Some(Duration::from_millis(500)))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(2));
        let redis = ConnectionManager::new_lazy_with_config(client, config)?;
        metrics::gauge!("hookline_worker_redis_available").set(1.0);
        Ok(Self {
            redis,
            prefix: prefix.to_owned(),
            claim_ttl,
            done_ttl,
            available: std::sync::Arc::new(AtomicBool::new(true)),
        })
    }

    /// The Redis key of an idempotency key.
    pub fn redis_key(&self, idempotency_key: &str) -> String {
        format!("{}:idem:{idempotency_key}", self.prefix)
    }

    fn claim_value(envelope: &Envelope) -> String {
        format!("processing:{}", envelope.event_id)
    }

    fn observe<T>(&self, result: redis::RedisResult<T>) -> Option<T> {
        match result {
            Ok(v) => {
                if !self.available.swap(true, Ordering::Relaxed) {
                    tracing::info!("Redis is back; idempotency claims use the fast path again");
                    metrics::gauge!("hookline_worker_redis_available").set(1.0);
                }
                Some(v)
            }
            Err(error) => {
                if self.available.swap(false, Ordering::Relaxed) {
                    tracing::warn!(%error, "Redis unavailable; idempotency rests on the PostgreSQL guard alone (slower)");
                    metrics::gauge!("hookline_worker_redis_available").set(0.0);
                }
                metrics::counter!("hookline_worker_redis_errors_total").increment(1);
                None
            }
        }
    }

    /// Claims the envelope's key.
    pub async fn claim(&self, envelope: &Envelope) -> Claim {
        let key = self.redis_key(envelope.idempotency_key.as_str());
        let mine = Self::claim_value(envelope);
        let mut redis = self.redis.clone();
        let previous: redis::RedisResult<Option<String>> = redis::cmd("SET")
            .arg(&key)
            .arg(&mine)
            .arg("NX")
            .arg("GET")
            .arg("EX")
            .arg(self.claim_ttl.as_secs())
            .query_async(&mut redis)
            .await;
        match self.observe(previous) {
            None => Claim::Unavailable,
            Some(None) => Claim::Claimed,
            Some(Some(value)) if value == "done" => Claim::Done,
            Some(Some(value)) if value == mine => {
                // Our own message again: whoever held it is gone (RabbitMQ redelivers only after
                // the consumer's channel closed). Renew the claim and carry on.
                let renewed: redis::RedisResult<()> = redis::cmd("SET")
                    .arg(&key)
                    .arg(&mine)
                    .arg("XX")
                    .arg("EX")
                    .arg(self.claim_ttl.as_secs())
                    .query_async(&mut redis)
                    .await;
                match self.observe(renewed) {
                    Some(()) => Claim::Claimed,
                    None => Claim::Unavailable,
                }
            }
            Some(Some(_)) => {
                let ttl: redis::RedisResult<i64> =
                    redis::cmd("PTTL").arg(&key).query_async(&mut redis).await;
                let retry_in = self
                    .observe(ttl)
                    .and_then(|ms| u64::try_from(ms).ok())
                    .map(Duration::from_millis);
                Claim::Busy { retry_in }
            }
        }
    }

    /// Marks the key done (after the effect committed, or was found committed). Best effort: if
    /// Redis misses it, the PostgreSQL guard still stops the next duplicate.
    pub async fn mark_done(&self, envelope: &Envelope) {
        let key = self.redis_key(envelope.idempotency_key.as_str());
        let mut redis = self.redis.clone();
        let result: redis::RedisResult<()> = redis::cmd("SET")
            .arg(&key)
            .arg("done")
            .arg("EX")
            .arg(self.done_ttl.as_secs())
            .query_async(&mut redis)
            .await;
        self.observe(result);
    }

    /// Releases our claim after a failure, so the retry (or another worker) can claim it.
    pub async fn release(&self, envelope: &Envelope) {
        let key = self.redis_key(envelope.idempotency_key.as_str());
        let mut redis = self.redis.clone();
        let result: redis::RedisResult<i64> = redis::Script::new(RELEASE)
            .key(&key)
            .arg(Self::claim_value(envelope))
            .invoke_async(&mut redis)
            .await;
        self.observe(result);
    }
}

/// Inserts the envelope's key into `processed_events`: inside the effect's transaction (the
/// inventory domain), or as the last step of a state machine whose steps are each committed on
/// their own (the orders domain).
///
/// Returns `false` when the key is already there: the effect must not be applied (roll back).
/// A concurrent transaction inserting the same key makes this wait for it to finish, then
/// return `false` if it committed: two workers racing on one key apply one effect.
pub async fn record<C: deadpool_postgres::GenericClient>(
    client: &C,
    envelope: &Envelope,
) -> Result<bool, tokio_postgres::Error> {
    let inserted = client
        .execute(
            "INSERT INTO processed_events (idempotency_key, event_id, topic, shop_domain, received_at)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (idempotency_key) DO NOTHING",
            &[
                &envelope.idempotency_key.as_str(),
                &envelope.event_id,
                &envelope.topic,
                &envelope.shop_domain,
                &envelope.received_at,
            ],
        )
        .await?;
    Ok(inserted == 1)
}

/// Whether `envelope`'s key is recorded as processed: checked first by handlers whose steps call
/// outside services, so a duplicate is answered before anything is called.
pub async fn is_recorded<C: deadpool_postgres::GenericClient>(
    client: &C,
    envelope: &Envelope,
) -> Result<bool, tokio_postgres::Error> {
    Ok(client
        .query_opt(
            "SELECT 1 FROM processed_events WHERE idempotency_key = $1",
            &[&envelope.idempotency_key.as_str()],
        )
        .await?
        .is_some())
}
