//! Model names and versions as the wire takes them, written once for the server, the agent and
//! the CLI (so `flotilla` refuses locally exactly what the server would refuse, with the same
//! message).
//!
//! Parse, don't validate: once a value is a [`ModelName`] it is safe in file names, URLs and
//! logs.

use std::fmt;

/// Longest model name, in bytes (names are ASCII).
pub const MAX_MODEL_NAME_LEN: usize = 64;
/// Longest version text, in bytes. semver itself has no bound; a version is shown in tables,
/// logs and signed facts, so it gets one.
pub const MAX_VERSION_LEN: usize = 128;

/// Why a model name or version was refused. The message is the one the server answers with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Not 1–64 of `a-z 0-9 - _ .` starting with a letter or digit, or it holds `..`.
    #[error(
        "`{}` is not a valid model name: use 1 to 64 of a-z, 0-9, '-', '_' and '.', starting with a letter or digit, without '..'",
        shown(.0)
    )]
    ModelName(String),
    /// Not a semantic version, or longer than [`MAX_VERSION_LEN`].
    #[error("`{}` is not a semantic version (like 1.2.0): {reason}", shown(text))]
    Version {
        /// What was given.
        text: String,
        /// What semver (or the length bound) said.
        reason: String,
    },
}

/// Shows user input in a message: control characters escaped (one line whatever was sent) and
/// at most 80 characters, so a megabyte of junk does not come back in the error.
pub(crate) fn shown(text: &str) -> String {
    const MAX: usize = 80;
    let mut out: String = text
        .chars()
        .take(MAX)
        .flat_map(char::escape_debug)
        .collect();
    if text.chars().nth(MAX).is_some() {
        out.push('…');
    }
    out
}

/// A model name: 1–64 of `a-z 0-9 - _ .`, starting with a letter or digit, with no `..`.
/// `../x`, `.x`, `a..b`, `Fraud` and `fraud/v2` are not model names.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ModelName(String);

impl ModelName {
    /// Parses a model name.
    pub fn parse(text: &str) -> Result<Self, NameError> {
        let ok = !text.is_empty()
            && text.len() <= MAX_MODEL_NAME_LEN
            && text.as_bytes()[0].is_ascii_alphanumeric()
            && text
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
            && !text.contains("..");
        if ok {
            Ok(Self(text.to_owned()))
        } else {
            Err(NameError::ModelName(text.to_owned()))
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name, owned.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for ModelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for ModelName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Whether `text` is a valid [`ModelName`].
pub fn is_model_name(text: &str) -> bool {
    ModelName::parse(text).is_ok()
}

/// Parses a semantic version as the server stores it (`1.2.0`, `2.0.0-rc.1`, `1.0.0+build.7`):
/// exactly semver 2.0, no `v` prefix, no spaces, no leading zeros, at most
/// [`MAX_VERSION_LEN`] bytes.
pub fn parse_version(text: &str) -> Result<semver::Version, NameError> {
    if text.len() > MAX_VERSION_LEN {
        return Err(NameError::Version {
            text: text.to_owned(),
            reason: format!("longer than {MAX_VERSION_LEN} bytes"),
        });
    }
    semver::Version::parse(text).map_err(|e| NameError::Version {
        text: text.to_owned(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::labels::{check_labels, Label, Selector};
    use std::collections::BTreeMap;

    /// Which rule a row of the table is about.
    #[derive(Debug, Clone, Copy)]
    enum Rule {
        Name,
        Version,
        Selector,
        Label,
    }

    fn accepts(rule: Rule, text: &str) -> bool {
        match rule {
            Rule::Name => ModelName::parse(text).is_ok(),
            Rule::Version => parse_version(text).is_ok(),
            Rule::Selector => Selector::parse(text).is_ok(),
            Rule::Label => Label::parse(text).is_ok(),
        }
    }

    /// One table of what each wire rule accepts and refuses: the server, the agent and the CLI
    /// all call these functions, so this is what all three do.
    #[test]
    fn the_wire_rules_accept_and_refuse_this_table() {
        use Rule::*;
        let long_name = "a".repeat(MAX_MODEL_NAME_LEN);
        let too_long_name = "a".repeat(MAX_MODEL_NAME_LEN + 1);
        let long_version = format!("1.0.0-{}", "a".repeat(MAX_VERSION_LEN - 6));
        let too_long_version = format!("1.0.0-{}", "a".repeat(MAX_VERSION_LEN - 5));
        let long_key = format!("{}=v", "k".repeat(64));
        let too_long_key = format!("{}=v", "k".repeat(65));
        let long_value = format!("k={}", "v".repeat(256));
        let too_long_value = format!("k={}", "v".repeat(257));
        let unicode_key = "région=île-de-france";
        let table: &[(Rule, &str, bool)] = &[
            (Name, "fraud", true),
            (Name, "sensor-anomaly", true),
            (Name, "vision_cnn.v2", true),
            (Name, "7eleven", true),
            (Name, "a.b", true),
            (Name, &long_name, true),
            (Name, "", false),
            (Name, "a..b", false),
            (Name, "../x", false),
            (Name, "..", false),
            (Name, ".x", false),
            (Name, ".hidden", false),
            (Name, "-x", false),
            (Name, "_x", false),
            (Name, "a/b", false),
            (Name, "a\\b", false),
            (Name, "Fraud", false),
            (Name, "x y", false),
            (Name, " fraud", false),
            (Name, "fraud\n", false),
            (Name, "frä", false),
            (Name, "ｆraud", false),
            (Name, &too_long_name, false),
            (Version, "1.2.0", true),
            (Version, "0.0.0", true),
            (Version, "2.0.0-rc.1", true),
            (Version, "1.0.0+build.7", true),
            (Version, &long_version, true),
            (Version, "", false),
            (Version, "1.2", false),
            (Version, "v1.2.0", false),
            (Version, " 1.2.0", false),
            (Version, "1.2.0 ", false),
            (Version, "01.2.0", false),
            (Version, "../1", false),
            (Version, "1.0.0/../x", false),
            (Version, "１.2.0", false),
            (Version, "1.0.0-é", false),
            (Version, &too_long_version, false),
            (Selector, "", true),
            (Selector, " , ", true),
            (Selector, "site=plant-7", true),
            (Selector, "site=plant-7,class=edge", true),
            (Selector, " site = plant-7 , class=edge ,", true),
            (Selector, "tier=", true),
            (Selector, "expr=a=b", true),
            (Selector, unicode_key, true),
            (Selector, &long_key, true),
            (Selector, &long_value, true),
            (Selector, "site", false),
            (Selector, "=x", false),
            (Selector, " =x", false),
            (Selector, "site=a,site=b", false),
            (Selector, "site=a,class", false),
            (Selector, "k\u{7}=v", false),
            (Selector, "k=v\u{0}", false),
            (Selector, &too_long_key, false),
            (Selector, &too_long_value, false),
            (Label, "site=plant-7", true),
            (Label, "k=", true),
            (Label, unicode_key, true),
            (Label, "site", false),
            (Label, "a,b=c", false),
            (Label, "k=a,b", false),
            (Label, "", false),
        ];
        let wrong: Vec<_> = table
            .iter()
            .filter(|(rule, text, ok)| accepts(*rule, text) != *ok)
            .map(|(rule, text, ok)| format!("{rule:?} {text:?}: expected accepted={ok}"))
            .collect();
        assert!(wrong.is_empty(), "{wrong:#?}");
    }

    #[test]
    fn refusals_say_what_was_given_and_what_is_allowed() {
        assert_eq!(
            ModelName::parse("a..b").unwrap_err().to_string(),
            "`a..b` is not a valid model name: use 1 to 64 of a-z, 0-9, '-', '_' and '.', \
             starting with a letter or digit, without '..'"
        );
        assert_eq!(
            parse_version("1.2").unwrap_err().to_string(),
            "`1.2` is not a semantic version (like 1.2.0): unexpected end of input while parsing minor version number"
        );
        // Echoed input stays on one line and short.
        let junk = format!("a\n{}", "x".repeat(10_000));
        let message = ModelName::parse(&junk).unwrap_err().to_string();
        assert!(message.starts_with("`a\\nxxx"), "{message}");
        assert!(message.len() < 300, "{message}");
        assert_eq!(
            Selector::parse("site").unwrap_err().to_string(),
            "selector term `site` must be key=value"
        );
        assert_eq!(
            Selector::parse("site=a,site=b").unwrap_err().to_string(),
            "selector names `site` twice"
        );
    }

    #[test]
    fn versions_order_as_semver() {
        assert!(parse_version("1.0.0").ok() < parse_version("1.0.1").ok());
        assert!(parse_version("1.0.0-rc.1").ok() < parse_version("1.0.0").ok());
    }

    #[test]
    fn label_maps_are_checked_as_enrollment_takes_them() {
        let map = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        assert!(check_labels(&map(&[("site", "plant-7"), ("tier", "")])).is_ok());
        for bad in [
            map(&[("", "x")]),
            map(&[("a=b", "x")]),
            map(&[("a,b", "x")]),
            map(&[(" site", "x")]),
            map(&[("site", " x")]),
            map(&[("site", "a,b")]),
            map(&[("site", "a\nb")]),
        ] {
            assert!(check_labels(&bad).is_err(), "{bad:?}");
        }
    }
}
