//! `flotilla placement MODEL`: where a model runs best, from measurements.

use flotilla_protocol::agent::LatencyMs;
use flotilla_protocol::placement::PlacementReport;
use indicatif::HumanBytes;

use super::{emit, Context};
use crate::args::PlacementArgs;
use crate::client::pretty;
use crate::error::CliError;
use crate::output::Table;

/// Prints the placement report as two tables, edge and server.
pub fn run(ctx: &Context, args: &PlacementArgs) -> Result<(), CliError> {
    crate::signing::check_model_name(&args.model)?;
    let report = ctx.client()?.placement(&args.model, &args.group_by)?;
    if ctx.json {
        emit(pretty(&report.json));
        return Ok(());
    }
    emit(render(&report.value));
    Ok(())
}

fn latency(l: Option<&LatencyMs>) -> [String; 2] {
    l.map_or(["-".to_owned(), "-".to_owned()], |l| {
        [format!("{:.1}", l.p50), format!("{:.1}", l.p95)]
    })
}

fn percent(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

fn render(r: &PlacementReport) -> String {
    let mut out = format!("{} on the edge, by {}:\n", r.model, r.group_by);
    if r.edge.is_empty() {
        out.push_str("  no device served this model in its latest health window (agents report after each poll)\n");
    } else {
        let mut t = Table::new([
            "VERSION",
            "CLASS",
            "DEVICES",
            "INFERENCES",
            "ERRORS",
            "P50 MS",
            "P95 MS",
            "RSS MEAN",
            "RSS MAX",
            "ESCALATED",
            "FALLBACKS",
            "ESC P95 MS",
        ]);
        for e in &r.edge {
            let [p50, p95] = latency(Some(&e.latency_ms));
            let [_, esc95] = latency(e.escalation_latency_ms.as_ref());
            t.row(vec![
                e.version.clone(),
                e.class.clone(),
                e.devices.to_string(),
                e.inferences.to_string(),
                percent(e.error_rate),
                p50,
                p95,
                e.memory_rss_bytes_mean
                    .map_or("-".into(), |b| HumanBytes(b).to_string()),
                e.memory_rss_bytes_max
                    .map_or("-".into(), |b| HumanBytes(b).to_string()),
                percent(e.escalation_rate),
                e.escalation_fallbacks.to_string(),
                esc95,
            ]);
        }
        out.push_str(&t.render());
    }
    out.push_str(&format!("\n{} on the server:\n", r.model));
    if r.server.is_empty() {
        out.push_str("  the server has not served this model since it started\n");
    } else {
        let mut t = Table::new(["VERSION", "INFERENCES", "ERRORS", "P50 MS", "P95 MS"]);
        for s in &r.server {
            let [p50, p95] = latency(s.latency_ms.as_ref());
            t.row(vec![
                s.version.clone(),
                s.inferences.to_string(),
                percent(s.error_rate),
                p50,
                p95,
            ]);
        }
        out.push_str(&t.render());
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn both_sides_render_and_empty_sides_say_why() {
        let r: PlacementReport = serde_json::from_value(json!({
            "model": "fraud", "group_by": "class",
            "edge": [{"version": "1.0.0", "class": "pi", "devices": 2, "inferences": 400,
                      "error_rate": 0.01, "latency_ms": {"p50": 2.0, "p95": 7.0, "p99": 9.0},
                      "memory_rss_bytes_mean": 31457280, "memory_rss_bytes_max": 36700160,
                      "escalation_rate": 0.05, "escalation_fallbacks": 1,
                      "escalation_latency_ms": {"p50": 10.0, "p95": 20.0, "p99": 30.0}}],
            "server": []}))
        .unwrap();
        let text = render(&r);
        assert!(text.contains("fraud on the edge, by class:"), "{text}");
        let row = text.lines().find(|l| l.starts_with("1.0.0")).unwrap();
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(
            cells,
            [
                "1.0.0", "pi", "2", "400", "1.0%", "2.0", "7.0", "30.00", "MiB", "35.00", "MiB",
                "5.0%", "1", "20.0"
            ]
        );
        assert!(text.contains("has not served this model"), "{text}");
    }
}
