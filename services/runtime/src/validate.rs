//! Checks of request fields shared by every service, each failing with an
//! INVALID_ARGUMENT that names the field.

use tonic::Status;

/// A trimmed text field of at most `max` characters; empty only when optional.
pub fn text<'a>(
    field: &str,
    value: &'a str,
    max: usize,
    required: bool,
) -> Result<&'a str, Status> {
    let value = value.trim();
    if required && value.is_empty() {
        return Err(Status::invalid_argument(format!("{field} is required")));
    }
    if value.chars().count() > max {
        return Err(Status::invalid_argument(format!(
            "{field} must be at most {max} characters"
        )));
    }
    Ok(value)
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

/// An active ISO 4217 currency code, upper-cased.
pub fn currency(value: &str) -> Result<String, Status> {
    let code = value.trim().to_ascii_uppercase();
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(Status::invalid_argument(format!(
            "currency must be an ISO 4217 code such as EUR, got {value:?}"
        )));
    }
    if ISO_4217.binary_search(&code.as_str()).is_err() {
        return Err(Status::invalid_argument(format!(
            "currency {code:?} is not an ISO 4217 code"
        )));
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_fields() {
        assert_eq!(text("sku", "  a ", 3, true).ok(), Some("a"));
        assert_eq!(
            text("sku", "", 3, true).map_err(|s| s.message().to_owned()),
            Err("sku is required".into())
        );
        assert_eq!(text("note", "", 3, false).ok(), Some(""));
        assert!(text("sku", "abcd", 3, true).is_err());
        assert_eq!(currency(" eur").ok().as_deref(), Some("EUR"));
        for bad in ["", "EU", "EURO", "E1R"] {
            assert!(currency(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn currencies_are_active_iso_4217_codes() {
        let check = |value: &str| currency(value).map_err(|s| (s.code(), s.message().to_owned()));
        for good in ["EUR", "usd", " JPY ", "GBP", "CHF", "XOF", "ZWG"] {
            assert_eq!(check(good), Ok(good.trim().to_ascii_uppercase()), "{good}");
        }
        for (bad, message) in [
            ("ZZZ", r#"currency "ZZZ" is not an ISO 4217 code"#),
            ("abc", r#"currency "ABC" is not an ISO 4217 code"#),
            ("XXX", r#"currency "XXX" is not an ISO 4217 code"#),
            ("XAU", r#"currency "XAU" is not an ISO 4217 code"#),
        ] {
            assert_eq!(
                check(bad),
                Err((tonic::Code::InvalidArgument, message.to_owned())),
                "{bad}"
            );
        }
    }

    #[test]
    fn iso_4217_list_is_sorted_and_well_formed() {
        assert!(
            ISO_4217.windows(2).all(|w| w[0] < w[1]),
            "sorted, no duplicates"
        );
        assert!(
            ISO_4217
                .iter()
                .all(|c| c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase()))
        );
    }
}
