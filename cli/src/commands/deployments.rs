//! `flotilla deploy MODEL@VERSION` and `flotilla deployments ls | rm`.

use flotilla_protocol::agent::EscalationPolicy;
use flotilla_protocol::devices::{DeployRequest, DeploymentInfo, DeviceInfo};
use reqwest::StatusCode;
use serde_json::json;

use super::{emit, Context};
use crate::args::{DeployArgs, DeploymentsCommand, ModelVersion};
use crate::client::{pretty, Client};
use crate::error::CliError;
use crate::output::{short_time, Table};
use crate::signing;

/// At most this many selected devices are listed after a deploy; `devices ls` shows them all.
const LISTED_DEVICES: usize = 20;

/// `flotilla deploy MODEL@VERSION [--selector ...]`.
pub fn deploy(ctx: &Context, args: DeployArgs) -> Result<(), CliError> {
    let client = ctx.client()?;
    let escalation = escalation(&args)?;
    let selector = args.selector.unwrap_or_default().to_string();
    let deployed = client.deploy(&DeployRequest {
        model: args.target.model,
        version: args.target.version,
        selector,
        escalation,
    })?;
    if ctx.json {
        emit(pretty(&deployed.json));
        return Ok(());
    }
    let d = &deployed.value;
    let verb = if deployed.status == StatusCode::CREATED {
        "created"
    } else {
        "updated"
    };
    let mut out = format!(
        "{verb} deployment {}: {} {} on {}\n{}",
        d.id,
        d.model,
        d.version,
        selector_text(&d.selector),
        selects_text(d.devices)
    );
    if let Some(e) = &d.escalation {
        out.insert_str(
            out.find('\n').map_or(out.len(), |i| i + 1),
            &format!("hybrid: {}\n", escalation_text(e)),
        );
    }
    if d.devices > 0 {
        // The deployment is in place whatever happens here: a failed listing is only noted.
        match selected_devices(&client, d) {
            Ok(devices) => out.push_str(&selected_table(&devices, d)),
            Err(e) => ctx.note(format!("cannot list the selected devices: {}", e.report())),
        }
    }
    emit(out);
    Ok(())
}

/// `selects 2 devices`, with what `0` means.
fn selects_text(devices: u64) -> String {
    match devices {
        0 => "selects no device yet: devices that enroll or are labelled to match will get it\n"
            .to_owned(),
        1 => "selects 1 device:\n".to_owned(),
        n => format!("selects {n} devices:\n"),
    }
}

/// The devices matching the selector that are now told to run this version (a more specific
/// deployment of the same model may win for some of them).
fn selected_devices(client: &Client, d: &DeploymentInfo) -> Result<Vec<DeviceInfo>, CliError> {
    let selector = (!d.selector.is_empty()).then_some(d.selector.as_str());
    let list = client.list_devices(selector, None)?;
    Ok(list
        .value
        .devices
        .into_iter()
        .filter(|dev| dev.status != "revoked")
        .filter(|dev| dev.desired.get(&d.model) == Some(&d.version))
        .collect())
}

fn selected_table(devices: &[DeviceInfo], d: &DeploymentInfo) -> String {
    let mut table = Table::new(["ID", "NAME", "STATUS"]);
    for dev in devices.iter().take(LISTED_DEVICES) {
        table.row(vec![dev.id.clone(), dev.name.clone(), dev.status.clone()]);
    }
    let mut out = table.render();
    if devices.len() > LISTED_DEVICES {
        let flag = if d.selector.is_empty() {
            String::new()
        } else {
            format!(" --selector {}", d.selector)
        };
        out.push_str(&format!(
            "... and {} more (flotilla devices ls{flag})\n",
            devices.len() - LISTED_DEVICES
        ));
    }
    out
}

/// A selector for people: the empty one selects every device.
fn selector_text(selector: &str) -> String {
    if selector.is_empty() {
        "every device".to_owned()
    } else {
        selector.to_owned()
    }
}

/// Runs a `deployments` subcommand.
pub fn run(ctx: &Context, command: DeploymentsCommand) -> Result<(), CliError> {
    let client = ctx.client()?;
    match command {
        DeploymentsCommand::Ls => {
            let list = client.list_deployments()?;
            if ctx.json {
                emit(pretty(&list.json));
            } else if list.value.deployments.is_empty() {
                emit("no deployments");
            } else {
                emit(deployments_table(&list.value.deployments));
            }
        }
        DeploymentsCommand::Rm { id } => {
            client.delete_deployment(&id)?;
            if ctx.json {
                emit(pretty(&json!({"id": id, "deleted": true})));
            } else {
                emit(format!("removed deployment {id}"));
            }
        }
    }
    Ok(())
}

fn deployments_table(deployments: &[DeploymentInfo]) -> String {
    let mut table = Table::new([
        "ID", "MODEL", "VERSION", "SELECTOR", "DEVICES", "UPDATED", "BY",
    ]);
    for d in deployments {
        table.row(vec![
            d.id.clone(),
            d.model.clone(),
            d.version.clone(),
            selector_text(&d.selector),
            d.devices.to_string(),
            short_time(&d.updated_at),
            d.created_by.clone(),
        ]);
    }
    table.render()
}

/// `below 0.8 on probabilities → server fraud@1.1.0 (500 ms, else the device answers)`.
fn escalation_text(e: &EscalationPolicy) -> String {
    format!(
        "below {} on {} -> server {}{} ({} ms, else the device answers)",
        e.threshold,
        e.output,
        e.server_model,
        e.server_version
            .as_deref()
            .map_or(" (baseline)".to_owned(), |v| format!("@{v}")),
        e.timeout_ms
    )
}

/// The escalation policy the deploy flags describe, checked before anything is sent.
fn escalation(args: &DeployArgs) -> Result<Option<EscalationPolicy>, CliError> {
    let Some(target) = &args.escalate_to else {
        return Ok(None);
    };
    let (server_model, server_version) = match target.split_once('@') {
        Some(_) => {
            let t = ModelVersion::parse(target).map_err(CliError::usage)?;
            (t.model, Some(t.version))
        }
        None => {
            signing::check_model_name(target)?;
            (target.clone(), None)
        }
    };
    let threshold = args.threshold.unwrap_or(f64::NAN);
    if !threshold.is_finite() {
        return Err(CliError::usage("--threshold must be a finite number"));
    }
    Ok(Some(EscalationPolicy {
        output: args.confidence_output.clone().unwrap_or_default(),
        threshold,
        server_model,
        server_version,
        timeout_ms: u64::try_from(args.escalation_timeout.as_millis()).unwrap_or(u64::MAX),
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    fn deployment(selector: &str, devices: u64) -> DeploymentInfo {
        DeploymentInfo {
            id: "5e7a".into(),
            model: "fraud".into(),
            version: "1.0.0".into(),
            selector: selector.into(),
            created_by: "ops".into(),
            updated_at: "2026-11-26T10:00:00Z".into(),
            devices,
            escalation: None,
        }
    }

    #[test]
    fn escalation_flags_become_a_policy_or_a_usage_error() {
        use clap::Parser;
        let parse = |line: &str| {
            let args =
                crate::args::Cli::try_parse_from(line.split_whitespace()).map_err(|e| e.kind())?;
            match args.command {
                crate::args::Command::Deploy(d) => Ok::<_, clap::error::ErrorKind>(d),
                other => panic!("not a deploy: {other:?}"),
            }
        };
        let d = parse("flotilla deploy fraud@1.0.0 --escalate-to fraud@1.1.0 --confidence-output probabilities --threshold 0.8").unwrap();
        let e = escalation(&d).unwrap().unwrap();
        assert_eq!(
            (
                e.server_model.as_str(),
                e.server_version.as_deref(),
                e.threshold,
                e.timeout_ms
            ),
            ("fraud", Some("1.1.0"), 0.8, 500)
        );
        assert_eq!(
            escalation_text(&e),
            "below 0.8 on probabilities -> server fraud@1.1.0 (500 ms, else the device answers)"
        );
        let d = parse("flotilla deploy fraud@1.0.0 --escalate-to big --confidence-output p --threshold 0.5 --escalation-timeout 2s").unwrap();
        let e = escalation(&d).unwrap().unwrap();
        assert_eq!((e.server_version, e.timeout_ms), (None, 2000));
        assert!(escalation(&parse("flotilla deploy fraud@1.0.0").unwrap())
            .unwrap()
            .is_none());
        // Half a policy, a bad timeout or a bad target are refused before anything is sent.
        assert!(parse("flotilla deploy fraud@1.0.0 --escalate-to big --threshold 0.5").is_err());
        assert!(parse("flotilla deploy fraud@1.0.0 --threshold 0.5").is_err());
        assert!(parse("flotilla deploy fraud@1.0.0 --escalate-to b --confidence-output p --threshold 0.5 --escalation-timeout 5m").is_err());
        let d = parse(
            "flotilla deploy fraud@1.0.0 --escalate-to Big@x --confidence-output p --threshold 0.5",
        )
        .unwrap();
        assert!(escalation(&d).is_err());
        let d = parse(
            "flotilla deploy fraud@1.0.0 --escalate-to big --confidence-output p --threshold NaN",
        )
        .unwrap();
        assert!(escalation(&d).is_err());
    }

    #[test]
    fn the_table_names_the_empty_selector() {
        let text = deployments_table(&[deployment("", 3), deployment("site=plant-7", 1)]);
        assert_eq!(
            text,
            "\
ID    MODEL  VERSION  SELECTOR      DEVICES  UPDATED               BY
5e7a  fraud  1.0.0    every device  3        2026-11-26 10:00:00Z  ops
5e7a  fraud  1.0.0    site=plant-7  1        2026-11-26 10:00:00Z  ops
"
        );
    }

    #[test]
    fn long_selections_point_to_devices_ls() {
        let device = |i: usize| DeviceInfo {
            id: format!("d{i}"),
            name: format!("gw-{i}"),
            status: "active".into(),
            labels: Default::default(),
            hardware: json!({}),
            agent_version: String::new(),
            enrolled_at: String::new(),
            last_seen_at: None,
            desired_sequence: 0,
            applied_sequence: 0,
            desired: Default::default(),
            slots: json!([]),
            health: None,
            credential_rotation_requested: false,
        };
        let devices: Vec<DeviceInfo> = (0..LISTED_DEVICES + 2).map(device).collect();
        let text = selected_table(&devices, &deployment("site=a", 22));
        assert_eq!(text.lines().count(), 1 + LISTED_DEVICES + 1);
        assert!(text.ends_with("... and 2 more (flotilla devices ls --selector site=a)\n"));
        assert_eq!(selects_text(1), "selects 1 device:\n");
    }
}
