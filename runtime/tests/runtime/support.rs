//! Reading the committed models and `expected.json`.

use std::path::PathBuf;

use flotilla_runtime::{LoadOptions, Model, Tensor};
use serde::Deserialize;

pub const FRAUD: &str = "fraud-1.0.0.onnx";
pub const FAULTY: &str = "fraud-1.2.0-faulty.onnx";
pub const VISION: &str = "vision-cnn-1.0.0.onnx";

/// Largest difference allowed between tract's and onnxruntime's outputs.
pub const TOLERANCE: f32 = 1e-5;

#[derive(Debug, Deserialize)]
pub struct Expected {
    pub nan_encoding: String,
    pub models: Vec<ExpectedModel>,
}

#[derive(Debug, Deserialize)]
pub struct ExpectedModel {
    pub file: String,
    pub sha256: String,
    pub inputs: Vec<ExpectedSpec>,
    pub outputs: Vec<ExpectedSpec>,
    pub cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
pub struct ExpectedSpec {
    pub name: String,
    pub datatype: String,
    pub shape: Vec<i64>,
}

#[derive(Debug, Deserialize)]
pub struct Case {
    pub inputs: Vec<ExpectedTensor>,
    pub outputs: Vec<ExpectedTensor>,
}

/// An FP32 tensor; `null` stands for NaN.
#[derive(Debug, Deserialize)]
pub struct ExpectedTensor {
    pub name: String,
    pub datatype: String,
    pub shape: Vec<usize>,
    pub data: Vec<Option<f32>>,
}

impl ExpectedTensor {
    pub fn values(&self) -> Vec<f32> {
        self.data.iter().map(|v| v.unwrap_or(f32::NAN)).collect()
    }

    pub fn to_tensor(&self) -> Tensor {
        assert_eq!(
            self.datatype, "FP32",
            "expected.json only holds FP32 tensors"
        );
        Tensor::new(self.name.clone(), self.shape.clone(), self.values())
    }
}

impl Case {
    pub fn input_tensors(&self) -> Vec<Tensor> {
        self.inputs.iter().map(ExpectedTensor::to_tensor).collect()
    }

    /// Whether onnxruntime produced a NaN for this case.
    pub fn has_nan(&self) -> bool {
        self.outputs
            .iter()
            .any(|o| o.data.iter().any(Option::is_none))
    }
}

pub fn models_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models")
}

pub fn expected() -> Expected {
    let text = std::fs::read_to_string(models_dir().join("expected.json"))
        .expect("models/expected.json is committed (python3 models/generate.py writes it)");
    serde_json::from_str(&text).expect("expected.json parses")
}

pub fn expected_model(file: &str) -> ExpectedModel {
    expected()
        .models
        .into_iter()
        .find(|m| m.file == file)
        .unwrap_or_else(|| panic!("{file} is not in expected.json"))
}

pub fn model_bytes(file: &str) -> Vec<u8> {
    std::fs::read(models_dir().join(file)).unwrap_or_else(|e| panic!("reading {file}: {e}"))
}

pub fn load(file: &str) -> Model {
    Model::load(&model_bytes(file), &LoadOptions::default())
        .unwrap_or_else(|e| panic!("loading {file}: {e}"))
}

/// Asserts that `actual` equals `expected` within [`TOLERANCE`], NaN matching NaN only.
pub fn assert_close(context: &str, actual: &[f32], expected: &[f32]) {
    assert_eq!(actual.len(), expected.len(), "{context}: number of values");
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        if e.is_nan() {
            assert!(a.is_nan(), "{context}[{i}]: expected NaN, got {a}");
        } else {
            assert!(
                (a - e).abs() <= TOLERANCE,
                "{context}[{i}]: expected {e}, got {a}"
            );
        }
    }
}
