// `kvq run` end to end on a random-weight tiny model with the shipped
// corpora, `kvq report` and `kvq plot` on its folder, and the refusal without
// a model.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <map>
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "kvq/common/csv.h"
#include "kvq/common/io.h"
#include "kvq/generate/generate.h"
#include "kvq/report/svg.h"
#include "kvq/tokenizer/corpus.h"
#include "kvq/tokenizer/tokenizer.h"
#include "svg_check.h"
#include "test_util.h"

namespace kvq {
namespace {

namespace fs = std::filesystem;
using test::RunKvq;

// Valid for the tiny model's head_dim 16; the +had variant pairs with its base.
constexpr const char* kStrategies =
    "strat1;strat2;k=int4:g16:token,v=int4:g16:dim;k=int4:g16:token+had,v=int4:g16:dim";

std::vector<fs::path> FilesWithExtension(const fs::path& dir, const std::string& ext) {
  std::vector<fs::path> out;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (e.is_regular_file() && e.path().extension() == ext) out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

size_t PngColours(const fs::path& png) {
  int w = 0, h = 0;
  std::vector<uint32_t> pixels;
  if (!test::DecodePng(ReadTextFile(png), w, h, pixels)) return 0;
  return std::set<uint32_t>(pixels.begin(), pixels.end()).size();
}

class RunCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new test::ScratchDir();
    const auto made = RunKvq(fmt::format("make-model --preset tiny --out {}", model().string()));
    ASSERT_EQ(made.exit_code, 0) << made.output;
    const auto start = std::chrono::steady_clock::now();
    run_ = new test::CommandResult(
        RunKvq(fmt::format("run --model {} --corpus wikitext,c4 --tokens 256 --chunk-len 128 "
                           "--no-generate "
                           "--strategy '{}' --ladder 0.546875,0.125 --out {}",
                           model().string(), kStrategies, out().string())));
    run_seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }
  static void TearDownTestSuite() {
    delete run_;
    delete dir_;
  }
  static fs::path model() { return *dir_ / "tiny"; }
  static fs::path out() { return *dir_ / "run"; }
  static fs::path corpus_dir(const std::string& corpus) { return out() / "tiny" / corpus; }

  static test::ScratchDir* dir_;
  static test::CommandResult* run_;
  static double run_seconds_;
};
test::ScratchDir* RunCli::dir_ = nullptr;
test::CommandResult* RunCli::run_ = nullptr;
double RunCli::run_seconds_ = 0;

TEST_F(RunCli, WritesEveryStepAndSummary) {
  ASSERT_EQ(run_->exit_code, 0) << run_->output;
  EXPECT_NE(run_->output.find("report: " + (out() / "report.html").string()), std::string::npos)
      << run_->output;
  for (const char* step : {"] capture:", "] quant:", "] attn:", "] ppl:", "] plan:"}) {
    EXPECT_NE(run_->output.find(step), std::string::npos) << step << "\n" << run_->output;
  }
  const auto run = nlohmann::json::parse(ReadTextFile(out() / "run.json"));
  EXPECT_EQ(run["schema"], "kvq.run.v1");
  ASSERT_EQ(run["models"].size(), 1u);
  const auto& m = run["models"][0];
  EXPECT_EQ(m["geometry"]["num_layers"], 2);
  EXPECT_EQ(m["geometry"]["head_dim"], 16);
  ASSERT_EQ(m["corpora"].size(), 2u);
  for (const auto& c : m["corpora"]) {
    EXPECT_EQ(c["tokens"], 256);
    EXPECT_EQ(c["token_ids_sha256"].get<std::string>().size(), 64u);
    EXPECT_FALSE(c["capture_cached"].get<bool>());
    EXPECT_EQ(c["plan"]["status"], "ok");
    EXPECT_LE(c["plan"]["bytes_per_token"].get<double>(),
              c["plan"]["budget_bytes_per_token"].get<double>());
    // The ladder (two rungs here to keep the suite fast; the default's five
    // are in the test below): 1/8 and 35/64 of fp16 (256 bytes/token), both
    // feasible with the 2-bit candidates, each its own plan file.
    ASSERT_EQ(c["plans"].size(), 2u);
    const std::vector<std::string> names = {"plan-32", "plan"};
    const std::vector<double> budgets = {32, 140};
    double last = -1;
    for (size_t i = 0; i < 2; ++i) {
      const auto& p = c["plans"][i];
      EXPECT_EQ(p["name"], names[i]);
      EXPECT_EQ(p["status"], "ok") << p.dump();
      EXPECT_EQ(p["budget_bytes_per_token"].get<double>(), budgets[i]);
      EXPECT_LE(p["bytes_per_token"].get<double>(), budgets[i]);
      EXPECT_TRUE(fs::exists(out() / c["folder"].get<std::string>() / (names[i] + ".json")));
      EXPECT_GE(p["predicted_worst_cos"].get<double>(), last);  // Monotone in the budget.
      last = p["predicted_worst_cos"].get<double>();
    }
    EXPECT_EQ(c["plans"][1], c["plan"]);
    for (const char* step : {"capture", "plan", "quant", "attn", "ppl"}) {
      EXPECT_TRUE(c["timings_s"].contains(step)) << step;
    }
  }
  std::printf("kvq run (tiny, 2 corpora x 256 tokens, 4 strategies): %.1f s\n", run_seconds_);
}

TEST_F(RunCli, CsvsParseAndMatchTheStandaloneCommands) {
  ASSERT_EQ(run_->exit_code, 0) << run_->output;
  for (const fs::path& csv : FilesWithExtension(out(), ".csv")) {
    const CsvTable t = ReadCsv(csv);
    EXPECT_GT(t.rows.size(), 0u) << csv;
  }
  for (const std::string corpus : {"wikitext", "c4"}) {
    const fs::path dir = corpus_dir(corpus);
    const fs::path dump = dir / "kv.safetensors";
    ASSERT_TRUE(fs::exists(dump)) << dump;
    test::ScratchDir scratch;
    // The run adds the planner's plans as strategies "plan-32" .. "plan";
    // the standalone commands name them by their files.
    std::string strategies = kStrategies;
    std::vector<std::pair<std::string, std::string>> plans;
    for (const char* name : {"plan-32", "plan"}) {
      plans.push_back({"plan:" + (dir / (std::string(name) + ".json")).string(), name});
      strategies += ";" + plans.back().first;
    }
    auto renamed = [&](std::string text) {
      for (const auto& [plan, name] : plans) {
        for (size_t at = text.find(plan); at != std::string::npos; at = text.find(plan, at)) {
          text.replace(at, plan.size(), name);
        }
      }
      return text;
    };
    const auto q = RunKvq(fmt::format("quant --kv {} --strategy '{}' --no-table --csv {}",
                                      dump.string(), strategies, (scratch / "q.csv").string()));
    ASSERT_EQ(q.exit_code, 0) << q.output;
    EXPECT_EQ(renamed(ReadTextFile(scratch / "q.csv")), ReadTextFile(dir / "quant.csv")) << corpus;
    const auto a = RunKvq(fmt::format("attn --kv {} --strategy '{}' --csv {} --positions-csv {}",
                                      dump.string(), strategies, (scratch / "a.csv").string(),
                                      (scratch / "p.csv").string()));
    ASSERT_EQ(a.exit_code, 0) << a.output;
    EXPECT_EQ(renamed(ReadTextFile(scratch / "a.csv")), ReadTextFile(dir / "attn.csv")) << corpus;
    EXPECT_EQ(renamed(ReadTextFile(scratch / "p.csv")), ReadTextFile(dir / "attn_positions.csv"))
        << corpus;
    // 4 strategies + 2 plans: x 2 tensors x 2 layers x 2 kv heads; x 2 layers x (1 + 4 heads).
    EXPECT_EQ(ReadCsv(dir / "quant.csv").rows.size(), 48u);
    EXPECT_EQ(ReadCsv(dir / "attn.csv").rows.size(), 60u);
  }
  // kvq ppl with one of the strategies gives the same baseline and strategy
  // rows (every strategy is evaluated independently of the others).
  test::ScratchDir scratch;
  const auto p = RunKvq(fmt::format(
      "ppl --model {} --corpus c4 --tokens 256 --chunk-len 128 --strategy strat2 --csv {}",
      model().string(), (scratch / "p.csv").string()));
  ASSERT_EQ(p.exit_code, 0) << p.output;
  const CsvTable alone = ReadCsv(scratch / "p.csv");
  const CsvTable in_run = ReadCsv(corpus_dir("c4") / "ppl.csv");
  std::vector<std::vector<std::string>> wanted;
  for (const auto& row : in_run.rows) {
    if (row[0] == "baseline" || row[0] == "strat2") wanted.push_back(row);
  }
  EXPECT_EQ(alone.header, in_run.header);
  EXPECT_EQ(alone.rows, wanted);
  EXPECT_EQ(wanted.size(), 2u * 3);  // (all + 2 prompts) for baseline and strat2.
}

// The frontier table of the report: per plan, the worst-layer cosine
// measured (attn.csv) beside the planner's prediction (run.json), and the
// smallest cache keeping every layer >= 0.99, from the files.
// (Part of a test that reads the same run: each RunCli test is its own
// process under ctest, and each runs kvq run once.)
void ExpectFrontierShowsEachPlanMeasuredBesidePredicted(const fs::path& out) {
  const std::string html = ReadTextFile(out / "report.html");
  const auto run = nlohmann::json::parse(ReadTextFile(out / "run.json"));
  for (const auto& c : run["models"][0]["corpora"]) {
    const CsvTable attn = ReadCsv(out / c["folder"].get<std::string>() / "attn.csv");
    std::map<std::string, std::pair<double, int>> worst;  // strategy -> (cos, layer)
    for (size_t i = 0; i < attn.rows.size(); ++i) {
      if (attn.Text(i, "head") != "all") continue;
      const double cos = attn.Number(i, "cos");
      auto [it, fresh] = worst.try_emplace(attn.Text(i, "strategy"), cos, attn.Int(i, "layer"));
      if (!fresh && cos < it->second.first) it->second = {cos, attn.Int(i, "layer")};
    }
    for (const auto& p : c["plans"]) {
      const auto& [cos, layer] = worst.at(p["name"].get<std::string>());
      const std::string row = fmt::format("<td>{:.6f}</td><td>{}</td><td>{:.6f}</td>", cos, layer,
                                          p["predicted_worst_cos"].get<double>());
      EXPECT_NE(html.find(row), std::string::npos) << p["name"] << " " << row;
    }
    EXPECT_TRUE(fs::exists(out / c["folder"].get<std::string>() / "fig_frontier.svg"));
  }
  EXPECT_NE(html.find("(a) every layer's attention cosine &ge; 0.998"), std::string::npos);
  // A tiny random model is not the reference model: no moonshot verdict.
  EXPECT_EQ(html.find("Moonshot"), std::string::npos);
}

TEST_F(RunCli, FiguresAreWellFormedRenderAndAreInTheReport) {
  ASSERT_EQ(run_->exit_code, 0) << run_->output;
  ExpectFrontierShowsEachPlanMeasuredBesidePredicted(out());
  const std::string html = ReadTextFile(out() / "report.html");
  EXPECT_EQ(html.find("<script"), std::string::npos);
  // Nothing is fetched: no external source, link or stylesheet (the SVG
  // namespace URI is a name, not a request).
  for (const char* fetch : {"src=\"http", "href=\"http", "url(http", "@import"}) {
    EXPECT_EQ(html.find(fetch), std::string::npos) << fetch;
  }
  for (const char* text :
       {"K vs V:", "Outlier heads:", "Best at &le;", "+had</b>", "cos L0", "bytes/token",
        "Compression frontier", "Did kvq reproduce the reference study?",
        "Not applicable to this run", "not Qwen2.5-0.5B"}) {
    EXPECT_NE(html.find(text), std::string::npos) << text;
  }
  const auto figures = FilesWithExtension(out(), ".svg");
  // bytes, then per corpus: nmse, 6 heatmaps (4 + 2 plans), cos, error by position, pareto,
  // ppl, kl, frontier.
  EXPECT_EQ(figures.size(), 1u + 2 * 13);
  test::ScratchDir scratch;
  int index = 0;
  for (const fs::path& f : figures) {
    const std::string text = ReadTextFile(f);
    EXPECT_EQ(test::XmlError(text), "") << f;
    const std::string relative = fs::relative(f, out()).string();
    EXPECT_NE(html.find("href=\"" + relative + "\""), std::string::npos) << relative;
    const fs::path png = scratch / fmt::format("{}.png", index++);
    const std::string command =
        fmt::format("rsvg-convert -o '{}' '{}' 2>&1", png.string(), f.string());
    ASSERT_EQ(std::system(command.c_str()), 0) << f;
    EXPECT_GT(PngColours(png), 4u) << f;
  }
}

TEST_F(RunCli, ReportRebuildsFromTheFilesAndPlotDrawsOneFigure) {
  ASSERT_EQ(run_->exit_code, 0) << run_->output;
  const std::string before = ReadTextFile(out() / "report.html");
  const fs::path heat = corpus_dir("c4") / "fig_heatmap_02_strat2.svg";
  const std::string heat_before = ReadTextFile(heat);
  fs::remove(out() / "report.html");
  fs::remove(heat);
  const auto r = RunKvq("report --run " + out().string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(ReadTextFile(out() / "report.html"), before);
  EXPECT_EQ(ReadTextFile(heat), heat_before);

  test::ScratchDir scratch;
  const auto p =
      RunKvq(fmt::format("plot --kind heatmap --strategy strat2 --in {} --out {}",
                         (corpus_dir("c4") / "quant.csv").string(), (scratch / "h.svg").string()));
  ASSERT_EQ(p.exit_code, 0) << p.output;
  EXPECT_EQ(test::XmlError(ReadTextFile(scratch / "h.svg")), "");
  for (const auto& [kind, file] : {std::pair{"nmse", "quant.csv"},
                                   {"cos", "attn.csv"},
                                   {"pareto", "pareto.csv"},
                                   {"ppl", "ppl.json"}}) {
    const auto k =
        RunKvq(fmt::format("plot --kind {} --in {} --out {}", kind,
                           (corpus_dir("c4") / file).string(), (scratch / "k.svg").string()));
    ASSERT_EQ(k.exit_code, 0) << kind << k.output;
    EXPECT_EQ(test::XmlError(ReadTextFile(scratch / "k.svg")), "") << kind;
  }
  const auto bad =
      RunKvq(fmt::format("plot --kind heatmap --strategy nope --in {} --out {}",
                         (corpus_dir("c4") / "quant.csv").string(), (scratch / "x.svg").string()));
  EXPECT_EQ(bad.exit_code, 2) << bad.output;
  EXPECT_NE(bad.output.find("'nope'"), std::string::npos) << bad.output;
  EXPECT_FALSE(fs::exists(scratch / "x.svg"));
  const auto missing = RunKvq("report --run " + (scratch / "none").string());
  EXPECT_EQ(missing.exit_code, 2) << missing.output;
}

TEST_F(RunCli, SecondRunReusesTheCapture) {
  ASSERT_EQ(run_->exit_code, 0) << run_->output;
  const auto r = RunKvq(fmt::format(
      "run --model {} --corpus c4 --tokens 256 --chunk-len 128 --strategy strat1 --no-ppl "
      "--no-generate "
      "--out {}",
      model().string(), out().string()));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("capture: reused"), std::string::npos) << r.output;
  const auto run = nlohmann::json::parse(ReadTextFile(out() / "run.json"));
  EXPECT_TRUE(run["models"][0]["corpora"][0]["capture_cached"].get<bool>());
}

TEST(RunCliOffline, MissingHubModelFailsFastWithAHintAndWritesNothing) {
  test::ScratchDir dir;
  fs::create_directories(dir / "hub");
  const char* saved_cache = std::getenv("HF_HUB_CACHE");
  const char* saved_endpoint = std::getenv("HF_ENDPOINT");
  const std::string cache = saved_cache ? saved_cache : "";
  const std::string endpoint = saved_endpoint ? saved_endpoint : "";
  ::setenv("HF_HUB_CACHE", (dir / "hub").c_str(), 1);
  ::setenv("HF_ENDPOINT", "http://127.0.0.1:9", 1);
  const auto start = std::chrono::steady_clock::now();
  const auto r = RunKvq("run --out " + (dir / "out").string());
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  saved_cache ? ::setenv("HF_HUB_CACHE", cache.c_str(), 1) : ::unsetenv("HF_HUB_CACHE");
  saved_endpoint ? ::setenv("HF_ENDPOINT", endpoint.c_str(), 1) : ::unsetenv("HF_ENDPOINT");
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_LT(seconds, 15) << r.output;
  EXPECT_NE(r.output.find("Qwen/Qwen2.5-0.5B"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("--model DIR"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(dir / "out"));
}

}  // namespace
}  // namespace kvq

namespace kvq {
namespace {

TEST(RunCliModels, SeveralModelsGoSideBySide) {
  test::ScratchDir dir;
  for (const char* preset : {"tiny", "tiny-qwen3"}) {
    const auto made =
        RunKvq(fmt::format("make-model --preset {} --out {}", preset, (dir / preset).string()));
    ASSERT_EQ(made.exit_code, 0) << made.output;
  }
  const auto r = RunKvq(fmt::format(
      "run --model {} --model {} --corpus wikitext --tokens 128 --chunk-len 128 --no-ppl "
      "--no-generate "
      "--strategy 'strat1;k=int4:g16:token,v=int4:g16:dim;k=int4:g16:token+had,v=int4:g16:dim' "
      "--out {}",
      (dir / "tiny").string(), (dir / "tiny-qwen3").string(), (dir / "run").string()));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string html = ReadTextFile(dir / "run" / "report.html");
  EXPECT_NE(html.find("Models side by side"), std::string::npos);
  EXPECT_NE(html.find("+had &times;"), std::string::npos);
  for (const char* model : {"tiny", "tiny-qwen3"}) {
    EXPECT_TRUE(std::filesystem::exists(dir / "run" / model / "wikitext" / "quant.csv")) << model;
    EXPECT_NE(html.find("href=\"" + std::string(model) + "/wikitext/fig_cos.svg\""),
              std::string::npos)
        << model;
  }
  const auto run = nlohmann::json::parse(ReadTextFile(dir / "run" / "run.json"));
  ASSERT_EQ(run["models"].size(), 2u);
  EXPECT_EQ(run["models"][1]["geometry"]["head_dim"], 32);
  // The default ladder: 1/8, 3/16, 9/32, 3/8 and 35/64 of fp16, a plan each.
  for (const auto& m : run["models"]) {
    const double fp16 = 4.0 * m["geometry"]["num_layers"].get<int>() *
                        m["geometry"]["num_kv_heads"].get<int>() *
                        m["geometry"]["head_dim"].get<int>();
    const auto& plans = m["corpora"][0]["plans"];
    ASSERT_EQ(plans.size(), 5u);
    const double fractions[] = {0.125, 0.1875, 0.28125, 0.375, 0.546875};
    for (size_t i = 0; i < 5; ++i) {
      EXPECT_EQ(plans[i]["budget_bytes_per_token"].get<double>(), fractions[i] * fp16);
      EXPECT_EQ(plans[i]["name"],
                i == 4 ? std::string("plan") : fmt::format("plan-{:g}", fractions[i] * fp16));
      EXPECT_EQ(plans[i]["status"], "ok") << plans[i].dump();
    }
  }
  const auto bad = RunKvq(fmt::format("run --model {} --ladder 0.5,2 --out {}",
                                      (dir / "tiny").string(), (dir / "bad").string()));
  EXPECT_EQ(bad.exit_code, 2) << bad.output;
  EXPECT_NE(bad.output.find("--ladder: '2'"), std::string::npos) << bad.output;
}

// The decoding steps of kvq run: the generated-text comparison (on by
// default) and the needle heatmap (--needle), each in the report.
TEST(RunCliDecode, GeneratedTextAndNeedleHeatmapInTheReport) {
  test::ScratchDir dir;
  const auto made = RunKvq("make-model --preset tiny --out " + (dir / "tiny").string());
  ASSERT_EQ(made.exit_code, 0) << made.output;
  const auto r = RunKvq(fmt::format(
      "run --model {} --corpus wikitext --tokens 128 --chunk-len 128 --no-ppl --ladder 0.5 "
      "--strategy 'int8:token;int2:token;int4:token;int3:token' --needle --needle-lengths 96 "
      "--needle-seeds 1 --out {}",
      (dir / "tiny").string(), (dir / "run").string()));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const char* step : {"] generate: 64 + 32 tokens", "] needle: 20 trials"}) {
    EXPECT_NE(r.output.find(step), std::string::npos) << step << "\n" << r.output;
  }
  const auto run = nlohmann::json::parse(ReadTextFile(dir / "run/run.json"));
  EXPECT_EQ(run["settings"]["generate"], true);
  EXPECT_EQ(run["settings"]["needle"], true);
  EXPECT_EQ(run["models"][0]["needle"], "tiny/needle.json");

  // Generated text: the first three strategies and the plan against the fp16
  // cache, from the corpus's first 64 tokens.
  const auto g = nlohmann::json::parse(ReadTextFile(dir / "run/tiny/wikitext/generate.json"));
  EXPECT_EQ(g["prompt_tokens"], 64);
  std::vector<std::string> names;
  for (const auto& s : g["strategies"]) names.push_back(s["strategy"]);
  EXPECT_EQ(names, std::vector<std::string>({"int8:token", "int2:token", "int4:token", "plan"}));
  Model model = Model::Load(dir / "tiny");
  const Tokenizer tokenizer = Tokenizer::Load(dir / "tiny");
  std::vector<int32_t> prompt = CorpusTokens(tokenizer, "wikitext", 128);
  prompt.resize(64);
  const Strategy fp16 = Strategy::Parse("fp16");
  const DecodeRun base = Generate(model, prompt, &fp16, 32, {}, false);
  EXPECT_EQ(g["baseline"]["tokens"].get<std::vector<int32_t>>(), base.tokens);
  const std::string html = ReadTextFile(dir / "run/report.html");
  EXPECT_NE(html.find("<h4>Generated text</h4>"), std::string::npos);
  const std::string base_text = g["baseline"]["text"];
  EXPECT_NE(html.find("<td class=\"text\">" + svg::Escape(base_text) + "</td>"), std::string::npos);
  int marked = 0;
  for (const auto& s : g["strategies"]) {
    const std::string text = s["text"];
    // The shared characters plain, the rest marked.
    size_t common = 0;
    while (common < text.size() && common < base_text.size() && text[common] == base_text[common]) {
      ++common;
    }
    while (common > 0 && common < text.size() &&
           (static_cast<unsigned char>(text[common]) & 0xC0) == 0x80) {
      --common;
    }
    std::string shown = svg::Escape(text.substr(0, common));
    if (common < text.size()) {
      shown += "<mark>" + svg::Escape(text.substr(common)) + "</mark>";
      ++marked;
    }
    EXPECT_NE(html.find("<td class=\"text\">" + shown + "</td>"), std::string::npos)
        << s["strategy"];
  }
  EXPECT_GT(marked, 0);  // int2 on a random model diverges.

  // Needle: 5 depths x 1 seed x (fp16 + the first 3 strategies; plans are per corpus), its heatmap
  // in the report.
  const auto n = nlohmann::json::parse(ReadTextFile(dir / "run/tiny/needle.json"));
  EXPECT_EQ(n["trials"].size(), 20u);
  EXPECT_TRUE(std::filesystem::exists(dir / "run/tiny/needle.csv"));
  const std::string svg = ReadTextFile(dir / "run/tiny/fig_needle.svg");
  EXPECT_EQ(test::XmlError(svg), "");
  EXPECT_NE(html.find("href=\"tiny/fig_needle.svg\""), std::string::npos);
  EXPECT_NE(html.find("<h3>Passkey retrieval</h3>"), std::string::npos);
  const auto png = dir / "needle.png";
  ASSERT_EQ(std::system(fmt::format("rsvg-convert -o '{}' '{}' 2>&1", png.string(),
                                    (dir / "run/tiny/fig_needle.svg").string())
                            .c_str()),
            0);
  EXPECT_GT(PngColours(png), 2u);

  // A needle length beyond the model's context is refused before any work.
  const auto bad = RunKvq(fmt::format("run --model {} --needle --needle-lengths 40000 --out {}",
                                      (dir / "tiny").string(), (dir / "bad").string()));
  EXPECT_EQ(bad.exit_code, 2) << bad.output;
  EXPECT_NE(bad.output.find("--needle-lengths: 40000 is above"), std::string::npos) << bad.output;
  EXPECT_FALSE(std::filesystem::exists(dir / "bad"));
}

}  // namespace
}  // namespace kvq
