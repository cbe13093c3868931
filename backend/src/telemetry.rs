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

/// The name this process goes by wherever replicas must be told apart: in
/// the reconciler's leases and in the `User-Agent` of its cluster clients,
/// which the API server's audit log records with every write.
pub fn replica() -> &'static str {
    static REPLICA: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    REPLICA.get_or_init(|| {
        let random = uuid::Uuid::new_v4().simple().to_string();
        format!("{}-{}", std::process::id(), &random[..8])
    })
}

/// The `User-Agent` the portal's cluster clients send.
pub fn user_agent() -> String {
    format!(
        "tenant-portal/{} (replica {})",
        env!("CARGO_PKG_VERSION"),
        replica()
    )
}
