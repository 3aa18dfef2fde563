//! Parse-don't-validate names: once a value is a [`ModelName`], it is safe in paths, URLs and
//! logs.

use flotilla_protocol::ErrorCode;
use std::fmt;

use super::DomainError;

/// A model name: 1–64 of `a-z 0-9 - _ .`, starting with a letter or digit. `../x` is not one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ModelName(String);

impl ModelName {
    /// Parses a model name.
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.as_bytes()[0].is_ascii_alphanumeric()
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
            && !s.contains("..");
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(DomainError::invalid(
                ErrorCode::InvalidArgument,
                format!(
                    "`{s}` is not a valid model name: use 1 to 64 of a-z, 0-9, '-', '_' and '.', starting with a letter or digit"
                ),
            ))
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ModelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
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

/// A semantic version (`1.2.0`, `2.0.0-rc.1`).
pub fn parse_version(s: &str) -> Result<semver::Version, DomainError> {
    semver::Version::parse(s).map_err(|e| {
        DomainError::invalid(
            ErrorCode::InvalidArgument,
            format!("`{s}` is not a semantic version (like 1.2.0): {e}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_names() {
        for ok in ["fraud", "sensor-anomaly", "vision_cnn.v2", "7eleven"] {
            assert!(ModelName::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "../x",
            "a/b",
            "Fraud",
            "-x",
            ".x",
            "a..b",
            "x y",
            &"a".repeat(65),
        ] {
            assert!(ModelName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn versions() {
        assert!(parse_version("1.2.0").is_ok());
        assert!(parse_version("1.2").is_err());
        assert!(parse_version("../1").is_err());
        assert!(parse_version("1.0.0").ok() < parse_version("1.0.1").ok());
        assert!(parse_version("1.0.0-rc.1").ok() < parse_version("1.0.0").ok());
    }
}
