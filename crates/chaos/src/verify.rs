//! Ground truth against what hookline did: every accepted change applied exactly once, or dead-
//! lettered with a reason; nothing lost, nothing twice.

use std::collections::{HashMap, HashSet};

use hookline_broker::dlq::{self, Filter};
use lapin::{Connection, ConnectionProperties};

use crate::load::{Change, Ledger};
use crate::stack::{SHOP, Stack};

/// Where the accepted changes stand.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Counts {
    /// Accepted changes whose effect is committed (their key is in `processed_events`).
    pub applied: usize,
    /// Accepted changes in a dead-letter queue.
    pub dead_lettered: usize,
    /// Accepted changes neither applied nor dead-lettered, plus stock levels that differ from the
    /// newest applied change.
    pub lost: usize,
    /// Effects that happened more than once: outbox rows for one change, invoices for one order,
    /// bookings on one invoice.
    pub duplicated: usize,
    /// Outbox rows not yet sent to the ERP.
    pub outbox_pending: i64,
    /// Details of anything lost or duplicated, for the report.
    pub problems: Vec<String>,
}

impl Counts {
    /// Everything accepted is accounted for and nothing is still on its way.
    pub fn settled(&self, accepted: usize) -> bool {
        self.applied + self.dead_lettered >= accepted && self.outbox_pending == 0
    }
}

/// Counts the current state (a snapshot; call until settled).
pub async fn check(
    stack: &Stack,
    ledger: &Ledger,
    changes: &HashMap<String, Change>,
) -> anyhow::Result<Counts> {
    let db = stack.db.client().await;
    let processed: HashSet<String> = db
        .query("SELECT idempotency_key FROM processed_events", &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let outbox_pending: i64 = db
        .query_one(
            "SELECT count(*) FROM outbox_events WHERE status <> 'sent'",
            &[],
        )
        .await?
        .get(0);
    let mut dead: HashSet<String> = HashSet::new();
    if ledger.accepted_keys.iter().any(|k| !processed.contains(k)) {
        let amqp =
            Connection::connect(&stack.vhost.amqp_url(), ConnectionProperties::default()).await?;
        for (_, body) in dlq::scan(&amqp, &Filter::default()).await? {
            if let Ok(envelope) = hookline_core::Envelope::from_json(&body) {
                dead.insert(envelope.idempotency_key.as_str().to_owned());
            }
        }
        let _ = amqp.close(200, "checked".into()).await;
    }
    let mut counts = Counts {
        outbox_pending,
        ..Counts::default()
    };
    for key in &ledger.accepted_keys {
        if processed.contains(key) {
            counts.applied += 1;
        } else if dead.contains(key) {
            counts.dead_lettered += 1;
        } else {
            counts.lost += 1;
            counts.problems.push(format!(
                "not applied: {key} (webhook id {})",
                ledger.webhook_of.get(key).map_or("?", String::as_str)
            ));
        }
    }

    // Stock: the level of each item is the newest applied change's; one outbox row per change.
    // Every applied change counts here, accepted or not: a delivery the sender gave up on (its
    // request timed out) may still have been published and applied.
    let mut newest: HashMap<i64, (i64, i64)> = HashMap::new();
    for key in changes.keys().filter(|k| processed.contains(*k)) {
        if let Some(Change::Stock {
            item,
            seq,
            available,
        }) = changes.get(key)
        {
            let e = newest.entry(*item).or_insert((*seq, *available));
            if *seq > e.0 {
                *e = (*seq, *available);
            }
        }
    }
    let stock: HashMap<i64, Option<i64>> = db
        .query(
            "SELECT inventory_item_id, available FROM warehouse_stock WHERE shop_domain = $1",
            &[&SHOP],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    for (item, (_, available)) in &newest {
        if stock.get(item).copied().flatten() != Some(*available) {
            counts.lost += 1;
            counts.problems.push(format!(
                "item {item}: stock {:?}, newest applied change says {available}",
                stock.get(item)
            ));
        }
    }
    let repeated_rows: i64 = db
        .query_one(
            "SELECT coalesce(sum(n - 1), 0)::bigint FROM (SELECT count(*) AS n FROM outbox_events
               GROUP BY payload->>'inventory_item_id', payload->>'location_id', payload->>'source_updated_at'
               HAVING count(*) > 1) repeated",
            &[],
        )
        .await?
        .get(0);
    if repeated_rows > 0 {
        counts.duplicated += repeated_rows as usize;
        counts
            .problems
            .push(format!("{repeated_rows} outbox row(s) repeat a change"));
    }

    // Orders: one invoice per paid order, booked once, at Shopify's total.
    let invoices = stack.sandbox.state.sevdesk.invoices();
    let mut per_marker: HashMap<String, Vec<&hookline_sandbox::sevdesk::Invoice>> = HashMap::new();
    for invoice in invoices.iter().filter(|i| i.invoice_type == "RE") {
        if let Some(id) = invoice
            .customer_internal_note
            .as_deref()
            .and_then(order_id_of)
        {
            per_marker.entry(id.to_string()).or_default().push(invoice);
        }
    }
    for key in ledger
        .accepted_keys
        .iter()
        .filter(|k| processed.contains(*k))
    {
        let Some(Change::Paid { id, total }) = changes.get(key) else {
            continue;
        };
        let marker = id.to_string();
        match per_marker.get(&marker).map(Vec::as_slice) {
            None | Some([]) => {
                counts.lost += 1;
                counts.problems.push(format!("order {id}: no invoice"));
            }
            Some([invoice]) => {
                if invoice.bookings != 1 {
                    counts.duplicated += invoice.bookings.saturating_sub(1) as usize;
                    counts
                        .problems
                        .push(format!("order {id}: {} bookings", invoice.bookings));
                }
                if invoice.paid_amount != *total {
                    counts.lost += 1;
                    counts.problems.push(format!(
                        "order {id}: paid {} of {total}",
                        invoice.paid_amount
                    ));
                }
            }
            Some(many) => {
                counts.duplicated += many.len() - 1;
                counts
                    .problems
                    .push(format!("order {id}: {} invoices", many.len()));
            }
        }
    }
    Ok(counts)
}

/// The Shopify order id in an invoice's reference (`… (ID 123)`), as the worker writes it.
fn order_id_of(reference: &str) -> Option<i64> {
    let start = reference.find("(ID ")? + 4;
    let rest = &reference[start..];
    rest[..rest.find(')')?].parse().ok()
}
