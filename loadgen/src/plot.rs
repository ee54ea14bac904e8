//! Plot: latency-by-percentile curves as a hand-written SVG, in the style of
//! HdrHistogram's plotter: the x axis is `log10(1 / (1 - percentile))`, so
//! 0 %, 90 %, 99 %, 99.9 %… are evenly spaced and the tail gets the room.
//! One run draws its corrected (solid) and uncorrected (dashed) curves;
//! `--overlay` draws several runs from their JSON reports.

use std::fmt::Write;

use crate::report::Report;

const W: f64 = 960.0;
const H: f64 = 540.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 250.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 70.0;
const COLORS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

/// One curve: `[percentile, milliseconds]` points.
#[derive(Debug, Clone)]
pub struct Curve {
    /// Legend text.
    pub label: String,
    /// Points, percentile in 0..=100.
    pub points: Vec<[f64; 2]>,
    /// Dashed line (uncorrected).
    pub dashed: bool,
    /// Palette index.
    pub color: usize,
}

/// The plot of one run.
pub fn single(r: &Report) -> String {
    render(
        &format!("Latency by percentile: {}", r.label),
        &curves(&[r]),
    )
}

/// Several runs overlaid.
pub fn overlay(reports: &[Report]) -> String {
    let refs: Vec<&Report> = reports.iter().collect();
    render("Latency by percentile", &curves(&refs))
}

fn curves(reports: &[&Report]) -> Vec<Curve> {
    let mut out = Vec::new();
    for (i, r) in reports.iter().enumerate() {
        out.push(Curve {
            label: format!("{} (corrected)", r.label),
            points: r.latency_ms.corrected.spectrum.clone(),
            dashed: false,
            color: i,
        });
        out.push(Curve {
            label: format!("{} (uncorrected)", r.label),
            points: r.latency_ms.uncorrected.spectrum.clone(),
            dashed: true,
            color: i,
        });
    }
    out
}

/// x position in "nines" of a percentile (0 → 0, 90 → 1, 99 → 2 …).
pub fn nines(percentile: f64) -> f64 {
    if percentile >= 100.0 {
        f64::INFINITY
    } else {
        (100.0 / (100.0 - percentile.max(0.0))).log10()
    }
}

/// The smallest 1/2/2.5/5 × 10^k at or above `v`.
pub fn nice_ceiling(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let mag = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if m * mag >= v * (1.0 - 1e-12) {
            return m * mag;
        }
    }
    10.0 * mag
}

/// Renders curves into an SVG document.
pub fn render(title: &str, curves: &[Curve]) -> String {
    let finite_x = curves
        .iter()
        .flat_map(|c| c.points.iter())
        .map(|p| nines(p[0]))
        .filter(|x| x.is_finite())
        .fold(0.0f64, f64::max);
    let x_max = finite_x.ceil().clamp(2.0, 7.0);
    let y_raw = curves
        .iter()
        .flat_map(|c| c.points.iter())
        .map(|p| p[1])
        .fold(0.0f64, f64::max);
    let y_max = nice_ceiling(y_raw);
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    let px = |x: f64| LEFT + pw * x.min(x_max) / x_max;
    let py = |y: f64| TOP + ph * (1.0 - y / y_max);

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="28" font-size="16" text-anchor="middle">{}</text>"#,
        LEFT + pw / 2.0,
        escape(title)
    );
    // Grid and x labels: 0 %, 90 %, 99 %, 99.9 % …
    for k in 0..=(x_max as usize) {
        let x = px(k as f64);
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="#ddd"/>"##,
            TOP + ph
        );
        let _ = writeln!(
            s,
            r#"<text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            TOP + ph + 18.0,
            nines_label(k)
        );
    }
    for i in 0..=5 {
        let v = y_max * i as f64 / 5.0;
        let y = py(v);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/>"##,
            LEFT + pw
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            LEFT - 6.0,
            y + 4.0,
            trim_number(v)
        );
    }
    let _ = writeln!(
        s,
        r#"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="black"/>"#
    );
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">Percentile</text>"#,
        LEFT + pw / 2.0,
        H - 22.0
    );
    let _ = writeln!(
        s,
        r#"<text transform="translate(22 {:.1}) rotate(-90)" text-anchor="middle">Latency (ms)</text>"#,
        TOP + ph / 2.0
    );
    for (i, c) in curves.iter().enumerate() {
        let color = COLORS[c.color % COLORS.len()];
        let dash = if c.dashed {
            r#" stroke-dasharray="6 4""#
        } else {
            ""
        };
        let mut pts = String::new();
        for p in &c.points {
            let _ = write!(pts, "{:.2},{:.2} ", px(nines(p[0])), py(p[1]));
        }
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2"{dash} points="{}"/>"#,
            pts.trim_end()
        );
        let ly = TOP + 10.0 + 20.0 * i as f64;
        let lx = W - RIGHT + 15.0;
        let _ = writeln!(
            s,
            r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{color}" stroke-width="2"{dash}/>"#,
            lx + 28.0
        );
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}">{}</text>"#,
            lx + 34.0,
            ly + 4.0,
            escape(&c.label)
        );
    }
    s.push_str("</svg>\n");
    s
}

fn nines_label(k: usize) -> String {
    match k {
        0 => "0%".into(),
        1 => "90%".into(),
        _ => format!("99.{}%", "9".repeat(k - 2)).replace("99.%", "99%"),
    }
}

fn trim_number(v: f64) -> String {
    let t = format!("{v:.3}");
    let t = t.trim_end_matches('0').trim_end_matches('.');
    t.to_string()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_maths() {
        assert_eq!(nines(0.0), 0.0);
        assert!((nines(90.0) - 1.0).abs() < 1e-9);
        assert!((nines(99.9) - 3.0).abs() < 1e-9);
        assert!(nines(100.0).is_infinite());
        assert_eq!(nice_ceiling(0.7), 1.0);
        assert_eq!(nice_ceiling(1.3), 2.0);
        assert_eq!(nice_ceiling(2.2), 2.5);
        assert_eq!(nice_ceiling(301.0), 500.0);
        assert_eq!(nice_ceiling(5.0), 5.0);
        assert_eq!(nines_label(0), "0%");
        assert_eq!(nines_label(1), "90%");
        assert_eq!(nines_label(2), "99%");
        assert_eq!(nines_label(4), "99.99%");
    }

    #[test]
    fn svg_is_well_formed_enough() {
        let c = Curve {
            label: "a <b> & c".into(),
            points: vec![
                [0.0, 0.1],
                [50.0, 0.2],
                [99.0, 1.0],
                [99.99, 3.0],
                [100.0, 4.0],
            ],
            dashed: false,
            color: 0,
        };
        let svg = render("t", &[c]);
        assert!(svg.starts_with("<svg"));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("a &lt;b&gt; &amp; c"));
        assert!(svg.contains("99.99%"));
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
        assert_eq!(svg.matches("<polyline").count(), 1);
    }
}
