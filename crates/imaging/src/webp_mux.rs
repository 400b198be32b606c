//! Minimal WebP RIFF muxing: embed an ICC profile (`ICCP` chunk).
//!
//! The `webp` crate's simple encoder cannot write ICC profiles, so we
//! rewrite its output container: ensure a `VP8X` header chunk with the ICC
//! flag set, followed by the `ICCP` chunk, then the original image chunks.

/// VP8X flag bits.
const FLAG_ICC: u8 = 0x20;
const FLAG_ALPHA: u8 = 0x10;

/// Splits a RIFF WebP payload into `(fourcc, payload)` chunks.
fn chunks(webp: &[u8]) -> Option<Vec<([u8; 4], &[u8])>> {
    if webp.len() < 12 || &webp[0..4] != b"RIFF" || &webp[8..12] != b"WEBP" {
        return None;
    }
    let mut out = Vec::new();
    let mut pos = 12usize;
    while pos < webp.len() {
        let header = webp.get(pos..pos.checked_add(8)?)?;
        let fourcc: [u8; 4] = header.get(0..4)?.try_into().ok()?;
        let size = u32::from_le_bytes(header.get(4..8)?.try_into().ok()?) as usize;
        let start = pos + 8;
        let end = start.checked_add(size)?;
        out.push((fourcc, webp.get(start..end)?));
        // Chunks are padded to an even size.
        pos = end + (size & 1);
    }
    Some(out)
}

fn push_chunk(out: &mut Vec<u8>, fourcc: &[u8; 4], payload: &[u8]) -> Option<()> {
    out.extend_from_slice(fourcc);
    out.extend_from_slice(&u32::try_from(payload.len()).ok()?.to_le_bytes());
    out.extend_from_slice(payload);
    if payload.len() % 2 == 1 {
        out.push(0);
    }
    Some(())
}

/// Returns `webp` with `icc` embedded, or `None` if the input is not a
/// container we understand (the caller then keeps the original bytes).
pub(crate) fn add_icc(
    webp: &[u8],
    icc: &[u8],
    width: u32,
    height: u32,
    alpha: bool,
) -> Option<Vec<u8>> {
    if icc.is_empty() || width == 0 || height == 0 || width > 1 << 24 || height > 1 << 24 {
        return None;
    }
    let chunks = chunks(webp)?;
    let mut body = Vec::with_capacity(webp.len() + icc.len() + 32);
    body.extend_from_slice(b"WEBP");

    let mut rest = chunks.as_slice();
    let vp8x: Vec<u8> = match rest.first() {
        Some((fourcc, payload)) if fourcc == b"VP8X" && payload.len() >= 10 => {
            rest = &rest[1..];
            let mut p = payload.to_vec();
            p[0] |= FLAG_ICC;
            p
        }
        Some((fourcc, _)) if fourcc == b"VP8 " || fourcc == b"VP8L" => {
            let mut p = vec![0u8; 10];
            p[0] = FLAG_ICC | if alpha { FLAG_ALPHA } else { 0 };
            p[4..7].copy_from_slice(&(width - 1).to_le_bytes()[..3]);
            p[7..10].copy_from_slice(&(height - 1).to_le_bytes()[..3]);
            p
        }
        _ => return None,
    };
    push_chunk(&mut body, b"VP8X", &vp8x)?;
    push_chunk(&mut body, b"ICCP", icc)?;
    for (fourcc, payload) in rest {
        if fourcc == b"ICCP" {
            continue;
        }
        push_chunk(&mut body, fourcc, payload)?;
    }

    let mut out = Vec::with_capacity(body.len() + 8);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&u32::try_from(body.len()).ok()?.to_le_bytes());
    out.extend_from_slice(&body);
    Some(out)
}
