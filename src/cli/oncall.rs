//! `slowburn oncall SCHEDULE` (the final schedule, or with `--at` alone who is on call then),
//! `slowburn oncall override` and `slowburn page`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use serde_json::json;

use super::{Remote, post_json};

#[derive(Subcommand)]
pub enum OncallAction {
    /// Put someone on call instead of the layers for a while (kept in the daemon's store).
    Override {
        /// The schedule, as its `schedules:` entry names it.
        schedule: String,
        /// Who is on call instead.
        #[arg(long)]
        user: String,
        /// RFC 3339, inclusive: 2027-04-12T09:00:00+02:00.
        #[arg(long)]
        start: String,
        /// RFC 3339, exclusive.
        #[arg(long)]
        end: String,
        #[command(flatten)]
        remote: Remote,
    },
}

/// Prints a schedule from the probe files and the overrides in the daemon's store (with
/// `storage: postgres:`, the shared database's, which every replica runs with): its
/// shifts over `days` from `at` (default now, 7 days), or with `--at` alone the name of who
/// is on call then (exit 1 for nobody). `at` is RFC 3339, or a local time in the schedule's
/// zone (`2027-04-12T09:00`).
pub async fn oncall(
    name: &str,
    config: Vec<PathBuf>,
    at: Option<String>,
    days: Option<u32>,
    as_json: bool,
) -> ExitCode {
    let Some(config) = crate::load_or_report(config) else {
        return ExitCode::FAILURE;
    };
    let mut directory = config.alerting.directory;
    for row in stored_overrides(&config.storage).await {
        let _ = directory.add_override(&row.schedule, slowburn::oncall::stored(&row));
    }
    let Some(schedule) = directory.schedules.get(name) else {
        let mut names: Vec<&str> = directory.schedules.keys().map(String::as_str).collect();
        names.sort();
        eprintln!(
            "slowburn: no schedule named {name:?}; schedules: {}",
            names.join(", ")
        );
        return ExitCode::FAILURE;
    };
    // RFC 3339, or a local time in the schedule's zone as its file writes them.
    let from = match at.as_deref() {
        None => jiff::Timestamp::now(),
        Some(text) => match text.parse::<jiff::Timestamp>() {
            Ok(t) => t,
            Err(_) => match slowburn::oncall::schedule::local_time(text, &schedule.timezone) {
                Ok(local) => local.timestamp(),
                Err(why) => {
                    eprintln!(
                        "slowburn: --at: {why}; give an RFC 3339 time such as 2027-04-12T09:00:00+02:00"
                    );
                    return ExitCode::FAILURE;
                }
            },
        },
    };
    if at.is_some() && days.is_none() {
        return match schedule.oncall(from) {
            Some(user) => {
                out!("{user}");
                ExitCode::SUCCESS
            }
            None => {
                eprintln!("slowburn: nobody is on call in {name} at {from}");
                ExitCode::FAILURE
            }
        };
    }
    let days = days.unwrap_or(7).clamp(1, 366);
    let to = from
        .checked_add(jiff::SignedDuration::from_hours(24 * i64::from(days)))
        .unwrap_or(from);
    let tz = schedule.timezone.clone();
    let local = |t: jiff::Timestamp| {
        t.to_zoned(tz.clone())
            .strftime("%a %Y-%m-%d %H:%M")
            .to_string()
    };
    for shift in schedule.shifts(from, to) {
        let who = shift.user.as_deref().unwrap_or("(nobody)");
        if as_json {
            out!(
                "{}",
                json!({"user": shift.user, "start": shift.start.to_string(), "end": shift.end.to_string()})
            );
        } else {
            out!("{} → {}  {who}", local(shift.start), local(shift.end));
        }
    }
    ExitCode::SUCCESS
}

pub async fn action(action: OncallAction) -> ExitCode {
    let OncallAction::Override {
        schedule,
        user,
        start,
        end,
        remote: Remote { url, token, by },
    } = action;
    let Some(token) = token else {
        eprintln!(
            "slowburn: adding an override needs the daemon's api token: --token or SLOWBURN_TOKEN"
        );
        return ExitCode::FAILURE;
    };
    let body = json!({"schedule": schedule, "user": user, "start": start, "end": end,
                      "by": by.unwrap_or_else(|| "cli".into())});
    match post_json(&url, "/api/v1/overrides", &token, body).await {
        Ok(row) => {
            out!(
                "override #{}: {user} on call in {schedule} from {start} until {end}",
                row["id"]
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("slowburn: cannot add the override: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Opens an incident by hand on a running daemon.
pub async fn page(service: &str, message: &str, ticket: bool, remote: Remote) -> ExitCode {
    let Remote { url, token, by } = remote;
    let Some(token) = token else {
        eprintln!("slowburn: paging needs the daemon's api token: --token or SLOWBURN_TOKEN");
        return ExitCode::FAILURE;
    };
    let body = json!({"service": service, "message": message,
                      "severity": if ticket { "ticket" } else { "page" },
                      "by": by.unwrap_or_else(|| "cli".into())});
    match post_json(&url, "/api/v1/incidents", &token, body).await {
        Ok(alert) => {
            let policy = alert["policy"]
                .as_str()
                .unwrap_or("no policy: nobody paged");
            out!("opened #{} for {service} ({policy})", alert["id"]);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("slowburn: cannot open the incident: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The overrides the daemon runs with: the shared database's (a warning and none when it
/// cannot be read), or those of its store when the store is here (read only if it exists).
async fn stored_overrides(
    storage: &slowburn::config::StorageConfig,
) -> Vec<slowburn::store::oncall::OverrideRow> {
    use slowburn::cluster::{Identity, pg::Coordinator};
    use slowburn::store::Backend;
    if let Some(postgres) = &storage.postgres {
        let me = Identity::new(Some("slowburn-oncall".into()), None, 0);
        let read = async {
            let connected = Coordinator::connect((**postgres).clone(), me, postgres.timeouts);
            let coordinator = connected
                .await
                .map_err(slowburn::store::BackendError::from)?;
            coordinator.overrides().await
        };
        return match read.await {
            Ok(rows) => rows,
            Err(e) => {
                eprintln!("slowburn: warning: overrides not shown: {e}");
                Vec::new()
            }
        };
    }
    let store = (storage.path.exists())
        .then(|| slowburn::store::Store::open(&storage.path).ok())
        .flatten();
    store
        .map(|s| s.overrides().unwrap_or_default())
        .unwrap_or_default()
}
