#include "hub/settings.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>

#include "kvq/common/error.h"
#include "kvq/common/io.h"

namespace kvq {
namespace hub {
namespace {

namespace fs = std::filesystem;

std::string Env(const char* name) {
  const char* value = std::getenv(name);
  return value ? std::string(value) : std::string();
}

std::string Trim(std::string text) {
  const auto space = [](unsigned char c) { return std::isspace(c) != 0; };
  text.erase(text.begin(), std::find_if_not(text.begin(), text.end(), space));
  text.erase(std::find_if_not(text.rbegin(), text.rend(), space).base(), text.end());
  return text;
}

// huggingface_hub expands a leading "~" in these variables.
fs::path ExpandHome(const std::string& path) {
  if (path == "~" || path.rfind("~/", 0) == 0) {
    const std::string home = Env("HOME");
    if (home.empty()) ThrowRuntime("cannot expand '{}': HOME is not set", path);
    return fs::path(home) / path.substr(std::min<size_t>(2, path.size()));
  }
  return path;
}

// $HF_HOME, else $XDG_CACHE_HOME/huggingface, else ~/.cache/huggingface.
fs::path HfHome() {
  if (const std::string home = Env("HF_HOME"); !home.empty()) return ExpandHome(home);
  if (const std::string xdg = Env("XDG_CACHE_HOME"); !xdg.empty()) {
    return ExpandHome(xdg) / "huggingface";
  }
  if (Env("HOME").empty()) {
    ThrowRuntime("cannot locate the Hugging Face cache: HOME is not set; set HF_HUB_CACHE");
  }
  return ExpandHome("~/.cache/huggingface");
}

bool IsTrue(std::string value) {
  std::transform(value.begin(), value.end(), value.begin(),
                 [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
  return value == "1" || value == "ON" || value == "YES" || value == "TRUE";
}

// A Hub token is about 40 bytes; a token file far larger than any token is
// not one (and is not read whole).
constexpr size_t kMaxTokenFileBytes = 64 * 1024;

std::string TokenFromEnvironment() {
  for (const char* name : {"HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"}) {
    if (std::string token = Trim(Env(name)); !token.empty()) return token;
  }
  const std::string token_path = Env("HF_TOKEN_PATH");
  const fs::path file = token_path.empty() ? HfHome() / "token" : ExpandHome(token_path);
  // No token file: send no token, as huggingface_hub does. Anything else
  // there (a FIFO, a folder, a huge file) is refused by name instead of
  // blocking on it or reading it whole.
  std::error_code ignored;
  if (fs::status(file, ignored).type() == fs::file_type::not_found) return {};
  return Trim(ReadTextFile(file, kMaxTokenFileBytes));
}

}  // namespace

Settings ReadSettings(const HubOptions& options) {
  Settings settings;
  if (options.offline.has_value()) {
    settings.offline = *options.offline;
    settings.offline_reason = "--offline";
  } else {
    settings.offline = IsTrue(Env("HF_HUB_OFFLINE"));
    settings.offline_reason = "HF_HUB_OFFLINE is set";
  }
  settings.endpoint = options.endpoint ? *options.endpoint : Env("HF_ENDPOINT");
  if (settings.endpoint.empty()) settings.endpoint = "https://huggingface.co";
  while (!settings.endpoint.empty() && settings.endpoint.back() == '/')
    settings.endpoint.pop_back();
  settings.token = options.token ? *options.token : TokenFromEnvironment();
  settings.cache_dir = HubCacheDir(options);
  settings.connect_timeout_seconds = options.connect_timeout_seconds;
  return settings;
}

}  // namespace hub

std::filesystem::path HubCacheDir(const HubOptions& options) {
  if (options.cache_dir) return *options.cache_dir;
  if (const std::string cache = hub::Env("HF_HUB_CACHE"); !cache.empty()) {
    return hub::ExpandHome(cache);
  }
  return hub::HfHome() / "hub";
}

}  // namespace kvq
