//! Reading model outputs back to the host, the one step that differs by target.
//!
//! In the browser a WebGPU buffer can only be mapped from a future (a
//! synchronous read panics), so the detectors are written as async code;
//! natively the CPU backend's futures are already complete when first polled,
//! and [`block_on`] drives them without an executor.

use super::DetectError;
use crate::model::tfjs::Value;

/// The outputs of `model` as flat host vectors, in order.
pub async fn read_values(
    values: Vec<Value>,
    model: &'static str,
) -> Result<Vec<Vec<f32>>, DetectError> {
    let failed = |message: String| DetectError::Readback { model, message };
    let mut out = Vec::with_capacity(values.len());
    for value in values {
        let data = value.tensor.into_data_async().await.map_err(|e| failed(format!("{e:?}")))?;
        out.push(
            data.convert::<f32>().try_into_vec::<f32>().map_err(|e| failed(format!("{e:?}")))?,
        );
    }
    Ok(out)
}

/// Runs a future to completion on this thread (native only; the futures here
/// never wait on anything but the CPU backend, so polling in a loop is enough).
#[cfg(not(target_arch = "wasm32"))]
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    use std::task::{Context, Poll, Waker};
    let mut future = std::pin::pin!(future);
    let mut context = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
        std::thread::yield_now();
    }
}
