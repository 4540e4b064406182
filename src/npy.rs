//! Writing and reading `.npy` float32 matrices (NumPy's format, version 1.0),
//! so embeddings can be used by other tools.

use anyhow::{Context, Result, bail};
use std::path::Path;

const MAGIC: &[u8] = b"\x93NUMPY\x01\x00";

/// Encodes a row-major `rows x cols` float32 matrix.
pub fn encode_f32(values: &[f32], rows: usize, cols: usize) -> Vec<u8> {
    assert_eq!(values.len(), rows * cols);
    let mut out = header_f32(rows, cols);
    out.extend(values.iter().flat_map(|v| v.to_le_bytes()));
    out
}

/// The bytes before the values of a `rows x cols` float32 matrix, for
/// writers that stream the values after it.
pub fn header_f32(rows: usize, cols: usize) -> Vec<u8> {
    let mut header =
        format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    // Magic (8) + length (2) + header + newline, padded to a multiple of 64.
    let unpadded = MAGIC.len() + 2 + header.len() + 1;
    header.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    header.push('\n');
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out
}

/// A float32 `.npy` matrix mapped from its file, not read into memory: a
/// million 1280-d embeddings are 5 GB, and a build only walks through them.
pub struct MappedMatrix {
    map: memmap2::Mmap,
    start: usize,
    pub rows: usize,
    pub cols: usize,
}

impl MappedMatrix {
    /// Row-major values (the data is 4-byte aligned: headers pad to 64).
    pub fn values(&self) -> &[f32] {
        bytemuck_f32(&self.map[self.start..self.start + self.rows * self.cols * 4])
    }
}

fn bytemuck_f32(bytes: &[u8]) -> &[f32] {
    assert!(
        (bytes.as_ptr() as usize).is_multiple_of(4) && bytes.len().is_multiple_of(4),
        "npy data is aligned"
    );
    const { assert!(cfg!(target_endian = "little")) };
    // SAFETY: aligned, whole f32s, every bit pattern is a valid f32, and the
    // map lives as long as the returned slice's borrow.
    unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<f32>(), bytes.len() / 4) }
}

/// Maps a float32 `.npy` matrix written by [`encode_f32`] (or NumPy).
pub fn map_f32(path: &Path) -> Result<MappedMatrix> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    // SAFETY: the file is only read; a file truncated under the map would
    // fault, which the build accepts for its own input files.
    let map = unsafe { memmap2::Mmap::map(&file) }
        .with_context(|| format!("mapping {}", path.display()))?;
    let (start, rows, cols) = parse_header(&map, path)?;
    if start % 4 != 0 {
        bail!("{}: data does not start on a 4-byte boundary", path.display());
    }
    Ok(MappedMatrix { map, start, rows, cols })
}

/// Reads a float32 `.npy` matrix written by [`encode_f32`] (or NumPy).
pub fn read_f32(path: &Path) -> Result<(Vec<f32>, usize, usize)> {
    let matrix = map_f32(path)?;
    Ok((matrix.values().to_vec(), matrix.rows, matrix.cols))
}

/// Where the data starts, and the shape; checks the data's length.
fn parse_header(bytes: &[u8], path: &Path) -> Result<(usize, usize, usize)> {
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
    if cols == 0 {
        bail!("{}: a matrix of 0 columns", path.display());
    }
    let start = 10 + header_len;
    let expected = rows.checked_mul(cols).and_then(|v| v.checked_mul(4));
    if expected != Some(bytes.len() - start.min(bytes.len())) {
        bail!(
            "{}: {} data bytes for shape ({rows}, {cols})",
            path.display(),
            bytes.len().saturating_sub(start)
        );
    }
    Ok((start, rows, cols))
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
