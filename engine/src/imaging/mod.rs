//! Images: guarded decoding and the geometric operations the pipelines need
//! (bilinear resize, affine warp), written to match OpenCV's conventions
//! (`INTER_LINEAR`, constant black border) that the reference pipelines and
//! models were built with.

mod decode;
mod geometry;

pub use decode::{DecodeLimits, decode_grey, decode_rgb};
pub use geometry::{Affine, crop_resize, resize_bilinear, warp_affine};

/// An 8-bit RGB image (row-major, 3 bytes per pixel).
pub type RgbImage = image::RgbImage;
/// An 8-bit grey image.
pub type GreyImage = image::GrayImage;
