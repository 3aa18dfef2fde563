//! Device labels and label selectors as the command line gives them (`site=plant-7`,
//! `site=plant-7,class=edge`), parsed before anything is sent so a typo exits 2 locally.
//!
//! The rules are the server's (`docs/devices.md`): a key is 1–64 printable characters without
//! `=` or `,`; a value is at most 256 characters without `,`. The server checks again.

use std::collections::BTreeMap;
use std::fmt;

/// Longest label key, in characters.
const MAX_KEY_CHARS: usize = 64;
/// Longest label value, in characters.
const MAX_VALUE_CHARS: usize = 256;

/// One `key=value` label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    /// The key, trimmed.
    pub key: String,
    /// The value, trimmed; may be empty.
    pub value: String,
}

impl Label {
    /// Parses `key=value` (spaces around either side are dropped).
    pub fn parse(text: &str) -> Result<Self, String> {
        let (key, value) = text
            .split_once('=')
            .ok_or_else(|| format!("`{text}` is not key=value"))?;
        let key = parse_key(key)?;
        let value = value.trim();
        if value.contains(',') || value.chars().count() > MAX_VALUE_CHARS {
            return Err(format!(
                "label `{key}`: a value has at most {MAX_VALUE_CHARS} characters and no ','"
            ));
        }
        Ok(Label {
            key,
            value: value.to_owned(),
        })
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.key, self.value)
    }
}

fn parse_key(raw: &str) -> Result<String, String> {
    let key = raw.trim();
    let printable = !key.chars().any(char::is_control);
    if key.is_empty() || key.chars().count() > MAX_KEY_CHARS || !printable || key.contains(',') {
        return Err(format!(
            "label key `{key}`: use 1 to {MAX_KEY_CHARS} printable characters without '=' or ','"
        ));
    }
    Ok(key.to_owned())
}

/// Labels as a map; the same key twice is a mistake, not a silent override.
pub fn label_map(labels: &[Label]) -> Result<BTreeMap<String, String>, String> {
    let mut map = BTreeMap::new();
    for label in labels {
        if map.insert(label.key.clone(), label.value.clone()).is_some() {
            return Err(format!("label `{}` is given twice", label.key));
        }
    }
    Ok(map)
}

/// One change of `flotilla devices label`: `key=value` sets a label, `key-` removes it (as
/// `kubectl label` reads).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelChange {
    /// Set (add or overwrite) this label.
    Set(Label),
    /// Remove the label with this key.
    Remove(String),
}

impl LabelChange {
    /// Parses `key=value` or `key-`.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.contains('=') {
            return Label::parse(text).map(LabelChange::Set);
        }
        match text.strip_suffix('-') {
            Some(key) => parse_key(key).map(LabelChange::Remove),
            None => Err(format!(
                "`{text}` is neither key=value (set a label) nor key- (remove one)"
            )),
        }
    }

    fn key(&self) -> &str {
        match self {
            LabelChange::Set(label) => &label.key,
            LabelChange::Remove(key) => key,
        }
    }
}

/// The labels after `changes`. Each key may be changed once per command.
pub fn apply_changes(
    current: &BTreeMap<String, String>,
    changes: &[LabelChange],
) -> Result<BTreeMap<String, String>, String> {
    let mut seen = std::collections::BTreeSet::new();
    let mut labels = current.clone();
    for change in changes {
        if !seen.insert(change.key()) {
            return Err(format!("label `{}` is changed twice", change.key()));
        }
        match change {
            LabelChange::Set(label) => {
                labels.insert(label.key.clone(), label.value.clone());
            }
            LabelChange::Remove(key) => {
                labels.remove(key);
            }
        }
    }
    Ok(labels)
}

/// A label selector: `key=value` terms joined by commas, all of which must match. Empty
/// selects every device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector(BTreeMap<String, String>);

impl Selector {
    /// Parses `key=value[,key=value...]`; blank terms are ignored, as the server ignores them.
    pub fn parse(text: &str) -> Result<Self, String> {
        let terms: Vec<Label> = text
            .split(',')
            .filter(|t| !t.trim().is_empty())
            .map(|t| Label::parse(t).map_err(|e| format!("selector term {e}")))
            .collect::<Result<_, _>>()?;
        label_map(&terms)
            .map(Selector)
            .map_err(|_| "a selector names each key at most once".to_owned())
    }
}

/// The canonical text the server stores: terms sorted by key; empty (every device) is "".
impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return Ok(());
        }
        f.write_str(&join(&self.0))
    }
}

/// Labels as `k=v,k=v` (selector syntax, so a cell can be pasted into `--selector`), or `-`.
pub fn join(labels: &BTreeMap<String, String>) -> String {
    if labels.is_empty() {
        return "-".to_owned();
    }
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn labels_are_key_equals_value() {
        let l = Label::parse(" site = plant-7 ").unwrap();
        assert_eq!((l.key.as_str(), l.value.as_str()), ("site", "plant-7"));
        assert_eq!(Label::parse("tier=").unwrap().value, "");
        // Only the first '=' splits: the value may hold more.
        assert_eq!(Label::parse("expr=a=b").unwrap().value, "a=b");
        for bad in ["site", "=x", " =x", "a,b=c", "k=a,b", "k\u{7}=v"] {
            assert!(Label::parse(bad).is_err(), "{bad}");
        }
        assert!(Label::parse(&format!("{}=v", "k".repeat(65))).is_err());
        assert!(Label::parse(&format!("k={}", "v".repeat(257))).is_err());
        assert!(Label::parse(&format!("k={}", "v".repeat(256))).is_ok());
    }

    #[test]
    fn duplicate_labels_are_refused() {
        let labels = [Label::parse("a=1").unwrap(), Label::parse("a=2").unwrap()];
        assert!(label_map(&labels).unwrap_err().contains("`a`"));
    }

    #[test]
    fn changes_set_and_remove_labels() {
        let current = map(&[("site", "plant-7"), ("class", "edge")]);
        let changes = [
            LabelChange::parse("class=gateway").unwrap(),
            LabelChange::parse("tier=canary").unwrap(),
            LabelChange::parse("site-").unwrap(),
        ];
        assert_eq!(
            apply_changes(&current, &changes).unwrap(),
            map(&[("class", "gateway"), ("tier", "canary")])
        );
        // Removing a label the device does not have is not an error.
        let none = [LabelChange::parse("nope-").unwrap()];
        assert_eq!(apply_changes(&current, &none).unwrap(), current);
        let twice = [
            LabelChange::parse("site=a").unwrap(),
            LabelChange::parse("site-").unwrap(),
        ];
        assert!(apply_changes(&current, &twice).is_err());
        for bad in ["site", "-", "=x"] {
            assert!(LabelChange::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn selectors_are_canonical_and_checked() {
        let s = Selector::parse("site=plant-7, class=edge,").unwrap();
        assert_eq!(s.to_string(), "class=edge,site=plant-7");
        assert_eq!(Selector::parse(" , ").unwrap(), Selector::default());
        assert!(Selector::parse("site").unwrap_err().contains("key=value"));
        assert!(Selector::parse("site=a,site=b").is_err());
        assert_eq!(join(&BTreeMap::new()), "-");
        // No selector is every device, sent as "" (a "-" would be refused by the server).
        assert_eq!(Selector::default().to_string(), "");
    }
}
