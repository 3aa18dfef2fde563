//! Bad models are `InvalidModel`, bad requests `InvalidInput`, each with a precise message.

use flotilla_runtime::{describe, LoadOptions, Model, RuntimeError, Tensor, TensorData};

use crate::support::{load, model_bytes, FRAUD, VISION};

fn load_error(bytes: &[u8]) -> String {
    match Model::load(bytes, &LoadOptions::default()) {
        Err(RuntimeError::InvalidModel(message)) => {
            assert!(
                matches!(describe(bytes), Err(RuntimeError::InvalidModel(_))),
                "describe agrees with load"
            );
            message
        }
        Err(other) => panic!("expected InvalidModel, got {other:?}"),
        Ok(model) => panic!("loaded an invalid model: {model:?}"),
    }
}

#[test]
fn empty_bytes_are_rejected() {
    let message = load_error(&[]);
    assert!(message.contains("graph"), "{message}");
}

#[test]
fn corrupt_bytes_are_rejected() {
    // Wire type 7 does not exist in protobuf: the decoder must stop at the first byte.
    let mut bytes = vec![0xFF, 0xFF, 0xFF, 0xFF];
    bytes.extend(model_bytes(FRAUD));
    load_error(&bytes);
}

#[test]
fn truncated_models_are_rejected() {
    for file in [FRAUD, VISION] {
        let bytes = model_bytes(file);
        for keep in [bytes.len() / 2, bytes.len() - 1] {
            let message = load_error(&bytes[..keep]);
            assert!(!message.is_empty(), "{file} cut at {keep}");
        }
    }
}

#[test]
fn files_that_are_not_onnx_are_rejected() {
    let expected_json =
        std::fs::read(crate::support::models_dir().join("expected.json")).expect("read");
    let png_header = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    for bytes in [b"this is not a model\n".to_vec(), png_header, expected_json] {
        load_error(&bytes);
    }
}

#[test]
fn unknown_operators_are_rejected() {
    let bytes = model_bytes(FRAUD);
    // Same length, so every protobuf length prefix stays valid: only the operator changes.
    let patched = replace_once(&bytes, b"\"\x04Relu", b"\"\x04Relx");
    let message = load_error(&patched);
    assert!(message.contains("Relx"), "{message}");
}

fn replace_once(haystack: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let at = haystack
        .windows(from.len())
        .position(|w| w == from)
        .expect("pattern present");
    let mut out = haystack.to_vec();
    out[at..at + to.len()].copy_from_slice(to);
    out
}

fn fraud_input(rows: usize) -> Tensor {
    Tensor::new("features", vec![rows, 8], vec![0.25f32; rows * 8])
}

fn input_error(inputs: Vec<Tensor>) -> String {
    match load(FRAUD).run(inputs) {
        Err(RuntimeError::InvalidInput(message)) => message,
        other => panic!("expected InvalidInput, got {other:?}"),
    }
}

#[test]
fn an_unknown_input_name_is_named() {
    let message = input_error(vec![Tensor::new("feature", vec![1, 8], vec![0f32; 8])]);
    assert_eq!(
        message,
        "unknown input `feature`; the model takes `features`"
    );
}

#[test]
fn a_missing_or_duplicated_input_is_named() {
    assert_eq!(input_error(vec![]), "missing input `features`");
    assert_eq!(
        input_error(vec![fraud_input(1), fraud_input(1)]),
        "input `features` is given more than once"
    );
}

#[test]
fn a_wrong_datatype_is_named() {
    let message = input_error(vec![Tensor::new("features", vec![1, 8], vec![0i64; 8])]);
    assert_eq!(message, "input `features` must be FP32, got INT64");
    let message = input_error(vec![Tensor::new(
        "features",
        vec![1, 8],
        TensorData::F64(vec![0.0; 8]),
    )]);
    assert_eq!(message, "input `features` must be FP32, got FP64");
}

#[test]
fn a_wrong_shape_is_named() {
    let message = input_error(vec![Tensor::new("features", vec![2, 7], vec![0f32; 14])]);
    assert_eq!(
        message,
        "input `features` must have shape [-1, 8] (-1: any size), got [2, 7]"
    );
    let message = input_error(vec![Tensor::new("features", vec![8], vec![0f32; 8])]);
    assert_eq!(
        message,
        "input `features` must have shape [-1, 8] (-1: any size), got [8]"
    );
    let message = input_error(vec![Tensor::new("features", vec![0, 8], Vec::<f32>::new())]);
    assert_eq!(message, "input `features` has an empty dimension: [0, 8]");
}

#[test]
fn data_not_matching_the_shape_is_rejected() {
    let message = input_error(vec![Tensor::new("features", vec![2, 8], vec![0f32; 15])]);
    assert_eq!(message, "input `features` has shape [2, 8] but 15 values");
    let huge = usize::MAX / 4;
    let message = input_error(vec![Tensor::new("features", vec![huge, 8], vec![0f32; 8])]);
    assert!(message.ends_with("but 8 values"), "{message}");
}

#[test]
fn a_vision_image_of_the_wrong_size_is_rejected() {
    let model = load(VISION);
    let image = Tensor::new("image", vec![1, 3, 28, 28], vec![0f32; 3 * 28 * 28]);
    match model.run(vec![image]) {
        Err(RuntimeError::InvalidInput(message)) => assert_eq!(
            message,
            "input `image` must have shape [-1, 3, 32, 32] (-1: any size), got [1, 3, 28, 28]"
        ),
        other => panic!("expected InvalidInput, got {other:?}"),
    }
}

#[test]
fn a_graph_that_makes_the_engine_panic_is_an_invalid_model() {
    // A Relu graph whose declared output `ghost` is produced by no node; tract 0.21 panics
    // ("no entry found for key") while wiring outputs. The runtime must turn that into an error.
    let ghost: &[u8] = b"\x08\x08\x3a\x37\x0a\x0c\x0a\x01\x78\x12\x01\x79\x22\x04\x52\x65\x6c\x75\
        \x12\x01\x67\x5a\x0f\x0a\x01\x78\x12\x0a\x0a\x08\x08\x01\x12\x04\x0a\x02\x08\x01\x62\x13\
        \x0a\x05\x67\x68\x6f\x73\x74\x12\x0a\x0a\x08\x08\x01\x12\x04\x0a\x02\x08\x01\x42\x04\x0a\
        \x00\x10\x0d";
    assert_eq!(ghost.len(), 65);
    let message = load_error(ghost);
    assert!(
        message.starts_with("the inference engine panicked"),
        "{message}"
    );
}
