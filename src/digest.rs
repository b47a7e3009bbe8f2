//! SHA-256, the one hash sluice uses (key digests, the audit chain, SigV4, session affinity),
//! from ring — the same implementation rustls uses, so the tree carries one.

/// The SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// The first 64 bits of the SHA-256 of `data`: a hash every process and build agrees on.
pub fn hash64(data: &[u8]) -> u64 {
    let digest = sha256(data);
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// The SHA-256 of `data` in lowercase hex.
pub fn sha256_hex(data: &[u8]) -> String {
    let mut out = String::with_capacity(64);
    sha256_hex_into(data, &mut out);
    out
}

/// The SHA-256 of `data` in lowercase hex, in place of what `out` held (its capacity is kept:
/// the audit writer chains a hash per line). Digit by digit from a table: `hex::encode`
/// collects an iterator of chars, several times slower.
pub fn sha256_hex_into(data: &[u8], out: &mut String) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    out.clear();
    for byte in sha256(data) {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
}

/// HMAC-SHA256 of `data` under `key`.
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    let tag = ring::hmac::sign(&key, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(tag.as_ref());
    out
}

/// Whether two byte strings are equal, compared in constant time (for secrets' digests).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_hash_written_in_place_replaces_what_was_there() {
        let mut out = String::from("the previous line's hash, or anything else");
        super::sha256_hex_into(b"abc", &mut out);
        assert_eq!(out, super::sha256_hex(b"abc"));
        assert_eq!(out, hex::encode(super::sha256(b"abc")));
    }

    #[test]
    fn known_vectors() {
        assert_eq!(
            super::sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        // RFC 4231, test case 2.
        assert_eq!(
            hex::encode(super::hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
