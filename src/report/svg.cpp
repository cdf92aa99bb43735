#include "kvq/report/svg.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <map>

#include <fmt/format.h>

#include "kvq/common/error.h"

namespace kvq::svg {
namespace {

constexpr const char* kFont = "DejaVu Sans, Arial, Helvetica, sans-serif";
constexpr double kCharWidth = 0.6;  // Average advance of a sans-serif glyph, in ems.
constexpr const char* kGrid = "#e3e3e3";
constexpr const char* kInk = "#222222";
constexpr const char* kNeutral = "#bdbdbd";  // Heatmap cells a log scale cannot place.

double TextWidth(std::string_view text, double size) {
  return static_cast<double>(text.size()) * size * kCharWidth;
}

std::string Num(double v) { return fmt::format("{:.2f}", v); }

// Accumulates SVG elements; every text and attribute value goes through Escape.
class Canvas {
 public:
  void Raw(std::string_view s) { body_ += s; }
  void Text(double x, double y, std::string_view text, double size = 12,
            const char* anchor = "start", const std::string& extra = "") {
    body_ += fmt::format(R"(<text x="{}" y="{}" font-size="{}" text-anchor="{}"{}>{}</text>)",
                         Num(x), Num(y), size, anchor, extra, Escape(text));
    body_ += '\n';
  }
  void Line(double x1, double y1, double x2, double y2, const std::string& stroke, double width,
            const std::string& extra = "") {
    body_ +=
        fmt::format(R"(<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="{}" stroke-width="{}"{}/>)",
                    Num(x1), Num(y1), Num(x2), Num(y2), stroke, width, extra);
    body_ += '\n';
  }
  void Rect(double x, double y, double w, double h, const std::string& fill,
            const std::string& tip = "", const std::string& extra = "") {
    body_ += fmt::format(R"(<rect x="{}" y="{}" width="{}" height="{}" fill="{}"{})", Num(x),
                         Num(y), Num(std::max(w, 0.0)), Num(std::max(h, 0.0)), fill, extra);
    Close("rect", tip);
  }
  // A series marker: 0 circle, 1 square, 2 triangle, 3 diamond.
  void Marker(int shape, double x, double y, const std::string& fill, const std::string& tip) {
    const double r = 3.6;
    switch (shape % 4) {
      case 0:
        body_ +=
            fmt::format(R"(<circle cx="{}" cy="{}" r="{}" fill="{}")", Num(x), Num(y), r, fill);
        Close("circle", tip);
        return;
      case 1:
        Rect(x - r, y - r, 2 * r, 2 * r, fill, tip);
        return;
      case 2:
        body_ += fmt::format(R"(<polygon points="{},{} {},{} {},{}" fill="{}")", Num(x),
                             Num(y - r * 1.2), Num(x - r * 1.1), Num(y + r * 0.8), Num(x + r * 1.1),
                             Num(y + r * 0.8), fill);
        Close("polygon", tip);
        return;
      default:
        body_ += fmt::format(R"(<polygon points="{},{} {},{} {},{} {},{}" fill="{}")", Num(x),
                             Num(y - r * 1.3), Num(x + r * 1.3), Num(y), Num(x), Num(y + r * 1.3),
                             Num(x - r * 1.3), Num(y), fill);
        Close("polygon", tip);
        return;
    }
  }
  std::string Finish(double width, double height, std::string_view title) const {
    return fmt::format(
               R"(<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{}" viewBox="0 0 {} {}" font-family="{}" role="img">)",
               Num(width), Num(height), Num(width), Num(height), kFont) +
           "\n<title>" + Escape(title) + "</title>\n" +
           fmt::format(R"(<rect x="0" y="0" width="{}" height="{}" fill="#ffffff"/>)", Num(width),
                       Num(height)) +
           "\n" + body_ + "</svg>\n";
  }

 private:
  void Close(const char* element, const std::string& tip) {
    if (tip.empty()) {
      body_ += "/>\n";
    } else {
      body_ += "><title>" + Escape(tip) + "</title></" + element + ">\n";
    }
  }
  std::string body_;
};

// The line style of series number i: Okabe-Ito colour, marker shape, and a
// dash pattern once the 8 colours repeat.
struct Style {
  std::string colour;
  int marker;
  std::string dash;
};
Style SeriesStyle(int i) {
  static const std::array<const char*, 3> dashes = {"", "6,3", "2,2"};
  return {OkabeIto(i).Hex(), i % 4, dashes[static_cast<size_t>((i / 8) % 3)]};
}

// Expands [lo, hi] over values, ignoring non-finite ones and, for a log
// scale, non-positive ones.
void Extend(double v, bool log, double& lo, double& hi) {
  if (!std::isfinite(v) || (log && v <= 0)) return;
  lo = std::min(lo, v);
  hi = std::max(hi, v);
}

Scale MakeScale(double lo, double hi, bool log) {
  if (!(lo <= hi)) {  // No data: a placeholder interval.
    lo = log ? 1e-3 : 0;
    hi = 1;
  }
  return log ? Scale::NiceLog(lo, hi) : Scale::NiceLinear(lo, hi);
}

// Integer ticks for layer axes: every k-th integer, k in 1, 2, 5, 10, ...
std::vector<double> IntegerTicks(double lo, double hi, int target) {
  const double span = hi - lo;
  double step = 1;
  for (double base = 1; span / step > target; base *= 10) {
    for (double m : {1.0, 2.0, 5.0}) {
      step = m * base;
      if (span / step <= target) break;
    }
  }
  std::vector<double> ticks;
  for (double t = std::ceil(lo / step) * step; t <= hi; t += step) ticks.push_back(t);
  return ticks;
}

// `guides`: per name, the fixed colour of a guide series (empty: palette).
void DrawLegend(Canvas& c, double x, double y, const std::vector<std::string>& names,
                const std::vector<std::string>& guides = {}) {
  int slot = 0;
  for (size_t i = 0; i < names.size(); ++i) {
    const double yy = y + 18.0 * static_cast<double>(i);
    if (i < guides.size() && !guides[i].empty()) {
      c.Line(x, yy, x + 26, yy, guides[i], 1.5, R"( stroke-dasharray="5,3")");
      c.Text(x + 32, yy + 4, names[i], 11.5);
      continue;
    }
    const Style s = SeriesStyle(slot++);
    c.Line(x, yy, x + 26, yy, s.colour, 2,
           s.dash.empty() ? "" : fmt::format(R"( stroke-dasharray="{}")", s.dash));
    c.Marker(s.marker, x + 13, yy, s.colour, "");
    c.Text(x + 32, yy + 4, names[i], 11.5);
  }
}

double LegendWidth(const std::vector<std::string>& names) {
  double w = 0;
  for (const auto& n : names) w = std::max(w, TextWidth(n, 11.5));
  return names.empty() ? 0 : w + 50;
}

}  // namespace

std::string Escape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char ch : text) {
    switch (ch) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&apos;";
        break;
      default:
        out += ch;
    }
  }
  return out;
}

std::string Rgb::Hex() const { return fmt::format("#{:02x}{:02x}{:02x}", r, g, b); }

Rgb OkabeIto(int index) {
  static constexpr std::array<Rgb, 8> kPalette = {{{230, 159, 0},
                                                   {86, 180, 233},
                                                   {0, 158, 115},
                                                   {240, 228, 66},
                                                   {0, 114, 178},
                                                   {213, 94, 0},
                                                   {204, 121, 167},
                                                   {0, 0, 0}}};
  const int n = static_cast<int>(kPalette.size());
  return kPalette[static_cast<size_t>(((index % n) + n) % n)];
}

Rgb Viridis(double t) {
  // matplotlib's viridis sampled at t = 0, 0.1, ..., 1.
  static constexpr std::array<Rgb, 11> kAnchors = {{{0x44, 0x01, 0x54},
                                                    {0x48, 0x24, 0x75},
                                                    {0x41, 0x44, 0x87},
                                                    {0x35, 0x5f, 0x8d},
                                                    {0x2a, 0x78, 0x8e},
                                                    {0x21, 0x91, 0x8c},
                                                    {0x22, 0xa8, 0x84},
                                                    {0x44, 0xbf, 0x70},
                                                    {0x7a, 0xd1, 0x51},
                                                    {0xbd, 0xdf, 0x26},
                                                    {0xfd, 0xe7, 0x25}}};
  if (!(t > 0)) return kAnchors.front();  // Also NaN.
  if (t >= 1) return kAnchors.back();
  const double pos = t * 10;
  const auto i = static_cast<size_t>(pos);
  const double f = pos - static_cast<double>(i);
  auto mix = [f](uint8_t a, uint8_t b) {
    return static_cast<uint8_t>(std::lround(a + (b - a) * f));
  };
  const Rgb& a = kAnchors[i];
  const Rgb& b = kAnchors[i + 1];
  return {mix(a.r, b.r), mix(a.g, b.g), mix(a.b, b.b)};
}

Scale Scale::Linear(double lo, double hi) {
  KVQ_CHECK(std::isfinite(lo) && std::isfinite(hi) && lo < hi);
  return Scale(lo, hi, false);
}

Scale Scale::Log(double lo, double hi) {
  KVQ_CHECK(std::isfinite(lo) && std::isfinite(hi) && lo > 0 && lo < hi);
  return Scale(lo, hi, true);
}

namespace {

// 1, 2 or 5 x 10^k, the smallest such step giving at most `target` steps.
double NiceStep(double span, int target) {
  const double raw = span / std::max(target, 1);
  const double base = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0, 10.0}) {
    if (m * base >= raw * (1 - 1e-9)) return m * base;
  }
  return 10 * base;
}

}  // namespace

Scale Scale::NiceLinear(double lo, double hi, int target_ticks) {
  if (lo == hi) {
    const double pad = lo == 0 ? 1 : std::abs(lo) * 0.1;
    lo -= pad;
    hi += pad;
  }
  const double step = NiceStep(hi - lo, target_ticks);
  return Linear(std::floor(lo / step + 1e-9) * step, std::ceil(hi / step - 1e-9) * step);
}

Scale Scale::NiceLog(double lo, double hi) {
  KVQ_CHECK(lo > 0 && hi > 0);
  double a = std::floor(std::log10(lo) + 1e-9);
  double b = std::ceil(std::log10(hi) - 1e-9);
  if (a == b) b = a + 1;
  return Log(std::pow(10.0, a), std::pow(10.0, b));
}

double Scale::Fraction(double v) const {
  if (log_) return (std::log10(v) - std::log10(lo_)) / (std::log10(hi_) - std::log10(lo_));
  return (v - lo_) / (hi_ - lo_);
}

std::vector<double> Scale::Ticks(int target) const {
  std::vector<double> ticks;
  const double eps = 1e-9;
  if (log_) {
    const int a = static_cast<int>(std::floor(std::log10(lo_) + eps));
    const int b = static_cast<int>(std::ceil(std::log10(hi_) - eps));
    const int decades = b - a;
    // Many decades: every k-th power so that about `target` remain.
    const int stride = std::max(1, (decades + target - 1) / std::max(target, 1));
    for (int e = a; e <= b; ++e) {
      const double p = std::pow(10.0, e);
      if ((e - a) % stride == 0 && p >= lo_ * (1 - eps) && p <= hi_ * (1 + eps)) ticks.push_back(p);
      if (decades < 3) {
        for (double m : {2.0, 5.0}) {
          const double v = m * p;
          if (v >= lo_ * (1 - eps) && v <= hi_ * (1 + eps)) ticks.push_back(v);
        }
      }
    }
    std::sort(ticks.begin(), ticks.end());
    return ticks;
  }
  const double step = NiceStep(hi_ - lo_, target);
  for (double t = std::ceil(lo_ / step - eps) * step; t <= hi_ + step * eps; t += step) {
    ticks.push_back(std::abs(t) < step * eps ? 0.0 : t);
  }
  return ticks;
}

std::string Scale::TickLabel(double v) const {
  if (log_) {
    const double e = std::floor(std::log10(v) + 1e-9);
    const double m = v / std::pow(10.0, e);
    const int exponent = static_cast<int>(e);
    if (exponent >= 0 && exponent <= 3) return fmt::format("{:g}", v);
    return fmt::format("{}e{}", static_cast<int>(std::lround(m)), exponent);
  }
  const double mag = std::max(std::abs(lo_), std::abs(hi_));
  if (mag >= 1e5 || (mag < 1e-3 && mag > 0)) return fmt::format("{:.3g}", v);
  return fmt::format("{:g}", std::abs(v) < 1e-12 * mag ? 0.0 : v);
}

Rgb ColourScale::operator()(double v) const {
  if (scale.log() && !(v > 0)) return Viridis(0);
  return Viridis(std::clamp(scale.Fraction(v), 0.0, 1.0));
}

std::string FormatValue(double v, int digits) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  return fmt::format("{:.{}g}", v, digits);
}

std::string RenderLines(const LineFigure& figure) {
  // Legend: series names in order of first appearance over all panels.
  std::vector<std::string> names, guides;
  for (const Panel& p : figure.panels) {
    for (const Series& s : p.series) {
      if (std::find(names.begin(), names.end(), s.name) == names.end()) {
        names.push_back(s.name);
        guides.push_back(s.colour);
      }
    }
  }
  // Palette slots go to the data series only (guides have their own colour).
  auto index_of = [&](const std::string& name) {
    const auto at =
        static_cast<size_t>(std::find(names.begin(), names.end(), name) - names.begin());
    int slot = 0;
    for (size_t i = 0; i < at; ++i) slot += guides[i].empty() ? 1 : 0;
    return slot;
  };
  const double left = 78, right_pad = 24;
  const double top = 34 + (figure.subtitle.empty() ? 0 : 18);
  const double panel_block = 26 + figure.panel_height + 46;
  const double plot_w = figure.plot_width;
  const double legend_w = LegendWidth(names);
  const double width = left + plot_w + right_pad + legend_w;
  const double height = std::max(top + panel_block * static_cast<double>(figure.panels.size()) + 6,
                                 top + 30 + 18.0 * static_cast<double>(names.size()));
  Canvas c;
  c.Text(width / 2, 22, figure.title, 15, "middle", R"( font-weight="bold")");
  if (!figure.subtitle.empty()) c.Text(width / 2, 42, figure.subtitle, 12, "middle");

  for (size_t pi = 0; pi < figure.panels.size(); ++pi) {
    const Panel& p = figure.panels[pi];
    const double y0 = top + panel_block * static_cast<double>(pi) + 26;
    const double h = figure.panel_height;
    double xlo = std::numeric_limits<double>::infinity(), xhi = -xlo, ylo = xlo, yhi = -xlo;
    for (const Series& s : p.series) {
      for (size_t i = 0; i < s.x.size(); ++i) {
        if (p.y_log && !(s.y[i] > 0)) continue;
        Extend(s.x[i], p.x_log, xlo, xhi);
        Extend(s.y[i], p.y_log, ylo, yhi);
      }
    }
    for (const RefLine& r : p.ref_lines) Extend(r.y, p.y_log, ylo, yhi);
    if (p.y_min) Extend(*p.y_min, p.y_log, ylo, yhi);
    if (p.y_max) Extend(*p.y_max, p.y_log, ylo, yhi);
    const Scale ys = MakeScale(ylo, yhi, p.y_log);
    std::vector<double> xticks;
    std::optional<Scale> xs_storage;
    if (p.x_integer && xlo <= xhi) {
      xs_storage = Scale::Linear(xlo - 0.5, xhi + 0.5);
      xticks = IntegerTicks(xlo, xhi, 24);
    } else {
      xs_storage = MakeScale(xlo, xhi, p.x_log);
      xticks = xs_storage->Ticks(8);
    }
    const Scale& xs = *xs_storage;
    auto X = [&](double v) { return left + xs.Fraction(v) * plot_w; };
    auto Y = [&](double v) { return y0 + h - ys.Fraction(v) * h; };

    c.Text(left + plot_w / 2, y0 - 8, p.title, 13, "middle", R"( font-weight="bold")");
    for (double t : ys.Ticks(6)) {
      c.Line(left, Y(t), left + plot_w, Y(t), kGrid, 1);
      c.Text(left - 6, Y(t) + 4, ys.TickLabel(t), 11, "end");
    }
    for (double t : xticks) {
      c.Line(X(t), y0, X(t), y0 + h, kGrid, 1);
      c.Text(X(t), y0 + h + 16, xs.TickLabel(t), 11, "middle");
    }
    c.Rect(left, y0, plot_w, h, "none", "", fmt::format(R"( stroke="{}" stroke-width="1")", kInk));
    c.Text(left + plot_w / 2, y0 + h + 36, p.x_label, 12, "middle");
    c.Text(18, y0 + h / 2, p.y_label, 12, "middle",
           fmt::format(R"x( transform="rotate(-90 18 {})")x", Num(y0 + h / 2)));

    for (const RefLine& r : p.ref_lines) {
      if (p.y_log && !(r.y > 0)) continue;
      c.Line(left, Y(r.y), left + plot_w, Y(r.y), "#555555", 1.5, R"( stroke-dasharray="7,4")");
      c.Text(left + plot_w - 4, Y(r.y) - 5, r.label, 11, "end", R"( fill="#333333")");
    }
    for (const Series& s : p.series) {
      const Style st = SeriesStyle(index_of(s.name));
      auto placeable = [&](size_t i) {
        return std::isfinite(s.x[i]) && std::isfinite(s.y[i]) && (!p.y_log || s.y[i] > 0);
      };
      if (!s.colour.empty()) {
        std::string points;
        for (size_t i = 0; i < s.x.size(); ++i) {
          if (!placeable(i)) continue;
          if (!points.empty()) points += ' ';
          points += Num(X(s.x[i])) + "," + Num(Y(s.y[i]));
        }
        c.Raw(fmt::format(
            R"(<polyline points="{}" fill="none" stroke="{}" stroke-width="1.5" stroke-dasharray="5,3"/>)",
            points, s.colour));
        c.Raw("\n");
        continue;
      }
      if (s.kind == SeriesKind::kLine) {
        // One polyline per run of placeable points.
        std::string points;
        auto flush = [&] {
          if (points.find(' ') != std::string::npos) {
            c.Raw(fmt::format(
                R"(<polyline points="{}" fill="none" stroke="{}" stroke-width="2"{}/>)", points,
                st.colour,
                st.dash.empty() ? "" : fmt::format(R"( stroke-dasharray="{}")", st.dash)));
            c.Raw("\n");
          }
          points.clear();
        };
        for (size_t i = 0; i < s.x.size(); ++i) {
          if (!placeable(i)) {
            flush();
            continue;
          }
          if (!points.empty()) points += ' ';
          points += Num(X(s.x[i])) + "," + Num(Y(s.y[i]));
        }
        flush();
      }
      for (size_t i = 0; i < s.x.size(); ++i) {
        if (!placeable(i)) continue;
        const std::string tip =
            i < s.tips.size()
                ? s.tips[i]
                : fmt::format("{}: {}, {}", s.name, FormatValue(s.x[i]), FormatValue(s.y[i], 6));
        c.Marker(st.marker, X(s.x[i]), Y(s.y[i]), st.colour, tip);
      }
    }
    for (const Mark& m : p.marks) {
      if (p.y_log && !(m.y > 0)) continue;
      const std::string colour = m.series >= 0 ? SeriesStyle(m.series).colour : std::string(kInk);
      c.Raw(
          fmt::format(R"(<circle cx="{}" cy="{}" r="6" fill="none" stroke="{}" stroke-width="2"/>)",
                      Num(X(m.x)), Num(Y(m.y)), colour));
      c.Raw("\n");
      // Labels go inside the plot: to the left of points in the right half.
      const bool right_half = xs.Fraction(m.x) > 0.6;
      const bool low = ys.Fraction(m.y) < 0.2;
      c.Text(
          X(m.x) + (right_half ? -10 : 10), Y(m.y) + (low ? -10 : 16), m.text, 11.5,
          right_half ? "end" : "start",
          R"( font-weight="bold" stroke="#ffffff" stroke-width="3" paint-order="stroke" fill="#222222")");
    }
  }
  DrawLegend(c, left + plot_w + right_pad, top + 30, names, guides);
  return c.Finish(width, height, figure.title);
}

std::string RenderBars(const BarFigure& f) {
  const size_t n_series = std::max<size_t>(f.series.size(), 1);
  const double bar_h = 13, row_gap = 8;
  const double row_h = bar_h * static_cast<double>(n_series) + row_gap;
  double label_w = 0;
  for (const auto& cat : f.categories) label_w = std::max(label_w, TextWidth(cat, 11.5));
  std::vector<std::string> names;
  for (const Series& s : f.series) names.push_back(s.name);
  const double legend_w = f.series.size() > 1 ? LegendWidth(names) : 0;
  const double left = label_w + 16, plot_w = f.plot_width, value_pad = 70;
  const double top = 34 + (f.subtitle.empty() ? 0 : 18) + 8;
  const double plot_h = row_h * static_cast<double>(f.categories.size()) + row_gap;
  const double width = left + plot_w + value_pad + legend_w;
  const double height = std::max(top + plot_h + 50, top + 18.0 * static_cast<double>(names.size()));

  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  for (const Series& s : f.series) {
    for (double v : s.y) Extend(v, f.x_log, lo, hi);
  }
  for (const RefLine& r : f.ref_lines) Extend(r.y, f.x_log, lo, hi);
  if (!f.x_log) Extend(0, false, lo, hi);
  const Scale xs = MakeScale(lo, hi, f.x_log);
  auto X = [&](double v) { return left + std::clamp(xs.Fraction(v), 0.0, 1.0) * plot_w; };

  Canvas c;
  c.Text(width / 2, 22, f.title, 15, "middle", R"( font-weight="bold")");
  if (!f.subtitle.empty()) c.Text(width / 2, 42, f.subtitle, 12, "middle");
  for (double t : xs.Ticks(6)) {
    c.Line(X(t), top, X(t), top + plot_h, kGrid, 1);
    c.Text(X(t), top + plot_h + 16, xs.TickLabel(t), 11, "middle");
  }
  const double base = f.x_log ? xs.lo() : 0.0;
  for (size_t i = 0; i < f.categories.size(); ++i) {
    const double y = top + row_gap + row_h * static_cast<double>(i);
    c.Text(left - 8, y + row_h / 2, f.categories[i], 11.5, "end");
    for (size_t s = 0; s < f.series.size(); ++s) {
      const Series& se = f.series[s];
      if (i >= se.y.size()) continue;
      const double v = se.y[i];
      const double by = y + bar_h * static_cast<double>(s);
      const std::string tip = i < se.tips.size()
                                  ? se.tips[i]
                                  : fmt::format("{}: {}", f.categories[i], FormatValue(v, 6));
      if (!std::isfinite(v) || (f.x_log && v <= 0)) {
        c.Text(X(base) + 4, by + bar_h - 3, "n/a", 10, "start", R"( fill="#666666")");
        continue;
      }
      const double x0 = X(std::max(std::min(base, v), xs.lo()));
      const double x1 = X(std::max(base, v));
      c.Rect(x0, by + 1, x1 - x0, bar_h - 2, SeriesStyle(static_cast<int>(s)).colour, tip);
      c.Text(X(std::max(base, v)) + 4, by + bar_h - 3, FormatValue(v), 10);
    }
  }
  for (const RefLine& r : f.ref_lines) {
    if (f.x_log && !(r.y > 0)) continue;
    c.Line(X(r.y), top, X(r.y), top + plot_h, "#555555", 1.5, R"( stroke-dasharray="7,4")");
    c.Text(X(r.y) + 3, top - 3, r.label, 10.5, "start", R"( fill="#333333")");
  }
  c.Rect(left, top, plot_w, plot_h, "none", "",
         fmt::format(R"( stroke="{}" stroke-width="1")", kInk));
  c.Text(left + plot_w / 2, top + plot_h + 36, f.x_label, 12, "middle");
  if (f.series.size() > 1) DrawLegend(c, left + plot_w + value_pad, top + 10, names);
  return c.Finish(width, height, f.title);
}

namespace {

// The colour scale over every panel's values: log (non-positive values are
// drawn neutral) or linear; colour_min / colour_max of the first panel.
Scale HeatmapScale(const std::vector<Heatmap>& panels, bool* nonpositive) {
  const Heatmap& first = panels.front();
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  *nonpositive = false;
  for (const Heatmap& m : panels) {
    KVQ_CHECK(m.values.size() == m.rows.size());
    for (const auto& row : m.values) {
      KVQ_CHECK(row.size() == m.cols.size());
      for (double v : row) {
        Extend(v, first.colour_log, lo, hi);
        *nonpositive |= first.colour_log ? !(v > 0) : !std::isfinite(v);
      }
    }
  }
  if (first.colour_min) lo = *first.colour_min;
  if (first.colour_max) hi = *first.colour_max;
  return MakeScale(lo, hi, first.colour_log);
}

bool Placeable(const Scale& scale, double v) { return scale.log() ? v > 0 : std::isfinite(v); }

// The cells, row labels and column labels of one heatmap with its grid's
// top-left corner at (left, top).
void DrawHeatmapGrid(Canvas& c, const Heatmap& m, const ColourScale& colour, double left,
                     double top) {
  const double cw = m.cell_width, ch = m.cell_height;
  const double grid_w = cw * static_cast<double>(m.cols.size());
  const double grid_h = ch * static_cast<double>(m.rows.size());
  for (size_t r = 0; r < m.rows.size(); ++r) {
    const double y = top + ch * static_cast<double>(r);
    c.Text(left - 8, y + ch / 2 + 4, m.rows[r], 12, "end");
    for (size_t col = 0; col < m.cols.size(); ++col) {
      const double v = m.values[r][col];
      const std::string fill = Placeable(colour.scale, v) ? colour(v).Hex() : kNeutral;
      std::string tip = r < m.tips.size() && col < m.tips[r].size()
                            ? m.tips[r][col]
                            : fmt::format("{}, {}: {}", m.rows[r], m.cols[col], FormatValue(v, 6));
      c.Rect(left + cw * static_cast<double>(col), y, cw, ch, fill, tip,
             R"( stroke="#ffffff" stroke-width="0.5")");
    }
  }
  // Column labels: all of them when they fit, else every k-th.
  const size_t stride = std::max<size_t>(1, static_cast<size_t>(std::ceil(22.0 / cw)));
  for (size_t col = 0; col < m.cols.size(); col += stride) {
    c.Text(left + cw * (static_cast<double>(col) + 0.5), top + grid_h + 15, m.cols[col], 11,
           "middle");
  }
  c.Text(left + grid_w / 2, top + grid_h + 36, m.x_label, 12, "middle");
}

// The colour bar at (x, top), bar_h tall, with its ticks, label and the
// neutral swatch for values the scale cannot place.
void DrawColourBar(Canvas& c, const ColourScale& colour, double x, double top, double bar_h,
                   const std::string& label, bool nonpositive,
                   const std::string& nonpositive_label) {
  const Scale& scale = colour.scale;
  const double bar_w = 16;
  // 64 stacked bands, low values at the bottom.
  const int bands = 64;
  const double lo = scale.log() ? std::log10(scale.lo()) : scale.lo();
  const double hi = scale.log() ? std::log10(scale.hi()) : scale.hi();
  for (int i = 0; i < bands; ++i) {
    const double t = (i + 0.5) / bands;
    const double y = top + bar_h * (1 - static_cast<double>(i + 1) / bands);
    const double v = lo + t * (hi - lo);
    c.Rect(x, y, bar_w, bar_h / bands + 0.5, colour(scale.log() ? std::pow(10.0, v) : v).Hex());
  }
  c.Rect(x, top, bar_w, bar_h, "none", "", R"( stroke="#222222" stroke-width="0.8")");
  for (double t : scale.Ticks(6)) {
    const double y = top + bar_h * (1 - scale.Fraction(t));
    c.Line(x + bar_w, y, x + bar_w + 4, y, kInk, 1);
    c.Text(x + bar_w + 7, y + 4, scale.TickLabel(t), 11);
  }
  const double label_x = x + bar_w + 62;
  c.Text(label_x, top + bar_h / 2, label, 12, "middle",
         fmt::format(R"x( transform="rotate(-90 {} {})")x", Num(label_x), Num(top + bar_h / 2)));
  if (nonpositive) {
    c.Rect(x, top + bar_h + 14, bar_w, 12, kNeutral);
    c.Text(x + bar_w + 6, top + bar_h + 24, nonpositive_label, 11);
  }
}

double RowLabelWidth(const Heatmap& m) {
  double w = 0;
  for (const auto& r : m.rows) w = std::max(w, TextWidth(r, 12));
  return w + 18;
}

}  // namespace

std::string RenderHeatmap(const Heatmap& m) {
  bool nonpositive = false;
  const ColourScale colour{HeatmapScale({m}, &nonpositive)};
  const double left = RowLabelWidth(m);
  const double top = 34 + (m.subtitle.empty() ? 0 : 18) + 8;
  const double grid_w = m.cell_width * static_cast<double>(m.cols.size());
  const double grid_h = m.cell_height * static_cast<double>(m.rows.size());
  const double bar_x = left + grid_w + 30, bar_w = 16;
  const double bar_h = std::max(grid_h, 150.0);
  const double width = std::max(bar_x + bar_w + 120, TextWidth(m.title, 15) + 40);
  const double height = top + std::max(grid_h + 52, bar_h + (nonpositive ? 44 : 16));

  Canvas c;
  c.Text(width / 2, 22, m.title, 15, "middle", R"( font-weight="bold")");
  if (!m.subtitle.empty()) c.Text(width / 2, 42, m.subtitle, 12, "middle");
  DrawHeatmapGrid(c, m, colour, left, top);
  DrawColourBar(c, colour, bar_x, top, bar_h, m.colour_label, nonpositive, m.nonpositive_label);
  return c.Finish(width, height, m.title);
}

std::string RenderHeatmapPanels(const std::string& title, const std::string& subtitle,
                                const std::vector<Heatmap>& panels) {
  KVQ_CHECK(!panels.empty());
  bool nonpositive = false;
  const ColourScale colour{HeatmapScale(panels, &nonpositive)};
  const double top = 34 + (subtitle.empty() ? 0 : 18) + 8;
  const double panel_title_h = 20;
  double x = 10, grid_h = 0;
  std::vector<double> lefts;
  for (const Heatmap& m : panels) {
    // The title and x label are centred on the grid: room on both sides
    // for whatever of them is wider than it.
    const double grid_w = m.cell_width * static_cast<double>(m.cols.size());
    const double overhang =
        std::max(0.0, (std::max(TextWidth(m.title, 13), TextWidth(m.x_label, 12)) - grid_w) / 2);
    const double left = x + std::max(RowLabelWidth(m), overhang);
    lefts.push_back(left);
    x = left + grid_w + overhang + 20;
    grid_h = std::max(grid_h, m.cell_height * static_cast<double>(m.rows.size()));
  }
  const double bar_x = x + 14, bar_w = 16;
  const double bar_h = std::max(grid_h, 150.0);
  const double width = std::max(bar_x + bar_w + 120, TextWidth(title, 15) + 40);
  const double grid_top = top + panel_title_h;
  const double height = grid_top + std::max(grid_h + 52, bar_h + (nonpositive ? 44 : 16));

  Canvas c;
  c.Text(width / 2, 22, title, 15, "middle", R"( font-weight="bold")");
  if (!subtitle.empty()) c.Text(width / 2, 42, subtitle, 12, "middle");
  for (size_t i = 0; i < panels.size(); ++i) {
    const Heatmap& m = panels[i];
    c.Text(lefts[i] + m.cell_width * static_cast<double>(m.cols.size()) / 2, grid_top - 8, m.title,
           13, "middle", R"( font-weight="bold")");
    DrawHeatmapGrid(c, m, colour, lefts[i], grid_top);
  }
  DrawColourBar(c, colour, bar_x, grid_top, bar_h, panels.front().colour_label, nonpositive,
                panels.front().nonpositive_label);
  return c.Finish(width, height, title);
}

}  // namespace kvq::svg
