//! The pages behind signed one-click links (`/links/…`, see `oncall::links`): GET checks the
//! link and shows a confirmation page whose button POSTs; only the POST acts, once (its nonce
//! is recorded in the store before the alert is touched). A link that was altered, expired,
//! already used or made by another key changes nothing and says why. The link is the
//! credential, so no bearer token is asked for.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use super::Shared;
use crate::alert::service::unix_now;
use crate::oncall::links::{Action, LINK_TTL, Link};

pub fn routes() -> Router<Shared> {
    Router::new().route("/links/{*rest}", get(confirm).post(act))
}

async fn confirm(State(shared): State<Shared>, Path(rest): Path<String>) -> Response {
    let link = match check(&shared, &rest) {
        Ok(link) => link,
        Err(refused) => return refused.page(),
    };
    let summary = shared
        .alerts
        .alert(link.alert_id)
        .map_or_else(|| format!("alert #{}", link.alert_id), |a| a.summary);
    let verb = verb(link.action);
    let body = format!(
        "<p>{verb} <strong>{}</strong> as {}?</p>\
         <form method=\"post\"><button type=\"submit\">{verb}</button></form>",
        escape(&summary),
        escape(&link.by)
    );
    page(StatusCode::OK, verb, &body)
}

async fn act(State(shared): State<Shared>, Path(rest): Path<String>) -> Response {
    let link = match check(&shared, &rest) {
        Ok(link) => link,
        Err(refused) => return refused.page(),
    };
    let now = unix_now();
    match shared.store.use_nonce(
        &link.nonce,
        link.alert_id,
        link.action.as_str(),
        now,
        LINK_TTL,
    ) {
        Ok(true) => {}
        Ok(false) => {
            return page(
                StatusCode::CONFLICT,
                "Link already used",
                "<p>This link was already used; it works once.</p>",
            );
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot record a link's use");
            return page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Not done",
                "<p>The store did not take the change; nothing was done.</p>",
            );
        }
    }
    let by = format!("{} (link)", link.by);
    let result = match link.action {
        Action::Ack => shared.alerts.ack(link.alert_id, &by, now),
        Action::Resolve => shared.alerts.resolve(link.alert_id, &by, now),
    };
    match result {
        Ok(alert) => {
            let done = format!(
                "<p>{} <strong>{}</strong> as {}.</p>",
                verb_done(link.action),
                escape(&alert.summary),
                escape(&link.by)
            );
            page(StatusCode::OK, verb_done(link.action), &done)
        }
        Err(refusal) => page(
            StatusCode::CONFLICT,
            "Nothing changed",
            &format!("<p>{}</p>", escape(&refusal.to_string())),
        ),
    }
}

/// Why a link does nothing, for the page that says so.
struct Refused {
    status: StatusCode,
    title: &'static str,
    body: String,
}

impl Refused {
    fn page(self) -> Response {
        page(self.status, self.title, &self.body)
    }
}

/// The link checked against the running signer, or why it does nothing.
fn check(shared: &Shared, rest: &str) -> Result<Link, Refused> {
    let Some(signer) = shared.alerts.links() else {
        return Err(Refused {
            status: StatusCode::NOT_FOUND,
            title: "No links",
            body: "<p>This daemon has no server.external_url, so it makes no links.</p>".into(),
        });
    };
    signer.check(rest, unix_now()).map_err(|e| Refused {
        status: StatusCode::FORBIDDEN,
        title: "Link refused",
        body: format!("<p>{}; nothing was changed.</p>", escape(&e.to_string())),
    })
}

fn verb(action: Action) -> &'static str {
    match action {
        Action::Ack => "Acknowledge",
        Action::Resolve => "Resolve",
    }
}

fn verb_done(action: Action) -> &'static str {
    match action {
        Action::Ack => "Acknowledged",
        Action::Resolve => "Resolved",
    }
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><meta name=\"robots\" content=\"noindex\">\
         <title>{title} · slowburn</title></head><body><h1>{title}</h1>{body}</body></html>"
    );
    (status, Html(html)).into_response()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
