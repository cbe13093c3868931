//! Telling a database outage from a failed query, and checking the pooled
//! connections that lived through one before they are handed out again.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// For this long after a lost connection, every pooled connection opened
/// before the loss is pinged before use: the ones that died with the server
/// are dropped instead of failing the next request.
const CHECK_AFTER_LOSS: Duration = Duration::from_secs(60);

static LAST_LOSS: Mutex<Option<Instant>> = Mutex::new(None);

/// Whether the error means the server cannot be reached (stopped,
/// restarting, connection broken), as opposed to a query it refused.
pub fn is_connection_error(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            // Class 08: connection exception; 57P01-57P03: the server is
            // shutting down or starting; 53300: too many connections.
            code.starts_with("08") || matches!(&*code, "57P01" | "57P02" | "57P03" | "53300")
        }),
        _ => false,
    }
}

/// Notes that a connection to the server was lost just now.
pub fn connection_lost() {
    if let Ok(mut last) = LAST_LOSS.lock() {
        *last = Some(Instant::now());
    }
}

/// Whether a pooled connection of this age may have died in a recent loss.
pub fn may_have_died(age: Duration) -> bool {
    let Ok(last) = LAST_LOSS.lock() else {
        return true;
    };
    last.is_some_and(|at| {
        let since = at.elapsed();
        since < CHECK_AFTER_LOSS && age >= since
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_or_broken_connection_is_an_outage_and_a_bad_query_is_not() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(is_connection_error(&sqlx::Error::Io(refused)));
        assert!(is_connection_error(&sqlx::Error::PoolTimedOut));
        assert!(!is_connection_error(&sqlx::Error::RowNotFound));
        assert!(!is_connection_error(&sqlx::Error::ColumnNotFound(
            "x".into()
        )));
    }
}
