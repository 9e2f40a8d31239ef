//! Camera pixel formats to the encoder's I420, run by the capture thread on
//! every frame (1080p30 on a Raspberry Pi 4 leaves ~33 ms per frame for
//! everything, so these must cost a few ms at most).
//!
//! The raw converters are plain safe loops over `chunks_exact` rows and pixel
//! pairs, which LLVM turns into NEON/SSE code without per-pixel bounds checks;
//! the source length is checked once up front, so a truncated camera buffer
//! gives an error, never a panic. 4:2:2 → 4:2:0 averages the two rows' chroma,
//! rounded, two rows at a time.
//!
//! MJPEG (UVC cameras) is decoded by zune-jpeg (pure Rust) to YCbCr, then
//! subsampled to 4:2:0 and scaled from JPEG's full range to video range
//! here, with no RGB round trip.

use crate::base::frame::I420Frame;
use std::panic::{catch_unwind, AssertUnwindSafe};
use zune_jpeg::zune_core::bytestream::ZCursor;
use zune_jpeg::zune_core::colorspace::ColorSpace;
use zune_jpeg::zune_core::options::DecoderOptions;
use zune_jpeg::JpegDecoder;

/// Why a camera buffer could not be converted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    #[error("picture size {width}x{height}: width and height must be even and non-zero")]
    BadSize { width: usize, height: usize },
    #[error("{format} line stride {stride} is shorter than a row of {row} bytes")]
    BadStride {
        format: &'static str,
        stride: usize,
        row: usize,
    },
    #[error("{format} buffer of {got} bytes is too short for {width}x{height}: needs {need}")]
    ShortBuffer {
        format: &'static str,
        width: usize,
        height: usize,
        got: usize,
        need: usize,
    },
    #[error("JPEG: {0}")]
    Jpeg(String),
}

/// Checks the size and that `src` holds `need(stride)` bytes with rows of
/// `row` bytes; the arithmetic is checked so garbage strides cannot overflow.
fn check(
    format: &'static str,
    src: &[u8],
    stride: usize,
    width: usize,
    height: usize,
    row: usize,
    need: impl FnOnce() -> Option<usize>,
) -> Result<(), ConvertError> {
    if width == 0 || height == 0 || !width.is_multiple_of(2) || !height.is_multiple_of(2) {
        return Err(ConvertError::BadSize { width, height });
    }
    if stride < row {
        return Err(ConvertError::BadStride {
            format,
            stride,
            row,
        });
    }
    let need = need().unwrap_or(usize::MAX);
    if src.len() < need {
        return Err(ConvertError::ShortBuffer {
            format,
            width,
            height,
            got: src.len(),
            need,
        });
    }
    Ok(())
}

/// Gives `dst` the size `width`x`height`, reusing its buffer.
fn fit(dst: &mut I420Frame, width: usize, height: usize) {
    let len = width * height + 2 * (width / 2) * (height / 2);
    if dst.width != width || dst.height != height || dst.data.len() != len {
        dst.width = width;
        dst.height = height;
        dst.data.resize(len, 0);
    }
}

/// Rounded mean of two samples; LLVM maps it to `urhadd` / `pavgb`.
#[inline(always)]
fn avg(a: u8, b: u8) -> u8 {
    ((u16::from(a) + u16::from(b) + 1) >> 1) as u8
}

/// Packed YUYV 4:2:2 (V4L2 `YUYV`, bytes Y0 U Y1 V) with `stride` bytes per
/// line to I420.
pub fn yuyv_to_i420(
    src: &[u8],
    stride: usize,
    width: usize,
    height: usize,
    dst: &mut I420Frame,
) -> Result<(), ConvertError> {
    let row = 2 * width;
    // The last line need not carry its padding.
    check("YUYV", src, stride, width, height, row, || {
        stride.checked_mul(height - 1)?.checked_add(row)
    })?;
    fit(dst, width, height);
    let (yp, up, vp) = dst.planes_mut();
    let cw = width / 2;
    let lines = src.chunks(2 * stride);
    let out = yp
        .chunks_exact_mut(2 * width)
        .zip(up.chunks_exact_mut(cw).zip(vp.chunks_exact_mut(cw)));
    for (pair, (ys, (u, v))) in lines.zip(out) {
        let (y0, y1) = ys.split_at_mut(width);
        yuyv_rows(&pair[..row], &pair[stride..stride + row], y0, y1, u, v);
    }
    Ok(())
}

/// Two YUYV lines to two luma rows and one chroma row of each plane.
///
/// Written as stride-2 passes over little-endian byte pairs (Y in the low
/// byte, U or V in the high one): LLVM vectorises those well on both NEON
/// (`uzp`, `urhadd`) and plain SSE2 (`pand`/`psrlw`/`packuswb`, `pavgb`);
/// one loop over 4-byte groups stays scalar on x86 and ran 4x slower.
#[inline(never)] // inlined into the row loop, LLVM made it about 2x slower
fn yuyv_rows(a: &[u8], b: &[u8], y0: &mut [u8], y1: &mut [u8], u: &mut [u8], v: &mut [u8]) {
    for (y, p) in y0.iter_mut().zip(a.chunks_exact(2)) {
        *y = lo(p);
    }
    for (y, p) in y1.iter_mut().zip(b.chunks_exact(2)) {
        *y = lo(p);
    }
    // Chroma in blocks, so the row-averaged U V U V ... stays in L1.
    const BLOCK: usize = 256;
    let mut uv = [0u8; 2 * BLOCK];
    let (a, b) = (a.chunks(4 * BLOCK), b.chunks(4 * BLOCK));
    let chroma = u.chunks_mut(BLOCK).zip(v.chunks_mut(BLOCK));
    for ((a, b), (u, v)) in a.zip(b).zip(chroma) {
        let uv = &mut uv[..2 * u.len()];
        for ((t, p), q) in uv.iter_mut().zip(a.chunks_exact(2)).zip(b.chunks_exact(2)) {
            *t = avg(hi(p), hi(q));
        }
        split_pairs(uv, u, v);
    }
}

/// The first and second byte of a 2-byte chunk, through one u16 load (the
/// form LLVM's vectoriser handles best).
#[inline(always)]
fn lo(pair: &[u8]) -> u8 {
    word(pair) as u8
}

#[inline(always)]
fn hi(pair: &[u8]) -> u8 {
    (word(pair) >> 8) as u8
}

#[inline(always)]
fn word(pair: &[u8]) -> u16 {
    // Only ever called on chunks_exact(2) items: the check folds away.
    u16::from_le_bytes(pair.try_into().unwrap_or_default())
}

/// V4L2 single-buffer `NV12`: the Y plane (`stride` bytes per line), then at
/// `stride * height` the interleaved UV plane with the same stride, to I420.
pub fn nv12_to_i420(
    src: &[u8],
    stride: usize,
    width: usize,
    height: usize,
    dst: &mut I420Frame,
) -> Result<(), ConvertError> {
    check("NV12", src, stride, width, height, width, || {
        let luma = stride.checked_mul(height)?;
        luma.checked_add(stride.checked_mul(height / 2 - 1)?)?
            .checked_add(width)
    })?;
    fit(dst, width, height);
    let (yp, up, vp) = dst.planes_mut();
    copy_plane(src, stride, yp, width);
    let cw = width / 2;
    let uv = src[stride * height..].chunks(stride);
    for (line, (u, v)) in uv.zip(up.chunks_exact_mut(cw).zip(vp.chunks_exact_mut(cw))) {
        split_pairs(&line[..width], u, v);
    }
    Ok(())
}

/// U V U V ... to U U ... and V V ...
#[inline(never)] // a standalone loop vectorises better than one inlined
fn split_pairs(uv: &[u8], u: &mut [u8], v: &mut [u8]) {
    for (p, (u, v)) in uv.chunks_exact(2).zip(u.iter_mut().zip(v.iter_mut())) {
        *u = lo(p);
        *v = hi(p);
    }
}

/// V4L2 `YU12` (planar I420) with `stride` bytes per luma line and
/// `stride / 2` per chroma line, as V4L2 lays it out, to tightly packed I420.
pub fn i420_to_i420(
    src: &[u8],
    stride: usize,
    width: usize,
    height: usize,
    dst: &mut I420Frame,
) -> Result<(), ConvertError> {
    let cs = stride / 2;
    check("YU12", src, stride, width, height, width, || {
        let chroma = cs.checked_mul(height / 2)?;
        stride
            .checked_mul(height)?
            .checked_add(chroma)?
            .checked_add(chroma - cs + width / 2)
    })?;
    fit(dst, width, height);
    let (yp, up, vp) = dst.planes_mut();
    let (luma, chroma) = src.split_at(stride * height);
    let (u, v) = chroma.split_at(cs * (height / 2));
    copy_plane(luma, stride, yp, width);
    copy_plane(u, cs, up, width / 2);
    copy_plane(v, cs, vp, width / 2);
    Ok(())
}

/// Copies rows of `width` bytes, `stride` apart in `src`, into packed `dst`.
fn copy_plane(src: &[u8], stride: usize, dst: &mut [u8], width: usize) {
    for (line, out) in src.chunks(stride).zip(dst.chunks_exact_mut(width)) {
        out.copy_from_slice(&line[..width]);
    }
}

/// Largest JPEG accepted: beyond any camera we drive, and a garbage header
/// cannot make us allocate more than 48 MB of YCbCr.
const MAX_JPEG_SIDE: usize = 4096;

/// Decodes MJPEG frames to I420, keeping its buffers between frames.
#[derive(Default)]
pub struct MjpegDecoder {
    /// The frame with the standard Huffman tables spliced in, when it had none.
    patched: Vec<u8>,
    /// zune-jpeg's output: interleaved full-resolution YCbCr.
    ycbcr: Vec<u8>,
}

impl MjpegDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Decodes one JPEG into `dst` (resized to the picture). Baseline 4:2:2
    /// and 4:2:0 (what UVC cameras send) and 4:4:4 are accepted; the size
    /// must be even. A corrupt or truncated frame is an error.
    pub fn decode(&mut self, jpeg: &[u8], dst: &mut I420Frame) -> Result<(), ConvertError> {
        let head = headers(jpeg);
        // A frame cut short (USB bandwidth, a lost packet) would decode "fine"
        // with a grey or smeared bottom: the decoder only notices running out
        // of data before the last row of blocks. Entropy-coded data never
        // holds FF D9, so one after the scan start is the end of the image.
        if let Some(h) = &head {
            let tail = &jpeg[h.scan..];
            if !tail.windows(2).rev().any(|w| w == [0xFF, 0xD9]) {
                return Err(ConvertError::Jpeg(
                    "truncated: no end-of-image marker".into(),
                ));
            }
        }
        // UVC cameras leave out the DHT segment (USB Video Class MJPEG
        // payload, like AVI's MJPG): the decoder must assume the tables
        // of ITU-T T.81 Annex K.3. zune-jpeg does so only when an APP0
        // "AVI1" segment says it is MJPEG, which UVC frames often lack.
        let data = if head.is_some_and(|h| !h.huffman_tables) {
            self.patched.clear();
            self.patched.extend_from_slice(&jpeg[..2]);
            self.patched.extend_from_slice(&STANDARD_DHT);
            self.patched.extend_from_slice(&jpeg[2..]);
            &self.patched[..]
        } else {
            jpeg
        };
        let ycbcr = &mut self.ycbcr;
        // zune-jpeg is fuzzed, but a panic on a camera's garbage would end
        // the capture thread; this turns one into an error.
        let (width, height) = catch_unwind(AssertUnwindSafe(|| decode_ycbcr(data, ycbcr)))
            .unwrap_or_else(|_| Err(ConvertError::Jpeg("decoder panicked".into())))?;
        fit(dst, width, height);
        let (yp, up, vp) = dst.planes_mut();
        let cw = width / 2;
        let rows = self.ycbcr.chunks_exact(6 * width);
        let out = yp
            .chunks_exact_mut(2 * width)
            .zip(up.chunks_exact_mut(cw).zip(vp.chunks_exact_mut(cw)));
        for (pair, (ys, (u, v))) in rows.zip(out) {
            let (a, b) = pair.split_at(3 * width);
            let (y0, y1) = ys.split_at_mut(width);
            ycbcr_rows(a, b, y0, y1, u, v);
        }
        Ok(())
    }
}

/// Decodes to interleaved YCbCr in `out`; returns the picture size.
fn decode_ycbcr(jpeg: &[u8], out: &mut Vec<u8>) -> Result<(usize, usize), ConvertError> {
    let err = |e: zune_jpeg::errors::DecodeErrors| ConvertError::Jpeg(e.to_string());
    // Strict: a truncated frame is an error, not a picture padded with grey.
    let options = DecoderOptions::default()
        .jpeg_set_out_colorspace(ColorSpace::YCbCr)
        .set_strict_mode(true)
        .set_max_width(MAX_JPEG_SIDE)
        .set_max_height(MAX_JPEG_SIDE);
    let mut dec = JpegDecoder::new_with_options(ZCursor::new(jpeg), options);
    dec.decode_headers().map_err(err)?;
    let info = dec
        .info()
        .ok_or_else(|| ConvertError::Jpeg("no frame header".into()))?;
    let (width, height) = (usize::from(info.width), usize::from(info.height));
    if width == 0 || height == 0 || width % 2 != 0 || height % 2 != 0 {
        return Err(ConvertError::BadSize { width, height });
    }
    if dec.input_colorspace() != Some(ColorSpace::YCbCr) {
        let cs = dec.input_colorspace();
        return Err(ConvertError::Jpeg(format!(
            "colour space {cs:?}, not YCbCr"
        )));
    }
    out.resize(width * height * 3, 0);
    dec.decode_into(out).map_err(err)?;
    Ok((width, height))
}

/// JPEG (JFIF) luma is full range 0..255; the encoder's I420 is limited
/// range 16..235 (what H.264 decoders assume when the VUI does not say,
/// as ours does not), so it is scaled, rounded: 16 + y * 219/255. u16
/// throughout, so it stays vectorised.
#[inline(always)]
fn limited_luma(y: u8) -> u8 {
    ((u16::from(y) * 219 + 4207) / 255) as u8
}

/// Two rows of full-range YCbCr pixels to two luma rows and one chroma row
/// each of limited-range I420, the chroma of each 2x2 block averaged.
///
/// One pass reads whole pixels (so NEON uses `ld3`) into luma and per-column
/// Cb/Cr sums of the two rows, a second adds column pairs (`ld2`); blocks
/// keep the sums in L1.
#[inline(never)] // see yuyv_rows
fn ycbcr_rows(a: &[u8], b: &[u8], y0: &mut [u8], y1: &mut [u8], u: &mut [u8], v: &mut [u8]) {
    const BLOCK: usize = 256;
    let (mut cb, mut cr) = ([0u16; 2 * BLOCK], [0u16; 2 * BLOCK]);
    let src = a.chunks(6 * BLOCK).zip(b.chunks(6 * BLOCK));
    let luma = y0.chunks_mut(2 * BLOCK).zip(y1.chunks_mut(2 * BLOCK));
    let chroma = u.chunks_mut(BLOCK).zip(v.chunks_mut(BLOCK));
    for ((a, b), ((y0, y1), (u, v))) in src.zip(luma.zip(chroma)) {
        let n = y0.len();
        let px = a.chunks_exact(3).zip(b.chunks_exact(3));
        let sums = cb[..n].iter_mut().zip(cr[..n].iter_mut());
        for ((p, q), ((ya, yb), (cb, cr))) in px.zip(y0.iter_mut().zip(y1.iter_mut()).zip(sums)) {
            *ya = limited_luma(p[0]);
            *yb = limited_luma(q[0]);
            *cb = u16::from(p[1]) + u16::from(q[1]);
            *cr = u16::from(p[2]) + u16::from(q[2]);
        }
        for (u, s) in u.iter_mut().zip(cb[..n].chunks_exact(2)) {
            *u = limited_chroma(s[0] + s[1]);
        }
        for (v, s) in v.iter_mut().zip(cr[..n].chunks_exact(2)) {
            *v = limited_chroma(s[0] + s[1]);
        }
    }
}

/// The mean of four full-range chroma samples (given as their sum `s`) in
/// limited range, rounded: 128 + (s/4 - 128) * 224/255 = (s * 56 + 3968) /
/// 255; at most 61215, so u16 suffices.
#[inline(always)]
fn limited_chroma(s: u16) -> u8 {
    ((s * 56 + 4095) / 255) as u8
}

/// What the marker segments before the first scan (SOS) say.
#[derive(Debug, PartialEq, Eq)]
struct Headers {
    /// A DHT segment came before the first scan.
    huffman_tables: bool,
    /// Where the first SOS marker is.
    scan: usize,
}

/// Walks the marker segments after SOI up to the first scan; `None` when they
/// do not parse (the decoder then says what is wrong).
fn headers(jpeg: &[u8]) -> Option<Headers> {
    if !jpeg.starts_with(&[0xFF, 0xD8]) {
        return None;
    }
    let (mut i, mut huffman_tables) = (2, false); // past SOI
    while let (Some(&0xFF), Some(&m)) = (jpeg.get(i), jpeg.get(i + 1)) {
        match m {
            0xDA => {
                return Some(Headers {
                    huffman_tables,
                    scan: i,
                })
            }
            0xFF => i += 1, // fill byte
            0x01 | 0xD0..=0xD8 => i += 2,
            _ => {
                huffman_tables |= m == 0xC4;
                let len = jpeg.get(i + 2..i + 4)?;
                i += 2 + usize::from(u16::from_be_bytes([len[0], len[1]]));
            }
        }
    }
    None
}

/// DHT segment with the four tables of ITU-T T.81 Annex K.3 (K.3–K.6):
/// class/id, 16 code counts, then the symbols.
const STANDARD_DHT: [u8; 420] = {
    const DC_LUMA_BITS: [u8; 16] = [0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0];
    const DC_CHROMA_BITS: [u8; 16] = [0, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0];
    const DC_VALUES: [u8; 12] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];
    const AC_LUMA_BITS: [u8; 16] = [0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 0x7D];
    const AC_LUMA_VALUES: [u8; 162] = [
        0x01, 0x02, 0x03, 0x00, 0x04, 0x11, 0x05, 0x12, 0x21, 0x31, 0x41, 0x06, 0x13, 0x51, 0x61,
        0x07, 0x22, 0x71, 0x14, 0x32, 0x81, 0x91, 0xA1, 0x08, 0x23, 0x42, 0xB1, 0xC1, 0x15, 0x52,
        0xD1, 0xF0, 0x24, 0x33, 0x62, 0x72, 0x82, 0x09, 0x0A, 0x16, 0x17, 0x18, 0x19, 0x1A, 0x25,
        0x26, 0x27, 0x28, 0x29, 0x2A, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3A, 0x43, 0x44, 0x45,
        0x46, 0x47, 0x48, 0x49, 0x4A, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5A, 0x63, 0x64,
        0x65, 0x66, 0x67, 0x68, 0x69, 0x6A, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7A, 0x83,
        0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99,
        0x9A, 0xA2, 0xA3, 0xA4, 0xA5, 0xA6, 0xA7, 0xA8, 0xA9, 0xAA, 0xB2, 0xB3, 0xB4, 0xB5, 0xB6,
        0xB7, 0xB8, 0xB9, 0xBA, 0xC2, 0xC3, 0xC4, 0xC5, 0xC6, 0xC7, 0xC8, 0xC9, 0xCA, 0xD2, 0xD3,
        0xD4, 0xD5, 0xD6, 0xD7, 0xD8, 0xD9, 0xDA, 0xE1, 0xE2, 0xE3, 0xE4, 0xE5, 0xE6, 0xE7, 0xE8,
        0xE9, 0xEA, 0xF1, 0xF2, 0xF3, 0xF4, 0xF5, 0xF6, 0xF7, 0xF8, 0xF9, 0xFA,
    ];
    const AC_CHROMA_BITS: [u8; 16] = [0, 2, 1, 2, 4, 4, 3, 4, 7, 5, 4, 4, 0, 1, 2, 0x77];
    const AC_CHROMA_VALUES: [u8; 162] = [
        0x00, 0x01, 0x02, 0x03, 0x11, 0x04, 0x05, 0x21, 0x31, 0x06, 0x12, 0x41, 0x51, 0x07, 0x61,
        0x71, 0x13, 0x22, 0x32, 0x81, 0x08, 0x14, 0x42, 0x91, 0xA1, 0xB1, 0xC1, 0x09, 0x23, 0x33,
        0x52, 0xF0, 0x15, 0x62, 0x72, 0xD1, 0x0A, 0x16, 0x24, 0x34, 0xE1, 0x25, 0xF1, 0x17, 0x18,
        0x19, 0x1A, 0x26, 0x27, 0x28, 0x29, 0x2A, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3A, 0x43, 0x44,
        0x45, 0x46, 0x47, 0x48, 0x49, 0x4A, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5A, 0x63,
        0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6A, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7A,
        0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97,
        0x98, 0x99, 0x9A, 0xA2, 0xA3, 0xA4, 0xA5, 0xA6, 0xA7, 0xA8, 0xA9, 0xAA, 0xB2, 0xB3, 0xB4,
        0xB5, 0xB6, 0xB7, 0xB8, 0xB9, 0xBA, 0xC2, 0xC3, 0xC4, 0xC5, 0xC6, 0xC7, 0xC8, 0xC9, 0xCA,
        0xD2, 0xD3, 0xD4, 0xD5, 0xD6, 0xD7, 0xD8, 0xD9, 0xDA, 0xE2, 0xE3, 0xE4, 0xE5, 0xE6, 0xE7,
        0xE8, 0xE9, 0xEA, 0xF2, 0xF3, 0xF4, 0xF5, 0xF6, 0xF7, 0xF8, 0xF9, 0xFA,
    ];
    const fn put(mut out: [u8; 420], mut at: usize, src: &[u8]) -> ([u8; 420], usize) {
        let mut i = 0;
        while i < src.len() {
            out[at] = src[i];
            at += 1;
            i += 1;
        }
        (out, at)
    }
    // Marker, then length 418 (everything after the marker).
    let (out, at) = put([0; 420], 0, &[0xFF, 0xC4, 0x01, 0xA2]);
    let (out, at) = put(out, at, &[0x00]);
    let (out, at) = put(out, at, &DC_LUMA_BITS);
    let (out, at) = put(out, at, &DC_VALUES);
    let (out, at) = put(out, at, &[0x10]);
    let (out, at) = put(out, at, &AC_LUMA_BITS);
    let (out, at) = put(out, at, &AC_LUMA_VALUES);
    let (out, at) = put(out, at, &[0x01]);
    let (out, at) = put(out, at, &DC_CHROMA_BITS);
    let (out, at) = put(out, at, &DC_VALUES);
    let (out, at) = put(out, at, &[0x11]);
    let (out, at) = put(out, at, &AC_CHROMA_BITS);
    let (out, at) = put(out, at, &AC_CHROMA_VALUES);
    assert!(at == 420);
    out
};

#[cfg(test)]
mod tests {
    use super::*;
    use jpeg_encoder::{ColorType, Encoder, SamplingFactor};

    /// Padding bytes in test sources: must never reach the output.
    const PAD: u8 = 0xEE;

    fn i420(width: usize, height: usize, y: &[u8], u: &[u8], v: &[u8]) -> Vec<u8> {
        assert_eq!(y.len(), width * height);
        assert_eq!((u.len(), v.len()), (width * height / 4, width * height / 4));
        [y, u, v].concat()
    }

    #[test]
    fn yuyv_exact_with_rounding_and_padding() {
        // 4x4, stride 10: two padding bytes per line, none after the last.
        #[rustfmt::skip]
        let src = [
            10, 100, 11, 200,   12, 50, 13, 7,     PAD, PAD,
            20, 103, 21, 201,   22, 51, 23, 8,     PAD, PAD,
            30, 0, 31, 255,     32, 254, 33, 1,    PAD, PAD,
            40, 255, 41, 255,   42, 255, 43, 0,
        ];
        let mut dst = I420Frame::new(0, 0);
        yuyv_to_i420(&src, 10, 4, 4, &mut dst).unwrap();
        #[rustfmt::skip]
        let want = i420(4, 4,
            &[10, 11, 12, 13, 20, 21, 22, 23, 30, 31, 32, 33, 40, 41, 42, 43],
            // (100+103+1)/2 = 102 (rounded up, not 101), (50+51+1)/2 = 51,
            // (0+255+1)/2 = 128, (254+255+1)/2 = 255.
            &[102, 51, 128, 255],
            &[201, 8, 255, 1],
        );
        assert_eq!((dst.width, dst.height), (4, 4));
        assert_eq!(dst.data, want);
    }

    #[test]
    fn nv12_exact_with_padding() {
        // 4x2, stride 6; the UV plane starts at 6 * 2.
        #[rustfmt::skip]
        let src = [
            1, 2, 3, 4, PAD, PAD,
            5, 6, 7, 8, PAD, PAD,
            100, 200, 101, 201,
        ];
        let mut dst = I420Frame::new(4, 2);
        nv12_to_i420(&src, 6, 4, 2, &mut dst).unwrap();
        assert_eq!(
            dst.data,
            i420(4, 2, &[1, 2, 3, 4, 5, 6, 7, 8], &[100, 101], &[200, 201])
        );

        // 2x4, packed (stride = width): two chroma rows.
        let src = [1, 2, 3, 4, 5, 6, 7, 8, 100, 200, 101, 201];
        nv12_to_i420(&src, 2, 2, 4, &mut dst).unwrap();
        assert_eq!((dst.width, dst.height), (2, 4));
        assert_eq!(
            dst.data,
            i420(2, 4, &[1, 2, 3, 4, 5, 6, 7, 8], &[100, 101], &[200, 201])
        );
    }

    #[test]
    fn yu12_exact_with_padding() {
        // 4x4, luma stride 5, chroma stride 5 / 2 = 2 (= width / 2: no pad).
        #[rustfmt::skip]
        let src = [
            1, 2, 3, 4, PAD,
            5, 6, 7, 8, PAD,
            9, 10, 11, 12, PAD,
            13, 14, 15, 16, PAD,
            100, 101, 102, 103,
            200, 201, 202, 203,
        ];
        let mut dst = I420Frame::new(0, 0);
        i420_to_i420(&src, 5, 4, 4, &mut dst).unwrap();
        let y: Vec<u8> = (1..=16).collect();
        assert_eq!(
            dst.data,
            i420(4, 4, &y, &[100, 101, 102, 103], &[200, 201, 202, 203])
        );

        // 4x4, luma stride 8, chroma stride 4: two padding bytes per chroma
        // line, none after the last V line.
        #[rustfmt::skip]
        let src = [
            1, 2, 3, 4, PAD, PAD, PAD, PAD,
            5, 6, 7, 8, PAD, PAD, PAD, PAD,
            9, 10, 11, 12, PAD, PAD, PAD, PAD,
            13, 14, 15, 16, PAD, PAD, PAD, PAD,
            100, 101, PAD, PAD, 102, 103, PAD, PAD,
            200, 201, PAD, PAD, 202, 203,
        ];
        i420_to_i420(&src, 8, 4, 4, &mut dst).unwrap();
        assert_eq!(
            dst.data,
            i420(4, 4, &y, &[100, 101, 102, 103], &[200, 201, 202, 203])
        );
    }

    type Convert = fn(&[u8], usize, usize, usize, &mut I420Frame) -> Result<(), ConvertError>;
    const CONVERTERS: [(&str, Convert, usize); 3] = [
        ("YUYV", yuyv_to_i420, 2),
        ("NV12", nv12_to_i420, 1),
        ("YU12", i420_to_i420, 1),
    ];

    #[test]
    fn short_buffers_are_errors() {
        let (w, h) = (8, 6);
        for (format, convert, bpp) in CONVERTERS {
            let stride = w * bpp + 4;
            // The least each layout needs: the last line without its padding.
            let need = match format {
                "YUYV" => stride * (h - 1) + 2 * w,
                "NV12" => stride * h + stride * (h / 2 - 1) + w,
                _ => stride * h + stride / 2 * (h - 1) + w / 2,
            };
            let src = vec![77; need];
            let mut dst = I420Frame::new(0, 0);
            convert(&src, stride, w, h, &mut dst).unwrap();
            assert!(dst.data.iter().all(|&p| p == 77), "{format}");
            for len in [0, 1, need / 2, need - 1] {
                let got = convert(&src[..len], stride, w, h, &mut dst);
                let want = ConvertError::ShortBuffer {
                    format,
                    width: w,
                    height: h,
                    got: len,
                    need,
                };
                assert_eq!(got, Err(want), "{format} with {len} bytes");
            }
        }
    }

    #[test]
    fn bad_sizes_and_strides_are_errors() {
        let src = vec![0; 1 << 16];
        let mut dst = I420Frame::new(2, 2);
        for (format, convert, bpp) in CONVERTERS {
            for (w, h) in [(0, 0), (0, 4), (4, 0), (5, 4), (4, 5), (1, 1)] {
                let got = convert(&src, 64, w, h, &mut dst);
                let want = ConvertError::BadSize {
                    width: w,
                    height: h,
                };
                assert_eq!(got, Err(want), "{format} {w}x{h}");
            }
            let got = convert(&src, 8 * bpp - 1, 8, 4, &mut dst);
            let want = ConvertError::BadStride {
                format,
                stride: 8 * bpp - 1,
                row: 8 * bpp,
            };
            assert_eq!(got, Err(want), "{format}");
            // Garbage strides and sizes overflow nothing and panic nowhere.
            for (stride, w, h) in [(usize::MAX, 8, 4), (usize::MAX / 3, 8, 4), (64, 1 << 40, 2)] {
                let got = convert(&src, stride, w, h, &mut dst);
                assert!(
                    matches!(
                        got,
                        Err(ConvertError::ShortBuffer { .. } | ConvertError::BadStride { .. })
                    ),
                    "{format}: {got:?}"
                );
            }
            // Errors leave the destination as it was.
            assert_eq!((dst.width, dst.height, dst.data.len()), (2, 2, 6));
        }
    }

    #[test]
    fn destination_is_resized_and_reused() {
        let src = vec![9; 64 * 32 * 2];
        let mut dst = I420Frame::new(1920, 1080);
        yuyv_to_i420(&src, 128, 64, 32, &mut dst).unwrap();
        assert_eq!(
            (dst.width, dst.height, dst.data.len()),
            (64, 32, 64 * 32 * 3 / 2)
        );
        assert!(dst.data.iter().all(|&p| p == 9));
    }

    /// Odd-sized rows (width not a multiple of any vector length) agree with
    /// a per-pixel reference, so the vectorised loops' tails are right.
    #[test]
    fn yuyv_matches_reference_on_awkward_sizes() {
        for (w, h) in [(2, 2), (6, 2), (34, 6), (130, 10)] {
            let stride = 2 * w + 6;
            let src: Vec<u8> = (0..stride * h).map(|i| (i * 7 + i / 5) as u8).collect();
            let mut dst = I420Frame::new(0, 0);
            yuyv_to_i420(&src, stride, w, h, &mut dst).unwrap();
            let (y, u, v) = dst.planes();
            for row in 0..h {
                for x in 0..w {
                    assert_eq!(y[row * w + x], src[row * stride + 2 * x]);
                }
            }
            for cy in 0..h / 2 {
                for cx in 0..w / 2 {
                    let at = |r: usize, o: usize| u32::from(src[r * stride + 4 * cx + o]);
                    let mean = |o| (at(2 * cy, o) + at(2 * cy + 1, o)).div_ceil(2) as u8;
                    assert_eq!(u[cy * w / 2 + cx], mean(1), "{w}x{h} U {cx},{cy}");
                    assert_eq!(v[cy * w / 2 + cx], mean(3), "{w}x{h} V {cx},{cy}");
                }
            }
        }
    }

    /// A smooth full-range YCbCr picture (what a camera's JPEG holds) with
    /// chroma constant over 2x2 blocks, so 4:2:2 and 4:2:0 lose little.
    fn picture(w: usize, h: usize) -> Vec<u8> {
        let mut px = Vec::with_capacity(w * h * 3);
        for y in 0..h {
            for x in 0..w {
                let (cx, cy) = (x / 2 * 2, y / 2 * 2);
                px.push((x * 255 / (w - 1)) as u8);
                px.push((40 + cy * 170 / h) as u8);
                px.push((220 - cx * 180 / w) as u8);
            }
        }
        px
    }

    fn jpeg(px: &[u8], w: usize, h: usize, sampling: SamplingFactor) -> Vec<u8> {
        let mut out = Vec::new();
        let mut enc = Encoder::new(&mut out, 95);
        enc.set_sampling_factor(sampling);
        enc.encode(px, w as u16, h as u16, ColorType::Ycbcr)
            .expect("encode JPEG");
        out
    }

    /// The JPEG without its DHT segments, as a UVC camera sends it.
    fn strip_dht(jpeg: &[u8]) -> Vec<u8> {
        let mut out = jpeg[..2].to_vec();
        let mut i = 2;
        while jpeg[i + 1] != 0xDA {
            let len = usize::from(u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]));
            if jpeg[i + 1] != 0xC4 {
                out.extend_from_slice(&jpeg[i..i + 2 + len]);
            }
            i += 2 + len;
        }
        out.extend_from_slice(&jpeg[i..]);
        out
    }

    /// The limited-range I420 that `px` should decode to, in floating point.
    fn expected(px: &[u8], w: usize, h: usize) -> I420Frame {
        let mut f = I420Frame::new(w, h);
        let (y, u, v) = f.planes_mut();
        let at = |x: usize, r: usize, c: usize| f64::from(px[(r * w + x) * 3 + c]);
        for r in 0..h {
            for x in 0..w {
                y[r * w + x] = (16.0 + at(x, r, 0) * 219.0 / 255.0).round() as u8;
            }
        }
        for cy in 0..h / 2 {
            for cx in 0..w / 2 {
                let (x, r) = (2 * cx, 2 * cy);
                let c = |c| {
                    let mean =
                        (at(x, r, c) + at(x + 1, r, c) + at(x, r + 1, c) + at(x + 1, r + 1, c))
                            / 4.0;
                    (128.0 + (mean - 128.0) * 224.0 / 255.0).round() as u8
                };
                (u[cy * w / 2 + cx], v[cy * w / 2 + cx]) = (c(1), c(2));
            }
        }
        f
    }

    /// Largest and mean absolute difference.
    fn diff(a: &[u8], b: &[u8]) -> (u8, f64) {
        assert_eq!(a.len(), b.len());
        let d = a.iter().zip(b).map(|(a, b)| a.abs_diff(*b));
        let max = d.clone().max().unwrap_or(0);
        (max, d.map(f64::from).sum::<f64>() / a.len() as f64)
    }

    #[test]
    fn jpeg_round_trip_422_420_444() {
        let (w, h) = (64, 48);
        let px = picture(w, h);
        let want = expected(&px, w, h);
        let mut dec = MjpegDecoder::new();
        for sampling in [
            SamplingFactor::R_4_2_2,
            SamplingFactor::R_4_2_0,
            SamplingFactor::R_4_4_4,
        ] {
            let mut got = I420Frame::new(2, 2);
            dec.decode(&jpeg(&px, w, h, sampling), &mut got).unwrap();
            assert_eq!((got.width, got.height), (w, h));
            let (max, mean) = diff(&got.data, &want.data);
            assert!(
                max <= 2 && mean < 0.5,
                "{sampling:?}: max {max}, mean {mean}"
            );
        }
    }

    #[test]
    fn jpeg_without_huffman_tables_uses_the_standard_ones() {
        let (w, h) = (64, 48);
        let px = picture(w, h);
        let mut dec = MjpegDecoder::new();
        for sampling in [SamplingFactor::R_4_2_2, SamplingFactor::R_4_2_0] {
            let full = jpeg(&px, w, h, sampling);
            let bare = strip_dht(&full);
            assert!(headers(&full).unwrap().huffman_tables);
            assert!(!headers(&bare).unwrap().huffman_tables);
            assert!(bare.len() < full.len() - 400, "DHT segments removed");
            let (mut a, mut b) = (I420Frame::new(0, 0), I420Frame::new(0, 0));
            dec.decode(&full, &mut a).unwrap();
            dec.decode(&bare, &mut b).unwrap();
            assert_eq!(a.data, b.data, "{sampling:?}");
        }
    }

    #[test]
    fn jpeg_full_range_becomes_limited_range() {
        // Flat 8x8 blocks survive JPEG exactly: black, white and grey.
        let (w, h) = (48, 16);
        let level = |x: usize| [0u8, 255, 128][x / 16];
        let px: Vec<u8> = (0..w * h).flat_map(|i| [level(i % w), 128, 128]).collect();
        let mut got = I420Frame::new(0, 0);
        let data = jpeg(&px, w, h, SamplingFactor::R_4_2_2);
        MjpegDecoder::new().decode(&data, &mut got).unwrap();
        let (y, u, v) = got.planes();
        for (x, &p) in y[..w].iter().enumerate() {
            assert_eq!(p, [16, 235, 126][x / 16], "x {x}");
        }
        assert!(u.iter().chain(v).all(|&c| c == 128));
    }

    #[test]
    fn corrupt_and_truncated_jpegs_are_errors() {
        let (w, h) = (64, 48);
        let good = strip_dht(&jpeg(&picture(w, h), w, h, SamplingFactor::R_4_2_2));
        let mut dec = MjpegDecoder::new();
        let mut out = I420Frame::new(0, 0);
        // Cut anywhere before the end of the entropy-coded data.
        for len in (0..good.len() - 2).step_by(3) {
            let got = dec.decode(&good[..len], &mut out);
            assert!(got.is_err(), "cut at {len} of {}", good.len());
        }
        // Garbage: never a panic, whatever the answer.
        let mut seed = 0x2545_F491_u32;
        for _ in 0..300 {
            let mut bad = good.clone();
            for _ in 0..4 {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                let at = seed as usize % bad.len();
                bad[at] = (seed >> 24) as u8;
            }
            let _ = dec.decode(&bad, &mut out);
        }
        for junk in [
            &b""[..],
            b"\xFF\xD8",
            b"\xFF\xD8\xFF\xDA",
            b"not a jpeg",
            &[0xFF; 64],
        ] {
            assert!(dec.decode(junk, &mut out).is_err());
        }
        // Still decodes a good frame afterwards.
        dec.decode(&good, &mut out).unwrap();
        assert_eq!((out.width, out.height), (w, h));
    }

    #[test]
    fn odd_sized_jpeg_is_an_error() {
        let (w, h) = (33, 16);
        let px = vec![128; w * h * 3];
        let got = MjpegDecoder::new().decode(
            &jpeg(&px, w, h, SamplingFactor::R_4_2_2),
            &mut I420Frame::new(0, 0),
        );
        assert_eq!(
            got,
            Err(ConvertError::BadSize {
                width: 33,
                height: 16
            })
        );
    }

    #[test]
    fn standard_dht_is_well_formed() {
        assert_eq!(&STANDARD_DHT[..4], &[0xFF, 0xC4, 0x01, 0xA2]);
        assert_eq!(
            usize::from(u16::from_be_bytes([STANDARD_DHT[2], STANDARD_DHT[3]])) + 2,
            STANDARD_DHT.len()
        );
        // Each table's symbol count is the sum of its 16 code counts.
        let mut i = 4;
        for class_id in [0x00, 0x10, 0x01, 0x11] {
            assert_eq!(STANDARD_DHT[i], class_id);
            let n: usize = STANDARD_DHT[i + 1..i + 17]
                .iter()
                .map(|&c| usize::from(c))
                .sum();
            i += 17 + n;
        }
        assert_eq!(i, STANDARD_DHT.len());
    }
}
