use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = tenant_portal::cli::Cli::parse();
    match tenant_portal::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
