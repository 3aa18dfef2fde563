//! Agent reports are claims, not facts: a health window that cannot have happened is refused
//! before it is stored, so it never reaches a gate, the placement figures or a sum.

use flotilla_protocol::agent::{HealthWindow, LatencyMs};

/// Most inferences (and any other per-window count) a model can claim per second of window.
pub const MAX_PER_SECOND: u64 = 1_000_000;
/// Added to every window's bound, so a short window's counts are not refused at its edges.
pub const MAX_PER_WINDOW_CONSTANT: u64 = 1_000_000;
/// Longest window duration the count bound grows with: 7 days. With the per-second bound this
/// keeps each count below 2^40, so sums over millions of reports cannot overflow a `u64`.
pub const MAX_WINDOW_SECS: u64 = 7 * 24 * 3600;
/// Most model entries in one window.
pub const MAX_MODELS: usize = 256;
/// Highest CPU figure accepted: percent of one core, for up to 1024 cores.
pub const MAX_CPU_PERCENT: f64 = 102_400.0;

/// Why a health window was refused.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InvalidReport(pub String);

fn bad(message: impl Into<String>) -> InvalidReport {
    InvalidReport(message.into())
}

fn check_latency(what: &str, l: &LatencyMs) -> Result<(), InvalidReport> {
    for (name, v) in [("p50", l.p50), ("p95", l.p95), ("p99", l.p99)] {
        if !v.is_finite() || v < 0.0 {
            return Err(bad(format!(
                "{what}.{name} must be a finite, non-negative number"
            )));
        }
    }
    Ok(())
}

/// Checks that `window` could have happened: counts consistent with each other and within
/// what the window's duration can hold, figures finite and non-negative.
pub fn validate_health(window: &HealthWindow) -> Result<(), InvalidReport> {
    if window.end < window.start {
        return Err(bad("health window ends before it starts"));
    }
    // An agent that was off for weeks reports one long window, so length alone is no reason
    // to refuse; it only stops raising the bound after a week.
    let secs = (window.end - window.start).min(MAX_WINDOW_SECS);
    if window.models.len() > MAX_MODELS {
        return Err(bad(format!(
            "health window lists more than {MAX_MODELS} models"
        )));
    }
    let bound = secs * MAX_PER_SECOND + MAX_PER_WINDOW_CONSTANT;
    if let Some(cpu) = window.cpu_percent {
        if !cpu.is_finite() || !(0.0..=MAX_CPU_PERCENT).contains(&cpu) {
            return Err(bad(format!(
                "cpu_percent must be a finite number between 0 and {MAX_CPU_PERCENT}"
            )));
        }
    }
    for m in &window.models {
        let at = format!("{}@{}", m.model, m.version);
        let counts = [
            ("inference_count", m.inference_count),
            ("error_count", m.error_count),
            ("escalations", m.escalations),
            ("escalation_fallbacks", m.escalation_fallbacks),
        ];
        for (name, v) in counts {
            if v > bound {
                return Err(bad(format!(
                    "{at}: {name} {v} is more than a {secs} s window can hold ({bound})"
                )));
            }
        }
        if m.error_count > m.inference_count {
            return Err(bad(format!("{at}: error_count exceeds inference_count")));
        }
        if m.escalations > m.inference_count {
            return Err(bad(format!("{at}: escalations exceed inference_count")));
        }
        if m.escalation_fallbacks > m.escalations {
            return Err(bad(format!(
                "{at}: escalation_fallbacks exceed escalations"
            )));
        }
        check_latency(&format!("{at}: latency_ms"), &m.latency_ms)?;
        if let Some(l) = &m.escalation_latency_ms {
            check_latency(&format!("{at}: escalation_latency_ms"), l)?;
        }
        if let Some(s) = &m.shadow {
            for (name, v) in [
                ("shadow.compared", s.compared),
                ("shadow.agreed", s.agreed),
                ("shadow.errors", s.errors),
                ("shadow.skipped", s.skipped),
            ] {
                if v > bound {
                    return Err(bad(format!(
                        "{at}: {name} {v} is more than a {secs} s window can hold ({bound})"
                    )));
                }
            }
            if s.agreed > s.compared {
                return Err(bad(format!("{at}: shadow.agreed exceeds shadow.compared")));
            }
            if let Some(l) = &s.latency_ms {
                check_latency(&format!("{at}: shadow.latency_ms"), l)?;
            }
        }
    }
    Ok(())
}
