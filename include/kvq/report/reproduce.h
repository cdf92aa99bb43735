#pragma once
// Did kvq reproduce the reference study? A run's result files (quant.csv,
// attn.csv, bytes.csv of a Qwen2.5-0.5B run on the reference protocol)
// compared with the study's published tables, shipped in
// data/reference/kvmix (public repository jnros/kvmix; README there).
//
// Two levels:
// - claims: each published headline with its published figure, this run's
//   figure and a verdict against a stated tolerance;
// - agreements: row by row against the published per-(layer, K/V, kv head)
//   and per-(layer, query head) tables, per quantity the correlation and the
//   worst ratio (kvq's value against the published one).
// Everything is a function of the files alone: the report and
// `kvq reproduce` call the same code. docs/study.md explains the
// tolerances.
#include <filesystem>
#include <string>
#include <vector>

#include "kvq/quant/strategy.h"
#include "kvq/report/results.h"

namespace kvq::report {

// The published tables, as read from the shipped files.
struct PublishedQuantRow {
  std::string corpus;  // "c4" or "wikitext"
  int strategy = 1;    // 1 or 2
  KvTensor tensor = KvTensor::kK;
  int layer = 0, head = 0;  // kv head
  double max_abs = 0, sse = 0;
};
struct PublishedAttnRow {
  std::string corpus;        // "c4"
  int strategy = 1;          // 1 or 3
  int layer = 0, head = -1;  // query head; -1: the layer ("all")
  double nmse = 0, cos = 1;
};
struct PublishedResults {
  std::vector<PublishedQuantRow> quant;
  std::vector<PublishedAttnRow> attn;
};

// DataDir() / "reference/kvmix".
std::filesystem::path PublishedDataDir();
// Reads quant_{c4,wikitext}_s{1,2}.csv and attn_c4_s{1,3}.csv from `dir`.
// Throws InputError naming the file and row.
PublishedResults LoadPublished(const std::filesystem::path& dir);

// The reference study's model and protocol.
inline constexpr int kReferenceLayers = 24, kReferenceHeads = 14, kReferenceKvHeads = 2,
                     kReferenceHeadDim = 64;
inline constexpr int64_t kReferenceTokens = 4096, kReferenceChunkLen = 512;
// Qwen2.5-0.5B by name: the last component of the Hub id or folder (without
// "@revision") is "Qwen2.5-0.5B" (any case), or the folder lies in the
// Hugging Face cache entry models--Qwen--Qwen2.5-0.5B.
bool IsReferenceModelName(const std::string& model, const std::string& dir);

// Tolerances (docs/study.md says why): the original ran the model in fp16 on
// a GPU, kvq in float32 on the CPU, so figures agree closely, not exactly.
inline constexpr double kCosTolerance = 0.01;        // |kvq - published| per spot layer
inline constexpr double kFloorTolerance = 5e-4;      // strat3's every-layer cos >= 0.998
inline constexpr double kRatioTolerance = 1.25;      // K/V ratios: within x/÷ 1.25
inline constexpr double kWorstNmseTolerance = 1.5;   // strat3 layer 11 NMSE: within x/÷ 1.5
inline constexpr double kWorstLayerCosSlack = 2e-4;  // layer 11 within this of the worst
inline constexpr double kCastRatioLo = 3, kCastRatioHi = 5;  // "about 4x"
inline constexpr double kMinCorrelation = 0.99;              // of log10 values, per quantity

enum class Verdict {
  kReproduced,    // within the stated tolerance
  kDiffers,       // outside it (the detail says by how much)
  kMissing,       // the run lacks what the claim needs (a strategy, a file)
  kNotPublished,  // no published figure for this corpus (attention: C4 only)
};
const char* VerdictName(Verdict verdict);  // "reproduced", "differs", "missing", "not published"

struct Claim {
  std::string id;         // "kv-ratio", "outlier-heads", "strat1-cos", "strat3-floor",
                          // "strat3-worst", "bytes", "cast-bug"
  std::string claim;      // What the study says.
  std::string published;  // Its figure, as text.
  std::string measured;   // This run's figure.
  std::string tolerance;  // The tolerance applied.
  Verdict verdict = Verdict::kMissing;
  std::string detail;  // By how much it differs, or what is missing.
  // The figures the verdict was computed from (published, measured), in the
  // order of the text (tests compare them with their own computation).
  std::vector<double> published_values, measured_values;
};

// One quantity compared row by row.
struct Agreement {
  std::string quantity;  // "max|x|", "SSE", "attention NMSE", "1 - attention cos"
  std::string strategy;  // "strat1", "strat2", "strat3" (max|x|: "strat1")
  std::string published_file;
  std::vector<std::string> labels;          // "K L0 h1", "L3 all", "L3 q5"
  std::vector<double> published, measured;  // Joined rows, both > 0 where log is used.
  size_t rows_missing = 0;                  // Published rows the run lacks.
  size_t rows_nonpositive = 0;              // Rows left out: a value <= 0 (no log).
  double correlation = 0;                   // Pearson of log10(published), log10(measured).
  double worst_ratio = 0;                   // max over rows of max(m / p, p / m).
  std::string worst_label;
  double median_ratio = 0;  // median of m / p
  double tolerance = 0;     // expected worst ratio
  bool within = false;      // correlation >= kMinCorrelation and worst <= tolerance
};

struct Reproduction {
  std::string model, corpus, folder;  // folder: the corpus folder in the run
  std::vector<Claim> claims;
  std::vector<Agreement> agreements;
  // Every claim reproduced or not published for this corpus.
  bool AllReproduced() const;
};

// The comparison of one corpus's results (quant.csv, attn.csv rows and the
// model's bytes.csv rows, geometry) with the published tables of `corpus`.
Reproduction CompareWithPublished(const PublishedResults& published, const std::string& corpus,
                                  const std::vector<QuantRow>& quant,
                                  const std::vector<AttnRow>& attn,
                                  const std::vector<BytesRow>& bytes, const KvGeometry& geometry);

// Reads run.json and the files it names; one Reproduction per (model,
// corpus) on the reference protocol (model by geometry and name; tokens
// 4096 in prompts of 512; corpus wikitext or c4). `skipped` (optional)
// receives one line per (model, corpus) that is not, saying why. Throws
// InputError naming a missing or malformed file.
std::vector<Reproduction> ReproduceRun(const std::filesystem::path& run_dir,
                                       const PublishedResults& published,
                                       std::vector<std::string>* skipped = nullptr);

// A correlation as printed (5 decimals; "nan" with fewer than 3 rows).
std::string CorrelationText(double r);

// The verdict table as plain text (kvq reproduce's stdout): per
// reproduction the claims, then the row-by-row agreements.
std::string VerdictText(const std::vector<Reproduction>& reproductions);

// Scatter of kvq's value against the published one, one panel per quantity
// (log-log, the line y = x dashed), correlation and worst ratio in the panel
// titles.
std::string ReproductionFigure(const Reproduction& reproduction, const std::string& context);

}  // namespace kvq::report
