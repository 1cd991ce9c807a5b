//! Passwords too common to accept (NIST SP 800-63B 3.1.1.2): our own list of
//! the most used passwords, the same followed by digits, one character
//! repeated, and runs of consecutive digits or letters. Case-insensitive.

use std::collections::HashSet;
use std::sync::LazyLock;

static LIST: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    include_str!("common_passwords.txt")
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .collect()
});

/// True when `password` is one an attacker tries first.
pub fn is_common(password: &str) -> bool {
    let lower = password.to_lowercase();
    let base = lower.trim_end_matches(|c: char| c.is_ascii_digit());
    LIST.contains(lower.as_str())
        || (!base.is_empty() && LIST.contains(base))
        || is_one_character(&lower)
        || is_run(&lower)
}

fn is_one_character(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|first| chars.all(|c| c == first))
}

/// `12345678`, `98765432`, `7890123` (digits wrap around), `abcdefgh`, `hgfedcba`.
fn is_run(s: &str) -> bool {
    let bytes = s.as_bytes();
    let digits = bytes.iter().all(u8::is_ascii_digit);
    let letters = bytes.iter().all(u8::is_ascii_lowercase);
    if bytes.len() < 2 || !(digits || letters) {
        return false;
    }
    let step = |a: u8, b: u8| -> i16 {
        let diff = i16::from(b) - i16::from(a);
        if digits { diff.rem_euclid(10) } else { diff }
    };
    let up = |a: u8, b: u8| step(a, b) == 1;
    let down = |a: u8, b: u8| {
        if digits {
            step(a, b) == 9
        } else {
            step(a, b) == -1
        }
    };
    let pairs = || bytes.windows(2).map(|w| (w[0], w[1]));
    pairs().all(|(a, b)| up(a, b)) || pairs().all(|(a, b)| down(a, b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_passwords_are_recognized() {
        for (password, common) in [
            ("12345678", true),
            ("123456789", true),
            ("password1", true),
            ("Password123", true),
            ("PASSWORD2024", true),
            ("qwertyuiop", true),
            ("QwErTy123", true),
            ("iloveyou", true),
            ("iloveyou2", true),
            ("pass the salt, please", false),
            ("aaaaaaaa", true),
            ("ZZZZZZZZZZ", true),
            ("!!!!!!!!", true),
            ("98765432", true),
            ("7890123456", true),
            ("0987654321", true),
            ("abcdefgh", true),
            ("ABCDEFGHIJ", true),
            ("zyxwvuts", true),
            ("lmnopqrs", true),
            ("12345679", false),
            ("abcdefgz", false),
            ("123abc456", true),
            ("4b7c9d2e", false),
            ("correct horse battery", false),
            ("correct horse battery staple", false),
            ("alice123", false),
            ("Tr0ub4dor&3", false),
            ("52918364", false),
            ("password-manager-generated", false),
        ] {
            assert_eq!(is_common(password), common, "{password}");
        }
    }

    #[test]
    fn the_list_is_lower_case_and_has_no_duplicates() {
        let lines: Vec<&str> = include_str!("common_passwords.txt")
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .collect();
        assert!(lines.len() >= 300, "{}", lines.len());
        assert_eq!(LIST.len(), lines.len(), "duplicates in the list");
        for line in lines {
            assert_eq!(line, line.trim().to_lowercase(), "{line:?}");
        }
    }
}
