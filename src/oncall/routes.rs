//! `routes:`: from an alert's labels to the policies that page it. Routes are tried in order;
//! the first that matches decides unless it says `continue: true`, in which case the next
//! matching routes add their policies too. A route with no matchers matches every alert (the
//! default route; put it last).

use std::collections::BTreeMap;

/// A validated route.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// Every matcher must equal the alert's label (`probe`, `kind`, `reason`, `severity` and
    /// the probe's own labels).
    pub matchers: BTreeMap<String, String>,
    pub policy: String,
    pub continue_: bool,
}

impl Route {
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matchers.iter().all(|(k, v)| labels.get(k) == Some(v))
    }
}

/// The policies of the routes that match `labels`, in route order.
pub fn policies<'r>(routes: &'r [Route], labels: &BTreeMap<String, String>) -> Vec<&'r str> {
    let mut out = Vec::new();
    for route in routes.iter().filter(|r| r.matches(labels)) {
        if !out.contains(&route.policy.as_str()) {
            out.push(route.policy.as_str());
        }
        if !route.continue_ {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(matchers: &[(&str, &str)], policy: &str, continue_: bool) -> Route {
        Route {
            matchers: matchers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            policy: policy.into(),
            continue_,
        }
    }

    #[test]
    fn routes_in_order_first_match_wins_unless_continue() {
        let routes = [
            route(
                &[("team", "orders"), ("severity", "ticket")],
                "orders-tickets",
                false,
            ),
            route(&[("team", "orders")], "orders", true),
            route(&[("kind", "postgres")], "dba", false),
            route(&[("reason", "cert_days_left")], "certs", false),
            route(&[("service", "reviews")], "reviews", false),
            route(&[], "default", false),
        ];
        // (an alert's labels, the policies that page it)
        type Row = (
            &'static [(&'static str, &'static str)],
            &'static [&'static str],
        );
        let table: &[Row] = &[
            (
                &[("team", "orders"), ("severity", "page"), ("kind", "http")],
                &["orders", "default"],
            ),
            (
                &[("team", "orders"), ("severity", "ticket")],
                &["orders-tickets"],
            ),
            (
                &[("team", "orders"), ("kind", "postgres")],
                &["orders", "dba"],
            ),
            (&[("team", "payments"), ("kind", "postgres")], &["dba"]),
            (&[("reason", "cert_days_left")], &["certs"]),
            (&[("service", "reviews"), ("team", "x")], &["reviews"]),
            (&[("team", "payments")], &["default"]),
            (&[], &["default"]),
        ];
        for (labels, want) in table {
            let labels = labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            assert_eq!(policies(&routes, &labels), *want, "{labels:?}");
        }
        assert!(policies(&routes[..1], &BTreeMap::new()).is_empty());
    }
}
