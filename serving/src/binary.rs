//! Triton's binary tensor data extension (KServe v2 REST): tensors as raw bytes after the JSON
//! part of a request or response body, instead of JSON arrays.
//!
//! A body with binary tensors is the JSON object, then each binary tensor's bytes in the order
//! the JSON lists them; `Inference-Header-Content-Length` gives the JSON part's length and each
//! binary tensor carries `"parameters": {"binary_data_size": N}` instead of `data`. Elements are
//! little-endian, row-major, unpadded, in their native size; a `BOOL` is one byte, 0 or 1.
//!
//! Every size a client declares is checked against the bytes actually received before anything
//! is decoded, and decoding allocates only for bytes present: a declared size can never make
//! this process allocate more than the (already limited) body.

use std::ops::Range;

use flotilla_runtime::{DataType, Tensor, TensorData};
use serde_json::{Map, Value};

/// The header giving the JSON part's length, in bytes, when a body carries binary tensors.
pub const HEADER_LENGTH: &str = "inference-header-content-length";

/// The `Content-Type` of a response carrying binary tensors (what Triton sends).
pub const BINARY_CONTENT_TYPE: &str = "application/octet-stream";

/// Why a body's binary tensor data is refused. Each kind has its own stable error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BinaryDataError {
    /// `Inference-Header-Content-Length` is not a length, or points beyond the body.
    #[error("{0}")]
    Header(String),
    /// A `binary_data_size` is not a size, or is not what the tensor's shape and datatype need.
    #[error("{0}")]
    Size(String),
    /// The binary tensors' sizes do not add up to the bytes after the JSON part.
    #[error("{0}")]
    Length(String),
}

impl BinaryDataError {
    /// The stable code of this kind of refusal.
    pub fn code(&self) -> &'static str {
        match self {
            BinaryDataError::Header(_) => "invalid_binary_header",
            BinaryDataError::Size(_) => "binary_size_mismatch",
            BinaryDataError::Length(_) => "binary_data_length",
        }
    }
}

/// Reads `Inference-Header-Content-Length`: `None` when absent (the whole body is JSON). A
/// value that is not a decimal length, or larger than `limit` (the largest body accepted), is
/// refused before the body is read.
pub fn header_length(value: Option<&[u8]>, limit: usize) -> Result<Option<usize>, BinaryDataError> {
    let Some(value) = value else {
        return Ok(None);
    };
    let text = std::str::from_utf8(value).unwrap_or("").trim();
    let length = (!text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse::<usize>().ok())
        .flatten()
        .ok_or_else(|| {
            BinaryDataError::Header(format!(
                "`Inference-Header-Content-Length` must be the JSON part's length in bytes, got `{}`",
                String::from_utf8_lossy(value)
            ))
        })?;
    if length > limit {
        return Err(BinaryDataError::Header(format!(
            "`Inference-Header-Content-Length` is {length}, more than the largest body accepted \
             ({limit} bytes)"
        )));
    }
    Ok(Some(length))
}

/// Splits `body` into its JSON part and the binary tensor data after it.
pub fn split_body(
    body: &[u8],
    header_length: Option<usize>,
) -> Result<(&[u8], &[u8]), BinaryDataError> {
    let Some(length) = header_length else {
        return Ok((body, &[]));
    };
    if length > body.len() {
        return Err(BinaryDataError::Header(format!(
            "`Inference-Header-Content-Length` is {length} but the body has only {} bytes",
            body.len()
        )));
    }
    Ok(body.split_at(length))
}

/// The `binary_data_size` parameter of a request input, if it has one.
pub fn declared_size(
    name: &str,
    parameters: Option<&Map<String, Value>>,
) -> Result<Option<usize>, BinaryDataError> {
    let Some(value) = parameters.and_then(|p| p.get("binary_data_size")) else {
        return Ok(None);
    };
    value
        .as_u64()
        .and_then(|n| usize::try_from(n).ok())
        .map(Some)
        .ok_or_else(|| {
            BinaryDataError::Size(format!(
                "input `{name}` has `binary_data_size` {value}, which is not a size in bytes"
            ))
        })
}

/// Places each input's binary data: for every `(name, binary_data_size)` in request order, its
/// byte range in `binary` (`None` for JSON inputs). The sizes must cover `binary` exactly.
pub fn locate(
    declared: &[(&str, Option<usize>)],
    binary: usize,
) -> Result<Vec<Option<Range<usize>>>, BinaryDataError> {
    let mut offset = 0usize;
    let mut ranges = Vec::with_capacity(declared.len());
    for &(name, size) in declared {
        let Some(size) = size else {
            ranges.push(None);
            continue;
        };
        let end = offset.checked_add(size).filter(|&end| end <= binary);
        let Some(end) = end else {
            return Err(BinaryDataError::Length(format!(
                "input `{name}` declares {size} bytes of binary data from byte {offset}, but \
                 only {binary} bytes follow the JSON part"
            )));
        };
        ranges.push(Some(offset..end));
        offset = end;
    }
    if offset != binary {
        return Err(BinaryDataError::Length(format!(
            "{binary} bytes follow the JSON part but the inputs' `binary_data_size` add up to \
             {offset}"
        )));
    }
    Ok(ranges)
}

/// Bytes per element of `datatype` in the binary encoding.
pub fn element_size(datatype: DataType) -> usize {
    match datatype {
        DataType::Bool | DataType::Uint8 | DataType::Int8 => 1,
        DataType::Uint16 | DataType::Int16 => 2,
        DataType::Uint32 | DataType::Int32 | DataType::Fp32 => 4,
        DataType::Uint64 | DataType::Int64 | DataType::Fp64 => 8,
    }
}

/// Decodes input `name`'s binary data: `elements` values of `datatype`. `bytes.len()` must be
/// exactly what they need (checked here, before anything is allocated).
pub fn decode(
    name: &str,
    datatype: DataType,
    elements: Option<usize>,
    bytes: &[u8],
) -> Result<TensorData, BinaryDataError> {
    let size = element_size(datatype);
    let needed = elements.and_then(|n| n.checked_mul(size));
    if needed != Some(bytes.len()) {
        return Err(BinaryDataError::Size(format!(
            "input `{name}` has `binary_data_size` {}, but its shape and datatype need {}",
            bytes.len(),
            needed.map_or_else(
                || "more bytes than can be addressed".to_owned(),
                |n| format!("{n} ({} elements of {size} bytes)", elements.unwrap_or(0))
            )
        )));
    }
    macro_rules! numbers {
        ($t:ty) => {
            bytes
                .chunks_exact(std::mem::size_of::<$t>())
                .map(|chunk| {
                    let mut raw = [0u8; std::mem::size_of::<$t>()];
                    raw.copy_from_slice(chunk);
                    <$t>::from_le_bytes(raw)
                })
                .collect::<Vec<$t>>()
                .into()
        };
    }
    Ok(match datatype {
        DataType::Bool => {
            if let Some(at) = bytes.iter().position(|&b| b > 1) {
                return Err(BinaryDataError::Size(format!(
                    "input `{name}` is BOOL but byte {at} of its binary data is {}; a BOOL \
                     element is one byte, 0 or 1",
                    bytes[at]
                )));
            }
            TensorData::Bool(bytes.iter().map(|&b| b == 1).collect())
        }
        DataType::Uint8 => TensorData::U8(bytes.to_vec()),
        DataType::Uint16 => numbers!(u16),
        DataType::Uint32 => numbers!(u32),
        DataType::Uint64 => numbers!(u64),
        DataType::Int8 => numbers!(i8),
        DataType::Int16 => numbers!(i16),
        DataType::Int32 => numbers!(i32),
        DataType::Int64 => numbers!(i64),
        DataType::Fp32 => numbers!(f32),
        DataType::Fp64 => numbers!(f64),
    })
}

/// Appends `data`'s binary encoding to `out`.
pub fn encode(data: &TensorData, out: &mut Vec<u8>) {
    macro_rules! numbers {
        ($values:expr) => {
            for value in $values {
                out.extend_from_slice(&value.to_le_bytes());
            }
        };
    }
    match data {
        TensorData::Bool(v) => out.extend(v.iter().map(|&b| u8::from(b))),
        TensorData::U8(v) => out.extend_from_slice(v),
        TensorData::U16(v) => numbers!(v),
        TensorData::U32(v) => numbers!(v),
        TensorData::U64(v) => numbers!(v),
        TensorData::I8(v) => numbers!(v),
        TensorData::I16(v) => numbers!(v),
        TensorData::I32(v) => numbers!(v),
        TensorData::I64(v) => numbers!(v),
        TensorData::F32(v) => numbers!(v),
        TensorData::F64(v) => numbers!(v),
    }
}

/// The size of `tensor`'s binary encoding.
pub fn encoded_size(tensor: &Tensor) -> usize {
    tensor.data.len() * element_size(tensor.datatype())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn every_datatype() -> Vec<TensorData> {
        vec![
            TensorData::Bool(vec![true, false, true]),
            TensorData::U8(vec![0, 7, 255]),
            TensorData::U16(vec![0, 0x1234, u16::MAX]),
            TensorData::U32(vec![1, 0xdead_beef]),
            TensorData::U64(vec![u64::MAX, 3]),
            TensorData::I8(vec![-128, 127]),
            TensorData::I16(vec![-2, 300]),
            TensorData::I32(vec![i32::MIN, -1]),
            TensorData::I64(vec![-9_007_199_254_740_993]),
            TensorData::F32(vec![0.25, -1.5, f32::INFINITY]),
            TensorData::F64(vec![0.1, -0.0]),
        ]
    }

    #[test]
    fn every_datatype_round_trips_little_endian() {
        for data in every_datatype() {
            let mut bytes = Vec::new();
            encode(&data, &mut bytes);
            let datatype = data.datatype();
            assert_eq!(
                bytes.len(),
                data.len() * element_size(datatype),
                "{datatype}"
            );
            let back = decode("x", datatype, Some(data.len()), &bytes).unwrap();
            assert_eq!(back, data, "{datatype}");
        }
        // The byte order is fixed, whatever the host's.
        let mut bytes = Vec::new();
        encode(&TensorData::U32(vec![0x0102_0304]), &mut bytes);
        assert_eq!(bytes, [4, 3, 2, 1]);
        let mut bytes = Vec::new();
        encode(&TensorData::F32(vec![1.0]), &mut bytes);
        assert_eq!(bytes, 1.0f32.to_le_bytes());
    }

    #[test]
    fn bool_is_one_byte_zero_or_one() {
        let mut bytes = Vec::new();
        encode(&TensorData::Bool(vec![true, false]), &mut bytes);
        assert_eq!(bytes, [1, 0]);
        assert_eq!(
            decode("flags", DataType::Bool, Some(3), &[0, 1, 1]).unwrap(),
            TensorData::Bool(vec![false, true, true])
        );
        let err = decode("flags", DataType::Bool, Some(2), &[1, 2]).unwrap_err();
        assert_eq!(err.code(), "binary_size_mismatch");
        assert!(err.to_string().contains("byte 1"), "{err}");
    }

    #[test]
    fn a_size_that_is_not_the_shapes_is_refused() {
        // [1, 8] FP32 needs 32 bytes.
        let err = decode("features", DataType::Fp32, Some(8), &[0; 31]).unwrap_err();
        assert_eq!(err.code(), "binary_size_mismatch");
        assert!(err.to_string().contains("need 32"), "{err}");
        // A shape whose byte count overflows is refused, not wrapped.
        let err = decode("features", DataType::Fp64, Some(usize::MAX / 4), &[]).unwrap_err();
        assert!(err.to_string().contains("addressed"), "{err}");
        let err = decode("features", DataType::Fp32, None, &[]).unwrap_err();
        assert_eq!(err.code(), "binary_size_mismatch");
    }

    #[test]
    fn the_header_length_must_be_a_length_within_the_body() {
        assert_eq!(header_length(None, 100), Ok(None));
        assert_eq!(header_length(Some(b"42"), 100), Ok(Some(42)));
        for bad in [
            &b""[..],
            b"-1",
            b"4x",
            b"0x10",
            b"1e3",
            b" ",
            b"99999999999999999999999",
        ] {
            let err = header_length(Some(bad), 100).unwrap_err();
            assert_eq!(err.code(), "invalid_binary_header", "{bad:?}");
        }
        let err = header_length(Some(b"101"), 100).unwrap_err();
        assert!(err.to_string().contains("largest body"), "{err}");

        let body = b"{}abcd";
        assert_eq!(split_body(body, None).unwrap(), (&body[..], &b""[..]));
        assert_eq!(
            split_body(body, Some(2)).unwrap(),
            (&b"{}"[..], &b"abcd"[..])
        );
        assert_eq!(split_body(body, Some(6)).unwrap(), (&body[..], &b""[..]));
        let err = split_body(body, Some(7)).unwrap_err();
        assert_eq!(err.code(), "invalid_binary_header");
        assert!(err.to_string().contains("only 6 bytes"), "{err}");
    }

    #[test]
    fn binary_inputs_must_cover_the_binary_part_exactly() {
        let mixed = [("a", Some(4)), ("b", None), ("c", Some(2))];
        assert_eq!(locate(&mixed, 6).unwrap(), [Some(0..4), None, Some(4..6)]);
        assert_eq!(locate(&[("a", None)], 0).unwrap(), [None]);

        // Sizes summing past the body.
        let err = locate(&mixed, 5).unwrap_err();
        assert_eq!(err.code(), "binary_data_length");
        assert!(err.to_string().contains("input `c`"), "{err}");
        // Bytes left over.
        let err = locate(&mixed, 7).unwrap_err();
        assert_eq!(err.code(), "binary_data_length");
        // Binary inputs without any binary part (no header length).
        assert!(locate(&[("a", Some(1))], 0).is_err());
        // A huge declared size is refused by arithmetic alone: nothing is allocated for it.
        let err = locate(&[("a", Some(8)), ("b", Some(usize::MAX))], 16).unwrap_err();
        assert_eq!(err.code(), "binary_data_length");
        let err = locate(&[("a", Some(1 << 60))], 32).unwrap_err();
        assert!(err.to_string().contains("only 32 bytes"), "{err}");
    }

    #[test]
    fn declared_sizes_must_be_sizes() {
        let params = |v: Value| serde_json::from_value::<Map<String, Value>>(v).unwrap();
        assert_eq!(declared_size("x", None), Ok(None));
        assert_eq!(
            declared_size(
                "x",
                Some(&params(serde_json::json!({"binary_data_size": 32})))
            ),
            Ok(Some(32))
        );
        for bad in [
            serde_json::json!(-1),
            serde_json::json!(1.5),
            serde_json::json!("32"),
            serde_json::json!(null),
            serde_json::json!(1e30),
        ] {
            let p = params(serde_json::json!({ "binary_data_size": bad }));
            let err = declared_size("x", Some(&p)).unwrap_err();
            assert_eq!(err.code(), "binary_size_mismatch", "{bad}");
        }
    }
}
