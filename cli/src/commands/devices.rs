//! `flotilla devices ls | show | label | approve | revoke | rm`.

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use flotilla_protocol::agent::{HardwareProfile, HealthWindow, SlotState, SlotStatus};
use flotilla_protocol::devices::{DeviceInfo, SetLabelsRequest};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use super::{emit, Context};
use crate::args::DevicesCommand;
use crate::client::pretty;
use crate::error::CliError;
use crate::labels::{apply_changes, join, label_map, LabelChange};
use crate::output::{human_size, short_time, short_time_or_dash, Table};

/// Runs a `devices` subcommand.
pub fn run(ctx: &Context, command: DevicesCommand) -> Result<(), CliError> {
    match command {
        DevicesCommand::Ls { selector, status } => {
            let selector = selector.map(|s| s.to_string());
            let list = ctx
                .client()?
                .list_devices(selector.as_deref(), status.map(|s| s.as_str()))?;
            if ctx.json {
                emit(pretty(&list.json));
            } else if list.value.devices.is_empty() {
                emit("no devices");
            } else {
                emit(devices_table(&list.value.devices));
            }
        }
        DevicesCommand::Show { id } => {
            let device = ctx.client()?.device(&id)?;
            if ctx.json {
                emit(pretty(&device.json));
            } else {
                emit(show_device(&device.value));
            }
        }
        DevicesCommand::Label {
            id,
            changes,
            replace,
        } => label(ctx, &id, &changes, replace)?,
        DevicesCommand::Approve { id } => {
            let device = ctx.client()?.approve_device(&id)?;
            if ctx.json {
                emit(pretty(&device.json));
            } else {
                let d = &device.value;
                emit(format!(
                    "approved device {} ({}): {}",
                    d.name, d.id, d.status
                ));
            }
        }
        DevicesCommand::Revoke { id } => {
            let device = ctx.client()?.revoke_device(&id)?;
            if ctx.json {
                emit(pretty(&device.json));
            } else {
                let d = &device.value;
                emit(format!(
                    "revoked device {} ({}): its credential no longer works",
                    d.name, d.id
                ));
            }
        }
        DevicesCommand::RotateCredential { id } => {
            let device = ctx.client()?.rotate_device_credential(&id)?;
            if ctx.json {
                emit(pretty(&device.json));
            } else {
                let d = &device.value;
                emit(format!(
                    "asked device {} ({}) to rotate its credential: it takes a new one on its next poll",
                    d.name, d.id
                ));
            }
        }
        DevicesCommand::Rm { id } => {
            ctx.client()?.delete_device(&id)?;
            if ctx.json {
                emit(pretty(&json!({"id": id, "deleted": true})));
            } else {
                emit(format!("deleted device {id}"));
            }
        }
    }
    Ok(())
}

/// `devices label`: the API replaces all labels, so unless `--replace` the current labels are
/// read and the changes applied to them. Two operators labelling one device at the same moment
/// can lose one of the changes; the answer shows the labels as stored.
fn label(ctx: &Context, id: &str, changes: &[LabelChange], replace: bool) -> Result<(), CliError> {
    let client = ctx.client()?;
    let labels = if replace {
        let mut set = Vec::new();
        for change in changes {
            match change {
                LabelChange::Set(label) => set.push(label.clone()),
                LabelChange::Remove(key) => {
                    return Err(CliError::usage(format!(
                        "`{key}-` removes a label, which --replace already does for every \
                         label not given"
                    )))
                }
            }
        }
        label_map(&set).map_err(CliError::usage)?
    } else {
        // Checked before the device is read, so a bad change sends nothing.
        apply_changes(&BTreeMap::new(), changes).map_err(CliError::usage)?;
        let current = client.device(id)?;
        apply_changes(&current.value.labels, changes).map_err(CliError::usage)?
    };
    let device = client.set_device_labels(id, &SetLabelsRequest { labels })?;
    if ctx.json {
        emit(pretty(&device.json));
    } else {
        let d = &device.value;
        emit(format!(
            "labels of {} ({}): {}\nshould run: {}",
            d.name,
            d.id,
            join(&d.labels),
            desired_text(&d.desired)
        ));
    }
    Ok(())
}

fn devices_table(devices: &[DeviceInfo]) -> String {
    let mut table = Table::new(["ID", "NAME", "STATUS", "LABELS", "LAST SEEN", "RUNNING"]);
    for d in devices {
        table.row(vec![
            d.id.clone(),
            d.name.clone(),
            d.status.clone(),
            join(&d.labels),
            short_time_or_dash(d.last_seen_at.as_deref()),
            running(d),
        ]);
    }
    table.render()
}

/// The versions a device reports serving, `model@version` comma-separated, or `-`.
fn running(d: &DeviceInfo) -> String {
    let Some(slots) = parse::<Vec<SlotStatus>>(&d.slots) else {
        return "?".to_owned();
    };
    let serving: Vec<String> = slots
        .iter()
        .filter_map(|s| serving_version(s).map(|v| format!("{}@{v}", s.model)))
        .collect();
    if serving.is_empty() {
        "-".to_owned()
    } else {
        serving.join(",")
    }
}

/// The version a slot serves: the one named as active, else its own version once active.
fn serving_version(slot: &SlotStatus) -> Option<&str> {
    slot.active_version
        .as_deref()
        .or((slot.state == SlotState::Active).then_some(slot.version.as_str()))
}

/// Everything the API says about a device, for people.
fn show_device(d: &DeviceInfo) -> String {
    // Equal sequences only mean the device applied the last state *issued* to it: a change
    // since (labels, deployments) is issued at its next poll, so "up to date" is not claimed.
    let sequence = if d.applied_sequence < d.desired_sequence {
        " (not applied yet)"
    } else {
        ""
    };
    let fields = [
        ("id:", d.id.clone()),
        ("status:", d.status.clone()),
        ("labels:", join(&d.labels)),
        ("hardware:", hardware_text(&d.hardware)),
        ("agent:", or_dash(&d.agent_version)),
        ("enrolled:", short_time(&d.enrolled_at)),
        (
            "last seen:",
            d.last_seen_at
                .as_deref()
                .map(short_time)
                .unwrap_or_else(|| "never".to_owned()),
        ),
        (
            "sequence:",
            format!(
                "desired {}, applied {}{sequence}",
                d.desired_sequence, d.applied_sequence
            ),
        ),
        ("should run:", desired_text(&d.desired)),
    ];
    let mut out = format!("{}\n", d.name);
    for (label, value) in fields {
        out.push_str(&format!("  {label:<12} {value}\n"));
    }
    out.push('\n');
    out.push_str(&slots_text(&d.slots));
    out.push('\n');
    out.push_str(&health_text(d.health.as_ref()));
    out
}

fn or_dash(s: &str) -> String {
    if s.is_empty() {
        "-".to_owned()
    } else {
        s.to_owned()
    }
}

/// `fraud 1.0.0, vision 2.1.0`, or `nothing`.
fn desired_text(desired: &BTreeMap<String, String>) -> String {
    if desired.is_empty() {
        return "nothing (no deployment selects it)".to_owned();
    }
    desired
        .iter()
        .map(|(model, version)| format!("{model} {version}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `aarch64, linux, 4 cores, 4.00 GiB, coral-tpu`; JSON as sent when it is not the profile
/// this CLI knows.
fn hardware_text(hardware: &Value) -> String {
    let Some(h) = parse::<HardwareProfile>(hardware) else {
        return hardware.to_string();
    };
    let mut parts: Vec<String> = Vec::new();
    parts.extend([h.arch, h.os].into_iter().filter(|s| !s.is_empty()));
    if h.cpu_cores > 0 {
        parts.push(format!("{} cores", h.cpu_cores));
    }
    if h.memory_mib > 0 {
        parts.push(human_size(h.memory_mib.saturating_mul(1024 * 1024)));
    }
    parts.extend(h.accelerators);
    if parts.is_empty() {
        "-".to_owned()
    } else {
        parts.join(", ")
    }
}

fn slots_text(slots: &Value) -> String {
    let Some(slots) = parse::<Vec<SlotStatus>>(slots) else {
        return format!("slots: {slots}\n");
    };
    if slots.is_empty() {
        return "no slot reported yet\n".to_owned();
    }
    let mut table = Table::new(["MODEL", "VERSION", "STATE", "SERVING", "REASON"]);
    for s in &slots {
        table.row(vec![
            s.model.clone(),
            s.version.clone(),
            slot_state(s.state).to_owned(),
            serving_version(s).unwrap_or("-").to_owned(),
            s.reason.clone().unwrap_or_else(|| "-".to_owned()),
        ]);
    }
    table.render()
}

fn slot_state(state: SlotState) -> &'static str {
    match state {
        SlotState::Downloading => "downloading",
        SlotState::Verifying => "verifying",
        SlotState::Active => "active",
        SlotState::Failed => "failed",
        SlotState::RolledBack => "rolled back",
    }
}

fn health_text(health: Option<&Value>) -> String {
    let Some(raw) = health else {
        return "no health report yet\n".to_owned();
    };
    let Some(h) = parse::<HealthWindow>(raw) else {
        return format!("health: {raw}\n");
    };
    let mut out = format!(
        "health from {} to {} ({}s)",
        unix_time(h.start),
        unix_time(h.end),
        h.end.saturating_sub(h.start)
    );
    if let Some(rss) = h.memory_rss_bytes {
        out.push_str(&format!(", memory {}", human_size(rss)));
    }
    if let Some(cpu) = h.cpu_percent {
        out.push_str(&format!(", cpu {cpu:.1}%"));
    }
    out.push('\n');
    if h.models.is_empty() {
        out.push_str("no inferences\n");
        return out;
    }
    let mut table = Table::new([
        "MODEL",
        "VERSION",
        "INFERENCES",
        "ERRORS",
        "P50 MS",
        "P95 MS",
        "P99 MS",
    ]);
    for m in &h.models {
        table.row(vec![
            m.model.clone(),
            m.version.clone(),
            m.inference_count.to_string(),
            m.error_count.to_string(),
            format!("{:.1}", m.latency_ms.p50),
            format!("{:.1}", m.latency_ms.p95),
            format!("{:.1}", m.latency_ms.p99),
        ]);
    }
    out.push_str(&table.render());
    out
}

/// Unix seconds as `2026-11-26 10:00:00Z`.
fn unix_time(secs: u64) -> String {
    short_time(
        &humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string(),
    )
}

/// The API leaves slots, hardware and health free-form JSON; they are shown typed when they
/// have the shape the agent of this version reports, and as JSON otherwise.
fn parse<T: DeserializeOwned>(value: &Value) -> Option<T> {
    T::deserialize(value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device() -> DeviceInfo {
        DeviceInfo {
            id: "3b1c".into(),
            name: "gw-17".into(),
            status: "active".into(),
            labels: [
                ("site".to_owned(), "plant-7".to_owned()),
                ("class".to_owned(), "edge".to_owned()),
            ]
            .into(),
            hardware: json!({"arch": "aarch64", "os": "linux", "cpu_cores": 4, "memory_mib": 4096}),
            agent_version: "0.1.0".into(),
            enrolled_at: "2026-11-26T10:00:00Z".into(),
            last_seen_at: Some("2026-11-26T10:05:00.5Z".into()),
            desired_sequence: 3,
            applied_sequence: 2,
            desired: [("fraud".to_owned(), "1.1.0".to_owned())].into(),
            slots: json!([
                {"model": "fraud", "version": "1.1.0", "state": "failed",
                 "active_version": "1.0.0", "reason": "digest_mismatch"},
                {"model": "vision", "version": "2.0.0", "state": "active"}
            ]),
            health: Some(json!({
                "start": 1_795_687_440u64, "end": 1_795_687_500u64,
                "models": [{"model": "fraud", "version": "1.0.0", "inference_count": 1200,
                            "error_count": 3, "latency_ms": {"p50": 1.2, "p95": 3.4, "p99": 8.0}}],
                "memory_rss_bytes": 44_040_192u64, "cpu_percent": 3.5
            })),
            credential_rotation_requested: false,
        }
    }

    #[test]
    fn show_has_labels_hardware_sequences_slots_and_health() {
        let expected = "\
gw-17
  id:          3b1c
  status:      active
  labels:      class=edge,site=plant-7
  hardware:    aarch64, linux, 4 cores, 4.00 GiB
  agent:       0.1.0
  enrolled:    2026-11-26 10:00:00Z
  last seen:   2026-11-26 10:05:00Z
  sequence:    desired 3, applied 2 (not applied yet)
  should run:  fraud 1.1.0

MODEL   VERSION  STATE   SERVING  REASON
fraud   1.1.0    failed  1.0.0    digest_mismatch
vision  2.0.0    active  2.0.0    -

health from 2026-11-26 10:04:00Z to 2026-11-26 10:05:00Z (60s), memory 42.00 MiB, cpu 3.5%
MODEL  VERSION  INFERENCES  ERRORS  P50 MS  P95 MS  P99 MS
fraud  1.0.0    1200        3       1.2     3.4     8.0
";
        assert_eq!(show_device(&device()), expected);
    }

    #[test]
    fn a_new_device_says_what_it_has_not_reported() {
        let mut d = device();
        d.last_seen_at = None;
        d.slots = json!([]);
        d.health = None;
        d.desired.clear();
        d.hardware = json!({});
        let text = show_device(&d);
        for needle in [
            "last seen:   never",
            "hardware:    -",
            "should run:  nothing",
            "no slot reported yet",
            "no health report yet",
        ] {
            assert!(text.contains(needle), "{needle}: {text}");
        }
        // Shapes this CLI does not know are shown as sent.
        d.hardware = json!({"arch": "riscv64", "npu": "x"});
        assert!(show_device(&d).contains(r#"hardware:    {"arch":"riscv64","npu":"x"}"#));
    }

    #[test]
    fn the_table_shows_what_each_device_serves() {
        let mut other = device();
        other.id = "9e2f".into();
        other.name = "gw-18".into();
        other.last_seen_at = None;
        other.slots = json!([]);
        let text = devices_table(&[device(), other]);
        assert_eq!(
            text,
            "\
ID    NAME   STATUS  LABELS                   LAST SEEN             RUNNING
3b1c  gw-17  active  class=edge,site=plant-7  2026-11-26 10:05:00Z  fraud@1.0.0,vision@2.0.0
9e2f  gw-18  active  class=edge,site=plant-7  -                     -
"
        );
    }
}
