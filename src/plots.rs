//! Pictures of a training run, as PNG files: the training curves (loss, accuracy and learning
//! rate per epoch, the running loss between), grids of images (the first convolution's
//! filters, feature maps, misclassified test images with their labels) and the confusion
//! matrix with class names.
//!
//! Charts are drawn with `plotters` on an RGB buffer that the `image` crate saves; text uses
//! the DejaVu Sans font embedded in the binary (`assets/fonts`, its licence beside it), so
//! nothing depends on the fonts a machine has.

use std::path::Path;
use std::sync::Once;

use plotters::prelude::*;

use crate::{Error, Result};

static FONT: &[u8] = include_bytes!("../assets/fonts/DejaVuSans.ttf");

/// Makes the embedded font plotters' `sans-serif`.
fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The font is valid TrueType, embedded at build time.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

fn err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Data {
        path: path.into(),
        message: format!("drawing: {e}"),
    }
}

/// Saves an RGB buffer of `w × h` as PNG.
fn save(path: &Path, buf: Vec<u8>, (w, h): (u32, u32)) -> Result<()> {
    let img = image::RgbImage::from_raw(w, h, buf).expect("the buffer is w·h·3 bytes");
    img.save(path).map_err(|e| err(path, e))
}

type Chart<'a, 'b> = ChartContext<
    'a,
    BitMapBackend<'b>,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

/// Draws named series (lines with dots, blue, red, green in turn) and their legend at `pos`.
fn draw_series<'b>(
    chart: &mut Chart<'b, 'b>,
    series: &[(&str, Vec<(f64, f64)>)],
    pos: SeriesLabelPosition,
    path: &Path,
) -> Result<()> {
    for ((name, points), colour) in series.iter().zip([&BLUE, &RED, &GREEN]) {
        if points.is_empty() {
            continue;
        }
        chart
            .draw_series(LineSeries::new(points.clone(), colour.stroke_width(2)))
            .map_err(|e| err(path, e))?
            .label(*name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
            });
        chart
            .draw_series(points.iter().map(|&p| Circle::new(p, 3, colour.filled())))
            .map_err(|e| err(path, e))?;
    }
    chart
        .configure_series_labels()
        .position(pos)
        .label_font(("sans-serif", 15))
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()
        .map_err(|e| err(path, e))
}

/// One epoch's figures, for [`training_curves`].
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct EpochPoint {
    /// The epoch (from 1).
    pub epoch: f64,
    /// Mean training loss over the epoch.
    pub train_loss: f64,
    /// Training accuracy over the epoch.
    pub train_acc: f64,
    /// Validation loss and accuracy, with a validation set.
    pub val: Option<(f64, f64)>,
    /// Test loss and accuracy.
    pub test: (f64, f64),
}

/// The training curves: loss and accuracy per epoch (train, validation, test; the running
/// training loss between epochs as a thin line) and the learning rate, side by side.
/// `running` is `(epoch, loss)` at fractional epochs, `lr` `(epoch, rate)`.
pub fn training_curves(
    path: &Path,
    epochs: &[EpochPoint],
    running: &[(f64, f64)],
    lr: &[(f64, f64)],
) -> Result<()> {
    register_font();
    let size = (1500u32, 450u32);
    let mut buf = vec![255u8; (size.0 * size.1 * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, size).into_drawing_area();
        let panels = root.split_evenly((1, 3));
        let last = epochs.last().map_or(1.0, |e| e.epoch).max(1.0);
        let x_range = 0.0..last;
        // Loss.
        let losses = epochs
            .iter()
            .flat_map(|e| [Some(e.train_loss), e.val.map(|v| v.0), Some(e.test.0)])
            .flatten()
            .chain(running.iter().map(|r| r.1))
            .filter(|v| v.is_finite());
        let top = losses.fold(0.0f64, f64::max).max(1e-3) * 1.05;
        let mut chart = ChartBuilder::on(&panels[0])
            .caption("loss", ("sans-serif", 26))
            .margin(12)
            .x_label_area_size(45)
            .y_label_area_size(60)
            .build_cartesian_2d(x_range.clone(), 0.0..top)
            .map_err(|e| err(path, e))?;
        chart
            .configure_mesh()
            .x_desc("epoch")
            .y_desc("cross-entropy")
            .label_style(("sans-serif", 15))
            .draw()
            .map_err(|e| err(path, e))?;
        chart
            .draw_series(LineSeries::new(
                running.iter().copied(),
                BLUE.mix(0.3).stroke_width(1),
            ))
            .map_err(|e| err(path, e))?;
        let series: [(&str, Vec<(f64, f64)>); 3] = [
            (
                "train",
                epochs.iter().map(|e| (e.epoch, e.train_loss)).collect(),
            ),
            (
                "validation",
                epochs
                    .iter()
                    .filter_map(|e| Some((e.epoch, e.val?.0)))
                    .collect(),
            ),
            ("test", epochs.iter().map(|e| (e.epoch, e.test.0)).collect()),
        ];
        draw_series(&mut chart, &series, SeriesLabelPosition::UpperRight, path)?;

        // Accuracy, in percent.
        let mut chart = ChartBuilder::on(&panels[1])
            .caption("accuracy", ("sans-serif", 26))
            .margin(12)
            .x_label_area_size(45)
            .y_label_area_size(60)
            .build_cartesian_2d(x_range.clone(), 0.0..100.0)
            .map_err(|e| err(path, e))?;
        chart
            .configure_mesh()
            .x_desc("epoch")
            .y_desc("%")
            .label_style(("sans-serif", 15))
            .draw()
            .map_err(|e| err(path, e))?;
        let series: [(&str, Vec<(f64, f64)>); 3] = [
            (
                "train",
                epochs
                    .iter()
                    .map(|e| (e.epoch, 100.0 * e.train_acc))
                    .collect(),
            ),
            (
                "validation",
                epochs
                    .iter()
                    .filter_map(|e| Some((e.epoch, 100.0 * e.val?.1)))
                    .collect(),
            ),
            (
                "test",
                epochs.iter().map(|e| (e.epoch, 100.0 * e.test.1)).collect(),
            ),
        ];
        draw_series(&mut chart, &series, SeriesLabelPosition::LowerRight, path)?;

        // Learning rate.
        let top = lr.iter().map(|p| p.1).fold(0.0f64, f64::max).max(1e-12) * 1.1;
        let mut chart = ChartBuilder::on(&panels[2])
            .caption("learning rate", ("sans-serif", 26))
            .margin(12)
            .x_label_area_size(45)
            .y_label_area_size(70)
            .build_cartesian_2d(x_range, 0.0..top)
            .map_err(|e| err(path, e))?;
        chart
            .configure_mesh()
            .x_desc("epoch")
            .y_desc("rate")
            .y_label_formatter(&|v| format!("{v:.1e}"))
            .label_style(("sans-serif", 15))
            .draw()
            .map_err(|e| err(path, e))?;
        chart
            .draw_series(LineSeries::new(lr.iter().copied(), BLACK.stroke_width(2)))
            .map_err(|e| err(path, e))?;
        root.present().map_err(|e| err(path, e))?;
    }
    save(path, buf, size)
}

/// One tile of an [`image_grid`]: `w × h` pixels, 1 (gray) or 3 (RGB) channel planes of
/// values in [0, 1], and a caption under it.
#[derive(Clone, Debug)]
pub struct Tile {
    /// Channel planes (`channels · h · w`), values in [0, 1].
    pub pixels: Vec<f32>,
    /// 1 or 3.
    pub channels: usize,
    /// Height.
    pub h: usize,
    /// Width.
    pub w: usize,
    /// Text under the tile (may be empty).
    pub caption: String,
}

impl Tile {
    /// An empty place in the grid.
    pub fn blank() -> Self {
        Tile {
            pixels: Vec::new(),
            channels: 1,
            h: 0,
            w: 0,
            caption: String::new(),
        }
    }

    /// A tile of `values` (one or three planes) scaled so their minimum is black and maximum
    /// white (all equal: mid-gray).
    pub fn normalised(
        values: &[f32],
        channels: usize,
        h: usize,
        w: usize,
        caption: String,
    ) -> Self {
        let (lo, hi) = values
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
                (lo.min(v), hi.max(v))
            });
        let span = hi - lo;
        let pixels = values
            .iter()
            .map(|&v| if span > 0.0 { (v - lo) / span } else { 0.5 })
            .collect();
        Tile {
            pixels,
            channels,
            h,
            w,
            caption,
        }
    }
}

/// A grid of tiles under a title, each scaled up (nearest neighbour, a whole factor) to about
/// `cell` pixels on its longer side and captioned; `cols` tiles a row.
pub fn image_grid(
    path: &Path,
    title: &str,
    tiles: &[Tile],
    cols: usize,
    cell: usize,
) -> Result<()> {
    register_font();
    let cols = cols.clamp(1, tiles.len().max(1));
    let rows = tiles.len().div_ceil(cols).max(1);
    let scale = |t: &Tile| (cell / t.h.max(t.w).max(1)).max(1);
    let tw = tiles.iter().map(|t| t.w * scale(t)).max().unwrap_or(1);
    let th = tiles.iter().map(|t| t.h * scale(t)).max().unwrap_or(1);
    let captioned = tiles.iter().any(|t| !t.caption.is_empty());
    let caption_h = if captioned { 22 } else { 0 };
    let (pad, title_h) = (8, 40);
    let cell_w = (tw + pad).max(if captioned { 190 } else { 0 });
    let w = (cols * cell_w + pad) as u32;
    let h = (title_h + rows * (th + caption_h + pad) + pad) as u32;
    let mut buf = vec![255u8; (w * h * 3) as usize];
    for (i, t) in tiles.iter().enumerate() {
        if t.pixels.is_empty() {
            continue;
        }
        let (x0, y0) = (
            pad + (i % cols) * cell_w,
            title_h + (i / cols) * (th + caption_h + pad),
        );
        let scale = scale(t);
        for y in 0..t.h * scale {
            for x in 0..t.w * scale {
                let (sy, sx) = (y / scale, x / scale);
                let at = |c: usize| t.pixels[(c.min(t.channels - 1) * t.h + sy) * t.w + sx];
                let o = (((y0 + y) * w as usize) + x0 + x) * 3;
                for c in 0..3 {
                    buf[o + c] = (at(c).clamp(0.0, 1.0) * 255.0).round() as u8;
                }
            }
        }
    }
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.draw(&Text::new(
            title.to_string(),
            (pad as i32, 10),
            ("sans-serif", 20).into_font(),
        ))
        .map_err(|e| err(path, e))?;
        for (i, t) in tiles.iter().enumerate() {
            if t.caption.is_empty() {
                continue;
            }
            let (x0, y0) = (
                pad + (i % cols) * cell_w,
                title_h + (i / cols) * (th + caption_h + pad),
            );
            root.draw(&Text::new(
                t.caption.clone(),
                (x0 as i32, (y0 + th + 3) as i32),
                ("sans-serif", 14).into_font(),
            ))
            .map_err(|e| err(path, e))?;
        }
        root.present().map_err(|e| err(path, e))?;
    }
    save(path, buf, (w, h))
}

/// The confusion matrix: row = true class, column = predicted, each cell shaded by its share
/// of the row and labelled with its count; class names along both sides.
pub fn confusion_matrix(path: &Path, classes: &[String], counts: &[Vec<u64>]) -> Result<()> {
    register_font();
    let n = classes.len().max(1);
    let cell = 48usize;
    let (left, top) = (170usize, 150usize);
    let (w, h) = ((left + n * cell + 20) as u32, (top + n * cell + 50) as u32);
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        let font = |size: i32| ("sans-serif", size).into_font();
        root.draw(&Text::new(
            "confusion matrix (rows: true class, columns: predicted)",
            (10, 10),
            font(18),
        ))
        .map_err(|e| err(path, e))?;
        for (r, row) in counts.iter().enumerate() {
            let total = row.iter().sum::<u64>().max(1) as f64;
            for (c, &k) in row.iter().enumerate() {
                let share = k as f64 / total;
                let shade = (255.0 * (1.0 - share)).round() as u8;
                let colour = if r == c {
                    RGBColor(shade, 255 - (255 - shade) / 3, shade)
                } else {
                    RGBColor(255, shade, shade)
                };
                let (x, y) = ((left + c * cell) as i32, (top + r * cell) as i32);
                root.draw(&Rectangle::new(
                    [(x, y), (x + cell as i32, y + cell as i32)],
                    colour.filled(),
                ))
                .map_err(|e| err(path, e))?;
                root.draw(&Rectangle::new(
                    [(x, y), (x + cell as i32, y + cell as i32)],
                    BLACK.mix(0.2),
                ))
                .map_err(|e| err(path, e))?;
                let text = k.to_string();
                root.draw(&Text::new(
                    text.clone(),
                    (
                        x + cell as i32 / 2 - 4 * text.len() as i32,
                        y + cell as i32 / 2 - 8,
                    ),
                    font(14),
                ))
                .map_err(|e| err(path, e))?;
            }
        }
        for (i, name) in classes.iter().enumerate() {
            let y = (top + i * cell + cell / 2 - 8) as i32;
            root.draw(&Text::new(name.clone(), (8, y), font(15)))
                .map_err(|e| err(path, e))?;
            // Column labels written upwards from the matrix's top edge.
            let x = (left + i * cell + cell / 2 - 8) as i32;
            root.draw(&Text::new(
                name.clone(),
                (x, top as i32 - 8),
                font(15).transform(FontTransform::Rotate270),
            ))
            .map_err(|e| err(path, e))?;
        }
        root.draw(&Text::new(
            "predicted class",
            (
                (left + n * cell / 2 - 60) as i32,
                (top + n * cell + 15) as i32,
            ),
            font(16),
        ))
        .map_err(|e| err(path, e))?;
        root.present().map_err(|e| err(path, e))?;
    }
    save(path, buf, (w, h))
}

/// `image` (`[c, h, w]`, normalised as the network sees it) and every convolution layer's
/// output for it (`maps`, as [`crate::train::Trainer::feature_maps`] or
/// [`crate::infer::Predictor::feature_maps`] return them), up to 8 channels a row.
pub fn feature_maps(
    path: &Path,
    image: &[f32],
    [c, h, w]: [usize; 3],
    maps: &[(String, crate::ir::CpuTensor)],
    title: &str,
) -> Result<()> {
    let mut tiles = vec![Tile::normalised(image, c, h, w, "input".into())];
    tiles.resize(8, Tile::blank());
    for (layer, maps) in maps {
        let dims = &maps.shape.dims;
        let (channels, mh, mw) = (dims[0], dims[1], dims[2]);
        for ch in 0..8 {
            tiles.push(if ch < channels {
                let plane = &maps.f32()[ch * mh * mw..(ch + 1) * mh * mw];
                Tile::normalised(plane, 1, mh, mw, format!("{layer} #{ch}"))
            } else {
                Tile::blank()
            });
        }
    }
    image_grid(path, title, &tiles, 8, 84)
}
