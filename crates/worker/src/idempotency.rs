//! Idempotency: Redis is the fast path, PostgreSQL the truth.
//!
//! Before handling an envelope the worker claims its key in Redis with one atomic script: no
//! GET-then-SET window. The claim's value names its owner, `processing:<worker>:<delivery>`: the
//! worker process and a token of this one delivery. Copies of one event (a republish whose
//! confirm or ack was lost, a replay, a reconciled copy) carry the same key and event id, so
//! only the token tells them apart. What the script finds decides what happens:
//!
//! - nothing → claimed: handle it; afterwards `done` with a long TTL (or the claim is released on
//!   failure). Both only ever change the caller's own claim (compare-and-set in a script): a
//!   delivery whose claim ran out and was claimed by another delivery leaves that one alone;
//! - `done` → a duplicate: ack without touching anything;
//! - another delivery's claim, its worker alive → someone is on it: retry later, never in
//!   parallel, whether it is another process's delivery or a copy in this process;
//! - another delivery's claim, its worker gone → a crashed worker's claim: taken over at once
//!   instead of waiting for the TTL. Each worker keeps `<prefix>:worker:<worker>` alive (a few
//!   seconds' TTL, renewed by [`Claims::keep_alive`] and by every claim it makes) until its
//!   in-flight deliveries are done;
//! - a value of another form (an older release's) → waited out until its TTL ends.
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
use tokio_util::sync::CancellationToken;

/// What a claim attempt found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This delivery now holds the key; end it with this token.
    Claimed(ClaimToken),
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

/// One delivery's claim: the value it wrote, which only it can release or complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimToken(String);

/// How long a worker counts as alive after its last heartbeat. Short, so a crashed worker's
/// claims are taken over within seconds; renewed every third of it.
const LIVENESS_TTL: Duration = Duration::from_secs(10);

/// Redis claims for one worker process.
#[derive(Clone)]
pub struct Claims {
    redis: ConnectionManager,
    prefix: String,
    /// This process, as named in its claims (no `:`).
    worker: String,
    claim_ttl: Duration,
    done_ttl: Duration,
    /// Whether Redis answered last time, to log transitions once rather than per message.
    available: std::sync::Arc<AtomicBool>,
}

/// Claims `KEYS[1]` for `ARGV[1]` (PX `ARGV[2]`) unless it is done or held by a live worker;
/// renews our own liveness `KEYS[2]` (PX `ARGV[3]`) first. A holder's liveness key is
/// `ARGV[4] .. <worker>` (built here, so this needs a non-cluster Redis, as the rest does).
const CLAIM: &str = r"
redis.call('SET', KEYS[2], '1', 'PX', ARGV[3])
local current = redis.call('GET', KEYS[1])
if not current then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return {'claimed', 0}
end
if current == 'done' then
  return {'done', 0}
end
local holder = string.match(current, '^processing:([%w]+):[%w]+$')
if holder and redis.call('EXISTS', ARGV[4] .. holder) == 0 then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return {'taken_over', 0}
end
return {'busy', redis.call('PTTL', KEYS[1])}
";

/// Compare-and-delete: release our claim only if it is still ours.
const RELEASE: &str = r"if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";

/// Compare-and-set: `done` over our own claim, or where no claim is left (ours ran out, or Redis
/// was down when we claimed: `ARGV[1]` is then empty); never over another delivery's claim.
const COMPLETE: &str = r"
local current = redis.call('GET', KEYS[1])
if not current or current == ARGV[1] then
  redis.call('SET', KEYS[1], 'done', 'EX', ARGV[2])
  return 1
end
return 0
";

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
            worker: uuid::Uuid::new_v4().simple().to_string(),
            claim_ttl,
            done_ttl,
            available: std::sync::Arc::new(AtomicBool::new(true)),
        })
    }

    /// The Redis key of an idempotency key.
    pub fn redis_key(&self, idempotency_key: &str) -> String {
        format!("{}:idem:{idempotency_key}", self.prefix)
    }

    fn liveness_prefix(&self) -> String {
        format!("{}:worker:", self.prefix)
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

    /// Claims the envelope's key for one delivery of it.
    pub async fn claim(&self, envelope: &Envelope) -> Claim {
        let key = self.redis_key(envelope.idempotency_key.as_str());
        let liveness = self.liveness_prefix();
        let mine = format!(
            "processing:{}:{}",
            self.worker,
            uuid::Uuid::new_v4().simple()
        );
        let mut redis = self.redis.clone();
        let answer: redis::RedisResult<(String, i64)> = redis::Script::new(CLAIM)
            .key(&key)
            .key(format!("{liveness}{}", self.worker))
            .arg(&mine)
            .arg(millis(self.claim_ttl))
            .arg(millis(LIVENESS_TTL))
            .arg(&liveness)
            .invoke_async(&mut redis)
            .await;
        match self.observe(answer) {
            None => Claim::Unavailable,
            Some((found, _)) if found == "claimed" => Claim::Claimed(ClaimToken(mine)),
            Some((found, _)) if found == "taken_over" => {
                tracing::info!("took over the claim of a worker that is gone");
                metrics::counter!("hookline_worker_claims_taken_over_total").increment(1);
                Claim::Claimed(ClaimToken(mine))
            }
            Some((found, _)) if found == "done" => Claim::Done,
            Some((_, pttl)) => Claim::Busy {
                retry_in: u64::try_from(pttl).ok().map(Duration::from_millis),
            },
        }
    }

    /// Marks the key done (after the effect committed, or was found committed), unless another
    /// delivery holds it by now (it will find the effect recorded). `held` is our claim, `None`
    /// when Redis was unavailable at claim time. Best effort: if Redis misses it, the PostgreSQL
    /// guard still stops the next duplicate.
    pub async fn mark_done(&self, envelope: &Envelope, held: Option<&ClaimToken>) {
        let key = self.redis_key(envelope.idempotency_key.as_str());
        let mut redis = self.redis.clone();
        let result: redis::RedisResult<i64> = redis::Script::new(COMPLETE)
            .key(&key)
            .arg(held.map_or("", |t| t.0.as_str()))
            .arg(self.done_ttl.as_secs())
            .invoke_async(&mut redis)
            .await;
        self.observe(result);
    }

    /// Releases our claim after a failure, so the retry (or another worker) can claim it; a
    /// claim that is no longer ours is left alone.
    pub async fn release(&self, envelope: &Envelope, held: &ClaimToken) {
        let key = self.redis_key(envelope.idempotency_key.as_str());
        let mut redis = self.redis.clone();
        let result: redis::RedisResult<i64> = redis::Script::new(RELEASE)
            .key(&key)
            .arg(&held.0)
            .invoke_async(&mut redis)
            .await;
        self.observe(result);
    }

    /// Keeps this worker alive in Redis until `stop`, so other workers leave its claims alone.
    /// Stop it only after the last delivery ended: a claim of a worker that is not alive is
    /// taken over.
    pub async fn keep_alive(self, stop: CancellationToken) {
        let key = format!("{}{}", self.liveness_prefix(), self.worker);
        loop {
            let mut redis = self.redis.clone();
            let result: redis::RedisResult<()> = redis::cmd("SET")
                .arg(&key)
                .arg("1")
                .arg("PX")
                .arg(millis(LIVENESS_TTL))
                .query_async(&mut redis)
                .await;
            self.observe(result);
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(LIVENESS_TTL / 3) => {}
            }
        }
        // Gone: a claim left behind (a delivery past the drain timeout) is free at once.
        let mut redis = self.redis.clone();
        let result: redis::RedisResult<i64> =
            redis::cmd("DEL").arg(&key).query_async(&mut redis).await;
        self.observe(result);
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
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
    // A webhook of a shop marked uninstalled, received after the uninstall, means the shop
    // installed the app again: the mark goes in the same statement (see
    // `crate::domains::compliance`). Privacy webhooks arrive for uninstalled shops too, and
    // reconciled copies are not the shop's doing: neither counts.
    let reinstall_sign = envelope.source == hookline_core::Source::Webhook
        && hookline_core::topics::lookup(&envelope.topic)
            .is_some_and(|t| t.domain != hookline_core::Domain::Compliance);
    let inserted: i64 = client
        .query_one(
            "WITH recorded AS (
                INSERT INTO processed_events (idempotency_key, event_id, topic, shop_domain, received_at)
                VALUES ($1, $2, $3, $4, $5) ON CONFLICT (idempotency_key) DO NOTHING
                RETURNING shop_domain, received_at
             ), reinstalled AS (
                DELETE FROM shop_uninstalls u USING recorded r
                 WHERE $6 AND u.shop_domain = r.shop_domain AND u.uninstalled_at < r.received_at
             )
             SELECT count(*) FROM recorded",
            &[
                &envelope.idempotency_key.as_str(),
                &envelope.event_id,
                &envelope.topic,
                &envelope.shop_domain,
                &envelope.received_at,
                &reinstall_sign,
            ],
        )
        .await?
        .get(0);
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
