//! One `Model` shared by several threads gives every thread the single-threaded answers.

use std::sync::Arc;

use flotilla_runtime::Tensor;

use crate::support::{expected_model, load, FRAUD, VISION};

const THREADS: usize = 4;
const ROUNDS: usize = 10;

#[test]
fn four_threads_sharing_one_model_get_identical_answers() {
    for file in [VISION, FRAUD] {
        let model = Arc::new(load(file));
        let cases: Vec<Vec<Tensor>> = expected_model(file)
            .cases
            .iter()
            .map(|c| c.input_tensors())
            .collect();
        let reference: Vec<Vec<Tensor>> = cases
            .iter()
            .map(|inputs| model.run(inputs.clone()).expect("run"))
            .collect();
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..THREADS)
                .map(|thread| {
                    let model = Arc::clone(&model);
                    let (cases, reference) = (&cases, &reference);
                    scope.spawn(move || {
                        for round in 0..ROUNDS {
                            // Threads walk the cases in different orders so batch sizes interleave.
                            for i in 0..cases.len() {
                                let i = (i + thread + round) % cases.len();
                                let outputs = model.run(cases[i].clone()).expect("run");
                                assert_eq!(
                                    outputs, reference[i],
                                    "{file} thread {thread} case {i}"
                                );
                            }
                        }
                    })
                })
                .collect();
            for handle in handles {
                handle.join().expect("thread finished");
            }
        });
    }
}
