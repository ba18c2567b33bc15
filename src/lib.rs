//! slowburn: a synthetic-monitoring prober that pages before a slow failure becomes an outage.
//!
//! Data flows one way:
//!
//! ```text
//! probe files ─▶ config ─▶ scheduler ─▶ probe::execute ─▶ Outcome ─▶ state ─▶ metrics / server
//! ```
//!
//! - [`config`] reads YAML probe files, reports every error with `file:line:col`, and builds
//!   each probe (validation happens while building).
//! - [`probe`] holds one file per probe kind; a run returns an [`probe::Outcome`] with timed
//!   phases, signals, assertion results and a failure reason. Probes know nothing of alerts,
//!   storage or HTTP serving.
//! - [`scheduler`] decides when each probe runs: fixed rate, stable phase, no stacking, a
//!   global in-flight limit.
//! - [`state`] keeps each probe's latest outcome; [`metrics`] renders it for Prometheus with
//!   blackbox_exporter's names; [`server`] serves `/metrics`, `/healthz` and `/api/v1`.
//! - [`oncall`] says who is paged: people, schedules, routes and the resolution of a step's
//!   targets, as pure functions of a time passed in.
//! - [`app`] is the daemon: the only place that spawns long-lived tasks and owns reload and
//!   shutdown.

#![forbid(unsafe_code)]

pub mod alert;
pub mod app;
pub mod basics;
pub mod blackbox;
pub mod cluster;
pub mod config;
pub mod detect;
pub mod metrics;
pub mod notify;
pub mod oncall;
pub mod probe;
pub mod results;
pub mod scheduler;
pub mod server;
pub mod state;
pub mod store;
pub mod watchdog;
