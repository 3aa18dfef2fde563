//! Parse-don't-validate names: once a value is a [`ModelName`], it is safe in paths, URLs and
//! logs. The wire rules (model names, versions, labels) live in `flotilla_protocol`; this maps
//! their refusals to `invalid_argument` and keeps the server-only ones (people's and keys' names).

use flotilla_protocol::devices::DeviceKeyError;
use flotilla_protocol::labels::LabelError;
use flotilla_protocol::names::NameError;
use flotilla_protocol::ErrorCode;

use super::DomainError;

/// A model name; the rule is the wire's, in `flotilla_protocol::names`, so the CLI and the agent
/// refuse exactly what the server refuses.
pub use flotilla_protocol::names::ModelName;

impl From<NameError> for DomainError {
    fn from(e: NameError) -> Self {
        DomainError::invalid(ErrorCode::InvalidArgument, e.to_string())
    }
}

impl From<LabelError> for DomainError {
    fn from(e: LabelError) -> Self {
        DomainError::invalid(ErrorCode::InvalidArgument, e.to_string())
    }
}

impl From<DeviceKeyError> for DomainError {
    fn from(e: DeviceKeyError) -> Self {
        DomainError::invalid(ErrorCode::InvalidArgument, e.to_string())
    }
}

/// A name for a person, system or key: 1–64 printable characters.
pub fn parse_label_name(what: &str, s: &str) -> Result<String, DomainError> {
    let s = s.trim();
    if s.is_empty() || s.chars().count() > 64 || s.chars().any(char::is_control) {
        return Err(DomainError::invalid(
            ErrorCode::InvalidArgument,
            format!("{what} must be 1 to 64 printable characters"),
        ));
    }
    Ok(s.to_owned())
}

/// A semantic version (`1.2.0`, `2.0.0-rc.1`), by the wire's rule.
pub fn parse_version(s: &str) -> Result<semver::Version, DomainError> {
    Ok(flotilla_protocol::names::parse_version(s)?)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn wire_refusals_are_invalid_argument_with_the_protocols_message() {
        let e: DomainError = ModelName::parse("a..b").unwrap_err().into();
        assert_eq!(e.code, ErrorCode::InvalidArgument);
        assert!(
            e.message.starts_with("`a..b` is not a valid model name"),
            "{e}"
        );
        let e = parse_version("1.2").unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidArgument);
        assert!(
            e.message.starts_with("`1.2` is not a semantic version"),
            "{e}"
        );
    }
}
