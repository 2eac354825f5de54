//! Running a test body so that a hang fails the test instead of stalling the suite, with the
//! engines' warnings on the test's output.

use std::time::Duration;

/// Engine warnings and errors on the test's stderr, shown for failed tests (`RUST_LOG`
/// overrides the default `warn`). Safe to call from every test.
pub fn init_test_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}

/// Runs `body` on its own thread and returns its result; a panic in it is re-raised here,
/// and a body still running after `timeout` fails with `what` in the message.
pub fn bounded<T: Send + 'static>(
    what: &str,
    timeout: Duration,
    body: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    let worker = std::thread::spawn(move || {
        let _ = tx.send(body());
    });
    match rx.recv_timeout(timeout) {
        Ok(value) => value,
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => match worker.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => unreachable!("the worker sends its result before it ends"),
        },
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("{what} did not finish within {timeout:?}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_the_body_s_result() {
        assert_eq!(bounded("sum", Duration::from_secs(5), || 2 + 2), 4);
    }

    #[test]
    #[should_panic(expected = "the body's own message")]
    fn re_raises_a_panic_of_the_body() {
        bounded("body", Duration::from_secs(5), || {
            panic!("the body's own message")
        });
    }

    #[test]
    #[should_panic(expected = "slow body did not finish within")]
    fn fails_a_body_that_overruns() {
        bounded("slow body", Duration::from_millis(50), || {
            std::thread::sleep(Duration::from_secs(2))
        });
    }
}
