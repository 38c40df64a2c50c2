//! Small hand-written SVG charts: no script and no library, drawn on the server.

use maud::{Markup, html};

/// A line of `values` (oldest first) in a `width`×`height` box, its peak labelled; a dash
/// without values.
pub fn sparkline(values: &[i64], width: u32, height: u32, unit: &str) -> Markup {
    if values.is_empty() {
        return html! { span.muted { "—" } };
    }
    let peak = values.iter().copied().max().unwrap_or(0).max(1);
    let points = line_points(values, peak, width, height);
    html! {
        svg.chart width=(width) height=(height) viewBox={ "0 0 " (width) " " (height) }
            role="img" aria-label={ "peak " (peak) " " (unit) } {
            title { "peak " (peak) " " (unit) ", " (values.len()) " points" }
            polyline points=(points) fill="none" stroke="#2f6fdf" stroke-width="1.5" {}
            @if let Some((x, y)) = points.rsplit(' ').next().and_then(|p| p.split_once(',')) {
                circle cx=(x) cy=(y) r="2" fill="#2f6fdf" {}
            }
        }
    }
}

/// A chart over time: a line of `values` (oldest first) with its peak written on the axis.
pub fn line(values: &[i64], width: u32, height: u32, unit: &str) -> Markup {
    if values.is_empty() {
        return html! { p.muted { "no data yet" } };
    }
    let peak = values.iter().copied().max().unwrap_or(0).max(1);
    let plot_height = height.saturating_sub(16);
    let points = line_points(values, peak, width, plot_height);
    html! {
        svg.chart width=(width) height=(height) viewBox={ "0 0 " (width) " " (height) }
            role="img" aria-label={ "peak " (peak) " " (unit) } {
            line x1="0" y1=(plot_height) x2=(width) y2=(plot_height) stroke="#bbb" {}
            polyline points=(points) fill="none" stroke="#2f6fdf" stroke-width="1.5" {}
            // A dot per run, so a single run shows too.
            @for point in points.split(' ') {
                @if let Some((x, y)) = point.split_once(',') {
                    circle cx=(x) cy=(y) r="2.5" fill="#2f6fdf" {}
                }
            }
            text x="2" y=(height - 2) font-size="11" fill="#555" {
                (values.len()) (if values.len() == 1 { " run" } else { " runs" }) ", peak " (peak) " " (unit)
            }
        }
    }
}

/// One bar per `(label, value)`, with a dashed line at `limit` when there is one.
pub fn bars(values: &[(String, u64)], limit: Option<u64>, width: u32, height: u32) -> Markup {
    let top = values
        .iter()
        .map(|(_, v)| *v)
        .chain(limit)
        .max()
        .unwrap_or(0)
        .max(1);
    let plot_height = height.saturating_sub(16);
    let slot = width / (values.len().max(1) as u32);
    let scale = |v: u64| {
        let h = u128::from(v) * u128::from(plot_height) / u128::from(top);
        u32::try_from(h).unwrap_or(plot_height)
    };
    html! {
        svg.chart width=(width) height=(height) viewBox={ "0 0 " (width) " " (height) } role="img" {
            @for (i, (label, value)) in values.iter().enumerate() {
                @let h = scale(*value);
                rect x=(i as u32 * slot + 2) y=(plot_height - h) width=(slot.saturating_sub(4))
                    height=(h) fill="#2f6fdf" {
                    title { (label) ": " (value) }
                }
                text x=(i as u32 * slot + 2) y=(height - 2) font-size="10" fill="#555" {
                    (label.get(5..).unwrap_or(label))
                }
            }
            @if let Some(limit) = limit {
                @let y = plot_height - scale(limit);
                line x1="0" y1=(y) x2=(width) y2=(y) stroke="#d33" stroke-dasharray="4 3" {
                    title { "budget " (limit) }
                }
            }
        }
    }
}

/// `x,y` pairs across the width, 0 at the bottom and `peak` at the top, [`MARGIN`] inside the
/// box so a dot at the edge shows whole; a single value in the middle.
fn line_points(values: &[i64], peak: i64, width: u32, height: u32) -> String {
    let usable_width = f64::from(width.saturating_sub(2 * MARGIN));
    let step = if values.len() > 1 {
        usable_width / (values.len() - 1) as f64
    } else {
        0.0
    };
    let start = if values.len() > 1 {
        f64::from(MARGIN)
    } else {
        f64::from(width) / 2.0
    };
    let usable = f64::from(height.saturating_sub(2 * MARGIN));
    values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let y = f64::from(MARGIN) + usable - (*v).max(0) as f64 / peak as f64 * usable;
            format!("{:.1},{:.1}", start + i as f64 * step, y)
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Pixels kept free around a line.
const MARGIN: u32 = 3;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_span_the_box_with_the_peak_at_the_top() {
        assert_eq!(
            line_points(&[0, 50, 100], 100, 106, 26),
            "3.0,23.0 53.0,13.0 103.0,3.0"
        );
        assert_eq!(line_points(&[5], 5, 100, 26), "50.0,3.0");
    }

    #[test]
    fn no_values_draw_no_chart() {
        assert!(!sparkline(&[], 80, 20, "ms").into_string().contains("<svg"));
        assert!(line(&[], 80, 20, "ms").into_string().contains("no data"));
    }

    #[test]
    fn bars_draw_one_rect_each_and_the_budget_line() {
        let days = vec![
            ("2026-12-01".to_string(), 10),
            ("2026-12-02".to_string(), 30),
        ];
        let svg = bars(&days, Some(40), 200, 60).into_string();
        assert_eq!(svg.matches("<rect").count(), 2);
        assert!(svg.contains("budget 40"));
        assert!(svg.contains(">12-01<"));
    }
}
