//! Commands of the `slowburn` binary too large to sit in `main.rs`: `oncall.rs` holds
//! `slowburn oncall`, `slowburn oncall override` and `slowburn page`. Printing only; the
//! behaviour is the library's.

pub mod oncall;

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
