//! SHA-256 and RFC 4648 base32, the two pieces of kube-proxy's chain naming.
//!
//! kube-proxy names a service chain `KUBE-SVC-` followed by the first 16 characters of
//! `base32(sha256(servicePortName + protocol))`. Both functions are small, so they live here
//! rather than pulling two crates into the build.

const K: [u32; 64] = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
];

/// The SHA-256 digest of the concatenation of `parts`.
pub(crate) fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut h: [u32; 8] = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
        0x5be0cd19,
    ];
    let total: usize = parts.iter().map(|p| p.len()).sum();
    let mut block = [0u8; 64];
    let mut fill = 0usize;
    let feed = |byte: u8, block: &mut [u8; 64], fill: &mut usize, h: &mut [u32; 8]| {
        block[*fill] = byte;
        *fill += 1;
        if *fill == 64 {
            compress(h, block);
            *fill = 0;
        }
    };
    for part in parts {
        for &b in *part {
            feed(b, &mut block, &mut fill, &mut h);
        }
    }
    feed(0x80, &mut block, &mut fill, &mut h);
    while fill != 56 {
        feed(0, &mut block, &mut fill, &mut h);
    }
    let bits = (total as u64).wrapping_mul(8);
    for b in bits.to_be_bytes() {
        feed(b, &mut block, &mut fill, &mut h);
    }
    let mut out = [0u8; 32];
    for (i, word) in h.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&word.to_be_bytes());
    }
    out
}

fn compress(h: &mut [u32; 8], block: &[u8; 64]) {
    let mut w = [0u32; 64];
    for (i, chunk) in block.chunks_exact(4).enumerate() {
        w[i] = u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
    }
    for i in 16..64 {
        let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
        let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16]
            .wrapping_add(s0)
            .wrapping_add(w[i - 7])
            .wrapping_add(s1);
    }
    let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut hh] = *h;
    for i in 0..64 {
        let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
        let ch = (e & f) ^ (!e & g);
        let t1 = hh
            .wrapping_add(s1)
            .wrapping_add(ch)
            .wrapping_add(K[i])
            .wrapping_add(w[i]);
        let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
        let maj = (a & b) ^ (a & c) ^ (b & c);
        let t2 = s0.wrapping_add(maj);
        hh = g;
        g = f;
        f = e;
        e = d.wrapping_add(t1);
        d = c;
        c = b;
        b = a;
        a = t1.wrapping_add(t2);
    }
    for (slot, v) in h.iter_mut().zip([a, b, c, d, e, f, g, hh]) {
        *slot = slot.wrapping_add(v);
    }
}

/// The first `n` characters of the standard (RFC 4648, upper case) base32 encoding of `data`.
pub(crate) fn base32_prefix(data: &[u8], n: usize) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(n);
    let mut acc: u64 = 0;
    let mut bits = 0u32;
    for &b in data {
        acc = (acc << 8) | u64::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            if out.len() == n {
                return out;
            }
            out.push(ALPHABET[((acc >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 && out.len() < n {
        out.push(ALPHABET[((acc << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// kube-proxy's 16-character chain hash of the concatenated `parts`.
pub(crate) fn chain_hash(parts: &[&str]) -> String {
    let bytes: Vec<&[u8]> = parts.iter().map(|p| p.as_bytes()).collect();
    base32_prefix(&sha256(&bytes), 16)
}

/// `prefix` followed by kube-proxy's chain hash of up to three `parts`, built without
/// intermediate allocations (the compiler makes one per endpoint).
pub(crate) fn chain_name(prefix: &str, parts: &[&str]) -> std::sync::Arc<str> {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut slices: [&[u8]; 3] = [&[], &[], &[]];
    for (slot, p) in slices.iter_mut().zip(parts) {
        *slot = p.as_bytes();
    }
    let digest = sha256(&slices[..parts.len().min(3)]);
    let mut buf = [0u8; 48];
    let plen = prefix.len().min(32);
    buf[..plen].copy_from_slice(&prefix.as_bytes()[..plen]);
    // 16 base32 characters use the first 80 bits (10 bytes).
    let mut acc: u128 = 0;
    for &b in &digest[..10] {
        acc = (acc << 8) | u128::from(b);
    }
    for i in 0..16 {
        buf[plen + i] = ALPHABET[((acc >> (75 - 5 * i)) & 31) as usize];
    }
    // Only ASCII was written after a valid UTF-8 prefix cut at a char boundary or not at all.
    std::str::from_utf8(&buf[..plen + 16])
        .map(std::sync::Arc::from)
        .unwrap_or_else(|_| std::sync::Arc::from(format!("{prefix}{}", chain_hash(parts))))
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
