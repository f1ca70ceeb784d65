//! Pixels to model input: channel order and normalisation from the
//! manifest, NCHW layout.

use ndarray::{Array4, ArrayD};

use crate::error::{Error, Result};
use crate::imaging::{GreyImage, RgbImage};

use super::manifest::{ColourOrder, InputSpec};

fn affine(spec: &InputSpec, channel: usize) -> (f32, f32) {
    // value = (p·scale − mean)/std  =  p·(scale/std) − mean/std
    let mean = spec.mean.get(channel).copied().unwrap_or(0.0);
    let std = spec.std.get(channel).copied().unwrap_or(1.0);
    (spec.scale / std, mean / std)
}

fn same_size<I: Iterator<Item = (u32, u32)>>(mut dims: I) -> Result<(u32, u32)> {
    let first = dims
        .next()
        .ok_or_else(|| Error::invalid("images", "at least one image is needed"))?;
    if let Some(other) = dims.find(|&d| d != first) {
        return Err(Error::invalid(
            "images",
            format!("a batch mixes sizes {first:?} and {other:?}"),
        ));
    }
    Ok(first)
}

/// Builds an `N×3×H×W` tensor from RGB images of one size, in the
/// manifest's colour order and normalisation.
pub fn tensor_from_rgb(images: &[&RgbImage], spec: &InputSpec) -> Result<ArrayD<f32>> {
    let (w, h) = same_size(images.iter().map(|i| i.dimensions()))?;
    let order: [usize; 3] = match spec.colour {
        ColourOrder::Rgb => [0, 1, 2],
        ColourOrder::Bgr => [2, 1, 0],
        ColourOrder::Grey => {
            return Err(Error::invalid("images", "this model takes grey images"));
        }
    };
    let (w, h) = (w as usize, h as usize);
    let mut out = Array4::<f32>::zeros((images.len(), 3, h, w));
    for (n, image) in images.iter().enumerate() {
        let raw = image.as_raw();
        for (c, &src_channel) in order.iter().enumerate() {
            let (mul, sub) = affine(spec, c);
            let mut plane = out.slice_mut(ndarray::s![n, c, .., ..]);
            for (i, v) in plane.iter_mut().enumerate() {
                *v = f32::from(raw[i * 3 + src_channel]) * mul - sub;
            }
        }
    }
    Ok(out.into_dyn())
}

/// Builds an `N×1×H×W` tensor from grey images of one size.
pub fn tensor_from_grey(images: &[&GreyImage], spec: &InputSpec) -> Result<ArrayD<f32>> {
    let (w, h) = same_size(images.iter().map(|i| i.dimensions()))?;
    if spec.colour != ColourOrder::Grey {
        return Err(Error::invalid("images", "this model takes colour images"));
    }
    let (mul, sub) = affine(spec, 0);
    let (w, h) = (w as usize, h as usize);
    let mut out = Array4::<f32>::zeros((images.len(), 1, h, w));
    for (n, image) in images.iter().enumerate() {
        let mut plane = out.slice_mut(ndarray::s![n, 0, .., ..]);
        for (v, &p) in plane.iter_mut().zip(image.as_raw()) {
            *v = f32::from(p) * mul - sub;
        }
    }
    Ok(out.into_dyn())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applies_order_and_normalisation() {
        let spec = InputSpec {
            shape: vec![1, 3, 1, 2],
            colour: ColourOrder::Bgr,
            scale: 1.0 / 255.0,
            mean: vec![0.5, 0.0, 0.0],
            std: vec![0.5, 1.0, 2.0],
        };
        let img = RgbImage::from_raw(2, 1, vec![255, 0, 51, 0, 255, 102]).unwrap();
        let t = tensor_from_rgb(&[&img], &spec).unwrap();
        assert_eq!(t.shape(), &[1, 3, 1, 2]);
        // Channel 0 is blue: (51/255 − 0.5)/0.5 and (102/255 − 0.5)/0.5.
        assert!((t[[0, 0, 0, 0]] - (0.2 - 0.5) / 0.5).abs() < 1e-6);
        assert!((t[[0, 0, 0, 1]] - (0.4 - 0.5) / 0.5).abs() < 1e-6);
        // Channel 2 is red, divided by 2.
        assert!((t[[0, 2, 0, 0]] - 0.5).abs() < 1e-6);
        let other = RgbImage::new(3, 1);
        assert!(tensor_from_rgb(&[&img, &other], &spec).is_err());
    }
}
