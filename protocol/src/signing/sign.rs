//! Producing model signatures.

use std::collections::BTreeSet;

use super::bundle::{pae, Bundle, IN_TOTO_PAYLOAD_TYPE};
use super::statement::{sort_resources, statement_json, ModelFacts, Resource};
use super::SigningKey;

/// Why a model could not be signed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// No resources were given.
    #[error("a model signature needs at least one resource")]
    NoResources,
    /// Two resources share a name.
    #[error("resource `{0}` is listed twice")]
    DuplicateResource(String),
    /// The statement could not be serialized (not expected to happen).
    #[error("could not serialize the statement: {0}")]
    Serialize(#[from] serde_json::Error),
}

/// Signs a model: builds the in-toto statement over `resources` (sorted by path, as the
/// upstream tool does) with `facts` in `predicate.flotilla`, and wraps it in a DSSE envelope
/// signed by `key` inside a Sigstore bundle.
///
/// For a single-file model pass `&[Resource::single_file(digest)]` and the file's name as
/// `model_name_for_subject`: that is exactly what `model_signing sign key model.onnx` writes.
pub fn sign_model(
    key: &SigningKey,
    resources: &[Resource],
    model_name_for_subject: &str,
    facts: Option<&ModelFacts>,
) -> Result<Bundle, SignError> {
    let payload = statement_payload(resources, model_name_for_subject, facts)?;
    let signature = key.sign(&pae(IN_TOTO_PAYLOAD_TYPE, &payload));
    let public = key.public_key();
    Ok(Bundle::new(
        IN_TOTO_PAYLOAD_TYPE,
        &payload,
        vec![(signature.to_vec(), public.key_id())],
        Some(public.upstream_hint()),
    ))
}

/// The statement bytes `sign_model` signs.
pub(crate) fn statement_payload(
    resources: &[Resource],
    subject_name: &str,
    facts: Option<&ModelFacts>,
) -> Result<Vec<u8>, SignError> {
    if resources.is_empty() {
        return Err(SignError::NoResources);
    }
    let mut names = BTreeSet::new();
    if let Some(dup) = resources.iter().find(|r| !names.insert(r.name.as_str())) {
        return Err(SignError::DuplicateResource(dup.name.clone()));
    }
    let mut sorted = resources.to_vec();
    sort_resources(&mut sorted);
    Ok(statement_json(&sorted, subject_name, facts)?)
}
