//! Signed-URL parsing: any method, key and query string is verified or refused — never a panic —
//! and only a URL this signer made verifies.
#![no_main]

use filedock_core::UrlSigner;
use filedock_core::link::SignedParams;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let signer = UrlSigner::new(vec![7u8; 32]).expect("signer");
    let mut parts = text.splitn(4, '\n');
    let method = parts.next().unwrap_or("GET");
    let key = parts.next().unwrap_or("k");
    let query = parts.next().unwrap_or("");
    let header = parts.next().unwrap_or("");
    let lookup = |name: &str| (name == "content-length").then(|| header.to_owned());
    if signer.verify(method, "local", key, query, lookup, 1_000).is_ok() {
        // Forging needs the secret: a query that verifies must carry this signer's signature
        // over exactly these parts, which libFuzzer cannot find by chance.
        panic!("an unsigned query verified: {method} {key} ?{query}");
    }
    // A URL the signer made for these parts verifies, and its query round-trips.
    let params = SignedParams {
        method: "GET".into(),
        backend: "local".into(),
        key: key.into(),
        expires: 2_000,
        response_content_disposition: Some(header.into()),
        ..SignedParams::default()
    };
    if let Ok(url) = signer.url("http://h", &params) {
        let q = url.split_once('?').map(|(_, q)| q).unwrap_or("");
        let path_key = key.to_owned();
        assert!(
            signer.verify("GET", "local", &path_key, q, |_| None, 1_000).is_ok(),
            "a URL made by the signer must verify: {url}"
        );
    }
});
