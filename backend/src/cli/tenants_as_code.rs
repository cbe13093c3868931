//! `tenant-portal diff`, `apply` and `export`: tenants as documents in
//! files, over the REST API with a service token, so they run from CI
//! against a remote portal. The plan comes from the server
//! (`PUT /api/v1/tenants/{slug}?dry_run=true`), so `diff` shows exactly what
//! `apply` then does.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::domain::tenant_document::{MANAGED_BY_LABEL, Outcome, TenantDocument, TenantPlan};
use crate::problem::Problem;

/// Where the portal is and how to authenticate to it.
#[derive(Debug, clap::Args)]
pub struct Remote {
    /// The portal's address.
    #[arg(long, env = "TP_PORTAL", default_value = "http://127.0.0.1:8080")]
    pub portal: String,
    /// A service token: tenants:write to apply (quota:write to set budgets,
    /// admin to set policies), tenants:read to diff and export.
    #[arg(long, env = "TP_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// A file holding the service token.
    #[arg(long, env = "TP_TOKEN_FILE", conflicts_with = "token")]
    pub token_file: Option<PathBuf>,
    /// A PEM file of the CA to trust for the portal's HTTPS (instead of the system's).
    #[arg(long, env = "TP_CA_FILE")]
    pub ca_file: Option<PathBuf>,
}

/// The documents to plan or apply.
#[derive(Debug, clap::Args)]
pub struct Documents {
    /// A tenant document (YAML or JSON; several in one file separated by
    /// `---`), or a folder of them (`*.yaml`, `*.yml`, `*.json`, searched
    /// recursively); repeatable.
    #[arg(
        short = 'f',
        long = "filename",
        value_name = "FILE|DIR",
        required = true
    )]
    pub files: Vec<PathBuf>,
    /// The name of this folder of tenants: every document gets the label
    /// `tenant-portal.dev/managed-by=NAME` (a document without labels then
    /// has that one alone).
    #[arg(long, value_name = "NAME")]
    pub managed_by: Option<String>,
    /// Also delete the tenants labelled `tenant-portal.dev/managed-by=NAME`
    /// that no document names (listed in the plan first). A tenant without
    /// the label is never deleted.
    #[arg(long, requires = "managed_by")]
    pub prune: bool,
}

/// Prints what `apply` would change, per tenant; exits 0 when nothing would, 2 when something would.
pub async fn diff(documents: Documents, remote: Remote) -> anyhow::Result<()> {
    let client = Client::new(&remote)?;
    let outcome = run(&client, &documents, true).await?;
    finish(outcome, true)
}

/// Makes every tenant as its document says, and prints what it did.
pub async fn apply(documents: Documents, remote: Remote) -> anyhow::Result<()> {
    let client = Client::new(&remote)?;
    let outcome = run(&client, &documents, false).await?;
    finish(outcome, false)
}

/// Writes tenants as documents: one file per tenant into `output`, or all to stdout.
pub async fn export(
    remote: Remote,
    selector: Option<String>,
    output: Option<PathBuf>,
) -> anyhow::Result<()> {
    let client = Client::new(&remote)?;
    let slugs = client.list(selector.as_deref()).await?;
    if let Some(dir) = &output {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("failed to create {}", dir.display()))?;
    }
    let mut stdout = std::io::stdout().lock();
    for (i, slug) in slugs.iter().enumerate() {
        let (status, body) = client
            .call(Method::GET, &format!("/tenants/{slug}/document"), None)
            .await?;
        if status != StatusCode::OK {
            bail!("tenant {slug}: {}", refusal(status, &body));
        }
        let document: TenantDocument = serde_json::from_slice(&body)
            .with_context(|| format!("tenant {slug}: the portal's document does not parse"))?;
        let yaml = serde_saphyr::to_string(&document)
            .with_context(|| format!("tenant {slug}: failed to write YAML"))?;
        match &output {
            Some(dir) => {
                let path = dir.join(format!("{slug}.yaml"));
                std::fs::write(&path, yaml)
                    .with_context(|| format!("failed to write {}", path.display()))?;
                println!("wrote {}", path.display());
            }
            None => {
                if i > 0 {
                    writeln!(stdout, "---")?;
                }
                write!(stdout, "{yaml}")?;
            }
        }
    }
    // The documents alone on stdout; the tally where it does not mix with them.
    if output.is_some() {
        println!("exported {} tenant(s)", slugs.len());
    } else {
        eprintln!("exported {} tenant(s)", slugs.len());
    }
    Ok(())
}

/// What a run found, for the summary and the exit code.
#[derive(Debug, Default)]
struct Tally {
    created: usize,
    changed: usize,
    unchanged: usize,
    deleted: usize,
    failed: usize,
}

fn finish(tally: Tally, dry: bool) -> anyhow::Result<()> {
    let verb = |done: &'static str, to_do: &'static str| if dry { to_do } else { done };
    println!(
        "{} tenant(s): {} {}, {} {}, {} unchanged, {} {}{}",
        tally.created + tally.changed + tally.unchanged + tally.deleted + tally.failed,
        tally.created,
        verb("created", "to create"),
        tally.changed,
        verb("changed", "to change"),
        tally.unchanged,
        tally.deleted,
        verb("deleted", "to delete"),
        if tally.failed > 0 {
            format!(", {} refused", tally.failed)
        } else {
            String::new()
        }
    );
    std::io::stdout().flush()?;
    if tally.failed > 0 {
        bail!("{} document(s) were refused", tally.failed);
    }
    if dry && tally.created + tally.changed + tally.deleted > 0 {
        // `diff` exits 2 when there are changes, as diff(1) does not, but CI wants.
        std::process::exit(2);
    }
    Ok(())
}

async fn run(client: &Client, documents: &Documents, dry: bool) -> anyhow::Result<Tally> {
    let mut docs = read_documents(&documents.files)?;
    if let Some(name) = &documents.managed_by {
        for (origin, slug, doc) in &mut docs {
            mark_managed(doc, name).with_context(|| format!("{origin} (tenant {slug})"))?;
        }
    }
    let mut tally = Tally::default();
    let mut named = BTreeSet::new();
    for (origin, slug, doc) in docs {
        named.insert(slug.clone());
        let path = format!("/tenants/{slug}{}", if dry { "?dry_run=true" } else { "" });
        let (status, body) = client
            .call(Method::PUT, &path, Some(&doc))
            .await
            .with_context(|| format!("{origin}: tenant {slug}"))?;
        if !status.is_success() {
            println!("tenant {slug}: refused ({origin})");
            for line in refusal(status, &body).lines() {
                println!("  {line}");
            }
            tally.failed += 1;
            continue;
        }
        let plan: TenantPlan = serde_json::from_slice(&body)
            .with_context(|| format!("tenant {slug}: the portal's plan does not parse"))?;
        print_plan(&plan, dry);
        match plan.outcome {
            Outcome::Created => tally.created += 1,
            Outcome::Changed => tally.changed += 1,
            Outcome::Unchanged => tally.unchanged += 1,
        }
    }
    if documents.prune
        && let Some(name) = &documents.managed_by
    {
        let selector = format!("{MANAGED_BY_LABEL}={name}");
        for slug in client.list(Some(&selector)).await? {
            if named.contains(&slug) {
                continue;
            }
            if dry {
                println!("tenant {slug}: to delete (managed by {name}, in no document)");
                println!("  - tenant {slug}");
                tally.deleted += 1;
                continue;
            }
            let (status, body) = client
                .call(Method::DELETE, &format!("/tenants/{slug}"), None)
                .await?;
            if status.is_success() {
                println!("tenant {slug}: deleted (managed by {name}, in no document)");
                tally.deleted += 1;
            } else {
                println!("tenant {slug}: delete refused: {}", refusal(status, &body));
                tally.failed += 1;
            }
        }
    }
    Ok(tally)
}

fn print_plan(plan: &TenantPlan, dry: bool) {
    let n = plan.changes.len();
    let headline = match (plan.outcome, dry) {
        (Outcome::Created, true) => "to create".to_string(),
        (Outcome::Created, false) => format!("created (generation {})", plan.generation),
        (Outcome::Changed, true) => format!("{n} change(s)"),
        (Outcome::Changed, false) => {
            format!("changed, {n} change(s) (generation {})", plan.generation)
        }
        (Outcome::Unchanged, _) => "no changes".to_string(),
    };
    println!("tenant {}: {headline}", plan.slug);
    for change in &plan.changes {
        println!("  {change}");
    }
}

/// Sets the managed-by label on a document, refusing one that names another folder.
fn mark_managed(doc: &mut Value, name: &str) -> anyhow::Result<()> {
    let Some(object) = doc.as_object_mut() else {
        bail!("a tenant document must be a mapping");
    };
    let labels = object
        .entry("labels")
        .or_insert_with(|| Value::Object(Default::default()));
    let Some(labels) = labels.as_object_mut() else {
        bail!("labels must be a mapping");
    };
    match labels.get(MANAGED_BY_LABEL).and_then(Value::as_str) {
        Some(other) if other != name => {
            bail!("the document is labelled {MANAGED_BY_LABEL}={other}, not --managed-by {name}")
        }
        _ => {
            labels.insert(MANAGED_BY_LABEL.into(), Value::String(name.into()));
        }
    }
    Ok(())
}

/// Every document of the files and folders, as (where, slug, document).
fn read_documents(paths: &[PathBuf]) -> anyhow::Result<Vec<(String, String, Value)>> {
    let mut files = Vec::new();
    for path in paths {
        collect(path, &mut files)?;
    }
    let mut docs = Vec::new();
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for file in files {
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("failed to read {}", file.display()))?;
        let values: Vec<Value> = serde_saphyr::from_multiple(&text)
            .with_context(|| format!("{} is not YAML or JSON", file.display()))?;
        for (i, doc) in values.into_iter().enumerate() {
            if doc.is_null() {
                continue;
            }
            let origin = if i == 0 {
                file.display().to_string()
            } else {
                format!("{} (document {})", file.display(), i + 1)
            };
            let Some(slug) = doc.get("slug").and_then(Value::as_str) else {
                bail!("{origin}: a tenant document needs its slug");
            };
            let slug = slug.to_string();
            if let Some(first) = seen.insert(slug.clone(), origin.clone()) {
                bail!("{origin}: tenant {slug} is also in {first}");
            }
            docs.push((origin, slug, doc));
        }
    }
    if docs.is_empty() {
        bail!("no tenant documents found in {paths:?}");
    }
    Ok(docs)
}

fn collect(path: &Path, files: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    if !path.is_dir() {
        files.push(path.to_path_buf());
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
        .with_context(|| format!("failed to read the folder {}", path.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    entries.sort();
    for entry in entries {
        let hidden = entry
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'));
        let document = entry
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"));
        if hidden {
            continue;
        }
        if entry.is_dir() {
            collect(&entry, files)?;
        } else if document {
            files.push(entry);
        }
    }
    Ok(())
}

/// A refusal in words: the problem's detail and each field it names.
fn refusal(status: StatusCode, body: &[u8]) -> String {
    match serde_json::from_slice::<Problem>(body) {
        Ok(problem) => {
            let mut text = format!("{} {}", status.as_u16(), problem.detail);
            for e in problem.errors {
                text.push_str(&format!("\n{}: {}", e.field, e.rule));
            }
            text
        }
        Err(_) => format!("{status}: {}", String::from_utf8_lossy(body)),
    }
}

/// The REST API with a token.
struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    fn new(remote: &Remote) -> anyhow::Result<Self> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let token = match (&remote.token, &remote.token_file) {
            (Some(token), _) => token.trim().to_string(),
            (None, Some(file)) => std::fs::read_to_string(file)
                .with_context(|| format!("failed to read the token file {}", file.display()))?
                .trim()
                .to_string(),
            (None, None) => bail!("give a service token with --token, TP_TOKEN or --token-file"),
        };
        let mut builder = reqwest::Client::builder().timeout(std::time::Duration::from_secs(60));
        if let Some(ca) = &remote.ca_file {
            let pem = std::fs::read(ca)
                .with_context(|| format!("failed to read the CA file {}", ca.display()))?;
            let ca = reqwest::Certificate::from_pem(&pem)
                .with_context(|| format!("{} is not a PEM certificate", ca.display()))?;
            builder = builder.tls_certs_only([ca]);
        }
        Ok(Self {
            http: builder.build().context("failed to build the HTTP client")?,
            base: format!("{}/api/v1", remote.portal.trim_end_matches('/')),
            token,
        })
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<(StatusCode, Vec<u8>)> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("failed to reach the portal at {}", self.base))?;
        let status = response.status();
        let body = response.bytes().await?.to_vec();
        if status == StatusCode::UNAUTHORIZED {
            bail!("the portal refused the token: {}", refusal(status, &body));
        }
        Ok((status, body))
    }

    /// The slugs of the tenants (but those on their way out) with these labels.
    async fn list(&self, selector: Option<&str>) -> anyhow::Result<Vec<String>> {
        let mut slugs = Vec::new();
        let mut page: Option<String> = None;
        loop {
            let mut query: Vec<(&str, &str)> = vec![("page_size", "500")];
            if let Some(selector) = selector {
                query.push(("label", selector));
            }
            if let Some(token) = &page {
                query.push(("page_token", token));
            }
            let query = serde_urlencoded::to_string(&query)?;
            let (status, body) = self
                .call(Method::GET, &format!("/tenants?{query}"), None)
                .await?;
            if status != StatusCode::OK {
                bail!("listing tenants: {}", refusal(status, &body));
            }
            let listed: Value = serde_json::from_slice(&body)?;
            for item in listed["items"].as_array().into_iter().flatten() {
                let state = item["state"].as_str().unwrap_or_default();
                if let Some(slug) = item["slug"].as_str()
                    && matches!(state, "active" | "suspended")
                {
                    slugs.push(slug.to_string());
                }
            }
            match listed["next_page_token"].as_str() {
                Some(next) => page = Some(next.to_string()),
                None => break,
            }
        }
        Ok(slugs)
    }
}
