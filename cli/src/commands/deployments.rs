//! `flotilla deploy MODEL@VERSION` and `flotilla deployments ls | rm`.

use flotilla_protocol::devices::{DeployRequest, DeploymentInfo, DeviceInfo};
use reqwest::StatusCode;
use serde_json::json;

use super::{emit, Context};
use crate::args::{DeployArgs, DeploymentsCommand};
use crate::client::{pretty, Client};
use crate::error::CliError;
use crate::output::{short_time, Table};

/// At most this many selected devices are listed after a deploy; `devices ls` shows them all.
const LISTED_DEVICES: usize = 20;

/// `flotilla deploy MODEL@VERSION [--selector ...]`.
pub fn deploy(ctx: &Context, args: DeployArgs) -> Result<(), CliError> {
    let client = ctx.client()?;
    let selector = args.selector.unwrap_or_default().to_string();
    let deployed = client.deploy(&DeployRequest {
        model: args.target.model,
        version: args.target.version,
        selector,
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

#[cfg(test)]
mod tests {
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
        }
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
        };
        let devices: Vec<DeviceInfo> = (0..LISTED_DEVICES + 2).map(device).collect();
        let text = selected_table(&devices, &deployment("site=a", 22));
        assert_eq!(text.lines().count(), 1 + LISTED_DEVICES + 1);
        assert!(text.ends_with("... and 2 more (flotilla devices ls --selector site=a)\n"));
        assert_eq!(selects_text(1), "selects 1 device:\n");
    }
}
