//! Where the served models come from: the one thing the agent and the server serve differently.

use std::future::Future;
use std::sync::Arc;
use std::time::SystemTime;

use flotilla_runtime::{Model, Tensor};

use super::error::OipError;
use super::oip::ResponseOutput;

/// One model version ready to serve.
///
/// Requests hold an `Arc<LoadedModel>` from the moment they resolve the model until they
/// answer, so a swap, an eviction or a removal never pulls a model out from under a running
/// request: the version is dropped when its last request finishes.
#[derive(Debug)]
pub struct LoadedModel {
    /// The model name clients address (`/v2/models/{name}`).
    pub name: String,
    /// The version string, as the server published it.
    pub version: String,
    /// The loaded, optimised model.
    pub model: Arc<Model>,
    /// When this version was loaded.
    pub loaded_at: SystemTime,
}

impl LoadedModel {
    /// `model` as version `version` of `name`, loaded now.
    pub fn new(name: impl Into<String>, version: impl Into<String>, model: Arc<Model>) -> Self {
        LoadedModel {
            name: name.into(),
            version: version.into(),
            model,
            loaded_at: SystemTime::now(),
        }
    }
}

/// The models an Open Inference Protocol endpoint serves.
///
/// The agent serves the one current version of each model its update loop installed; the
/// server serves every published, non-yanked version, loading them on demand. Errors are
/// answered as they are, so their messages are for the client (a 404 names what is served).
pub trait ModelSource: Send + Sync + 'static {
    /// The model version answering for `name`: `version` when one is given, otherwise the one
    /// this source serves by default.
    fn resolve(
        &self,
        name: &str,
        version: Option<&str>,
    ) -> impl Future<Output = Result<Arc<LoadedModel>, OipError>> + Send;

    /// The versions of `model`'s model that clients may ask for by number (the model
    /// metadata's `versions`). By default only `model`'s own.
    fn versions(
        &self,
        model: &LoadedModel,
    ) -> impl Future<Output = Result<Vec<String>, OipError>> + Send {
        let versions = vec![model.version.clone()];
        async move { Ok(versions) }
    }

    /// Hybrid inference: whether requests to `loaded` might be escalated, asked before the run
    /// so the inputs are kept only then. By default none is.
    fn may_escalate(&self, _loaded: &LoadedModel) -> bool {
        false
    }

    /// Hybrid inference: after the local run of a request [`ModelSource::may_escalate`]
    /// allowed, whether another answer replaces it. `request` is the client's request in JSON
    /// form, whatever encoding the client used. By default the local answer stands.
    fn escalate(
        &self,
        _loaded: &LoadedModel,
        _request: &EscalationRequest<'_>,
        _outputs: &[Tensor],
    ) -> impl Future<Output = Escalation> + Send {
        async { Escalation::Local }
    }

    /// Shadow runs: whether this request, about to run on `loaded`, should also run on a
    /// candidate version. Asked before the run so the inputs are copied only for sampled
    /// requests. By default none is.
    fn sample_shadow(&self, _loaded: &LoadedModel) -> bool {
        false
    }

    /// Shadow runs: `loaded` answered a sampled request with finite `outputs`; hand `inputs`
    /// to the candidate. The client's answer waits for this call, so it must return at once and
    /// run the candidate elsewhere. The candidate's answer is never returned. By default
    /// nothing happens.
    fn run_shadow(&self, _loaded: &LoadedModel, _inputs: Vec<Tensor>, _outputs: &[Tensor]) {}

    /// Whether the endpoint as a whole is ready (`/v2/health/ready`); `Err` (usually
    /// [`OipError::NotReady`]) says why not.
    fn ready(&self) -> impl Future<Output = Result<(), OipError>> + Send;

    /// Extra facts for a ready answer (`/v2/health/ready`), such as a stale desired state.
    fn ready_details(&self) -> Option<serde_json::Value> {
        None
    }
}

/// A client's request as another endpoint is asked it (hybrid inference): its inputs and the
/// outputs it gets, re-encoded as the protocol's plain JSON whether the client sent JSON or
/// binary tensors, so the other endpoint's answer is JSON too.
#[derive(Debug, Clone, Copy)]
pub struct EscalationRequest<'a> {
    /// The client's request `id`.
    pub id: Option<&'a str>,
    /// The inputs, as decoded.
    pub inputs: &'a [Tensor],
    /// The outputs the client gets, in its order.
    pub outputs: &'a [&'a str],
}

impl EscalationRequest<'_> {
    /// The Open Inference Protocol request body: `id`, `inputs` with JSON `data` (NaN as
    /// `null`), every output named and asked as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        let mut body = serde_json::json!({
            "inputs": self.inputs.iter().map(ResponseOutput::of).collect::<Vec<_>>(),
            "outputs": self.outputs.iter().map(|name| serde_json::json!({ "name": name })).collect::<Vec<_>>(),
        });
        if let (Some(id), Some(object)) = (self.id, body.as_object_mut()) {
            object.insert("id".to_owned(), id.into());
        }
        body
    }
}

/// What [`ModelSource::escalate`] decided.
#[derive(Debug)]
pub enum Escalation {
    /// The local answer stands.
    Local,
    /// Another endpoint answered: this complete Open Inference Protocol response body is
    /// returned instead, with `parameters.flotilla_served_by` set to `served_by`.
    Answered {
        /// The response body.
        body: serde_json::Value,
        /// Who answered, e.g. `server`.
        served_by: &'static str,
    },
    /// The local answer stands because the escalation failed; it is marked with `served_by`
    /// (e.g. `edge_fallback`).
    Fallback {
        /// The mark.
        served_by: &'static str,
    },
}
