//! Opaque, time-ordered ids: a short prefix naming the kind, then 26
//! characters of Crockford base32 (48 bits of milliseconds, 80 random bits).

use rand_core::{OsRng, RngCore};

const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// A new id such as `ord_01hx...`.
pub fn new_id(prefix: &str) -> String {
    let ms = u128::try_from(crate::time::now_ms()).unwrap_or(0) & ((1 << 48) - 1);
    let mut random = [0u8; 10];
    OsRng.fill_bytes(&mut random);
    let mut value = ms << 80;
    for (i, byte) in random.iter().enumerate() {
        value |= u128::from(*byte) << (8 * (9 - i));
    }
    let mut out = String::with_capacity(prefix.len() + 27);
    out.push_str(prefix);
    out.push('_');
    for i in (0..26).rev() {
        out.push(char::from(ALPHABET[((value >> (5 * i)) & 31) as usize]));
    }
    out
}

/// A random secret of 32 bytes, hex encoded.
pub fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::new_id;

    #[test]
    fn ids_are_unique_prefixed_and_ordered_by_time() {
        let a = new_id("ord");
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = new_id("ord");
        assert!(a.starts_with("ord_") && a.len() == 30, "{a}");
        assert!(a < b, "{a} !< {b}");
    }
}
