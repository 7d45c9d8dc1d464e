//! Augmentation of training images on the loader thread, as torchvision's transforms:
//! `RandomCrop(size, padding)` and `RandomHorizontalFlip()` on the pixels, then (after the
//! normalisation) `RandomErasing()` with its defaults.

use crate::data::Dataset;
use crate::rng::Rng;

/// Which augmentations a training epoch applies (the default: none).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Augment {
    /// Random crop back to the image size after zero-padding every side by this many pixels
    /// (0: no crop).
    pub crop_padding: usize,
    /// Mirror left-right with probability 1/2.
    pub hflip: bool,
    /// Probability of erasing one random rectangle (2-33% of the area, aspect 0.3-3.3) to 0
    /// after normalisation, as `RandomErasing(p)` (0: never).
    pub erase: f32,
}

impl Augment {
    /// True when nothing changes the images.
    pub fn is_identity(&self) -> bool {
        self.crop_padding == 0 && !self.hflip && self.erase <= 0.0
    }

    /// Writes image `i` of `data`, cropped and flipped, into `out` (`c · h · w` bytes; padding
    /// reads as 0, black, as torchvision pads before `ToTensor`).
    pub(crate) fn geometric(&self, rng: &mut Rng, data: &Dataset, i: usize, out: &mut Vec<u8>) {
        let (c, h, w) = (data.c, data.h, data.w);
        let src = data.image(i);
        let p = self.crop_padding as isize;
        let (dy, dx) = if p > 0 {
            let span = 2 * self.crop_padding + 1;
            (
                rng.below(span as u64) as isize - p,
                rng.below(span as u64) as isize - p,
            )
        } else {
            (0, 0)
        };
        let flip = self.hflip && rng.below(2) == 1;
        out.clear();
        out.resize(c * h * w, 0);
        for ch in 0..c {
            for y in 0..h {
                let sy = y as isize + dy;
                if sy < 0 || sy >= h as isize {
                    continue;
                }
                for x in 0..w {
                    let xx = if flip { w - 1 - x } else { x };
                    let sx = xx as isize + dx;
                    if sx < 0 || sx >= w as isize {
                        continue;
                    }
                    out[(ch * h + y) * w + x] = src[(ch * h + sy as usize) * w + sx as usize];
                }
            }
        }
    }

    /// `RandomErasing(p=erase, scale=(0.02, 0.33), ratio=(0.3, 3.3), value=0)` on one
    /// normalised image `img` (`c · h · w` floats): up to 10 tries at a rectangle that fits.
    pub(crate) fn erase(&self, rng: &mut Rng, data: &Dataset, img: &mut [f32]) {
        if self.erase <= 0.0 || rng.range(0.0, 1.0) >= self.erase {
            return;
        }
        let (h, w) = (data.h, data.w);
        let area = (h * w) as f32;
        for _ in 0..10 {
            let target = area * rng.range(0.02, 0.33);
            let ratio = rng.range(0.3f32.ln(), 3.3f32.ln()).exp();
            let eh = (target * ratio).sqrt().round() as usize;
            let ew = (target / ratio).sqrt().round() as usize;
            if eh == 0 || ew == 0 || eh >= h || ew >= w {
                continue;
            }
            let y0 = rng.below((h - eh + 1) as u64) as usize;
            let x0 = rng.below((w - ew + 1) as u64) as usize;
            for ch in 0..data.c {
                for y in y0..y0 + eh {
                    let row = (ch * h + y) * w;
                    img[row + x0..row + x0 + ew].fill(0.0);
                }
            }
            return;
        }
    }
}

impl std::fmt::Display for Augment {
    /// `random crop (padding 4), horizontal flip, random erasing (p 0.25)`, or `none`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if self.crop_padding > 0 {
            parts.push(format!("random crop (padding {})", self.crop_padding));
        }
        if self.hflip {
            parts.push("horizontal flip".to_string());
        }
        if self.erase > 0.0 {
            parts.push(format!("random erasing (p {})", self.erase));
        }
        if parts.is_empty() {
            parts.push("none".to_string());
        }
        f.write_str(&parts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{synthetic, Normalize};

    fn one_image(c: usize, h: usize, w: usize) -> Dataset {
        Dataset {
            pixels: (0..c * h * w).map(|v| (v % 250 + 1) as u8).collect(),
            labels: vec![0],
            c,
            h,
            w,
            n_classes: 1,
            classes: vec!["a".into()],
            norm: Normalize {
                mean: vec![0.0; c],
                std: vec![1.0; c],
            },
        }
    }

    #[test]
    fn crop_shifts_within_the_padding_and_flip_mirrors() {
        let data = one_image(2, 5, 7);
        let mut rng = Rng::new(1);
        let flip = Augment {
            hflip: true,
            ..Default::default()
        };
        let mut out = Vec::new();
        let mut flipped = 0;
        for _ in 0..20 {
            flip.geometric(&mut rng, &data, 0, &mut out);
            if out != data.pixels {
                flipped += 1;
                // Row 0 of channel 1, mirrored.
                let row: Vec<u8> = data.pixels[35..42].iter().rev().copied().collect();
                assert_eq!(&out[35..42], &row[..]);
            }
        }
        assert!((5..=15).contains(&flipped), "{flipped} of 20 flipped");
        let crop = Augment {
            crop_padding: 2,
            ..Default::default()
        };
        for _ in 0..20 {
            crop.geometric(&mut rng, &data, 0, &mut out);
            // Every pixel is a source pixel at one common offset (|dy|, |dx| <= 2), or padding.
            let offsets: Vec<(isize, isize)> = (-2..=2)
                .flat_map(|dy| (-2..=2).map(move |dx| (dy, dx)))
                .filter(|&(dy, dx)| {
                    (0..2 * 5 * 7).all(|i| {
                        let (ch, y, x) = (i / 35, (i / 7) % 5, i % 7);
                        let (sy, sx) = (y as isize + dy, x as isize + dx);
                        let want = if (0..5).contains(&sy) && (0..7).contains(&sx) {
                            data.pixels[ch * 35 + sy as usize * 7 + sx as usize]
                        } else {
                            0
                        };
                        out[i] == want
                    })
                })
                .collect();
            assert!(!offsets.is_empty(), "{out:?}");
        }
    }

    #[test]
    fn erasing_zeroes_one_rectangle_in_every_channel() {
        let data = synthetic(1, 1, 0).train;
        let erase = Augment {
            erase: 1.0,
            ..Default::default()
        };
        let mut rng = Rng::new(4);
        let mut img = vec![1.0f32; 28 * 28];
        erase.erase(&mut rng, &data, &mut img);
        let zeros: Vec<usize> = (0..img.len()).filter(|&i| img[i] == 0.0).collect();
        let area = zeros.len() as f32 / (28.0 * 28.0);
        assert!((0.015..=0.34).contains(&area), "erased {area} of the image");
        let (ys, xs): (Vec<usize>, Vec<usize>) = zeros.iter().map(|&i| (i / 28, i % 28)).unzip();
        let rect = (ys.iter().max().unwrap() - ys.iter().min().unwrap() + 1)
            * (xs.iter().max().unwrap() - xs.iter().min().unwrap() + 1);
        assert_eq!(rect, zeros.len(), "one solid rectangle");
    }
}
