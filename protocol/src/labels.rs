//! Device labels and label selectors (`site=plant-7,class=edge`), written once for the server,
//! the agent and the CLI.
//!
//! A label key is 1–64 printable characters without `=` or `,`; a value is at most 256
//! printable characters without `,`, and may be empty. Neither starts or ends with a space: a
//! selector's terms are trimmed, so a padded label could never be selected. A selector is
//! `key=value` terms joined by commas, all of which must match; blank terms are ignored and the
//! empty selector selects every device.

use std::collections::BTreeMap;
use std::fmt;

use crate::names::shown;

/// Longest label key, in characters.
pub const MAX_LABEL_KEY_CHARS: usize = 64;
/// Longest label value, in characters.
pub const MAX_LABEL_VALUE_CHARS: usize = 256;

/// Why a label or selector was refused. The message is the one the server answers with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    /// The key breaks the key rule.
    #[error(
        "label key `{}`: use 1 to 64 printable characters without '=' or ',' and no spaces at either end",
        shown(.0)
    )]
    Key(String),
    /// The value breaks the value rule.
    #[error(
        "label `{}`: a value has at most 256 printable characters, no ',' and no spaces at either end",
        shown(key)
    )]
    Value {
        /// The label's key.
        key: String,
    },
    /// A label or selector term without `=`.
    #[error("selector term `{}` must be key=value", shown(.0))]
    NotKeyValue(String),
    /// A selector (or a list of labels) names one key twice.
    #[error("selector names `{}` twice", shown(.0))]
    DuplicateKey(String),
}

/// Checks a label key as stored (no trimming is done here).
pub fn check_label_key(key: &str) -> Result<(), LabelError> {
    let n = key.chars().count();
    let ok = (1..=MAX_LABEL_KEY_CHARS).contains(&n)
        && key.trim() == key
        && !key.chars().any(|c| c.is_control() || c == '=' || c == ',');
    if ok {
        Ok(())
    } else {
        Err(LabelError::Key(key.to_owned()))
    }
}

/// Checks a label value (for the label `key`) as stored.
pub fn check_label_value(key: &str, value: &str) -> Result<(), LabelError> {
    let ok = value.chars().count() <= MAX_LABEL_VALUE_CHARS
        && value.trim() == value
        && !value.chars().any(|c| c.is_control() || c == ',');
    if ok {
        Ok(())
    } else {
        Err(LabelError::Value {
            key: key.to_owned(),
        })
    }
}

/// Checks labels as enrollment, enrollment tokens and relabelling take them.
pub fn check_labels(labels: &BTreeMap<String, String>) -> Result<(), LabelError> {
    labels.iter().try_for_each(|(k, v)| {
        check_label_key(k)?;
        check_label_value(k, v)
    })
}

/// One `key=value` label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    /// The key, trimmed.
    pub key: String,
    /// The value, trimmed; may be empty.
    pub value: String,
}

impl Label {
    /// Parses `key=value`; spaces around either side are dropped, and only the first `=`
    /// splits (`expr=a=b` has the value `a=b`).
    pub fn parse(text: &str) -> Result<Self, LabelError> {
        let (key, value) = text
            .split_once('=')
            .ok_or_else(|| LabelError::NotKeyValue(text.trim().to_owned()))?;
        let (key, value) = (key.trim(), value.trim());
        check_label_key(key)?;
        check_label_value(key, value)?;
        Ok(Label {
            key: key.to_owned(),
            value: value.to_owned(),
        })
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.key, self.value)
    }
}

/// A label selector: every `key=value` must match. Empty selects every device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector(BTreeMap<String, String>);

impl Selector {
    /// Parses `key=value[,key=value...]`; blank terms are ignored, a key named twice is
    /// refused.
    pub fn parse(text: &str) -> Result<Self, LabelError> {
        let mut terms = BTreeMap::new();
        for term in text.split(',').filter(|t| !t.trim().is_empty()) {
            let label = Label::parse(term)?;
            if terms.contains_key(&label.key) {
                return Err(LabelError::DuplicateKey(label.key));
            }
            terms.insert(label.key, label.value);
        }
        Ok(Selector(terms))
    }

    /// Whether `labels` satisfy every term.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|(k, v)| labels.get(k) == Some(v))
    }

    /// The terms, by key.
    pub fn terms(&self) -> &BTreeMap<String, String> {
        &self.0
    }

    /// The terms, owned.
    pub fn into_terms(self) -> BTreeMap<String, String> {
        self.0
    }

    /// Whether this selects every device.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The canonical text the server stores: terms sorted by key, joined by commas; the empty
/// selector is `""`.
impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&selector_text(&self.0))
    }
}

/// Labels (or selector terms) as `k=v,k=v`, sorted by key: the canonical selector text.
pub fn selector_text(terms: &BTreeMap<String, String>) -> String {
    terms
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn selectors_are_canonical() {
        let s = Selector::parse("site=plant-7, class=edge,").unwrap();
        assert_eq!(s.to_string(), "class=edge,site=plant-7");
        assert_eq!(Selector::parse(" , ").unwrap(), Selector::default());
        assert_eq!(Selector::default().to_string(), "");
        let labels: BTreeMap<String, String> = [("site", "plant-7"), ("class", "edge"), ("x", "")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        assert!(s.matches(&labels));
        assert!(Selector::default().matches(&labels));
        assert!(!Selector::parse("site=plant-8").unwrap().matches(&labels));
    }
}
