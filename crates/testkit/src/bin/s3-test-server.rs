//! The test S3 server (s3s-fs) as a process, for benchmarks and manual runs against the scaled
//! flavour: serves `DIR` on `ADDR` (default `127.0.0.1:0`), prints the `[backends.<name>]` TOML
//! body for filedock on stdout, and runs until killed.
//!
//!   s3-test-server DIR [ADDR]

use std::io::Write;

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(dir) = args.next() else {
        eprintln!("usage: s3-test-server DIR [ADDR]");
        std::process::exit(2);
    };
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:0".to_owned());
    let server = filedock_testkit::S3Server::start_at(std::path::Path::new(&dir), &addr);
    print!("{}", server.backend_toml());
    let _ = std::io::stdout().flush();
    loop {
        std::thread::park();
    }
}
