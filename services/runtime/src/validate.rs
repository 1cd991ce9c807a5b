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

/// An ISO 4217 currency code, upper-cased: three letters.
pub fn currency(value: &str) -> Result<String, Status> {
    let code = value.trim().to_ascii_uppercase();
    if code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(code)
    } else {
        Err(Status::invalid_argument(format!(
            "currency must be an ISO 4217 code such as EUR, got {value:?}"
        )))
    }
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
}
