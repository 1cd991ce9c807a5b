//! What a request field must hold, as its annotations say:
//! `(google.api.field_behavior) = REQUIRED` and `(fieldrules.v1.rules)`
//! (lengths, ranges, formats). The OpenAPI document states them; the
//! services refuse what breaks them (`gateway/tests/openapi.rs` checks the
//! two agree).

use platform_proto::fieldrules::v1::Format;

/// The rules of one field, read by the same code that writes the services'
/// checks.
pub use platform_proto::annotations::Annotations as Rules;

/// The shape a string field must have, if any.
pub fn format(rules: &Rules) -> Option<Format> {
    Format::try_from(rules.format)
        .ok()
        .filter(|f| *f != Format::Unspecified)
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
        assert_eq!(format(&currency), Some(Format::Currency));
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
