//! kube-proxy's chain naming: `KUBE-SVC-` (and the like) followed by the first 16 characters
//! of `base32(sha256(servicePortName + protocol [+ endpoint]))`, and the nftables mode's
//! 8-character prefixes. SHA-256 is the `sha2` crate's, base32 (RFC 4648, upper case) the
//! `data-encoding` crate's; the golden tests pin the names byte for byte.

use data_encoding::BASE32_NOPAD;
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// The SHA-256 digest of the concatenation of `parts`.
pub(crate) fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// The first `n` characters of the standard (RFC 4648, upper case, unpadded) base32 encoding
/// of `data`.
pub(crate) fn base32_prefix(data: &[u8], n: usize) -> String {
    // 5 bytes make 8 characters: encode only the bytes the prefix needs.
    let bytes = n.div_ceil(8) * 5;
    let mut s = BASE32_NOPAD.encode(&data[..bytes.min(data.len())]);
    s.truncate(n);
    s
}

/// kube-proxy's 16-character chain hash of the concatenated `parts`.
pub(crate) fn chain_hash(parts: &[&str]) -> String {
    let bytes: Vec<&[u8]> = parts.iter().map(|p| p.as_bytes()).collect();
    base32_prefix(&sha256(&bytes), 16)
}

/// `prefix` followed by kube-proxy's chain hash of `parts`, without the intermediate strings
/// of [`chain_hash`] (the compiler makes one name per endpoint).
pub(crate) fn chain_name(prefix: &str, parts: &[&str]) -> Arc<str> {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
    }
    let digest = h.finalize();
    // 16 base32 characters are the first 80 bits (10 bytes) of the digest.
    let mut hash = [0u8; 16];
    BASE32_NOPAD.encode_mut(&digest[..10], &mut hash);
    let mut name = String::with_capacity(prefix.len() + 16);
    name.push_str(prefix);
    // Base32 output is ASCII.
    name.extend(hash.iter().map(|&b| char::from(b)));
    Arc::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(d: &[u8]) -> String {
        d.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn sha256_known_vectors() {
        assert_eq!(
            hex(&sha256(&[b""])),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            hex(&sha256(&[b"abc"])),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let long = b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
        assert_eq!(
            hex(&sha256(&[&long[..10], &long[10..]])),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
        );
    }

    #[test]
    fn base32_matches_rfc4648() {
        assert_eq!(base32_prefix(b"foobar", 16), "MZXW6YTBOI");
        assert_eq!(base32_prefix(b"fooba", 8), "MZXW6YTB");
    }

    #[test]
    fn chain_name_matches_chain_hash() {
        assert_eq!(
            &*chain_name("KUBE-SEP-", &["ns1/svc1:p80", "tcp", "10.180.0.1:80"]),
            "KUBE-SEP-SXIVWICOYRO3J4NJ"
        );
        assert_eq!(
            &*chain_name("KUBE-SVC-", &["ns1/svc1:p80", "tcp"]),
            "KUBE-SVC-XPGD46QRK7WJZT7O"
        );
    }

    #[test]
    fn kube_proxy_chain_hashes() {
        assert_eq!(chain_hash(&["ns1/svc1:p80", "tcp"]), "XPGD46QRK7WJZT7O");
        assert_eq!(
            chain_hash(&["ns1/svc1:p80", "tcp", "10.180.0.1:80"]),
            "SXIVWICOYRO3J4NJ"
        );
    }
}
