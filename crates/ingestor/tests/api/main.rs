//! Black-box tests of the ingestor: HTTP in, AMQP out, against the real RabbitMQ on localhost.
//! Each test gets its own vhost, created and deleted through the management API.

mod abuse;
mod broker;
mod cli;
mod helpers;
mod shopify_forms;
mod shops;
mod webhook;
