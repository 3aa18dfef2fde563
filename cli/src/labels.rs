//! Device labels and label selectors as the command line gives them (`site=plant-7`,
//! `site=plant-7,class=edge`), parsed before anything is sent so a typo exits 2 locally.
//!
//! The rules are the wire's, written once in `flotilla_protocol::labels` and used by the server
//! too, so what is refused here is what the server would refuse, with the same message.

use std::collections::BTreeMap;

pub use flotilla_protocol::labels::{Label, Selector};

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
            return Label::parse(text)
                .map(LabelChange::Set)
                .map_err(|e| e.to_string());
        }
        match text.strip_suffix('-') {
            Some(key) => {
                let key = key.trim();
                flotilla_protocol::labels::check_label_key(key).map_err(|e| e.to_string())?;
                Ok(LabelChange::Remove(key.to_owned()))
            }
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
        assert!(Selector::parse("site")
            .unwrap_err()
            .to_string()
            .contains("key=value"));
        assert!(Selector::parse("site=a,site=b").is_err());
        assert_eq!(join(&BTreeMap::new()), "-");
        // No selector is every device, sent as "" (a "-" would be refused by the server).
        assert_eq!(Selector::default().to_string(), "");
    }
}
