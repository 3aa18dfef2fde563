//! Loads an ONNX model through the runtime, smoke-tests it and times a few runs on zeros.
//!
//! ```sh
//! python3 models/generate.py --mobilenet /tmp/mobilenet-v2-like.onnx
//! cargo run --release -p flotilla-runtime --example time_model -- /tmp/mobilenet-v2-like.onnx 20
//! ```

use std::time::Instant;

use flotilla_runtime::{LoadOptions, Model, Tensor, TensorData};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args.next().ok_or("usage: time_model MODEL.onnx [RUNS]")?;
    let runs: u32 = args.next().map_or(Ok(10), |r| r.parse())?;
    let bytes = std::fs::read(&path)?;

    let started = Instant::now();
    let model = Model::load(&bytes, &LoadOptions::default())?;
    println!("load + optimise: {:?}", started.elapsed());
    for spec in model.inputs().iter().chain(model.outputs()) {
        println!("  {} {} {:?}", spec.name, spec.datatype, spec.shape);
    }

    let started = Instant::now();
    model.smoke_test(None)?;
    println!("smoke test: {:?}", started.elapsed());

    let inputs: Vec<Tensor> = model
        .inputs()
        .iter()
        .map(|spec| {
            let shape: Vec<usize> = spec
                .shape
                .iter()
                .map(|&d| usize::try_from(d).unwrap_or(1))
                .collect();
            let len = shape.iter().product();
            Tensor::new(
                spec.name.clone(),
                shape,
                TensorData::zeros(spec.datatype, len),
            )
        })
        .collect();
    let started = Instant::now();
    for _ in 0..runs {
        model.run(inputs.clone())?;
    }
    println!(
        "{runs} runs, batch 1: {:?} per run",
        started.elapsed() / runs.max(1)
    );
    Ok(())
}
