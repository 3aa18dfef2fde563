//! tract must agree with onnxruntime on every committed model.

use std::collections::BTreeSet;

use flotilla_runtime::{describe, LoadOptions, Model};
use sha2::{Digest, Sha256};

use crate::support::{assert_close, expected, model_bytes, models_dir};

#[test]
fn every_committed_model_is_described_in_expected_json_with_its_hash() {
    let expected = expected();
    assert_eq!(expected.nan_encoding, "null");
    let on_disk: BTreeSet<String> = std::fs::read_dir(models_dir())
        .expect("models/ exists")
        .map(|entry| {
            entry
                .expect("directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| name.ends_with(".onnx"))
        .collect();
    let listed: BTreeSet<String> = expected.models.iter().map(|m| m.file.clone()).collect();
    assert_eq!(on_disk, listed);
    assert_eq!(listed.len(), 6);
    for model in &expected.models {
        let digest = hex::encode(Sha256::digest(model_bytes(&model.file)));
        assert_eq!(
            digest, model.sha256,
            "{} changed without regenerating",
            model.file
        );
    }
}

#[test]
fn signatures_are_the_declared_ones() {
    for entry in expected().models {
        let signature = describe(&model_bytes(&entry.file)).expect("describe");
        for (actual, declared) in [
            (&signature.inputs, &entry.inputs),
            (&signature.outputs, &entry.outputs),
        ] {
            let actual: Vec<_> = actual
                .iter()
                .map(|s| (s.name.as_str(), s.datatype.name(), s.shape.clone()))
                .collect();
            let declared: Vec<_> = declared
                .iter()
                .map(|s| (s.name.as_str(), s.datatype.as_str(), s.shape.clone()))
                .collect();
            assert_eq!(actual, declared, "{}", entry.file);
        }
        let model = Model::load(&model_bytes(&entry.file), &LoadOptions::default()).expect("load");
        assert_eq!(
            model.signature(),
            &signature,
            "{}: describe and load agree",
            entry.file
        );
    }
}

#[test]
fn outputs_match_onnxruntime_with_and_without_optimisation() {
    let mut compared = 0;
    for entry in expected().models {
        for optimize in [true, false] {
            let model = Model::load(&model_bytes(&entry.file), &LoadOptions { optimize })
                .unwrap_or_else(|e| panic!("{}: {e}", entry.file));
            for (i, case) in entry.cases.iter().enumerate() {
                let outputs = model.run(case.input_tensors()).expect("run");
                assert_eq!(outputs.len(), case.outputs.len());
                for (actual, reference) in outputs.iter().zip(&case.outputs) {
                    let context = format!(
                        "{} case {i} output {} optimize={optimize}",
                        entry.file, reference.name
                    );
                    assert_eq!(actual.name, reference.name, "{context}");
                    assert_eq!(actual.shape, reference.shape, "{context}");
                    let values = actual.data.as_f32().expect("FP32 output");
                    assert_close(&context, values, &reference.values());
                    compared += values.len();
                }
            }
        }
    }
    assert!(compared > 100, "compared only {compared} values");
}

#[test]
fn faulty_model_gives_nan_exactly_for_rows_with_feature_0_above_one_half() {
    let model = crate::support::load(crate::support::FAULTY);
    let rows: Vec<f32> = [0.5, 0.5001, -3.0, 2.0]
        .iter()
        .flat_map(|&f0| std::iter::once(f0).chain(std::iter::repeat_n(0.25, 7)))
        .collect();
    let input = flotilla_runtime::Tensor::new("features", vec![4, 8], rows);
    let outputs = model.run(vec![input]).expect("run");
    let probabilities = outputs[0].data.as_f32().expect("FP32");
    let nan_rows: Vec<bool> = probabilities
        .chunks(2)
        .map(|row| row.iter().all(|p| p.is_nan()))
        .collect();
    assert_eq!(nan_rows, [false, true, false, true]);
    for row in probabilities.chunks(2).step_by(2) {
        assert!(
            (row[0] + row[1] - 1.0).abs() < 1e-5,
            "healthy rows are probabilities: {row:?}"
        );
    }
}

#[test]
fn one_plan_serves_every_batch_size() {
    let entry = crate::support::expected_model(crate::support::FRAUD);
    let model = crate::support::load(crate::support::FRAUD);
    let case = entry
        .cases
        .iter()
        .max_by_key(|c| c.inputs[0].shape[0])
        .expect("a case");
    let rows = case.inputs[0].values();
    let reference = case.outputs[0].values();
    let total = case.inputs[0].shape[0];
    for batch in 1..=total {
        for start in (0..total).step_by(batch) {
            let end = (start + batch).min(total);
            let input = flotilla_runtime::Tensor::new(
                "features",
                vec![end - start, 8],
                rows[start * 8..end * 8].to_vec(),
            );
            let outputs = model.run(vec![input]).expect("run");
            assert_eq!(outputs[0].shape, [end - start, 2]);
            let context = format!("batch {batch} rows {start}..{end}");
            assert_close(
                &context,
                outputs[0].data.as_f32().expect("FP32"),
                &reference[start * 2..end * 2],
            );
        }
    }
}
