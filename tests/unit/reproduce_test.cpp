// The comparison with the reference study's published tables
// (data/reference/kvmix): the shipped files read back, a synthetic dump built
// to match a slice of the published tables (and one deliberately off), the
// claims' verdicts on runs made of the published figures, `kvq reproduce`'s
// exit codes and the report's verdict section.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "kvq/capture/dump.h"
#include "kvq/common/csv.h"
#include "kvq/common/io.h"
#include "kvq/common/random.h"
#include "kvq/metrics/tensor_error.h"
#include "kvq/report/report.h"
#include "kvq/report/reproduce.h"
#include "kvq/report/results.h"
#include "svg_check.h"
#include "test_util.h"

namespace kvq {
namespace {

namespace fs = std::filesystem;
using report::Verdict;

fs::path Published() { return test::RepoDataDir() / "reference" / "kvmix"; }

// An independent reader of the published quant files: split at commas.
struct Line {
  int layer = 0, head = 0;
  bool k = true;
  double max_abs = 0, sse = 0;
};
std::vector<Line> ReadLines(const std::string& file) {
  std::ifstream in(Published() / file);
  std::vector<Line> out;
  std::string text;
  while (std::getline(in, text)) {
    std::vector<std::string> f;
    std::stringstream ss(text);
    std::string item;
    while (std::getline(ss, item, ',')) f.push_back(item);
    EXPECT_EQ(f.size(), 10u) << file;
    out.push_back(
        {std::stoi(f[1]), std::stoi(f[4]), f[2] == "k", std::stod(f[7]), std::stod(f[8])});
  }
  return out;
}

const report::PublishedResults& Loaded() {
  static const report::PublishedResults p = report::LoadPublished(Published());
  return p;
}

TEST(Reproduce, ShippedTablesReadBackAsPublished) {
  const auto& p = Loaded();
  ASSERT_EQ(p.quant.size(), 4u * 96);
  ASSERT_EQ(p.attn.size(), 2u * 24 * 15);
  for (const char* corpus : {"c4", "wikitext"}) {
    for (int s : {1, 2}) {
      const auto lines = ReadLines(fmt::format("quant_{}_s{}.csv", corpus, s));
      ASSERT_EQ(lines.size(), 96u);
      size_t i = 0;
      for (const auto& r : p.quant) {
        if (r.corpus != corpus || r.strategy != s) continue;
        ASSERT_LT(i, lines.size());
        EXPECT_EQ(r.layer, lines[i].layer);
        EXPECT_EQ(r.head, lines[i].head);
        EXPECT_EQ(r.tensor == KvTensor::kK, lines[i].k);
        EXPECT_EQ(r.max_abs, lines[i].max_abs);
        EXPECT_EQ(r.sse, lines[i].sse);
        ++i;
      }
      EXPECT_EQ(i, 96u);
    }
  }
  // The headline figures of the study's README are in the shipped tables.
  std::map<std::pair<int, int>, double> s1, s3;
  for (const auto& r : p.attn) (r.strategy == 1 ? s1 : s3)[{r.layer, r.head}] = r.cos;
  EXPECT_NEAR(s1.at({0, -1}), 0.837, 5e-4);
  EXPECT_NEAR(s1.at({8, -1}), 0.980, 5e-4);
  EXPECT_NEAR(s1.at({16, -1}), 0.947, 5e-4);
  EXPECT_NEAR(s3.at({11, -1}), 0.998, 5e-4);
  // No code path reads the shared checkout: the data ships in the repository.
  EXPECT_EQ(report::PublishedDataDir().filename(), "kvmix");
}

TEST(Reproduce, ModelName) {
  EXPECT_TRUE(report::IsReferenceModelName("Qwen/Qwen2.5-0.5B", ""));
  EXPECT_TRUE(report::IsReferenceModelName("qwen/qwen2.5-0.5b@abc", ""));
  EXPECT_TRUE(report::IsReferenceModelName("/models/Qwen2.5-0.5B/", ""));
  EXPECT_TRUE(
      report::IsReferenceModelName("/x/snap", "/h/hub/models--Qwen--Qwen2.5-0.5B/snapshots/abc"));
  EXPECT_FALSE(report::IsReferenceModelName("Qwen/Qwen2.5-0.5B-Instruct", ""));
  EXPECT_FALSE(report::IsReferenceModelName("models/random-qwen", "models/random-qwen"));
}

// A dump whose int8:tensor (strat1) quantization of each head reproduces the
// published max|x| and squared-error sum of `layers` layers of C4 exactly:
// one value at +max|x| fixes the scale s = 127 / max; every other value is
// q / s + e with q an integer level and |e| = sqrt(sse / (N - 1)) < 1/(2s),
// so rounding returns q / s and the error is e. `off` scales e of some heads.
void WriteMatchingDump(const fs::path& path, int layers,
                       const std::map<std::string, double>& error_scale,
                       const std::map<std::string, double>& max_scale) {
  const auto lines = ReadLines("quant_c4_s1.csv");
  DumpInfo info;
  info.model = "synthetic-kvmix-slice";
  info.architecture = "Qwen2ForCausalLM";
  info.num_layers = layers;
  info.num_heads = 2;
  info.num_kv_heads = 2;
  info.head_dim = 64;
  info.tokens = 4096;
  info.chunk_len = 512;
  info.rope.theta = 1e6;
  info.dtype = DType::kF32;
  const size_t n = 4096 * 64;
  DumpWriter writer(path, info);
  std::vector<int32_t> ids(4096, 1);
  writer.WriteInputIds(ids);
  SplitMix64 rng(7);
  std::vector<float> q(2 * n, 0.5f), k(2 * n), v(2 * n);
  for (int l = 0; l < layers; ++l) {
    for (const Line& line : lines) {
      if (line.layer != l) continue;
      const std::string name = fmt::format("{} L{} h{}", line.k ? "K" : "V", l, line.head);
      const float amax =
          static_cast<float>(line.max_abs * (max_scale.count(name) ? max_scale.at(name) : 1.0));
      const float s = 127.0f / amax;
      const double e = std::sqrt(line.sse / static_cast<double>(n - 1)) *
                       (error_scale.count(name) ? error_scale.at(name) : 1.0);
      ASSERT_LT(e * s, 0.5) << name;  // Rounding returns the level.
      float* x = (line.k ? k.data() : v.data()) + static_cast<size_t>(line.head) * n;
      x[0] = amax;
      for (size_t i = 1; i < n; ++i) {
        const double level = static_cast<double>(static_cast<int>(rng.Next() % 253) - 126);
        const double sign = (rng.Next() & 1) ? 1.0 : -1.0;
        x[i] = static_cast<float>(level / s + sign * e);
      }
    }
    writer.WriteLayer(l, q, k, v, {});
  }
  writer.Commit();
}

std::vector<report::QuantRow> MeasureStrat1(const fs::path& dump_path, const fs::path& csv) {
  const KvDump dump = KvDump::Open(dump_path);
  WriteTextFileAtomic(csv, ErrorCsv(MeasureDump(dump, Strategy::Parse("strat1"))));
  return report::ReadQuantCsv(csv);
}

TEST(Reproduce, SyntheticDumpMatchingAPublishedSliceAgreesRowByRow) {
  test::ScratchDir dir;
  WriteMatchingDump(dir / "kv.safetensors", 3, {}, {});
  const auto quant = MeasureStrat1(dir / "kv.safetensors", dir / "quant.csv");
  const auto r = report::CompareWithPublished(Loaded(), "c4", quant, {}, {}, {3, 2, 64});
  // max|x|, SSE strat1, SSE strat2, then attention NMSE and 1 - cos of
  // strat1 and strat3 (published on C4; this run has none).
  ASSERT_EQ(r.agreements.size(), 7u);
  for (size_t i = 3; i < 7; ++i) {
    EXPECT_EQ(r.agreements[i].rows_missing, 360u);
    EXPECT_FALSE(r.agreements[i].within);
  }
  const auto& max = r.agreements[0];
  EXPECT_EQ(max.quantity, "max|x|");
  EXPECT_EQ(max.published.size(), 12u);  // 3 layers x K, V x 2 heads
  EXPECT_EQ(max.rows_missing, 96u - 12);
  EXPECT_LT(max.worst_ratio, 1 + 1e-6);
  EXPECT_GT(max.correlation, 0.999999);
  EXPECT_TRUE(max.within);
  const auto& sse = r.agreements[1];
  EXPECT_EQ(sse.strategy, "strat1");
  EXPECT_EQ(sse.published.size(), 12u);
  EXPECT_LT(sse.worst_ratio, 1 + 1e-3);
  EXPECT_NEAR(sse.median_ratio, 1, 1e-3);
  EXPECT_GT(sse.correlation, 0.99999);
  EXPECT_TRUE(sse.within);
  // strat2 was not measured: every row missing, nothing compared.
  EXPECT_EQ(r.agreements[2].rows_missing, 96u);
  EXPECT_FALSE(r.agreements[2].within);
  // The figure draws the compared quantities.
  const std::string fig = report::ReproductionFigure(r, "synthetic");
  EXPECT_EQ(test::XmlError(fig), "");
  EXPECT_NE(fig.find("K L2 h1: published"), std::string::npos);
}

TEST(Reproduce, SyntheticDumpDeliberatelyOffIsCaughtAtTheRightRow) {
  test::ScratchDir dir;
  // K L1 h0's error x1.6 (squared error x2.56); V L2 h1's max|x| x1.2.
  WriteMatchingDump(dir / "kv.safetensors", 3, {{"K L1 h0", 1.6}}, {{"V L2 h1", 1.2}});
  const auto quant = MeasureStrat1(dir / "kv.safetensors", dir / "quant.csv");
  const auto r = report::CompareWithPublished(Loaded(), "c4", quant, {}, {}, {3, 2, 64});
  const auto& max = r.agreements[0];
  EXPECT_EQ(max.worst_label, "V L2 h1");
  EXPECT_NEAR(max.worst_ratio, 1.2, 1e-5);
  EXPECT_FALSE(max.within);
  const auto& sse = r.agreements[1];
  EXPECT_FALSE(sse.within);
  // V L2 h1's scale grew 1.2x but its e stayed: only K L1 h0 is off in SSE.
  EXPECT_EQ(sse.worst_label, "K L1 h0");
  EXPECT_NEAR(sse.worst_ratio, 1.6 * 1.6, 3e-3);
  // The correlation of log10 values, computed here from the published
  // lines and the planted factors (independent of the measured rows).
  std::vector<double> x, y;
  for (const Line& l : ReadLines("quant_c4_s1.csv")) {
    if (l.layer > 2) continue;
    x.push_back(std::log10(l.sse));
    y.push_back(std::log10(l.sse * (l.k && l.layer == 1 && l.head == 0 ? 1.6 * 1.6 : 1.0)));
  }
  double mx = 0, my = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    mx += x[i] / static_cast<double>(x.size());
    my += y[i] / static_cast<double>(y.size());
  }
  double sxy = 0, sxx = 0, syy = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    sxy += (x[i] - mx) * (y[i] - my);
    sxx += (x[i] - mx) * (x[i] - mx);
    syy += (y[i] - my) * (y[i] - my);
  }
  const double expected = sxy / std::sqrt(sxx * syy);
  EXPECT_NEAR(sse.correlation, expected, 1e-4);
  EXPECT_LT(expected, 0.9999);
  const std::string text = report::VerdictText({r});
  EXPECT_NE(text.find("OUTSIDE"), std::string::npos) << text;
  EXPECT_NE(text.find(report::CorrelationText(sse.correlation)), std::string::npos) << text;
}

// A run's rows made of the published figures themselves (what a perfect
// reproduction would measure), with the truncating strategy at 4x strat1.
struct FakeRun {
  std::vector<report::QuantRow> quant;
  std::vector<report::AttnRow> attn;
  std::vector<report::BytesRow> bytes;
};
FakeRun AsPublished(const std::string& corpus) {
  FakeRun run;
  for (const auto& p : Loaded().quant) {
    if (p.corpus != corpus) continue;
    report::QuantRow r;
    r.strategy = fmt::format("strat{}", p.strategy);
    r.tensor = p.tensor;
    r.layer = p.layer;
    r.head = p.head;
    r.format = p.strategy == 1 ? "int8:tensor" : "int8:token";
    r.head_dim = 64;
    r.max_abs = p.max_abs;
    r.sse = p.sse;
    r.nmse = p.sse / (p.max_abs * p.max_abs * 4096 * 64);
    run.quant.push_back(r);
    if (p.strategy == 1) {
      r.strategy = "k=int8:tensor+trunc,v=int8:tensor+trunc";
      r.format = "int8:tensor+trunc";
      r.sse *= 4;
      run.quant.push_back(r);
    }
  }
  for (const auto& p : Loaded().attn) {
    if (p.corpus != corpus) continue;
    run.attn.push_back({fmt::format("strat{}", p.strategy), p.layer, p.head, p.nmse, p.cos, 0});
  }
  const std::vector<Strategy> s = {Strategy::Parse("strat1"), Strategy::Parse("strat2"),
                                   Strategy::Parse("strat3")};
  test::ScratchDir dir;
  WriteTextFileAtomic(dir / "bytes.csv", report::BytesCsv(s, {24, 2, 64}, 512));
  run.bytes = report::ReadBytesCsv(dir / "bytes.csv");
  return run;
}

const report::Claim& ClaimOf(const report::Reproduction& r, const std::string& id) {
  for (const auto& c : r.claims) {
    if (c.id == id) return c;
  }
  static report::Claim none;
  ADD_FAILURE() << "no claim " << id;
  return none;
}

TEST(Reproduce, ThePublishedFiguresReproduceEveryClaim) {
  const FakeRun run = AsPublished("c4");
  const auto r =
      report::CompareWithPublished(Loaded(), "c4", run.quant, run.attn, run.bytes, {24, 2, 64});
  for (const auto& c : r.claims) {
    EXPECT_EQ(c.verdict, Verdict::kReproduced) << c.id << ": " << c.detail;
  }
  EXPECT_TRUE(r.AllReproduced());
  // The figures against an independent computation from the files.
  double k1 = 0, v1 = 0, k2 = 0, v2 = 0;
  for (const Line& l : ReadLines("quant_c4_s1.csv")) (l.k ? k1 : v1) += l.sse;
  for (const Line& l : ReadLines("quant_c4_s2.csv")) (l.k ? k2 : v2) += l.sse;
  const auto& kv = ClaimOf(r, "kv-ratio");
  ASSERT_EQ(kv.published_values.size(), 2u);
  EXPECT_NEAR(kv.published_values[0], k1 / v1, 1e-9 * k1 / v1);
  EXPECT_NEAR(kv.published_values[1], k2 / v2, 1e-9 * k2 / v2);
  EXPECT_NEAR(k1 / v1, 49.16, 0.01);
  EXPECT_NEAR(k2 / v2, 267.7, 0.1);
  EXPECT_EQ(kv.measured_values, kv.published_values);
  // Ranks of the six by strat1 SSE: 8,0 1,1 0,1 0,0 2,1 2,0 in that order.
  EXPECT_EQ(ClaimOf(r, "outlier-heads").published_values, (std::vector<double>{4, 3, 2, 6, 5, 1}));
  EXPECT_EQ(ClaimOf(r, "strat1-cos").measured_values,
            (std::vector<double>{0.836854, 0.980015, 0.946513}));
  EXPECT_EQ(ClaimOf(r, "strat3-floor").measured_values, (std::vector<double>{0.998201}));
  EXPECT_EQ(ClaimOf(r, "strat3-worst").measured_values,
            (std::vector<double>{2.234958e-03, 0.998201}));
  EXPECT_EQ(ClaimOf(r, "bytes").measured_values, (std::vector<double>{12288, 6144, 6528, 6720}));
  EXPECT_NEAR(ClaimOf(r, "cast-bug").measured_values.at(0), 4, 1e-12);
  // Row by row: identical figures, every quantity within.
  ASSERT_EQ(r.agreements.size(), 7u);
  for (const auto& a : r.agreements) {
    EXPECT_TRUE(a.within) << a.quantity << " " << a.strategy;
    EXPECT_EQ(a.worst_ratio, 1) << a.quantity;
    EXPECT_EQ(a.rows_missing, 0u);
  }
  // 1 - cos of 24 layers + 24 x 14 heads, strat3 layer 0's 0.999973 included.
  EXPECT_EQ(r.agreements[6].published.size() + r.agreements[6].rows_nonpositive, 360u);
}

TEST(Reproduce, WikitextHasNoPublishedAttention) {
  const FakeRun run = AsPublished("wikitext");
  const auto r =
      report::CompareWithPublished(Loaded(), "wikitext", run.quant, {}, run.bytes, {24, 2, 64});
  EXPECT_EQ(ClaimOf(r, "strat1-cos").verdict, Verdict::kNotPublished);
  EXPECT_EQ(ClaimOf(r, "strat3-floor").verdict, Verdict::kNotPublished);
  EXPECT_EQ(ClaimOf(r, "strat3-worst").verdict, Verdict::kNotPublished);
  EXPECT_EQ(ClaimOf(r, "kv-ratio").verdict, Verdict::kReproduced);
  EXPECT_TRUE(r.AllReproduced());
  EXPECT_EQ(r.agreements.size(), 3u);
}

TEST(Reproduce, EachClaimDiffersWhenItsFigureIsOff) {
  FakeRun run = AsPublished("c4");
  for (auto& q : run.quant) {
    if (q.strategy == "strat2" && q.tensor == KvTensor::kV) q.sse /= 2;  // K/V ratio x2
    if (q.strategy == "strat1" && q.tensor == KvTensor::kK && q.layer == 3 && q.head == 1) {
      q.sse = 1e6;  // Now the largest K head: (2,0) drops to rank 7.
    }
    if (q.format == "int8:tensor+trunc") q.sse /= 2;  // Not "about 4x" any more.
  }
  for (auto& a : run.attn) {
    if (a.strategy == "strat1" && a.layer == 8 && a.head == -1) a.cos -= 0.02;
    if (a.strategy == "strat3" && a.layer == 5 && a.head == -1) a.cos = 0.9970;
  }
  run.bytes.erase(run.bytes.begin() + 1);  // No strat2 in bytes.csv.
  const auto r =
      report::CompareWithPublished(Loaded(), "c4", run.quant, run.attn, run.bytes, {24, 2, 64});
  EXPECT_FALSE(r.AllReproduced());
  const auto& kv = ClaimOf(r, "kv-ratio");
  EXPECT_EQ(kv.verdict, Verdict::kDiffers);
  EXPECT_NEAR(kv.measured_values[1] / kv.published_values[1], 2, 1e-9);
  EXPECT_NE(kv.detail.find("strat2: x2"), std::string::npos) << kv.detail;
  const auto& heads = ClaimOf(r, "outlier-heads");
  EXPECT_EQ(heads.verdict, Verdict::kDiffers);
  EXPECT_EQ(heads.measured_values, (std::vector<double>{5, 4, 3, 7, 6, 2}));
  EXPECT_NE(heads.detail.find("(3,1)"), std::string::npos) << heads.detail;
  const auto& spot = ClaimOf(r, "strat1-cos");
  EXPECT_EQ(spot.verdict, Verdict::kDiffers);
  EXPECT_NE(spot.detail.find("layer 8: -0.0200"), std::string::npos) << spot.detail;
  EXPECT_EQ(ClaimOf(r, "strat3-floor").verdict, Verdict::kDiffers);
  EXPECT_EQ(ClaimOf(r, "strat3-floor").measured_values, (std::vector<double>{0.9970}));
  const auto& worst = ClaimOf(r, "strat3-worst");
  EXPECT_EQ(worst.verdict, Verdict::kDiffers);  // Layer 5 is now worse than 11.
  EXPECT_NE(worst.detail.find("layer 5"), std::string::npos) << worst.detail;
  EXPECT_EQ(ClaimOf(r, "bytes").verdict, Verdict::kMissing);
  const auto& cast = ClaimOf(r, "cast-bug");
  EXPECT_EQ(cast.verdict, Verdict::kDiffers);
  double truncated = 0, rounded = 0;
  for (const auto& q : run.quant) {
    if (q.format == "int8:tensor+trunc") truncated += q.sse;
    if (q.strategy == "strat1") rounded += q.sse;
  }
  EXPECT_NEAR(cast.measured_values.at(0), truncated / rounded, 1e-12 * truncated / rounded);
  EXPECT_LT(truncated / rounded, report::kCastRatioLo);
  // Within tolerance is still reproduced: cos off by 0.009, layer-11 NMSE x1.4.
  FakeRun near = AsPublished("c4");
  for (auto& a : near.attn) {
    if (a.strategy == "strat1" && a.layer == 0 && a.head == -1) a.cos += 0.009;
    if (a.strategy == "strat3" && a.layer == 11 && a.head == -1) a.nmse *= 1.4;
  }
  const auto ok =
      report::CompareWithPublished(Loaded(), "c4", near.quant, near.attn, near.bytes, {24, 2, 64});
  EXPECT_TRUE(ok.AllReproduced());
}

// A run folder holding the published figures as kvq's files.
void WriteFakeRunFolder(const fs::path& out, const std::string& model, const FakeRun& run) {
  const std::string folder = "Qwen--Qwen2.5-0.5B";
  fs::create_directories(out / folder / "c4");
  std::string q =
      "strategy,tensor,layer,head,format,tokens,head_dim,max_abs,sse,mse,nmse,"
      "sqnr_db,bytes_per_token\n";
  for (const auto& r : run.quant) {
    q += fmt::format("{},{},{},{},{},4096,64,{},{},{},{},0,{}\n", CsvField(r.strategy),
                     r.tensor == KvTensor::kK ? "k" : "v", r.layer, r.head, r.format,
                     CsvNumber(r.max_abs), CsvNumber(r.sse), CsvNumber(r.sse / 262144),
                     CsvNumber(r.nmse), r.strategy == "strat2" ? 68 : 64);
  }
  WriteTextFileAtomic(out / folder / "c4" / "quant.csv", q);
  std::string a = "strategy,layer,head,nmse,cos,cos_min\n";
  for (const auto& r : run.attn) {
    a += fmt::format("{},{},{},{},{},0\n", r.strategy, r.layer,
                     r.head < 0 ? std::string("all") : std::to_string(r.head), CsvNumber(r.nmse),
                     CsvNumber(r.cos));
  }
  WriteTextFileAtomic(out / folder / "c4" / "attn.csv", a);
  const std::vector<Strategy> s = {Strategy::Parse("strat1"), Strategy::Parse("strat2"),
                                   Strategy::Parse("strat3")};
  WriteTextFileAtomic(out / folder / "bytes.csv", report::BytesCsv(s, {24, 2, 64}, 512));
  nlohmann::ordered_json j = {
      {"schema", "kvq.run.v1"},
      {"settings",
       {{"corpora", {"c4"}},
        {"tokens", 4096},
        {"chunk_len", 512},
        {"strategies", "x"},
        {"floor", 0.99}}},
      {"models",
       {{{"model", model},
         {"dir", "/nowhere"},
         {"folder", folder},
         {"architecture", "Qwen2ForCausalLM"},
         {"geometry",
          {{"num_layers", 24}, {"num_heads", 14}, {"num_kv_heads", 2}, {"head_dim", 64}}},
         {"corpora", {{{"corpus", "c4"}, {"folder", folder + "/c4"}, {"tokens", 4096}}}}}}}};
  WriteTextFileAtomic(out / "run.json", j.dump(1));
}

TEST(ReproduceCli, ExitCodesFollowTheVerdicts) {
  test::ScratchDir dir;
  WriteFakeRunFolder(dir / "good", "Qwen/Qwen2.5-0.5B", AsPublished("c4"));
  const auto good = test::RunKvq("reproduce --run " + (dir / "good").string());
  EXPECT_EQ(good.exit_code, 0) << good.output;
  size_t n = 0;
  for (size_t at = good.output.find("[reproduced]"); at != std::string::npos;
       at = good.output.find("[reproduced]", at + 1)) {
    ++n;
  }
  EXPECT_EQ(n, 7u) << good.output;
  // The report opens with the same verdicts.
  const report::ReportFiles files = report::BuildReport(dir / "good");
  const std::string html = ReadTextFile(files.html);
  const size_t verdicts = html.find("Did kvq reproduce the reference study?");
  ASSERT_NE(verdicts, std::string::npos);
  EXPECT_LT(verdicts, html.find("<h2>Settings</h2>"));
  EXPECT_NE(html.find("7 of 7 claims reproduced"), std::string::npos);
  EXPECT_TRUE(fs::exists(dir / "good" / "Qwen--Qwen2.5-0.5B" / "c4" / "fig_reproduce.svg"));

  FakeRun off = AsPublished("c4");
  for (auto& a : off.attn) {
    if (a.strategy == "strat1" && a.layer == 16 && a.head == -1) a.cos = 0.90;
  }
  WriteFakeRunFolder(dir / "off", "Qwen/Qwen2.5-0.5B", off);
  const auto bad = test::RunKvq("reproduce --run " + (dir / "off").string());
  EXPECT_EQ(bad.exit_code, 1) << bad.output;
  EXPECT_NE(bad.output.find("[differs] strat1"), std::string::npos) << bad.output;
  EXPECT_NE(bad.output.find("1 of 7 claims not reproduced"), std::string::npos) << bad.output;
  EXPECT_NE(bad.output.find((dir / "off").string()), std::string::npos);

  WriteFakeRunFolder(dir / "other", "Qwen/Qwen2.5-1.5B", AsPublished("c4"));
  const auto other = test::RunKvq("reproduce --run " + (dir / "other").string());
  EXPECT_EQ(other.exit_code, 2) << other.output;
  EXPECT_NE(other.output.find("not Qwen2.5-0.5B"), std::string::npos) << other.output;
  // --published: a folder without the tables is named in the error.
  const auto nodata = test::RunKvq("reproduce --run " + (dir / "good").string() + " --published " +
                                   (dir / "off").string());
  EXPECT_EQ(nodata.exit_code, 2) << nodata.output;
  EXPECT_NE(nodata.output.find("quant_c4_s1.csv"), std::string::npos) << nodata.output;
  const auto missing = test::RunKvq("reproduce --run " + (dir / "nothing").string());
  EXPECT_EQ(missing.exit_code, 2) << missing.output;
  EXPECT_NE(missing.output.find("run.json"), std::string::npos) << missing.output;
}

}  // namespace
}  // namespace kvq
