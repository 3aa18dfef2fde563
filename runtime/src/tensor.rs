//! Engine-neutral tensors and signatures, named the way the Open Inference Protocol
//! (KServe v2) names them, so the HTTP layers can map them one to one.

use std::fmt;

/// Declares, from one table, the element types the runtime exchanges: the [`DataType`] enum,
/// the [`TensorData`] enum, and the conversions between them and Rust element types.
macro_rules! element_types {
    ($( $dtype:ident / $data:ident / $rust:ident / $name:literal ),* $(,)?) => {
        /// Element type of a tensor, one of the KServe v2 datatype names the runtime exchanges.
        ///
        /// `FP16` and `BYTES` are not supported: a model using them at its inputs or outputs
        /// is rejected at load time.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum DataType {
            $(
                #[doc = concat!("`", $name, "`: `", stringify!($rust), "` elements.")]
                $dtype,
            )*
        }

        impl DataType {
            /// Every supported datatype.
            pub const ALL: &'static [DataType] = &[$(DataType::$dtype),*];

            /// The KServe v2 name, for instance `"FP32"`.
            pub fn name(self) -> &'static str {
                match self {
                    $(DataType::$dtype => $name,)*
                }
            }

            /// Parses a KServe v2 datatype name (exact, upper case); `None` for names the
            /// runtime does not support.
            pub fn from_name(name: &str) -> Option<DataType> {
                match name {
                    $($name => Some(DataType::$dtype),)*
                    _ => None,
                }
            }
        }

        /// The flat, row-major elements of a tensor.
        #[derive(Debug, Clone, PartialEq)]
        pub enum TensorData {
            $(
                #[doc = concat!("`", $name, "` elements.")]
                $data(Vec<$rust>),
            )*
        }

        impl TensorData {
            /// The datatype of the elements.
            pub fn datatype(&self) -> DataType {
                match self {
                    $(TensorData::$data(_) => DataType::$dtype,)*
                }
            }

            /// Number of elements.
            pub fn len(&self) -> usize {
                match self {
                    $(TensorData::$data(v) => v.len(),)*
                }
            }

            /// `len` elements of value zero (`false` for `BOOL`).
            pub fn zeros(datatype: DataType, len: usize) -> TensorData {
                match datatype {
                    $(DataType::$dtype => TensorData::$data(vec![<$rust>::default(); len]),)*
                }
            }
        }

        $(
            impl From<Vec<$rust>> for TensorData {
                fn from(values: Vec<$rust>) -> TensorData {
                    TensorData::$data(values)
                }
            }
        )*
    };
}

element_types! {
    Bool / Bool / bool / "BOOL",
    Uint8 / U8 / u8 / "UINT8",
    Uint16 / U16 / u16 / "UINT16",
    Uint32 / U32 / u32 / "UINT32",
    Uint64 / U64 / u64 / "UINT64",
    Int8 / I8 / i8 / "INT8",
    Int16 / I16 / i16 / "INT16",
    Int32 / I32 / i32 / "INT32",
    Int64 / I64 / i64 / "INT64",
    Fp32 / F32 / f32 / "FP32",
    Fp64 / F64 / f64 / "FP64",
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl TensorData {
    /// True when there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The elements if they are `FP32`.
    pub fn as_f32(&self) -> Option<&[f32]> {
        match self {
            TensorData::F32(v) => Some(v),
            _ => None,
        }
    }

    /// Whether every element is finite; integers and booleans always are.
    pub fn all_finite(&self) -> bool {
        match self {
            TensorData::F32(v) => v.iter().all(|x| x.is_finite()),
            TensorData::F64(v) => v.iter().all(|x| x.is_finite()),
            _ => true,
        }
    }
}

/// A named tensor going into or coming out of a model.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// The model input or output name.
    pub name: String,
    /// Concrete dimensions, outermost first.
    pub shape: Vec<usize>,
    /// Row-major elements; their count must equal the product of `shape`.
    pub data: TensorData,
}

impl Tensor {
    /// Builds a tensor. Nothing is checked here: [`crate::Model::run`] validates against the
    /// model's signature.
    pub fn new(name: impl Into<String>, shape: Vec<usize>, data: impl Into<TensorData>) -> Tensor {
        Tensor {
            name: name.into(),
            shape,
            data: data.into(),
        }
    }

    /// The datatype of the elements.
    pub fn datatype(&self) -> DataType {
        self.data.datatype()
    }
}

/// The declared name, datatype and shape of a model input or output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    /// Input or output name, as in the ONNX graph.
    pub name: String,
    /// Element type.
    pub datatype: DataType,
    /// Dimensions; `-1` marks a dynamic one (such as the batch dimension).
    pub shape: Vec<i64>,
}

impl TensorSpec {
    /// Whether a concrete shape fits this spec: same rank, equal fixed dimensions.
    pub fn accepts_shape(&self, shape: &[usize]) -> bool {
        self.shape.len() == shape.len()
            && self
                .shape
                .iter()
                .zip(shape)
                .all(|(&declared, &actual)| declared < 0 || usize::try_from(declared) == Ok(actual))
    }
}

/// What a model takes and returns, in graph order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSignature {
    /// The inputs a request must provide, each exactly once.
    pub inputs: Vec<TensorSpec>,
    /// The outputs every run returns.
    pub outputs: Vec<TensorSpec>,
}

/// Formats a shape as `[a, b]`, with `-1` kept for dynamic dimensions.
pub(crate) fn shape_text<T: fmt::Display>(shape: &[T]) -> String {
    let dims: Vec<String> = shape.iter().map(ToString::to_string).collect();
    format!("[{}]", dims.join(", "))
}
