//! The order lock: one delivery at a time works on an order, and the lock ends with its work
//! however that work ends.
//!
//! The lock is a PostgreSQL session advisory lock, held on the pooled connection the delivery
//! uses (not in a transaction: sevDesk is called while it is held). A session lock outlives the
//! code that took it: a connection that went back to the pool still holding it would keep the
//! order locked for as long as the connection lives, and every later delivery for that order
//! would wait (`order_busy`) forever. The consumer ends handlers that way on purpose: a handler
//! that runs past its timeout is dropped mid-step, and a panicking one is unwound.
//!
//! So the lock is a guard. [`OrderLock::release`] unlocks and hands the connection back to the
//! pool. A guard dropped without it (the future was dropped, a panic unwound it, unlocking
//! failed) detaches its connection from the pool and closes it: the server ends the session and
//! with it the lock. A dropped future can therefore never leave a lock behind in the pool; at
//! worst the lock lasts until the server notices the closed connection (a statement still
//! running on it finishes first).

use std::ops::Deref;

use deadpool_postgres::Object;

use crate::error::HandlerError;

/// First key of the two-part advisory lock: "ords".
pub const LOCK_CLASS: i32 = 0x6f72_6473;

/// An order's lock, held on the connection it derefs to.
pub struct OrderLock {
    /// `None` once released.
    client: Option<Object>,
    key: String,
}

impl OrderLock {
    /// Takes the lock of `order_id` on `client`, or says another delivery holds it
    /// ([`HandlerError::OrderBusy`]; the connection then goes back to the pool, holding nothing).
    ///
    /// The lock is per Shopify order id, whatever the shop: ids are unique across shops, and
    /// sevDesk finds an order's invoice by it. A body re-sent under another shop's domain (only
    /// the body is signed) would otherwise run beside the original against the same invoice and
    /// could book it twice; locked by id, it waits and then finds the invoice booked.
    pub async fn acquire(client: Object, _shop: &str, order_id: i64) -> Result<Self, HandlerError> {
        // The guard exists before the statement is sent: if this future is dropped while the
        // lock may already be taken on the server, the connection is thrown away.
        let mut lock = Self {
            client: Some(client),
            key: order_id.to_string(),
        };
        let locked: bool = lock
            .query_one(
                "SELECT pg_try_advisory_lock($1, hashtext($2))",
                &[&LOCK_CLASS, &lock.key],
            )
            .await?
            .get(0);
        if locked {
            Ok(lock)
        } else {
            // Not ours: nothing to undo, the connection can be reused.
            drop(lock.client.take());
            Err(HandlerError::OrderBusy)
        }
    }

    /// Unlocks and returns the connection to the pool. If unlocking fails, or finds no lock of
    /// ours, the connection is closed instead.
    pub async fn release(mut self) {
        let Some(client) = self.client.take() else {
            return;
        };
        let unlocked = client
            .query_one(
                "SELECT pg_advisory_unlock($1, hashtext($2))",
                &[&LOCK_CLASS, &self.key],
            )
            .await
            .map(|row| row.get::<_, bool>(0));
        if !matches!(unlocked, Ok(true)) {
            tracing::warn!(key = %self.key, "order lock not released cleanly; closing its connection");
            discard(client);
        }
    }
}

impl Deref for OrderLock {
    type Target = Object;

    fn deref(&self) -> &Object {
        // Only `release` and `acquire`'s busy path (which consume or drop the guard) take it.
        self.client
            .as_ref()
            .unwrap_or_else(|| unreachable!("an order lock is used after it was released"))
    }
}

impl Drop for OrderLock {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            tracing::warn!(key = %self.key, "order lock dropped while held (handler timed out or panicked); closing its connection");
            metrics::counter!("hookline_worker_order_locks_abandoned_total").increment(1);
            discard(client);
        }
    }
}

/// Takes the connection out of the pool and closes it, ending its session and its locks.
fn discard(client: Object) {
    drop(Object::take(client));
}
