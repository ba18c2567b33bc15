//! Commands of the `slowburn` binary too large to sit in `main.rs`: `oncall.rs` holds
//! `slowburn oncall`, `slowburn oncall override` and `slowburn page`. Printing only; the
//! behaviour is the library's.

pub mod oncall;

/// How a command that writes reaches a running daemon.
#[derive(clap::Args)]
pub struct Remote {
    /// The daemon's address (its server.listen).
    #[arg(long, default_value = crate::DEFAULT_URL)]
    pub url: String,
    /// The daemon's server.api_token.
    #[arg(long, env = "SLOWBURN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Who does it (shown to everyone paged and in the alert's timeline). Default: $USER.
    #[arg(long, env = "USER")]
    pub by: Option<String>,
}

/// POSTs `body` to the daemon at `url` + `path` with the bearer token; the answer's JSON, or
/// why it was refused.
pub async fn post_json(
    url: &str,
    path: &str,
    token: &str,
    body: serde_json::Value,
) -> Result<serde_json::Value, String> {
    let client = crate::http_client()?;
    let response = client
        .post(format!("{}{path}", url.trim_end_matches('/')))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .map_err(|e| crate::request_error(url, &e))?;
    let status = response.status();
    let bytes = response.bytes().await.map_err(|e| e.to_string())?;
    let body: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
    if status.is_success() {
        Ok(body)
    } else {
        Err(format!(
            "{status}: {}",
            body["error"].as_str().unwrap_or("refused")
        ))
    }
}
