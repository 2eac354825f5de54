//! Runs `examples/batch_count.rs` (in process, in its no-bootstrap mode) with
//! `--metrics-addr` and scrapes the metrics over HTTP while it runs: the Prometheus text must
//! show every sample record consumed and processed, one output record per input record
//! acknowledged (record mode) and no lag. (It commits only when it closes, after 3 s without
//! output: the commit interval is 30 s.) The HTTP responder cannot be held by its clients: one
//! that never sends or never reads does not delay the server's drop past its bound, and an
//! overlong request is refused once its limit is read.

#[allow(dead_code)]
#[path = "../examples/batch_count.rs"]
mod batch_count;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use batch_count::support::metrics::{MAX_REQUEST, MetricsServer, STOP_WAIT};
use batch_count::support::{self, Args};

/// Bound of the run.
const TIMEOUT: Duration = Duration::from_secs(90);

/// A port free now (the example binds it right after).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// `GET /metrics` over plain HTTP/1.0; the body, or `None` while nothing listens.
fn scrape(port: u16) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("text/plain"), "{head}");
    Some(body.to_owned())
}

/// The samples of metric `name` in Prometheus text: (labels, value).
fn samples<'a>(text: &'a str, name: &str) -> Vec<(&'a str, f64)> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, labels) = match series.split_once('{') {
                Some((metric, labels)) => (metric, labels.trim_end_matches('}')),
                None => (series, ""),
            };
            if metric != name {
                return None;
            }
            Some((labels, value.parse().ok()?))
        })
        .collect()
}

/// The sum of metric `name` over the samples whose labels contain `filter`.
fn sum(text: &str, name: &str, filter: &str) -> f64 {
    samples(text, name)
        .into_iter()
        .filter(|(labels, _)| labels.contains(filter))
        .map(|(_, v)| v)
        .sum()
}

#[test]
fn batch_count_serves_its_metrics_over_http_while_it_runs() {
    kstreams_tests::bounded::init_test_logging();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let args: Args = Args::parse(
        "batch_count",
        "batch-count",
        [
            "--mode",
            "record",
            "--store",
            "memory",
            "--exit-when-idle",
            "3",
            "--metrics-addr",
            &addr,
        ]
        .map(String::from),
    )
    .expect("arguments");
    assert_eq!(args.metrics_addr.as_deref(), Some(addr.as_str()));
    let run = std::thread::spawn(move || support::run(&batch_count::BATCH_COUNT, &args));

    let expected = batch_count::SAMPLE_RECORDS as f64;
    let deadline = Instant::now() + TIMEOUT;
    let mut last = String::new();
    let seen = loop {
        if run.is_finished() || Instant::now() > deadline {
            break false;
        }
        if let Some(text) = scrape(port) {
            let done = sum(&text, "kstreams_process_total", "") == expected
                && sum(&text, "kstreams_record_send_total", "topic=\"output\"") == expected
                && samples(&text, "kstreams_records_lag").len()
                    == support::SAMPLE_PARTITIONS as usize
                && sum(&text, "kstreams_records_lag", "") == 0.0;
            last = text;
            if done {
                break true;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        seen,
        "the scraped metrics never matched; last scrape:\n{last}"
    );
    assert_eq!(sum(&last, "kstreams_records_consumed_total", ""), expected);
    assert_eq!(sum(&last, "kstreams_records_produced_total", ""), expected);
    assert_eq!(
        sum(&last, "kstreams_task_process_total", ""),
        expected,
        "{last}"
    );
    assert_eq!(sum(&last, "kstreams_record_error_total", ""), 0.0);
    assert!(sum(&last, "kstreams_rebalance_total", "") >= 1.0);
    assert!(
        samples(&last, "kstreams_records_lag")
            .iter()
            .all(|(labels, _)| labels.contains("thread_id=\"")
                && labels.contains("topic=\"input\"")
                && labels.contains("partition=\"")),
        "{last}"
    );
    assert!(
        last.contains("kstreams_batch_size_bucket"),
        "batch sizes as a histogram: {last}"
    );
    assert_eq!(
        sum(&last, "kstreams_batch_size_sum", ""),
        expected,
        "{last}"
    );
    assert_eq!(
        sum(&last, "kstreams_batch_size_count", ""),
        sum(&last, "kstreams_batches_total", ""),
        "{last}"
    );
    let counts = run
        .join()
        .expect("the example panicked")
        .expect("the example failed");
    assert_eq!(counts.values().sum::<i64>(), expected as i64);
    assert!(scrape(port).is_none(), "the server stops with the run");
}

#[test]
fn clients_that_never_send_nor_read_do_not_hold_the_server_drop() {
    let server = MetricsServer::start("127.0.0.1:0").expect("metrics server");
    let addr = server.addr();
    // One sends nothing (the server waits for its request), one never reads its answer.
    let silent = TcpStream::connect(addr).expect("connect");
    let mut deaf = TcpStream::connect(addr).expect("connect");
    deaf.write_all(b"GET /metrics HTTP/1.0\r\n\r\n")
        .expect("request");
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    drop(server);
    let took = started.elapsed();
    assert!(
        took <= STOP_WAIT + Duration::from_millis(500),
        "the drop waited {took:?}"
    );
    drop((silent, deaf));
}

#[test]
fn an_overlong_request_is_refused_once_its_limit_is_read() {
    let server = MetricsServer::start("127.0.0.1:0").expect("metrics server");
    let mut client = TcpStream::connect(server.addr()).expect("connect");
    client
        .set_read_timeout(Some(Duration::from_secs(1)))
        .expect("timeout");
    // No line end: without the limit the server would wait for one.
    client
        .write_all(&vec![b'a'; MAX_REQUEST as usize])
        .expect("request");
    let mut response = String::new();
    client
        .read_to_string(&mut response)
        .expect("answered within 1 s");
    assert!(response.starts_with("HTTP/1.1 431 "), "{response}");
}
