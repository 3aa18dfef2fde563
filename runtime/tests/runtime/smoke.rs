//! The smoke test the agent runs before swapping a model in.

use flotilla_runtime::{RuntimeError, Tensor};

use crate::support::{expected, expected_model, load, FAULTY};

#[test]
fn good_models_pass_on_zeros_and_on_their_reference_inputs() {
    for entry in expected().models {
        let model = load(&entry.file);
        model
            .smoke_test(None)
            .unwrap_or_else(|e| panic!("{}: {e}", entry.file));
        for case in entry.cases.iter().filter(|c| !c.has_nan()) {
            model
                .smoke_test(Some(case.input_tensors()))
                .unwrap_or_else(|e| panic!("{}: {e}", entry.file));
        }
    }
}

#[test]
fn the_faulty_model_fails_on_a_sample_that_triggers_nan() {
    let entry = expected_model(FAULTY);
    let model = load(FAULTY);
    let poisoned: Vec<_> = entry.cases.iter().filter(|c| c.has_nan()).collect();
    assert!(
        poisoned.len() >= 2,
        "expected.json has NaN-triggering cases"
    );
    for case in poisoned {
        match model.smoke_test(Some(case.input_tensors())) {
            Err(RuntimeError::SmokeTest(message)) => {
                assert!(
                    message.starts_with("output `probabilities` has non-finite values"),
                    "{message}"
                );
            }
            other => panic!("expected SmokeTest, got {other:?}"),
        }
    }
    let single = Tensor::new("features", vec![1, 8], vec![0.75f32; 8]);
    let err = model
        .smoke_test(Some(vec![single]))
        .expect_err("NaN sample");
    assert_eq!(
        err,
        RuntimeError::SmokeTest(
            "output `probabilities` has non-finite values (2 of 2, the first at flat index 0)"
                .into()
        )
    );
}

#[test]
fn a_sample_that_does_not_fit_the_model_fails_the_smoke_test() {
    let model = load(FAULTY);
    let wrong = Tensor::new("features", vec![1, 4], vec![0f32; 4]);
    match model.smoke_test(Some(vec![wrong])) {
        Err(RuntimeError::SmokeTest(message)) => assert!(message.contains("[1, 4]"), "{message}"),
        other => panic!("expected SmokeTest, got {other:?}"),
    }
}
