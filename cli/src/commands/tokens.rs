//! `flotilla tokens ...` and `flotilla whoami`.

use flotilla_protocol::tokens::{CreateTokenRequest, TokenInfo};

use super::{emit, Context};
use crate::args::TokensCommand;
use crate::client::pretty;
use crate::error::CliError;
use crate::output::{short_time, short_time_or_dash, Table};

/// Runs a `tokens` subcommand.
pub fn run(ctx: &Context, command: TokensCommand) -> Result<(), CliError> {
    let client = ctx.client()?;
    match command {
        TokensCommand::Create {
            name,
            role,
            expires_in,
        } => {
            let created = client.create_token(&CreateTokenRequest {
                name,
                role,
                expires_in_secs: expires_in.map(|d| d.as_secs()),
            })?;
            if ctx.json {
                emit(pretty(&created.json));
            } else {
                let t = &created.value;
                emit(format!(
                    "created token {} ({}, id {}), expires {}\n\
                     secret (shown only this once):\n{}",
                    t.info.name,
                    t.info.role,
                    t.info.id,
                    t.info
                        .expires_at
                        .as_deref()
                        .map(short_time)
                        .unwrap_or_else(|| "never".into()),
                    t.token
                ));
            }
        }
        TokensCommand::Ls => {
            let list = client.list_tokens()?;
            if ctx.json {
                emit(pretty(&list.json));
            } else {
                emit(tokens_table(&list.value.tokens));
            }
        }
        TokensCommand::Revoke { id } => {
            let revoked = client.revoke_token(&id)?;
            if ctx.json {
                emit(pretty(&revoked.json));
            } else {
                emit(format!(
                    "revoked token {} ({})",
                    revoked.value.id, revoked.value.name
                ));
            }
        }
    }
    Ok(())
}

fn tokens_table(tokens: &[TokenInfo]) -> String {
    let mut table = Table::new([
        "ID",
        "NAME",
        "ROLE",
        "PREFIX",
        "CREATED",
        "EXPIRES",
        "LAST USED",
        "REVOKED",
    ]);
    for t in tokens {
        table.row(vec![
            t.id.clone(),
            t.name.clone(),
            t.role.to_string(),
            t.prefix.clone(),
            short_time(&t.created_at),
            short_time_or_dash(t.expires_at.as_deref()),
            short_time_or_dash(t.last_used_at.as_deref()),
            short_time_or_dash(t.revoked_at.as_deref()),
        ]);
    }
    table.render()
}

/// `flotilla whoami`.
pub fn whoami(ctx: &Context) -> Result<(), CliError> {
    let client = ctx.client()?;
    let me = client.whoami()?;
    if ctx.json {
        emit(pretty(&me.json));
    } else {
        emit(format!(
            "{} ({}), token {} at {}",
            me.value.name,
            me.value.role,
            me.value.token_id,
            client.base()
        ));
    }
    Ok(())
}
