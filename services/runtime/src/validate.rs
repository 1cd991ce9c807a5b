//! A request's fields checked by the rules of its annotations
//! (`platform_proto::rules`, generated from the protos: the same rules the
//! gateway's OpenAPI document states), as an INVALID_ARGUMENT that names
//! the field.

use platform_proto::rules::Validate;
use tonic::Status;

/// The request's fields by its rules.
pub fn checked<T: Validate>(request: &T) -> Result<(), Status> {
    request
        .validate()
        .map_err(|violation| Status::invalid_argument(violation.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_checked_by_its_annotations() {
        let request = platform_proto::payments::v1::RefundRequest {
            payment_id: "pay_1".into(),
            amount_minor: -1,
            idempotency_key: "k".into(),
            reason: String::new(),
        };
        let status = checked(&request).expect_err("negative");
        assert_eq!(
            (status.code(), status.message()),
            (
                tonic::Code::InvalidArgument,
                "amount_minor must not be negative"
            )
        );
        let currency = platform_proto::payments::v1::ChargeRequest {
            order_id: "ord_1".into(),
            user_id: "usr_1".into(),
            amount_minor: 100,
            currency: "XAU".into(),
            payment_method: "pm_card_visa".into(),
            idempotency_key: "ord_1".into(),
        };
        assert_eq!(
            checked(&currency).map_err(|s| s.message().to_owned()),
            Err(r#"currency "XAU" is not an ISO 4217 code"#.to_owned())
        );
    }
}
