//! The route table and the OpenAPI document generated from it. Every route the server serves is
//! registered here through `utoipa_actix_web`, so it cannot be missing from the document.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_actix_web::scope;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::routes::{
    agent, artifacts, audit, dashboard, devices, health, inference, keys, models, rollouts, tokens,
};

/// Registers every documented route.
pub fn api_routes(cfg: &mut ServiceConfig) {
    cfg.service(dashboard::index)
        .service(dashboard::asset)
        .service(health::healthz)
        .service(health::readyz)
        .service(health::metrics)
        .service(inference::server_metadata)
        .service(inference::live)
        .service(inference::ready)
        .service(inference::model_metadata)
        .service(inference::version_metadata)
        .service(inference::model_ready)
        .service(inference::version_ready)
        .service(inference::infer)
        .service(inference::version_infer)
        .service(
            scope(flotilla_protocol::routes::API_V1)
                .service(tokens::create_token)
                .service(tokens::list_tokens)
                .service(tokens::revoke_token)
                .service(tokens::whoami)
                .service(audit::list_audit)
                .service(keys::register_key)
                .service(keys::list_keys)
                .service(keys::revoke_key)
                .service(keys::set_threshold)
                .service(keys::trust_root)
                .service(keys::trust_root_draft)
                .service(keys::publish_trust_root)
                .service(keys::list_trust_roots)
                .service(models::create_model)
                .service(models::list_models)
                .service(models::get_model)
                .service(models::publish_version)
                .service(models::list_versions)
                .service(models::get_version)
                .service(models::yank_version)
                .service(artifacts::upload)
                .service(artifacts::exists)
                .service(artifacts::download)
                .service(devices::create_enrollment_token)
                .service(devices::list_enrollment_tokens)
                .service(devices::revoke_enrollment_token)
                .service(devices::list_devices)
                .service(devices::get_device)
                .service(devices::device_health)
                .service(devices::cohort_health)
                .service(devices::set_labels)
                .service(devices::approve)
                .service(devices::revoke)
                .service(devices::rotate_credential)
                .service(devices::delete_device)
                .service(devices::deploy)
                .service(devices::list_deployments)
                .service(devices::delete_deployment)
                .service(devices::placement)
                .service(rollouts::create_rollout)
                .service(rollouts::list_rollouts)
                .service(rollouts::get_rollout)
                .service(rollouts::act)
                .service(rollouts::put_policy)
                .service(rollouts::list_policies)
                .service(rollouts::get_policy)
                .service(rollouts::delete_policy)
                .service(rollouts::create_webhook)
                .service(rollouts::list_webhooks)
                .service(rollouts::delete_webhook)
                .service(agent::enroll)
                .service(agent::desired_state)
                .service(keys::agent_trust_roots)
                .service(agent::report)
                .service(agent::rotate_credential),
        );
}

/// This document.
#[utoipa::path(
    get,
    path = "/api/openapi.json",
    tag = "health",
    responses((status = 200, description = "the OpenAPI document", content_type = "application/json"))
)]
#[allow(dead_code)]
fn openapi_json() {}

/// Document-level metadata; paths come from [`api_routes`].
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Flotilla API",
        description = "Fleet model management: registry, devices, rollouts, inference. Errors are `{\"error\": {\"code\", \"message\"}}`, except under `/v2` (the Open Inference Protocol): `{\"error\": \"message\", \"code\"}`.",
    ),
    paths(openapi_json),
    modifiers(&BearerAuth),
    tags(
        (name = "health", description = "Liveness, readiness, metrics"),
        (name = "dashboard", description = "The web dashboard's page and files"),
        (name = "tokens", description = "API tokens (admin)"),
        (name = "audit", description = "Audit log (admin)"),
        (name = "trust", description = "Publisher keys, signing threshold, trust root"),
        (name = "models", description = "Models and signed versions"),
        (name = "artifacts", description = "Content-addressed model files"),
        (name = "devices", description = "Enrollment tokens, devices and deployments"),
        (name = "rollouts", description = "Staged, health-gated rollouts, saved policies and webhooks"),
        (name = "agent", description = "The agents' API (device credentials)"),
        (name = "inference", description = "Open Inference Protocol (KServe v2) on the published models; errors are `{\"error\": \"message\", \"code\"}`"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API token: `Authorization: Bearer flt_...`"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "device",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A device credential from enrollment: `Authorization: Bearer fld_...`",
                    ))
                    .build(),
            ),
        );
    }
}
