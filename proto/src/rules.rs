//! What a request field must hold, checked from the same annotations the
//! gateway's OpenAPI document states: `(google.api.field_behavior) =
//! REQUIRED` and `(fieldrules.v1.rules)`. `build.rs` reads them from the
//! descriptors and writes an implementation of [`Validate`] for every
//! message that has any; services call `request.validate()` first, so the
//! document and the services' checks come from one place.

use crate::fieldrules::v1::Format;

/// A field that breaks its rules; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation(pub String);

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Violation {}

/// A message whose fields carry rules.
pub trait Validate {
    /// Checks every field; `prefix` names where the message sits in its
    /// request (`items[0].`), empty at the top.
    fn validate_at(&self, prefix: &str) -> Result<(), Violation>;

    fn validate(&self) -> Result<(), Violation> {
        self.validate_at("")
    }
}

fn fail(prefix: &str, name: &str, what: std::fmt::Arguments<'_>) -> Result<(), Violation> {
    Err(Violation(format!("{prefix}{name} {what}")))
}

/// A string field: required means not blank; lengths count the characters
/// of the value without surrounding whitespace.
pub fn text(
    prefix: &str,
    name: &str,
    value: &str,
    required: bool,
    (min, max): (Option<u32>, Option<u32>),
    format: Option<Format>,
) -> Result<(), Violation> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return if required {
            fail(prefix, name, format_args!("is required"))
        } else {
            Ok(())
        };
    }
    let length = trimmed.chars().count();
    if let Some(max) = max
        && length > max as usize
    {
        return fail(
            prefix,
            name,
            format_args!("must be at most {max} characters"),
        );
    }
    if let Some(min) = min
        && length < min as usize
    {
        return fail(
            prefix,
            name,
            format_args!("must be at least {min} characters"),
        );
    }
    match format {
        Some(Format::Email) if !is_email(trimmed) => fail(
            prefix,
            name,
            format_args!("{value:?} is not a valid address"),
        ),
        Some(Format::Currency) => match currency(trimmed) {
            Ok(_) => Ok(()),
            Err(CurrencyError::Shape) => fail(
                prefix,
                name,
                format_args!("must be an ISO 4217 code such as EUR, got {value:?}"),
            ),
            Err(CurrencyError::Unknown(code)) => fail(
                prefix,
                name,
                format_args!("{code:?} is not an ISO 4217 code"),
            ),
        },
        _ => Ok(()),
    }
}

/// An integer field, within its inclusive range; required means not zero
/// (a range that leaves zero out says so first).
pub fn number(
    prefix: &str,
    name: &str,
    value: i64,
    required: bool,
    (min, max): (Option<i64>, Option<i64>),
) -> Result<(), Violation> {
    let inside = min.is_none_or(|min| value >= min) && max.is_none_or(|max| value <= max);
    match (inside, min, max) {
        (false, Some(min), Some(max)) => {
            fail(prefix, name, format_args!("must be from {min} to {max}"))
        }
        (false, Some(0), None) => fail(prefix, name, format_args!("must not be negative")),
        (false, Some(min), None) => fail(prefix, name, format_args!("must be at least {min}")),
        (false, None, Some(max)) => fail(prefix, name, format_args!("must be at most {max}")),
        _ if required && value == 0 => fail(prefix, name, format_args!("is required")),
        _ => Ok(()),
    }
}

/// A repeated field's number of elements.
pub fn count(
    prefix: &str,
    name: &str,
    len: usize,
    required: bool,
    (min, max): (Option<u32>, Option<u32>),
) -> Result<(), Violation> {
    let min = min.unwrap_or(u32::from(required)) as usize;
    if len < min {
        return if min == 1 {
            fail(prefix, name, format_args!("must not be empty"))
        } else {
            fail(
                prefix,
                name,
                format_args!("must have at least {min} elements"),
            )
        };
    }
    match max {
        Some(max) if len > max as usize => fail(
            prefix,
            name,
            format_args!("must have at most {max} elements"),
        ),
        _ => Ok(()),
    }
}

/// local@domain, with a dot inside the domain, no whitespace, at most 254
/// characters.
pub fn is_email(value: &str) -> bool {
    if value.len() > 254 || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    let Some((local, domain)) = value.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CurrencyError {
    /// Not three letters.
    Shape,
    /// Three letters, not an active code (upper-cased).
    Unknown(String),
}

/// An active ISO 4217 code, upper-cased.
pub fn currency(value: &str) -> Result<String, CurrencyError> {
    let code = value.trim().to_ascii_uppercase();
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(CurrencyError::Shape);
    }
    if ISO_4217.binary_search(&code.as_str()).is_err() {
        return Err(CurrencyError::Unknown(code));
    }
    Ok(code)
}

/// The active ISO 4217 alphabetic codes of currencies, sorted for binary
/// search. Fund, precious-metal and test codes (CHE, XAU, XTS, XXX...) are left
/// out: an order is never paid in them.
pub const ISO_4217: [&str; 155] = [
    "AED", "AFN", "ALL", "AMD", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT", "BHD",
    "BIF", "BMD", "BND", "BOB", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD", "CAD", "CDF", "CHF",
    "CLP", "CNY", "COP", "CRC", "CUP", "CVE", "CZK", "DJF", "DKK", "DOP", "DZD", "EGP", "ERN",
    "ETB", "EUR", "FJD", "FKP", "GBP", "GEL", "GHS", "GIP", "GMD", "GNF", "GTQ", "GYD", "HKD",
    "HNL", "HTG", "HUF", "IDR", "ILS", "INR", "IQD", "IRR", "ISK", "JMD", "JOD", "JPY", "KES",
    "KGS", "KHR", "KMF", "KPW", "KRW", "KWD", "KYD", "KZT", "LAK", "LBP", "LKR", "LRD", "LSL",
    "LYD", "MAD", "MDL", "MGA", "MKD", "MMK", "MNT", "MOP", "MRU", "MUR", "MVR", "MWK", "MXN",
    "MYR", "MZN", "NAD", "NGN", "NIO", "NOK", "NPR", "NZD", "OMR", "PAB", "PEN", "PGK", "PHP",
    "PKR", "PLN", "PYG", "QAR", "RON", "RSD", "RUB", "RWF", "SAR", "SBD", "SCR", "SDG", "SEK",
    "SGD", "SHP", "SLE", "SOS", "SRD", "SSP", "STN", "SVC", "SYP", "SZL", "THB", "TJS", "TMT",
    "TND", "TOP", "TRY", "TTD", "TWD", "TZS", "UAH", "UGX", "USD", "UYU", "UZS", "VED", "VES",
    "VND", "VUV", "WST", "XAF", "XCD", "XCG", "XOF", "XPF", "YER", "ZAR", "ZMW", "ZWG",
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orders::v1::{CreateOrderRequest, OrderItem};

    #[test]
    fn the_codes_are_sorted_for_search() {
        assert!(ISO_4217.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn generated_checks_follow_the_annotations() {
        let item = |sku: &str, quantity: i32, price: i64| OrderItem {
            sku: sku.into(),
            quantity,
            unit_price_minor: price,
        };
        let order = |items: Vec<OrderItem>, currency: &str| CreateOrderRequest {
            items,
            currency: currency.into(),
            payment_method: "pm_card_visa".into(),
            ..Default::default()
        };
        let check = |request: CreateOrderRequest| request.validate().map_err(|v| v.0);
        assert_eq!(check(order(vec![item("a", 1, 100)], "eur")), Ok(()));
        for (request, said) in [
            (order(vec![], "EUR"), "items must not be empty"),
            (
                order(vec![item("a", 1, 1); 101], "EUR"),
                "items must have at most 100 elements",
            ),
            (
                order(vec![item("a", 1, 1), item(" ", 1, 1)], "EUR"),
                "items[1].sku is required",
            ),
            (
                order(vec![item("a", 0, 1)], "EUR"),
                "items[0].quantity must be from 1 to 10000",
            ),
            (
                order(vec![item("a", 1, 1)], "ZZZ"),
                "currency \"ZZZ\" is not an ISO 4217 code",
            ),
            (
                order(vec![item("a", 1, 1)], "euro"),
                "currency must be an ISO 4217 code such as EUR, got \"euro\"",
            ),
        ] {
            assert_eq!(check(request), Err(said.to_owned()));
        }
    }

    #[test]
    fn emails_have_a_shape() {
        for (email, valid) in [
            ("ada@example.com", true),
            ("ada@example", false),
            ("@example.com", false),
            ("a b@example.com", false),
            ("ada@@example.com", false),
            ("ada@.example.com", false),
        ] {
            assert_eq!(is_email(email), valid, "{email}");
        }
    }
}
