#pragma once
// Models by name: `--model ORG/NAME[@REVISION]` resolved in, and downloaded
// into, the Hugging Face cache, in the layout huggingface_hub uses, so models
// fetched by `huggingface-cli download` are found and models fetched by kvq
// are usable by transformers:
//
//   {cache}/models--ORG--NAME/refs/{REVISION}        the commit hash, as text
//   {cache}/models--ORG--NAME/snapshots/{COMMIT}/F   relative symlink -> ../../blobs/{ETAG}
//   {cache}/models--ORG--NAME/blobs/{ETAG}           the file's bytes
//   {cache}/models--ORG--NAME/.no_exist/{COMMIT}/F   empty: F is not in that commit
//
// ETAG is the Hub's ETag without quotes: the SHA-256 of the content for large
// (LFS) files, which is verified after download, the git blob SHA-1 otherwise.
// docs/hub.md describes the behaviour and the messages.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace kvq {

// A model id on the Hub: "ORG/NAME" and the revision (branch, tag or commit).
struct ModelId {
  std::string repo;  // "Qwen/Qwen2.5-0.5B"
  std::string revision = "main";
};

// Parses "ORG/NAME" or "ORG/NAME@REVISION"; nullopt when the text is not of
// that form (ORG and NAME: letters, digits, '-', '_', '.').
std::optional<ModelId> ParseModelId(std::string_view text);

// One file's download, reported while it runs and once more when it ends.
struct DownloadProgress {
  std::string repo;
  std::string file;           // "model.safetensors"
  uint64_t downloaded = 0;    // bytes on disk, resumed ones included
  uint64_t total = 0;         // 0 when the server did not say
  uint64_t resumed_from = 0;  // bytes that were already on disk when this run started
  double seconds = 0;         // since this file's transfer started
  bool finished = false;
  // Bytes per second of this run (resumed bytes excluded) and the estimated
  // seconds left; 0 when not known yet.
  double Rate() const;
  double SecondsLeft() const;
};

struct HubOptions {
  // Never touch the network. Unset: $HF_HUB_OFFLINE (1/true/yes/on).
  std::optional<bool> offline;
  // Called from the downloading thread, several times a second at most.
  std::function<void(const DownloadProgress&)> progress;
  // Unset: $HF_ENDPOINT, else https://huggingface.co.
  std::optional<std::string> endpoint;
  // Unset: $HF_TOKEN, else the file `huggingface-cli login` writes
  // ($HF_TOKEN_PATH, else $HF_HOME/token, else ~/.cache/huggingface/token).
  // Empty: send no token.
  std::optional<std::string> token;
  // Unset: $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub.
  std::optional<std::filesystem::path> cache_dir;
  // How long to wait for a connection: no network fails within this.
  long connect_timeout_seconds = 10;
};

// The cache folder that `options` and the environment select.
std::filesystem::path HubCacheDir(const HubOptions& options);

// Returns a local folder holding config.json, the weights (model.safetensors,
// or model.safetensors.index.json and its shards) and, when the model has
// them, tokenizer.json, tokenizer_config.json and generation_config.json.
//
// A `model_arg` naming an existing folder is returned as is. Otherwise it must
// be ORG/NAME[@REVISION]: a complete snapshot in the cache is used without any
// request; else the missing files are downloaded (resuming partial ones).
// Throws InputError for a bad argument, an unknown model or file, or a gated
// or private model without access; RuntimeError for network failures,
// checksum mismatches and full disks, with a message that says what to do.
std::filesystem::path ResolveModel(std::string_view model_arg, const HubOptions& options);

}  // namespace kvq
