//! The one seam around tract. **Architecture invariant**: nothing outside this crate uses tract.
//!
//! The public API speaks only in engine-neutral types ([`Tensor`], [`TensorSpec`],
//! [`DataType`] with KServe v2 names), so the agent and the server never see tract types and
//! the engine could be swapped behind this crate.
//!
//! ```no_run
//! use flotilla_runtime::{LoadOptions, Model, Tensor};
//!
//! # fn main() -> Result<(), flotilla_runtime::RuntimeError> {
//! let bytes = std::fs::read("models/fraud-1.0.0.onnx").unwrap_or_default();
//! let model = Model::load(&bytes, &LoadOptions::default())?;
//! model.smoke_test(None)?;
//! let outputs = model.run(vec![Tensor::new("features", vec![1, 8], vec![0.5f32; 8])])?;
//! println!("{:?}", outputs[0].data.as_f32());
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

mod error;
mod model;
mod tensor;

pub use error::RuntimeError;
pub use model::{describe, LoadOptions, Model};
pub use tensor::{DataType, ModelSignature, Tensor, TensorData, TensorSpec};
