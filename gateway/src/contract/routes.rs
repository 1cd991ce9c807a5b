//! The route table, derived at start-up from the `google.api.http`
//! annotations of the compiled descriptor sets: no code names an RPC, so an
//! annotated RPC added to a proto is served after a rebuild.

use http::Method;
use platform_proto::google::api::{HttpRule, http_rule::Pattern};
use prost::Message;
use prost_reflect::{DescriptorPool, MethodDescriptor, Value};

use super::http_rule::{PathTemplate, TemplateError};

/// Where the HTTP body goes in the request message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyRule {
    None,
    /// `body: "*"`: the whole message.
    All,
    /// `body: "<field>"`: one field; the rest comes from the path and query.
    Field(String),
}

#[derive(Debug, Clone)]
pub struct Route {
    pub http_method: Method,
    pub template: PathTemplate,
    pub body: BodyRule,
    /// `response_body`: the field of the response that is the HTTP body.
    pub response_body: Option<String>,
    pub method: MethodDescriptor,
    /// `/package.Service/Method`, the gRPC path.
    pub grpc_path: String,
    /// The logical service (`orders` for `platform.orders.v1`), which routing knows.
    pub service: String,
}

impl Route {
    pub fn server_streaming(&self) -> bool {
        self.method.is_server_streaming()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("cannot read the descriptor set: {0}")]
    Descriptors(#[from] prost_reflect::DescriptorError),
    #[error("{method}: {source}")]
    Template {
        method: String,
        #[source]
        source: TemplateError,
    },
    #[error("{method}: {reason}")]
    Rule { method: String, reason: String },
    #[error("ambiguous routes: {first} and {second} both match {http_method} {template}")]
    Ambiguous {
        first: String,
        second: String,
        http_method: Method,
        template: String,
    },
}

/// What a request path and method found.
#[derive(Debug)]
pub enum Found<'a> {
    Route(&'a Route, Vec<(Vec<String>, String)>),
    /// The path exists with other methods.
    MethodNotAllowed(Vec<Method>),
    NotFound,
}

#[derive(Debug, Clone)]
pub struct RouteTable {
    routes: Vec<Route>,
    pool: DescriptorPool,
    /// Marked `NO_SIDE_EFFECTS`: reads.
    safe: std::collections::HashSet<String>,
    /// Marked `IDEMPOTENT` or `NO_SIDE_EFFECTS`.
    idempotent: std::collections::HashSet<String>,
}

/// `platform.orders.v1` -> `orders`; any other package: its first segment
/// after an optional `platform.` prefix.
pub fn logical_service(package: &str) -> String {
    let rest = package.strip_prefix("platform.").unwrap_or(package);
    rest.split('.').next().unwrap_or(rest).to_owned()
}

/// `google.protobuf.MethodOptions.IdempotencyLevel` values.
const NO_SIDE_EFFECTS: i32 = 1;
const IDEMPOTENT: i32 = 2;

impl RouteTable {
    /// Reads every annotated method of every service in `descriptor_sets`.
    pub fn from_descriptor_sets(descriptor_sets: &[&[u8]]) -> Result<Self, RouteError> {
        let mut pool = DescriptorPool::new();
        for set in descriptor_sets {
            pool.decode_file_descriptor_set(*set)?;
        }
        let extension = pool.get_extension_by_name("google.api.http");
        let mut routes: Vec<Route> = Vec::new();
        for service in pool.services() {
            for method in service.methods() {
                let Some(extension) = &extension else {
                    continue;
                };
                let options = method.options();
                if !options.has_extension(extension) {
                    continue;
                }
                let Value::Message(rule) = options.get_extension(extension).into_owned() else {
                    continue;
                };
                let rule = HttpRule::decode(rule.encode_to_vec().as_slice()).map_err(|e| {
                    RouteError::Rule {
                        method: method.full_name().to_owned(),
                        reason: e.to_string(),
                    }
                })?;
                let mut rules = vec![rule.clone()];
                rules.extend(rule.additional_bindings.iter().cloned());
                for binding in rules {
                    let route = route(&method, &binding)?;
                    if let Some(other) = routes.iter().find(|r| {
                        r.http_method == route.http_method && r.template.same_shape(&route.template)
                    }) {
                        return Err(RouteError::Ambiguous {
                            first: other.method.full_name().to_owned(),
                            second: method.full_name().to_owned(),
                            http_method: route.http_method.clone(),
                            template: route.template.to_string(),
                        });
                    }
                    routes.push(route);
                }
            }
        }
        // More literal segments first: `/v1/orders/mine` wins over `/v1/orders/{id}`.
        routes.sort_by_key(|r| std::cmp::Reverse(r.template.literal_count()));
        let mut table = Self {
            routes,
            pool,
            safe: Default::default(),
            idempotent: Default::default(),
        };
        table.safe = table.methods_at(&[NO_SIDE_EFFECTS]);
        table.idempotent = table.methods_at(&[NO_SIDE_EFFECTS, IDEMPOTENT]);
        Ok(table)
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    pub fn pool(&self) -> &DescriptorPool {
        &self.pool
    }

    pub fn find(&self, method: &Method, path: &str) -> Found<'_> {
        let mut allowed = Vec::new();
        for route in &self.routes {
            if let Some(vars) = route.template.matches(path) {
                if route.http_method == method {
                    return Found::Route(route, vars);
                }
                if !allowed.contains(&route.http_method) {
                    allowed.push(route.http_method.clone());
                }
            }
        }
        if allowed.is_empty() {
            Found::NotFound
        } else {
            Found::MethodNotAllowed(allowed)
        }
    }

    /// Whether the unary method at gRPC path `grpc_path` is marked
    /// `option idempotency_level = NO_SIDE_EFFECTS;` in the protos: a read
    /// that may be copied to a color under test.
    pub fn is_safe(&self, grpc_path: &str) -> bool {
        self.safe.contains(grpc_path)
    }

    /// Whether the unary method is safe to send twice by its contract:
    /// marked `idempotency_level = IDEMPOTENT` (or `NO_SIDE_EFFECTS`), or
    /// behind a GET route.
    pub fn is_idempotent(&self, grpc_path: &str) -> bool {
        self.idempotent.contains(grpc_path)
            || self
                .routes
                .iter()
                .any(|r| r.grpc_path == grpc_path && r.http_method == Method::GET)
    }

    fn methods_at(&self, levels: &[i32]) -> std::collections::HashSet<String> {
        self.pool
            .services()
            .flat_map(|service| service.methods().collect::<Vec<_>>())
            .filter(|m| !m.is_client_streaming() && !m.is_server_streaming())
            .filter(|m| {
                m.method_descriptor_proto()
                    .options
                    .as_ref()
                    .and_then(|o| o.idempotency_level)
                    .is_some_and(|level| levels.contains(&level))
            })
            .map(|m| format!("/{}/{}", m.parent_service().full_name(), m.name()))
            .collect()
    }

    /// The method behind a gRPC path, for native gRPC requests.
    pub fn grpc_method(&self, path: &str) -> Option<MethodDescriptor> {
        let (service, method) = path.trim_start_matches('/').split_once('/')?;
        self.pool
            .get_service_by_name(service)?
            .methods()
            .find(|m| m.name() == method)
    }
}

fn route(method: &MethodDescriptor, rule: &HttpRule) -> Result<Route, RouteError> {
    let name = method.full_name().to_owned();
    let fail = |reason: String| RouteError::Rule {
        method: name.clone(),
        reason,
    };
    let (http_method, template) = match &rule.pattern {
        Some(Pattern::Get(p)) => (Method::GET, p.as_str()),
        Some(Pattern::Put(p)) => (Method::PUT, p.as_str()),
        Some(Pattern::Post(p)) => (Method::POST, p.as_str()),
        Some(Pattern::Delete(p)) => (Method::DELETE, p.as_str()),
        Some(Pattern::Patch(p)) => (Method::PATCH, p.as_str()),
        Some(Pattern::Custom(c)) => (
            Method::from_bytes(c.kind.as_bytes())
                .map_err(|_| fail(format!("invalid custom method {:?}", c.kind)))?,
            c.path.as_str(),
        ),
        None => return Err(fail("the http rule has no pattern".into())),
    };
    let template = PathTemplate::parse(template).map_err(|source| RouteError::Template {
        method: name.clone(),
        source,
    })?;
    let input = method.input();
    for field_path in template.variables() {
        let mut message = input.clone();
        for (i, part) in field_path.iter().enumerate() {
            let field = message.get_field_by_name(part).ok_or_else(|| {
                fail(format!(
                    "the path names {part:?}, which {} does not have",
                    message.full_name()
                ))
            })?;
            if i + 1 < field_path.len() {
                message = field
                    .kind()
                    .as_message()
                    .cloned()
                    .ok_or_else(|| fail(format!("{part} is not a message")))?;
            }
        }
    }
    let body = match rule.body.as_str() {
        "" => BodyRule::None,
        "*" => BodyRule::All,
        field => {
            input.get_field_by_name(field).ok_or_else(|| {
                fail(format!(
                    "body names {field:?}, which {} does not have",
                    input.full_name()
                ))
            })?;
            BodyRule::Field(field.to_owned())
        }
    };
    let response_body = match rule.response_body.as_str() {
        "" => None,
        field => {
            method.output().get_field_by_name(field).ok_or_else(|| {
                fail(format!(
                    "response_body names {field:?}, which the response does not have"
                ))
            })?;
            Some(field.to_owned())
        }
    };
    Ok(Route {
        http_method,
        template,
        body,
        response_body,
        grpc_path: format!("/{}/{}", method.parent_service().full_name(), method.name()),
        service: logical_service(method.parent_service().package_name()),
        method: method.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> RouteTable {
        RouteTable::from_descriptor_sets(&[platform_proto::PLATFORM_DESCRIPTOR_SET])
            .expect("routes")
    }

    #[test]
    fn derives_the_public_contract_from_annotations() {
        let table = table();
        let mut got: Vec<String> = table
            .routes()
            .iter()
            .map(|r| {
                format!(
                    "{} {} -> {} ({})",
                    r.http_method, r.template, r.grpc_path, r.service
                )
            })
            .collect();
        got.sort();
        let mut want = vec![
            "POST /v1/auth/register -> /platform.auth.v1.AuthService/Register (auth)",
            "POST /v1/auth/login -> /platform.auth.v1.AuthService/Login (auth)",
            "GET /v1/auth/me -> /platform.auth.v1.AuthService/GetMe (auth)",
            "GET /v1/auth/jwks -> /platform.auth.v1.AuthService/GetJwks (auth)",
            "POST /v1/orders -> /platform.orders.v1.OrderService/CreateOrder (orders)",
            "GET /v1/orders/{order_id} -> /platform.orders.v1.OrderService/GetOrder (orders)",
            "GET /v1/orders -> /platform.orders.v1.OrderService/ListOrders (orders)",
            "GET /v1/catalog -> /platform.orders.v1.OrderService/ListCatalog (orders)",
            "POST /v1/orders/{order_id}:cancel -> /platform.orders.v1.OrderService/CancelOrder (orders)",
            "GET /v1/payments/{payment_id} -> /platform.payments.v1.PaymentService/GetPayment (payments)",
            "GET /v1/orders/{order_id}/payments -> /platform.payments.v1.PaymentService/ListPayments (payments)",
            "GET /v1/notifications -> /platform.notifications.v1.NotificationService/ListNotifications (notifications)",
            "GET /v1/notifications:stream -> /platform.notifications.v1.NotificationService/StreamNotifications (notifications)",
        ];
        want.sort();
        assert_eq!(got, want);
    }

    #[test]
    fn finds_routes_and_says_which_methods_a_path_allows() {
        let table = table();
        let check = |method: Method, path: &str, want: &str| {
            let got = match table.find(&method, path) {
                Found::Route(r, vars) => format!(
                    "{} {:?}",
                    r.method.name(),
                    vars.iter()
                        .map(|(f, v)| format!("{}={v}", f.join(".")))
                        .collect::<Vec<_>>()
                ),
                Found::MethodNotAllowed(allowed) => format!("405 {allowed:?}"),
                Found::NotFound => "404".into(),
            };
            assert_eq!(got, want, "{method} {path}");
        };
        check(
            Method::GET,
            "/v1/orders/ord_1",
            "GetOrder [\"order_id=ord_1\"]",
        );
        check(
            Method::POST,
            "/v1/orders/ord_1:cancel",
            "CancelOrder [\"order_id=ord_1\"]",
        );
        check(
            Method::GET,
            "/v1/orders/ord_1/payments",
            "ListPayments [\"order_id=ord_1\"]",
        );
        check(
            Method::GET,
            "/v1/notifications:stream",
            "StreamNotifications []",
        );
        check(Method::DELETE, "/v1/orders/ord_1", "405 [GET]");
        check(Method::GET, "/v1/orders/ord_1:cancel", "405 [POST]");
        check(Method::GET, "/v1/nothing", "404");
        check(Method::GET, "/v1/orders/ord_1:refund", "404");
    }
}
