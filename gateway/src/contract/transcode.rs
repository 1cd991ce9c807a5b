//! JSON <-> protobuf for one route, with the canonical proto3 JSON mapping:
//! proto and lowerCamelCase names accepted, lowerCamelCase emitted, 64-bit
//! integers as strings, enums by name, well-known types in their JSON form,
//! unknown fields refused with a message that names them.
//!
//! A request message is assembled as one JSON object (body, then path
//! variables, then query parameters for the fields still unset) and
//! deserialized once, so every field gets the same checks.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use prost::Message;
use prost_reflect::{
    DeserializeOptions, DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, SerializeOptions,
};
use serde_json::{Map, Value};

use crate::contract::Mismatch;
use crate::contract::routes::{BodyRule, Route};

/// The protobuf request of a REST call.
pub fn request(
    route: &Route,
    vars: &[(Vec<String>, String)],
    query: Option<&str>,
    body: &[u8],
) -> Result<Bytes, Mismatch> {
    let input = route.method.input();
    let mut root = Map::new();
    let parsed_body = || -> Result<Option<Value>, Mismatch> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        serde_json::from_slice(body)
            .map(Some)
            .map_err(|e| Mismatch::request(format!("malformed JSON body: {e}")))
    };
    match &route.body {
        BodyRule::All => match parsed_body()? {
            Some(Value::Object(object)) => root = object,
            Some(_) => return Err(Mismatch::request("the JSON body must be an object")),
            None => {}
        },
        BodyRule::Field(field) => {
            if let Some(value) = parsed_body()? {
                root.insert(field.clone(), value);
            }
        }
        BodyRule::None => {
            if parsed_body()?.is_some() {
                return Err(Mismatch::request(format!(
                    "{} {} takes no body; send the fields as query parameters",
                    route.http_method, route.template
                )));
            }
        }
    }
    for (path, value) in vars {
        set(&mut root, &input, path, value, false)?;
    }
    if let Some(query) = query.filter(|q| !q.is_empty()) {
        if route.body == BodyRule::All {
            return Err(Mismatch::request(
                "this route takes its fields from the JSON body, not the query",
            ));
        }
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let key = decode_query(key)?;
            let value = decode_query(value)?;
            let path: Vec<String> = key.split('.').map(str::to_owned).collect();
            if vars.iter().any(|(bound, _)| *bound == path) {
                continue;
            }
            set(&mut root, &input, &path, &value, true)?;
        }
    }
    let message = DynamicMessage::deserialize_with_options(
        input,
        Value::Object(root),
        &DeserializeOptions::new(),
    )
    .map_err(|e| Mismatch::request(format!("invalid request: {e}")))?;
    Ok(frame(&message.encode_to_vec()))
}

fn decode_query(raw: &str) -> Result<String, Mismatch> {
    let spaced = raw.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| Mismatch::request(format!("query parameter {raw:?} is not UTF-8")))
}

fn field(message: &MessageDescriptor, name: &str, key: &str) -> Result<FieldDescriptor, Mismatch> {
    message
        .get_field_by_name(name)
        .or_else(|| message.get_field_by_json_name(name))
        .ok_or_else(|| Mismatch::request(format!("unknown field {key:?} in query or path")))
}

/// Sets the field at `path` from its text form (a path segment or a query value).
fn set(
    root: &mut Map<String, Value>,
    input: &MessageDescriptor,
    path: &[String],
    raw: &str,
    from_query: bool,
) -> Result<(), Mismatch> {
    let key = path.join(".");
    let mut message = input.clone();
    let mut object = root;
    for (i, part) in path.iter().enumerate() {
        let field = field(&message, part, &key)?;
        if i + 1 < path.len() {
            let Kind::Message(inner) = field.kind() else {
                return Err(Mismatch::request(format!(
                    "{key:?}: {part} is not a message"
                )));
            };
            let entry = object
                .entry(field.name().to_owned())
                .or_insert_with(|| Value::Object(Map::new()));
            let Value::Object(next) = entry else {
                return Err(Mismatch::request(format!("{key:?} is set twice")));
            };
            object = next;
            message = inner;
            continue;
        }
        let value = scalar(&field, raw, &key)?;
        let name = field.name().to_owned();
        if field.is_list() {
            match object
                .entry(name)
                .or_insert_with(|| Value::Array(Vec::new()))
            {
                Value::Array(list) => list.push(value),
                _ => return Err(Mismatch::request(format!("{key:?} is set twice"))),
            }
        } else if from_query && object.contains_key(&name) {
            return Err(Mismatch::request(format!(
                "{key:?} is given more than once"
            )));
        } else {
            object.insert(name, value);
        }
    }
    Ok(())
}

/// The JSON form of a scalar given as text.
fn scalar(field: &FieldDescriptor, raw: &str, key: &str) -> Result<Value, Mismatch> {
    match field.kind() {
        Kind::Bool => match raw {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err(Mismatch::request(format!(
                "{key:?} must be true or false, got {raw:?}"
            ))),
        },
        Kind::Message(m) if !m.full_name().starts_with("google.protobuf.") => {
            Err(Mismatch::request(format!(
                "{key:?} is a message: set its fields as {key}.<field>"
            )))
        }
        // Numbers as strings are valid proto3 JSON, and keep 64-bit values exact.
        _ => Ok(Value::String(raw.to_owned())),
    }
}

/// A length-prefixed gRPC message (uncompressed).
/// Request fields by which a service recognizes a call it has seen before:
/// CreateOrder's `request_id`, Charge's and Send's `idempotency_key`.
const IDEMPOTENCY_KEYS: [&str; 2] = ["request_id", "idempotency_key"];

/// True when a unary request (one uncompressed gRPC frame) carries a
/// non-empty idempotency key: the service answers a replay with the first
/// result, so the call may be sent again like an idempotent one (to another
/// endpoint when the first one died with the call in flight).
pub fn carries_idempotency_key(input: &MessageDescriptor, framed: &[u8]) -> bool {
    let Some((&0, rest)) = framed.split_first() else {
        return false;
    };
    let Some(message) = rest.get(4..) else {
        return false;
    };
    DynamicMessage::decode(input.clone(), message).is_ok_and(|m| has_idempotency_key(&m))
}

fn has_idempotency_key(message: &DynamicMessage) -> bool {
    IDEMPOTENCY_KEYS
        .iter()
        .find_map(|name| {
            prost_reflect::ReflectMessage::descriptor(message).get_field_by_name(name)
        })
        .is_some_and(|key| {
            matches!(message.get_field(&key).as_ref(), prost_reflect::Value::String(s) if !s.is_empty())
        })
}

/// Checks a native gRPC unary request against its contract: exactly one
/// uncompressed, length-prefixed message that decodes as `input`. A client's
/// malformed call is refused here (INVALID_ARGUMENT, or UNIMPLEMENTED for a
/// compression the services do not speak), never sent on to be answered as
/// a service's INTERNAL error. Returns whether it carries an idempotency key.
pub fn check_unary(input: &MessageDescriptor, framed: &[u8]) -> Result<bool, Mismatch> {
    let invalid = |why: String| {
        Mismatch::request(format!(
            "the request is not one {} message: {why}",
            input.full_name()
        ))
    };
    let Some((&flag, rest)) = framed.split_first() else {
        return Err(invalid("the body is empty".into()));
    };
    let (Some(prefix), Some(message)) = (rest.get(..4), rest.get(4..)) else {
        return Err(invalid(
            "the body is shorter than a gRPC frame header".into(),
        ));
    };
    match flag {
        0 => {}
        1 => {
            return Err(Mismatch::unsupported(
                "compressed gRPC requests are not supported: send them uncompressed",
            ));
        }
        other => return Err(invalid(format!("frame flag {other} is not 0 or 1"))),
    }
    let declared = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
    if usize::try_from(declared).ok() != Some(message.len()) {
        return Err(invalid(format!(
            "the frame declares {declared} bytes and carries {}",
            message.len()
        )));
    }
    let decoded = DynamicMessage::decode(input.clone(), message)
        .map_err(|e| invalid(format!("it does not decode: {e}")))?;
    Ok(has_idempotency_key(&decoded))
}

pub fn frame(message: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(5 + message.len());
    out.put_u8(0);
    out.put_u32(u32::try_from(message.len()).unwrap_or(u32::MAX));
    out.put_slice(message);
    out.freeze()
}

/// Splits whole gRPC messages off the front of `buffer`.
pub fn next_frame(buffer: &mut BytesMut) -> Result<Option<Bytes>, Mismatch> {
    if buffer.len() < 5 {
        return Ok(None);
    }
    if buffer[0] != 0 {
        return Err(Mismatch::response(
            "compressed gRPC responses are not supported",
        ));
    }
    let len = u32::from_be_bytes([buffer[1], buffer[2], buffer[3], buffer[4]]) as usize;
    if buffer.len() < 5 + len {
        return Ok(None);
    }
    buffer.advance(5);
    Ok(Some(buffer.split_to(len).freeze()))
}

/// The JSON of a response message (or of its `response_body` field).
pub fn response(route: &Route, message: &[u8]) -> Result<Value, Mismatch> {
    let decoded = DynamicMessage::decode(route.method.output(), message)
        .map_err(|e| Mismatch::response(format!("undecodable response: {e}")))?;
    let options = SerializeOptions::new();
    let json = decoded
        .serialize_with_options(serde_json::value::Serializer, &options)
        .map_err(|e| Mismatch::encoding(format!("unencodable response: {e}")))?;
    match &route.response_body {
        None => Ok(json),
        Some(field) => {
            let json_name = route
                .method
                .output()
                .get_field_by_name(field)
                .map(|f| f.json_name().to_owned())
                .unwrap_or_else(|| field.clone());
            Ok(json.get(&json_name).cloned().unwrap_or(Value::Null))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::routes::{Found, RouteTable};

    fn decode(route: &Route, framed: Bytes) -> Value {
        let mut buffer = BytesMut::from(&framed[..]);
        let message = next_frame(&mut buffer).expect("frame").expect("whole");
        let decoded = DynamicMessage::decode(route.method.input(), message).expect("decode");
        decoded
            .serialize_with_options(
                serde_json::value::Serializer,
                &SerializeOptions::new().use_proto_field_name(true),
            )
            .expect("json")
    }

    /// `method path?query` with `body` -> the request message as JSON, or the error.
    fn check(method: &str, target: &str, body: &str, expect: Result<Value, &str>) {
        let table = RouteTable::from_descriptor_sets(&[platform_proto::PLATFORM_DESCRIPTOR_SET])
            .expect("table");
        let (path, query) = target
            .split_once('?')
            .map_or((target, None), |(p, q)| (p, Some(q)));
        let method: http::Method = method.parse().expect("method");
        let Found::Route(route, vars) = table.find(&method, path) else {
            panic!("no route for {target}")
        };
        let got = request(route, &vars, query, body.as_bytes()).map(|framed| decode(route, framed));
        match (got, expect) {
            (Ok(got), Ok(want)) => assert_eq!(got, want, "{target} {body}"),
            (Err(failure), Err(want)) => {
                assert!(
                    failure.message.contains(want),
                    "{target} {body}: {:?} lacks {want:?}",
                    failure.message
                );
                assert_eq!(failure.fault, crate::contract::Fault::Request);
            }
            (got, want) => panic!("{target} {body}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn maps_requests() {
        use serde_json::json;
        // body "*", proto and camelCase names, int64 as number or string.
        check(
            "POST",
            "/v1/orders",
            r#"{"items":[{"sku":"a","quantity":2,"unitPriceMinor":"1250"}],"currency":"EUR","payment_method":"pm"}"#,
            Ok(
                json!({"items":[{"sku":"a","quantity":2,"unit_price_minor":"1250"}],"currency":"EUR","payment_method":"pm"}),
            ),
        );
        check(
            "GET",
            "/v1/orders/ord_1",
            "",
            Ok(json!({"order_id": "ord_1"})),
        );
        check(
            "POST",
            "/v1/orders/ord%201:cancel",
            "{}",
            Ok(json!({"order_id": "ord 1"})),
        );
        // query parameters fill the remaining fields, by either name
        check(
            "GET",
            "/v1/orders?page_size=5&pageToken=abc",
            "",
            Ok(json!({"page_size": 5, "page_token": "abc"})),
        );
        check(
            "GET",
            "/v1/orders/ord_1/payments?page_size=2",
            "",
            Ok(json!({"order_id": "ord_1", "page_size": 2})),
        );
        // errors name what is wrong
        check(
            "POST",
            "/v1/orders",
            r#"{"items": [}"#,
            Err("malformed JSON body"),
        );
        check("POST", "/v1/orders", r#"{"colour":"red"}"#, Err("colour"));
        check("POST", "/v1/orders", r#"[1]"#, Err("must be an object"));
        check(
            "GET",
            "/v1/orders?colour=red",
            "",
            Err("unknown field \"colour\""),
        );
        check(
            "GET",
            "/v1/orders?page_size=many",
            "",
            Err("invalid request"),
        );
        check(
            "GET",
            "/v1/orders?page_size=1&page_size=2",
            "",
            Err("more than once"),
        );
        check(
            "GET",
            "/v1/orders/ord_1",
            r#"{"x":1}"#,
            Err("takes no body"),
        );
        check(
            "POST",
            "/v1/orders?currency=EUR",
            "{}",
            Err("not the query"),
        );
    }

    #[test]
    fn frames_round_trip() {
        let mut buffer = BytesMut::new();
        buffer.extend_from_slice(&frame(b"hello"));
        buffer.extend_from_slice(&frame(b""));
        buffer.extend_from_slice(&frame(b"wor")[..4]);
        assert_eq!(
            next_frame(&mut buffer).expect("ok").as_deref(),
            Some(&b"hello"[..])
        );
        assert_eq!(
            next_frame(&mut buffer).expect("ok").as_deref(),
            Some(&b""[..])
        );
        assert_eq!(next_frame(&mut buffer).expect("ok"), None);
    }
}

#[cfg(test)]
mod idempotency_tests {
    use super::*;
    use crate::contract::routes::{Found, RouteTable};

    fn create_order(body: &str) -> (MessageDescriptor, Bytes) {
        let table = RouteTable::from_descriptor_sets(&[platform_proto::PLATFORM_DESCRIPTOR_SET])
            .expect("table");
        let Found::Route(route, vars) = table.find(&http::Method::POST, "/v1/orders") else {
            panic!("no route for POST /v1/orders");
        };
        let framed = request(route, &vars, None, body.as_bytes()).expect("transcodes");
        (route.method.input(), framed)
    }

    #[test]
    fn a_request_id_makes_a_create_replayable_and_nothing_else_does() {
        let (input, keyed) = create_order(r#"{"currency":"EUR","requestId":"r-1"}"#);
        assert!(carries_idempotency_key(&input, &keyed));
        let (input, plain) = create_order(r#"{"currency":"EUR"}"#);
        assert!(!carries_idempotency_key(&input, &plain));
        let (input, empty) = create_order(r#"{"currency":"EUR","requestId":""}"#);
        assert!(!carries_idempotency_key(&input, &empty));
        // A compressed frame cannot be looked into: not replayed.
        let mut compressed = keyed.to_vec();
        compressed[0] = 1;
        assert!(!carries_idempotency_key(&input, &compressed));
        assert!(!carries_idempotency_key(&input, &[]));
    }
}
