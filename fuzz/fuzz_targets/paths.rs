//! Path and name validation: whatever is accepted can never climb out of its directory, and
//! every name is served with a safe Content-Disposition.
#![no_main]

use filedock_core::FileName;
use filedock_core::disposition::attachment;
use filedock_core::model::validate_relative_path;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if validate_relative_path(s, 1024).is_ok() {
        assert!(!s.is_empty() && s.len() <= 1024 && !s.starts_with('/') && !s.contains('\\'));
        assert!(!s.chars().any(char::is_control));
        for seg in s.split('/') {
            assert!(!seg.is_empty() && seg != "." && seg != "..", "{s:?}");
            let decoded = String::from_utf8_lossy(&percent_decode(seg)).into_owned();
            assert!(
                decoded != "." && decoded != ".." && !decoded.contains(['/', '\\']),
                "{s:?}"
            );
        }
    }
    if let Ok(name) = FileName::new(s) {
        let n = name.as_str();
        assert!(
            !n.contains(['/', '\\']) && n != "." && n != ".." && n.len() <= 255,
            "{n:?}"
        );
    }
    let h = attachment(s);
    assert!(h.is_ascii() && !h.contains(['\r', '\n']), "{h:?}");
    let fallback = &h["attachment; filename=\"".len()..h.find("\"; filename*=").expect("two parts")];
    assert!(!fallback.contains(['"', '\\']), "{h:?}");
});

fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = ((b[i + 1] as char).to_digit(16), (b[i + 2] as char).to_digit(16))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}
