//! The clamd client against Debian's real clamd (`scripts/clamd`), with a signature database the
//! test writes (the EICAR test string): verdicts over TCP and the unix socket, a signature cut
//! across chunks, the stream limit, and the daemon stopped and started again.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::time::Duration;

use bytes::Bytes;
use filedock_core::Error;
use filedock_core::blob::ByteStream;
use filedock_core::scan::{Scanner, Verdict};
use filedock_storage::{ClamAv, ClamdAddress};
use filedock_testkit::{Clamd, EICAR, EICAR_SIGNATURE};
use futures_util::StreamExt;

const MIB: u64 = 1024 * 1024;

fn body(bytes: Vec<u8>, piece: usize) -> ByteStream {
    let chunks: Vec<Result<Bytes, Error>> = bytes.chunks(piece).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
    futures_util::stream::iter(chunks).boxed()
}

fn noise(n: usize) -> Vec<u8> {
    let mut x: u32 = 7;
    (0..n)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            (x >> 16) as u8
        })
        .collect()
}

async fn scan(s: &ClamAv, bytes: Vec<u8>, piece: usize) -> Result<Verdict, Error> {
    let n = bytes.len() as u64;
    s.scan(body(bytes, piece), n).await
}

#[tokio::test]
async fn clamd_finds_eicar_and_passes_clean_bytes() {
    let Some(clamd) = Clamd::start(8 * MIB) else { return };
    for address in [
        ClamdAddress::Tcp(clamd.address.clone()),
        ClamdAddress::Unix(clamd.socket.clone()),
    ] {
        let s = ClamAv::new(address.clone(), 8 * MIB, Duration::from_secs(30));
        s.ping().await.unwrap();
        match scan(&s, EICAR.to_vec(), 1 << 16).await.unwrap() {
            Verdict::Infected(name) => assert!(name.starts_with(EICAR_SIGNATURE), "{name}"),
            Verdict::Clean => panic!("EICAR passed on {address:?}"),
        }
        // Cut into 7-byte pieces, the signature still matches (the stream is one file).
        assert!(matches!(
            scan(&s, EICAR.to_vec(), 7).await.unwrap(),
            Verdict::Infected(_)
        ));
        // 3 MiB of noise in several INSTREAM chunks: clean.
        assert_eq!(
            scan(&s, noise(3 * MIB as usize), 1 << 20).await.unwrap(),
            Verdict::Clean
        );
        assert_eq!(scan(&s, Vec::new(), 1).await.unwrap(), Verdict::Clean);
    }
}

#[tokio::test]
async fn a_body_over_the_limit_is_too_large_not_clean() {
    let Some(clamd) = Clamd::start(MIB) else { return };
    // Over the client's own limit: refused before connecting.
    let s = ClamAv::new(ClamdAddress::Tcp(clamd.address.clone()), MIB, Duration::from_secs(30));
    assert!(matches!(
        scan(&s, noise(2 * MIB as usize), 1 << 16).await,
        Err(Error::TooLarge(_))
    ));
    // A client set higher than clamd's StreamMaxLength: clamd's own refusal is read as such.
    let s = ClamAv::new(
        ClamdAddress::Tcp(clamd.address.clone()),
        16 * MIB,
        Duration::from_secs(30),
    );
    let got = scan(&s, noise(3 * MIB as usize), 1 << 16).await;
    assert!(matches!(got, Err(Error::TooLarge(_))), "{got:?}");
}

#[tokio::test]
async fn a_stopped_daemon_is_unavailable_never_clean() {
    let Some(mut clamd) = Clamd::start(8 * MIB) else { return };
    let s = ClamAv::new(
        ClamdAddress::Tcp(clamd.address.clone()),
        8 * MIB,
        Duration::from_secs(5),
    );
    clamd.stop();
    assert!(matches!(s.ping().await, Err(Error::Unavailable(_))));
    assert!(matches!(
        scan(&s, b"hello".to_vec(), 5).await,
        Err(Error::Unavailable(_))
    ));
    clamd.start_again();
    assert_eq!(scan(&s, b"hello".to_vec(), 5).await.unwrap(), Verdict::Clean);
}
