//! A field's rules as its annotations say them, read from descriptors:
//! `(google.api.field_behavior) = REQUIRED` and `(fieldrules.v1.rules)`.
//! Compiled twice: into `build.rs`, which writes the services' checks from
//! it, and into this crate, for the gateway's OpenAPI document.

use prost_reflect::{FieldDescriptor, Value};

/// `google.api.FieldBehavior.REQUIRED` and `OUTPUT_ONLY`.
const REQUIRED: i32 = 2;
const OUTPUT_ONLY: i32 = 3;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Annotations {
    pub required: bool,
    /// Set by the server only; ignored in requests (AIP-203).
    pub output_only: bool,
    pub min_len: Option<u32>,
    pub max_len: Option<u32>,
    pub min: Option<i64>,
    pub max: Option<i64>,
    /// `fieldrules.v1.Format`: 0 none, 1 email, 2 currency.
    pub format: i32,
}

impl Annotations {
    pub fn of(field: &FieldDescriptor) -> Self {
        let pool = field.parent_pool();
        let options = field.options();
        let behaviors: Vec<i32> = pool
            .get_extension_by_name("google.api.field_behavior")
            .map(|ext| match &*options.get_extension(&ext) {
                Value::List(values) => values.iter().filter_map(Value::as_enum_number).collect(),
                _ => Vec::new(),
            })
            .unwrap_or_default();
        let mut found = Self {
            required: behaviors.contains(&REQUIRED),
            output_only: behaviors.contains(&OUTPUT_ONLY),
            ..Self::default()
        };
        let Some(ext) = pool
            .get_extension_by_name("fieldrules.v1.rules")
            .filter(|ext| options.has_extension(ext))
        else {
            return found;
        };
        if let Value::Message(rules) = &*options.get_extension(&ext) {
            let get = |name: &str| {
                rules
                    .has_field_by_name(name)
                    .then(|| rules.get_field_by_name(name))
                    .flatten()
            };
            found.min_len = get("min_len").and_then(|v| v.as_u32());
            found.max_len = get("max_len").and_then(|v| v.as_u32());
            found.min = get("min").and_then(|v| v.as_i64());
            found.max = get("max").and_then(|v| v.as_i64());
            found.format = get("format").and_then(|v| v.as_enum_number()).unwrap_or(0);
        }
        found
    }

    /// Whether there is anything to check.
    pub fn any(&self) -> bool {
        self.required
            || self.min_len.is_some()
            || self.max_len.is_some()
            || self.min.is_some()
            || self.max.is_some()
            || self.format != 0
    }
}
