#pragma once
// The report of a run folder (what `kvq run` writes; layout and schemas in
// docs/report.md): every figure as a standalone .svg beside the data it is
// drawn from, and report.html at the top, self-contained (inline SVG and CSS,
// no script, no network), built from run.json and the result files alone.
#include <filesystem>
#include <string>
#include <vector>

namespace kvq::report {

// File names inside a run folder.
inline constexpr const char* kRunJson = "run.json";
inline constexpr const char* kReportHtml = "report.html";
inline constexpr const char* kQuantCsv = "quant.csv";
inline constexpr const char* kAttnCsv = "attn.csv";
inline constexpr const char* kAttnPositionsCsv = "attn_positions.csv";
inline constexpr const char* kPplJson = "ppl.json";
inline constexpr const char* kPplCsv = "ppl.csv";
inline constexpr const char* kBytesCsv = "bytes.csv";
inline constexpr const char* kParetoCsv = "pareto.csv";
inline constexpr const char* kDumpFile = "kv.safetensors";
inline constexpr const char* kCaptureJson = "capture.json";
inline constexpr const char* kGenerateJson = "generate.json";  // Per corpus (GenerateJson).
inline constexpr const char* kNeedleJson = "needle.json";      // Per model (NeedleJson).
inline constexpr const char* kNeedleCsv = "needle.csv";

// The quality floor on a layer's mean attention cosine (the reference's 0.99).
inline constexpr double kDefaultFloor = 0.99;

struct ReportFiles {
  std::filesystem::path html;
  std::vector<std::filesystem::path> figures;  // Absolute paths of the .svg files.
};

// Reads run.json and the result files it names, writes every figure and
// report.html (atomically). Throws InputError naming a missing or malformed
// file.
ReportFiles BuildReport(const std::filesystem::path& run_dir);

}  // namespace kvq::report
