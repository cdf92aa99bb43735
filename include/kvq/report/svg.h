#pragma once
// A small plotting layer that writes standalone SVG (no scripts, no external
// resources): line/point panels, horizontal bar charts and heatmaps, with
// linear or log axes, legends and <title> tooltips carrying exact values.
//
// Colours: lines and bars use the Okabe-Ito palette (distinguishable by the
// common colour-vision deficiencies; lines also vary marker shape and dash so
// they survive grey-scale print); heatmaps use viridis (perceptually uniform,
// monotone in lightness).
//
// Log scales: values <= 0 cannot be placed. A line skips them (the line is
// broken there); a heatmap draws such cells in a neutral grey with the
// `nonpositive_label` in its tooltip and legend (e.g. "0: kept exact").
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kvq::svg {

// Escapes the five XML special characters (& < > " ') for text and
// attribute values.
std::string Escape(std::string_view text);

struct Rgb {
  uint8_t r = 0, g = 0, b = 0;
  std::string Hex() const;  // "#rrggbb"
  bool operator==(const Rgb&) const = default;
};

// Okabe & Ito (2008): orange, sky blue, bluish green, yellow, blue,
// vermillion, reddish purple, black; index taken modulo 8.
Rgb OkabeIto(int index);
// matplotlib's viridis at t in [0, 1] (clamped), linear between its values
// at t = 0, 0.1, ..., 1.
Rgb Viridis(double t);

// A one-dimensional mapping of a data interval [lo, hi] onto [0, 1]:
// linearly, or linearly in log10 for a log scale (lo > 0).
class Scale {
 public:
  static Scale Linear(double lo, double hi);
  static Scale Log(double lo, double hi);
  // The smallest interval of round numbers that holds [lo, hi]: a linear
  // scale widened to multiples of its tick step, a log scale to powers of 10.
  // A degenerate interval (lo == hi) is widened around the value.
  static Scale NiceLinear(double lo, double hi, int target_ticks = 6);
  static Scale NiceLog(double lo, double hi);

  double lo() const { return lo_; }
  double hi() const { return hi_; }
  bool log() const { return log_; }
  // (v - lo) / (hi - lo), in log10 for a log scale; not clamped.
  double Fraction(double v) const;
  // Tick positions inside [lo, hi]. Linear: multiples of 1, 2 or 5 x 10^k,
  // about `target` of them. Log: every power of ten; with fewer than three
  // decades also 2 and 5 times each power.
  std::vector<double> Ticks(int target = 6) const;
  // Tick text: "0.25", "1200", "1e-05" style for small/large linear values;
  // log ticks as "1e-3", "2e-3".
  std::string TickLabel(double v) const;

 private:
  Scale(double lo, double hi, bool log) : lo_(lo), hi_(hi), log_(log) {}
  double lo_, hi_;
  bool log_;
};

// Maps a value to a colour: viridis over a log scale (the heatmaps' colour
// bar). Values below/above the scale take the end colours.
struct ColourScale {
  Scale scale;
  Rgb operator()(double v) const;
};

// Shortest round-trip-ish text for a value in tooltips and labels: %.4g, or
// "inf", "nan".
std::string FormatValue(double v, int digits = 4);

enum class SeriesKind { kLine, kPoints };

struct Series {
  std::string name;
  std::vector<double> x, y;
  std::vector<std::string> tips;  // Per point; empty: "name: x, y".
  SeriesKind kind = SeriesKind::kLine;
  std::string colour;  // "#rrggbb" drawn thin and dashed, without markers
                       // (a guide such as a frontier); empty: the palette.
};

// A horizontal reference line (e.g. a quality floor) with its label.
struct RefLine {
  double y = 0;
  std::string label;
};

// A labelled point (the worst value of a series, ...).
struct Mark {
  double x = 0, y = 0;
  std::string text;
  int series = -1;  // Colour of that series; -1: black.
};

struct Panel {
  std::string title;
  std::string x_label, y_label;  // With units.
  bool x_log = false, y_log = false;
  bool x_integer = false;  // Ticks on integers only (layer numbers).
  std::optional<double> y_min, y_max;
  std::vector<Series> series;
  std::vector<RefLine> ref_lines;
  std::vector<Mark> marks;
};

// Panels stacked vertically, sharing one legend (by series name, in the order
// of first appearance; the same name has the same colour in every panel).
struct LineFigure {
  std::string title, subtitle;
  std::vector<Panel> panels;
  int plot_width = 640;
  int panel_height = 260;
};
std::string RenderLines(const LineFigure& figure);

// Horizontal bars: one row per category, one bar per series in each row.
struct BarFigure {
  std::string title, subtitle;
  std::string x_label;  // With units.
  bool x_log = false;
  std::vector<std::string> categories;
  std::vector<Series> series;      // y[i]: the value of category i (x unused).
  std::vector<RefLine> ref_lines;  // Vertical lines at x = y.
  int plot_width = 520;
};
std::string RenderBars(const BarFigure& figure);

struct Heatmap {
  std::string title, subtitle;
  std::string x_label, colour_label;  // colour_label with units.
  std::vector<std::string> rows, cols;
  std::vector<std::vector<double>> values;     // [rows][cols]
  std::vector<std::vector<std::string>> tips;  // Optional, same shape.
  std::string nonpositive_label = "0";
  std::optional<double> colour_min, colour_max;  // Default: the positive data range.
  bool colour_log = true;  // Else a linear colour scale (every finite value placed).
  int cell_width = 28, cell_height = 26;
};
std::string RenderHeatmap(const Heatmap& heatmap);

// Heatmaps side by side, one panel each (titled by its `title`; its subtitle
// is not drawn), sharing the first panel's colour scale settings and one
// colour bar; the scale covers every panel's data.
std::string RenderHeatmapPanels(const std::string& title, const std::string& subtitle,
                                const std::vector<Heatmap>& panels);

}  // namespace kvq::svg
