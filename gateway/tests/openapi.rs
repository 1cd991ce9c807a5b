//! The OpenAPI document as a generated client or a schema-based fuzzer reads
//! it, against the real services: the document is valid OpenAPI (checked by
//! openapi-spec-validator); a body built from nothing but its schema (the
//! required fields, each at a value its constraints allow) is accepted; and
//! every constraint it states is one the services enforce: a body breaking
//! exactly one of them is refused with 400 and a message naming the field;
//! and what the services answer fits the response schemas.
//! The document comes from the protos' annotations, so this is the check
//! that the annotations and the services' validation say the same thing.

mod common;

use common::Stack;
use serde_json::{Value, json};

/// `openapi-spec-validator` on `doc`; `None` when it is not installed
/// outside CI.
fn spec_validator(doc: &Value) -> Option<Result<(), String>> {
    if !testkit::python_module(
        "openapi_spec_validator",
        "openapi-spec-validator",
        "that check",
    ) {
        return None;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, doc.to_string()).expect("write");
    let output = std::process::Command::new("python3")
        .args([
            "-c",
            "import json, sys; from openapi_spec_validator import validate; validate(json.load(open(sys.argv[1])))",
        ])
        .arg(&file)
        .output()
        .expect("python3 runs");
    Some(if output.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    })
}

/// The schema `schema` stands for, following `$ref`.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(reference) => {
            let name = reference.trim_start_matches("#/components/schemas/");
            &doc["components"]["schemas"][name]
        }
        None => schema,
    }
}

const TEXT: &str = "Zq8-wR4t-Lm2x-Pk7v";

/// A value of `schema` with only what it requires, each at an allowed value.
fn example(doc: &Value, schema: &Value) -> Value {
    let schema = resolve(doc, schema);
    if let Some(values) = schema["enum"].as_array() {
        return values
            .iter()
            .find(|v| *v == "EUR")
            .unwrap_or(&values[0])
            .clone();
    }
    match schema["type"].as_str() {
        Some("object") => {
            let mut object = serde_json::Map::new();
            for name in schema["required"].as_array().into_iter().flatten() {
                let name = name.as_str().expect("name");
                object.insert(name.into(), example(doc, &schema["properties"][name]));
            }
            Value::Object(object)
        }
        Some("array") => {
            let count = schema["minItems"].as_u64().unwrap_or(1).max(1);
            Value::Array((0..count).map(|_| example(doc, &schema["items"])).collect())
        }
        Some("integer") => json!(schema["minimum"].as_i64().unwrap_or(1).max(1)),
        Some("string") if schema["format"] == "int64" => {
            json!(schema["x-minimum"].as_i64().unwrap_or(1).max(1).to_string())
        }
        Some("string") if schema["format"] == "email" => {
            json!(format!(
                "openapi-{}@example.com",
                std::process::id() % 100_000
            ))
        }
        Some("string") => {
            // One text for every string (so login repeats what register
            // sent), not a word a password list holds, within the lengths.
            let min = schema["minLength"].as_u64().unwrap_or(0) as usize;
            let max = schema["maxLength"].as_u64().unwrap_or(64) as usize;
            let length = TEXT.len().clamp(min, max);
            json!(TEXT.chars().cycle().take(length).collect::<String>())
        }
        Some("boolean") => json!(false),
        _ => json!(null),
    }
}

/// Bodies that each break one stated constraint of `valid` (a value of
/// `schema`), with the name of the field broken.
fn violations(doc: &Value, schema: &Value, valid: &Value) -> Vec<(String, Value)> {
    let schema = resolve(doc, schema);
    let mut found = Vec::new();
    let Some(properties) = schema["properties"].as_object() else {
        return found;
    };
    for (name, property) in properties {
        let property = resolve(doc, property);
        let mut with = |value: Option<Value>| {
            let mut body = valid.clone();
            match value {
                Some(value) => body[name.as_str()] = value,
                None => {
                    body.as_object_mut().expect("object").remove(name);
                }
            }
            found.push((name.clone(), body));
        };
        let required = schema["required"]
            .as_array()
            .is_some_and(|r| r.iter().any(|n| n == name));
        if required {
            with(None);
        }
        if let Some(max) = property["maxLength"].as_u64() {
            with(Some(json!("a".repeat(max as usize + 1))));
        }
        if let Some(min) = property["minLength"].as_u64().filter(|m| *m > 1) {
            with(Some(json!(
                TEXT.chars()
                    .cycle()
                    .take(min as usize - 1)
                    .collect::<String>()
            )));
        }
        if property["format"] == "email" {
            with(Some(json!("not-an-address")));
        }
        if property["enum"].is_array() && property["type"] == "string" {
            with(Some(json!("ZZZ")));
        }
        if let Some(min) = property["minimum"].as_i64() {
            with(Some(json!(min - 1)));
        }
        if let Some(max) = property["maximum"].as_i64() {
            with(Some(json!(max + 1)));
        }
        if let Some(min) = property["x-minimum"].as_i64() {
            with(Some(json!((min - 1).to_string())));
        }
        if let Some(max) = property["x-maximum"].as_i64() {
            with(Some(json!((max + 1).to_string())));
        }
        if property["type"] == "array" {
            let element = valid[name.as_str()][0].clone();
            if property["minItems"].as_u64().is_some_and(|m| m > 0) {
                with(Some(json!([])));
            }
            if let Some(max) = property["maxItems"].as_u64() {
                with(Some(Value::Array(vec![element.clone(); max as usize + 1])));
            }
            // Each constraint of an element, in the first element.
            for (inner, broken) in violations(doc, &property["items"], &element) {
                let mut body = valid.clone();
                body[name.as_str()][0] = broken;
                found.push((format!("{name}[0].{inner}"), body));
            }
        }
    }
    found
}

/// Where `value` departs from `schema`: a required property missing, a
/// property of another JSON type, a value outside its enum, a 64-bit
/// integer that is not a decimal string.
fn departures(doc: &Value, schema: &Value, value: &Value, at: &str) -> Vec<String> {
    let schema = resolve(doc, schema);
    let mut found = Vec::new();
    let kind = schema["type"].as_str().unwrap_or("");
    let fits = match kind {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        _ => true,
    };
    if !fits {
        return vec![format!("{at}: {value} is not {kind}")];
    }
    if let Some(values) = schema["enum"].as_array()
        && !values.contains(value)
    {
        found.push(format!("{at}: {value} is not one of its enum"));
    }
    if schema["format"] == "int64" && value.as_str().is_some_and(|s| s.parse::<i64>().is_err()) {
        found.push(format!("{at}: {value} is not an int64"));
    }
    if kind == "object" {
        for name in schema["required"].as_array().into_iter().flatten() {
            let name = name.as_str().unwrap_or("");
            if value.get(name).is_none() {
                found.push(format!("{at}.{name}: required, missing"));
            }
        }
        for (name, inner) in value.as_object().into_iter().flatten() {
            let property = &schema["properties"][name.as_str()];
            if property.is_null() {
                found.push(format!("{at}.{name}: not in the schema"));
            } else {
                found.extend(departures(doc, property, inner, &format!("{at}.{name}")));
            }
        }
    }
    if kind == "array" {
        for (i, inner) in value.as_array().into_iter().flatten().enumerate() {
            found.extend(departures(
                doc,
                &schema["items"],
                inner,
                &format!("{at}[{i}]"),
            ));
        }
    }
    found
}

/// `paymentMethod` as the services name it: `payment_method`.
fn snake(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_says_what_the_services_accept_and_refuse() {
    let stack = Stack::start().await;
    let mut client = stack.client().await;
    let doc = client.call("GET", "/openapi.json", &[], "").await.json();
    if let Some(checked) = spec_validator(&doc) {
        checked.unwrap_or_else(|e| panic!("not valid OpenAPI: {e}"));
    }
    let token = stack.login("openapi@example.com").await;
    let bearer = format!("Bearer {token}");
    // Every operation with a body and no path variables, in an order that
    // registers before logging in.
    let mut operations: Vec<(String, Value, Value)> = doc["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .filter(|(path, _)| !path.contains('{'))
        .filter_map(|(path, item)| {
            let op = &item["post"];
            op["requestBody"].is_object().then(|| {
                (
                    path.clone(),
                    op["requestBody"]["content"]["application/json"]["schema"].clone(),
                    op["responses"]["200"]["content"]["application/json"]["schema"].clone(),
                )
            })
        })
        .collect();
    operations.sort_by_key(|(path, _, _)| !path.ends_with("register"));
    assert!(operations.len() >= 3, "{operations:?}");
    let mut checked = 0;
    // What can be ordered is data, not schema: the catalog says which SKUs
    // an order may name.
    let headers = [("authorization", bearer.as_str())];
    let catalog = client.call("GET", "/v1/catalog", &headers, "").await;
    assert_eq!(catalog.status, 200, "{}", catalog.text());
    let sku = catalog.json()["items"][0]["sku"].clone();
    assert!(sku.is_string(), "{}", catalog.text());
    for (path, schema, answer) in operations {
        let mut valid = example(&doc, &schema);
        let items = valid.get_mut("items").and_then(Value::as_array_mut);
        for item in items.into_iter().flatten() {
            item["sku"] = sku.clone();
        }
        let reply = client
            .call("POST", &path, &headers, &valid.to_string())
            .await;
        assert_eq!(
            reply.status,
            200,
            "POST {path} with {valid}, built from its schema alone: {}",
            reply.text()
        );
        // And the answer is what the document says it is.
        let wrong = departures(&doc, &answer, &reply.json(), "");
        assert!(
            wrong.is_empty(),
            "POST {path} answered off its schema: {wrong:?}"
        );
        // Login says nothing about which field was wrong, by design.
        let refused = if path.ends_with("login") { 401 } else { 400 };
        for (field, body) in violations(&doc, &schema, &valid) {
            let reply = client
                .call("POST", &path, &headers, &body.to_string())
                .await;
            let message = reply.json()["message"].as_str().unwrap_or("").to_owned();
            assert_eq!(
                reply.status, refused,
                "POST {path} breaking {field} ({body}) was answered {}: {message}",
                reply.status
            );
            let leaf = field.rsplit('.').next().unwrap_or(&field);
            if refused == 400 {
                assert!(
                    message.contains(leaf) || message.contains(&snake(leaf)),
                    "POST {path} breaking {field}: the message does not name it: {message}"
                );
            }
            checked += 1;
        }
    }
    eprintln!("{checked} stated constraints broken one at a time, each refused");
    assert!(checked >= 20, "only {checked} constraints checked");
    stack.stop().await;
}
