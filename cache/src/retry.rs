//! Retrying SQLite's "database is locked" until a deadline.

use std::path::Path;
use std::time::{Duration, Instant};

use rand::Rng;
use rusqlite::ErrorCode;

use crate::error::{Error, Result};

/// What one attempt of an operation can fail with: SQLite (possibly busy, so
/// worth another attempt) or a final answer of the cache's own.
#[derive(Debug)]
pub(crate) enum AttemptError {
    Sql(rusqlite::Error),
    Final(Error),
}

impl From<rusqlite::Error> for AttemptError {
    fn from(e: rusqlite::Error) -> Self {
        AttemptError::Sql(e)
    }
}

impl From<Error> for AttemptError {
    fn from(e: Error) -> Self {
        AttemptError::Final(e)
    }
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

/// Shortest and longest pause between attempts. SQLite's own busy handler
/// sleeps 1, 2, 5, 10 ... 100 ms and so leaves a freed lock idle for
/// milliseconds; a write transaction here takes tens of microseconds, so
/// waiters retry on a much finer, jittered schedule.
const MIN_PAUSE: Duration = Duration::from_micros(10);
const MAX_PAUSE: Duration = Duration::from_micros(500);

/// Runs `attempt` until it succeeds, fails with something other than
/// SQLITE_BUSY/SQLITE_LOCKED, or `timeout` has passed since the first try.
/// Each attempt must leave no transaction open when it fails.
pub(crate) fn retry_busy<T>(
    path: &Path,
    timeout: Duration,
    mut attempt: impl FnMut() -> Result<T, AttemptError>,
) -> Result<T> {
    let start = Instant::now();
    let mut pause = MIN_PAUSE;
    loop {
        match attempt() {
            Ok(value) => return Ok(value),
            Err(AttemptError::Final(e)) => return Err(e),
            Err(AttemptError::Sql(e)) if is_busy(&e) => {
                let waited = start.elapsed();
                if waited >= timeout {
                    return Err(Error::Timeout {
                        path: path.to_owned(),
                        waited,
                    });
                }
                let jittered = pause.mul_f64(rand::rng().random_range(0.5..1.5));
                std::thread::sleep(jittered.min(timeout - waited));
                pause = (pause * 2).min(MAX_PAUSE);
            }
            Err(AttemptError::Sql(source)) => {
                return Err(Error::Sqlite {
                    path: path.to_owned(),
                    source,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn busy() -> AttemptError {
        AttemptError::Sql(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
            None,
        ))
    }

    #[test]
    fn retries_busy_until_success() {
        let mut tries = 0;
        let value = retry_busy(Path::new("x"), Duration::from_secs(5), || {
            tries += 1;
            if tries < 4 {
                Err(busy())
            } else {
                Ok(tries)
            }
        });
        assert_eq!(value.unwrap(), 4);
    }

    #[test]
    fn times_out_with_path_and_wait() {
        let result: Result<()> =
            retry_busy(Path::new("/x/cache.db"), Duration::from_millis(30), || {
                Err(busy())
            });
        match result {
            Err(Error::Timeout { path, waited }) => {
                assert_eq!(path, Path::new("/x/cache.db"));
                assert!(waited >= Duration::from_millis(30));
            }
            other => panic!("expected Timeout, got {other:?}"),
        }
    }

    #[test]
    fn other_errors_are_not_retried() {
        let mut tries = 0;
        let result: Result<()> = retry_busy(Path::new("x"), Duration::from_secs(5), || {
            tries += 1;
            Err(AttemptError::Sql(rusqlite::Error::InvalidQuery))
        });
        assert!(matches!(result, Err(Error::Sqlite { .. })));
        assert_eq!(tries, 1);
    }
}
