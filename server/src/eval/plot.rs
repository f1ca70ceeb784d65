//! Line charts for evaluation reports, written as SVG and PNG with
//! `plotters`: DET curves (log–log), score histograms (as step lines of
//! densities) and CMC curves.
//!
//! Text is laid out with a TrueType font read at run time (`plotters`'s
//! `ab_glyph` backend, no system font library): `$BIOMATCH_FONT`, else
//! DejaVu Sans or Liberation Sans where Debian installs them
//! (`fonts-dejavu-core`, which `scripts/setup-models` installs when it is
//! missing).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{Context, Result, anyhow};
use plotters::coord::Shift;
use plotters::prelude::*;

/// One axis: a range, linear or log10.
#[derive(Debug, Clone, Copy)]
pub struct Axis {
    /// Lowest value shown (> 0 on a log axis).
    pub lo: f64,
    /// Highest value shown.
    pub hi: f64,
    /// Log10 scale.
    pub log: bool,
}

impl Axis {
    /// A linear axis.
    pub fn linear(lo: f64, hi: f64) -> Axis {
        Axis { lo, hi, log: false }
    }

    /// A log10 axis.
    pub fn log(lo: f64, hi: f64) -> Axis {
        Axis { lo, hi, log: true }
    }

    /// Where `v` sits on the chart's (linear) coordinate.
    fn map(&self, v: f64) -> f64 {
        if self.log {
            v.clamp(self.lo, self.hi).log10()
        } else {
            v
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.map(self.lo)..self.map(self.hi)
    }

    fn label(&self, v: f64) -> String {
        if self.log {
            format!("1e{}", v.round() as i64)
        } else {
            // Enough decimals to tell about ten ticks apart.
            let step = (self.hi - self.lo).abs() / 10.0;
            let decimals = if step > 0.0 {
                (-step.log10()).ceil().max(0.0) as usize
            } else {
                2
            };
            format!("{v:.decimals$}")
        }
    }
}

/// A named line.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend text.
    pub label: String,
    /// Points in data units.
    pub points: Vec<(f64, f64)>,
}

/// A chart of lines.
#[derive(Debug, Clone)]
pub struct Chart {
    /// Caption.
    pub title: String,
    /// X axis description.
    pub x_label: String,
    /// Y axis description.
    pub y_label: String,
    /// X range and scale.
    pub x: Axis,
    /// Y range and scale.
    pub y: Axis,
    /// The lines.
    pub series: Vec<Series>,
    /// Legend in the lower right corner (else upper right).
    pub legend_low: bool,
}

const SIZE: (u32, u32) = (900, 640);

const COLOURS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(23, 190, 207),
];

impl Chart {
    /// Writes `dir/stem.svg` and `dir/stem.png`; returns both paths.
    pub fn write(&self, dir: &Path, stem: &str) -> Result<Vec<PathBuf>> {
        load_font()?;
        let svg = dir.join(format!("{stem}.svg"));
        let png = dir.join(format!("{stem}.png"));
        {
            let root = SVGBackend::new(&svg, SIZE).into_drawing_area();
            self.draw(&root)
                .and_then(|()| root.present().map_err(|e| anyhow!("{e}")))
                .with_context(|| format!("drawing {}", svg.display()))?;
        }
        {
            let root = BitMapBackend::new(&png, SIZE).into_drawing_area();
            self.draw(&root)
                .and_then(|()| root.present().map_err(|e| anyhow!("{e}")))
                .with_context(|| format!("drawing {}", png.display()))?;
        }
        Ok(vec![svg, png])
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()>
    where
        DB::ErrorType: 'static,
    {
        let fail = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow!("{e}");
        root.fill(&WHITE).map_err(fail)?;
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, ("sans-serif", 24))
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(64)
            .build_cartesian_2d(self.x.range(), self.y.range())
            .map_err(fail)?;
        let (x, y) = (self.x, self.y);
        let x_fmt = move |v: &f64| x.label(*v);
        let y_fmt = move |v: &f64| y.label(*v);
        let mut mesh = chart.configure_mesh();
        mesh.x_desc(&self.x_label)
            .y_desc(&self.y_label)
            .x_label_formatter(&x_fmt)
            .y_label_formatter(&y_fmt)
            .label_style(("sans-serif", 15));
        if self.x.log {
            mesh.x_labels(decades(self.x) + 1);
        }
        if self.y.log {
            mesh.y_labels(decades(self.y) + 1);
        }
        mesh.draw().map_err(fail)?;
        for (i, series) in self.series.iter().enumerate() {
            let colour = COLOURS[i % COLOURS.len()];
            let points = series
                .points
                .iter()
                .filter(|(px, py)| px.is_finite() && py.is_finite())
                .map(|&(px, py)| (self.x.map(px), self.y.map(py)));
            chart
                .draw_series(LineSeries::new(points, colour.stroke_width(2)))
                .map_err(fail)?
                .label(&series.label)
                .legend(move |(lx, ly)| {
                    PathElement::new(vec![(lx, ly), (lx + 20, ly)], colour.stroke_width(2))
                });
        }
        if self.series.len() > 1 || self.series.iter().any(|s| !s.label.is_empty()) {
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .label_font(("sans-serif", 15))
                .position(if self.legend_low {
                    SeriesLabelPosition::LowerRight
                } else {
                    SeriesLabelPosition::UpperRight
                })
                .draw()
                .map_err(fail)?;
        }
        Ok(())
    }
}

/// Whole decades a log axis spans.
fn decades(axis: Axis) -> usize {
    (axis.hi.log10() - axis.lo.log10()).round().max(1.0) as usize
}

/// A histogram as a step line of densities (integrating to 1).
pub fn density_steps(h: &biomatch_datasets::errors::Histogram) -> Vec<(f64, f64)> {
    let total: u64 = h.counts.iter().sum();
    let width = (h.hi - h.lo) as f64 / h.counts.len() as f64;
    let mut points = Vec::with_capacity(2 * h.counts.len() + 2);
    points.push((h.lo as f64, 0.0));
    for (i, &c) in h.counts.iter().enumerate() {
        let d = c as f64 / (total.max(1) as f64 * width);
        let x0 = h.lo as f64 + i as f64 * width;
        points.push((x0, d));
        points.push((x0 + width, d));
    }
    points.push((h.hi as f64, 0.0));
    points
}

/// Candidate font files, in order of preference.
const FONTS: [&str; 4] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/liberation/LiberationSans-Regular.ttf",
];

/// Registers the charts' font once per process.
fn load_font() -> Result<()> {
    static LOADED: OnceLock<Result<(), String>> = OnceLock::new();
    LOADED
        .get_or_init(|| {
            let candidates: Vec<PathBuf> = std::env::var_os("BIOMATCH_FONT")
                .map(PathBuf::from)
                .into_iter()
                .chain(FONTS.iter().map(PathBuf::from))
                .collect();
            let path = candidates.iter().find(|p| p.is_file()).ok_or_else(|| {
                format!(
                    "plots need a TrueType font: none of {candidates:?} exists; install \
                     the Debian package fonts-dejavu-core or set BIOMATCH_FONT"
                )
            })?;
            let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
            // plotters keeps fonts for the life of the process.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
                .map_err(|_| format!("{}: not a TrueType/OpenType font", path.display()))
        })
        .clone()
        .map_err(|e| anyhow!(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_is_written_as_svg_and_png() {
        let dir = tempfile::tempdir().unwrap();
        let chart = Chart {
            title: "DET".into(),
            x_label: "FMR".into(),
            y_label: "FNMR".into(),
            x: Axis::log(1e-4, 1.0),
            y: Axis::log(1e-3, 1.0),
            series: vec![Series {
                label: "model".into(),
                points: vec![(1.0, 1e-3), (1e-2, 1e-2), (1e-4, 0.5)],
            }],
            legend_low: false,
        };
        let paths = chart.write(dir.path(), "det").unwrap();
        let svg = std::fs::read_to_string(&paths[0]).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("FNMR") && svg.contains("polyline"));
        let png = std::fs::read(&paths[1]).unwrap();
        assert_eq!(&png[1..4], b"PNG");
    }

    #[test]
    fn histogram_steps_integrate_to_one() {
        let h = biomatch_datasets::errors::Histogram::new(&[0.1, 0.2, 0.3, 0.9], 0.0, 1.0, 10);
        let steps = density_steps(&h);
        let area: f64 = steps
            .windows(2)
            .map(|w| (w[1].0 - w[0].0) * w[0].1.min(w[1].1))
            .sum();
        assert!((area - 1.0).abs() < 1e-9, "{area}");
    }
}
