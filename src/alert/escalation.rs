//! Escalation policies: ordered steps with delays measured from firing, repeated while nobody
//! acknowledges, and an acknowledgement that expires.
//!
//! A policy is copied into an alert when it fires, so editing the config does not rewrite an
//! incident in flight. This file computes due times only; the engine decides what to send.
//! Times are unix seconds passed in; nothing here reads a clock.

use serde::{Deserialize, Serialize};

use crate::oncall::Target;

/// A validated policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Policy {
    pub name: String,
    pub steps: Vec<Step>,
    /// How many more times the steps run while unacknowledged.
    pub repeat: u32,
    /// Gap between the last step of a round and the first step of the next.
    pub repeat_interval: f64,
    /// An acknowledgement older than this re-fires the alert from step 1.
    pub ack_timeout: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// Seconds after firing (or after the round starts).
    pub after: f64,
    /// Notifiers, people and schedules, resolved when the step fires.
    pub notify: Vec<Target>,
}

/// Where an alert stands in its policy: the next step due.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Next {
    pub round: u32,
    pub step: usize,
    pub due: f64,
}

impl Policy {
    /// The length of one round: the last step's delay plus the repeat interval.
    pub fn cycle(&self) -> f64 {
        self.steps.last().map_or(0.0, |s| s.after) + self.repeat_interval
    }

    /// The first step of an escalation that starts at `start`.
    pub fn first(&self, start: f64) -> Option<Next> {
        self.steps.first().map(|s| Next {
            round: 0,
            step: 0,
            due: start + s.after,
        })
    }

    /// The step after `current`, for an escalation that started at `start`.
    pub fn after(&self, current: Next, start: f64) -> Option<Next> {
        let (round, step) = if current.step + 1 < self.steps.len() {
            (current.round, current.step + 1)
        } else if current.round < self.repeat {
            (current.round + 1, 0)
        } else {
            return None;
        };
        Some(Next {
            round,
            step,
            due: start + f64::from(round) * self.cycle() + self.steps[step].after,
        })
    }

    /// One policy from the policies of several routes (`continue: true`): their steps in
    /// order of delay (steps with the same delay become one), the most repeats, the shortest
    /// repeat interval and ack timeout. `None` when there is none; the policy itself when one.
    pub fn merge(policies: Vec<&Policy>) -> Option<Policy> {
        let (first, rest) = policies.split_first()?;
        let mut merged = (*first).clone();
        for p in rest {
            merged.name = format!("{}+{}", merged.name, p.name);
            for step in &p.steps {
                match merged.steps.iter_mut().find(|s| s.after == step.after) {
                    Some(same) => {
                        for t in &step.notify {
                            if !same.notify.contains(t) {
                                same.notify.push(t.clone());
                            }
                        }
                    }
                    None => merged.steps.push(step.clone()),
                }
            }
            merged.repeat = merged.repeat.max(p.repeat);
            merged.repeat_interval = merged.repeat_interval.min(p.repeat_interval);
            merged.ack_timeout = match (merged.ack_timeout, p.ack_timeout) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        merged.steps.sort_by(|a, b| a.after.total_cmp(&b.after));
        Some(merged)
    }

    /// The default gap between rounds: the smallest positive gap between steps, else 15m.
    pub fn default_repeat_interval(steps: &[Step]) -> f64 {
        steps
            .windows(2)
            .map(|w| w[1].after - w[0].after)
            .filter(|gap| *gap > 0.0)
            .fold(None, |min: Option<f64>, gap| {
                Some(min.map_or(gap, |m| m.min(gap)))
            })
            .unwrap_or(900.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        let steps = vec![
            Step {
                after: 0.0,
                notify: vec!["slack".into(), "pd".into()],
            },
            Step {
                after: 900.0,
                notify: vec!["pd2".into()],
            },
            Step {
                after: 1800.0,
                notify: vec!["mail".into()],
            },
        ];
        Policy {
            name: "p".into(),
            repeat_interval: Policy::default_repeat_interval(&steps),
            steps,
            repeat: 2,
            ack_timeout: Some(4.0 * 3600.0),
        }
    }

    #[test]
    fn steps_then_repeats_then_stops() {
        let p = policy();
        assert_eq!(p.repeat_interval, 900.0);
        assert_eq!(p.cycle(), 2700.0);
        let mut next = p.first(1000.0);
        let mut dues = Vec::new();
        while let Some(n) = next {
            dues.push((n.round, n.step, n.due - 1000.0));
            next = p.after(n, 1000.0);
        }
        assert_eq!(
            dues,
            [
                (0, 0, 0.0),
                (0, 1, 900.0),
                (0, 2, 1800.0),
                (1, 0, 2700.0),
                (1, 1, 3600.0),
                (1, 2, 4500.0),
                (2, 0, 5400.0),
                (2, 1, 6300.0),
                (2, 2, 7200.0)
            ]
        );
    }
}
