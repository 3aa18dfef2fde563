//! The pure checks of an update: signed facts against the slot, the downgrade floor, the
//! signed sample input, digests. No network and no state: the update cycle calls them.

use flotilla_protocol::agent::ModelSlot;
use flotilla_protocol::signing::{ModelFacts, SampleTensor};
use flotilla_runtime::{DataType, Tensor};
use sha2::{Digest, Sha256};
use std::io::Read;

use super::SlotFailure;
use crate::inference::parse_data;
use crate::sync::state_dir::{Installed, ReleaseFloor};

/// The floor a target's downgrade check compares with: none when the target is exactly the
/// version (same version, same bytes) this device ran just before its current one. That is how
/// a rollout's rollback or abort returns a device to where it was; a server can at most move a
/// device one step back to a version it already verified and ran. Any other target is compared
/// with the newest release the device ever installed (kept when a slot is removed, so removing
/// a deployment and re-adding it older is no way around the rule), and going below it needs a
/// publisher-signed rollback allowance.
pub(super) fn downgrade_reference<'a>(
    slot: &ModelSlot,
    floor: Option<&'a ReleaseFloor>,
    previous: Option<&Installed>,
) -> Option<&'a ReleaseFloor> {
    if previous.is_some_and(|p| p.version == slot.version && p.sha256 == slot.sha256) {
        None
    } else {
        floor
    }
}

/// Refuses what the signed facts forbid: a model or version other than the one the server
/// named, hardware this device does not have, and going below `floor` (the newest release
/// installed) when the publishers did not allow it.
pub(super) fn check_facts(
    model: &str,
    version: &str,
    facts: Option<&ModelFacts>,
    floor: Option<&ReleaseFloor>,
) -> Result<(), SlotFailure> {
    if let Some(f) = facts {
        if f.model != model || f.version != version {
            return Err(SlotFailure::new(
                "signed_facts_mismatch",
                format!(
                    "publishers signed {}@{}, the server says {model}@{version}",
                    f.model, f.version
                ),
            ));
        }
        if let Some(c) = &f.compatibility {
            if !c.hardware.is_empty() && !c.hardware.iter().any(|h| h == std::env::consts::ARCH) {
                return Err(SlotFailure::new(
                    "incompatible_hardware",
                    format!(
                        "signed for {:?}, this device is {}",
                        c.hardware,
                        std::env::consts::ARCH
                    ),
                ));
            }
        }
    }
    let Some(floor) = floor else {
        return Ok(());
    };
    let allowance = facts.and_then(|f| f.rollback_allowed_below);
    let allowed = |floor_release: u64| allowance.is_some_and(|below| floor_release < below);
    // Release counters when both sides have one, semantic versions otherwise.
    let downgrade = match (facts.and_then(|f| f.release), floor.release) {
        (Some(new), Some(old)) => new < old && !allowed(old),
        _ => {
            let newer = semver::Version::parse(version).ok();
            let older = semver::Version::parse(&floor.version).ok();
            matches!((newer, older), (Some(n), Some(o)) if n < o)
                && !floor.release.is_some_and(allowed)
        }
    };
    if downgrade {
        return Err(SlotFailure::new(
            "downgrade_refused",
            format!(
                "{version} is older than {} (release {}), the newest this device installed, and the publishers signed no rollback allowance",
                floor.version,
                floor.release.map_or("none".to_owned(), |r| r.to_string())
            ),
        ));
    }
    Ok(())
}

/// The signed sample input as runtime tensors.
pub(super) fn sample_tensors(sample: &[SampleTensor]) -> Result<Vec<Tensor>, String> {
    sample
        .iter()
        .map(|t| {
            let datatype = DataType::from_name(&t.datatype).ok_or_else(|| {
                format!(
                    "signed sample input `{}` has unknown datatype {}",
                    t.name, t.datatype
                )
            })?;
            let raw = serde_json::value::to_raw_value(&t.data).map_err(|e| e.to_string())?;
            let data = parse_data(datatype, &raw)
                .map_err(|e| format!("signed sample input `{}`: {e}", t.name))?;
            let shape = t
                .shape
                .iter()
                .map(|&d| usize::try_from(d).map_err(|e| e.to_string()))
                .collect::<Result<Vec<_>, _>>()?;
            if shape.iter().product::<usize>() != data.len() {
                return Err(format!(
                    "signed sample input `{}` has {} values for shape {:?}",
                    t.name,
                    data.len(),
                    t.shape
                ));
            }
            Ok(Tensor::new(t.name.clone(), shape, data))
        })
        .collect()
}

pub(super) fn is_sha256_hex(digest: &str) -> bool {
    digest.len() == 64
        && digest
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

pub(super) fn file_sha256(path: &std::path::Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(version: &str) -> ModelSlot {
        ModelSlot {
            model: "fraud".into(),
            version: version.into(),
            sha256: "a".repeat(64),
            size: 1,
            url: String::new(),
            bundles: vec![],
            escalation: None,
            shadow: None,
        }
    }

    fn installed(version: &str, release: Option<u64>) -> Installed {
        Installed {
            version: version.into(),
            sha256: "b".repeat(64),
            size: 1,
            release,
            sample_input: None,
            escalation: None,
        }
    }

    fn floor(version: &str, release: Option<u64>) -> ReleaseFloor {
        ReleaseFloor {
            version: version.into(),
            release,
            superseded: Vec::new(),
        }
    }

    fn facts(version: &str, release: Option<u64>, allow: Option<u64>) -> ModelFacts {
        ModelFacts {
            model: "fraud".into(),
            version: version.into(),
            release,
            size: None,
            compatibility: None,
            inputs: None,
            outputs: None,
            sample_input: None,
            rollback_allowed_below: allow,
        }
    }

    #[test]
    fn downgrades_need_a_signed_allowance() {
        let cur = floor("1.1.0", Some(5));
        let code = |s: &ModelSlot, f: Option<&ModelFacts>, c: Option<&ReleaseFloor>| {
            check_facts(&s.model, &s.version, f, c)
                .err()
                .map(|e| e.code)
        };
        assert_eq!(
            code(
                &slot("1.2.0"),
                Some(&facts("1.2.0", Some(6), None)),
                Some(&cur)
            ),
            None
        );
        assert_eq!(
            code(
                &slot("1.0.0"),
                Some(&facts("1.0.0", Some(4), None)),
                Some(&cur)
            ),
            Some("downgrade_refused")
        );
        assert_eq!(
            code(
                &slot("1.0.0"),
                Some(&facts("1.0.0", Some(4), Some(6))),
                Some(&cur)
            ),
            None
        );
        // Back to exactly the version it ran before (a rollout's rollback): allowed; to another
        // older one, or the same version with other bytes: refused.
        let before = Installed {
            sha256: "b".repeat(64),
            ..installed("1.0.0", Some(4))
        };
        let mut back = slot("1.0.0");
        back.sha256 = "b".repeat(64);
        let older = facts("1.0.0", Some(4), None);
        let checked = |s: &ModelSlot, previous: &Installed| {
            let reference = downgrade_reference(s, Some(&cur), Some(previous));
            check_facts(&s.model, &s.version, Some(&older), reference)
                .err()
                .map(|e| e.code)
        };
        assert_eq!(checked(&back, &before), None);
        assert_eq!(checked(&slot("1.0.0"), &before), Some("downgrade_refused"));
        let other = Installed {
            version: "0.9.0".into(),
            ..before.clone()
        };
        assert_eq!(checked(&back, &other), Some("downgrade_refused"));
        // No release counters: semantic versions decide.
        let cur = floor("1.1.0", None);
        assert_eq!(
            code(&slot("1.0.0"), None, Some(&cur)),
            Some("downgrade_refused")
        );
        assert_eq!(code(&slot("1.0.0"), None, None), None);
        // The floor keeps both maxima: a counter from one version, a semantic version from
        // another, and never goes down.
        let mut f = ReleaseFloor::default();
        f.raise("1.2.0", Some(3));
        f.raise("2.0.0", None);
        f.raise("1.0.0", Some(1));
        assert_eq!(f, floor("2.0.0", Some(3)));
        // Facts must name the slot's version.
        assert_eq!(
            code(&slot("1.2.0"), Some(&facts("1.3.0", None, None)), None),
            Some("signed_facts_mismatch")
        );
        let mut f = facts("1.2.0", None, None);
        f.compatibility = Some(flotilla_protocol::signing::Compatibility {
            hardware: vec!["riscv128".into()],
        });
        assert_eq!(
            code(&slot("1.2.0"), Some(&f), None),
            Some("incompatible_hardware")
        );
    }
}
