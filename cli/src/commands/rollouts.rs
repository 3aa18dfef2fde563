//! `flotilla rollout ...` and `flotilla webhooks ...`.

use std::path::Path;
use std::time::Duration;

use flotilla_protocol::rollouts::{
    CreateRolloutRequest, CreateWebhookRequest, Gates, OnFailure, RolloutInfo, RolloutPolicy,
    RolloutState, Stage,
};

use super::{emit, Context};
use crate::args::{
    OnFailureArg, PoliciesCommand, RolloutCommand, RolloutCreateArgs, WebhooksCommand,
};
use crate::client::pretty;
use crate::error::CliError;
use crate::files;
use crate::output::{short_time, Table};

/// Runs a `flotilla rollout` command.
pub fn run(ctx: &Context, cmd: RolloutCommand) -> Result<(), CliError> {
    let client = ctx.client()?;
    let (action, args) = match cmd {
        RolloutCommand::Create(args) => return create(ctx, &args),
        RolloutCommand::Ls { model, state } => {
            let list = client.list_rollouts(model.as_deref(), state.as_deref())?;
            if ctx.json {
                emit(pretty(&list.json));
            } else {
                emit(render_list(&list.value.rollouts));
            }
            return Ok(());
        }
        RolloutCommand::Show { id, watch } => return show(ctx, &id, watch),
        RolloutCommand::Policies(cmd) => return policies(ctx, cmd),
        RolloutCommand::Pause(a) => ("pause", a),
        RolloutCommand::Resume(a) => ("resume", a),
        RolloutCommand::Approve(a) => ("approve", a),
        RolloutCommand::Abort(a) => ("abort", a),
        RolloutCommand::Promote(a) => ("promote", a),
    };
    let done = client.rollout_action(&args.id, action, args.reason.as_deref())?;
    if ctx.json {
        emit(pretty(&done.json));
    } else {
        emit(format!("{}\n\n{}", done.value.reason, render(&done.value)));
    }
    Ok(())
}

/// One stage's share: a percentage or a device count (as the API's `Stage` has them).
type Share = (Option<f64>, Option<u64>);

/// Parses `10%,50%,100%` (percent) or `5,50,500` (device counts).
pub fn parse_stages(text: &str) -> Result<Vec<Share>, CliError> {
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let stage = if let Some(pc) = part.strip_suffix('%') {
            let v: f64 = pc
                .trim()
                .parse()
                .map_err(|_| CliError::usage(format!("stage `{part}` is not a percentage")))?;
            (Some(v), None)
        } else {
            let n: u64 = part.parse().map_err(|_| {
                CliError::usage(format!(
                    "stage `{part}`: give a percentage (10%) or a number of devices (5)"
                ))
            })?;
            (None, Some(n))
        };
        out.push(stage);
    }
    if out.is_empty() {
        return Err(CliError::usage("--stages needs at least one stage"));
    }
    Ok(out)
}

/// The policy the flags describe.
pub fn policy_from_flags(args: &RolloutCreateArgs) -> Result<RolloutPolicy, CliError> {
    let gates = Gates {
        min_devices_reporting: args.min_devices,
        max_failed_ratio: Some(args.max_failed_ratio),
        max_error_rate: args.max_error_rate,
        max_p95_latency_ratio: args.max_p95_ratio,
        min_shadow_agreement: None,
    };
    let mut stages: Vec<Stage> = parse_stages(&args.stages)?
        .into_iter()
        .map(|(percent, devices)| Stage {
            percent,
            devices,
            bake_secs: args.bake,
            gates: gates.clone(),
            manual_approval: args.approve_each,
            shadow: false,
        })
        .collect();
    if args.shadow {
        let mut shadow = stages[0].clone();
        shadow.shadow = true;
        shadow.manual_approval = false;
        shadow.gates = Gates {
            min_shadow_agreement: Some(args.min_agreement),
            max_failed_ratio: Some(args.max_failed_ratio),
            min_devices_reporting: args.min_devices,
            ..Gates::default()
        };
        stages.insert(0, shadow);
    }
    Ok(RolloutPolicy {
        stages,
        on_failure: match args.on_failure {
            OnFailureArg::Rollback => OnFailure::Rollback,
            OnFailureArg::Pause => OnFailure::Pause,
        },
        activation_deadline_secs: args.deadline,
        shadow_sample_rate: args.sample_rate,
        shadow_tolerance: 1e-3,
    })
}

fn policy_file(path: &Path) -> Result<RolloutPolicy, CliError> {
    let text = files::read_text(path)?;
    let is_toml = path.extension().is_some_and(|e| e == "toml");
    let parsed = if is_toml {
        toml::from_str(&text).map_err(|e| e.to_string())
    } else {
        serde_json::from_str(&text).map_err(|e| e.to_string())
    };
    parsed.map_err(|e| CliError::usage(format!("{} is not a rollout policy: {e}", path.display())))
}

fn create(ctx: &Context, args: &RolloutCreateArgs) -> Result<(), CliError> {
    let client = ctx.client()?;
    let (policy, policy_name) = match (&args.policy, &args.policy_file) {
        (Some(name), _) => (None, Some(name.clone())),
        (None, Some(file)) => (Some(policy_file(file)?), None),
        (None, None) => (Some(policy_from_flags(args)?), None),
    };
    let (policy, policy_name) = match (&args.save_as, policy) {
        (Some(name), Some(p)) => {
            client.save_policy(name, &p)?;
            ctx.note(format!("saved the policy as `{name}`"));
            (None, Some(name.clone()))
        }
        (_, p) => (p, policy_name),
    };
    let created = client.create_rollout(&CreateRolloutRequest {
        model: args.target.model.clone(),
        version: args.target.version.clone(),
        selector: args.selector.clone().unwrap_or_default().to_string(),
        policy,
        policy_name,
    })?;
    if ctx.json {
        emit(pretty(&created.json));
        return Ok(());
    }
    emit(format!(
        "created rollout {}\nwatch it with: flotilla rollout show {} --watch\n\n{}",
        created.value.id,
        created.value.id,
        render(&created.value)
    ));
    Ok(())
}

fn show(ctx: &Context, id: &str, watch: bool) -> Result<(), CliError> {
    let client = ctx.client()?;
    loop {
        let r = client.rollout(id)?;
        if ctx.json {
            emit(pretty(&r.json));
        } else if watch {
            // Clear the screen and redraw, like `watch`.
            emit(format!("\x1b[2J\x1b[H{}", render(&r.value)));
        } else {
            emit(render(&r.value));
        }
        if !watch || !r.value.state.is_open() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

fn share(s: &Stage) -> String {
    match (s.percent, s.devices) {
        (Some(p), _) => format!("{p}%"),
        (None, Some(n)) => format!("{n} dev"),
        _ => "-".into(),
    }
}

fn duration(secs: u64) -> String {
    humantime::format_duration(Duration::from_secs(secs)).to_string()
}

fn gate_value(gate: &str, v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(v) if gate == "min_devices_reporting" => format!("{v:.0}"),
        Some(v) if gate == "max_p95_latency_ratio" => format!("{v:.2}x"),
        Some(v) => format!("{:.1}%", v * 100.0),
    }
}

fn threshold(gate: &str, t: f64) -> String {
    let op = if gate.starts_with("min_") {
        "≥"
    } else {
        "≤"
    };
    format!("{op} {}", gate_value(gate, Some(t)))
}

fn state_word(s: RolloutState) -> &'static str {
    match s {
        RolloutState::Running => "RUNNING",
        RolloutState::WaitingApproval => "WAITING FOR APPROVAL",
        RolloutState::Paused => "PAUSED",
        RolloutState::Completed => "COMPLETED",
        RolloutState::RolledBack => "ROLLED BACK",
        RolloutState::Aborted => "ABORTED",
    }
}

/// `flotilla rollout show`: the state at a glance.
pub fn render(r: &RolloutInfo) -> String {
    let stages = r.policy.stages.len();
    let mut out = format!(
        "rollout {}  {}@{} on {}{}\n",
        r.id,
        r.model,
        r.version,
        if r.selector.is_empty() {
            "every device"
        } else {
            &r.selector
        },
        r.policy_name
            .as_ref()
            .map(|n| format!("  (policy {n})"))
            .unwrap_or_default()
    );
    let current = r.policy.stages.get(r.stage as usize);
    out.push_str(&format!(
        "state   {}  stage {}/{stages}{}  since {}\n",
        state_word(r.state),
        r.stage + 1,
        current
            .map(|s| format!(
                " ({}{}, bake {})",
                share(s),
                if s.shadow { ", shadow" } else { "" },
                duration(s.bake_secs)
            ))
            .unwrap_or_default(),
        short_time(&r.stage_started_at)
    ));
    out.push_str(&format!("reason  {}\n", r.reason));
    let d = &r.devices;
    if r.state.is_open() {
        out.push_str(&format!(
            "devices {} matching, {} in this stage: {} active, {} pending, {} failed; {} reporting\n",
            d.matching, d.in_stage, d.active, d.pending, d.failed, d.reporting
        ));
    }
    if !r.previous_versions.is_empty() {
        let prev: Vec<String> = r
            .previous_versions
            .iter()
            .map(|(v, n)| format!("{v} on {n}"))
            .collect();
        out.push_str(&format!("others  {}\n", prev.join(", ")));
    }
    if r.state.is_open() {
        out.push('\n');
        if r.gates.is_empty() {
            out.push_str(
                "no gates on this stage: it advances once baked and every device is active\n",
            );
        } else {
            let mut t = Table::new(["GATE", "VALUE", "THRESHOLD", "STATUS"]);
            for g in &r.gates {
                t.row(vec![
                    g.gate.clone(),
                    gate_value(&g.gate, g.value),
                    threshold(&g.gate, g.threshold),
                    g.status.to_uppercase(),
                ]);
            }
            out.push_str(&t.render());
        }
    }
    out.push('\n');
    let mut t = Table::new(["STAGE", "SHARE", "BAKE", "APPROVAL", ""]);
    for (i, s) in r.policy.stages.iter().enumerate() {
        let mark = match (i.cmp(&(r.stage as usize)), r.state) {
            (_, RolloutState::Completed) => "done",
            (std::cmp::Ordering::Less, _) => "passed",
            (std::cmp::Ordering::Equal, s) if s.is_open() => "<- current",
            _ => "",
        };
        t.row(vec![
            format!("{}{}", i + 1, if s.shadow { " shadow" } else { "" }),
            share(s),
            duration(s.bake_secs),
            if s.manual_approval { "yes" } else { "" }.into(),
            mark.into(),
        ]);
    }
    out.push_str(&t.render());
    if !r.history.is_empty() {
        out.push('\n');
        let mut t = Table::new(["TIME", "BY", "EVENT", "STAGE", "REASON"]);
        for h in &r.history {
            t.row(vec![
                short_time(&h.at),
                h.actor.clone(),
                h.event.clone(),
                (h.stage + 1).to_string(),
                h.reason.clone(),
            ]);
        }
        out.push_str(&t.render());
    }
    out
}

fn render_list(rollouts: &[RolloutInfo]) -> String {
    if rollouts.is_empty() {
        return "no rollouts yet: start one with `flotilla rollout create MODEL@VERSION`\n".into();
    }
    let mut t = Table::new([
        "ID", "MODEL", "VERSION", "SELECTOR", "STATE", "STAGE", "UPDATED",
    ]);
    for r in rollouts {
        t.row(vec![
            r.id.clone(),
            r.model.clone(),
            r.version.clone(),
            if r.selector.is_empty() {
                "*".into()
            } else {
                r.selector.clone()
            },
            r.state.as_str().into(),
            format!("{}/{}", r.stage + 1, r.policy.stages.len()),
            short_time(&r.updated_at),
        ]);
    }
    t.render()
}

fn policies(ctx: &Context, cmd: PoliciesCommand) -> Result<(), CliError> {
    let client = ctx.client()?;
    match cmd {
        PoliciesCommand::Ls => {
            let list = client.list_policies()?;
            if ctx.json {
                emit(pretty(&list.json));
                return Ok(());
            }
            let items = list.value["policies"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if items.is_empty() {
                emit("no saved policies: save one with `flotilla rollout policies save NAME FILE` or `rollout create --save-as NAME`");
                return Ok(());
            }
            let mut t = Table::new(["NAME", "STAGES", "ON FAILURE", "UPDATED BY", "UPDATED"]);
            for p in items {
                let stages: Vec<String> = p["policy"]["stages"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|s| serde_json::from_value::<Stage>(s.clone()).ok())
                            .map(|s| share(&s))
                            .collect()
                    })
                    .unwrap_or_default();
                t.row(vec![
                    p["name"].as_str().unwrap_or("").into(),
                    stages.join(" → "),
                    p["policy"]["on_failure"].as_str().unwrap_or("").into(),
                    p["updated_by"].as_str().unwrap_or("").into(),
                    short_time(p["updated_at"].as_str().unwrap_or("")),
                ]);
            }
            emit(t.render());
        }
        PoliciesCommand::Show { name } => emit(pretty(&client.policy(&name)?.json)),
        PoliciesCommand::Save { name, file } => {
            let saved = client.save_policy(&name, &policy_file(&file)?)?;
            if ctx.json {
                emit(pretty(&saved.json));
            } else {
                emit(format!(
                    "saved policy `{}` ({} stages)",
                    saved.value.name,
                    saved.value.policy.stages.len()
                ));
            }
        }
        PoliciesCommand::Rm { name } => {
            client.delete_policy(&name)?;
            ctx.note(format!("deleted policy `{name}`"));
        }
    }
    Ok(())
}

/// Runs a `flotilla webhooks` command.
pub fn webhooks(ctx: &Context, cmd: WebhooksCommand) -> Result<(), CliError> {
    let client = ctx.client()?;
    match cmd {
        WebhooksCommand::Add { url, secret } => {
            let w = client.create_webhook(&CreateWebhookRequest { url, secret })?;
            if ctx.json {
                emit(pretty(&w.json));
            } else {
                emit(format!(
                    "webhook {} registered for {}\nsecret (shown once): {}\nverify each POST's X-Flotilla-Signature: sha256=<hex HMAC-SHA256(secret, body)>",
                    w.value.id,
                    w.value.url,
                    w.value.secret.unwrap_or_default()
                ));
            }
        }
        WebhooksCommand::Ls => {
            let list = client.list_webhooks()?;
            if ctx.json {
                emit(pretty(&list.json));
                return Ok(());
            }
            let mut t = Table::new(["ID", "URL", "CREATED BY", "CREATED"]);
            for w in list.value["webhooks"]
                .as_array()
                .cloned()
                .unwrap_or_default()
            {
                let s = |k: &str| w[k].as_str().unwrap_or("").to_owned();
                t.row(vec![
                    s("id"),
                    s("url"),
                    s("created_by"),
                    short_time(&s("created_at")),
                ]);
            }
            emit(t.render());
        }
        WebhooksCommand::Rm { id } => {
            client.delete_webhook(&id)?;
            ctx.note(format!("deleted webhook {id}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn stages_parse_as_percentages_or_counts() {
        assert_eq!(
            parse_stages("10%, 50%,100%").unwrap(),
            [(Some(10.0), None), (Some(50.0), None), (Some(100.0), None)]
        );
        assert_eq!(
            parse_stages("5,50").unwrap(),
            [(None, Some(5)), (None, Some(50))]
        );
        assert_eq!(parse_stages("ten%").unwrap_err().exit_code(), 2);
        assert_eq!(parse_stages("").unwrap_err().exit_code(), 2);
    }

    #[test]
    fn show_reads_at_a_glance() {
        let r: RolloutInfo = serde_json::from_value(json!({
            "id": "r-1", "model": "fraud", "version": "1.1.0", "selector": "site=a",
            "policy": {"stages": [{"percent": 10, "bake_secs": 600}, {"percent": 100, "bake_secs": 600}],
                       "on_failure": "rollback", "activation_deadline_secs": 600,
                       "shadow_sample_rate": 1.0, "shadow_tolerance": 0.001},
            "policy_name": null, "state": "running", "stage": 1,
            "stage_started_at": "2026-11-26T12:00:00Z", "created_by": "ops",
            "created_at": "2026-11-26T11:00:00Z", "updated_at": "2026-11-26T12:00:00Z",
            "reason": "stage 1 passed its gates; stage 2 of 2 opened",
            "devices": {"matching": 20, "in_stage": 20, "active": 12, "pending": 7, "failed": 1, "reporting": 12},
            "gates": [{"gate": "max_error_rate", "value": 0.002, "threshold": 0.01, "status": "pass"},
                      {"gate": "max_p95_latency_ratio", "value": 1.31, "threshold": 1.2, "status": "fail"}],
            "history": [{"at": "2026-11-26T11:00:00Z", "actor": "ops", "event": "created",
                         "from_state": null, "to_state": "running", "stage": 0, "reason": "created", "numbers": {}}],
            "previous_versions": {"1.0.0": 8}
        }))
        .unwrap();
        let text = render(&r);
        assert!(
            text.contains("state   RUNNING  stage 2/2 (100%, bake 10m)"),
            "{text}"
        );
        assert!(
            text.contains(
                "20 matching, 20 in this stage: 12 active, 7 pending, 1 failed; 12 reporting"
            ),
            "{text}"
        );
        let gate = text
            .lines()
            .find(|l| l.starts_with("max_p95_latency_ratio"))
            .unwrap();
        assert_eq!(
            gate.split_whitespace().collect::<Vec<_>>(),
            ["max_p95_latency_ratio", "1.31x", "≤", "1.20x", "FAIL"]
        );
        let gate = text
            .lines()
            .find(|l| l.starts_with("max_error_rate"))
            .unwrap();
        assert_eq!(
            gate.split_whitespace().collect::<Vec<_>>(),
            ["max_error_rate", "0.2%", "≤", "1.0%", "PASS"]
        );
        assert!(
            text.lines()
                .any(|l| l.starts_with('2') && l.ends_with("<- current")),
            "{text}"
        );
        assert!(
            text.lines()
                .any(|l| l.starts_with('1') && l.ends_with("passed")),
            "{text}"
        );
        assert!(text.contains("others  1.0.0 on 8"), "{text}");
    }
}
