//! End-to-end tests of signing and verification, against vectors from the real upstream tool
//! (`protocol/testdata/signing/`, made by `scripts/make_signing_vectors.sh`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use rand::rngs::StdRng;
use rand::SeedableRng;
use sha2::{Digest, Sha256};

use super::sign::statement_payload;
use super::*;

fn testdata(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/signing")
        .join(path)
}

fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(testdata(path)).unwrap_or_else(|e| panic!("reading fixture {path}: {e}"))
}

fn fixture_key(path: &str) -> PublicKey {
    PublicKey::from_pem(&String::from_utf8(fixture(path)).unwrap()).unwrap()
}

fn model() -> Vec<u8> {
    fixture("model.onnx")
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn artifact(bytes: &[u8]) -> ArtifactDigest {
    ArtifactDigest {
        sha256: sha256(bytes),
        size: Some(bytes.len() as u64),
    }
}

/// The golden vector key: seed fixed forever (changing it changes `flotilla/ed25519.*`).
fn golden_key() -> SigningKey {
    SigningKey::generate(&mut StdRng::seed_from_u64(0x0f10_7111a))
}

fn key(seed: u64) -> SigningKey {
    SigningKey::generate(&mut StdRng::seed_from_u64(seed))
}

fn facts() -> ModelFacts {
    ModelFacts {
        model: "fraud".into(),
        version: "1.0.0".into(),
        release: Some(7),
        size: Some(1024),
        compatibility: Some(Compatibility {
            hardware: vec!["x86_64".into(), "aarch64".into()],
        }),
        inputs: Some(vec![TensorSpec {
            name: "features".into(),
            datatype: "FP32".into(),
            shape: vec![-1, 4],
        }]),
        outputs: Some(vec![TensorSpec {
            name: "score".into(),
            datatype: "FP32".into(),
            shape: vec![-1, 1],
        }]),
        sample_input: Some(vec![SampleTensor {
            name: "features".into(),
            datatype: "FP32".into(),
            shape: vec![1, 4],
            data: vec![0.5.into(), 1.into(), (-2).into(), 0.25.into()],
        }]),
        rollback_allowed_below: Some(5),
    }
}

fn sign_single(key: &SigningKey, model: &[u8], facts: Option<&ModelFacts>) -> Vec<u8> {
    sign_model(
        key,
        &[Resource::single_file(sha256(model))],
        "model.onnx",
        facts,
    )
    .unwrap()
    .to_json()
}

/// A bundle around arbitrary payload bytes, correctly signed by `key`: for statements our
/// signer would never write, so only the check under test can reject them.
fn sign_raw(key: &SigningKey, payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let sig = key.sign(&pae(payload_type, payload));
    Bundle::new(
        payload_type,
        payload,
        vec![(sig.to_vec(), key.public_key().key_id())],
        None,
    )
    .to_json()
}

fn our_statement(model: &[u8]) -> String {
    String::from_utf8(
        statement_payload(&[Resource::single_file(sha256(model))], "model.onnx", None).unwrap(),
    )
    .unwrap()
}

fn policy(keys: &[&PublicKey], threshold: usize) -> TrustPolicy {
    TrustPolicy::new(
        keys.iter()
            .map(|k| TrustedKey {
                key: (*k).clone(),
                name: None,
            })
            .collect(),
        threshold,
    )
    .unwrap()
}

fn payload_of(bundle: &[u8]) -> String {
    String::from_utf8(Bundle::from_json(bundle).unwrap().payload_bytes().unwrap()).unwrap()
}

fn with_payload(bundle: &[u8], payload: &str) -> Vec<u8> {
    let mut parsed = Bundle::from_json(bundle).unwrap();
    parsed.dsse_envelope.payload = STANDARD.encode(payload);
    parsed.to_json()
}

#[test]
fn ed25519_sign_then_verify_round_trip() {
    let key = key(1);
    let model = model();
    let bundle = sign_single(&key, &model, Some(&facts()));
    let verified = verify(
        &[&bundle],
        &TrustPolicy::single(key.public_key()),
        &artifact(&model),
    )
    .unwrap();
    assert_eq!(verified.facts, Some(facts()));
    assert_eq!(verified.signers, vec![key.public_key().key_id()]);
    assert_eq!(
        verified.resources,
        vec![Resource::single_file(sha256(&model))]
    );
    assert_eq!(verified.subject_digest, sha256(&sha256(&model)));
}

#[test]
fn our_bundle_has_the_upstream_single_file_layout() {
    let key = golden_key();
    let bundle = sign_single(&key, &model(), None);
    let parsed = Bundle::from_json(&bundle).unwrap();
    assert_eq!(parsed.media_type, BUNDLE_MEDIA_TYPE);
    assert_eq!(parsed.dsse_envelope.payload_type, IN_TOTO_PAYLOAD_TYPE);
    assert_eq!(
        parsed.verification_material.public_key.unwrap().hint,
        Some(key.public_key().upstream_hint())
    );
    assert_eq!(
        parsed.dsse_envelope.signatures[0].keyid,
        key.public_key().key_id()
    );
    // Our statement for one file reads exactly like the upstream tool's (no facts).
    let ours: serde_json::Value = serde_json::from_str(&payload_of(&bundle)).unwrap();
    let mut theirs: serde_json::Value =
        serde_json::from_str(&payload_of(&fixture("upstream/p256.sig"))).unwrap();
    let serialization = &mut theirs["predicate"]["serialization"];
    serialization
        .as_object_mut()
        .unwrap()
        .remove("ignore_paths");
    assert_eq!(ours, theirs);
}

#[test]
fn verifies_the_upstream_tools_p256_and_p384_bundles() {
    let model = model();
    for name in ["p256", "p384"] {
        let key = fixture_key(&format!("upstream/{name}.pub.pem"));
        let bundle = fixture(&format!("upstream/{name}.sig"));
        let verified = verify(
            &[&bundle],
            &TrustPolicy::single(key.clone()),
            &artifact(&model),
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(verified.facts, None, "{name}");
        assert_eq!(verified.signers, vec![key.key_id()], "{name}");
        assert_eq!(
            verified.resources,
            vec![Resource::single_file(sha256(&model))]
        );
        // The hint the tool wrote is what we compute for its key.
        let hint = Bundle::from_json(&bundle)
            .unwrap()
            .verification_material
            .public_key
            .unwrap()
            .hint;
        assert_eq!(hint, Some(key.upstream_hint()), "{name}");
    }
}

#[test]
fn upstream_and_flotilla_signatures_over_the_same_model_count_together() {
    let model = model();
    let upstream_key = fixture_key("upstream/p256.pub.pem");
    let ours = key(2);
    let trust = policy(&[&upstream_key, &ours.public_key()], 2);
    let upstream = fixture("upstream/p256.sig");
    let flotilla = sign_single(&ours, &model, None);
    let verified = verify(&[&upstream, &flotilla], &trust, &artifact(&model)).unwrap();
    assert_eq!(verified.signers.len(), 2);
}

#[test]
fn one_changed_model_byte_is_a_digest_mismatch() {
    let mut model = model();
    let ed = key(3);
    let ours = sign_single(&ed, &model, None);
    let upstream = fixture("upstream/p256.sig");
    model[100] ^= 1;
    let tampered = ArtifactDigest {
        sha256: sha256(&model),
        size: None,
    };
    assert_eq!(
        verify(&[&ours], &TrustPolicy::single(ed.public_key()), &tampered),
        Err(VerifyError::DigestMismatch)
    );
    let p256 = TrustPolicy::single(fixture_key("upstream/p256.pub.pem"));
    assert_eq!(
        verify(&[&upstream], &p256, &tampered),
        Err(VerifyError::DigestMismatch)
    );
}

#[test]
fn signed_size_must_match_the_artifact() {
    let model = model();
    let key = key(4);
    let bundle = sign_single(&key, &model, Some(&facts()));
    let trust = TrustPolicy::single(key.public_key());
    let wrong_size = ArtifactDigest {
        sha256: sha256(&model),
        size: Some(1023),
    };
    assert_eq!(
        verify(&[&bundle], &trust, &wrong_size),
        Err(VerifyError::SizeMismatch {
            signed: 1024,
            actual: 1023
        })
    );
}

#[test]
fn untrusted_key_is_no_trusted_signature() {
    let model = model();
    let signer = key(5);
    let bundle = sign_single(&signer, &model, None);
    assert_eq!(
        verify(
            &[&bundle],
            &TrustPolicy::single(key(6).public_key()),
            &artifact(&model)
        ),
        Err(VerifyError::NoTrustedSignature)
    );
    // The upstream P-256 bundle against the (different) P-384 key.
    let p384 = TrustPolicy::single(fixture_key("upstream/p384.pub.pem"));
    assert_eq!(
        verify(&[&fixture("upstream/p256.sig")], &p384, &artifact(&model)),
        Err(VerifyError::NoTrustedSignature)
    );
}

#[test]
fn unverified_payloads_are_never_parsed() {
    // Garbage under an untrusted signature: reported as untrusted, not as malformed, because
    // the statement parser never sees it.
    let bundle = sign_raw(&key(7), IN_TOTO_PAYLOAD_TYPE, b"{\"a\":1,\"a\":2} not json");
    assert_eq!(
        verify(
            &[&bundle],
            &TrustPolicy::single(key(8).public_key()),
            &artifact(&model())
        ),
        Err(VerifyError::NoTrustedSignature)
    );
}

#[test]
fn threshold_two_with_one_signer_is_not_met() {
    let model = model();
    let (a, b) = (key(9), key(10));
    let trust = policy(&[&a.public_key(), &b.public_key()], 2);
    let bundle = sign_single(&a, &model, None);
    assert_eq!(
        verify(&[&bundle], &trust, &artifact(&model)),
        Err(VerifyError::ThresholdNotMet { have: 1, need: 2 })
    );
    let second = sign_single(&b, &model, None);
    let verified = verify(&[&bundle, &second], &trust, &artifact(&model)).unwrap();
    let mut expected = vec![a.public_key().key_id(), b.public_key().key_id()];
    expected.sort();
    assert_eq!(verified.signers, expected);
}

#[test]
fn the_same_key_signing_twice_counts_once() {
    let model = model();
    let (a, b) = (key(11), key(12));
    let trust = policy(&[&a.public_key(), &b.public_key()], 2);
    let once = sign_single(&a, &model, None);
    // Two bundles from the same key.
    assert_eq!(
        verify(&[&once, &once], &trust, &artifact(&model)),
        Err(VerifyError::ThresholdNotMet { have: 1, need: 2 })
    );
    // Two signatures from the same key in one envelope.
    let payload = our_statement(&model);
    let sig = a
        .sign(&pae(IN_TOTO_PAYLOAD_TYPE, payload.as_bytes()))
        .to_vec();
    let id = a.public_key().key_id();
    let doubled = Bundle::new(
        IN_TOTO_PAYLOAD_TYPE,
        payload.as_bytes(),
        vec![(sig.clone(), id.clone()), (sig, id)],
        None,
    )
    .to_json();
    assert_eq!(
        verify(&[&doubled], &trust, &artifact(&model)),
        Err(VerifyError::ThresholdNotMet { have: 1, need: 2 })
    );
    // Two different keys in one envelope do meet it.
    let sig_b = b
        .sign(&pae(IN_TOTO_PAYLOAD_TYPE, payload.as_bytes()))
        .to_vec();
    let sig_a = a
        .sign(&pae(IN_TOTO_PAYLOAD_TYPE, payload.as_bytes()))
        .to_vec();
    let both = Bundle::new(
        IN_TOTO_PAYLOAD_TYPE,
        payload.as_bytes(),
        vec![(sig_a, String::new()), (sig_b, String::new())],
        None,
    )
    .to_json();
    assert_eq!(
        verify(&[&both], &trust, &artifact(&model)).map(|v| v.signers.len()),
        Ok(2)
    );
}

#[test]
fn bundles_signing_different_statements_are_rejected() {
    let model = model();
    let (a, b) = (key(13), key(14));
    let trust = policy(&[&a.public_key(), &b.public_key()], 2);
    let mut other_facts = facts();
    other_facts.release = Some(8);
    let first = sign_single(&a, &model, Some(&facts()));
    let second = sign_single(&b, &model, Some(&other_facts));
    assert_eq!(
        verify(&[&first, &second], &trust, &artifact(&model)),
        Err(VerifyError::StatementMismatch)
    );
}

#[test]
fn a_tampered_payload_is_a_bad_signature() {
    let model = model();
    let evil_model = b"not the signed model".to_vec();
    let evil_digest = hex::encode(sha256(&evil_model));
    let evil_subject = hex::encode(sha256(&sha256(&evil_model)));

    // Our bundle: swap in another model's digests, keeping the statement self-consistent, so
    // only the signature check can catch it.
    let key = key(15);
    let ours = sign_single(&key, &model, None);
    let payload = payload_of(&ours)
        .replace(&hex::encode(sha256(&model)), &evil_digest)
        .replace(&hex::encode(sha256(&sha256(&model))), &evil_subject);
    assert_eq!(
        verify(
            &[&with_payload(&ours, &payload)],
            &TrustPolicy::single(key.public_key()),
            &artifact(&evil_model)
        ),
        Err(VerifyError::BadSignature)
    );

    // The upstream tool's bundle, same attack.
    let upstream = fixture("upstream/p256.sig");
    let payload = payload_of(&upstream)
        .replace(&hex::encode(sha256(&model)), &evil_digest)
        .replace(&hex::encode(sha256(&sha256(&model))), &evil_subject);
    assert_eq!(
        verify(
            &[&with_payload(&upstream, &payload)],
            &TrustPolicy::single(fixture_key("upstream/p256.pub.pem")),
            &artifact(&evil_model)
        ),
        Err(VerifyError::BadSignature)
    );
}

#[test]
fn duplicate_json_keys_are_rejected() {
    let model = model();
    let key = key(16);
    let trust = TrustPolicy::single(key.public_key());

    // In the bundle: a second mediaType (serde_json alone would keep the last one).
    let bundle = String::from_utf8(sign_single(&key, &model, None)).unwrap();
    let doubled = bundle.replacen(
        r#""mediaType":"#,
        r#""mediaType":"application/x-evil","mediaType":"#,
        1,
    );
    assert_eq!(
        verify(&[doubled.as_bytes()], &trust, &artifact(&model)),
        Err(VerifyError::DuplicateKey("mediaType".into()))
    );

    // In the signed statement: two digests for the one resource, the genuine one last.
    let statement = our_statement(&model);
    let genuine = format!(r#""digest":"{}""#, hex::encode(sha256(&model)));
    let other = format!(r#""digest":"{}","#, hex::encode([0u8; 32]));
    let with_two = statement.replacen(&genuine, &format!("{other}{genuine}"), 1);
    assert_ne!(with_two, statement);
    let bundle = sign_raw(&key, IN_TOTO_PAYLOAD_TYPE, with_two.as_bytes());
    assert_eq!(
        verify(&[&bundle], &trust, &artifact(&model)),
        Err(VerifyError::DuplicateKey("digest".into()))
    );
}

#[test]
fn wrong_media_type_is_rejected() {
    let model = model();
    let key = key(17);
    let bundle = String::from_utf8(sign_single(&key, &model, None)).unwrap();
    let v02 = bundle.replace(
        BUNDLE_MEDIA_TYPE,
        "application/vnd.dev.sigstore.bundle+json;version=0.2",
    );
    assert!(matches!(
        verify(
            &[v02.as_bytes()],
            &TrustPolicy::single(key.public_key()),
            &artifact(&model)
        ),
        Err(VerifyError::UnsupportedMediaType(_))
    ));
}

#[test]
fn wrong_payload_type_is_rejected_even_when_signed() {
    let model = model();
    let key = key(18);
    let bundle = sign_raw(&key, "application/json", our_statement(&model).as_bytes());
    assert_eq!(
        verify(
            &[&bundle],
            &TrustPolicy::single(key.public_key()),
            &artifact(&model)
        ),
        Err(VerifyError::UnsupportedPayloadType(
            "application/json".into()
        ))
    );
}

#[test]
fn unknown_hash_algorithms_are_rejected_even_when_signed() {
    let model = model();
    let key = key(19);
    let trust = TrustPolicy::single(key.public_key());
    let statement = our_statement(&model);
    for (from, to, algorithm) in [
        (
            r#""algorithm":"sha256""#,
            r#""algorithm":"sha512""#,
            "sha512",
        ),
        (
            r#""hash_type":"sha256""#,
            r#""hash_type":"blake2""#,
            "blake2",
        ),
    ] {
        let changed = statement.replace(from, to);
        assert_ne!(changed, statement);
        let bundle = sign_raw(&key, IN_TOTO_PAYLOAD_TYPE, changed.as_bytes());
        assert_eq!(
            verify(&[&bundle], &trust, &artifact(&model)),
            Err(VerifyError::UnsupportedHashAlgorithm(algorithm.into()))
        );
    }
}

#[test]
fn multi_file_statements_are_rejected_clearly() {
    let model = model();
    let trust = TrustPolicy::single(fixture_key("upstream/p256.pub.pem"));
    assert_eq!(
        verify(
            &[&fixture("upstream/two-files.sig")],
            &trust,
            &artifact(&model)
        ),
        Err(VerifyError::UnsupportedResourceCount(2))
    );
}

#[test]
fn no_bundles_and_bad_policies_are_errors() {
    let key = key(20).public_key();
    assert_eq!(
        verify(&[], &TrustPolicy::single(key.clone()), &artifact(&model())),
        Err(VerifyError::NoBundles)
    );
    let trusted = |key: &PublicKey| TrustedKey {
        key: key.clone(),
        name: Some("ci".into()),
    };
    assert_eq!(
        TrustPolicy::new(vec![trusted(&key)], 0),
        Err(TrustPolicyError::ZeroThreshold)
    );
    assert!(matches!(
        TrustPolicy::new(vec![trusted(&key)], 2),
        Err(TrustPolicyError::ThresholdExceedsKeys { .. })
    ));
    assert!(matches!(
        TrustPolicy::new(vec![trusted(&key), trusted(&key)], 1),
        Err(TrustPolicyError::DuplicateKey(_))
    ));
}

#[test]
fn error_codes_are_distinct_snake_case() {
    let errors = [
        VerifyError::NoBundles,
        VerifyError::Malformed(String::new()),
        VerifyError::DuplicateKey(String::new()),
        VerifyError::UnsupportedMediaType(String::new()),
        VerifyError::UnsupportedPayloadType(String::new()),
        VerifyError::UnsupportedStatementType(String::new()),
        VerifyError::UnsupportedPredicateType(String::new()),
        VerifyError::UnsupportedSerializationMethod(String::new()),
        VerifyError::UnsupportedHashAlgorithm(String::new()),
        VerifyError::UnsupportedResourceCount(2),
        VerifyError::NoTrustedSignature,
        VerifyError::BadSignature,
        VerifyError::ThresholdNotMet { have: 0, need: 1 },
        VerifyError::StatementMismatch,
        VerifyError::SubjectDigestMismatch,
        VerifyError::DigestMismatch,
        VerifyError::SizeMismatch {
            signed: 0,
            actual: 1,
        },
    ];
    let codes: std::collections::BTreeSet<_> = errors.iter().map(VerifyError::code).collect();
    assert_eq!(codes.len(), errors.len());
    for code in codes {
        assert!(
            code.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
            "{code}"
        );
    }
}

/// Fixed vectors made by our own code. With `FLOTILLA_REGENERATE_SIGNING_VECTORS` set (see
/// `scripts/make_signing_vectors.sh`) it writes them instead of comparing; with
/// `FLOTILLA_SIGNING_VECTORS_P256_KEY` also set it signs our statement with that P-256 key, for
/// the script to check with the upstream verifier.
#[test]
fn golden_vectors() {
    let model = model();
    let key = golden_key();
    let bundle = sign_single(&key, &model, Some(&facts()));
    let public_pem = key.public_key().to_pem();

    if std::env::var_os("FLOTILLA_REGENERATE_SIGNING_VECTORS").is_some() {
        std::fs::write(testdata("flotilla/ed25519.sig"), &bundle).unwrap();
        std::fs::write(testdata("flotilla/ed25519.pub.pem"), &public_pem).unwrap();
        if let Some(path) = std::env::var_os("FLOTILLA_SIGNING_VECTORS_P256_KEY") {
            use p256::ecdsa::signature::Signer as _;
            use p256::pkcs8::DecodePrivateKey as _;
            let pem = std::fs::read_to_string(path).unwrap();
            let p256_key = p256::ecdsa::SigningKey::from_pkcs8_pem(&pem).unwrap();
            let public = PublicKey::EcdsaP256(*p256_key.verifying_key());
            let payload = statement_payload(
                &[Resource::single_file(sha256(&model))],
                "model.onnx",
                Some(&facts()),
            )
            .unwrap();
            let sig: p256::ecdsa::DerSignature =
                p256_key.sign(&pae(IN_TOTO_PAYLOAD_TYPE, &payload));
            let p256_bundle = Bundle::new(
                IN_TOTO_PAYLOAD_TYPE,
                &payload,
                vec![(sig.to_bytes().to_vec(), String::new())],
                Some(public.upstream_hint()),
            );
            std::fs::write(
                testdata("flotilla/p256-with-facts.sig"),
                p256_bundle.to_json(),
            )
            .unwrap();
        }
    }

    assert_eq!(
        String::from_utf8(fixture("flotilla/ed25519.sig")).unwrap(),
        String::from_utf8(bundle).unwrap(),
        "our signer's output changed; if on purpose, rerun scripts/make_signing_vectors.sh"
    );
    assert_eq!(
        String::from_utf8(fixture("flotilla/ed25519.pub.pem")).unwrap(),
        public_pem
    );
    let committed = fixture("flotilla/ed25519.sig");
    let verified = verify(
        &[&committed],
        &TrustPolicy::single(fixture_key("flotilla/ed25519.pub.pem")),
        &artifact(&model),
    )
    .unwrap();
    assert_eq!(verified.facts, Some(facts()));

    // Our statement layout signed with the upstream P-256 key (the upstream verifier accepts it
    // too: see the script) verifies here with its facts.
    let p256 = fixture("flotilla/p256-with-facts.sig");
    let verified = verify(
        &[&p256],
        &TrustPolicy::single(fixture_key("upstream/p256.pub.pem")),
        &artifact(&model),
    )
    .unwrap();
    assert_eq!(verified.facts, Some(facts()));
}
