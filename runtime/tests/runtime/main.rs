//! Integration tests of the runtime against the committed sample models and the outputs
//! onnxruntime gave for them (`models/expected.json`, written by `models/generate.py`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod concurrency;
mod invalid;
mod reference;
mod smoke;
mod support;
