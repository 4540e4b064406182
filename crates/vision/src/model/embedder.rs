//! Batch inference: prepared images in, one feature vector per image out.
//!
//! Reading results back is synchronous natively and asynchronous in the
//! browser, where WebGPU buffers can only be mapped from a future (a
//! synchronous read panics there). Both paths share the same graph.

use super::{EfficientNetLite, FEATURE_DIM};
use crate::preprocess::EMBED_INPUT_SIZE;
use burn::tensor::{Device, Tensor, TensorData};

#[derive(Debug, thiserror::Error)]
#[error("embedding failed: {0}")]
pub struct EmbedError(String);

/// An embedder bound to a device (WebGPU or CPU).
#[derive(Debug, Clone)]
pub struct Embedder {
    model: EfficientNetLite,
    device: Device,
}

impl Embedder {
    pub fn new(model: EfficientNetLite, device: Device) -> Self {
        Self { model, device }
    }

    pub fn model(&self) -> &EfficientNetLite {
        &self.model
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Stacks model inputs (each from [`crate::preprocess::model_input`]) into one
    /// `[batch, 3, 224, 224]` tensor on this embedder's device.
    fn batch(&self, inputs: &[Vec<f32>]) -> Tensor<4> {
        let side = EMBED_INPUT_SIZE as usize;
        let mut flat = Vec::with_capacity(inputs.len() * 3 * side * side);
        for input in inputs {
            assert_eq!(input.len(), 3 * side * side, "model input must be 3x224x224");
            flat.extend_from_slice(input);
        }
        let data = TensorData::new(flat, [inputs.len(), 3, side, side]);
        Tensor::from_data(data, &self.device)
    }

    fn split_rows(
        data: TensorData,
        rows: usize,
        width: usize,
    ) -> Result<Vec<Vec<f32>>, EmbedError> {
        let flat = data.try_to_vec::<f32>().map_err(|e| EmbedError(format!("{e:?}")))?;
        debug_assert_eq!(flat.len(), rows * width);
        Ok(flat.chunks_exact(width).map(<[f32]>::to_vec).collect())
    }

    /// Embeds a batch, reading the result asynchronously (required on WebGPU).
    pub async fn embed_batch_async(
        &self,
        inputs: &[Vec<f32>],
    ) -> Result<Vec<Vec<f32>>, EmbedError> {
        if inputs.is_empty() {
            return Ok(Vec::new());
        }
        let features = self.model.features(self.batch(inputs));
        let data = features.into_data_async().await.map_err(|e| EmbedError(format!("{e:?}")))?;
        Self::split_rows(data, inputs.len(), FEATURE_DIM)
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl Embedder {
    /// Embeds a batch, blocking until the result is read back.
    pub fn embed_batch(&self, inputs: &[Vec<f32>]) -> Result<Vec<Vec<f32>>, EmbedError> {
        if inputs.is_empty() {
            return Ok(Vec::new());
        }
        let features = self.model.features(self.batch(inputs));
        let data = features.try_into_data().map_err(|e| EmbedError(format!("{e:?}")))?;
        Self::split_rows(data, inputs.len(), FEATURE_DIM)
    }

    /// Embeds many inputs on `lanes` threads, one image at a time per lane,
    /// each lane on its own one-thread pool. On CPUs this beats batching and
    /// Flex's own intra-op threads (measured on 2 cores: 41 images/s for one
    /// lane at batch 1, 29 for two threads at batch 16), because one image's
    /// activations stay in cache and the lanes never wait on each other.
    pub fn embed_lanes(
        &self,
        inputs: &[Vec<f32>],
        lanes: usize,
    ) -> Result<Vec<Vec<f32>>, EmbedError> {
        use std::sync::OnceLock;
        use std::sync::atomic::{AtomicUsize, Ordering};
        let next = AtomicUsize::new(0);
        let slots: Vec<OnceLock<Result<Vec<f32>, EmbedError>>> =
            inputs.iter().map(|_| OnceLock::new()).collect();
        std::thread::scope(|scope| {
            for _ in 0..lanes.clamp(1, inputs.len().max(1)) {
                scope.spawn(|| {
                    let pool = rayon::ThreadPoolBuilder::new()
                        .num_threads(1)
                        .build()
                        .expect("a one-thread pool");
                    pool.install(|| {
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            let Some(input) = inputs.get(i) else { break };
                            let embedded = self
                                .embed_batch(std::slice::from_ref(input))
                                .map(|mut v| v.remove(0));
                            let _ = slots[i].set(embedded);
                        }
                    });
                });
            }
        });
        slots
            .into_iter()
            .map(|slot| slot.into_inner().expect("every input was taken by a lane"))
            .collect()
    }

    /// ImageNet logits for a batch; `None` when the model has no classifier.
    pub fn classify_batch(&self, inputs: &[Vec<f32>]) -> Option<Result<Vec<Vec<f32>>, EmbedError>> {
        let logits = self.model.classify(self.batch(inputs))?;
        let classes = logits.dims()[1];
        Some(
            logits
                .try_into_data()
                .map_err(|e| EmbedError(format!("{e:?}")))
                .and_then(|data| Self::split_rows(data, inputs.len(), classes)),
        )
    }
}
