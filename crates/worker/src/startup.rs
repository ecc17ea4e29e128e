//! Wiring: settings → pools, Redis claims, handlers, bulkheads, outbox relay, HTTP endpoints.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use hookline_core::Domain;
use hookline_core::breaker::{CircuitBreaker, SystemClock};
use hookline_core::retry::RetryPolicy;
use hookline_core::topology;
use lapin::{Connection, ConnectionProperties};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::books::{Books, ShopBooks};
use crate::consume::Bulkhead;
use crate::domains::DomainHandler;
use crate::domains::compliance::ComplianceHandler;
use crate::domains::inventory::InventoryHandler;
use crate::domains::orders::OrdersHandler;
use crate::erp::ErpClient;
use crate::error::HandlerError;
use crate::http::{self, Health};
use crate::idempotency::Claims;
use crate::notifications::relay::Relay as NotificationRelay;
use crate::outbox::Relay;
use crate::payments::PaymentPoller;
use crate::reconcile::Reconciler;
use crate::redrive::Redrive;
use crate::retention::Retention;
use crate::settings::Settings;
use crate::sevdesk::SevDeskClient;
use crate::shopify::{AdminClient, AdminSettings};

/// Each shop's sevDesk account as the settings describe it (see [`crate::books`]): one per
/// `[shop.sevdesk]` of the shops file, or the one of `HOOKLINE_SEVDESK_TOKEN` for every shop;
/// each account behind a breaker of its own.
pub fn books(settings: &Settings) -> anyhow::Result<Books> {
    match &settings.shop_sevdesk {
        Some(shops) => Books::per_shop(
            shops,
            &settings.sevdesk_url,
            settings.sevdesk_timeout,
            &settings.breaker,
        )
        .context("cannot build the sevDesk clients"),
        None => {
            let breaker =
                CircuitBreaker::new("sevdesk", settings.breaker.clone(), Arc::new(SystemClock));
            let client = SevDeskClient::new(
                &settings.sevdesk_url,
                settings.sevdesk_token.expose(),
                settings.sevdesk_timeout,
                breaker,
            )
            .context("cannot build the sevDesk client")?;
            Ok(Books::single(ShopBooks::new(
                client,
                settings.sevdesk_account.clone(),
            )))
        }
    }
}

/// Builds a PostgreSQL pool of `size` connections.
pub fn pool(database_url: &str, size: usize) -> anyhow::Result<Pool> {
    let config =
        tokio_postgres::Config::from_str(database_url).context("invalid HOOKLINE_DATABASE_URL")?;
    let manager = Manager::from_config(
        config,
        tokio_postgres::NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(Duration::from_secs(5)))
        .create_timeout(Some(Duration::from_secs(5)))
        .build()
        .context("cannot build the PostgreSQL pool")
}

/// Applies pending migrations.
pub async fn migrate(database_url: &str) -> anyhow::Result<Vec<i32>> {
    let (mut client, connection) = tokio_postgres::connect(database_url, tokio_postgres::NoTls)
        .await
        .context("cannot connect to PostgreSQL (HOOKLINE_DATABASE_URL)")?;
    let driver = tokio::spawn(connection);
    let applied = crate::migrate::run(&mut client)
        .await
        .context("migration failed");
    drop(client);
    let _ = driver.await;
    applied
}

/// A built worker: migrations applied, pools and handlers ready, HTTP endpoint bound.
pub struct Worker {
    settings: Settings,
    handlers: BTreeMap<Domain, Arc<dyn DomainHandler>>,
    claims: Claims,
    relay: Option<Relay>,
    notifications: Option<NotificationRelay>,
    reconciler: Option<Reconciler>,
    payments: Option<PaymentPoller>,
    retention: Option<Retention>,
    redrive: Vec<Redrive>,
    audit: Option<crate::audit::Trail>,
    listener: TcpListener,
    health: Arc<Health>,
}

impl Worker {
    /// Applies migrations, builds one pool and handler per enabled domain, the Redis claims and
    /// the outbox relay, and binds the HTTP endpoint (port 0 picks a free one).
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        migrate(settings.database_url.expose()).await?;
        let mut handlers: BTreeMap<Domain, Arc<dyn DomainHandler>> = BTreeMap::new();
        let mut redrive = Vec::new();
        let mut notifications = None;
        let mut orders_books: Option<Arc<Books>> = None;
        for &domain in &settings.domains {
            match domain {
                Domain::Inventory => {
                    let pool = pool(
                        settings.database_url.expose(),
                        settings.bulkhead(domain).db_pool,
                    )?;
                    handlers.insert(domain, Arc::new(InventoryHandler::new(pool)));
                }
                Domain::Compliance => {
                    let pool = pool(
                        settings.database_url.expose(),
                        settings.bulkhead(domain).db_pool,
                    )?;
                    handlers.insert(
                        domain,
                        Arc::new(ComplianceHandler::new(
                            pool,
                            settings.amqp_url.expose().to_owned(),
                        )),
                    );
                }
                Domain::Orders => {
                    let pool = pool(
                        settings.database_url.expose(),
                        settings.bulkhead(domain).db_pool,
                    )?;
                    let books = Arc::new(books(&settings)?);
                    if settings.redrive_rate > 0.0 {
                        redrive.extend(books.breakers().into_iter().map(|breaker| Redrive {
                            breaker,
                            domain,
                            downstream: "sevdesk",
                            rate: settings.redrive_rate,
                            amqp_url: settings.amqp_url.expose().to_owned(),
                        }));
                    }
                    // The notification relay sends through the same clients, so the same
                    // breakers: a sevDesk outage seen by orders holds the e-mails too.
                    if settings.notify.run_relay {
                        notifications = Some(NotificationRelay::new(
                            self::pool(settings.database_url.expose(), 2)?,
                            books.clone(),
                            settings.notify.clone(),
                            settings.sevdesk_settle,
                            settings.sevdesk_timeout,
                        ));
                    }
                    for shop in books.not_invoiced() {
                        tracing::warn!(
                            shop,
                            "the shops file gives this shop no [shop.sevdesk]: its orders are not invoiced (dead-lettered shop_not_configured)"
                        );
                    }
                    orders_books = Some(books.clone());
                    // An account hookline cannot book into refuses to start, with what to fix;
                    // a sevDesk that does not answer now is asked again on the first order.
                    for (shop, account) in books.accounts() {
                        let shop = shop.unwrap_or("every shop");
                        match account.account(None).await {
                            Ok(account) => tracing::info!(
                                shop,
                                sev_user = %account.sev_user,
                                check_account = %account.default_check_account,
                                "sevDesk account checked: sevdesk-Update 2.0"
                            ),
                            Err(HandlerError::Misconfigured(why)) => {
                                anyhow::bail!(
                                    "the sevDesk account of {shop} cannot be booked into: {why}"
                                )
                            }
                            Err(e) => tracing::warn!(
                                shop,
                                error = %crate::failure::error_chain(&e),
                                "sevDesk did not answer the account check; it is checked again on the first order"
                            ),
                        }
                    }
                    let orders = OrdersHandler::new(pool, books, settings.sevdesk_settle)
                        .with_notifications(settings.notify.clone());
                    handlers.insert(domain, Arc::new(orders));
                }
            }
        }
        let claims = Claims::new(
            settings.redis_url.expose(),
            &settings.redis_prefix,
            settings.claim_ttl,
            settings.done_ttl,
        )
        .context("invalid HOOKLINE_REDIS_URL")?;
        let relay = if settings.run_outbox_relay {
            let breaker =
                CircuitBreaker::new("erp", settings.breaker.clone(), Arc::new(SystemClock));
            let erp = ErpClient::new(&settings.erp_url, settings.outbox.request_timeout, breaker)
                .context("cannot build the ERP client")?;
            Some(Relay::new(
                pool(settings.database_url.expose(), 2)?,
                erp,
                settings.outbox.clone(),
            ))
        } else {
            None
        };
        // The worker's one Admin API client: every Shopify call (reconciliation today) goes
        // through it, so one shop's cost budget is kept in one place. Every kind of credentials
        // (static, client credentials, offline tokens kept in PostgreSQL).
        let tokens = crate::shopify::Tokens::from_credentials(
            &settings.shopify_credentials,
            &settings.reconcile.admin_url,
            Some(pool(settings.database_url.expose(), 2)?),
        );
        let admin = Arc::new(
            AdminClient::new(
                Arc::new(tokens),
                AdminSettings::new(
                    settings.reconcile.admin_url.clone(),
                    settings.reconcile.api_version.clone(),
                )
                .with_shop_versions(settings.shop_api_versions.clone()),
            )
            .context("cannot build the Shopify Admin API client")?,
        );
        // Bank-transfer payments from sevDesk to Shopify: for every shop with Admin API
        // credentials and a sevDesk account, through that shop's account (its own breaker).
        let payments = match &orders_books {
            Some(books)
                if !settings.payments.interval.is_zero()
                    && !settings.shopify_credentials.is_empty() =>
            {
                let shops: Vec<_> = settings
                    .shopify_credentials
                    .keys()
                    .filter_map(|shop| {
                        let books = books.for_shop(shop).ok()?;
                        Some(crate::payments::PaymentShop {
                            shop: shop.clone(),
                            sevdesk: books.sevdesk.clone(),
                        })
                    })
                    .collect();
                (!shops.is_empty())
                    .then(|| -> anyhow::Result<PaymentPoller> {
                        Ok(PaymentPoller::new(
                            pool(settings.database_url.expose(), 2)?,
                            shops,
                            admin.clone(),
                            settings.payments.clone(),
                        ))
                    })
                    .transpose()?
            }
            _ => None,
        };
        let reconciler = if settings.shopify_credentials.is_empty() {
            None
        } else {
            Some(Reconciler::new(
                pool(settings.database_url.expose(), 2)?,
                admin,
                settings.reconcile.clone(),
                settings.amqp_url.expose().to_owned(),
                settings.topology,
            ))
        };
        let retention = if settings.retention.interval.is_zero() {
            None
        } else {
            Some(Retention::new(
                pool(settings.database_url.expose(), 1)?,
                settings.retention.clone(),
            ))
        };
        let audit = if settings.audit {
            let pool = pool(settings.database_url.expose(), 4)?;
            let client = pool
                .get()
                .await
                .context("cannot connect to PostgreSQL for the audit trail")?;
            crate::audit::ensure_partitions(&client, chrono::Utc::now().date_naive())
                .await
                .context("cannot create the audit trail's partitions")?;
            drop(client);
            Some(crate::audit::Trail::new(pool))
        } else {
            None
        };
        let listener = TcpListener::bind(&settings.http_addr).with_context(|| {
            format!(
                "cannot bind HOOKLINE_WORKER_HTTP_ADDR={}",
                settings.http_addr
            )
        })?;
        let health = Health::new(hookline_telemetry::metrics_handle());
        Ok(Self {
            settings,
            handlers,
            claims,
            relay,
            notifications,
            reconciler,
            payments,
            retention,
            redrive,
            audit,
            listener,
            health,
        })
    }

    /// Uses `handler` for `domain` (the orders domain, or a test's own handler).
    pub fn with_handler(mut self, domain: Domain, handler: Arc<dyn DomainHandler>) -> Self {
        if !self.settings.domains.contains(&domain) {
            self.settings.domains.push(domain);
        }
        self.handlers.insert(domain, handler);
        self
    }

    /// The HTTP endpoint's port.
    pub fn http_port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// Runs until `shutdown` is cancelled: consumers (reconnecting when the broker connection
    /// drops), the outbox relay and the HTTP endpoint. On shutdown, in-flight deliveries finish
    /// before the connection closes.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        for domain in &self.settings.domains {
            if !self.handlers.contains_key(domain) {
                bail!("HOOKLINE_WORKER_DOMAINS names {domain}, which has no handler in this build");
            }
        }
        let server = http::server(self.listener, self.health.clone())?;
        let server_handle = server.handle();
        let http_task = tokio::spawn(server);
        let reconcile_task = self
            .reconciler
            .map(|r| tokio::spawn(r.run(shutdown.clone())));
        let payments_task = self.payments.map(|p| tokio::spawn(p.run(shutdown.clone())));
        let notifications_task = self
            .notifications
            .map(|r| tokio::spawn(r.run(shutdown.clone())));
        let retention_task = self
            .retention
            .map(|r| tokio::spawn(r.run(shutdown.clone())));
        let redrive_tasks: Vec<_> = self
            .redrive
            .into_iter()
            .map(|r| tokio::spawn(r.run(Duration::from_secs(1), shutdown.clone())))
            .collect();
        let relay_task = self.relay.map(|relay| {
            tokio::spawn(relay.run(
                self.settings.database_url.expose().to_owned(),
                shutdown.clone(),
            ))
        });

        // Alive until every bulkhead has drained: other workers take over the claims of a
        // worker that is not, so the heartbeat outlives the last in-flight delivery.
        let alive = CancellationToken::new();
        let heartbeat = tokio::spawn(self.claims.clone().keep_alive(alive.clone()));
        let bulkheads: Vec<Bulkhead> = self
            .settings
            .domains
            .iter()
            .map(|&domain| Bulkhead {
                domain,
                handler: self.handlers[&domain].clone(),
                sizes: self.settings.bulkhead(domain),
                claims: self.claims.clone(),
                retry: self.settings.retry.clone(),
                handler_timeout: self.settings.handler_timeout(),
                drain_timeout: self.settings.shutdown_timeout,
                busy_limit: self.settings.busy_limit(),
                audit: self.audit.clone(),
            })
            .collect();
        consume_until(&self.settings, bulkheads, &self.health, &shutdown).await;
        alive.cancel();
        let _ = heartbeat.await;

        if let Some(task) = relay_task {
            let _ = task.await;
        }
        for task in [
            reconcile_task,
            payments_task,
            retention_task,
            notifications_task,
        ]
        .into_iter()
        .flatten()
        .chain(redrive_tasks)
        {
            let _ = task.await;
        }
        server_handle.stop(true).await;
        let _ = http_task.await;
        tracing::info!("worker stopped");
        Ok(())
    }
}

/// Connects, declares the topology and runs every bulkhead; when the connection fails, waits
/// (capped backoff) and does it all again, until shutdown.
async fn consume_until(
    settings: &Settings,
    bulkheads: Vec<Bulkhead>,
    health: &Health,
    shutdown: &CancellationToken,
) {
    let backoff = RetryPolicy {
        initial: Duration::from_millis(200),
        max_delay: Duration::from_secs(5),
        ..RetryPolicy::default()
    };
    let mut failures: u32 = 0;
    while !shutdown.is_cancelled() {
        match connect(settings).await {
            Ok(connection) => {
                failures = 0;
                let connection = Arc::new(connection);
                let stop = shutdown.child_token();
                let mut tasks = JoinSet::new();
                for bulkhead in bulkheads.clone() {
                    let (connection, stop) = (connection.clone(), stop.clone());
                    tasks.spawn(async move {
                        let domain = bulkhead.domain;
                        (domain, bulkhead.run(&connection, stop).await)
                    });
                }
                health.set_consuming(true);
                // The first bulkhead to end (error, or shutdown) stops the others: they share the
                // connection, and on reconnect all start again together.
                if let Some(Ok((domain, Err(error)))) = tasks.join_next().await {
                    tracing::warn!(%domain, error = %error, "consumer stopped; reconnecting");
                }
                stop.cancel();
                while tasks.join_next().await.is_some() {}
                health.set_consuming(false);
                let _ = connection.close(200, "worker stopping".into()).await;
            }
            Err(error) => {
                failures = failures.saturating_add(1);
                tracing::warn!(error = %crate::failure::error_chain(error.as_ref()), failures, "cannot connect to the broker");
            }
        }
        let delay = backoff.delay_with_jitter(failures.clamp(1, 16), fastrand::f64());
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

async fn connect(
    settings: &Settings,
) -> Result<Connection, Box<dyn std::error::Error + Send + Sync>> {
    let name = format!("hookline-worker@{}", std::process::id());
    let connection = tokio::time::timeout(
        Duration::from_secs(5),
        Connection::connect(
            settings.amqp_url.expose(),
            ConnectionProperties::default().with_connection_name(name.into()),
        ),
    )
    .await??;
    let channel = connection.create_channel().await?;
    topology::declare(&channel, &settings.topology).await?;
    let _ = channel.close(200, "topology declared".into()).await;
    Ok(connection)
}
