// `kvq run`: one command from model to report. Per model and corpus:
// capture (reused when the same model, tokens and settings were captured
// before), the planner's plan at strat3's budget, then quant, attn and ppl
// of every strategy and the plan; then run.json and report.html.
// docs/report.md describes the folder.
#include <algorithm>
#include <cctype>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <system_error>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "command.h"
#include "hub_options.h"
#include "kvq/capture/capture.h"
#include "kvq/capture/dump.h"
#include "kvq/common/error.h"
#include "kvq/common/io.h"
#include "kvq/common/json.h"
#include "kvq/common/pending_folder.h"
#include "kvq/common/sha256.h"
#include "kvq/common/strings.h"
#include "kvq/generate/generate.h"
#include "kvq/generate/needle.h"
#include "kvq/hub/hub.h"
#include "kvq/metrics/attention_fidelity.h"
#include "kvq/metrics/perplexity.h"
#include "kvq/metrics/tensor_error.h"
#include "kvq/model/config.h"
#include "kvq/model/model.h"
#include "kvq/plan/planner.h"
#include "kvq/quant/strategy.h"
#include "kvq/report/report.h"
#include "kvq/report/results.h"
#include "kvq/tokenizer/corpus.h"
#include "kvq/tokenizer/tokenizer.h"
#include "kvq/version.h"
#include "paths.h"
#include "perplexity_progress.h"
#include "progress.h"

namespace kvq::cli {
namespace {

namespace fs = std::filesystem;
using nlohmann::ordered_json;

// The reference's three strategies and literature formats; a modifier variant
// next to its base (same bytes) so the report can show the modifier's effect;
// the uniform strategies of the frontier (KIVI int2, q4_0, nvfp4); last, the
// reference's cast bug (strat1 truncating, for kvq reproduce).
constexpr const char* kDefaultStrategies =
    "strat1;strat2;strat3;k=int8:channel,v=int8:token;k=int4:g32:token,v=int4:g32:dim;"
    "k=int4:g32:token+had,v=int4:g32:dim;k=int4:g32:token+prerope,v=int4:g32:dim;"
    "k=int4:g32:token+bias,v=int4:g32:dim;k=int2:g32:token,v=int2:g32:dim;fp8e4m3;q8_0;q4_0;"
    "nvfp4;k=int8:tensor+trunc,v=int8:tensor+trunc";

struct Options {
  std::vector<std::string> models = {"Qwen/Qwen2.5-0.5B"};
  bool offline = false;
  std::string corpora = "wikitext,c4";
  int64_t tokens = 4096;
  int64_t chunk_len = 512;
  std::string strategies;
  std::string out = "runs/latest";
  double floor = report::kDefaultFloor;
  std::string ladder;             // --ladder text; empty: kLadderFractions
  std::vector<double> fractions;  // Parsed, ascending.
  bool no_ppl = false;
  bool no_generate = false;
  bool needle = false;
  std::vector<int64_t> needle_lengths;  // Empty: kNeedleLengths up to max_position_embeddings.
  int needle_seeds = 2;
};

// The generated-text comparison and the needle test decode token by token,
// which costs far more than a teacher-forced pass: they run a handful of the
// strategies (the first kDecodeStrategies of the run's, and its plan), a
// 64-token prompt from the corpus and 32 new tokens.
constexpr size_t kDecodeStrategies = 3;
constexpr int64_t kGeneratePromptTokens = 64;
constexpr int64_t kGenerateNewTokens = 32;
constexpr int64_t kNeedleLengths[] = {1024, 2048, 4096};

std::vector<Strategy> DecodeStrategies(const std::vector<Strategy>& strategies) {
  std::vector<Strategy> chosen;
  for (const Strategy& s : strategies) {
    if (chosen.size() < kDecodeStrategies || s.name == "plan") chosen.push_back(s);
  }
  return chosen;
}

std::vector<int64_t> NeedleLengths(const Options& o, const ModelConfig& c) {
  if (!o.needle_lengths.empty()) return o.needle_lengths;
  const int64_t max_length = NeedleMaxLength(c, NeedleOptions{}.answer_tokens);
  std::vector<int64_t> lengths;
  for (int64_t n : kNeedleLengths) {
    if (max_length == 0 || n <= max_length) lengths.push_back(n);
  }
  return lengths;
}

using Clock = std::chrono::steady_clock;
double Since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// A folder name for a model: ORG--NAME for a Hub id, else the folder's name.
std::string ModelFolder(const std::string& arg) {
  const auto id = fs::is_directory(arg) ? std::nullopt : ParseModelId(arg);
  if (id) {
    const size_t slash = id->repo.find('/');
    const std::string name = id->repo.substr(0, slash) + "--" + id->repo.substr(slash + 1);
    return id->revision == "main" ? name : name + "@" + id->revision;
  }
  const fs::path p = fs::path(arg).lexically_normal();
  std::string name = (p.has_filename() ? p.filename() : p.parent_path().filename()).string();
  return name.empty() || name == "." || name == ".." ? std::string("model") : name;
}

std::string CorpusFolder(const std::string& corpus) {
  if (corpus == "wikitext" || corpus == "c4") return corpus;
  std::string stem = fs::path(corpus).filename().string();
  for (char& c : stem) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '.') c = '_';
  }
  return "corpus-" + stem;
}

std::string HexOf(Sha256& sha) { return Sha256::Hex(sha.Finish()); }

std::string FileSha256(const fs::path& path) {
  const MappedFile file = MappedFile::Open(path);
  Sha256 sha;
  sha.Update(file.data(), file.size());
  return HexOf(sha);
}

std::string IdsSha256(const std::vector<int32_t>& ids) {
  Sha256 sha;
  for (int32_t id : ids) {
    const auto u = static_cast<uint32_t>(id);
    const uint8_t le[4] = {static_cast<uint8_t>(u), static_cast<uint8_t>(u >> 8),
                           static_cast<uint8_t>(u >> 16), static_cast<uint8_t>(u >> 24)};
    sha.Update(le, 4);
  }
  return HexOf(sha);
}

// The identity of a model folder without reading its weights: config.json's
// bytes, and the name, size and modification time of every weight and index
// file (a re-downloaded or edited model changes one of them).
std::string ModelIdentity(const fs::path& dir) {
  Sha256 sha;
  sha.Update(ReadTextFile(dir / "config.json"));
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (name.ends_with(".safetensors") || name.ends_with(".safetensors.index.json")) {
      files.push_back(entry.path());
    }
  }
  std::sort(files.begin(), files.end());
  for (const fs::path& f : files) {
    const auto mtime = fs::last_write_time(f).time_since_epoch().count();
    sha.Update(fmt::format("{}\n{}\n{}\n", f.filename().string(), fs::file_size(f), mtime));
  }
  return HexOf(sha);
}

struct ModelPlan {
  std::string arg, folder;
  fs::path dir;
  ModelConfig config;
  KvGeometry geometry;
  std::vector<Strategy> strategies;
  ordered_json skipped = ordered_json::array();
};

void Step(const std::string& where, const std::string& what) {
  std::fprintf(stderr, "%s\n", fmt::format("[{}] {}", where, what).c_str());
}

// Runs capture .. plan for one corpus; returns its run.json entry.
ordered_json RunCorpus(const Options& o, ModelPlan& m, Model& model, const Tokenizer& tokenizer,
                       const std::string& identity, const std::string& corpus,
                       const fs::path& out) {
  const std::string where = m.arg + " / " + corpus;
  const std::string rel = m.folder + "/" + CorpusFolder(corpus);
  const fs::path dir = out / rel;
  fs::create_directories(dir);
  ordered_json entry;
  ordered_json timings;
  entry["corpus"] = corpus;
  entry["folder"] = rel;
  entry["corpus_file_sha256"] = FileSha256(CorpusFile(corpus));

  auto start = Clock::now();
  const std::vector<int32_t> ids = CorpusTokens(tokenizer, corpus, o.tokens);
  entry["tokens"] = ids.size();
  entry["token_ids_sha256"] = IdsSha256(ids);
  timings["tokenize"] = Since(start);

  // Capture, keyed on everything its output depends on.
  Sha256 key_sha;
  key_sha.Update(fmt::format("kvq {}\ncapture f16\nchunk_len {}\nmodel {}\ntokens {}\n", kVersion,
                             o.chunk_len, identity, entry["token_ids_sha256"].get<std::string>()));
  const std::string key = HexOf(key_sha);
  const fs::path dump_path = dir / report::kDumpFile, capture_json = dir / report::kCaptureJson;
  bool cached = false;
  if (fs::exists(dump_path) && fs::exists(capture_json)) {
    try {
      cached = ParseJson(ReadTextFile(capture_json), capture_json.string()).value("key", "") == key;
    } catch (const nlohmann::json::exception&) {
      cached = false;
    }
  }
  start = Clock::now();
  const int layers = m.config.num_layers;
  if (cached) {
    Step(where, "capture: reused " + (rel + "/" + report::kDumpFile) +
                    " (same model, tokens and settings)");
  } else {
    Progress progress("capture", layers, "layers", static_cast<double>(ids.size()) / layers, "tok");
    CaptureOptions options;
    options.chunk_len = o.chunk_len;
    options.dtype = DType::kF16;
    options.model_name = m.arg;
    options.corpus = "corpus:" + corpus;
    options.progress = [&](int done) { progress.Update(done); };
    Capture(model, ids, options, dump_path);
    progress.Finish();
    WriteTextFileAtomic(capture_json, ordered_json{{"key", key},
                                                   {"model", m.arg},
                                                   {"corpus", corpus},
                                                   {"tokens", ids.size()},
                                                   {"chunk_len", o.chunk_len},
                                                   {"dtype", "f16"}}
                                              .dump(1) +
                                          "\n");
    Step(where, fmt::format("capture: {} tokens x {} layers in {:.1f} s", ids.size(), layers,
                            Since(start)));
  }
  entry["dump"] = report::kDumpFile;
  entry["capture_key"] = key;
  entry["capture_cached"] = cached;
  timings["capture"] = Since(start);

  const KvDump dump = KvDump::Open(dump_path);
  // The planner at every budget of the ladder (one measuring pass, one solve
  // per budget): each plan joins the strategies measured below, the one at
  // strat3's fraction of fp16 as "plan", the others as "plan-BYTES", so every
  // table and figure shows them.
  std::vector<Strategy> strategies = m.strategies;
  start = Clock::now();
  {
    const std::vector<FormatSpec> k_formats = DefaultPlanFormats(KvTensor::kK, dump.info());
    const std::vector<FormatSpec> v_formats = DefaultPlanFormats(KvTensor::kV, dump.info());
    Progress progress("plan", layers, "layers");
    const UnitTable table =
        MeasureUnits(dump, k_formats, v_formats,
                     [&](std::string_view, int done, int) { progress.Update(done); });
    progress.Finish();
    std::vector<double> budgets;
    for (const double f : o.fractions)
      budgets.push_back(f * 4.0 * layers * m.geometry.num_kv_heads * m.geometry.head_dim);
    const std::vector<LadderRung> rungs = SolveLadder(table, PlanObjective::kWorstCos, budgets);
    const double fp16 = 4.0 * m.geometry.num_layers * m.geometry.num_kv_heads * m.geometry.head_dim;
    ordered_json plans = ordered_json::array();
    std::string summary;
    for (size_t i = 0; i < rungs.size(); ++i) {
      const LadderRung& rung = rungs[i];
      const bool top = i + 1 == rungs.size();
      const std::string name = top ? std::string("plan") : fmt::format("plan-{:g}", rung.budget);
      ordered_json p = {{"name", name},
                        {"status", rung.status},
                        {"objective", PlanObjectiveName(PlanObjective::kWorstCos)},
                        {"budget_bytes_per_token", rung.budget},
                        {"budget_fraction_of_fp16", rung.budget / fp16}};
      if (rung.feasible) {
        const fs::path plan_path = dir / (name + ".json");
        WriteTextFileAtomic(plan_path, PlanFileJson(table, rung.plan, nullptr));
        Strategy planned = Strategy::Parse("plan:" + plan_path.string());
        planned.name = name;
        strategies.push_back(std::move(planned));
        ordered_json outliers = ordered_json::array();
        for (size_t u : Fp16Units(table, rung.plan)) {
          const UnitMeasure& unit = table.units[u];
          outliers.push_back(fmt::format("{} L{} h{}", unit.tensor == KvTensor::kK ? "K" : "V",
                                         unit.layer, unit.head));
        }
        p["file"] = name + ".json";
        p["bytes_per_token"] = rung.plan.bytes_per_token;
        p["predicted_worst_cos"] = rung.plan.worst_cos;
        p["predicted_worst_layer"] = rung.plan.worst_layer;
        p["predicted_mean_cos"] = rung.plan.mean_cos;
        p["predicted_mean_nmse"] = rung.plan.mean_nmse;
        p["outlier_heads"] = outliers;
        summary +=
            fmt::format("{}{} {:.0f} B/token (pred. worst cos {:.4f})", summary.empty() ? "" : "; ",
                        name, rung.plan.bytes_per_token, rung.plan.worst_cos);
      } else {
        summary += fmt::format("{}{}: {}", summary.empty() ? "" : "; ", name, rung.status);
      }
      if (top) {
        entry["plan"] = p;
        WriteTextFileAtomic(dir / "plan_units.csv",
                            UnitCsv(table, rung.feasible ? &rung.plan : nullptr));
      }
      plans.push_back(std::move(p));
    }
    entry["plans"] = std::move(plans);
    timings["plan"] = Since(start);
    Step(where, fmt::format("plan: {} budgets in {:.1f} s: {} -> {}/plan*.json", rungs.size(),
                            Since(start), summary, rel));
  }
  start = Clock::now();
  {
    Progress progress("quant", static_cast<int64_t>(strategies.size()), "strategies");
    std::vector<ErrorRow> rows;
    for (size_t i = 0; i < strategies.size(); ++i) {
      auto r = MeasureDump(dump, strategies[i]);
      rows.insert(rows.end(), r.begin(), r.end());
      progress.Update(static_cast<int64_t>(i + 1));
    }
    progress.Finish();
    WriteTextFileAtomic(dir / report::kQuantCsv, ErrorCsv(rows));
  }
  timings["quant"] = Since(start);
  Step(where, fmt::format("quant: {} strategies in {:.1f} s -> {}/{}", strategies.size(),
                          Since(start), rel, report::kQuantCsv));

  start = Clock::now();
  {
    const auto n = static_cast<int64_t>(strategies.size());
    Progress progress("attn", layers * n, "layer evals");
    std::vector<std::vector<LayerFidelity>> results(strategies.size());
    LayerReference ref;
    FidelityWorkspace workspace;
    for (int l = 0; l < layers; ++l) {
      ref.Load(dump, l);
      for (size_t s = 0; s < strategies.size(); ++s) {
        results[s].push_back(EvaluateLayer(ref, strategies[s], workspace));
        progress.Update(l * n + static_cast<int64_t>(s) + 1);
      }
    }
    progress.Finish();
    std::vector<FidelityRow> rows;
    std::vector<PositionRow> position_rows;
    for (size_t s = 0; s < strategies.size(); ++s) {
      for (const LayerFidelity& lf : results[s]) {
        for (FidelityRow& r : LayerRows(strategies[s].name, lf)) rows.push_back(std::move(r));
      }
      for (PositionRow& r : PositionRows(strategies[s].name, results[s], dump.info().chunk_len)) {
        position_rows.push_back(std::move(r));
      }
    }
    WriteTextFileAtomic(dir / report::kAttnCsv, FidelityCsv(rows));
    WriteTextFileAtomic(dir / report::kAttnPositionsCsv, PositionCsv(position_rows));
  }
  timings["attn"] = Since(start);
  Step(where, fmt::format("attn: {} layers x {} strategies in {:.1f} s -> {}/{}", layers,
                          strategies.size(), Since(start), rel, report::kAttnCsv));

  if (o.no_ppl) {
    // A reused folder's perplexity rows belong to an earlier run: the
    // report would show them as this run's.
    fs::remove(dir / report::kPplJson);
    fs::remove(dir / report::kPplCsv);
  } else {
    start = Clock::now();
    const int passes = 1 + static_cast<int>(strategies.size());
    const PerplexityReport ppl =
        EvaluatePerplexityWithProgress(model, ids, o.chunk_len, strategies);
    WriteTextFileAtomic(dir / report::kPplJson, PerplexityJson(ppl));
    WriteTextFileAtomic(dir / report::kPplCsv, PerplexityCsv(ppl));
    timings["ppl"] = Since(start);
    Step(where, fmt::format("ppl: {} forward passes in {:.1f} s (baseline ppl {:.3f}) -> {}/{}",
                            passes, Since(start), ppl.baseline.ppl(), rel, report::kPplJson));
  }

  if (o.no_generate) {
    fs::remove(dir / report::kGenerateJson);  // An earlier run's, as for ppl.
  } else {
    start = Clock::now();
    const std::vector<Strategy> chosen = DecodeStrategies(strategies);
    const auto prompt = std::span(ids).first(static_cast<size_t>(
        std::min<int64_t>(kGeneratePromptTokens, static_cast<int64_t>(ids.size()))));
    const GenerateReport generated =
        CompareGeneration(model, prompt, chosen, kGenerateNewTokens, {}, &tokenizer,
                          EosTokenIds(m.dir, m.config.vocab_size));
    WriteTextFileAtomic(dir / report::kGenerateJson, GenerateJson(generated));
    timings["generate"] = Since(start);
    Step(where, fmt::format("generate: {} + {} tokens, fp16 cache and {} strategies in {:.1f} s "
                            "-> {}/{}",
                            prompt.size(), kGenerateNewTokens, chosen.size(), Since(start), rel,
                            report::kGenerateJson));
  }

  entry["timings_s"] = timings;
  return entry;
}

void RunInto(const Options& o, const fs::path& out, Clock::time_point run_start,
             const std::vector<std::string>& corpora, bool default_strategies,
             std::vector<ModelPlan>& plans);

// By value: the ladder's fractions are derived into it.
void Run(Options o) {
  const auto run_start = Clock::now();
  if (o.tokens % o.chunk_len != 0) {
    ThrowInput("--tokens {} is not a multiple of --chunk-len {}", o.tokens, o.chunk_len);
  }
  if (!(o.floor >= -1 && o.floor <= 1))
    ThrowInput("--floor: {} is not a cosine in [-1, 1]", o.floor);
  o.fractions.assign(std::begin(kLadderFractions), std::end(kLadderFractions));
  if (!o.ladder.empty()) {
    o.fractions.clear();
    for (const std::string_view item : SplitFields(o.ladder, ',')) {
      double f = 0;
      const auto [end, ec] = std::from_chars(item.data(), item.data() + item.size(), f);
      if (ec != std::errc() || end != item.data() + item.size() || !(f > 0 && f <= 1)) {
        ThrowInput("--ladder: '{}' is not a fraction of the fp16 cache in (0, 1]", item);
      }
      o.fractions.push_back(f);
    }
    std::sort(o.fractions.begin(), o.fractions.end());
    o.fractions.erase(std::unique(o.fractions.begin(), o.fractions.end()), o.fractions.end());
  }
  const bool default_strategies = o.strategies.empty();
  const std::vector<Strategy> strategies =
      ParseStrategyList(default_strategies ? kDefaultStrategies : o.strategies);
  if (strategies.empty()) ThrowInput("--strategy: no strategy given");
  std::vector<std::string> corpora;  // Empty items ("wikitext,,c4") are skipped.
  for (const std::string_view c : SplitFields(o.corpora, ',')) {
    if (!c.empty()) corpora.emplace_back(c);
  }
  if (corpora.empty()) ThrowInput("--corpus: no corpus given");
  for (const std::string& c : corpora) CorpusFile(c);

  // Resolve every model before any work: a missing model fails in seconds
  // with the Hub's message and nothing written.
  std::vector<ModelPlan> plans;
  std::map<std::string, int> folders;
  for (const std::string& arg : o.models) {
    ModelPlan m;
    m.arg = arg;
    m.dir = ResolveModel(arg, CliHubOptions(o.offline));
    m.config = ModelConfig::Load(m.dir / "config.json");
    m.geometry = {m.config.num_layers, m.config.num_kv_heads, m.config.head_dim};
    if (!fs::exists(m.dir / "tokenizer.json")) {
      ThrowInput("--model {}: {} has no tokenizer.json", arg, m.dir.string());
    }
    m.folder = ModelFolder(arg);
    if (const int n = ++folders[m.folder]; n > 1) m.folder += fmt::format("-{}", n);
    for (const Strategy& s : strategies) {
      try {
        s.Validate(m.geometry);
        m.strategies.push_back(s);
      } catch (const InputError& e) {
        if (!default_strategies) ThrowInput("--model {}: {}", arg, e.what());
        m.skipped.push_back({{"strategy", s.name}, {"reason", e.what()}});
      }
    }
    if (m.strategies.empty()) ThrowInput("--model {}: no strategy applies to it", arg);
    for (int64_t length : o.needle ? NeedleLengths(o, m.config) : std::vector<int64_t>{}) {
      const int64_t max_length = NeedleMaxLength(m.config, NeedleOptions{}.answer_tokens);
      if (max_length > 0 && length > max_length) {
        ThrowInput(
            "--needle-lengths: {} is above {}, the longest prompt whose answer fits --model {}'s "
            "max_position_embeddings ({})",
            length, max_length, arg, m.config.max_position_embeddings);
      }
    }
    plans.push_back(std::move(m));
  }

  const fs::path out = o.out;
  // A folder this run creates is removed again if the run fails, so that a
  // failure leaves no half-made run folder (a reused folder is kept).
  const bool created = !fs::exists(out);
  fs::create_directories(out);
  if (created) RegisterPendingFolder(out);  // removed by a signal too
  try {
    RunInto(o, out, run_start, corpora, default_strategies, plans);
  } catch (...) {
    UnregisterPendingFolder();
    std::error_code ec;
    if (created) fs::remove_all(out, ec);
    throw;
  }
  UnregisterPendingFolder();
}

void RunInto(const Options& o, const fs::path& out, Clock::time_point run_start,
             const std::vector<std::string>& corpora, bool default_strategies,
             std::vector<ModelPlan>& plans) {
  ordered_json run;
  run["schema"] = "kvq.run.v1";
  run["kvq_version"] = kVersion;
  {
    const std::time_t now = std::time(nullptr);
    char text[32];
    std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
    run["created"] = text;
  }
  run["settings"] = {{"corpora", corpora},
                     {"tokens", o.tokens},
                     {"chunk_len", o.chunk_len},
                     {"strategies", default_strategies ? kDefaultStrategies : o.strategies},
                     {"dtype", "f16"},
                     {"floor", o.floor},
                     {"ladder", o.fractions},
                     {"ppl", !o.no_ppl},
                     {"generate", !o.no_generate},
                     {"needle", o.needle}};
  run["models"] = ordered_json::array();
  for (ModelPlan& m : plans) {
    const auto model_start = Clock::now();
    for (const auto& s : m.skipped) {
      Step(m.arg, fmt::format("skipping default strategy {}: {}", s["strategy"].get<std::string>(),
                              s["reason"].get<std::string>()));
    }
    Model model = Model::Load(m.dir);
    model.config().CheckPositions(o.chunk_len, fmt::format("lower --chunk-len {}", o.chunk_len));
    const Tokenizer tokenizer = Tokenizer::Load(m.dir);
    const std::string identity = ModelIdentity(m.dir);
    fs::create_directories(out / m.folder);
    WriteTextFileAtomic(out / m.folder / report::kBytesCsv,
                        report::BytesCsv(m.strategies, m.geometry, o.chunk_len));
    ordered_json entry;
    entry["model"] = m.arg;
    entry["dir"] = m.dir.string();
    entry["folder"] = m.folder;
    entry["architecture"] = m.config.architecture;
    entry["geometry"] = {{"num_layers", m.config.num_layers},
                         {"num_heads", m.config.num_heads},
                         {"num_kv_heads", m.config.num_kv_heads},
                         {"head_dim", m.config.head_dim}};
    entry["identity_sha256"] = identity;
    ordered_json names = ordered_json::array();
    for (const Strategy& s : m.strategies) names.push_back(s.name);
    entry["strategies"] = names;
    entry["skipped_strategies"] = m.skipped;
    entry["corpora"] = ordered_json::array();
    for (const std::string& corpus : corpora) {
      ordered_json c = RunCorpus(o, m, model, tokenizer, identity, corpus, out);
      // The size/quality points of the evaluated strategies.
      const fs::path dir = out / c["folder"].get<std::string>();
      const auto points = report::ParetoPoints(
          report::BytesFromQuant(report::ReadQuantCsv(dir / report::kQuantCsv)),
          report::SummarizeAttention(report::ReadAttnCsv(dir / report::kAttnCsv), o.floor));
      WriteTextFileAtomic(dir / report::kParetoCsv, report::ParetoCsv(points));
      entry["corpora"].push_back(std::move(c));
    }
    const fs::path needle_json = out / m.folder / report::kNeedleJson;
    const fs::path needle_csv = out / m.folder / report::kNeedleCsv;
    if (o.needle) {
      const auto start = Clock::now();
      NeedleOptions options;
      options.lengths = NeedleLengths(o, m.config);
      options.seeds = o.needle_seeds;
      const std::vector<Strategy> chosen = DecodeStrategies(m.strategies);
      const int64_t trials = static_cast<int64_t>(options.lengths.size() * options.depths.size() *
                                                  (1 + chosen.size())) *
                             options.seeds;
      Progress progress("needle", trials, "trials");
      const NeedleReport needle = RunNeedle(model, tokenizer, chosen, options,
                                            [&](int64_t done, int64_t) { progress.Update(done); });
      progress.Finish();
      WriteTextFileAtomic(needle_json, NeedleJson(needle));
      WriteTextFileAtomic(needle_csv, NeedleCsv(needle));
      entry["needle"] = m.folder + "/" + report::kNeedleJson;
      Step(m.arg, fmt::format("needle: {} trials in {:.1f} s -> {}/{}", needle.trials.size(),
                              Since(start), m.folder, report::kNeedleJson));
    } else {
      fs::remove(needle_json);  // An earlier run's, as for ppl.
      fs::remove(needle_csv);
    }
    entry["timings_s"] = {{"total", Since(model_start)}};
    run["models"].push_back(std::move(entry));
  }
  run["timings_s"] = {{"total", Since(run_start)}};
  WriteTextFileAtomic(out / report::kRunJson, run.dump(1) + "\n");
  const auto report_start = Clock::now();
  const report::ReportFiles files = report::BuildReport(out);
  Step("report", fmt::format("{} figures in {:.1f} s", files.figures.size(), Since(report_start)));
  std::fprintf(stderr, "%s\n",
               fmt::format("kvq run: {} model(s) x {} corpora in {:.1f} s; report: {}",
                           plans.size(), corpora.size(), Since(run_start), files.html.string())
                   .c_str());
  std::printf("%s\n", files.html.string().c_str());
}

Runner Setup(CLI::App& app) {
  auto o = std::make_shared<Options>();
  app.add_option("--model", o->models,
                 "Model folders or ORG/NAME[@REVISION] from the Hugging Face Hub; several go side "
                 "by side in one report")
      ->capture_default_str();
  app.add_flag("--offline", o->offline,
               "Never touch the network (also HF_HUB_OFFLINE=1): use the cache or a folder");
  app.add_option("--corpus", o->corpora, "Comma-separated corpora: wikitext, c4 or files")
      ->capture_default_str();
  app.add_option("--tokens", o->tokens, "Tokens per corpus")
      ->check(PositiveInteger())
      ->capture_default_str();
  app.add_option("--chunk-len", o->chunk_len, "Independent prompts of this many tokens")
      ->check(PositiveInteger())
      ->capture_default_str();
  app.add_option("--strategy", o->strategies,
                 "Strategies (',' or ';' separated; default: strat1-3 and literature formats)");
  app.add_option("--out", o->out, "Run folder")->capture_default_str();
  app.add_option("--floor", o->floor, "Quality floor on a layer's attention cosine")
      ->capture_default_str();
  app.add_flag("--no-ppl", o->no_ppl, "Skip the perplexity/KL step");
  app.add_flag("--no-generate", o->no_generate,
               "Skip the generated-text comparison (64-token prompt, 32 new tokens, a handful of "
               "strategies against the fp16 cache)");
  app.add_flag("--needle", o->needle,
               "Run the passkey retrieval test (kvq needle) on a handful of strategies: "
               "expensive, off by default");
  app.add_option("--needle-lengths", o->needle_lengths,
                 "Prompt lengths for --needle (default: 1024,2048,4096 up to the model's "
                 "max_position_embeddings)")
      ->delimiter(',')
      ->check(PositiveInteger());
  app.add_option("--needle-seeds", o->needle_seeds, "Trials per --needle cell")
      ->check(PositiveInteger())
      ->capture_default_str();
  app.add_option("--ladder", o->ladder,
                 "The planner's budgets as comma-separated fractions of the fp16 cache; the "
                 "largest is the plan named 'plan' (default: 0.125,0.1875,0.28125,0.375,0.546875)");
  return [o] { Run(*o); };
}

KVQ_COMMAND("run", "One command from model to report: capture, quant, attn, ppl, figures, HTML",
            Setup);

}  // namespace
}  // namespace kvq::cli
