// The plotting layer (scales, ticks, colours, escaping, well-formed SVG that
// renders), the CSV reader and the report's analyses.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <set>

#include <fmt/format.h>

#include "kvq/common/csv.h"
#include "kvq/common/error.h"
#include "kvq/common/io.h"
#include "kvq/report/results.h"
#include "kvq/report/svg.h"
#include "svg_check.h"
#include "test_util.h"

namespace kvq {
namespace {

using svg::Scale;

// Renders an SVG file with rsvg-convert and returns the number of distinct
// colours of the PNG (0 when it could not be rendered or decoded).
size_t RenderedColours(const std::filesystem::path& svg_path) {
  const auto png = svg_path.string() + ".png";
  const std::string command = fmt::format("rsvg-convert -o '{}' '{}' 2>&1", png, svg_path.string());
  if (std::system(command.c_str()) != 0) return 0;
  int width = 0, height = 0;
  std::vector<uint32_t> pixels;
  if (!test::DecodePng(ReadTextFile(png), width, height, pixels)) return 0;
  return std::set<uint32_t>(pixels.begin(), pixels.end()).size();
}

TEST(Svg, EscapesTheFiveXmlCharacters) {
  EXPECT_EQ(svg::Escape(R"(k=int8:channel,v<x> & "q" 'a')"),
            "k=int8:channel,v&lt;x&gt; &amp; &quot;q&quot; &apos;a&apos;");
  EXPECT_EQ(svg::Escape("plain"), "plain");
}

TEST(Svg, LogScaleSnapsToDecadesAndTicksEachPower) {
  const Scale s = Scale::NiceLog(3e-5, 0.2);
  EXPECT_DOUBLE_EQ(s.lo(), 1e-5);
  EXPECT_DOUBLE_EQ(s.hi(), 1);
  const std::vector<double> ticks = s.Ticks(6);
  const std::vector<double> expected = {1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1};
  ASSERT_EQ(ticks.size(), expected.size());
  for (size_t i = 0; i < ticks.size(); ++i) EXPECT_NEAR(ticks[i] / expected[i], 1, 1e-12) << i;
  EXPECT_NEAR(s.Fraction(1e-3), 0.4, 1e-12);  // 2 of 5 decades.
  EXPECT_EQ(s.TickLabel(1e-4), "1e-4");
  EXPECT_EQ(s.TickLabel(1), "1");
}

TEST(Svg, NarrowLogScaleAddsTwoAndFiveTicks) {
  const Scale s = Scale::NiceLog(0.02, 0.3);
  const std::vector<double> expected = {0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1};
  const auto ticks = s.Ticks(6);
  ASSERT_EQ(ticks.size(), expected.size());
  for (size_t i = 0; i < ticks.size(); ++i) EXPECT_NEAR(ticks[i] / expected[i], 1, 1e-12) << i;
  EXPECT_EQ(s.TickLabel(0.05), "5e-2");
}

TEST(Svg, ManyDecadesThinTheLogTicks) {
  const auto ticks = Scale::NiceLog(1e-12, 1).Ticks(6);  // 12 decades, every 2nd.
  ASSERT_EQ(ticks.size(), 7u);
  EXPECT_NEAR(ticks[1] / 1e-10, 1, 1e-12);
}

TEST(Svg, LinearScaleUsesRoundSteps) {
  const Scale s = Scale::NiceLinear(0.837, 0.9995);
  EXPECT_DOUBLE_EQ(s.lo(), 0.8);
  EXPECT_DOUBLE_EQ(s.hi(), 1.0);
  const auto ticks = s.Ticks(6);
  ASSERT_EQ(ticks.size(), 5u);  // 0.8, 0.85, ..., 1
  EXPECT_NEAR(ticks[1], 0.85, 1e-12);
  EXPECT_NEAR(s.Fraction(0.9), 0.5, 1e-12);
  const Scale flat = Scale::NiceLinear(5, 5);  // A constant series still gets an axis.
  EXPECT_LT(flat.lo(), 5);
  EXPECT_GT(flat.hi(), 5);
}

TEST(Svg, ColourMapsMatchTheirPublishedValues) {
  EXPECT_EQ(svg::Viridis(0).Hex(), "#440154");
  EXPECT_EQ(svg::Viridis(0.5).Hex(), "#21918c");
  EXPECT_EQ(svg::Viridis(1).Hex(), "#fde725");
  // Halfway between the samples at 0.2 (#414487) and 0.3 (#355f8d).
  EXPECT_EQ(svg::Viridis(0.25).Hex(), "#3b528a");
  EXPECT_EQ(svg::Viridis(-3).Hex(), "#440154");
  EXPECT_EQ(svg::Viridis(NAN).Hex(), "#440154");
  EXPECT_EQ(svg::OkabeIto(0).Hex(), "#e69f00");
  EXPECT_EQ(svg::OkabeIto(4).Hex(), "#0072b2");
  EXPECT_EQ(svg::OkabeIto(8), svg::OkabeIto(0));
  EXPECT_EQ(svg::OkabeIto(-1).Hex(), "#000000");
  // The heatmaps' scale: log10 position in [1e-4, 1].
  const svg::ColourScale c{Scale::Log(1e-4, 1)};
  EXPECT_EQ(c(1e-2).Hex(), "#21918c");
  EXPECT_EQ(c(1e-6).Hex(), "#440154");  // Clamped below.
  EXPECT_EQ(c(10).Hex(), "#fde725");    // Clamped above.
  EXPECT_EQ(c(0).Hex(), "#440154");
}

TEST(Svg, FiguresAreWellFormedEscapedAndRender) {
  test::ScratchDir dir;
  svg::LineFigure fig;
  fig.title = "Title with <tags> & \"quotes\"";
  svg::Panel p;
  p.x_label = "layer";
  p.y_label = "NMSE";
  p.y_log = true;
  p.x_integer = true;
  p.series.push_back(
      {"k=int8:channel,v=int8:token", {0, 1, 2, 3, 4}, {1e-3, 2e-3, 0, 2e-2, 5e-4}, {}, {}, {}});
  p.series.push_back({"a<b", {0, 1, 2, 3, 4}, {1e-4, 2e-4, 1e-4, 3e-4, 1e-4}, {}, {}, {}});
  p.ref_lines.push_back({1e-2, "floor & limit"});
  p.marks.push_back({2, 2e-2, "worst <2>", 0});
  fig.panels.push_back(p);
  const std::string lines = svg::RenderLines(fig);
  EXPECT_EQ(test::XmlError(lines), "");
  EXPECT_NE(lines.find("Title with &lt;tags&gt; &amp; &quot;quotes&quot;"), std::string::npos);
  EXPECT_NE(lines.find("a&lt;b"), std::string::npos);
  EXPECT_EQ(lines.find("a<b"), std::string::npos);
  // The zero point of the log plot breaks the line: two polylines for series 0, one for 1.
  size_t polylines = 0;
  for (size_t at = lines.find("<polyline"); at != std::string::npos;
       at = lines.find("<polyline", at + 1)) {
    ++polylines;
  }
  EXPECT_EQ(polylines, 3u);

  svg::Heatmap m;
  m.title = "heat";
  m.rows = {"K h0", "V h0"};
  m.cols = {"0", "1", "2"};
  m.values = {{1e-3, 0, 1e-1}, {1e-5, 2e-5, 3e-5}};
  const std::string heat = svg::RenderHeatmap(m);
  EXPECT_EQ(test::XmlError(heat), "");
  EXPECT_NE(heat.find("<title>K h0, 2: 0.1</title>"), std::string::npos);

  svg::BarFigure b;
  b.title = "bars";
  b.x_label = "bytes";
  b.categories = {"strat1", "q8_0"};
  b.series.push_back({"bytes", {}, {6144, 6528}, {}, {}, {}});
  const std::string bars = svg::RenderBars(b);
  EXPECT_EQ(test::XmlError(bars), "");

  for (const auto& [name, text] :
       {std::pair{"lines.svg", lines}, {"heat.svg", heat}, {"bars.svg", bars}}) {
    WriteTextFileAtomic(dir / name, text);
    EXPECT_GT(RenderedColours(dir / name), 4u) << name;
  }
}

TEST(Svg, XmlCheckerCatchesBrokenMarkup) {
  EXPECT_EQ(test::XmlError("<a><b/></a>"), "");
  EXPECT_NE(test::XmlError("<a><b></a>"), "");
  EXPECT_NE(test::XmlError("<a x=1/>"), "");
  EXPECT_NE(test::XmlError("<a>x & y</a>"), "");
  EXPECT_NE(test::XmlError("<a/><b/>"), "");
}

TEST(Csv, QuotedFieldsRoundTrip) {
  const std::string text = "strategy,nmse\n" + CsvField("k=int8:channel,v=int8:token") + "," +
                           CsvNumber(INFINITY) + "\n" + CsvField("say \"hi\"") + ",1.5\n";
  const CsvTable t = ParseCsv(text, "t.csv");
  ASSERT_EQ(t.rows.size(), 2u);
  EXPECT_EQ(t.Text(0, "strategy"), "k=int8:channel,v=int8:token");
  EXPECT_TRUE(std::isinf(t.Number(0, "nmse")));
  EXPECT_EQ(t.Text(1, "strategy"), "say \"hi\"");
  EXPECT_EQ(t.Number(1, "nmse"), 1.5);
  EXPECT_THROW(ParseCsv("a,b\n1\n", "bad.csv"), InputError);
  EXPECT_THROW(ParseCsv("a\n\"open\n", "bad.csv"), InputError);
  EXPECT_THROW(t.Number(0, "strategy"), InputError);
  EXPECT_THROW(t.Column("nope"), InputError);
}

report::QuantRow Q(const std::string& s, KvTensor t, int layer, int head, double sse, double nmse) {
  return {s, t, layer, head, "f", 16, sse, nmse, 0};
}

TEST(Report, KvRatioAndDominantHeads) {
  using report::QuantRow;
  std::vector<QuantRow> rows = {
      Q("s", KvTensor::kK, 0, 0, 70, 0.7), Q("s", KvTensor::kK, 0, 1, 20, 0.2),
      Q("s", KvTensor::kK, 1, 0, 6, 0.06), Q("s", KvTensor::kK, 1, 1, 4, 0.04),
      Q("s", KvTensor::kV, 0, 0, 1, 0.01), Q("s", KvTensor::kV, 0, 1, 1, 0.03),
      Q("s", KvTensor::kV, 1, 0, 1, 0.01), Q("s", KvTensor::kV, 1, 1, 1, 0.03)};
  EXPECT_DOUBLE_EQ(report::MeanNmse(rows, "s", KvTensor::kK), 0.25);
  EXPECT_DOUBLE_EQ(report::MeanNmse(rows, "s", KvTensor::kV), 0.02);
  const auto heads = report::DominantKHeads(rows, "s", 0.8);  // 70 + 20 >= 80 of 100.
  ASSERT_EQ(heads.size(), 2u);
  EXPECT_EQ(heads[0].layer, 0);
  EXPECT_EQ(heads[0].head, 0);
  EXPECT_DOUBLE_EQ(heads[0].share, 0.7);
  EXPECT_EQ(heads[1].head, 1);
}

TEST(Report, ParetoFrontierBudgetsAndModifiers) {
  using report::AttnRow;
  std::vector<AttnRow> attn;
  // name, per-layer (cos, nmse) for layers 0 and 1.
  auto add = [&](const std::string& s, double c0, double n0, double c1, double n1) {
    attn.push_back({s, 0, -1, n0, c0, c0});
    attn.push_back({s, 1, -1, n1, c1, c1});
  };
  add("big", 0.9999, 1e-5, 0.9999, 1e-5);
  add("mid", 0.98, 1e-3, 0.999, 1e-4);
  add("mid+had", 0.995, 2e-4, 0.999, 1e-4);
  add("bad", 0.9, 1e-2, 0.95, 1e-2);  // Costs as much as mid, worse: dominated.
  const auto summaries = report::SummarizeAttention(attn, 0.99);
  ASSERT_EQ(summaries.size(), 4u);
  EXPECT_EQ(summaries[1].worst_layer, 0);
  EXPECT_EQ(summaries[1].below_floor, std::vector<int>{0});
  EXPECT_DOUBLE_EQ(summaries[1].mean_nmse, 5.5e-4);
  const std::vector<report::BytesRow> bytes = {
      {"big", 1000, 0, 1}, {"mid", 500, 0, 0.5}, {"mid+had", 500, 0, 0.5}, {"bad", 500, 0, 0.5}};
  const auto points = report::ParetoPoints(bytes, summaries);
  ASSERT_EQ(points.size(), 4u);
  EXPECT_TRUE(points[0].frontier);
  EXPECT_FALSE(points[1].frontier);  // mid+had: same bytes, lower error.
  EXPECT_TRUE(points[2].frontier);
  EXPECT_FALSE(points[3].frontier);
  const auto picks = report::BestUnderBudgets(points);
  ASSERT_EQ(picks.size(), 2u);
  EXPECT_EQ(picks[0].budget, 500);
  EXPECT_EQ(picks[0].best.strategy, "mid+had");
  EXPECT_EQ(picks[1].best.strategy, "big");
  const auto effects = report::ModifierEffects({}, summaries, bytes);
  ASSERT_EQ(effects.size(), 1u);
  EXPECT_EQ(effects[0].modifier, "had");
  EXPECT_EQ(effects[0].base, "mid");
  EXPECT_DOUBLE_EQ(effects[0].attn_nmse_ratio, 1.5e-4 / 5.5e-4);
  // Round trip through pareto.csv.
  test::ScratchDir dir;
  WriteTextFileAtomic(dir / "p.csv", report::ParetoCsv(points));
  const auto back = report::ReadParetoCsv(dir / "p.csv");
  ASSERT_EQ(back.size(), 4u);
  EXPECT_EQ(back[2].strategy, "mid+had");
  EXPECT_TRUE(back[2].frontier);
  EXPECT_DOUBLE_EQ(back[2].error, points[2].error);
}

}  // namespace
}  // namespace kvq
