//! Image preprocessing shared by the native build and the browser, so the same
//! bytes give the same model input on both sides.
//!
//! The report's recipe: keep the aspect ratio, pad to a square, resize to the
//! model's input. Padding is white because catalog packshots are shot on white;
//! black bars would be a strong, meaningless feature for the CNN. (Padding
//! with a packshot's own background instead changed nothing measurable on
//! H&M's light-grey photos: recall@10 of the same design 0.757 either way.)

use image::{DynamicImage, ImageDecoder, ImageReader, RgbImage};
use std::io::Cursor;

/// Side of the square the embedder sees.
pub const EMBED_INPUT_SIZE: u32 = 224;
/// The colour the square is padded with.
pub const PAD_COLOUR: [u8; 3] = [255, 255, 255];
/// Largest width or height accepted for decoding; bigger images are refused
/// rather than allowed to exhaust memory (a decompression bomb).
pub const MAX_DECODED_SIDE: u32 = 12_000;
/// Most bytes one image may decode to (its pixels as the file stores them:
/// a 48-megapixel 8-bit RGB photo is 144 MB). A side limit alone let a 1 MB
/// 16-bit PNG of 11999 x 11999 ask for 864 MB, and a 2.8 KB JPEG for 363 MB.
pub const MAX_DECODED_BYTES: u64 = 160 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("not a recognised image format")]
    UnknownFormat,
    #[error("cannot decode image: {0}")]
    Decode(#[from] image::ImageError),
    #[error("image is {width}x{height}, larger than the {MAX_DECODED_SIDE}px limit")]
    TooLarge { width: u32, height: u32 },
    #[error(
        "image is {width}x{height} and would decode to {bytes} bytes, over the {MAX_DECODED_BYTES} byte limit"
    )]
    TooManyBytes { width: u32, height: u32, bytes: u64 },
    #[error("truncated JPEG: the file ends before the image does")]
    Truncated,
}

/// The header's promise: width, height and the bytes the pixels will take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageSize {
    pub width: u32,
    pub height: u32,
    pub decoded_bytes: u64,
}

/// An image whose header passed the limits, not decoded yet: how much
/// memory decoding it will take is known before any is taken.
pub struct OpenImage<D> {
    decoder: D,
    size: ImageSize,
}

impl<D: ImageDecoder> OpenImage<D> {
    pub fn size(&self) -> ImageSize {
        self.size
    }

    /// Decodes the pixels and turns the image upright as its EXIF
    /// orientation says (phone photos are often stored sideways).
    pub fn decode(mut self) -> Result<DynamicImage, DecodeError> {
        let orientation =
            self.decoder.orientation().unwrap_or(image::metadata::Orientation::NoTransforms);
        let mut image = DynamicImage::from_decoder(self.decoder)?;
        image.apply_orientation(orientation);
        Ok(image)
    }
}

/// Reads an image's header (not its pixels), sniffing the real format from
/// the content rather than trusting a file extension or a Content-Type
/// header, and checks it against the limits: images over
/// [`MAX_DECODED_SIDE`] or [`MAX_DECODED_BYTES`] are refused, and truncated
/// JPEGs are refused rather than decoded half grey.
pub fn open(bytes: &[u8]) -> Result<OpenImage<impl ImageDecoder + '_>, DecodeError> {
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| DecodeError::Decode(image::ImageError::IoError(e)))?;
    if reader.format().is_none() {
        return Err(DecodeError::UnknownFormat);
    }
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_DECODED_SIDE);
    limits.max_image_height = Some(MAX_DECODED_SIDE);
    // Room for the decoder's own buffers beside the output.
    limits.max_alloc = Some(MAX_DECODED_BYTES + MAX_DECODED_BYTES / 4);
    reader.limits(limits);
    let format = reader.format();
    let decoder = reader.into_decoder().map_err(|e| match e {
        image::ImageError::Limits(_) => match image_dimensions_hint(bytes) {
            Some((width, height)) => DecodeError::TooLarge { width, height },
            None => DecodeError::Decode(e),
        },
        other => DecodeError::Decode(other),
    })?;
    // Checked from the header, before any pixel memory is allocated.
    let (width, height) = decoder.dimensions();
    if width > MAX_DECODED_SIDE || height > MAX_DECODED_SIDE {
        return Err(DecodeError::TooLarge { width, height });
    }
    if decoder.total_bytes() > MAX_DECODED_BYTES {
        return Err(DecodeError::TooManyBytes { width, height, bytes: decoder.total_bytes() });
    }
    if format == Some(image::ImageFormat::Jpeg) && jpeg_is_truncated(bytes) {
        return Err(DecodeError::Truncated);
    }
    Ok(OpenImage {
        size: ImageSize { width, height, decoded_bytes: decoder.total_bytes() },
        decoder,
    })
}

/// The dimensions a header claims, read without limits (for the message
/// when the limits refused it).
fn image_dimensions_hint(bytes: &[u8]) -> Option<(u32, u32)> {
    let mut reader = ImageReader::new(Cursor::new(bytes)).with_guessed_format().ok()?;
    reader.no_limits();
    reader.into_dimensions().ok()
}

/// Whether a JPEG stops before its end-of-image marker. JPEG decoders fill
/// missing data with grey instead of failing, so a cut-off download would be
/// indexed as a half-grey product. Markers cannot occur inside entropy-coded
/// data (0xFF is stuffed there), so the image is whole only if an end marker
/// (FF D9) follows the last start-of-scan (FF DA); an EXIF thumbnail's own
/// markers come before the main image's scans.
fn jpeg_is_truncated(bytes: &[u8]) -> bool {
    let last_scan = bytes.windows(2).rposition(|w| w == [0xFF, 0xDA]);
    match last_scan {
        None => true,
        Some(scan) => !bytes[scan..].windows(2).any(|w| w == [0xFF, 0xD9]),
    }
}

/// Decodes encoded image bytes: [`open`], then [`OpenImage::decode`].
pub fn decode(bytes: &[u8]) -> Result<DynamicImage, DecodeError> {
    open(bytes)?.decode()
}

/// Scales `image` so its longer side is `size`, keeping the aspect ratio, and
/// centres it on a `size` x `size` square of `pad`.
///
/// ```
/// use image::{DynamicImage, RgbImage};
/// let tall = DynamicImage::ImageRgb8(RgbImage::from_pixel(50, 100, image::Rgb([0, 0, 0])));
/// let square = lookalike_vision::preprocess::pad_resize(&tall, 20, [255, 255, 255]);
/// assert_eq!(square.dimensions(), (20, 20));
/// assert_eq!(square.get_pixel(0, 10).0, [255, 255, 255]); // padding at the side
/// assert_eq!(square.get_pixel(10, 10).0, [0, 0, 0]); // the image in the middle
/// ```
pub fn pad_resize(image: &DynamicImage, size: u32, pad: [u8; 3]) -> RgbImage {
    let (new_width, new_height) = fit_within(image.width(), image.height(), size);
    let resized = resize_rgb(&image.to_rgb8(), new_width, new_height);
    let mut canvas = RgbImage::from_pixel(size, size, image::Rgb(pad));
    let left = (size - new_width) / 2;
    let top = (size - new_height) / 2;
    image::imageops::replace(&mut canvas, &resized, left as i64, top as i64);
    canvas
}

/// The size of `width` x `height` scaled, aspect kept, so its longer side is `side`.
fn fit_within(width: u32, height: u32, side: u32) -> (u32, u32) {
    let (width, height) = (width.max(1), height.max(1));
    let scale = side as f64 / width.max(height) as f64;
    let fit = |length: u32| ((length as f64 * scale).round() as u32).clamp(1, side);
    (fit(width), fit(height))
}

/// Bilinear (antialiased when shrinking) resize with SIMD. Its U8 arithmetic
/// is fixed-point, so every CPU path (AVX2, SSE4.1, wasm SIMD128, scalar)
/// gives the same pixels.
pub fn resize_rgb(image: &RgbImage, width: u32, height: u32) -> RgbImage {
    use fast_image_resize as fr;
    if image.dimensions() == (width, height) {
        return image.clone();
    }
    let source = fr::images::ImageRef::new(
        image.width(),
        image.height(),
        image.as_raw(),
        fr::PixelType::U8x3,
    )
    .expect("an RgbImage's buffer matches its dimensions");
    let mut target = fr::images::Image::new(width, height, fr::PixelType::U8x3);
    let options =
        fr::ResizeOptions::new().resize_alg(fr::ResizeAlg::Convolution(fr::FilterType::Bilinear));
    fr::Resizer::new()
        .resize(&source, &mut target, &options)
        .expect("source and target are both U8x3");
    RgbImage::from_raw(width, height, target.into_vec())
        .expect("the target buffer matches its dimensions")
}

/// Converts a square RGB image into the embedder's input layout: planar
/// channels (CHW), each value mapped to `(x - 127) / 128` as EfficientNet-Lite
/// was trained.
pub fn to_model_input(image: &RgbImage) -> Vec<f32> {
    let plane = (image.width() * image.height()) as usize;
    let mut out = vec![0.0f32; 3 * plane];
    for (i, pixel) in image.pixels().enumerate() {
        for c in 0..3 {
            out[c * plane + i] = (pixel.0[c] as f32 - 127.0) / 128.0;
        }
    }
    out
}

/// Decoded image to model input in one step: pad-resize to the embedder's
/// square, then normalise.
pub fn model_input(image: &DynamicImage) -> Vec<f32> {
    to_model_input(&pad_resize(image, EMBED_INPUT_SIZE, PAD_COLOUR))
}

/// A thumbnail whose longer side is at most `max_side`, for the site's grid.
pub fn thumbnail(image: &DynamicImage, max_side: u32) -> RgbImage {
    if image.width().max(image.height()) <= max_side {
        return image.to_rgb8();
    }
    let (new_width, new_height) = fit_within(image.width(), image.height(), max_side);
    resize_rgb(&image.to_rgb8(), new_width, new_height)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wide_image_is_padded_top_and_bottom() {
        let wide =
            DynamicImage::ImageRgb8(RgbImage::from_pixel(300, 100, image::Rgb([10, 20, 30])));
        let square = pad_resize(&wide, 224, PAD_COLOUR);
        assert_eq!(square.get_pixel(112, 5).0, PAD_COLOUR);
        assert_eq!(square.get_pixel(112, 112).0, [10, 20, 30]);
        assert_eq!(square.get_pixel(112, 218).0, PAD_COLOUR);
    }

    #[test]
    fn model_input_is_planar_and_centred() {
        let mut img = RgbImage::from_pixel(2, 1, image::Rgb([255, 127, 0]));
        img.put_pixel(1, 0, image::Rgb([0, 0, 0]));
        let input = to_model_input(&img);
        assert_eq!(input.len(), 6);
        assert_eq!(input[0], 1.0); // R of pixel 0
        assert_eq!(input[1], -127.0 / 128.0); // R of pixel 1
        assert_eq!(input[2], 0.0); // G plane starts at 2
    }

    #[test]
    fn garbage_bytes_are_refused_not_panicking() {
        assert!(matches!(decode(b"definitely not an image"), Err(DecodeError::UnknownFormat)));
        // A PNG signature followed by nothing: known format, broken content.
        let truncated = [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0];
        assert!(decode(&truncated).is_err());
    }

    #[test]
    fn decompression_bombs_are_refused_from_the_header() {
        // A PNG header claiming 100,000 x 100,000 pixels, with no pixel data.
        let mut png = vec![
            0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13, b'I', b'H', b'D', b'R',
        ];
        png.extend_from_slice(&100_000u32.to_be_bytes());
        png.extend_from_slice(&100_000u32.to_be_bytes());
        png.extend_from_slice(&[8, 2, 0, 0, 0]);
        let crc = crc32fast::hash(&png[12..29]);
        png.extend_from_slice(&crc.to_be_bytes());
        // An empty IDAT: decoders read up to the first one before reporting the size.
        png.extend_from_slice(&[0, 0, 0, 0, b'I', b'D', b'A', b'T']);
        png.extend_from_slice(&crc32fast::hash(b"IDAT").to_be_bytes());
        assert!(
            matches!(decode(&png), Err(DecodeError::TooLarge { width: 100_000, .. })),
            "{:?}",
            decode(&png).err()
        );
    }

    #[test]
    fn exif_orientation_turns_the_image_upright() {
        // A 2x1 JPEG (red left, blue right) tagged "rotate 90 clockwise" (6).
        let mut img = RgbImage::new(16, 8);
        for (x, _, p) in img.enumerate_pixels_mut() {
            *p = if x < 8 { image::Rgb([255, 0, 0]) } else { image::Rgb([0, 0, 255]) };
        }
        let mut jpeg = Vec::new();
        let mut encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 95);
        image::ImageEncoder::set_exif_metadata(&mut encoder, exif_orientation(6)).unwrap();
        encoder.encode_image(&img).unwrap();
        let upright = decode(&jpeg).unwrap().to_rgb8();
        assert_eq!(upright.dimensions(), (8, 16));
        assert!(upright.get_pixel(4, 2).0[0] > 200, "red should now be on top");
        assert!(upright.get_pixel(4, 13).0[2] > 200, "blue at the bottom");
    }

    /// A minimal little-endian EXIF block with one Orientation entry.
    fn exif_orientation(value: u16) -> Vec<u8> {
        let mut exif = b"II*\0".to_vec();
        exif.extend_from_slice(&8u32.to_le_bytes()); // first IFD offset
        exif.extend_from_slice(&1u16.to_le_bytes()); // one entry
        exif.extend_from_slice(&0x0112u16.to_le_bytes()); // Orientation
        exif.extend_from_slice(&3u16.to_le_bytes()); // SHORT
        exif.extend_from_slice(&1u32.to_le_bytes()); // count
        exif.extend_from_slice(&value.to_le_bytes());
        exif.extend_from_slice(&[0, 0]);
        exif.extend_from_slice(&0u32.to_le_bytes()); // no next IFD
        exif
    }

    fn encoded(image: DynamicImage, format: image::ImageFormat) -> Vec<u8> {
        let mut bytes = Vec::new();
        image.write_to(&mut Cursor::new(&mut bytes), format).unwrap();
        bytes
    }

    #[test]
    fn catalog_formats_decode_to_rgb() {
        let red = RgbImage::from_pixel(6, 4, image::Rgb([220, 20, 30]));
        let rgba = DynamicImage::ImageRgba8(DynamicImage::ImageRgb8(red.clone()).to_rgba8());
        let gray = DynamicImage::ImageLuma8(image::GrayImage::from_pixel(6, 4, image::Luma([90])));
        let cases = [
            (
                "png",
                encoded(DynamicImage::ImageRgb8(red.clone()), image::ImageFormat::Png),
                [220, 20, 30],
            ),
            ("grayscale png", encoded(gray.clone(), image::ImageFormat::Png), [90, 90, 90]),
            ("grayscale jpeg", encoded(gray, image::ImageFormat::Jpeg), [90, 90, 90]),
            ("webp", encoded(rgba.clone(), image::ImageFormat::WebP), [220, 20, 30]),
            ("gif", encoded(rgba, image::ImageFormat::Gif), [220, 20, 30]),
        ];
        for (name, bytes, want) in cases {
            let rgb = model_input(&decode(&bytes).unwrap_or_else(|e| panic!("{name}: {e}")));
            // The centre pixel of each channel plane, back to 0..255.
            let centre = 112 * 224 + 112;
            let got: Vec<f32> =
                (0..3).map(|c| rgb[c * 224 * 224 + centre] * 128.0 + 127.0).collect();
            for c in 0..3 {
                assert!((got[c] - want[c] as f32).abs() <= 6.0, "{name}: {got:?} vs {want:?}");
            }
        }
    }

    #[test]
    fn cmyk_jpeg_decodes_to_the_right_colour() {
        // Pure cyan in CMYK (C=100%, M=Y=K=0) must come out as (0, 255, 255).
        let pixels: Vec<u8> = std::iter::repeat_n([255u8, 0, 0, 0], 64).flatten().collect();
        let mut jpeg = Vec::new();
        jpeg_encoder::Encoder::new(&mut jpeg, 95)
            .encode(&pixels, 8, 8, jpeg_encoder::ColorType::Cmyk)
            .unwrap();
        let rgb = decode(&jpeg).unwrap().to_rgb8();
        let p = rgb.get_pixel(4, 4).0;
        assert!(p[0] < 40 && p[1] > 215 && p[2] > 215, "cyan decoded as {p:?}");
    }

    #[test]
    fn png_round_trip_decodes() {
        let img = RgbImage::from_pixel(3, 2, image::Rgb([1, 2, 3]));
        let mut bytes = Vec::new();
        DynamicImage::ImageRgb8(img)
            .write_to(&mut Cursor::new(&mut bytes), image::ImageFormat::Png)
            .unwrap();
        let back = decode(&bytes).unwrap();
        assert_eq!((back.width(), back.height()), (3, 2));
    }
}
