//! The in-toto statement a model signature covers, and Flotilla's facts inside it.
//!
//! Layout (what the upstream `model_signing` 1.x tool writes, plus the optional `flotilla`
//! object, which upstream verifiers ignore):
//!
//! ```json
//! {
//!   "_type": "https://in-toto.io/Statement/v1",
//!   "subject": [{"name": "model.onnx", "digest": {"sha256": "<hex sha256 of the resource digests>"}}],
//!   "predicateType": "https://model_signing/signature/v1.0",
//!   "predicate": {
//!     "serialization": {"method": "files", "hash_type": "sha256", "allow_symlinks": false},
//!     "resources": [{"name": ".", "algorithm": "sha256", "digest": "<hex sha256 of the file>"}],
//!     "flotilla": {"model": "fraud", "version": "1.0.0", "release": 3}
//!   }
//! }
//! ```
//!
//! The subject digest is sha256 over the concatenated raw (32-byte) digests of the resources in
//! the order listed; signers list resources sorted by path. When the upstream tool signs a
//! single file, the one resource is named `"."` and the subject is the file's name.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::strict_json::{self, StrictJsonError};
use super::VerifyError;

/// The in-toto statement type.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";

/// The OpenSSF model-signing predicate type (v1.0).
pub const PREDICATE_TYPE: &str = "https://model_signing/signature/v1.0";

/// The resource name the upstream tool gives the file when it signs a single file.
pub const SINGLE_FILE_RESOURCE_NAME: &str = ".";

const SERIALIZATION_METHOD: &str = "files";
const HASH_ALGORITHM: &str = "sha256";

/// One signed file of a model and its sha256.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Resource {
    /// Path relative to the model root (`/`-separated), or [`SINGLE_FILE_RESOURCE_NAME`].
    pub name: String,
    /// sha256 of the file's bytes.
    pub sha256: [u8; 32],
}

impl Resource {
    /// The resource for a model that is one file, named as the upstream tool names it.
    pub fn single_file(sha256: [u8; 32]) -> Self {
        Resource {
            name: SINGLE_FILE_RESOURCE_NAME.to_owned(),
            sha256,
        }
    }
}

/// Flotilla's facts about a model version, signed inside the statement's predicate as
/// `predicate.flotilla`. Unknown fields are rejected, so a typo cannot silently drop a
/// constraint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelFacts {
    /// Model name, e.g. `fraud`.
    pub model: String,
    /// Version label, e.g. `1.0.0`.
    pub version: String,
    /// Monotonic release counter: agents refuse a lower release than the one installed unless
    /// [`rollback_allowed_below`](Self::rollback_allowed_below) allows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<u64>,
    /// Size in bytes of the model file; checked against the artifact when both are known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Where the model may run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compatibility: Option<Compatibility>,
    /// Declared input tensors (Open Inference Protocol metadata).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<Vec<TensorSpec>>,
    /// Declared output tensors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs: Option<Vec<TensorSpec>>,
    /// An input the agent runs as a smoke test before activating the model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_input: Option<Vec<SampleTensor>>,
    /// Publisher-signed rollback allowance: this version may replace an installed one whose
    /// release is below this value, even if that release is higher than this one's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_allowed_below: Option<u64>,
}

/// Where a model may run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Compatibility {
    /// CPU architectures as Rust names them (`x86_64`, `aarch64`); empty means any.
    #[serde(default)]
    pub hardware: Vec<String>,
}

/// A tensor the model takes or returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TensorSpec {
    /// Tensor name.
    pub name: String,
    /// Open Inference Protocol datatype (`FP32`, `INT64`, `BOOL`, ...).
    pub datatype: String,
    /// Dimensions; `-1` marks a dynamic one.
    pub shape: Vec<i64>,
}

/// A concrete input tensor, in Open Inference Protocol request form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SampleTensor {
    /// Tensor name.
    pub name: String,
    /// Open Inference Protocol datatype.
    pub datatype: String,
    /// Concrete dimensions.
    pub shape: Vec<u64>,
    /// Row-major values (numbers or booleans).
    pub data: Vec<Value>,
}

/// sha256 over the concatenated raw resource digests, in the order given.
pub fn combined_digest(resources: &[Resource]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for resource in resources {
        hasher.update(resource.sha256);
    }
    hasher.finalize().into()
}

/// Sorts resources as the upstream tool does: by path components (Python `PurePosixPath`
/// order), so `a/b` comes before `a.b` although `/` sorts after `.` as a byte.
pub(crate) fn sort_resources(resources: &mut [Resource]) {
    resources.sort_by(|a, b| a.name.split('/').cmp(b.name.split('/')));
}

// ---- writing ----

#[derive(Serialize)]
struct StatementOut<'a> {
    #[serde(rename = "_type")]
    statement_type: &'a str,
    subject: [SubjectOut<'a>; 1],
    #[serde(rename = "predicateType")]
    predicate_type: &'a str,
    predicate: PredicateOut<'a>,
}

#[derive(Serialize)]
struct SubjectOut<'a> {
    name: &'a str,
    digest: BTreeMap<&'a str, String>,
}

#[derive(Serialize)]
struct PredicateOut<'a> {
    serialization: SerializationOut<'a>,
    resources: Vec<ResourceOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    flotilla: Option<&'a ModelFacts>,
}

#[derive(Serialize)]
struct SerializationOut<'a> {
    method: &'a str,
    hash_type: &'a str,
    // The upstream verifier reads this key unconditionally.
    allow_symlinks: bool,
}

#[derive(Serialize)]
struct ResourceOut<'a> {
    name: &'a str,
    algorithm: &'a str,
    digest: String,
}

/// The statement JSON for `resources` (already sorted), compact.
pub(crate) fn statement_json(
    resources: &[Resource],
    subject_name: &str,
    facts: Option<&ModelFacts>,
) -> Result<Vec<u8>, serde_json::Error> {
    let statement = StatementOut {
        statement_type: STATEMENT_TYPE,
        subject: [SubjectOut {
            name: subject_name,
            digest: BTreeMap::from([(HASH_ALGORITHM, hex::encode(combined_digest(resources)))]),
        }],
        predicate_type: PREDICATE_TYPE,
        predicate: PredicateOut {
            serialization: SerializationOut {
                method: SERIALIZATION_METHOD,
                hash_type: HASH_ALGORITHM,
                allow_symlinks: false,
            },
            resources: resources
                .iter()
                .map(|r| ResourceOut {
                    name: &r.name,
                    algorithm: HASH_ALGORITHM,
                    digest: hex::encode(r.sha256),
                })
                .collect(),
            flotilla: facts,
        },
    };
    serde_json::to_vec(&statement)
}

// ---- reading (only ever called on signature-verified bytes) ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatementIn {
    #[serde(rename = "_type")]
    _statement_type: String,
    subject: Vec<SubjectIn>,
    #[serde(rename = "predicateType")]
    _predicate_type: String,
    predicate: PredicateIn,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SubjectIn {
    name: String,
    digest: BTreeMap<String, String>,
}

// Not `deny_unknown_fields`: the predicate spec says v1.0 verifiers ignore fields they do not
// know, which is also how our `flotilla` object gets past upstream verifiers.
#[derive(Deserialize)]
struct PredicateIn {
    // Checked for shape only: method and hash type were checked before, and `allow_symlinks`
    // and `ignore_paths` only matter to a verifier that walks a directory.
    #[serde(rename = "serialization")]
    _serialization: FilesSerializationIn,
    resources: Vec<ResourceIn>,
    #[serde(default)]
    flotilla: Option<ModelFacts>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FilesSerializationIn {
    #[serde(rename = "method")]
    _method: String,
    #[serde(rename = "hash_type")]
    _hash_type: String,
    #[serde(rename = "allow_symlinks")]
    _allow_symlinks: bool,
    #[serde(default, rename = "ignore_paths")]
    _ignore_paths: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResourceIn {
    name: String,
    algorithm: String,
    digest: String,
}

/// What a verified statement says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SignedStatement {
    /// Informative only (upstream: the file or directory name); not compared across bundles.
    pub subject_name: String,
    pub subject_digest: [u8; 32],
    pub resources: Vec<Resource>,
    pub facts: Option<ModelFacts>,
}

impl SignedStatement {
    /// Whether two statements sign the same thing (the subject name is informative only).
    pub fn same_content(&self, other: &SignedStatement) -> bool {
        self.subject_digest == other.subject_digest
            && self.resources == other.resources
            && self.facts == other.facts
    }
}

fn str_at<'v>(value: &'v Value, pointer: &str) -> Result<&'v str, VerifyError> {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .ok_or_else(|| VerifyError::Malformed(format!("statement lacks string `{pointer}`")))
}

fn digest_from_hex(text: &str, what: &str) -> Result<[u8; 32], VerifyError> {
    let mut digest = [0u8; 32];
    hex::decode_to_slice(text, &mut digest)
        .map_err(|_| VerifyError::Malformed(format!("{what} is not a hex sha256 digest")))?;
    Ok(digest)
}

/// Parses and checks statement bytes. Call only on bytes whose signature verified.
pub(crate) fn parse_statement(bytes: &[u8]) -> Result<SignedStatement, VerifyError> {
    let value = strict_json::parse(bytes).map_err(|e| match e {
        StrictJsonError::DuplicateKey(key) => VerifyError::DuplicateKey(key),
        StrictJsonError::Syntax(msg) => VerifyError::Malformed(format!("statement: {msg}")),
    })?;

    // Type checks first, so a statement of another kind gets a precise error rather than a
    // complaint about its shape.
    let statement_type = str_at(&value, "/_type")?;
    if statement_type != STATEMENT_TYPE {
        return Err(VerifyError::UnsupportedStatementType(
            statement_type.to_owned(),
        ));
    }
    let predicate_type = str_at(&value, "/predicateType")?;
    if predicate_type != PREDICATE_TYPE {
        return Err(VerifyError::UnsupportedPredicateType(
            predicate_type.to_owned(),
        ));
    }
    let method = str_at(&value, "/predicate/serialization/method")?;
    if method != SERIALIZATION_METHOD {
        return Err(VerifyError::UnsupportedSerializationMethod(
            method.to_owned(),
        ));
    }
    let hash_type = str_at(&value, "/predicate/serialization/hash_type")?;
    if hash_type != HASH_ALGORITHM {
        return Err(VerifyError::UnsupportedHashAlgorithm(hash_type.to_owned()));
    }

    let statement: StatementIn = serde_json::from_value(value)
        .map_err(|e| VerifyError::Malformed(format!("statement: {e}")))?;

    let [subject] = <[SubjectIn; 1]>::try_from(statement.subject).map_err(|subjects| {
        VerifyError::Malformed(format!(
            "statement has {} subjects, expected 1",
            subjects.len()
        ))
    })?;
    if let Some(other) = subject.digest.keys().find(|alg| *alg != HASH_ALGORITHM) {
        return Err(VerifyError::UnsupportedHashAlgorithm(other.clone()));
    }
    let subject_hex = subject
        .digest
        .get(HASH_ALGORITHM)
        .ok_or_else(|| VerifyError::Malformed("subject has no sha256 digest".to_owned()))?;
    let subject_digest = digest_from_hex(subject_hex, "subject digest")?;

    let mut names = BTreeSet::new();
    let mut resources = Vec::with_capacity(statement.predicate.resources.len());
    for resource in statement.predicate.resources {
        if resource.algorithm != HASH_ALGORITHM {
            return Err(VerifyError::UnsupportedHashAlgorithm(resource.algorithm));
        }
        if !names.insert(resource.name.clone()) {
            return Err(VerifyError::Malformed(format!(
                "resource `{}` listed twice",
                resource.name
            )));
        }
        let sha256 = digest_from_hex(&resource.digest, "resource digest")?;
        resources.push(Resource {
            name: resource.name,
            sha256,
        });
    }
    if resources.is_empty() {
        return Err(VerifyError::Malformed(
            "statement lists no resources".to_owned(),
        ));
    }
    if combined_digest(&resources) != subject_digest {
        return Err(VerifyError::SubjectDigestMismatch);
    }

    Ok(SignedStatement {
        subject_name: subject.name,
        subject_digest,
        resources,
        facts: statement.predicate.flotilla,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn resource(name: &str, byte: u8) -> Resource {
        Resource {
            name: name.to_owned(),
            sha256: [byte; 32],
        }
    }

    #[test]
    fn sorts_by_path_components_like_python_pathlib() {
        let mut resources = vec![resource("a.b", 1), resource("a/b", 2), resource("A", 3)];
        sort_resources(&mut resources);
        let names: Vec<_> = resources.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["A", "a/b", "a.b"]);
    }

    #[test]
    fn written_statement_parses_back() {
        let facts = ModelFacts {
            model: "fraud".into(),
            version: "1.0.0".into(),
            release: Some(3),
            size: None,
            compatibility: None,
            inputs: None,
            outputs: None,
            sample_input: None,
            rollback_allowed_below: None,
        };
        let resources = vec![resource("a", 1), resource("b", 2)];
        let json = statement_json(&resources, "m", Some(&facts)).unwrap();
        let parsed = parse_statement(&json).unwrap();
        assert_eq!(parsed.resources, resources);
        assert_eq!(parsed.subject_digest, combined_digest(&resources));
        assert_eq!(parsed.facts, Some(facts));
        assert_eq!(parsed.subject_name, "m");
    }

    #[test]
    fn combined_digest_is_sha256_of_concatenated_raw_digests() {
        let resources = vec![resource("a", 1), resource("b", 2)];
        let mut concatenated = vec![1u8; 32];
        concatenated.extend_from_slice(&[2u8; 32]);
        assert_eq!(
            combined_digest(&resources).to_vec(),
            Sha256::digest(&concatenated).to_vec()
        );
    }

    #[test]
    fn inconsistent_subject_digest_is_rejected() {
        let json = statement_json(&[resource("a", 1)], "m", None).unwrap();
        let text = String::from_utf8(json).unwrap();
        let tampered = text.replace(&hex::encode([1u8; 32]), &hex::encode([9u8; 32]));
        assert_eq!(
            parse_statement(tampered.as_bytes()),
            Err(VerifyError::SubjectDigestMismatch)
        );
    }

    #[test]
    fn unknown_facts_fields_and_other_serializations_are_rejected() {
        let json = statement_json(&[resource("a", 1)], "m", None).unwrap();
        let text = String::from_utf8(json).unwrap();
        let with_facts = text.replace(
            r#""resources""#,
            r#""flotilla":{"model":"m","version":"1","colour":"red"},"resources""#,
        );
        assert!(matches!(
            parse_statement(with_facts.as_bytes()),
            Err(VerifyError::Malformed(_))
        ));
        let shards = text.replace(r#""method":"files""#, r#""method":"shards""#);
        assert_eq!(
            parse_statement(shards.as_bytes()),
            Err(VerifyError::UnsupportedSerializationMethod("shards".into()))
        );
        let other_predicate = text.replace(PREDICATE_TYPE, "https://example.com/other");
        assert!(matches!(
            parse_statement(other_predicate.as_bytes()),
            Err(VerifyError::UnsupportedPredicateType(_))
        ));
        let other_type = text.replace(STATEMENT_TYPE, "https://in-toto.io/Statement/v0.1");
        assert!(matches!(
            parse_statement(other_type.as_bytes()),
            Err(VerifyError::UnsupportedStatementType(_))
        ));
        // Unknown predicate fields other than ours are ignored, as the predicate spec says.
        let extra = text.replace(r#""resources""#, r#""model_card":{"x":1},"resources""#);
        assert!(parse_statement(extra.as_bytes()).is_ok());
    }
}
