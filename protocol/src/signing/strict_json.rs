//! JSON parsing that rejects duplicate object keys.
//!
//! serde_json quietly keeps the last of two equal keys, so `{"digest": A, "digest": B}` would
//! mean B to us and possibly A to another verifier. Signed documents must mean one thing to
//! everyone, so we parse through a visitor that notices repeats (after unescaping, so `"a"` and
//! `"\u0061"` are the same key) and only then hand a `serde_json::Value` to the typed structs.

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Why a document is not strict JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StrictJsonError {
    /// The same key appears twice in one object; carries the key.
    DuplicateKey(String),
    /// Not JSON at all (syntax, trailing data, nesting too deep).
    Syntax(String),
}

/// Parses `bytes` as one JSON value, failing on duplicate keys in any object at any depth.
pub(crate) fn parse(bytes: &[u8]) -> Result<Value, StrictJsonError> {
    let duplicate = RefCell::new(None);
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let parsed = StrictValue {
        duplicate: &duplicate,
    }
    .deserialize(&mut deserializer)
    .and_then(|value| deserializer.end().map(|()| value));
    match parsed {
        Ok(value) => Ok(value),
        Err(error) => Err(match duplicate.into_inner() {
            Some(key) => StrictJsonError::DuplicateKey(key),
            None => StrictJsonError::Syntax(error.to_string()),
        }),
    }
}

/// A seed producing a `Value`, recording the first duplicate key it meets in `duplicate` (the
/// serde error itself only carries text).
#[derive(Clone, Copy)]
struct StrictValue<'a> {
    duplicate: &'a RefCell<Option<String>>,
}

impl<'de> DeserializeSeed<'de> for StrictValue<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictValue<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("non-finite number"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                let message = format!("duplicate key `{key}`");
                *self.duplicate.borrow_mut() = Some(key);
                return Err(de::Error::custom(message));
            }
            let value = map.next_value_seed(self)?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_like_serde_json_when_keys_are_unique() {
        let text =
            br#"{"a": [1, -2, 3.5, true, null, "x"], "b": {"c": {}}, "d": 18446744073709551615}"#;
        assert_eq!(
            parse(text),
            Ok(serde_json::from_slice::<Value>(text).unwrap_or_default())
        );
    }

    #[test]
    fn rejects_duplicate_keys_at_any_depth() {
        assert_eq!(
            parse(br#"{"a": 1, "a": 2}"#),
            Err(StrictJsonError::DuplicateKey("a".into()))
        );
        assert_eq!(
            parse(br#"{"x": [{"y": {"k": 1, "j": 2, "k": 3}}]}"#),
            Err(StrictJsonError::DuplicateKey("k".into()))
        );
    }

    #[test]
    fn escaped_spellings_of_one_key_are_the_same_key() {
        assert_eq!(
            parse(br#"{"a": 1, "\u0061": 2}"#),
            Err(StrictJsonError::DuplicateKey("a".into()))
        );
    }

    #[test]
    fn rejects_trailing_data_and_bad_syntax() {
        assert!(matches!(
            parse(br#"{"a": 1} {"a": 2}"#),
            Err(StrictJsonError::Syntax(_))
        ));
        assert!(matches!(
            parse(br#"{"a": "#),
            Err(StrictJsonError::Syntax(_))
        ));
    }
}
