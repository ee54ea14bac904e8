//! Hgrm: the percentile spectrum of a histogram, and its HdrHistogram
//! `.hgrm` text form (what HdrHistogram's online plotter and wrk2's
//! `--latency` print). Values are written in milliseconds.

use std::fmt::Write;

use hdrhistogram::Histogram;

/// Ticks per half distance to 100 %, as in wrk2 and HdrHistogram's default.
pub const TICKS_PER_HALF_DISTANCE: u32 = 5;

/// One line of the spectrum.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// Latency at this percentile level, nanoseconds (highest equivalent).
    pub value_ns: u64,
    /// Percentile level as a quantile, 0.0..=1.0.
    pub quantile: f64,
    /// Values at or below this level.
    pub total_count: u64,
}

/// The percentile spectrum, with levels getting denser towards 100 %.
pub fn spectrum(h: &Histogram<u64>) -> Vec<Point> {
    let mut out = Vec::new();
    if h.is_empty() {
        return out;
    }
    let mut total = 0;
    for v in h.iter_quantiles(TICKS_PER_HALF_DISTANCE) {
        total += v.count_since_last_iteration();
        out.push(Point {
            value_ns: v.value_iterated_to(),
            quantile: v.quantile_iterated_to(),
            total_count: total,
        });
    }
    out
}

/// Renders `h` in `.hgrm` format, values in milliseconds.
pub fn render(h: &Histogram<u64>) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    for p in spectrum(h) {
        let ms = p.value_ns as f64 / 1e6;
        if p.quantile < 1.0 {
            let _ = writeln!(
                s,
                "{ms:12.3} {:14.12} {:10} {:14.2}",
                p.quantile,
                p.total_count,
                1.0 / (1.0 - p.quantile)
            );
        } else {
            let _ = writeln!(s, "{ms:12.3} {:14.12} {:10}", p.quantile, p.total_count);
        }
    }
    let ms = |ns: f64| ns / 1e6;
    let _ = writeln!(
        s,
        "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]",
        ms(h.mean()),
        ms(h.stdev())
    );
    let _ = writeln!(
        s,
        "#[Max     = {:12.3}, Total count    = {:12}]",
        ms(h.max() as f64),
        h.len()
    );
    let _ = writeln!(
        s,
        "#[Buckets = {:12}, SubBuckets     = {:12}]",
        h.buckets(),
        sub_buckets(h.sigfig())
    );
    s
}

/// HdrHistogram's sub-bucket count for a precision: the power of two
/// covering `2 * 10^sigfig`.
fn sub_buckets(sigfig: u8) -> u64 {
    (2 * 10u64.pow(u32::from(sigfig))).next_power_of_two()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Histogram<u64> {
        let mut h = Histogram::<u64>::new_with_bounds(1, 3_600_000_000_000, 3).unwrap();
        for i in 1..=1000u64 {
            h.record(i * 1_000).unwrap(); // 1 us .. 1 ms
        }
        h
    }

    #[test]
    fn spectrum_is_monotonic_and_complete() {
        let s = spectrum(&sample());
        assert!(s.len() > 20);
        for w in s.windows(2) {
            assert!(w[0].value_ns <= w[1].value_ns);
            assert!(w[0].quantile <= w[1].quantile);
            assert!(w[0].total_count <= w[1].total_count);
        }
        let last = s.last().unwrap();
        assert_eq!(last.quantile, 1.0);
        assert_eq!(last.total_count, 1000);
        assert!(spectrum(&Histogram::<u64>::new(3).unwrap()).is_empty());
    }

    #[test]
    fn hgrm_text_has_header_rows_and_footer() {
        let text = render(&sample());
        let mut lines = text.lines();
        assert!(lines.next().unwrap().contains("1/(1-Percentile)"));
        assert_eq!(lines.next().unwrap(), "");
        let first: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
        assert_eq!(first.len(), 4);
        assert_eq!(first[0], "0.001");
        assert!(text.contains("#[Mean    =        0.50"), "{text}");
        assert!(text.contains("Total count    =         1000]"));
        assert!(text.contains("SubBuckets     =         2048]"));
    }
}
