//! The gRPC face of orders.

use std::collections::HashMap;

use platform_proto::orders::v1::{
    CancelOrderRequest, CatalogItem, CreateOrderRequest, GetOrderRequest, ListCatalogRequest,
    ListCatalogResponse, ListOrdersRequest, ListOrdersResponse, Order, OrderItem, OrderStatus,
    order_service_server::OrderService,
};
use platform_runtime::caller::Authenticator;
use platform_runtime::paging::Page;
use platform_runtime::validate::checked;
use platform_runtime::{ids, storage, time};
use sha2::{Digest, Sha256};
use tonic::{Request, Response, Status};

use crate::catalog;
use crate::flow::{Flow, money, notice};
use crate::store::{self, Created, ItemRow, OrderRow, Transition};

#[derive(Debug, Clone)]
pub struct Orders {
    flow: Flow,
    auth: Authenticator,
}

impl Orders {
    pub fn new(flow: Flow, auth: Authenticator) -> Self {
        Self { flow, auth }
    }

    /// Returns an order found by its request id, finishing it first if its
    /// first request was cut off while it was pending; refuses a request that
    /// reuses the request id for a different order.
    async fn replay(&self, order: OrderRow, fingerprint: &str) -> Result<Response<Order>, Status> {
        if !same_request(&order, fingerprint) {
            return Err(Status::failed_precondition(format!(
                "request_id {:?} was already used for a different order; use a new request_id",
                order.request_id.as_deref().unwrap_or_default()
            )));
        }
        let order = if order.status == store::PENDING {
            self.flow.drive(order).await?
        } else {
            order
        };
        Ok(Response::new(to_message(order)))
    }
}

fn status_of(row: &str) -> OrderStatus {
    match row {
        store::PENDING => OrderStatus::Pending,
        store::PAID => OrderStatus::Paid,
        store::PAYMENT_FAILED => OrderStatus::PaymentFailed,
        store::CANCELLED => OrderStatus::Cancelled,
        _ => OrderStatus::Unspecified,
    }
}

pub fn to_message(row: OrderRow) -> Order {
    Order {
        status: status_of(&row.status).into(),
        id: row.id,
        user_id: row.user_id,
        items: row
            .items
            .into_iter()
            .map(|i| OrderItem {
                sku: i.sku,
                quantity: i32::try_from(i.quantity).unwrap_or(i32::MAX),
                unit_price_minor: i.unit_price_minor,
            })
            .collect(),
        total_minor: row.total_minor,
        currency: row.currency,
        payment_id: row.payment_id,
        created_at: Some(time::timestamp(row.created_at_ms)),
        updated_at: Some(time::timestamp(row.updated_at_ms)),
        failure_reason: row.failure_reason,
    }
}

/// What a `request_id` stands for: the SHA-256 of everything that defines the
/// order (items in their order, currency, payment method), not the id itself.
pub fn fingerprint(items: &[ItemRow], currency: &str, payment_method: &str) -> String {
    let mut hash = Sha256::new();
    // Each field is length-prefixed, so no two different orders encode alike.
    let mut field = |bytes: &[u8]| {
        hash.update(u64::try_from(bytes.len()).unwrap_or(u64::MAX).to_be_bytes());
        hash.update(bytes);
    };
    field(b"order/v1");
    field(currency.as_bytes());
    field(payment_method.as_bytes());
    field(&u64::try_from(items.len()).unwrap_or(u64::MAX).to_be_bytes());
    for item in items {
        field(item.sku.as_bytes());
        field(&item.quantity.to_be_bytes());
        field(&item.unit_price_minor.to_be_bytes());
    }
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// True when `order` is what a request with `fingerprint` asks for. Orders
/// stored before fingerprints were recorded have none and always match.
fn same_request(order: &OrderRow, fingerprint: &str) -> bool {
    order
        .request_fingerprint
        .as_deref()
        .is_none_or(|stored| stored == fingerprint)
}

/// The items of a checked request as it sent them (prices included, which
/// only its fingerprint uses: a retry is the same request to either release).
pub fn requested(items: &[OrderItem]) -> Vec<ItemRow> {
    items
        .iter()
        .map(|item| ItemRow {
            sku: item.sku.trim().to_owned(),
            quantity: i64::from(item.quantity),
            unit_price_minor: item.unit_price_minor,
        })
        .collect()
}

/// The items priced from the catalog's `prices` in `currency`, whatever
/// price the request said, with the order total; a SKU the catalog does not
/// sell in `currency` is refused by name.
pub fn priced(
    requested: &[ItemRow],
    prices: &HashMap<String, i64>,
    currency: &str,
) -> Result<(Vec<ItemRow>, i64), Status> {
    let mut total: i64 = 0;
    let mut rows = Vec::with_capacity(requested.len());
    for (i, item) in requested.iter().enumerate() {
        let Some(&price) = prices.get(&item.sku) else {
            return Err(Status::invalid_argument(format!(
                "items[{i}].sku {:?} is not sold in {currency}: ListCatalog lists what can be ordered",
                item.sku
            )));
        };
        // Catalog prices are at most catalog::MAX_PRICE_MINOR and the rules
        // bound the items and units, so this stays far below i64::MAX.
        total = total.saturating_add(item.quantity.saturating_mul(price));
        rows.push(ItemRow {
            unit_price_minor: price,
            ..item.clone()
        });
    }
    Ok((rows, total))
}

#[tonic::async_trait]
impl OrderService for Orders {
    async fn create_order(
        &self,
        request: Request<CreateOrderRequest>,
    ) -> Result<Response<Order>, Status> {
        let user = self.auth.user(&request).await?;
        let req = request.into_inner();
        checked(&req)?;
        let requested = requested(&req.items);
        let currency = req.currency.trim().to_ascii_uppercase();
        let payment_method = req.payment_method.trim();
        let request_id = match req.request_id.trim() {
            "" => None,
            id => Some(id.to_owned()),
        };
        let fingerprint = fingerprint(&requested, &currency, payment_method);
        let skus: Vec<&str> = requested.iter().map(|item| item.sku.as_str()).collect();
        let prices = catalog::prices(self.flow.store.pool(), &currency, &skus)
            .await
            .map_err(storage::status)?;
        let (items, total_minor) = priced(&requested, &prices, &currency)?;
        if req.expected_total_minor != 0 && req.expected_total_minor != total_minor {
            return Err(Status::failed_precondition(format!(
                "the catalog prices this order at {}, not the expected_total_minor {}: \
                 prices changed; show the new total and send the order again",
                money(total_minor, &currency),
                money(req.expected_total_minor, &currency)
            )));
        }
        // A retry is found by the insert itself (the unique request id), so
        // a new order, the common case, costs no lookup first.
        let now = time::now_ms();
        let order = OrderRow {
            id: ids::new_id("ord"),
            user_id: user.id.clone(),
            request_id: request_id.clone(),
            status: store::PENDING.to_owned(),
            total_minor,
            currency,
            payment_method: payment_method.to_owned(),
            payment_id: String::new(),
            failure_reason: String::new(),
            created_at_ms: now,
            updated_at_ms: now,
            request_fingerprint: request_id.as_ref().map(|_| fingerprint.clone()),
            items,
        };
        match self
            .flow
            .store
            .create(&order)
            .await
            .map_err(storage::status)?
        {
            Created::New => {
                tracing::info!(order_id = %order.id, total_minor, "order created");
                Ok(Response::new(to_message(self.flow.drive(order).await?)))
            }
            Created::Duplicate => {
                // A retry, or a concurrent one that won the insert.
                let request_id = request_id.unwrap_or_default();
                let existing = self
                    .flow
                    .store
                    .by_request(&user.id, &request_id)
                    .await
                    .map_err(storage::status)?
                    .ok_or_else(|| {
                        Status::aborted("concurrent request with the same request_id; retry")
                    })?;
                self.replay(existing, &fingerprint).await
            }
        }
    }

    async fn list_catalog(
        &self,
        request: Request<ListCatalogRequest>,
    ) -> Result<Response<ListCatalogResponse>, Status> {
        self.auth.user(&request).await?;
        let req = request.into_inner();
        checked(&req)?;
        let currency = req.currency.trim().to_ascii_uppercase();
        let prices = catalog::list(
            self.flow.store.pool(),
            Some(currency.as_str()).filter(|c| !c.is_empty()),
        )
        .await
        .map_err(storage::status)?;
        Ok(Response::new(ListCatalogResponse {
            items: prices
                .into_iter()
                .map(|p| CatalogItem {
                    sku: p.sku,
                    name: p.name,
                    currency: p.currency,
                    unit_price_minor: p.unit_price_minor,
                })
                .collect(),
        }))
    }

    async fn get_order(
        &self,
        request: Request<GetOrderRequest>,
    ) -> Result<Response<Order>, Status> {
        let user = self.auth.user(&request).await?;
        checked(request.get_ref())?;
        let id = request.get_ref().order_id.trim();
        match self
            .flow
            .store
            .order(id, Some(&user.id))
            .await
            .map_err(storage::status)?
        {
            Some(order) => Ok(Response::new(to_message(order))),
            None => Err(Status::not_found(format!("order {id} not found"))),
        }
    }

    async fn list_orders(
        &self,
        request: Request<ListOrdersRequest>,
    ) -> Result<Response<ListOrdersResponse>, Status> {
        let user = self.auth.user(&request).await?;
        let req = request.into_inner();
        checked(&req)?;
        let page = Page::parse(req.page_size, &req.page_token)?;
        let mut rows = self
            .flow
            .store
            .page(&user.id, page.after.as_deref(), page.fetch_limit())
            .await
            .map_err(storage::status)?;
        let next_page_token = page.finish(&mut rows, |row| row.id.clone());
        Ok(Response::new(ListOrdersResponse {
            orders: rows.into_iter().map(to_message).collect(),
            next_page_token,
        }))
    }

    async fn cancel_order(
        &self,
        request: Request<CancelOrderRequest>,
    ) -> Result<Response<Order>, Status> {
        let user = self.auth.user(&request).await?;
        checked(request.get_ref())?;
        let id = request.get_ref().order_id.trim().to_owned();
        let store = &self.flow.store;
        let order = store
            .order(&id, Some(&user.id))
            .await
            .map_err(storage::status)?
            .ok_or_else(|| Status::not_found(format!("order {id} not found")))?;
        match order.status.as_str() {
            store::CANCELLED => return Ok(Response::new(to_message(order))),
            store::PENDING => {
                return Err(Status::failed_precondition(
                    "the order is still being charged; cancel it once it is paid or failed",
                ));
            }
            store::PAID => self
                .flow
                .downstream
                .refund_all(&order)
                .await
                .map_err(|status| {
                    Status::new(
                        status.code(),
                        format!("cannot refund the order: {}", status.message()),
                    )
                })?,
            _ => {}
        }
        let body = if order.status == store::PAID {
            format!("We refunded {}.", money(order.total_minor, &order.currency))
        } else {
            "Nothing was charged.".to_owned()
        };
        let note = notice(
            &order,
            "order.cancelled",
            format!("Order {id} is cancelled"),
            body,
        );
        let moved = store
            .transition(
                Transition {
                    order_id: &id,
                    from: &order.status,
                    to: store::CANCELLED,
                    payment_id: "",
                    failure_reason: &order.failure_reason,
                    claim_ms: crate::flow::DELIVERY_LEASE_MS,
                },
                &note,
            )
            .await
            .map_err(storage::status)?;
        if moved.is_some() {
            tracing::info!(order_id = %id, "order cancelled");
            self.flow.deliver_claimed(note);
        }
        let order = store
            .order(&id, Some(&user.id))
            .await
            .map_err(storage::status)?
            .ok_or_else(|| Status::not_found(format!("order {id} not found")))?;
        if order.status != store::CANCELLED {
            return Err(Status::aborted(
                "the order changed while it was being cancelled; retry",
            ));
        }
        Ok(Response::new(to_message(order)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(sku: &str, quantity: i32, price: i64) -> OrderItem {
        OrderItem {
            sku: sku.into(),
            quantity,
            unit_price_minor: price,
        }
    }

    #[test]
    fn items_are_priced_from_the_catalog_and_the_largest_order_fits() {
        let prices: HashMap<String, i64> = [("a".to_owned(), 150), ("b".to_owned(), 99)].into();
        let total = |items: Vec<OrderItem>| priced(&requested(&items), &prices, "EUR");
        // The request's prices count for nothing.
        let (rows, sum) = total(vec![item("a", 2, 1), item(" b ", 1, 0)]).expect("priced");
        assert_eq!(sum, 399);
        assert_eq!(
            rows.iter().map(|r| r.unit_price_minor).collect::<Vec<_>>(),
            [150, 99]
        );
        let unknown = total(vec![item("a", 1, 150), item("c", 1, 99)]).expect_err("c is not sold");
        assert_eq!(unknown.code(), tonic::Code::InvalidArgument);
        assert!(
            unknown.message().starts_with("items[1].sku \"c\""),
            "{}",
            unknown.message()
        );
        // The largest order the rules let through at the highest catalog
        // price totals exactly; one more item or unit and the rules refuse it.
        let order = |count: usize, quantity: i32| CreateOrderRequest {
            items: (0..count).map(|_| item("max", quantity, 0)).collect(),
            currency: "EUR".into(),
            payment_method: "pm_card_visa".into(),
            ..Default::default()
        };
        let most: HashMap<String, i64> = [("max".to_owned(), catalog::MAX_PRICE_MINOR)].into();
        let largest = order(100, 10_000);
        assert!(checked(&largest).is_ok());
        let (_, sum) = priced(&requested(&largest.items), &most, "EUR").expect("priced");
        assert_eq!(sum, 1_000_000_000_000);
        for over in [order(101, 10_000), order(100, 10_001)] {
            assert!(checked(&over).is_err());
        }
    }

    #[test]
    fn fingerprint_covers_everything_but_the_request_id() {
        let row = |sku: &str, quantity: i64, price: i64| ItemRow {
            sku: sku.into(),
            quantity,
            unit_price_minor: price,
        };
        let base = fingerprint(&[row("a", 2, 150), row("b", 1, 99)], "EUR", "pm_card_visa");
        assert_eq!(base.len(), 64);
        assert_eq!(
            base,
            fingerprint(&[row("a", 2, 150), row("b", 1, 99)], "EUR", "pm_card_visa"),
            "a retry is the same request"
        );
        for (name, other) in [
            (
                "quantity",
                fingerprint(&[row("a", 3, 150), row("b", 1, 99)], "EUR", "pm_card_visa"),
            ),
            (
                "price",
                fingerprint(&[row("a", 2, 151), row("b", 1, 99)], "EUR", "pm_card_visa"),
            ),
            (
                "sku",
                fingerprint(&[row("a", 2, 150), row("c", 1, 99)], "EUR", "pm_card_visa"),
            ),
            (
                "item order",
                fingerprint(&[row("b", 1, 99), row("a", 2, 150)], "EUR", "pm_card_visa"),
            ),
            (
                "items",
                fingerprint(&[row("a", 2, 150)], "EUR", "pm_card_visa"),
            ),
            (
                "currency",
                fingerprint(&[row("a", 2, 150), row("b", 1, 99)], "USD", "pm_card_visa"),
            ),
            (
                "method",
                fingerprint(&[row("a", 2, 150), row("b", 1, 99)], "EUR", "pm_card_amex"),
            ),
            (
                "field bounds",
                fingerprint(&[row("a", 2, 150), row("b", 1, 99)], "EURp", "m_card_visa"),
            ),
        ] {
            assert_ne!(base, other, "{name}");
        }
    }

    #[test]
    fn rows_without_a_fingerprint_match_any_retry() {
        let mut order = OrderRow {
            id: "ord_1".into(),
            user_id: "usr_1".into(),
            request_id: Some("r".into()),
            status: store::PAID.into(),
            total_minor: 1,
            currency: "EUR".into(),
            payment_method: "pm_card_visa".into(),
            payment_id: String::new(),
            failure_reason: String::new(),
            created_at_ms: 0,
            updated_at_ms: 0,
            request_fingerprint: None,
            items: Vec::new(),
        };
        assert!(same_request(&order, "abc"));
        order.request_fingerprint = Some("abc".into());
        assert!(same_request(&order, "abc"));
        assert!(!same_request(&order, "abd"));
    }
}
