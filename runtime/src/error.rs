//! The runtime's error type.

/// Why loading, checking or running a model failed.
///
/// The messages are meant for the person who uploaded the model or sent the request: they name
/// the tensor, the expected and the received value. They never contain input data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuntimeError {
    /// The bytes are not an ONNX model the engine can load: not protobuf, truncated, an operator
    /// the engine lacks, inconsistent shapes, or an input/output type the runtime cannot exchange.
    #[error("invalid model: {0}")]
    InvalidModel(String),
    /// The request does not match the model's signature: unknown, missing or duplicated input
    /// name, wrong datatype, wrong rank or dimension, or data length not matching the shape.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The engine failed while running a request that matched the signature.
    #[error("inference failed: {0}")]
    Inference(String),
    /// The model ran but its answer on the sample input is unusable: wrong output shape or a
    /// non-finite value.
    #[error("smoke test failed: {0}")]
    SmokeTest(String),
}
