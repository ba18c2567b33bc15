//! Burn rate: how fast a probe spends the error budget of its SLO, judged by the SRE
//! workbook's multiwindow, multi-burn-rate rules (page on 14.4× over 1h and 5m or 6× over 6h
//! and 30m; ticket on 1× over 3d and 6h), plus a fast 14.4× over 5m and 1m page for probes
//! dense enough to judge five minutes (see [`default_rules`]). Owns one ring of one-minute
//! success/failure counters covering the longest window, running sums per window (constant
//! work per sample, plus one step per elapsed minute), and the page/ticket lifecycle. No I/O,
//! no clock.
//!
//! A probe sees far fewer events than a request log: at one probe per 15 s a 99.9% SLO
//! allows 0.24 failures an hour, so the workbook's plain ratios swing wildly — a steady 99.5%
//! (burn 5×) puts four failures into some hour every few hours, which reads as 16.7×, and
//! pages every time over three days. So the long window of each rule is judged by a lower
//! confidence bound of its error ratio (Byar's Poisson bound; `z` per rule, 0 = the plain
//! ratio) and must hold at least [`MIN_BAD`] failures, while the short window, which only
//! confirms the burn is still going on, uses the plain ratio. The 6h/30m rule gets the
//! strictest bound (z 3.09) because 6× is indistinguishable from a steady 5× in 1,440 probes;
//! the 1h/5m rule a one-sided 95% bound (z 1.645, eight failures in a full hour). A severity
//! resolves when none of its rules has held for `resolve_after`.

use super::verdict::{
    Detector, DetectorInfo, Severity, Transition, Unit, Verdict, format_duration,
};
use super::{Context, Detect, DetectorState, Observe};

/// Width of one counter slot, seconds.
pub const SLOT: f64 = 60.0;

/// Fewest failures in a rule's long window before it can hold: one or two failures in the
/// first minutes of history are no evidence of a burn, whatever their ratio.
pub const MIN_BAD: u64 = 3;

/// One multiwindow rule: the burn over both windows must reach `factor`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BurnRule {
    /// Long window, seconds.
    pub long: f64,
    /// Short window, seconds.
    pub short: f64,
    pub factor: f64,
    pub severity: Severity,
    /// z of the one-sided lower confidence bound the long window's error ratio is judged
    /// by (0 = the workbook's plain ratio). The short window always uses the plain ratio.
    pub z: f64,
    /// Fewest results the long window must hold before the rule is judged at all (0: any).
    pub min_total: u64,
}

/// The SRE workbook's recommended rules for a 30-day SLO, led by one fast rule for densely
/// probed services: 14.4× over 5m and 1m, judged only once the 5 minutes hold at least 240
/// results (a probe every ~1.25 s). The workbook's 1h window needs 17 minutes of a 50× burn
/// (95% success against 99.9%) before its ratio reaches 14.4×; with a probe a second, five
/// minutes already tell such a burn (15 failures expected) from a steady 99.5% (1.5): the
/// page comes within five minutes in ~90% of such hours, within six in all measured. It is
/// judged at z 2.33, stricter than the 1h rule, because a steady 99.5% offers thousands of
/// five-minute windows a day to look like a burn. At a probe every 500 ms it pages within five
/// minutes every time (30 failures expected against 3). At sparser intervals five minutes hold
/// too few results to tell them apart, and the rule stays out of the way.
pub fn default_rules() -> Vec<BurnRule> {
    vec![
        BurnRule {
            long: 300.0,
            short: 60.0,
            factor: 14.4,
            severity: Severity::Page,
            z: 2.33,
            min_total: 240,
        },
        BurnRule {
            long: 3600.0,
            short: 300.0,
            factor: 14.4,
            severity: Severity::Page,
            z: 1.645,
            min_total: 0,
        },
        BurnRule {
            long: 6.0 * 3600.0,
            short: 1800.0,
            factor: 6.0,
            severity: Severity::Page,
            z: 3.09,
            min_total: 0,
        },
        BurnRule {
            long: 3.0 * 86_400.0,
            short: 6.0 * 3600.0,
            factor: 1.0,
            severity: Severity::Ticket,
            z: 1.645,
            min_total: 0,
        },
    ]
}

/// Configuration of the burn-rate detector.
#[derive(Debug, Clone, PartialEq)]
pub struct SloSpec {
    /// The objective as a fraction: 0.999 for `slo: 99.9%`.
    pub objective: f64,
    pub rules: Vec<BurnRule>,
    /// Seconds without any rule of a severity holding before it resolves.
    pub resolve_after: f64,
}

impl SloSpec {
    /// The default rules ([`default_rules`]) with the default hysteresis.
    pub fn new(objective: f64) -> SloSpec {
        SloSpec {
            objective,
            rules: default_rules(),
            resolve_after: 1800.0,
        }
    }

    /// Checks the spec; the message names the offending field.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.objective > 0.0 && self.objective < 1.0) {
            return Err(format!(
                "slo must be between 0% and 100% exclusive, got {}",
                self.objective
            ));
        }
        if !(self.resolve_after.is_finite() && self.resolve_after >= 0.0) {
            return Err(format!(
                "slo.resolve_after must be zero or more, got {}",
                self.resolve_after
            ));
        }
        if self.rules.is_empty() {
            return Err("slo.rules must not be empty".to_string());
        }
        for r in &self.rules {
            let ok = |v: f64| v.is_finite() && v > 0.0;
            let z_ok = |z: f64| z.is_finite() && z >= 0.0;
            if !(ok(r.long) && ok(r.short) && ok(r.factor) && r.short <= r.long && z_ok(r.z)) {
                return Err(format!(
                    "slo rule {}x over {} and {} is invalid",
                    r.factor,
                    format_duration(r.long),
                    format_duration(r.short)
                ));
            }
            if r.long > 90.0 * 86_400.0 {
                return Err("slo rule windows are limited to 90 days".to_string());
            }
        }
        Ok(())
    }
}

/// A window's counts and its plain burn rate, for metrics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowBurn {
    pub window: f64,
    pub total: u64,
    pub bad: u64,
    /// error ratio / (1 − objective); 0 with no samples.
    pub burn: f64,
}

/// Error-budget burn: `burn:page` and `burn:ticket` alerts on a probe's `success` signal.
pub const BURN: DetectorInfo = DetectorInfo {
    label: "burn",
    reason: "burn",
    per_severity: true,
};

impl Detect for Burn {
    type Spec = SloSpec;

    fn validate(spec: &SloSpec) -> Result<(), String> {
        spec.validate()
    }

    fn new(signal: &str, _unit: Unit, spec: SloSpec, _interval: f64) -> Burn {
        Burn::new(signal, spec)
    }
}

impl Observe for Burn {
    /// Outcomes count from the first: a restart does not refund the error budget, and the
    /// settle period after one is no reason to look away.
    fn observe(&mut self, t: f64, v: f64, _ctx: &Context, out: &mut Vec<Verdict>) {
        out.extend(Burn::observe(self, t, v >= 0.5));
    }

    fn export(&self, state: &mut DetectorState) {
        state
            .firing
            .push(("burn_page", self.firing(Severity::Page)));
        state
            .firing
            .push(("burn_ticket", self.firing(Severity::Ticket)));
        state.burn = self.rates();
    }
}

/// The burn-rate detector of one signal whose samples are 1.0 (success) or 0.0 (failure).
#[derive(Debug, Clone)]
pub struct Burn {
    signal: String,
    spec: SloSpec,
    ring: Vec<Slot>,
    current: Option<i64>,
    windows: Vec<Window>,
    page: Lifecycle,
    ticket: Lifecycle,
}

impl Burn {
    /// A burn detector; `spec` should have passed [`SloSpec::validate`].
    pub fn new(signal: &str, spec: SloSpec) -> Burn {
        let mut lengths: Vec<i64> = spec
            .rules
            .iter()
            .flat_map(|r| [r.long, r.short])
            .map(slots)
            .collect();
        lengths.sort_unstable();
        lengths.dedup();
        let ring_len = lengths.last().copied().unwrap_or(1).max(1) as usize;
        Burn {
            signal: signal.to_string(),
            ring: vec![Slot::default(); ring_len],
            current: None,
            windows: lengths
                .into_iter()
                .map(|slots| Window {
                    slots,
                    total: 0,
                    bad: 0,
                })
                .collect(),
            page: Lifecycle::default(),
            ticket: Lifecycle::default(),
            spec,
        }
    }

    /// Counts one probe result and returns any page/ticket transitions.
    pub fn observe(&mut self, t: f64, success: bool) -> Vec<Verdict> {
        if !t.is_finite() {
            return Vec::new();
        }
        let slot = (t / SLOT).floor() as i64;
        if !self.count(slot, success) {
            return Vec::new();
        }
        let mut out = Vec::new();
        for severity in [Severity::Page, Severity::Ticket] {
            if let Some(v) = self.decide(t, severity) {
                out.push(v);
            }
        }
        out
    }

    /// Whether the given severity is firing.
    pub fn firing(&self, severity: Severity) -> bool {
        match severity {
            Severity::Page => self.page.firing,
            Severity::Ticket => self.ticket.firing,
        }
    }

    /// Every window's counts and plain burn rate, shortest first.
    pub fn rates(&self) -> Vec<WindowBurn> {
        self.windows
            .iter()
            .map(|w| WindowBurn {
                window: w.slots as f64 * SLOT,
                total: w.total,
                bad: w.bad,
                burn: self.plain(w),
            })
            .collect()
    }

    /// Adds one result to its slot; `false` when it is too old to count.
    fn count(&mut self, slot: i64, success: bool) -> bool {
        let n = self.ring.len() as i64;
        let current = *self.current.get_or_insert(slot);
        if slot > current {
            if slot.saturating_sub(current) >= n {
                self.ring.iter_mut().for_each(|s| *s = Slot::default());
                self.windows.iter_mut().for_each(|w| {
                    w.total = 0;
                    w.bad = 0;
                });
            } else {
                for x in current + 1..=slot {
                    for w in &mut self.windows {
                        let gone = self.ring[(x - w.slots).rem_euclid(n) as usize];
                        w.total = w.total.saturating_sub(u64::from(gone.total));
                        w.bad = w.bad.saturating_sub(u64::from(gone.bad));
                    }
                    self.ring[x.rem_euclid(n) as usize] = Slot::default();
                }
            }
            self.current = Some(slot);
        } else if current.saturating_sub(slot) >= n {
            return false;
        }
        let current = self.current.unwrap_or(slot);
        let entry = &mut self.ring[slot.rem_euclid(n) as usize];
        entry.total = entry.total.saturating_add(1);
        entry.bad = entry.bad.saturating_add(u32::from(!success));
        for w in &mut self.windows {
            if current.saturating_sub(slot) < w.slots {
                w.total += 1;
                w.bad += u64::from(!success);
            }
        }
        true
    }

    fn decide(&mut self, t: f64, severity: Severity) -> Option<Verdict> {
        let mut strongest: Option<(f64, BurnRule, f64, f64)> = None;
        for rule in self.spec.rules.iter().filter(|r| r.severity == severity) {
            let (Some(long), Some(short)) = (self.window(rule.long), self.window(rule.short))
            else {
                continue;
            };
            if long.bad < MIN_BAD || long.total < rule.min_total || short.total == 0 {
                continue;
            }
            let judged = self.lower_bound(long, rule.z);
            let short_burn = self.plain(short);
            if judged >= rule.factor && short_burn >= rule.factor {
                let strength = judged / rule.factor;
                if strongest.is_none_or(|s| strength > s.0) {
                    strongest = Some((strength, *rule, self.plain(long), short_burn));
                }
            }
        }
        let firing = match severity {
            Severity::Page => self.page.firing,
            Severity::Ticket => self.ticket.firing,
        };
        if let Some((_, rule, long_burn, short_burn)) = strongest {
            let state = self.lifecycle(severity);
            state.quiet_since = None;
            if firing {
                return None;
            }
            state.firing = true;
            let message = format!(
                "error budget burning {}x over {} and {}x over {} ({}, SLO {}%)",
                rate(long_burn),
                format_duration(rule.long),
                rate(short_burn),
                format_duration(rule.short),
                severity,
                objective(self.spec.objective)
            );
            return Some(self.verdict(t, severity, Transition::Firing, long_burn, message));
        }
        if !firing {
            return None;
        }
        let resolve_after = self.spec.resolve_after;
        let state = self.lifecycle(severity);
        let quiet = *state.quiet_since.get_or_insert(t);
        if t - quiet < resolve_after {
            return None;
        }
        state.firing = false;
        state.quiet_since = None;
        let summary: Vec<String> = self
            .spec
            .rules
            .iter()
            .filter(|r| r.severity == severity)
            .filter_map(|r| {
                let w = self.window(r.long)?;
                Some(format!(
                    "{}x over {}",
                    rate(self.plain(w)),
                    format_duration(r.long)
                ))
            })
            .collect();
        let level = self
            .spec
            .rules
            .iter()
            .find(|r| r.severity == severity)
            .and_then(|r| self.window(r.long))
            .map_or(0.0, |w| self.plain(w));
        let message = format!(
            "error budget burn under the {severity} thresholds for {} (now {})",
            format_duration(t - quiet),
            summary.join(", ")
        );
        Some(self.verdict(t, severity, Transition::Resolved, level, message))
    }

    fn lifecycle(&mut self, severity: Severity) -> &mut Lifecycle {
        match severity {
            Severity::Page => &mut self.page,
            Severity::Ticket => &mut self.ticket,
        }
    }

    fn window(&self, seconds: f64) -> Option<&Window> {
        let n = slots(seconds);
        self.windows.iter().find(|w| w.slots == n)
    }

    fn budget(&self) -> f64 {
        1.0 - self.spec.objective
    }

    fn plain(&self, w: &Window) -> f64 {
        if w.total == 0 {
            return 0.0;
        }
        w.bad as f64 / w.total as f64 / self.budget()
    }

    fn lower_bound(&self, w: &Window, z: f64) -> f64 {
        lower_bound(w.bad, w.total, z) / self.budget()
    }

    fn verdict(
        &self,
        t: f64,
        severity: Severity,
        transition: Transition,
        level: f64,
        message: String,
    ) -> Verdict {
        Verdict {
            detector: Detector::BURN,
            signal: self.signal.clone(),
            severity,
            transition,
            t,
            eta_seconds: None,
            slope: None,
            level,
            began_at: None,
            message,
        }
    }
}

/// One-sided lower confidence bound of an error ratio from `bad` of `total`: Byar's
/// approximation of the exact Poisson bound, `x (1 − 1/(9x) − z/(3√x))³ / n`. Failures are
/// rare events here, and unlike the Wilson interval it stays conservative for a handful of
/// failures in a few samples (one failure in the first four probes is not a 25% error
/// rate). `z = 0` gives the plain ratio.
pub fn lower_bound(bad: u64, total: u64, z: f64) -> f64 {
    if total == 0 || bad == 0 {
        return 0.0;
    }
    let (x, n) = (bad as f64, total as f64);
    if z <= 0.0 {
        return x / n;
    }
    let base = (1.0 - 1.0 / (9.0 * x) - z / (3.0 * x.sqrt())).max(0.0);
    (x * base.powi(3) / n).min(1.0)
}

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    total: u32,
    bad: u32,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    slots: i64,
    total: u64,
    bad: u64,
}

#[derive(Debug, Clone, Copy, Default)]
struct Lifecycle {
    firing: bool,
    quiet_since: Option<f64>,
}

fn slots(seconds: f64) -> i64 {
    ((seconds / SLOT).ceil() as i64).max(1)
}

fn rate(burn: f64) -> String {
    if burn >= 10.0 {
        format!("{burn:.0}")
    } else {
        format!("{burn:.1}")
    }
}

fn objective(o: f64) -> String {
    let s = format!("{:.3}", o * 100.0);
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_slide_and_forget() {
        let mut b = Burn::new("success", SloSpec::new(0.999));
        for i in 0..40 {
            b.observe(f64::from(i) * 15.0, i % 4 != 0);
        }
        let five = *b.rates().iter().find(|w| w.window == 300.0).unwrap();
        assert_eq!((five.total, five.bad), (20, 5));
        let minute = b.rates()[0];
        assert_eq!((minute.window, minute.total, minute.bad), (60.0, 4, 1));
        b.observe(3600.0, true);
        let r = b.rates();
        assert_eq!((r[0].total, r[0].bad), (1, 0));
        let hour = r.iter().find(|w| w.window == 3600.0).unwrap();
        assert_eq!((hour.total, hour.bad), (37, 9));
        b.observe(1e7, true);
        assert!(b.rates().iter().all(|w| w.total == 1 && w.bad == 0));
        assert!(b.observe(0.0, false).is_empty());
        assert!(b.observe(f64::NAN, false).is_empty());
    }

    #[test]
    fn a_total_outage_pages_and_resolves() {
        let mut b = Burn::new("success", SloSpec::new(0.999));
        let mut out = Vec::new();
        for i in 0..2000 {
            let ok = !(1000..1040).contains(&i);
            out.extend(b.observe(f64::from(i) * 15.0, ok));
        }
        let page: Vec<_> = out
            .iter()
            .filter(|v| v.severity == Severity::Page)
            .collect();
        assert_eq!(page.len(), 2, "{out:?}");
        assert!(page[0].t <= 1010.0 * 15.0, "{}", page[0]);
        assert!(
            page[0].message.contains("over 1h and"),
            "{}",
            page[0].message
        );
        assert!(page[0].message.contains("SLO 99.9%"), "{}", page[0].message);
        assert_eq!(page[1].transition, Transition::Resolved);
    }

    #[test]
    fn lower_bounds() {
        assert_eq!(lower_bound(0, 0, 2.0), 0.0);
        assert_eq!(lower_bound(5, 100, 0.0), 0.05);
        // Exact Poisson 95% lower limit for 5 events is 1.97.
        let lb = lower_bound(5, 100, 1.645);
        assert!((lb - 0.0197).abs() < 0.0005, "{lb}");
        assert!(lower_bound(1, 4, 1.645) < 0.02);
        assert!(lower_bound(20, 20, 1.645) > 0.6);
        assert!(SloSpec::new(1.0).validate().is_err());
        assert!(SloSpec::new(0.999).validate().is_ok());
    }
}
