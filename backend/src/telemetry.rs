use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Logs to stderr, filtered by `RUST_LOG` (default `info`).
pub fn init(format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// A new name for one replica of the portal (a process, or each portal a
/// test runs side by side): told apart in the reconciler's leases and in the
/// `User-Agent` of its cluster clients, which the API server's audit log
/// records with every write.
pub fn new_replica_name() -> String {
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("{}-{}", std::process::id(), &random[..8])
}

/// The `User-Agent` a replica's cluster clients send.
pub fn user_agent(replica: &str) -> String {
    format!(
        "tenant-portal/{} (replica {replica})",
        env!("CARGO_PKG_VERSION")
    )
}
