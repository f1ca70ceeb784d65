//! Finger minutiae records: ISO/IEC 19794-2:2005 and ANSI INCITS 378-2004.
//!
//! Both formats share the magic `FMR\0` and version ` 20\0`, the finger view
//! header and the 6-byte minutia; they differ in the general header (ISO: a
//! 4-byte record length, 24 bytes in all; ANSI: a 2-byte length, or 0 and a
//! 4-byte length, plus a 4-byte CBEFF product id, 26 or 30 bytes) and in the
//! angle unit (ISO: 1/256 of a turn; ANSI: 2°). [`MinutiaeRecord::parse`]
//! tells them apart by which length field agrees with the bytes given;
//! [`MinutiaeRecord::parse_as`] takes the format from the caller.
//!
//! Parsing is strict: every length, count and code is checked, and the
//! first problem is a [`Error::MinutiaeRecord`] naming its byte offset.
//! Extended data blocks are checked for consistent lengths and kept as raw
//! bytes, so [`MinutiaeRecord::to_bytes`] reproduces a parsed record byte
//! for byte (and any record this module wrote).
//!
//! Coordinates are pixels from the top-left corner, `x` to the right and `y`
//! down. Angles are radians in `[0, 2π)`, counter-clockwise as seen on the
//! image from the `x` axis (so a ridge running up and to the right has an
//! angle below π/2), as both standards define them.

use std::f32::consts::TAU;

use crate::error::{Error, Result};

/// Which standard a record follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Format {
    /// ISO/IEC 19794-2:2005.
    #[serde(rename = "iso19794-2:2005")]
    Iso2005,
    /// ANSI INCITS 378-2004.
    #[serde(rename = "ansi378:2004")]
    Ansi378,
}

impl Format {
    /// Name as accepted by [`Format::parse`] and the API.
    pub fn name(self) -> &'static str {
        match self {
            Format::Iso2005 => "iso19794-2:2005",
            Format::Ansi378 => "ansi378:2004",
        }
    }

    /// Parses `iso19794-2:2005` (or `iso`) and `ansi378:2004` (or `ansi`).
    pub fn parse(s: &str) -> Result<Format> {
        match s {
            "iso19794-2:2005" | "iso" => Ok(Format::Iso2005),
            "ansi378:2004" | "ansi" => Ok(Format::Ansi378),
            _ => Err(Error::invalid(
                "format",
                format!("`{s}`: expected iso19794-2:2005 or ansi378:2004"),
            )),
        }
    }

    /// Angle codes per full turn.
    fn angle_units(self) -> f32 {
        match self {
            Format::Iso2005 => 256.0,
            Format::Ansi378 => 180.0,
        }
    }
}

/// Kind of a minutia (the two type bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MinutiaKind {
    /// Type 0: neither (or not determined).
    Other,
    /// Type 1: a ridge ending.
    Ending,
    /// Type 2: a ridge bifurcation.
    Bifurcation,
}

impl MinutiaKind {
    fn code(self) -> u16 {
        match self {
            MinutiaKind::Other => 0,
            MinutiaKind::Ending => 1,
            MinutiaKind::Bifurcation => 2,
        }
    }
}

/// One minutia.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Minutia {
    /// Ending, bifurcation or other.
    pub kind: MinutiaKind,
    /// Column in pixels (0 to 16383).
    pub x: u16,
    /// Row in pixels (0 to 16383).
    pub y: u16,
    /// Direction in radians, `[0, 2π)`, counter-clockwise from the `x` axis.
    pub angle: f32,
    /// Quality 0 to 100 (0: not reported).
    pub quality: u8,
}

/// One finger view: a finger position, and the minutiae found on it.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FingerView {
    /// Finger position code (0 unknown, 1–10 right thumb … left little, 13–15 multi-finger).
    pub position: u8,
    /// View number (0 to 15).
    pub view_number: u8,
    /// Impression type (0 live plain, 1 live rolled, 2 non-live plain, 3 non-live rolled, 8 swipe).
    pub impression_type: u8,
    /// Finger quality 0 to 100.
    pub quality: u8,
    /// The minutiae (at most 255).
    pub minutiae: Vec<Minutia>,
    /// The extended data block as stored (areas with their headers); empty if none.
    pub extended: Vec<u8>,
}

/// A finger minutiae record: the image it came from and its views.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MinutiaeRecord {
    /// The standard it follows (and that [`MinutiaeRecord::to_bytes`] writes).
    pub format: Format,
    /// CBEFF product identifier (ANSI only; 0 for ISO).
    pub product_id: u32,
    /// Capture equipment: 4 bits of compliance and 12 bits of equipment id.
    pub capture_equipment: u16,
    /// Image width in pixels.
    pub width: u16,
    /// Image height in pixels.
    pub height: u16,
    /// Horizontal resolution in pixels per centimetre (197 ≈ 500 dpi).
    pub x_resolution: u16,
    /// Vertical resolution in pixels per centimetre.
    pub y_resolution: u16,
    /// At least one finger view.
    pub views: Vec<FingerView>,
}

const MAGIC: &[u8; 8] = b"FMR\0 20\0";
const MINUTIA_BYTES: usize = 6;

/// A bounds-checked big-endian reader that knows its offset.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let Some(end) = end else {
            return Err(bad(
                self.at,
                format!(
                    "truncated: {what} needs {n} bytes, {} left",
                    self.bytes.len() - self.at
                ),
            ));
        };
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn u8(&mut self, what: &str) -> Result<u8> {
        Ok(self.take(1, what)?[0])
    }

    fn u16(&mut self, what: &str) -> Result<u16> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

fn bad(offset: usize, reason: impl Into<String>) -> Error {
    Error::MinutiaeRecord {
        offset,
        reason: reason.into(),
    }
}

impl MinutiaeRecord {
    /// Parses a record, telling ISO/IEC 19794-2:2005 from ANSI INCITS
    /// 378-2004 by which header length field matches `bytes.len()`.
    pub fn parse(bytes: &[u8]) -> Result<MinutiaeRecord> {
        check_magic(bytes)?;
        let field = |at: usize, n: usize| -> Option<usize> {
            bytes
                .get(at..at + n)
                .map(|b| b.iter().fold(0usize, |acc, &x| acc << 8 | x as usize))
        };
        let len = bytes.len();
        if field(8, 4) == Some(len) {
            Self::parse_as(bytes, Format::Iso2005)
        } else if field(8, 2) == Some(len) || (field(8, 2) == Some(0) && field(10, 4) == Some(len))
        {
            Self::parse_as(bytes, Format::Ansi378)
        } else {
            Err(bad(
                8,
                format!(
                    "the record length field matches neither ISO/IEC 19794-2:2005 nor \
                     ANSI INCITS 378-2004 for the {len} bytes given (truncated or padded?)"
                ),
            ))
        }
    }

    /// Parses a record of a known format.
    pub fn parse_as(bytes: &[u8], format: Format) -> Result<MinutiaeRecord> {
        check_magic(bytes)?;
        let mut r = Reader { bytes, at: 8 };
        let length_at = r.at;
        let declared = match format {
            Format::Iso2005 => r.u32("record length")? as usize,
            Format::Ansi378 => match r.u16("record length")? {
                0 => r.u32("extended record length")? as usize,
                n => n as usize,
            },
        };
        if declared != bytes.len() {
            return Err(bad(
                length_at,
                format!(
                    "record length field says {declared} bytes, {} given",
                    bytes.len()
                ),
            ));
        }
        let product_id = match format {
            Format::Iso2005 => 0,
            Format::Ansi378 => r.u32("CBEFF product id")?,
        };
        let capture_equipment = r.u16("capture equipment")?;
        let size_at = r.at;
        let width = r.u16("image width")?;
        let height = r.u16("image height")?;
        if width == 0 || height == 0 {
            return Err(bad(size_at, format!("image size {width}×{height}")));
        }
        let res_at = r.at;
        let x_resolution = r.u16("x resolution")?;
        let y_resolution = r.u16("y resolution")?;
        if x_resolution == 0 || y_resolution == 0 {
            return Err(bad(res_at, "resolution 0 pixels/cm"));
        }
        let views_at = r.at;
        let n_views = r.u8("number of finger views")?;
        if n_views == 0 {
            return Err(bad(views_at, "no finger views"));
        }
        r.u8("reserved byte")?;
        let mut views = Vec::with_capacity(n_views as usize);
        for _ in 0..n_views {
            views.push(parse_view(&mut r, format, width, height)?);
        }
        if r.at != bytes.len() {
            return Err(bad(
                r.at,
                format!("{} bytes after the last finger view", bytes.len() - r.at),
            ));
        }
        Ok(MinutiaeRecord {
            format,
            product_id,
            capture_equipment,
            width,
            height,
            x_resolution,
            y_resolution,
            views,
        })
    }

    /// Serialises the record in its [`format`](MinutiaeRecord::format).
    ///
    /// View `index` with its coordinates brought to 500 dpi (197 px/cm, the
    /// matcher's scale) from the record's resolution; a resolution of 0
    /// (unknown) is taken as 500 dpi.
    pub fn view_at_500dpi(&self, index: usize) -> Option<FingerView> {
        let mut view = self.views.get(index)?.clone();
        let factor = |per_cm: u16| {
            if per_cm == 0 {
                1.0
            } else {
                197.0 / per_cm as f32
            }
        };
        let (fx, fy) = (factor(self.x_resolution), factor(self.y_resolution));
        if fx != 1.0 || fy != 1.0 {
            for m in &mut view.minutiae {
                m.x = (m.x as f32 * fx).round().min(16383.0) as u16;
                m.y = (m.y as f32 * fy).round().min(16383.0) as u16;
                if fx != fy {
                    // An anisotropic scale turns directions too.
                    let (c, s) = (m.angle.cos() * fx, m.angle.sin() * fy);
                    m.angle = s.atan2(c).rem_euclid(TAU);
                }
            }
        }
        Some(view)
    }

    /// Fails only for records no parser would have produced: no views, more
    /// than 255 views or minutiae, coordinates beyond 14 bits, an extended
    /// block over 65535 bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        if self.views.is_empty() || self.views.len() > 255 {
            return Err(Error::invalid(
                "views",
                format!("{} finger views: 1 to 255 can be written", self.views.len()),
            ));
        }
        let mut body = Vec::new();
        for v in &self.views {
            if v.minutiae.len() > 255 {
                return Err(Error::invalid(
                    "minutiae",
                    format!("{} minutiae in a view: at most 255", v.minutiae.len()),
                ));
            }
            if v.extended.len() > u16::MAX as usize {
                return Err(Error::invalid("extended", "extended data over 65535 bytes"));
            }
            body.extend_from_slice(&[
                v.position,
                (v.view_number << 4) | (v.impression_type & 0x0f),
                v.quality,
                v.minutiae.len() as u8,
            ]);
            for m in &v.minutiae {
                if m.x >= 1 << 14 || m.y >= 1 << 14 {
                    return Err(Error::invalid(
                        "minutiae",
                        format!("coordinates ({}, {}) do not fit 14 bits", m.x, m.y),
                    ));
                }
                body.extend_from_slice(&((m.kind.code() << 14) | m.x).to_be_bytes());
                body.extend_from_slice(&m.y.to_be_bytes());
                body.push(angle_code(m.angle, self.format));
                body.push(m.quality);
            }
            body.extend_from_slice(&(v.extended.len() as u16).to_be_bytes());
            body.extend_from_slice(&v.extended);
        }
        let tail = [
            self.width,
            self.height,
            self.x_resolution,
            self.y_resolution,
        ];
        let mut out = Vec::with_capacity(32 + body.len());
        out.extend_from_slice(MAGIC);
        match self.format {
            Format::Iso2005 => {
                let len = 24 + body.len();
                out.extend_from_slice(&(len as u32).to_be_bytes());
            }
            Format::Ansi378 => {
                let short = 26 + body.len();
                if short <= u16::MAX as usize {
                    out.extend_from_slice(&(short as u16).to_be_bytes());
                } else {
                    out.extend_from_slice(&[0, 0]);
                    out.extend_from_slice(&(short as u32 + 4).to_be_bytes());
                }
                out.extend_from_slice(&self.product_id.to_be_bytes());
            }
        }
        out.extend_from_slice(&self.capture_equipment.to_be_bytes());
        for v in tail {
            out.extend_from_slice(&v.to_be_bytes());
        }
        out.push(self.views.len() as u8);
        out.push(0);
        out.extend_from_slice(&body);
        Ok(out)
    }
}

fn check_magic(bytes: &[u8]) -> Result<()> {
    if bytes.len() < MAGIC.len() {
        return Err(bad(
            bytes.len(),
            format!(
                "truncated: {} bytes, a header needs at least 24",
                bytes.len()
            ),
        ));
    }
    if &bytes[..4] != b"FMR\0" {
        return Err(bad(0, "not a finger minutiae record (no `FMR` magic)"));
    }
    if &bytes[4..8] != b" 20\0" {
        return Err(bad(
            4,
            format!(
                "version `{}` is not supported (only 2.0: ISO/IEC 19794-2:2005, ANSI INCITS 378-2004)",
                String::from_utf8_lossy(&bytes[4..7]).trim()
            ),
        ));
    }
    Ok(())
}

fn parse_view(r: &mut Reader<'_>, format: Format, width: u16, height: u16) -> Result<FingerView> {
    let at = r.at;
    let position = r.u8("finger position")?;
    if !(position <= 10 || (13..=15).contains(&position)) {
        return Err(bad(at, format!("finger position code {position}")));
    }
    let packed = r.u8("view number and impression type")?;
    let (view_number, impression_type) = (packed >> 4, packed & 0x0f);
    if !matches!(impression_type, 0..=3 | 8) {
        return Err(bad(at + 1, format!("impression type {impression_type}")));
    }
    let quality = r.u8("finger quality")?;
    if quality > 100 {
        return Err(bad(at + 2, format!("finger quality {quality} above 100")));
    }
    let count = r.u8("number of minutiae")? as usize;
    let mut minutiae = Vec::with_capacity(count);
    for i in 0..count {
        let m_at = r.at;
        let b = r.take(MINUTIA_BYTES, "minutia")?;
        let first = u16::from_be_bytes([b[0], b[1]]);
        let kind = match first >> 14 {
            0 => MinutiaKind::Other,
            1 => MinutiaKind::Ending,
            2 => MinutiaKind::Bifurcation,
            _ => return Err(bad(m_at, format!("minutia {i}: reserved type 3"))),
        };
        let x = first & 0x3fff;
        let y = u16::from_be_bytes([b[2], b[3]]) & 0x3fff;
        if x >= width || y >= height {
            return Err(bad(
                m_at,
                format!("minutia {i} at ({x}, {y}) lies outside the {width}×{height} image"),
            ));
        }
        let code = b[4];
        if code as f32 >= format.angle_units() {
            return Err(bad(m_at + 4, format!("minutia {i}: angle code {code}")));
        }
        let quality = b[5];
        if quality > 100 {
            return Err(bad(
                m_at + 5,
                format!("minutia {i}: quality {quality} above 100"),
            ));
        }
        minutiae.push(Minutia {
            kind,
            x,
            y,
            angle: code as f32 * TAU / format.angle_units(),
            quality,
        });
    }
    let ext_at = r.at;
    let ext_len = r.u16("extended data length")? as usize;
    let extended = r.take(ext_len, "extended data block")?;
    // The block is a sequence of areas: type (2 bytes), length (2 bytes,
    // header included), data. Their lengths must tile the block exactly.
    let mut at = 0;
    while at < extended.len() {
        let area = ext_at + 2 + at;
        if extended.len() - at < 4 {
            return Err(bad(area, "extended data area header truncated"));
        }
        let len = u16::from_be_bytes([extended[at + 2], extended[at + 3]]) as usize;
        if len < 4 || len > extended.len() - at {
            return Err(bad(
                area + 2,
                format!(
                    "extended data area of {len} bytes in a block with {} left",
                    extended.len() - at
                ),
            ));
        }
        at += len;
    }
    Ok(FingerView {
        position,
        view_number,
        impression_type,
        quality,
        minutiae,
        extended: extended.to_vec(),
    })
}

/// The format's angle code for `angle` radians (rounded, wrapped).
fn angle_code(angle: f32, format: Format) -> u8 {
    let units = format.angle_units();
    let code = (angle.rem_euclid(TAU) * units / TAU).round();
    (code as u32 % units as u32) as u8
}

#[cfg(test)]
mod tests;
