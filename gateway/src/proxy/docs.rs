//! `GET /openapi.json`, an OpenAPI 3 document generated from the same
//! annotations as the routes, and `GET /docs`, an interactive page for it
//! whose assets the gateway serves itself (no CDN).

use http::{HeaderValue, Method, Response};
use prost_reflect::{FieldDescriptor, Kind, MessageDescriptor};
use serde_json::{Map, Value, json};

use crate::boxed::{BoxBody, full};
use crate::contract::routes::{BodyRule, Route, RouteTable};
use crate::contract::rules::Rules;
use crate::proxy::state::State;
use platform_proto::fieldrules::v1::Format;

const PAGE: &str = include_str!("docs.html");

pub fn handle(state: &State, method: &Method, path: &str) -> Option<Response<BoxBody>> {
    if method != Method::GET {
        return None;
    }
    let (body, content_type) = match path {
        "/openapi.json" => (
            openapi(&state.table, &state.config.public_routes).to_string(),
            "application/json",
        ),
        "/docs" | "/docs/" => (PAGE.to_owned(), "text/html; charset=utf-8"),
        _ => return None,
    };
    let mut response = Response::new(full(body));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type),
    );
    if content_type.starts_with("text/html")
        && let Ok(policy) = HeaderValue::from_str(&PAGE_POLICY)
    {
        response
            .headers_mut()
            .insert(http::header::CONTENT_SECURITY_POLICY, policy);
    }
    Some(response)
}

/// The page may run its own inline script and style (by their hashes) and
/// fetch the API description from this origin; nothing else.
static PAGE_POLICY: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let hash = |tag: &str| {
        let open = format!("<{tag}>");
        let close = format!("</{tag}>");
        let inner = PAGE
            .split_once(open.as_str())
            .and_then(|(_, rest)| rest.split_once(close.as_str()))
            .map_or("", |(inner, _)| inner);
        let digest = <sha2::Sha256 as sha2::Digest>::digest(inner.as_bytes());
        format!(
            "'sha256-{}'",
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, digest)
        )
    };
    format!(
        "default-src 'none'; script-src {}; style-src {}; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        hash("script"),
        hash("style")
    )
});

/// The OpenAPI document of every route in `table`.
pub fn openapi(table: &RouteTable, public: &[(Method, String)]) -> Value {
    let mut paths = Map::new();
    let mut schemas = Map::new();
    schemas.insert(
        "Status".into(),
        json!({
            "type": "object",
            "description": "An error (google.rpc.Status): the gRPC code, a message and details.",
            "properties": {
                "code": {"type": "integer", "format": "int32"},
                "message": {"type": "string"},
                "details": {"type": "array", "items": {"type": "object"}}
            }
        }),
    );
    for route in table.routes() {
        let path = route.template.openapi_path();
        let operation = operation(route, &mut schemas, public);
        let entry = paths
            .entry(path)
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(ops) = entry {
            ops.insert(route.http_method.as_str().to_ascii_lowercase(), operation);
        }
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "platform API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "REST/JSON through the edge gateway, generated from the google.api.http annotations of the gRPC contracts."
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}
        },
        "security": [{"bearer": []}]
    })
}

fn operation(
    route: &Route,
    schemas: &mut Map<String, Value>,
    public: &[(Method, String)],
) -> Value {
    let input = route.method.input();
    let bound: Vec<String> = route.template.variables().map(|p| p.join(".")).collect();
    let mut parameters: Vec<Value> = bound
        .iter()
        .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
        .collect();
    if route.body != BodyRule::All {
        for field in input.fields() {
            let in_body = matches!(&route.body, BodyRule::Field(f) if f == field.name());
            if bound.iter().any(|b| b == field.name())
                || in_body
                || matches!(field.kind(), Kind::Message(_))
            {
                continue;
            }
            parameters.push(json!({
                "name": field.json_name(),
                "in": "query",
                "required": false,
                "schema": field_schema(&field, schemas),
            }));
        }
    }
    let mut op = json!({
        "operationId": route.method.name(),
        "summary": first_line(&route.method),
        "tags": [route.service],
        "parameters": parameters,
        "responses": {
            "200": {"description": "OK", "content": {
                if route.server_streaming() { "application/x-ndjson" } else { "application/json" }:
                    {"schema": schema_ref(&route.method.output(), schemas)}
            }},
            "default": {"description": "An error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Status"}}}}
        }
    });
    let body_schema = match &route.body {
        BodyRule::None => None,
        BodyRule::All => Some(schema_ref(&input, schemas)),
        BodyRule::Field(f) => input
            .get_field_by_name(f)
            .map(|field| field_schema(&field, schemas)),
    };
    if let (Some(schema), Value::Object(map)) = (body_schema, &mut op) {
        map.insert(
            "requestBody".into(),
            json!({"required": true, "content": {"application/json": {"schema": schema}}}),
        );
    }
    let template = route.template.to_string();
    if public
        .iter()
        .any(|(m, p)| *m == route.http_method && *p == template)
        && let Value::Object(map) = &mut op
    {
        map.insert("security".into(), json!([]));
    }
    op
}

fn first_line(method: &prost_reflect::MethodDescriptor) -> String {
    let comments = method
        .parent_file()
        .file_descriptor_proto()
        .source_code_info
        .as_ref()
        .and_then(|info| {
            info.location
                .iter()
                .find(|l| l.path == method.path())
                .and_then(|l| l.leading_comments.clone())
        })
        .unwrap_or_default();
    // The first sentence of the comment, however it was wrapped.
    let text = comments.split_whitespace().collect::<Vec<_>>().join(" ");
    match text.find(". ") {
        Some(end) => text[..=end].to_owned(),
        None if text.is_empty() => method.name().to_owned(),
        None => text,
    }
}

fn schema_ref(message: &MessageDescriptor, schemas: &mut Map<String, Value>) -> Value {
    if let Some(schema) = well_known(message) {
        return schema;
    }
    let name = message.full_name().to_owned();
    if !schemas.contains_key(&name) {
        schemas.insert(name.clone(), Value::Null);
        let mut properties = Map::new();
        let mut required = Vec::new();
        for field in message.fields() {
            let rules = Rules::of(&field);
            if rules.required {
                required.push(Value::from(field.json_name()));
            }
            let mut property = field_schema(&field, schemas);
            if rules.output_only {
                // Answered, never read from a request.
                property["readOnly"] = Value::Bool(true);
            }
            properties.insert(field.json_name().to_owned(), property);
        }
        let mut schema = json!({"type": "object", "properties": properties});
        if !required.is_empty() {
            schema["required"] = Value::Array(required);
        }
        schemas.insert(name.clone(), schema);
    }
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn well_known(message: &MessageDescriptor) -> Option<Value> {
    match message.full_name() {
        "google.protobuf.Timestamp" => Some(json!({"type": "string", "format": "date-time"})),
        "google.protobuf.Duration" => Some(json!({"type": "string", "example": "1.5s"})),
        _ => None,
    }
}

fn field_schema(field: &FieldDescriptor, schemas: &mut Map<String, Value>) -> Value {
    let single = match field.kind() {
        Kind::Double | Kind::Float => json!({"type": "number"}),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
            json!({"type": "integer", "format": "int32"})
        }
        Kind::Uint32 | Kind::Fixed32 => json!({"type": "integer", "format": "int64", "minimum": 0}),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 | Kind::Uint64 | Kind::Fixed64 => {
            json!({"type": "string", "format": "int64"})
        }
        Kind::Bool => json!({"type": "boolean"}),
        Kind::String => json!({"type": "string"}),
        Kind::Bytes => json!({"type": "string", "format": "byte"}),
        Kind::Enum(e) => {
            json!({"type": "string", "enum": e.values().map(|v| v.name().to_owned()).collect::<Vec<_>>()})
        }
        Kind::Message(m) if field.is_map() => {
            let value = m.map_entry_value_field();
            json!({"type": "object", "additionalProperties": field_schema(&value, schemas)})
        }
        Kind::Message(m) => schema_ref(&m, schemas),
    };
    let rules = Rules::of(field);
    if field.is_list() {
        let mut list = json!({"type": "array", "items": single});
        constrain(&mut list, "minItems", rules.min_len);
        constrain(&mut list, "maxItems", rules.max_len);
        list
    } else {
        constrained(single, field, &rules)
    }
}

fn constrain(schema: &mut Value, key: &str, value: Option<impl Into<Value>>) {
    if let Some(value) = value {
        schema[key] = value.into();
    }
}

/// A single value's schema with its field's rules: lengths of strings,
/// ranges of numbers (as a pattern and `x-minimum`/`x-maximum` for 64-bit
/// integers, which JSON carries as strings), and formats.
fn constrained(mut schema: Value, field: &FieldDescriptor, rules: &Rules) -> Value {
    match field.kind() {
        Kind::String => {
            constrain(&mut schema, "minLength", rules.min_len);
            constrain(&mut schema, "maxLength", rules.max_len);
            match crate::contract::rules::format(rules) {
                Some(Format::Email) => schema["format"] = "email".into(),
                Some(Format::Currency) => {
                    schema["enum"] = platform_proto::rules::ISO_4217.to_vec().into();
                }
                _ => {}
            }
        }
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 | Kind::Uint64 | Kind::Fixed64 => {
            if rules.min.is_some_and(|min| min >= 0) {
                schema["pattern"] = "^[0-9]{1,19}$".into();
            }
            constrain(&mut schema, "x-minimum", rules.min);
            constrain(&mut schema, "x-maximum", rules.max);
        }
        Kind::Message(_) | Kind::Enum(_) | Kind::Bool | Kind::Bytes => {}
        _ => {
            constrain(&mut schema, "minimum", rules.min);
            constrain(&mut schema, "maximum", rules.max);
        }
    }
    schema
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_every_route_with_schemas() {
        let table = RouteTable::from_descriptor_sets(&[platform_proto::PLATFORM_DESCRIPTOR_SET])
            .expect("table");
        let doc = openapi(&table, &[(Method::POST, "/v1/auth/login".into())]);
        let create = &doc["paths"]["/v1/orders"]["post"];
        assert_eq!(create["operationId"], "CreateOrder");
        assert_eq!(
            create["requestBody"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/platform.orders.v1.CreateOrderRequest"
        );
        let order = &doc["components"]["schemas"]["platform.orders.v1.Order"]["properties"];
        assert_eq!(
            order["totalMinor"]["type"], "string",
            "int64 is a string in JSON"
        );
        assert_eq!(order["createdAt"]["format"], "date-time");
        // What the services validate, from the same annotations.
        let schemas = &doc["components"]["schemas"];
        let request = &schemas["platform.orders.v1.CreateOrderRequest"];
        assert_eq!(
            request["required"],
            json!(["items", "currency", "paymentMethod"])
        );
        assert_eq!(request["properties"]["items"]["minItems"], 1);
        assert_eq!(request["properties"]["items"]["maxItems"], 100);
        assert_eq!(request["properties"]["requestId"]["maxLength"], 64);
        assert!(
            request["properties"]["currency"]["enum"]
                .as_array()
                .expect("codes")
                .contains(&json!("EUR"))
        );
        let item = &schemas["platform.orders.v1.OrderItem"];
        assert_eq!(item["properties"]["quantity"]["minimum"], 1);
        assert_eq!(item["properties"]["quantity"]["maximum"], 10_000);
        assert_eq!(
            schemas["platform.auth.v1.RegisterRequest"]["properties"]["email"]["format"],
            "email"
        );
        assert_eq!(order["status"]["enum"][2], "ORDER_STATUS_PAID");
        let get = &doc["paths"]["/v1/orders/{order_id}"]["get"];
        assert_eq!(get["parameters"][0]["in"], "path");
        let list = &doc["paths"]["/v1/orders"]["get"]["parameters"];
        assert!(
            list.as_array()
                .expect("array")
                .iter()
                .any(|p| p["name"] == "pageSize" && p["in"] == "query")
        );
        assert_eq!(
            doc["paths"]["/v1/auth/login"]["post"]["security"],
            json!([])
        );
        assert_eq!(
            doc["paths"]["/v1/orders/{order_id}:cancel"]["post"]["operationId"],
            "CancelOrder"
        );
        assert!(
            create["summary"]
                .as_str()
                .expect("summary")
                .starts_with("Validates and stores an order"),
            "{}",
            create["summary"]
        );
    }
}
