//! Loading, running and smoke-testing a model. Everything tract-specific lives in this file.

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};

use std::sync::Arc;
use tract_onnx::prelude::{
    DatumType, Framework, InferenceModelExt, IntoRunnable, TDim, TValue, TVec, TractResult,
    TypedFact, TypedRunnableModel,
};

use crate::error::RuntimeError;
use crate::tensor::{shape_text, DataType, ModelSignature, Tensor, TensorData, TensorSpec};

/// How [`Model::load`] prepares a model.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Run the engine's optimiser (the default). Without it the model is only simplified: it
    /// loads faster and runs slower, which is enough to inspect or smoke-test it once.
    pub optimize: bool,
}

impl Default for LoadOptions {
    fn default() -> LoadOptions {
        LoadOptions { optimize: true }
    }
}

/// A dimension as the graph declares it; kept privately to check that a symbol such as the
/// batch size `N` takes one value across all inputs and outputs of a run.
#[derive(Debug, Clone, PartialEq)]
enum DeclaredDim {
    Fixed(usize),
    Symbol(String),
    /// An expression of symbols (`N+1`): the engine checks it.
    Expression,
}

/// A loaded, optimised ONNX model, ready to run.
///
/// `Model` is `Send + Sync`: share it behind an `Arc` and call [`Model::run`] from as many
/// threads as needed; each run has its own scratch state.
pub struct Model {
    plan: Arc<TypedRunnableModel>,
    signature: ModelSignature,
    input_dims: Vec<Vec<DeclaredDim>>,
    output_dims: Vec<Vec<DeclaredDim>>,
}

impl fmt::Debug for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Model")
            .field("signature", &self.signature)
            .finish_non_exhaustive()
    }
}

/// Reads a model's inputs and outputs, as the server does when a version is uploaded.
///
/// This parses and type-checks the whole graph (without optimising it), so a model that
/// `describe` accepts also loads, barring resource limits.
pub fn describe(bytes: &[u8]) -> Result<ModelSignature, RuntimeError> {
    let model = Model::load(bytes, &LoadOptions { optimize: false })?;
    Ok(model.signature)
}

impl Model {
    /// Parses ONNX bytes, resolves types and shapes, optimises and plans the graph.
    ///
    /// Symbolic dimensions (the ONNX `dim_param`s, typically the batch size) stay symbolic:
    /// one plan serves every batch size. External tensor data (weights in side files) is
    /// refused, since a model must be self-contained.
    pub fn load(bytes: &[u8], options: &LoadOptions) -> Result<Model, RuntimeError> {
        guarded(|| prepare(bytes, options)).map_err(RuntimeError::InvalidModel)?
    }

    /// The inputs and outputs.
    pub fn signature(&self) -> &ModelSignature {
        &self.signature
    }

    /// The inputs a request must provide, in graph order.
    pub fn inputs(&self) -> &[TensorSpec] {
        &self.signature.inputs
    }

    /// The outputs every run returns, in graph order.
    pub fn outputs(&self) -> &[TensorSpec] {
        &self.signature.outputs
    }

    /// Runs the model. Inputs may come in any order but each declared input exactly once; the
    /// outputs come back in declared order.
    ///
    /// Names, datatypes, shapes and data lengths are checked before anything runs
    /// ([`RuntimeError::InvalidInput`]); a failure inside the engine is
    /// [`RuntimeError::Inference`].
    pub fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, RuntimeError> {
        let (ordered, _) = self.check_inputs(inputs)?;
        self.run_checked(ordered)
    }

    /// Checks that the model gives a usable answer: runs it on `sample` (or, without one, on
    /// zeros of the declared shapes with every dynamic dimension set to 1), then checks that
    /// the outputs have the declared shapes and hold only finite numbers.
    ///
    /// Every failure, including a sample that does not fit the model, is
    /// [`RuntimeError::SmokeTest`].
    pub fn smoke_test(&self, sample: Option<Vec<Tensor>>) -> Result<(), RuntimeError> {
        let sample = sample.unwrap_or_else(|| self.zero_inputs());
        let smoke = |e: RuntimeError| RuntimeError::SmokeTest(e.to_string());
        let (ordered, symbols) = self.check_inputs(sample).map_err(smoke)?;
        let outputs = self.run_checked(ordered).map_err(smoke)?;
        for ((output, spec), declared) in outputs
            .iter()
            .zip(&self.signature.outputs)
            .zip(&self.output_dims)
        {
            let fits = spec.accepts_shape(&output.shape)
                && declared
                    .iter()
                    .zip(&output.shape)
                    .all(|(dim, &actual)| match dim {
                        DeclaredDim::Symbol(s) => symbols.get(s).is_none_or(|&v| v == actual),
                        _ => true,
                    });
            if !fits {
                return Err(RuntimeError::SmokeTest(format!(
                    "output `{}` has shape {}, expected {} for this input",
                    output.name,
                    shape_text(&output.shape),
                    expected_shape(declared, &symbols),
                )));
            }
            if !output.data.all_finite() {
                return Err(RuntimeError::SmokeTest(format!(
                    "output `{}` has non-finite values ({})",
                    output.name,
                    non_finite_summary(&output.data)
                )));
            }
        }
        Ok(())
    }

    fn zero_inputs(&self) -> Vec<Tensor> {
        self.signature
            .inputs
            .iter()
            .map(|spec| {
                let shape: Vec<usize> = spec
                    .shape
                    .iter()
                    .map(|&d| usize::try_from(d).unwrap_or(1))
                    .collect();
                let len = shape.iter().product();
                Tensor {
                    name: spec.name.clone(),
                    data: TensorData::zeros(spec.datatype, len),
                    shape,
                }
            })
            .collect()
    }

    /// Validates the inputs against the signature and puts them in graph order; also returns
    /// the value each dimension symbol takes.
    fn check_inputs(
        &self,
        inputs: Vec<Tensor>,
    ) -> Result<(Vec<Tensor>, HashMap<String, usize>), RuntimeError> {
        let specs = &self.signature.inputs;
        let mut slots: Vec<Option<Tensor>> = vec![None; specs.len()];
        for tensor in inputs {
            let Some(index) = specs.iter().position(|s| s.name == tensor.name) else {
                return Err(invalid(format!(
                    "unknown input `{}`; the model takes {}",
                    tensor.name,
                    name_list(specs)
                )));
            };
            if slots[index].is_some() {
                return Err(invalid(format!(
                    "input `{}` is given more than once",
                    tensor.name
                )));
            }
            check_tensor(&tensor, &specs[index])?;
            slots[index] = Some(tensor);
        }
        let mut ordered = Vec::with_capacity(specs.len());
        for (slot, spec) in slots.into_iter().zip(specs) {
            match slot {
                Some(tensor) => ordered.push(tensor),
                None => return Err(invalid(format!("missing input `{}`", spec.name))),
            }
        }
        let mut symbols: HashMap<String, (usize, &str)> = HashMap::new();
        for (tensor, declared) in ordered.iter().zip(&self.input_dims) {
            for (dim, &actual) in declared.iter().zip(&tensor.shape) {
                let DeclaredDim::Symbol(symbol) = dim else {
                    continue;
                };
                let (value, first) = *symbols
                    .entry(symbol.clone())
                    .or_insert((actual, &tensor.name));
                if value != actual {
                    return Err(invalid(format!(
                        "dimension `{symbol}` is {value} in input `{first}` but {actual} in input `{}`",
                        tensor.name
                    )));
                }
            }
        }
        let symbols = symbols.into_iter().map(|(k, (v, _))| (k, v)).collect();
        Ok((ordered, symbols))
    }

    fn run_checked(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, RuntimeError> {
        let values = inputs
            .iter()
            .map(|t| to_engine(t).map(TValue::from))
            .collect::<TractResult<TVec<TValue>>>()
            .map_err(|e| RuntimeError::Inference(format!("{e:#}")))?;
        let results = guarded(|| self.plan.run(values)).map_err(RuntimeError::Inference)?;
        if results.len() != self.signature.outputs.len() {
            return Err(RuntimeError::Inference(format!(
                "the engine returned {} outputs, the model declares {}",
                results.len(),
                self.signature.outputs.len()
            )));
        }
        results
            .iter()
            .zip(&self.signature.outputs)
            .map(|(value, spec)| {
                let data = from_engine(value, spec.datatype).map_err(|e| {
                    RuntimeError::Inference(format!("reading output `{}`: {e:#}", spec.name))
                })?;
                Ok(Tensor {
                    name: spec.name.clone(),
                    shape: value.shape().to_vec(),
                    data,
                })
            })
            .collect()
    }
}

fn invalid(message: String) -> RuntimeError {
    RuntimeError::InvalidInput(message)
}

fn check_tensor(tensor: &Tensor, spec: &TensorSpec) -> Result<(), RuntimeError> {
    if tensor.datatype() != spec.datatype {
        return Err(invalid(format!(
            "input `{}` must be {}, got {}",
            spec.name,
            spec.datatype,
            tensor.datatype()
        )));
    }
    if !spec.accepts_shape(&tensor.shape) {
        return Err(invalid(format!(
            "input `{}` must have shape {} (-1: any size), got {}",
            spec.name,
            shape_text(&spec.shape),
            shape_text(&tensor.shape)
        )));
    }
    if tensor.shape.contains(&0) {
        return Err(invalid(format!(
            "input `{}` has an empty dimension: {}",
            spec.name,
            shape_text(&tensor.shape)
        )));
    }
    let elements = tensor
        .shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d));
    if elements != Some(tensor.data.len()) {
        return Err(invalid(format!(
            "input `{}` has shape {} but {} values",
            spec.name,
            shape_text(&tensor.shape),
            tensor.data.len()
        )));
    }
    Ok(())
}

fn name_list(specs: &[TensorSpec]) -> String {
    let names: Vec<String> = specs.iter().map(|s| format!("`{}`", s.name)).collect();
    if names.is_empty() {
        "no inputs".to_owned()
    } else {
        names.join(", ")
    }
}

fn expected_shape(declared: &[DeclaredDim], symbols: &HashMap<String, usize>) -> String {
    let dims: Vec<String> = declared
        .iter()
        .map(|d| match d {
            DeclaredDim::Fixed(v) => v.to_string(),
            DeclaredDim::Symbol(s) => symbols
                .get(s)
                .map_or_else(|| s.clone(), ToString::to_string),
            DeclaredDim::Expression => "?".to_owned(),
        })
        .collect();
    format!("[{}]", dims.join(", "))
}

fn non_finite_summary(data: &TensorData) -> String {
    let flags: Vec<bool> = match data {
        TensorData::F32(v) => v.iter().map(|x| !x.is_finite()).collect(),
        TensorData::F64(v) => v.iter().map(|x| !x.is_finite()).collect(),
        _ => Vec::new(),
    };
    let count = flags.iter().filter(|&&bad| bad).count();
    let first = flags.iter().position(|&bad| bad).unwrap_or(0);
    format!(
        "{count} of {}, the first at flat index {first}",
        flags.len()
    )
}

/// Runs engine code, turning both its errors and its panics into a message: tract has code
/// paths that panic on malformed graphs, and a bad upload must not take a server down.
fn guarded<T>(f: impl FnOnce() -> TractResult<T>) -> Result<T, String> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(format!("{e:#}")),
        Err(payload) => Err(format!(
            "the inference engine panicked: {}",
            panic_text(&*payload)
        )),
    }
}

fn panic_text(payload: &(dyn Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

/// The part of `load` that talks to tract. Errors are returned as `InvalidModel`.
fn prepare(bytes: &[u8], options: &LoadOptions) -> TractResult<Result<Model, RuntimeError>> {
    let onnx = tract_onnx::onnx();
    let inference = onnx.model_for_read(&mut &*bytes)?;
    let input_names: Vec<String> = inference
        .input_outlets()?
        .iter()
        .map(|o| inference.node(o.node).name.clone())
        .collect();
    let output_names: Vec<String> = inference
        .output_outlets()?
        .iter()
        .map(|o| {
            inference
                .outlet_label(*o)
                .map_or_else(|| inference.node(o.node).name.clone(), str::to_owned)
        })
        .collect();
    let typed = inference.into_typed()?.into_decluttered()?;
    let typed = if options.optimize {
        typed.into_optimized()?
    } else {
        typed
    };

    let mut inputs = Vec::new();
    let mut input_dims = Vec::new();
    for (name, outlet) in input_names.into_iter().zip(typed.input_outlets()?) {
        match spec_of(&name, typed.outlet_fact(*outlet)?, "input") {
            Ok((spec, dims)) => {
                inputs.push(spec);
                input_dims.push(dims);
            }
            Err(e) => return Ok(Err(e)),
        }
    }
    let mut outputs = Vec::new();
    let mut output_dims = Vec::new();
    for (name, outlet) in output_names.into_iter().zip(typed.output_outlets()?) {
        match spec_of(&name, typed.outlet_fact(*outlet)?, "output") {
            Ok((spec, dims)) => {
                outputs.push(spec);
                output_dims.push(dims);
            }
            Err(e) => return Ok(Err(e)),
        }
    }
    let plan = typed.into_runnable()?;
    Ok(Ok(Model {
        plan,
        signature: ModelSignature { inputs, outputs },
        input_dims,
        output_dims,
    }))
}

fn spec_of(
    name: &str,
    fact: &TypedFact,
    role: &str,
) -> Result<(TensorSpec, Vec<DeclaredDim>), RuntimeError> {
    let datatype = datatype_of(fact.datum_type).ok_or_else(|| {
        RuntimeError::InvalidModel(format!(
            "{role} `{name}` has element type {:?}, which the runtime cannot exchange \
             (supported: {})",
            fact.datum_type,
            DataType::ALL
                .iter()
                .map(|d| d.name())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })?;
    let dims: Vec<DeclaredDim> = fact.shape.dims().iter().map(declared_dim).collect();
    let shape = dims
        .iter()
        .map(|d| match d {
            DeclaredDim::Fixed(v) => i64::try_from(*v).unwrap_or(-1),
            _ => -1,
        })
        .collect();
    Ok((
        TensorSpec {
            name: name.to_owned(),
            datatype,
            shape,
        },
        dims,
    ))
}

fn declared_dim(dim: &TDim) -> DeclaredDim {
    match dim {
        TDim::Val(v) => usize::try_from(*v).map_or(DeclaredDim::Expression, DeclaredDim::Fixed),
        TDim::Sym(symbol) => DeclaredDim::Symbol(symbol.to_string()),
        _ => DeclaredDim::Expression,
    }
}

fn datatype_of(datum: DatumType) -> Option<DataType> {
    Some(match datum {
        DatumType::Bool => DataType::Bool,
        DatumType::U8 => DataType::Uint8,
        DatumType::U16 => DataType::Uint16,
        DatumType::U32 => DataType::Uint32,
        DatumType::U64 => DataType::Uint64,
        DatumType::I8 => DataType::Int8,
        DatumType::I16 => DataType::Int16,
        DatumType::I32 => DataType::Int32,
        DatumType::I64 => DataType::Int64,
        DatumType::F32 => DataType::Fp32,
        DatumType::F64 => DataType::Fp64,
        _ => return None,
    })
}

fn to_engine(t: &Tensor) -> TractResult<tract_onnx::prelude::Tensor> {
    use tract_onnx::prelude::Tensor as Engine;
    match &t.data {
        TensorData::Bool(v) => Engine::from_shape(&t.shape, v),
        TensorData::U8(v) => Engine::from_shape(&t.shape, v),
        TensorData::U16(v) => Engine::from_shape(&t.shape, v),
        TensorData::U32(v) => Engine::from_shape(&t.shape, v),
        TensorData::U64(v) => Engine::from_shape(&t.shape, v),
        TensorData::I8(v) => Engine::from_shape(&t.shape, v),
        TensorData::I16(v) => Engine::from_shape(&t.shape, v),
        TensorData::I32(v) => Engine::from_shape(&t.shape, v),
        TensorData::I64(v) => Engine::from_shape(&t.shape, v),
        TensorData::F32(v) => Engine::from_shape(&t.shape, v),
        TensorData::F64(v) => Engine::from_shape(&t.shape, v),
    }
}

fn from_engine(value: &tract_onnx::prelude::Tensor, datatype: DataType) -> TractResult<TensorData> {
    let value = value.try_as_plain_ram()?;
    Ok(match datatype {
        DataType::Bool => TensorData::Bool(value.as_slice::<bool>()?.to_vec()),
        DataType::Uint8 => TensorData::U8(value.as_slice::<u8>()?.to_vec()),
        DataType::Uint16 => TensorData::U16(value.as_slice::<u16>()?.to_vec()),
        DataType::Uint32 => TensorData::U32(value.as_slice::<u32>()?.to_vec()),
        DataType::Uint64 => TensorData::U64(value.as_slice::<u64>()?.to_vec()),
        DataType::Int8 => TensorData::I8(value.as_slice::<i8>()?.to_vec()),
        DataType::Int16 => TensorData::I16(value.as_slice::<i16>()?.to_vec()),
        DataType::Int32 => TensorData::I32(value.as_slice::<i32>()?.to_vec()),
        DataType::Int64 => TensorData::I64(value.as_slice::<i64>()?.to_vec()),
        DataType::Fp32 => TensorData::F32(value.as_slice::<f32>()?.to_vec()),
        DataType::Fp64 => TensorData::F64(value.as_slice::<f64>()?.to_vec()),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn model_is_send_and_sync() {
        assert_send_sync::<Model>();
    }

    #[test]
    fn empty_bytes_are_an_invalid_model() {
        let err = Model::load(&[], &LoadOptions::default()).unwrap_err();
        assert!(matches!(err, RuntimeError::InvalidModel(_)), "{err:?}");
    }
}
