//! What a request field must hold, as its annotations say:
//! `(google.api.field_behavior) = REQUIRED` and `(fieldrules.v1.rules)`
//! (lengths, ranges, formats). The OpenAPI document states them; the
//! services refuse what breaks them (`gateway/tests/openapi.rs` checks the
//! two agree).

use platform_proto::annotations::Annotations;
use platform_proto::fieldrules::v1::Format;
use prost_reflect::FieldDescriptor;

/// The rules of one field.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rules {
    pub required: bool,
    pub min_len: Option<u32>,
    pub max_len: Option<u32>,
    pub min: Option<i64>,
    pub max: Option<i64>,
    pub format: Option<Format>,
}

impl Rules {
    pub fn of(field: &FieldDescriptor) -> Self {
        let found = Annotations::of(field);
        Self {
            required: found.required,
            min_len: found.min_len,
            max_len: found.max_len,
            min: found.min,
            max: found.max,
            format: Format::try_from(found.format)
                .ok()
                .filter(|f| *f != Format::Unspecified),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_annotations_of_the_contracts() {
        let pool = prost_reflect::DescriptorPool::decode(platform_proto::PLATFORM_DESCRIPTOR_SET)
            .expect("descriptors");
        let field = |message: &str, name: &str| {
            pool.get_message_by_name(message)
                .and_then(|m| m.get_field_by_name(name))
                .expect("field")
        };
        let quantity = Rules::of(&field("platform.orders.v1.OrderItem", "quantity"));
        assert_eq!(
            quantity,
            Rules {
                required: true,
                min: Some(1),
                max: Some(10_000),
                ..Rules::default()
            }
        );
        let currency = Rules::of(&field("platform.orders.v1.CreateOrderRequest", "currency"));
        assert_eq!(currency.format, Some(Format::Currency));
        assert!(currency.required);
        let request_id = Rules::of(&field(
            "platform.orders.v1.CreateOrderRequest",
            "request_id",
        ));
        assert_eq!((request_id.required, request_id.max_len), (false, Some(64)));
        let total = Rules::of(&field("platform.orders.v1.Order", "total_minor"));
        assert_eq!(total, Rules::default());
    }
}
