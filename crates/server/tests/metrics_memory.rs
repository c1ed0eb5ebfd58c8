//! The Prometheus recorder keeps every histogram sample until its upkeep folds them into buckets.
//! A server that nobody scrapes must still fold them, or it grows by every request's duration
//! (a measured leak: about 20 bytes per request, 40 MiB over a benchmark run). Its own binary,
//! because it watches the process's resident memory.

use std::time::Duration;

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("resident pages");
    pages * 4096
}

#[test]
fn histogram_samples_are_folded_without_a_scrape() {
    const SAMPLES: usize = 500_000;
    filedock_server::ops::metrics_handle();
    let histogram = metrics::histogram!("filedock_request_duration_seconds", "route" => "/test");
    let mut after = Vec::new();
    for _round in 0..4 {
        for i in 0..SAMPLES {
            histogram.record(i as f64 * 1e-6);
        }
        after.push(resident_bytes());
        // Two upkeeps' time: the samples are folded and their memory freed for the next round.
        std::thread::sleep(Duration::from_millis(2500));
    }
    // Held samples cost at least 8 bytes each; folded ones are reused. So if the upkeep did not
    // run, each round would add 4 MB or more.
    let growth = after[3] as i64 - after[0] as i64;
    assert!(
        growth < (SAMPLES * 2) as i64,
        "resident memory after each round of {SAMPLES} samples: {after:?} (grew {growth} bytes): no upkeep ran"
    );
    // Nothing was lost: every sample is in the histogram's count.
    let page = filedock_server::ops::metrics_handle().render();
    let count = page
        .lines()
        .find(|l| l.starts_with("filedock_request_duration_seconds_count{route=\"/test\"}"))
        .expect("the histogram is rendered");
    assert!(count.ends_with(&format!(" {}", SAMPLES * 4)), "{count}");
}
