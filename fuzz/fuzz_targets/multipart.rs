//! The multipart front: any body under a fixed boundary is read to its end (text fields, the
//! file streamed, the fields after it) or refused with an error — never a panic, never a hang,
//! and never more than the limits let through.
#![no_main]

use futures_util::StreamExt;
use libfuzzer_sys::fuzz_target;

const MAX_FILE: u64 = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    rt.block_on(async {
        let body = axum::body::Body::from(bytes::Bytes::copy_from_slice(data));
        let mut form = filedock_server::body::FormReader::new(body, "b".into(), "file", MAX_FILE);
        if let Ok(Some(mut part)) = form.file().await {
            let mut n = 0u64;
            while let Some(chunk) = part.body.next().await {
                match chunk {
                    Ok(c) => n += c.len() as u64,
                    Err(_) => return,
                }
            }
            assert!(n <= MAX_FILE + 1, "the file field took {n} bytes");
            let _ = form.rest().await;
        }
    });
});
