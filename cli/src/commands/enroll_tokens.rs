//! `flotilla enroll-tokens create | ls | revoke`: the one-time secrets devices enroll with.

use flotilla_protocol::devices::{
    CreateEnrollmentTokenRequest, CreatedEnrollmentToken, EnrollmentTokenInfo,
};

use super::{emit, Context};
use crate::args::EnrollTokensCommand;
use crate::client::pretty;
use crate::error::CliError;
use crate::labels::{join, label_map};
use crate::output::{short_time, short_time_or_dash, Table};

/// Runs an `enroll-tokens` subcommand.
pub fn run(ctx: &Context, command: EnrollTokensCommand) -> Result<(), CliError> {
    match command {
        EnrollTokensCommand::Create {
            name,
            labels,
            allow_labels,
            expires_in,
            max_uses,
            require_approval,
        } => {
            let labels = label_map(&labels).map_err(CliError::usage)?;
            let created = ctx
                .client()?
                .create_enrollment_token(&CreateEnrollmentTokenRequest {
                    name,
                    labels,
                    expires_in_secs: expires_in.as_secs(),
                    max_uses,
                    require_approval,
                    allowed_device_labels: allow_labels,
                })?;
            if ctx.json {
                emit(pretty(&created.json));
            } else {
                emit(created_text(&created.value));
            }
        }
        EnrollTokensCommand::Ls => {
            let list = ctx.client()?.list_enrollment_tokens()?;
            if ctx.json {
                emit(pretty(&list.json));
            } else if list.value.tokens.is_empty() {
                emit("no enrollment tokens");
            } else {
                emit(tokens_table(&list.value.tokens));
            }
        }
        EnrollTokensCommand::Revoke { id } => {
            let revoked = ctx.client()?.revoke_enrollment_token(&id)?;
            if ctx.json {
                emit(pretty(&revoked.json));
            } else {
                emit(format!(
                    "revoked enrollment token {} ({})",
                    revoked.value.id, revoked.value.name
                ));
            }
        }
    }
    Ok(())
}

/// What the token does, then the secret on a line of its own and how to hand it to an agent.
fn created_text(created: &CreatedEnrollmentToken) -> String {
    let t = &created.info;
    let uses = if t.max_uses == 1 {
        "1 device".to_owned()
    } else {
        format!("{} devices", t.max_uses)
    };
    let approval = if t.require_approval {
        ", which wait for approval (flotilla devices approve ID)"
    } else {
        ""
    };
    format!(
        "created enrollment token {} (id {})\n  \
         enrolls:  {uses}{approval}\n  \
         labels:   {}\n  \
         devices may set: {}\n  \
         expires:  {}\n\
         \n\
         secret (shown only this once):\n\
         \n    {}\n\
         \n\
         give it to the agent on its first start, with --enroll-token or FLOTILLA_ENROLL_TOKEN:\n    \
         flotilla-agent --server URL --trust-root trust-root.json --enroll-token {}\n",
        t.name,
        t.id,
        join(&t.labels),
        allowed_text(&t.allowed_device_labels),
        short_time(&t.expires_at),
        created.token,
        created.token,
    )
}

/// The label keys devices may set, or `none` (the default: only the token's labels).
fn allowed_text(keys: &[String]) -> String {
    if keys.is_empty() {
        "no labels of their own".to_owned()
    } else {
        keys.join(", ")
    }
}

fn tokens_table(tokens: &[EnrollmentTokenInfo]) -> String {
    let mut table = Table::new([
        "ID",
        "NAME",
        "PREFIX",
        "LABELS",
        "DEVICE MAY SET",
        "USES",
        "APPROVAL",
        "EXPIRES",
        "REVOKED",
    ]);
    for t in tokens {
        table.row(vec![
            t.id.clone(),
            t.name.clone(),
            t.prefix.clone(),
            join(&t.labels),
            if t.allowed_device_labels.is_empty() {
                "-".to_owned()
            } else {
                t.allowed_device_labels.join(",")
            },
            format!("{}/{}", t.uses, t.max_uses),
            if t.require_approval { "yes" } else { "no" }.to_owned(),
            short_time(&t.expires_at),
            short_time_or_dash(t.revoked_at.as_deref()),
        ]);
    }
    table.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(require_approval: bool, max_uses: u32) -> EnrollmentTokenInfo {
        EnrollmentTokenInfo {
            id: "7d0c".into(),
            name: "plant-7 gateways".into(),
            prefix: "fle_AbCd".into(),
            labels: [("site".to_owned(), "plant-7".to_owned())].into(),
            allowed_device_labels: vec!["rack".into()],
            require_approval,
            max_uses,
            uses: 1,
            created_by: "ops".into(),
            created_at: "2026-11-26T10:00:00Z".into(),
            expires_at: "2026-11-27T10:00:00.25Z".into(),
            revoked_at: None,
        }
    }

    #[test]
    fn the_secret_stands_alone_with_the_agent_command() {
        let text = created_text(&CreatedEnrollmentToken {
            info: token(true, 20),
            token: "fle_secret".into(),
        });
        assert_eq!(
            text,
            "\
created enrollment token plant-7 gateways (id 7d0c)
  enrolls:  20 devices, which wait for approval (flotilla devices approve ID)
  labels:   site=plant-7
  devices may set: rack
  expires:  2026-11-27 10:00:00Z

secret (shown only this once):

    fle_secret

give it to the agent on its first start, with --enroll-token or FLOTILLA_ENROLL_TOKEN:
    flotilla-agent --server URL --trust-root trust-root.json --enroll-token fle_secret
"
        );
    }

    #[test]
    fn the_table_shows_uses_and_approval() {
        let text = tokens_table(&[token(false, 1)]);
        let row = text.lines().nth(1).unwrap_or_default();
        for cell in [
            "7d0c",
            "fle_AbCd",
            "site=plant-7",
            "rack",
            "1/1",
            "no",
            "2026-11-27 10:00:00Z",
        ] {
            assert!(row.contains(cell), "{cell} in {row}");
        }
    }
}
