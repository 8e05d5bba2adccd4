//! The report's charts, drawn with plotters' SVG backend into strings that
//! the page inlines. Each function takes plain figures (already read from
//! the marts) and never formats a number the tables show: labels here are
//! axis ticks and legends.

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// Colours of the movements and bands, shared by every chart.
const NEW: RGBColor = RGBColor(46, 125, 50);
const REACTIVATION: RGBColor = RGBColor(102, 187, 106);
const EXPANSION: RGBColor = RGBColor(21, 101, 192);
const CONTRACTION: RGBColor = RGBColor(239, 108, 0);
const CHURNED: RGBColor = RGBColor(198, 40, 40);
const TOTAL: RGBColor = RGBColor(84, 110, 122);
const GREEN: RGBColor = RGBColor(67, 160, 71);
const YELLOW: RGBColor = RGBColor(253, 216, 53);
const RED: RGBColor = RGBColor(229, 57, 53);

const WIDTH: u32 = 860;
const HEIGHT: u32 = 340;
const FONT: &str = "sans-serif";

/// A chart that could not be drawn: the page says so instead.
#[derive(Debug, thiserror::Error)]
#[error("chart {chart}: {message}")]
pub struct ChartError {
    chart: &'static str,
    message: String,
}

fn failed<E: std::fmt::Display>(chart: &'static str) -> impl Fn(E) -> ChartError {
    move |e| ChartError {
        chart,
        message: e.to_string(),
    }
}

/// A compact money tick: 1.2M, 350k, 900.
fn short(v: f64) -> String {
    let a = v.abs();
    if a >= 1e9 {
        format!("{:.1}B", v / 1e9)
    } else if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e3 {
        format!("{:.0}k", v / 1e3)
    } else if a >= 10.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// The frame every chart shares: its title above, room for the axes' labels.
fn framed<'a, DB: DrawingBackend>(root: &'a DrawingArea<DB, plotters::coord::Shift>, title: &str, y_label_area: u32) -> ChartBuilder<'a, 'static, DB> {
    let mut builder = ChartBuilder::on(root);
    builder.caption(title, (FONT, 18)).margin(12).x_label_area_size(34).y_label_area_size(y_label_area);
    builder
}

/// The legend of a chart's named series, on a light box at `position`.
fn legend<'a, DB: DrawingBackend + 'a, CT: plotters::coord::CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
    position: SeriesLabelPosition,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .draw()
}

/// The label of a bar's segment (nothing at the segment edges).
fn label_of(v: &SegmentValue<i32>, label: impl Fn(usize) -> Option<String>) -> String {
    match v {
        SegmentValue::CenterOf(i) => usize::try_from(*i).ok().and_then(label).unwrap_or_default(),
        _ => String::new(),
    }
}

/// A range around `values` (and 0), with a little headroom.
fn span(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (0.0f64, 0.0f64);
    for v in values.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if hi - lo < 1e-9 {
        hi = lo + 1.0;
    }
    let pad = (hi - lo) * 0.08;
    (if lo < 0.0 { lo - pad } else { lo }, hi + pad)
}

/// One step of a waterfall: its label, and its value (a start or end bar
/// when `total`, else a movement from the running level).
pub struct Step {
    pub label: String,
    pub value: f64,
    pub total: bool,
}

/// The MRR bridge of one month as a waterfall: start, the movements, end.
pub fn waterfall(title: &str, steps: &[Step]) -> Result<String, ChartError> {
    let f = failed("waterfall");
    let mut level = 0.0;
    let mut bars = Vec::new();
    for s in steps {
        let (from, to) = if s.total { (0.0, s.value) } else { (level, level + s.value) };
        level = to;
        bars.push((from, to));
    }
    // The movements are small beside the totals: the axis starts near the
    // lowest level the bridge reaches, so they can be seen (the start and
    // end bars rise from there, as in any bridge chart).
    let levels = || steps.iter().zip(&bars).flat_map(|(s, (a, b))| if s.total { vec![*b] } else { vec![*a, *b] });
    let low = levels().filter(|v| v.is_finite()).fold(f64::INFINITY, f64::min);
    let high = bars.iter().flat_map(|(a, b)| [*a, *b]).filter(|v| v.is_finite()).fold(f64::NEG_INFINITY, f64::max);
    let moved: f64 = steps.iter().filter(|s| !s.total).map(|s| s.value.abs()).sum();
    let (lo, hi) = if low.is_finite() && low > 0.0 && moved > 0.0 {
        let floor = (low - moved).max(0.0);
        (floor, high + (high - floor) * 0.08)
    } else {
        span(bars.iter().flat_map(|(a, b)| [*a, *b]))
    };
    let bars: Vec<(f64, f64)> = bars.into_iter().map(|(a, b)| (a.max(lo), b.max(lo))).collect();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(&f)?;
        let n = steps.len() as i32;
        let mut chart = framed(&root, title, 64)
            .build_cartesian_2d((0..n - 1).into_segmented(), lo..hi)
            .map_err(&f)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .light_line_style(TRANSPARENT)
            .x_labels(steps.len())
            .x_label_formatter(&|i| label_of(i, |k| steps.get(k).map(|s| s.label.clone())))
            .y_label_formatter(&|v| short(*v))
            .draw()
            .map_err(&f)?;
        let colour = |s: &Step| match (s.total, s.label.as_str()) {
            (true, _) => TOTAL,
            (_, "new") => NEW,
            (_, "reactivation") => REACTIVATION,
            (_, "expansion") => EXPANSION,
            (_, "contraction") => CONTRACTION,
            _ => CHURNED,
        };
        chart
            .draw_series(steps.iter().zip(&bars).enumerate().map(|(i, (s, (a, b)))| {
                let i = i as i32;
                let mut r = Rectangle::new([(SegmentValue::Exact(i), *a), (SegmentValue::Exact(i + 1), *b)], colour(s).filled());
                r.set_margin(0, 0, 14, 14);
                r
            }))
            .map_err(&f)?;
        // Each bar's amount above it.
        chart
            .draw_series(steps.iter().zip(&bars).enumerate().map(|(i, (s, (a, b)))| {
                let text = if s.total { short(s.value) } else { format!("{}{}", if s.value < 0.0 { "-" } else { "+" }, short(s.value.abs())) };
                Text::new(text, (SegmentValue::CenterOf(i as i32), a.max(*b)), TextStyle::from((FONT, 12).into_font()).pos(Pos::new(HPos::Center, VPos::Bottom)))
            }))
            .map_err(&f)?;
        root.present().map_err(&f)?;
    }
    Ok(svg)
}

/// One month of movements: positive ones stack above 0, negative below.
pub struct Movements {
    pub month: String,
    pub new: f64,
    pub reactivation: f64,
    pub expansion: f64,
    pub contraction: f64,
    pub churned: f64,
}

/// Twelve months of MRR movements, stacked, with a legend.
pub fn movements(title: &str, months: &[Movements]) -> Result<String, ChartError> {
    let f = failed("movements");
    let (lo, hi) = span(months.iter().flat_map(|m| [m.new + m.reactivation + m.expansion, -(m.contraction + m.churned)]));
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(&f)?;
        let n = months.len().max(1) as i32;
        let mut chart = framed(&root, title, 64)
            .build_cartesian_2d((0..n - 1).into_segmented(), lo..hi)
            .map_err(&f)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .light_line_style(TRANSPARENT)
            .x_labels(months.len())
            .x_label_formatter(&|i| label_of(i, |k| months.get(k).map(|m| m.month.clone())))
            .y_label_formatter(&|v| short(*v))
            .draw()
            .map_err(&f)?;
        type Part = (&'static str, RGBColor, fn(&Movements) -> f64);
        let parts: [Part; 5] = [
            ("new", NEW, |m| m.new),
            ("reactivation", REACTIVATION, |m| m.reactivation),
            ("expansion", EXPANSION, |m| m.expansion),
            ("contraction", CONTRACTION, |m| -m.contraction),
            ("churned", CHURNED, |m| -m.churned),
        ];
        // Each part stacks on the parts before it of the same sign.
        for (k, (name, colour, value)) in parts.iter().enumerate() {
            let bars: Vec<Rectangle<(SegmentValue<i32>, f64)>> = months
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    let v = value(m);
                    let base: f64 = parts[..k].iter().map(|(_, _, g)| g(m)).filter(|p| (*p >= 0.0) == (v >= 0.0)).sum();
                    let (x0, x1) = (SegmentValue::Exact(i as i32), SegmentValue::Exact(i as i32 + 1));
                    let mut r = Rectangle::new([(x0, base), (x1, base + v)], colour.filled());
                    r.set_margin(0, 0, 8, 8);
                    r
                })
                .collect();
            let colour = *colour;
            chart
                .draw_series(bars)
                .map_err(&f)?
                .label(*name)
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], colour.filled()));
        }
        legend(&mut chart, SeriesLabelPosition::UpperRight).map_err(&f)?;
        root.present().map_err(&f)?;
    }
    Ok(svg)
}

/// One line of a line chart: name, colour index and a value per x (None: a gap).
pub struct Line {
    pub name: String,
    pub values: Vec<Option<f64>>,
}

/// Ratios over months as lines (percent axis), with a legend.
pub fn lines(title: &str, labels: &[String], series: &[Line]) -> Result<String, ChartError> {
    let f = failed("lines");
    let values = series.iter().flat_map(|s| s.values.iter().flatten().copied());
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        (lo, hi) = (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.1).max(0.01);
    // A narrow band of ratios needs a decimal on its ticks to tell them apart.
    let fine = hi - lo + 2.0 * pad < 0.1;
    let palette = [EXPANSION, NEW, CONTRACTION, CHURNED, TOTAL];
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(&f)?;
        let n = labels.len().max(2) as i32;
        let mut chart = framed(&root, title, 64)
            .build_cartesian_2d(0..n - 1, (lo - pad)..(hi + pad))
            .map_err(&f)?;
        chart
            .configure_mesh()
            .light_line_style(TRANSPARENT)
            .x_labels(labels.len().min(13))
            .x_label_formatter(&|i| labels.get(*i as usize).cloned().unwrap_or_default())
            .y_label_formatter(&|v| if fine { format!("{:.1}%", v * 100.0) } else { format!("{:.0}%", v * 100.0) })
            .draw()
            .map_err(&f)?;
        for (k, s) in series.iter().enumerate() {
            let colour = palette[k % palette.len()];
            // A gap (NULL) splits the line.
            let mut runs: Vec<Vec<(i32, f64)>> = vec![Vec::new()];
            for (i, v) in s.values.iter().enumerate() {
                match v.filter(|v| v.is_finite()) {
                    Some(v) => runs.last_mut().map(|r| r.push((i as i32, v))).unwrap_or_default(),
                    None => runs.push(Vec::new()),
                }
            }
            let style = ShapeStyle::from(&colour).stroke_width(if k % 2 == 0 { 3 } else { 2 });
            let mut first = true;
            for run in runs.into_iter().filter(|r| !r.is_empty()) {
                let drawn = chart.draw_series(LineSeries::new(run, style)).map_err(&f)?;
                if first {
                    drawn
                        .label(s.name.clone())
                        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], style));
                    first = false;
                }
            }
        }
        legend(&mut chart, SeriesLabelPosition::LowerLeft).map_err(&f)?;
        root.present().map_err(&f)?;
    }
    Ok(svg)
}

/// A cohort heatmap: one row per cohort, one column per month since it
/// started, shaded by the value (0..1 of the colour scale at `max`), each
/// cell labelled in percent.
pub fn heatmap(title: &str, cohorts: &[String], columns: usize, cells: &[Vec<Option<f64>>], max: f64) -> Result<String, ChartError> {
    let f = failed("heatmap");
    let rows = cohorts.len().max(1);
    let cols = columns.max(1);
    let height = (70 + 22 * rows as u32).max(160);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(&f)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FONT, 18))
            .margin(10)
            .x_label_area_size(26)
            .y_label_area_size(70)
            .build_cartesian_2d(0..cols as i32, rows as i32..0)
            .map_err(&f)?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(cols.min(25))
            .y_labels(rows)
            .x_label_formatter(&|i| format!("+{i}"))
            .y_label_formatter(&|i| cohorts.get(*i as usize).cloned().unwrap_or_default())
            .label_style((FONT, 11))
            .draw()
            .map_err(&f)?;
        let shade = |v: f64| {
            let t = (v / max).clamp(0.0, 1.0);
            let mix = |lo: u8, hi: u8| (f64::from(lo) + (f64::from(hi) - f64::from(lo)) * t).round() as u8;
            RGBColor(mix(255, 21), mix(243, 101), mix(224, 192))
        };
        // Labels sit at the centre of their cell, a pixel offset from its corner.
        let (w, h) = chart.plotting_area().dim_in_pixel();
        let centre = ((w / cols as u32) as i32 / 2, (h / rows as u32) as i32 / 2);
        let mut boxes = Vec::new();
        let mut labels = Vec::new();
        for (r, row) in cells.iter().enumerate() {
            for (c, v) in row.iter().enumerate() {
                let Some(v) = v.filter(|v| v.is_finite()) else { continue };
                let (r, c) = (r as i32, c as i32);
                boxes.push(Rectangle::new([(c, r), (c + 1, r + 1)], shade(v).filled()));
                let ink: &RGBColor = if v / max > 0.55 { &WHITE } else { &BLACK };
                let style = TextStyle::from((FONT, 10).into_font()).color(ink).pos(Pos::new(HPos::Center, VPos::Center));
                labels.push(EmptyElement::at((c, r)) + Text::new(format!("{:.0}", v * 100.0), centre, style));
            }
        }
        chart.draw_series(boxes).map_err(&f)?;
        chart.draw_series(labels).map_err(&f)?;
        root.present().map_err(&f)?;
    }
    Ok(svg)
}

/// Customers per health band at each snapshot, stacked (green at the
/// bottom), with a legend.
pub fn bands(title: &str, snapshots: &[String], counts: &[[f64; 3]]) -> Result<String, ChartError> {
    let f = failed("bands");
    let (_, hi) = span(counts.iter().map(|c| c.iter().sum()));
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(&f)?;
        let n = snapshots.len().max(1) as i32;
        let mut chart = framed(&root, title, 50)
            .build_cartesian_2d((0..n - 1).into_segmented(), 0.0..hi)
            .map_err(&f)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .light_line_style(TRANSPARENT)
            .x_labels(snapshots.len().min(13))
            .x_label_formatter(&|i| label_of(i, |k| snapshots.get(k).cloned()))
            .y_label_formatter(&|v| format!("{v:.0}"))
            .draw()
            .map_err(&f)?;
        for (k, (name, colour)) in [("green", GREEN), ("yellow", YELLOW), ("red", RED)].into_iter().enumerate() {
            let bars: Vec<Rectangle<(SegmentValue<i32>, f64)>> = counts
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let base: f64 = c[..k].iter().sum();
                    let (x0, x1) = (SegmentValue::Exact(i as i32), SegmentValue::Exact(i as i32 + 1));
                    let mut r = Rectangle::new([(x0, base), (x1, base + c[k])], colour.filled());
                    r.set_margin(0, 0, 6, 6);
                    r
                })
                .collect();
            chart
                .draw_series(bars)
                .map_err(&f)?
                .label(name)
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], colour.filled()));
        }
        legend(&mut chart, SeriesLabelPosition::UpperLeft).map_err(&f)?;
        root.present().map_err(&f)?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_are_svg_with_their_labels() {
        let steps = [
            Step { label: "start".into(), value: 100.0, total: true },
            Step { label: "new".into(), value: 20.0, total: false },
            Step { label: "churned".into(), value: -5.0, total: false },
            Step { label: "end".into(), value: 115.0, total: true },
        ];
        let svg = waterfall("Bridge", &steps).expect("waterfall");
        assert!(svg.starts_with("<svg") && svg.contains("Bridge") && svg.contains(">\nchurned\n<"), "{svg}");
        let svg = lines("NDR", &["2026-01".into(), "2026-02".into()], &[Line { name: "ndr".into(), values: vec![Some(1.0), None] }])
            .expect("lines");
        assert!(svg.contains("ndr"));
        let svg = heatmap("Cohorts", &["2026-01".into()], 2, &[vec![Some(1.0), Some(0.5)]], 1.0).expect("heatmap");
        assert!(svg.contains(">\n50\n<"), "{svg}");
        assert!(bands("Bands", &[], &[]).expect("empty bands").starts_with("<svg"));
        assert_eq!(short(1_234_567.0), "1.2M");
    }
}
