//! The Open Inference Protocol's (KServe v2 REST) JSON bodies, and the conversion between its
//! tensors and the runtime's.
//!
//! Tensors travel as JSON arrays or, with the binary tensor data extension, as raw bytes after
//! the JSON part (see [`crate::binary`]); shared memory and classification are refused (see
//! [`unsupported_extension`]).

use std::fmt;
use std::marker::PhantomData;

use flotilla_runtime::{DataType, Tensor, TensorData, TensorSpec};
use serde::de::{self, DeserializeSeed, Deserializer, SeqAccess, Unexpected, Visitor};
use serde::ser::{SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// The value of the `flotilla_served_by` response parameter for answers computed on the device.
pub const SERVED_BY_EDGE: &str = "edge";
/// The value of the `flotilla_served_by` response parameter for answers computed by the server.
pub const SERVED_BY_SERVER: &str = "server";
/// The value for a device's own answer to a request that should have gone to the server (hybrid
/// inference) but got no answer from it in time.
pub const SERVED_BY_EDGE_FALLBACK: &str = "edge_fallback";

/// An inference request body.
#[derive(Debug, Deserialize)]
pub struct InferRequest {
    /// Echoed in the response.
    #[serde(default)]
    pub id: Option<String>,
    /// Request parameters; only `binary_data_output` is looked at.
    #[serde(default)]
    pub parameters: Option<Map<String, Value>>,
    /// The input tensors.
    pub inputs: Vec<RequestInput>,
    /// The outputs wanted, in the order wanted; all of them, in graph order, when absent.
    #[serde(default)]
    pub outputs: Option<Vec<RequestedOutput>>,
}

/// One input tensor of a request. `data` is kept raw until the datatype is known, then read
/// straight into a typed vector.
#[derive(Debug, Deserialize)]
pub struct RequestInput {
    /// The model input it feeds.
    pub name: String,
    /// Concrete dimensions.
    pub shape: Vec<usize>,
    /// KServe v2 datatype name.
    pub datatype: String,
    /// Tensor parameters; only `binary_data_size` and the shared-memory ones are looked at.
    #[serde(default)]
    pub parameters: Option<Map<String, Value>>,
    /// Row-major values, flat or as nested arrays; absent when the input is binary data.
    #[serde(default)]
    pub data: Option<Box<RawValue>>,
}

/// An output the client asks for.
#[derive(Debug, Deserialize)]
pub struct RequestedOutput {
    /// The model output name.
    pub name: String,
    /// Output parameters; only the binary-data, classification and shared-memory ones are
    /// looked at.
    #[serde(default)]
    pub parameters: Option<Map<String, Value>>,
}

/// An inference response body.
#[derive(Debug, Serialize)]
pub struct InferResponse<'a> {
    /// The model that answered.
    pub model_name: &'a str,
    /// Its version.
    pub model_version: &'a str,
    /// The request's `id`, when it had one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Where the answer was computed.
    pub parameters: ResponseParameters,
    /// The output tensors.
    pub outputs: Vec<ResponseOutput<'a>>,
}

/// The response parameters Flotilla sets.
#[derive(Debug, Serialize)]
pub struct ResponseParameters {
    /// Where the answer was computed: [`SERVED_BY_EDGE`], [`SERVED_BY_SERVER`] or
    /// [`SERVED_BY_EDGE_FALLBACK`].
    pub flotilla_served_by: &'static str,
}

/// One output tensor of a response.
#[derive(Debug, Serialize)]
pub struct ResponseOutput<'a> {
    /// The model output name.
    pub name: &'a str,
    /// KServe v2 datatype name.
    pub datatype: &'static str,
    /// Concrete dimensions.
    pub shape: &'a [usize],
    /// For a binary output, the size of its bytes after the JSON part.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameters: Option<BinaryParameters>,
    /// Flat row-major values; NaN and infinities are written as `null`. Absent for a binary
    /// output.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<JsonData<'a>>,
}

/// The parameters of a binary output.
#[derive(Debug, Serialize)]
pub struct BinaryParameters {
    /// Bytes of the output's data after the JSON part.
    pub binary_data_size: usize,
}

impl<'a> ResponseOutput<'a> {
    /// The response form of a runtime tensor, its data as a JSON array.
    pub fn of(tensor: &'a Tensor) -> ResponseOutput<'a> {
        ResponseOutput {
            name: &tensor.name,
            datatype: tensor.datatype().name(),
            shape: &tensor.shape,
            parameters: None,
            data: Some(JsonData(&tensor.data)),
        }
    }

    /// The response form of a runtime tensor whose data follows the JSON part as bytes.
    pub fn binary(tensor: &'a Tensor) -> ResponseOutput<'a> {
        ResponseOutput {
            name: &tensor.name,
            datatype: tensor.datatype().name(),
            shape: &tensor.shape,
            parameters: Some(BinaryParameters {
                binary_data_size: crate::binary::encoded_size(tensor),
            }),
            data: None,
        }
    }
}

/// Tensor data serialised as a flat JSON array.
#[derive(Debug)]
pub struct JsonData<'a>(pub &'a TensorData);

impl Serialize for JsonData<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        fn all<S: Serializer, T: Serialize>(
            serializer: S,
            values: &[T],
        ) -> Result<S::Ok, S::Error> {
            let mut seq = serializer.serialize_seq(Some(values.len()))?;
            for value in values {
                seq.serialize_element(value)?;
            }
            seq.end()
        }
        match self.0 {
            TensorData::Bool(v) => all(serializer, v),
            TensorData::U8(v) => all(serializer, v),
            TensorData::U16(v) => all(serializer, v),
            TensorData::U32(v) => all(serializer, v),
            TensorData::U64(v) => all(serializer, v),
            TensorData::I8(v) => all(serializer, v),
            TensorData::I16(v) => all(serializer, v),
            TensorData::I32(v) => all(serializer, v),
            TensorData::I64(v) => all(serializer, v),
            // serde_json writes non-finite floats as `null`, as expected.json does.
            TensorData::F32(v) => all(serializer, v),
            TensorData::F64(v) => all(serializer, v),
        }
    }
}

/// The model metadata body.
#[derive(Debug, Serialize)]
pub struct ModelMetadata<'a> {
    /// Model name.
    pub name: &'a str,
    /// The versions clients may ask for by number.
    pub versions: Vec<&'a str>,
    /// Always `onnx`.
    pub platform: &'static str,
    /// Declared inputs.
    pub inputs: Vec<TensorMetadata<'a>>,
    /// Declared outputs.
    pub outputs: Vec<TensorMetadata<'a>>,
}

/// A declared input or output in the model metadata.
#[derive(Debug, Serialize)]
pub struct TensorMetadata<'a> {
    /// Tensor name.
    pub name: &'a str,
    /// KServe v2 datatype name.
    pub datatype: &'static str,
    /// Dimensions; `-1` for a dynamic one.
    pub shape: &'a [i64],
}

impl<'a> TensorMetadata<'a> {
    /// The metadata form of a runtime tensor spec.
    pub fn of(spec: &'a TensorSpec) -> TensorMetadata<'a> {
        TensorMetadata {
            name: &spec.name,
            datatype: spec.datatype.name(),
            shape: &spec.shape,
        }
    }
}

/// The server metadata body.
#[derive(Debug, Serialize)]
pub struct ServerMetadata {
    /// `flotilla-agent` or `flotilla-server`.
    pub name: &'static str,
    /// The serving process's version.
    pub version: &'static str,
    /// Protocol extensions supported: `binary_tensor_data`.
    pub extensions: [&'static str; 1],
}

/// The OIP error body, `{"error": "<message>"}`, with a stable `code` when the server answers.
#[derive(Debug, Serialize)]
pub struct ErrorBody<'a> {
    /// What went wrong, for the client.
    pub error: &'a str,
    /// The stable code (see [`crate::OipError::code`]); absent in the protocol's plain form.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<&'static str>,
}

/// If the request asks for an extension this server lacks (shared memory, classification),
/// the reason to refuse it. Binary tensor data is supported.
pub fn unsupported_extension(request: &InferRequest) -> Option<String> {
    for input in &request.inputs {
        if has(input.parameters.as_ref(), "shared_memory_region") {
            return Some(format!(
                "input `{}` is in a shared memory region, which is not supported",
                input.name
            ));
        }
    }
    for output in request.outputs.iter().flatten() {
        let parameters = output.parameters.as_ref();
        if has(parameters, "shared_memory_region") {
            return Some(format!(
                "output `{}` is requested in a shared memory region, which is not supported",
                output.name
            ));
        }
        if has(parameters, "classification") {
            return Some(format!(
                "output `{}` asks for the classification extension, which is not supported",
                output.name
            ));
        }
    }
    None
}

/// Which outputs the client wants as binary data: `binary_data` on an output, otherwise the
/// request's `binary_data_output` (which also covers every output when none is named). The
/// error is the message for the client.
pub fn binary_outputs(request: &InferRequest) -> Result<BinaryOutputs, String> {
    let all = flag(request.parameters.as_ref(), "binary_data_output")
        .map_err(|v| {
            format!("the request parameter `binary_data_output` must be true or false, got {v}")
        })?
        .unwrap_or(false);
    let mut named = Vec::new();
    for output in request.outputs.iter().flatten() {
        let binary = flag(output.parameters.as_ref(), "binary_data")
            .map_err(|v| {
                format!(
                    "output `{}` has `binary_data` {v}; it must be true or false",
                    output.name
                )
            })?
            .unwrap_or(all);
        named.push((output.name.clone(), binary));
    }
    Ok(BinaryOutputs { all, named })
}

/// Which outputs go as binary data (see [`binary_outputs`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinaryOutputs {
    all: bool,
    named: Vec<(String, bool)>,
}

impl BinaryOutputs {
    /// Whether output `name` goes as binary data.
    pub fn is_binary(&self, name: &str) -> bool {
        self.named
            .iter()
            .find(|(n, _)| n == name)
            .map_or(self.all, |&(_, binary)| binary)
    }

    /// Whether any output of `outputs` goes as binary data.
    pub fn any<'a>(&self, mut outputs: impl Iterator<Item = &'a str>) -> bool {
        outputs.any(|name| self.is_binary(name))
    }
}

fn has(parameters: Option<&Map<String, Value>>, key: &str) -> bool {
    parameters.is_some_and(|p| p.contains_key(key))
}

/// A boolean parameter: `Ok(None)` when absent, `Err(value)` when not a boolean.
fn flag<'a>(
    parameters: Option<&'a Map<String, Value>>,
    key: &str,
) -> Result<Option<bool>, &'a Value> {
    match parameters.and_then(|p| p.get(key)) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(other),
    }
}

/// Reads a request input's `data`, flat or nested, as `datatype` elements.
pub fn parse_data(datatype: DataType, data: &RawValue) -> Result<TensorData, serde_json::Error> {
    fn read<T: Element>(data: &RawValue) -> Result<TensorData, serde_json::Error>
    where
        TensorData: From<Vec<T>>,
    {
        let mut values = Vec::new();
        let mut deserializer = serde_json::Deserializer::from_str(data.get());
        deserializer.deserialize_seq(Flatten(&mut values))?;
        deserializer.end()?;
        Ok(TensorData::from(values))
    }
    match datatype {
        DataType::Bool => read::<bool>(data),
        DataType::Uint8 => read::<u8>(data),
        DataType::Uint16 => read::<u16>(data),
        DataType::Uint32 => read::<u32>(data),
        DataType::Uint64 => read::<u64>(data),
        DataType::Int8 => read::<i8>(data),
        DataType::Int16 => read::<i16>(data),
        DataType::Int32 => read::<i32>(data),
        DataType::Int64 => read::<i64>(data),
        DataType::Fp32 => read::<f32>(data),
        DataType::Fp64 => read::<f64>(data),
    }
}

/// An element type a JSON value converts to exactly, or not at all.
trait Element: Sized {
    /// What a value should have been, for error messages.
    const EXPECTED: &'static str;
    fn from_u64(v: u64) -> Option<Self>;
    fn from_i64(v: i64) -> Option<Self>;
    fn from_f64(v: f64) -> Option<Self>;
    fn from_bool(_: bool) -> Option<Self> {
        None
    }
    fn from_null() -> Option<Self> {
        None
    }
}

macro_rules! integer_element {
    ($($t:ty => $expected:literal),* $(,)?) => {$(
        impl Element for $t {
            const EXPECTED: &'static str = $expected;
            fn from_u64(v: u64) -> Option<$t> {
                <$t>::try_from(v).ok()
            }
            fn from_i64(v: i64) -> Option<$t> {
                <$t>::try_from(v).ok()
            }
            /// Integral numbers written with a fraction (`3.0`) are accepted.
            fn from_f64(v: f64) -> Option<$t> {
                // i128 holds every value of every integer element type exactly.
                if v.fract() == 0.0 && v.abs() < 1e30 {
                    <$t>::try_from(v as i128).ok()
                } else {
                    None
                }
            }
        }
    )*};
}

integer_element! {
    u8 => "a UINT8 value (integer 0..=255)",
    u16 => "a UINT16 value",
    u32 => "a UINT32 value",
    u64 => "a UINT64 value",
    i8 => "an INT8 value",
    i16 => "an INT16 value",
    i32 => "an INT32 value",
    i64 => "an INT64 value",
}

impl Element for f32 {
    const EXPECTED: &'static str = "an FP32 value";
    fn from_u64(v: u64) -> Option<f32> {
        Some(v as f32)
    }
    fn from_i64(v: i64) -> Option<f32> {
        Some(v as f32)
    }
    fn from_f64(v: f64) -> Option<f32> {
        // Out of f32's range is an error, not a silent infinity.
        (v.abs() <= f64::from(f32::MAX)).then_some(v as f32)
    }
    /// `null` is NaN, as in the responses.
    fn from_null() -> Option<f32> {
        Some(f32::NAN)
    }
}

impl Element for f64 {
    const EXPECTED: &'static str = "an FP64 value";
    fn from_u64(v: u64) -> Option<f64> {
        Some(v as f64)
    }
    fn from_i64(v: i64) -> Option<f64> {
        Some(v as f64)
    }
    fn from_f64(v: f64) -> Option<f64> {
        Some(v)
    }
    /// `null` is NaN, as in the responses.
    fn from_null() -> Option<f64> {
        Some(f64::NAN)
    }
}

impl Element for bool {
    const EXPECTED: &'static str = "a BOOL value (true or false)";
    fn from_u64(_: u64) -> Option<bool> {
        None
    }
    fn from_i64(_: i64) -> Option<bool> {
        None
    }
    fn from_f64(_: f64) -> Option<bool> {
        None
    }
    fn from_bool(v: bool) -> Option<bool> {
        Some(v)
    }
}

/// Reads an array, flattening nested arrays, into `self.0`.
struct Flatten<'a, T>(&'a mut Vec<T>);

impl<'de, T: Element> DeserializeSeed<'de> for Flatten<'_, T> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

struct Expected<T>(PhantomData<T>);

impl<T: Element> de::Expected for Expected<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(T::EXPECTED)
    }
}

impl<T: Element> Flatten<'_, T> {
    fn push<E: de::Error>(self, value: Option<T>, got: Unexpected<'_>) -> Result<(), E> {
        match value {
            Some(value) => {
                self.0.push(value);
                Ok(())
            }
            None => Err(E::invalid_value(got, &Expected::<T>(PhantomData))),
        }
    }
}

impl<'de, T: Element> Visitor<'de> for Flatten<'_, T> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "an array of {}s, flat or nested", T::EXPECTED)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Flatten(&mut *self.0))?.is_some() {}
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.push(T::from_u64(v), Unexpected::Unsigned(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.push(T::from_i64(v), Unexpected::Signed(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.push(T::from_f64(v), Unexpected::Float(v))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.push(T::from_bool(v), Unexpected::Bool(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.push(T::from_null(), Unexpected::Unit)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn raw(json: &str) -> Box<RawValue> {
        RawValue::from_string(json.to_owned()).unwrap()
    }

    fn parse(datatype: DataType, json: &str) -> Result<TensorData, String> {
        parse_data(datatype, &raw(json)).map_err(|e| e.to_string())
    }

    #[test]
    fn flat_and_nested_arrays_give_the_same_elements() {
        let flat = parse(DataType::Fp32, "[1, 2.5, -3, 4]").unwrap();
        let nested = parse(DataType::Fp32, "[[1, 2.5], [-3, 4]]").unwrap();
        assert_eq!(flat, TensorData::F32(vec![1.0, 2.5, -3.0, 4.0]));
        assert_eq!(nested, flat);
        assert_eq!(
            parse(DataType::Bool, "[[true], [false]]").unwrap(),
            TensorData::Bool(vec![true, false])
        );
    }

    #[test]
    fn every_supported_datatype_reads_its_values() {
        assert_eq!(
            parse(DataType::Uint8, "[0, 255]").unwrap(),
            TensorData::U8(vec![0, 255])
        );
        assert_eq!(
            parse(DataType::Int32, "[-7, 3.0]").unwrap(),
            TensorData::I32(vec![-7, 3])
        );
        assert_eq!(
            parse(DataType::Int64, "[-9007199254740993]").unwrap(),
            TensorData::I64(vec![-9007199254740993])
        );
        assert_eq!(
            parse(DataType::Uint64, "[18446744073709551615]").unwrap(),
            TensorData::U64(vec![u64::MAX])
        );
        assert_eq!(
            parse(DataType::Fp64, "[0.1]").unwrap(),
            TensorData::F64(vec![0.1])
        );
        let nan = parse(DataType::Fp32, "[null]").unwrap();
        assert!(nan.as_f32().unwrap()[0].is_nan());
    }

    #[test]
    fn values_that_do_not_fit_the_datatype_are_refused() {
        for (datatype, json) in [
            (DataType::Uint8, "[256]"),
            (DataType::Uint8, "[-1]"),
            (DataType::Int32, "[1.5]"),
            (DataType::Int32, "[true]"),
            (DataType::Bool, "[1]"),
            (DataType::Fp32, "[1e300]"),
            (DataType::Fp32, "[\"1\"]"),
            (DataType::Fp32, "[[1], {}]"),
            (DataType::Fp32, "1"),
            (DataType::Int64, "[null]"),
        ] {
            let err = parse(datatype, json).expect_err(json);
            assert!(err.contains("invalid"), "{json}: {err}");
        }
        let err = parse(DataType::Uint8, "[1, 300]").unwrap_err();
        assert!(err.contains("300") && err.contains("UINT8"), "{err}");
    }

    #[test]
    fn responses_write_flat_data_and_nan_as_null() {
        let tensor = Tensor::new("p", vec![1, 3], vec![0.25f32, f32::NAN, 1.0]);
        let json = serde_json::to_string(&ResponseOutput::of(&tensor)).unwrap();
        assert_eq!(
            json,
            r#"{"name":"p","datatype":"FP32","shape":[1,3],"data":[0.25,null,1.0]}"#
        );
    }

    fn request(json: &str) -> InferRequest {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn unsupported_extensions_are_recognised() {
        let plain = request(
            r#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","parameters":{"binary_data_size":4}}],
                "outputs":[{"name":"y","parameters":{"binary_data":true}}]}"#,
        );
        assert_eq!(unsupported_extension(&plain), None);
        for json in [
            r#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","parameters":{"shared_memory_region":"r"}}]}"#,
            r#"{"inputs":[],"outputs":[{"name":"y","parameters":{"shared_memory_region":"r"}}]}"#,
            r#"{"inputs":[],"outputs":[{"name":"y","parameters":{"classification":2}}]}"#,
        ] {
            assert!(unsupported_extension(&request(json)).is_some(), "{json}");
        }
    }

    #[test]
    fn binary_outputs_follow_the_output_then_the_request() {
        let wants = |json: &str| binary_outputs(&request(json)).unwrap();
        // tritonclient's default call: no outputs named, binary_data_output.
        let all = wants(r#"{"parameters":{"binary_data_output":true},"inputs":[]}"#);
        assert!(all.is_binary("probabilities"));
        let none = wants(r#"{"inputs":[]}"#);
        assert!(!none.is_binary("probabilities"));
        let mixed = wants(
            r#"{"parameters":{"binary_data_output":true},"inputs":[],
                "outputs":[{"name":"a","parameters":{"binary_data":false}},{"name":"b"}]}"#,
        );
        assert!(!mixed.is_binary("a") && mixed.is_binary("b"));
        let one = wants(
            r#"{"inputs":[],"outputs":[{"name":"a","parameters":{"binary_data":true}},{"name":"b"}]}"#,
        );
        assert!(one.is_binary("a") && !one.is_binary("b"));
        assert!(one.any(["b", "a"].into_iter()) && !one.any(["b"].into_iter()));
        for json in [
            r#"{"parameters":{"binary_data_output":"yes"},"inputs":[]}"#,
            r#"{"inputs":[],"outputs":[{"name":"a","parameters":{"binary_data":1}}]}"#,
        ] {
            assert!(binary_outputs(&request(json)).is_err(), "{json}");
        }
    }

    #[test]
    fn binary_outputs_carry_their_size_instead_of_data() {
        let tensor = Tensor::new("p", vec![1, 3], vec![0.25f32, f32::NAN, 1.0]);
        let json = serde_json::to_string(&ResponseOutput::binary(&tensor)).unwrap();
        assert_eq!(
            json,
            r#"{"name":"p","datatype":"FP32","shape":[1,3],"parameters":{"binary_data_size":12}}"#
        );
    }
}
