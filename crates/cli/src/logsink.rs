//! Where log lines go: standard error, through a bounded queue and a thread of its own, so that a
//! log sink that fails or stalls can never stop a request.
//!
//! tracing-subscriber reports a failed write with `eprintln!`, which panics when standard error
//! cannot be written (a full disk, a reader that went away), and a plain blocking write stalls
//! the task that logs while the reader does not read. Here the subscriber's write only queues the
//! formatted line and always succeeds; a line that finds the queue full is dropped, a line the
//! thread cannot write is dropped, and both are counted in `filedock_log_lines_dropped_total`
//! (by `reason`). When the sink recovers, lines flow again.

use std::io::Write;
use std::sync::mpsc::{Sender, SyncSender, TrySendError, channel, sync_channel};
use std::time::Duration;

/// Lines waiting for the writer thread; past this they are dropped.
const QUEUE_LINES: usize = 4096;

/// The most bytes of queued lines written at once.
const BATCH_BYTES: usize = 64 * 1024;

/// How long the writer lets lines gather after a write.
const LINGER: Duration = Duration::from_millis(5);

/// How long the process waits at exit for queued lines to be written.
const FLUSH_WAIT: Duration = Duration::from_secs(1);

enum Msg {
    Line(Vec<u8>),
    /// Answered once every line queued before it was handled.
    Flush(Sender<()>),
}

/// Lines taken off the queue, written together.
#[derive(Default)]
struct Batch {
    bytes: Vec<u8>,
    lines: u64,
}

impl Batch {
    fn push(&mut self, line: &[u8]) {
        self.bytes.extend_from_slice(line);
        self.lines += 1;
    }

    /// Writes the lines (locking standard error per batch, never for good: the runtime prints a
    /// failed `main`'s error there); lines that cannot be written are dropped and counted.
    fn write(&mut self) {
        if self.lines == 0 {
            return;
        }
        let mut err = std::io::stderr().lock();
        if err.write_all(&self.bytes).and_then(|()| err.flush()).is_err() {
            metrics::counter!("filedock_log_lines_dropped_total", "reason" => "write_failed").increment(self.lines);
        }
        self.bytes.clear();
        self.lines = 0;
    }
}

/// The subscriber's writer (a cheap handle to the queue).
#[derive(Clone, Debug)]
pub struct LogSink {
    queue: SyncSender<Msg>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Msg")
    }
}

/// Writes what is queued when dropped, waiting at most [`FLUSH_WAIT`] (keep it until exit).
#[derive(Debug)]
pub struct FlushOnDrop(SyncSender<Msg>);

impl Drop for FlushOnDrop {
    fn drop(&mut self) {
        let (done, wait) = channel();
        if self.0.try_send(Msg::Flush(done)).is_ok() {
            let _ = wait.recv_timeout(FLUSH_WAIT);
        }
    }
}

impl LogSink {
    /// Starts the writer thread on standard error.
    pub fn stderr() -> std::io::Result<(LogSink, FlushOnDrop)> {
        let (queue, lines) = sync_channel::<Msg>(QUEUE_LINES);
        std::thread::Builder::new().name("log-writer".into()).spawn(move || {
            let mut batch = Batch::default();
            while let Ok(first) = lines.recv() {
                // Lines queued meanwhile go out with this one, in one write.
                let mut next = Some(first);
                while let Some(msg) = next.take() {
                    match msg {
                        Msg::Line(line) => batch.push(&line),
                        Msg::Flush(done) => {
                            batch.write();
                            let _ = done.send(());
                        }
                    }
                    if batch.bytes.len() < BATCH_BYTES {
                        next = lines.try_recv().ok();
                    }
                }
                batch.write();
                // Then lines gather for a moment: woken per line, the thread cost the server
                // 7% of its CPU at 15,000 creations a second (a wake-up and a write each).
                std::thread::sleep(LINGER);
            }
        })?;
        Ok((LogSink { queue: queue.clone() }, FlushOnDrop(queue)))
    }
}

impl Write for LogSink {
    /// Queues `buf` (one formatted event) and reports it written, whatever becomes of it.
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self.queue.try_send(Msg::Line(buf.to_vec())) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                metrics::counter!("filedock_log_lines_dropped_total", "reason" => "queue_full").increment(1);
            }
            Err(TrySendError::Disconnected(_)) => {
                metrics::counter!("filedock_log_lines_dropped_total", "reason" => "write_failed").increment(1);
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogSink {
    type Writer = LogSink;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}
