//! Arrays that are either owned or viewed in place inside shared file bytes.
//!
//! A loaded index keeps the file's bytes (a memory map natively, the fetched
//! file in wasm memory) and views its sections as typed slices without
//! copying them. Building or changing a forest works on owned vectors; the
//! first change to a viewed or shared array copies it (copy on write), so
//! cloning a `Buf` never copies its values (writing a forest clones its
//! arrays into `ForestParts`, and the page clones an index's forest).

use bytemuck::Pod;
use std::ops::Deref;
use std::sync::Arc;

/// The bytes an index was loaded from.
pub type SharedBytes = Arc<dyn AsRef<[u8]> + Send + Sync>;

#[cfg(target_endian = "big")]
compile_error!(
    "index files are little-endian and viewed in place; big-endian targets are not supported"
);

#[derive(Clone)]
pub enum Buf<T: Pod> {
    Owned(Arc<Vec<T>>),
    /// `len` values of `T` starting at byte `start` of `bytes`.
    Shared {
        bytes: SharedBytes,
        start: usize,
        len: usize,
    },
}

impl<T: Pod> Buf<T> {
    /// Views `bytes[start..end]` as `[T]`, or copies it when it is not
    /// aligned for `T` (then the data is still right, just not shared).
    /// The caller has checked that the range is in bounds and a whole number of `T`.
    pub fn view(bytes: &SharedBytes, start: usize, end: usize) -> Buf<T> {
        let slice = &(**bytes).as_ref()[start..end];
        match bytemuck::try_cast_slice::<u8, T>(slice) {
            Ok(values) => Buf::Shared { bytes: Arc::clone(bytes), start, len: values.len() },
            Err(_) => Buf::Owned(Arc::new(bytemuck::pod_collect_to_vec(slice))),
        }
    }

    /// The values as an owned vector, copying them the first time.
    pub fn make_mut(&mut self) -> &mut Vec<T> {
        if let Buf::Shared { .. } = self {
            *self = Buf::Owned(Arc::new(self.deref().to_vec()));
        }
        match self {
            Buf::Owned(values) => Arc::make_mut(values),
            Buf::Shared { .. } => unreachable!("just made owned"),
        }
    }

    pub fn is_shared(&self) -> bool {
        matches!(self, Buf::Shared { .. })
    }
}

impl<T: Pod> Deref for Buf<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        match self {
            Buf::Owned(values) => values,
            Buf::Shared { bytes, start, len } => {
                let end = start + len * std::mem::size_of::<T>();
                bytemuck::cast_slice(&(**bytes).as_ref()[*start..end])
            }
        }
    }
}

impl<T: Pod> Default for Buf<T> {
    fn default() -> Self {
        Buf::Owned(Arc::new(Vec::new()))
    }
}

impl<T: Pod> From<Vec<T>> for Buf<T> {
    fn from(values: Vec<T>) -> Self {
        Buf::Owned(Arc::new(values))
    }
}

impl<T: Pod + PartialEq> PartialEq for Buf<T> {
    fn eq(&self, other: &Self) -> bool {
        self.deref() == other.deref()
    }
}

impl<T: Pod> std::fmt::Debug for Buf<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Buf({} values{})", self.len(), if self.is_shared() { ", shared" } else { "" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_share_and_writes_copy() {
        let bytes: SharedBytes =
            Arc::new([1u32, 2, 3, 4].iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>());
        let mut buf: Buf<u32> = Buf::view(&bytes, 4, 12);
        assert!(buf.is_shared());
        assert_eq!(&*buf, &[2, 3]);
        buf.make_mut().push(9);
        assert!(!buf.is_shared());
        assert_eq!(&*buf, &[2, 3, 9]);
    }

    #[test]
    fn clones_share_until_one_is_written() {
        let original: Buf<u32> = vec![1, 2, 3].into();
        let mut copy = original.clone();
        assert!(std::ptr::eq(original.as_ptr(), copy.as_ptr()), "a clone copies nothing");
        copy.make_mut()[0] = 7;
        assert_eq!((&*original, &*copy), (&[1, 2, 3][..], &[7, 2, 3][..]));
    }

    #[test]
    fn misaligned_ranges_are_copied_not_rejected() {
        let bytes: SharedBytes = Arc::new(vec![0u8, 1, 0, 0, 0, 2, 0, 0, 0]);
        let buf: Buf<u32> = Buf::view(&bytes, 1, 9);
        assert_eq!(&*buf, &[1, 2]);
    }
}
