//! ClamAV's daemon for the quarantine tests: Debian's `clamd` (`scripts/clamd`, exported as
//! `TEST_CLAMD`), one per test on a free loopback port and a unix socket, with a signature
//! database the test writes itself — there is no internet here for freshclam: one `.hdb` line
//! with the MD5 and size of the EICAR test string, which is enough for clamd to start and to
//! detect it. Killed when dropped; [`Clamd::stop`] and [`Clamd::start_again`] take it away and
//! bring it back on the same address.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The EICAR anti-virus test file: harmless, and detected by every scanner as a virus.
pub const EICAR: &[u8] = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

/// The name the test database gives it (clamd reports `Eicar-Test-Signature.UNOFFICIAL`).
pub const EICAR_SIGNATURE: &str = "Eicar-Test-Signature";

/// The MD5 of [`EICAR`] (the hash-signature format is `md5:size:name`).
const EICAR_MD5: &str = "44d88612fea8a8f36de82e1278abb02f";

/// A running clamd.
pub struct Clamd {
    /// `127.0.0.1:<port>`.
    pub address: String,
    /// Its unix socket.
    pub socket: PathBuf,
    bin: String,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Clamd {
    /// Starts one whose stream limit is `max_stream` bytes (`StreamMaxLength`). Without
    /// `TEST_CLAMD`: under `CI=true` this panics — the scanner tests never skip in CI — elsewhere
    /// it returns `None` and the caller skips, saying so.
    pub fn start(max_stream: u64) -> Option<Clamd> {
        let bin = match std::env::var("TEST_CLAMD") {
            Ok(b) if !b.is_empty() => b,
            _ if std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false") => {
                panic!("TEST_CLAMD is not set: the scanner tests must run in CI (run scripts/test)")
            }
            _ => {
                eprintln!("SKIPPED: TEST_CLAMD is not set; export TEST_CLAMD=$(scripts/clamd)");
                return None;
            }
        };
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db");
        std::fs::create_dir(&db).unwrap();
        std::fs::write(
            db.join("filedock-test.hdb"),
            format!("{EICAR_MD5}:{}:{EICAR_SIGNATURE}\n", EICAR.len()),
        )
        .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let socket = dir.path().join("clamd.sock");
        let conf = format!(
            "Foreground yes\nDatabaseDirectory {}\nTCPSocket {port}\nTCPAddr 127.0.0.1\nLocalSocket {}\n\
             StreamMaxLength {max_stream}\nLogFile {}\nSelfCheck 3600\n",
            db.display(),
            socket.display(),
            dir.path().join("clamd.log").display()
        );
        std::fs::write(dir.path().join("clamd.conf"), conf).unwrap();
        let mut c = Clamd {
            address: format!("127.0.0.1:{port}"),
            socket,
            bin,
            dir,
            child: None,
        };
        c.start_again();
        Some(c)
    }

    /// Starts it (again) on the same address and socket; returns once it answers `PING`.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "clamd is running");
        let _ = std::fs::remove_file(&self.socket);
        let mut child = Command::new(&self.bin)
            .arg("-c")
            .arg(self.dir.path().join("clamd.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run TEST_CLAMD={}: {e}", self.bin));
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("clamd exited ({status}): {}", self.log());
            }
            if self.ping() {
                self.child = Some(child);
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("clamd did not answer PING in 120 s: {}", self.log());
    }

    /// Stops it (SIGKILL): its address refuses connections until [`Clamd::start_again`].
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn ping(&self) -> bool {
        let Ok(mut s) = std::net::TcpStream::connect(&self.address) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let mut answer = Vec::new();
        s.write_all(b"zPING\0").is_ok() && s.read_to_end(&mut answer).is_ok() && answer.starts_with(b"PONG")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("clamd.log")).unwrap_or_default()
    }
}

impl Drop for Clamd {
    fn drop(&mut self) {
        self.stop();
    }
}
