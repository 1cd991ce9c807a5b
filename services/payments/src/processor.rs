//! The card processor stand-in. Test payment methods answer deterministically,
//! so declines can be tested end to end.

/// What the processor says about a charge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Approved,
    Declined(&'static str),
}

pub fn decide(payment_method: &str) -> Decision {
    match payment_method {
        "pm_card_visa" | "pm_card_mastercard" | "pm_card_amex" => Decision::Approved,
        "pm_card_chargeDeclined" => Decision::Declined("card_declined"),
        "pm_card_insufficientFunds" => Decision::Declined("insufficient_funds"),
        "pm_card_expired" => Decision::Declined("expired_card"),
        _ => Decision::Declined("unknown_payment_method"),
    }
}

#[cfg(test)]
mod tests {
    use super::{Decision, decide};

    #[test]
    fn test_cards_are_deterministic() {
        for (method, want) in [
            ("pm_card_visa", Decision::Approved),
            (
                "pm_card_chargeDeclined",
                Decision::Declined("card_declined"),
            ),
            (
                "pm_card_insufficientFunds",
                Decision::Declined("insufficient_funds"),
            ),
            ("tok_anything", Decision::Declined("unknown_payment_method")),
        ] {
            assert_eq!(decide(method), want, "{method}");
        }
    }
}
