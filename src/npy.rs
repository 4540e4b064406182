//! Writing and reading `.npy` float32 matrices (NumPy's format, version 1.0),
//! so embeddings can be used by other tools.

use anyhow::{Context, Result, bail};
use std::path::Path;

const MAGIC: &[u8] = b"\x93NUMPY\x01\x00";

/// Encodes a row-major `rows x cols` float32 matrix.
pub fn encode_f32(values: &[f32], rows: usize, cols: usize) -> Vec<u8> {
    assert_eq!(values.len(), rows * cols);
    let mut header =
        format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    // Magic (8) + length (2) + header + newline, padded to a multiple of 64.
    let unpadded = MAGIC.len() + 2 + header.len() + 1;
    header.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    header.push('\n');
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend(values.iter().flat_map(|v| v.to_le_bytes()));
    out
}

/// Reads a float32 `.npy` matrix written by [`encode_f32`] (or NumPy).
pub fn read_f32(path: &Path) -> Result<(Vec<f32>, usize, usize)> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if bytes.len() < 10 || &bytes[..8] != MAGIC {
        bail!("{}: not a version 1.0 .npy file", path.display());
    }
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(bytes.get(10..10 + header_len).unwrap_or_default())
        .with_context(|| format!("{}: bad header", path.display()))?;
    if !header.contains("'descr': '<f4'") || header.contains("'fortran_order': True") {
        bail!("{}: expected little-endian float32 in C order", path.display());
    }
    let shape = header
        .split("'shape': (")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .with_context(|| format!("{}: no shape in header", path.display()))?;
    let dims: Vec<usize> = shape.split(',').filter_map(|d| d.trim().parse().ok()).collect();
    let [rows, cols] = dims[..] else {
        bail!("{}: expected a 2-d matrix, shape ({shape})", path.display())
    };
    let data = &bytes[10 + header_len..];
    if data.len() != rows * cols * 4 {
        bail!("{}: {} data bytes for shape ({rows}, {cols})", path.display(), data.len());
    }
    let values =
        data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    Ok((values, rows, cols))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_pads_the_header() {
        let values: Vec<f32> = (0..6).map(|i| i as f32 / 3.0).collect();
        let bytes = encode_f32(&values, 2, 3);
        let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!((10 + header_len) % 64, 0);
        let path = std::env::temp_dir().join(format!("lookalike-npy-{}.npy", std::process::id()));
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(read_f32(&path).unwrap(), (values, 2, 3));
        std::fs::remove_file(path).unwrap();
    }
}
