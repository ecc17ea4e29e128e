//! Black-box tests of the worker against the real RabbitMQ, PostgreSQL and Redis; a local HTTP
//! server plays the ERP. Each test has its own vhost, database and Redis prefix.

mod audit;
mod bulkhead;
mod claims;
mod compliance;
mod config_docs;
mod corpus_orders;
mod dlq;
mod e2e;
mod failures;
mod helpers;
mod inventory;
mod notifications;
mod order_lock;
mod orders;
mod outbox;
mod payments;
mod process;
mod reconcile;
mod refunds;
mod retention;
mod sevdesk;
mod shops;
mod tokens;
