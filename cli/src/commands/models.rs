//! `flotilla models ls | show | yank`.

use flotilla_protocol::registry::{ModelInfo, ModelVersionInfo, YankRequest};
use serde_json::json;

use super::{emit, Context};
use crate::args::ModelsCommand;
use crate::client::pretty;
use crate::error::CliError;
use crate::output::{
    human_size, short_digest, short_time, short_time_or_dash, signer_names, tensor_lines, Table,
};
use crate::signing::{check_model_name, check_version};

/// Runs a `models` subcommand.
pub fn run(ctx: &Context, command: ModelsCommand) -> Result<(), CliError> {
    let client = ctx.client()?;
    match command {
        ModelsCommand::Ls => {
            let list = client.list_models()?;
            if ctx.json {
                emit(pretty(&list.json));
            } else if list.value.models.is_empty() {
                emit("no models");
            } else {
                emit(models_table(&list.value.models));
            }
        }
        ModelsCommand::Show { name } => {
            check_model_name(&name)?;
            let model = client.model(&name)?;
            let versions = client.versions(&name)?;
            if ctx.json {
                let versions_json = versions
                    .json
                    .get("versions")
                    .cloned()
                    .unwrap_or_else(|| json!([]));
                emit(pretty(
                    &json!({"model": model.json, "versions": versions_json}),
                ));
            } else {
                emit(show_model(&model.value, &versions.value.versions));
            }
        }
        ModelsCommand::Yank {
            name,
            version,
            reason,
        } => {
            check_model_name(&name)?;
            check_version(&version)?;
            let yanked = client.yank(&name, &version, &YankRequest { reason })?;
            if ctx.json {
                emit(pretty(&yanked.json));
            } else {
                emit(format!("yanked {name} {version}"));
            }
        }
    }
    Ok(())
}

fn models_table(models: &[ModelInfo]) -> String {
    let mut table = Table::new(["NAME", "LATEST", "VERSIONS", "CREATED", "DESCRIPTION"]);
    for m in models {
        table.row(vec![
            m.name.clone(),
            m.latest_version.clone().unwrap_or_else(|| "-".into()),
            m.version_count.to_string(),
            short_time(&m.created_at),
            m.description.clone(),
        ]);
    }
    table.render()
}

/// The model, a table of its versions, then each version's tensors.
fn show_model(model: &ModelInfo, versions: &[ModelVersionInfo]) -> String {
    let mut out = format!("{}\n", model.name);
    if !model.description.is_empty() {
        out.push_str(&format!("  description: {}\n", model.description));
    }
    if !model.labels.is_empty() {
        let labels: Vec<String> = model
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        out.push_str(&format!("  labels:      {}\n", labels.join(", ")));
    }
    if let Some(threshold) = model.signing_threshold {
        out.push_str(&format!("  threshold:   {threshold} signatures\n"));
    }
    out.push_str(&format!(
        "  latest:      {}\n  created:     {}\n",
        model.latest_version.as_deref().unwrap_or("-"),
        short_time(&model.created_at)
    ));
    if versions.is_empty() {
        out.push_str("\nno versions\n");
        return out;
    }
    let mut table = Table::new(["VERSION", "DIGEST", "SIZE", "SIGNERS", "CREATED", "YANKED"]);
    for v in versions {
        table.row(vec![
            v.version.clone(),
            short_digest(&v.artifact.sha256),
            human_size(v.artifact.size),
            signer_names(v),
            short_time(&v.created_at),
            yanked(v),
        ]);
    }
    out.push('\n');
    out.push_str(&table.render());
    for v in versions {
        out.push('\n');
        out.push_str(&v.version);
        out.push('\n');
        for line in tensor_lines(v, "  ") {
            out.push_str(&line);
            out.push('\n');
        }
    }
    out
}

fn yanked(v: &ModelVersionInfo) -> String {
    match (&v.yanked_at, v.yank_reason.as_deref()) {
        (Some(at), Some(reason)) if !reason.is_empty() => {
            format!("{} ({reason})", short_time(at))
        }
        (at, _) => short_time_or_dash(at.as_deref()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_protocol::registry::{ArtifactRef, SignerInfo, TensorInfo};

    fn version(v: &str, yanked_at: Option<&str>) -> ModelVersionInfo {
        ModelVersionInfo {
            model: "fraud".into(),
            version: v.into(),
            artifact: ArtifactRef {
                sha256: "acd677248c71ff3e867b154091bc80400be47d6b515d07002794b6c74b3af7e2".into(),
                size: 1101,
            },
            signers: vec![SignerInfo {
                key_id: "ab".repeat(32),
                name: "ml-team".into(),
            }],
            inputs: vec![TensorInfo {
                name: "features".into(),
                datatype: "FP32".into(),
                shape: vec![-1, 8],
            }],
            outputs: vec![TensorInfo {
                name: "probabilities".into(),
                datatype: "FP32".into(),
                shape: vec![-1, 2],
            }],
            signed_facts: None,
            published_by: "ci".into(),
            created_at: "2025-11-26T09:32:00.5Z".into(),
            yanked_at: yanked_at.map(str::to_owned),
            yank_reason: yanked_at.map(|_| "bad".to_owned()),
        }
    }

    #[test]
    fn show_lists_versions_with_digest_size_signers_and_tensors() {
        let model = ModelInfo {
            name: "fraud".into(),
            description: String::new(),
            labels: Default::default(),
            signing_threshold: None,
            created_at: "2025-11-26T09:30:00Z".into(),
            latest_version: Some("1.1.0".into()),
            version_count: 2,
        };
        let text = show_model(
            &model,
            &[
                version("1.1.0", None),
                version("1.0.0", Some("2025-11-27T10:00:00Z")),
            ],
        );
        let expected = "\
fraud
  latest:      1.1.0
  created:     2025-11-26 09:30:00Z

VERSION  DIGEST        SIZE      SIGNERS  CREATED               YANKED
1.1.0    acd677248c71  1.08 KiB  ml-team  2025-11-26 09:32:00Z  -
1.0.0    acd677248c71  1.08 KiB  ml-team  2025-11-26 09:32:00Z  2025-11-27 10:00:00Z (bad)

1.1.0
  inputs:    features FP32 [-1, 8]
  outputs:   probabilities FP32 [-1, 2]

1.0.0
  inputs:    features FP32 [-1, 8]
  outputs:   probabilities FP32 [-1, 2]
";
        assert_eq!(text, expected);
    }
}
