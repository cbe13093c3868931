//! The `tenant-portal` command line: one binary, several subcommands.

mod tenants_as_code;

use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

use crate::auth::Scope;
use crate::config::{DatabaseConfig, LogFormat, ServeConfig, parse_duration};
use crate::db::tokens::TokenInfo;
use crate::service::Actor;
use crate::service::tokens::{self, Issuer, TokenRequest};

#[derive(Debug, Parser)]
#[command(
    name = "tenant-portal",
    version,
    about = "Self-service tenants on shared Kubernetes clusters"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP API (migrating the database first).
    Serve(Box<ServeConfig>),
    /// Apply pending database migrations and exit.
    Migrate(DatabaseConfig),
    /// Manage service tokens for internal platforms.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Print what `apply` would change for each tenant document; exit 2 when something would.
    Diff {
        #[command(flatten)]
        documents: tenants_as_code::Documents,
        #[command(flatten)]
        remote: tenants_as_code::Remote,
    },
    /// Make each tenant exactly as its document says, and print what was done.
    Apply {
        #[command(flatten)]
        documents: tenants_as_code::Documents,
        #[command(flatten)]
        remote: tenants_as_code::Remote,
    },
    /// Write tenants as documents (YAML): one file per tenant into a folder, or to stdout.
    Export {
        /// Only tenants with these labels: `key=value[,key=value]`.
        #[arg(long, short = 'l')]
        selector: Option<String>,
        /// A folder to write `<slug>.yaml` files into; without it, stdout.
        #[arg(long, short = 'o', value_name = "DIR")]
        output: Option<std::path::PathBuf>,
        #[command(flatten)]
        remote: tenants_as_code::Remote,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token and print its secret, once.
    Create {
        #[command(flatten)]
        database: DatabaseConfig,
        /// A unique name saying who uses the token, such as `ci-previews`.
        #[arg(long)]
        name: String,
        /// What the token may do: tenants:read, tenants:write, quota:write, admin.
        #[arg(long = "scope", required = true, num_args = 1.., value_parser = |s: &str| s.parse::<Scope>())]
        scopes: Vec<Scope>,
        /// Lifetime such as 30d or 12h; without it the token does not expire.
        #[arg(long, value_parser = parse_duration)]
        expires_in: Option<Duration>,
        /// A tenant (slug) the token reaches besides those it creates; repeatable.
        #[arg(long = "tenant", value_name = "SLUG")]
        tenants: Vec<String>,
        /// Let the token reach every tenant, not only those it creates or names.
        #[arg(long)]
        all_tenants: bool,
    },
    /// List tokens (never their secrets).
    List {
        #[command(flatten)]
        database: DatabaseConfig,
    },
    /// Revoke a token by name; it stops working at once.
    Revoke {
        #[command(flatten)]
        database: DatabaseConfig,
        #[arg(long)]
        name: String,
    },
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(config) => {
            config
                .validate()
                .map_err(|rule| anyhow::anyhow!("invalid configuration: {rule}"))?;
            crate::telemetry::init(config.log_format);
            crate::app::serve(*config).await
        }
        Command::Migrate(database) => {
            crate::telemetry::init(LogFormat::Human);
            let db = crate::db::connect(&database).await?;
            crate::db::migrate(&db).await?;
            println!("database is up to date");
            Ok(())
        }
        Command::Token(command) => token(command).await,
        Command::Diff { documents, remote } => tenants_as_code::diff(documents, remote).await,
        Command::Apply { documents, remote } => tenants_as_code::apply(documents, remote).await,
        Command::Export {
            selector,
            output,
            remote,
        } => tenants_as_code::export(remote, selector, output).await,
    }
}

fn valid_token_name(name: &str) -> anyhow::Result<()> {
    tokens::check_name(name)
        .map_err(|e| anyhow::anyhow!("--name \"{name}\" is not a token name: {}", e.rule))
}

/// How the audit trail names whoever runs the command line.
fn operator() -> Actor {
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    Actor::system(&format!("operator:{user}"))
}

/// What a token reaches, as the list shows it.
fn reach(token: &TokenInfo) -> String {
    match (token.all_tenants, token.tenants.is_empty()) {
        (true, _) => "ALL TENANTS".into(),
        (false, true) => "its own".into(),
        (false, false) => format!("its own + {}", token.tenants.join(",")),
    }
}

async fn token(command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create {
            database,
            name,
            scopes,
            expires_in,
            tenants,
            all_tenants,
        } => {
            valid_token_name(&name)?;
            let expires_at = expires_in
                .map(|d| chrono::Duration::from_std(d).map(|d| chrono::Utc::now() + d))
                .transpose()
                .context("--expires-in is too long")?;
            let db = crate::db::connect(&database).await?;
            crate::db::migrate(&db).await?;
            let request = TokenRequest {
                name,
                scopes,
                expires_at,
                tenants,
                all_tenants,
            };
            let (info, secret) = tokens::create(&db, Issuer::Operator, &operator(), request)
                .await
                .map_err(|e| anyhow::anyhow!("{}", e.problem().detail))?;
            eprintln!(
                "created token \"{}\" with scopes {}, reaching {}{}; the secret below is shown only now:",
                info.name,
                info.scopes.join(" "),
                reach(&info),
                info.expires_at
                    .map(|t| format!(", expiring {t}"))
                    .unwrap_or_default()
            );
            println!("{}", secret.reveal());
            Ok(())
        }
        TokenCommand::List { database } => {
            let db = crate::db::connect(&database).await?;
            let mut conn = db.acquire().await?;
            let tokens = crate::db::tokens::list(&mut conn)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!(
                "{:<24} {:<40} {:<30} {:<22} {:<22} STATE",
                "NAME", "SCOPES", "TENANTS", "EXPIRES", "LAST USED"
            );
            let at = |t: Option<chrono::DateTime<chrono::Utc>>| {
                t.map(|t| t.format("%Y-%m-%d %H:%M").to_string())
                    .unwrap_or_else(|| "-".into())
            };
            for t in tokens {
                let state = if t.revoked_at.is_some() {
                    "revoked"
                } else if t.expires_at.is_some_and(|e| e <= chrono::Utc::now()) {
                    "expired"
                } else {
                    "active"
                };
                println!(
                    "{:<24} {:<40} {:<30} {:<22} {:<22} {state}",
                    t.name,
                    t.scopes.join(","),
                    reach(&t),
                    at(t.expires_at),
                    at(t.last_used_at)
                );
            }
            Ok(())
        }
        TokenCommand::Revoke { database, name } => {
            let db = crate::db::connect(&database).await?;
            if tokens::revoke(&db, Issuer::Operator, &operator(), &name)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?
            {
                println!("revoked token \"{name}\"");
                Ok(())
            } else {
                bail!("there is no active token named \"{name}\"; see `tenant-portal token list`")
            }
        }
    }
}
