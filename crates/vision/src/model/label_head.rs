//! Training a [`LabelHead`] (the softmax regression the index crate runs)
//! on the CPU backend: here because it needs Burn, which the browsing side
//! never loads.

use lookalike_index::{LabelHead, normalized};

/// Trains a head by full-batch gradient descent with Adam on the
/// cross-entropy, with a little L2 regularisation. `rows` are feature rows
/// (normalised here), `targets` their label numbers (indices into `labels`).
///
/// Each epoch is two matrix products on the CPU backend (logits, then the
/// weights' gradient), so a head over 2,000 rows of 1,308 values and 60
/// labels trains in a few seconds.
pub fn train(
    column: &str,
    labels: Vec<String>,
    rows: &[Vec<f32>],
    targets: &[usize],
    epochs: usize,
) -> LabelHead {
    use burn::tensor::{Device, Int, Tensor, TensorData};
    const LEARNING_RATE: f32 = 0.05;
    const L2: f32 = 1e-4;
    let (b1, b2, eps) = (0.9f32, 0.999f32, 1e-8f32);
    let dim = rows.first().map_or(0, Vec::len);
    let classes = labels.len();
    let n = rows.len();
    if n == 0 || classes == 0 {
        return LabelHead {
            column: column.to_string(),
            labels,
            feature_dim: dim,
            weights: vec![0.0; classes * dim],
            bias: vec![0.0; classes],
        };
    }
    let device = Device::flex();
    let flat: Vec<f32> = rows.iter().flat_map(|r| normalized(r)).collect();
    let x: Tensor<2> = Tensor::from_data(TensorData::new(flat, [n, dim]), &device);
    let target_numbers: Vec<i64> = targets.iter().map(|&t| t as i64).collect();
    let y: Tensor<2> = Tensor::<1, Int>::from_data(TensorData::new(target_numbers, [n]), &device)
        .one_hot(classes)
        .float();
    let mut w: Tensor<2> = Tensor::zeros([classes, dim], &device);
    let mut b: Tensor<1> = Tensor::zeros([classes], &device);
    let (mut mw, mut vw) = (w.zeros_like(), w.zeros_like());
    let (mut mb, mut vb) = (b.zeros_like(), b.zeros_like());
    for epoch in 1..=epochs {
        let logits = x.clone().matmul(w.clone().transpose()) + b.clone().unsqueeze::<2>();
        let p = burn::tensor::activation::softmax(logits, 1);
        let error = (p - y.clone()) / n as f32;
        let grad_w = error.clone().transpose().matmul(x.clone()) + w.clone() * L2;
        let grad_b: Tensor<1> = error.sum_dim(0).squeeze_dim(0);
        let (c1, c2) = (1.0 - b1.powi(epoch as i32), 1.0 - b2.powi(epoch as i32));
        mw = mw * b1 + grad_w.clone() * (1.0 - b1);
        vw = vw * b2 + grad_w.powi_scalar(2) * (1.0 - b2);
        w = w - (mw.clone() / c1) * LEARNING_RATE / ((vw.clone() / c2).sqrt() + eps);
        mb = mb * b1 + grad_b.clone() * (1.0 - b1);
        vb = vb * b2 + grad_b.powi_scalar(2) * (1.0 - b2);
        b = b - (mb.clone() / c1) * LEARNING_RATE / ((vb.clone() / c2).sqrt() + eps);
    }
    let read = |t: TensorData| t.try_to_vec::<f32>().expect("f32 parameters");
    LabelHead {
        column: column.to_string(),
        labels,
        feature_dim: dim,
        weights: read(w.into_data()),
        bias: read(b.into_data()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learns_separable_classes_and_round_trips() {
        // Three clusters around three axes of a 6-d space.
        let mut rows = Vec::new();
        let mut targets = Vec::new();
        for i in 0..60 {
            let class = i % 3;
            let mut v = vec![0.1 * ((i * 7 % 5) as f32 - 2.0); 6];
            v[class] += 3.0;
            rows.push(v);
            targets.push(class);
        }
        let head = train("kind", vec!["a".into(), "b".into(), "c".into()], &rows, &targets, 100);
        let correct = rows
            .iter()
            .zip(&targets)
            .filter(|&(r, &t)| head.predict(r).label == head.labels[t])
            .count();
        assert_eq!(correct, 60);
        let saved = serde_json::to_vec(&head).unwrap();
        // Saved to 4 decimals: the same labels, every parameter within 0.00005.
        let loaded = LabelHead::from_json(&saved, "head.json").unwrap();
        assert_eq!(
            (&loaded.column, &loaded.labels, loaded.feature_dim),
            (&head.column, &head.labels, head.feature_dim)
        );
        let saved_params = loaded.weights.iter().chain(&loaded.bias);
        assert!(
            saved_params
                .zip(head.weights.iter().chain(&head.bias))
                .all(|(a, b)| (a - b).abs() <= 5e-5 + 1e-7)
        );
        assert!(rows.iter().all(|r| loaded.predict(r).label == head.predict(r).label));
        let prediction = head.predict(&[0.0, 0.0, 5.0, 0.0, 0.0, 0.0]);
        assert_eq!(prediction.label, "c");
        assert!(prediction.confidence > 0.5);
    }
}
