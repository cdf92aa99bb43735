#include "kvq/hub/hub.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <set>
#include <vector>

#include <nlohmann/json.hpp>

#include "hub/http.h"
#include "hub/settings.h"
#include "kvq/common/error.h"
#include "kvq/common/io.h"
#include "kvq/common/json.h"
#include "kvq/common/sha256.h"

namespace kvq {
namespace {

namespace fs = std::filesystem;
using hub::HttpRequest;
using hub::HttpResult;
using hub::Settings;

constexpr const char* kConfig = "config.json";
constexpr const char* kWeights = "model.safetensors";
constexpr const char* kIndex = "model.safetensors.index.json";
// Fetched when the model has them; a 404 is recorded under .no_exist.
constexpr const char* kOptionalFiles[] = {"tokenizer.json", "tokenizer_config.json",
                                          "generation_config.json"};
// Transfers that break after making progress are resumed this many times.
constexpr int kMaxResumes = 5;

// The network could not be reached at all: the caller falls back to the cache.
class UnreachableError : public RuntimeError {
 public:
  using RuntimeError::RuntimeError;
};

bool IsHex(std::string_view text, size_t length) {
  return text.size() == length && std::all_of(text.begin(), text.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

bool IsCommitHash(std::string_view text) { return IsHex(text, 40); }

bool IsRepoPart(std::string_view part) {
  if (part.empty() || part.size() > 96) return false;
  if (part.find("--") != std::string_view::npos || part.find("..") != std::string_view::npos) {
    return false;
  }
  if (part.front() == '-' || part.front() == '.' || part.back() == '-' || part.back() == '.') {
    return false;
  }
  return std::all_of(part.begin(), part.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
  });
}

// A file name inside a repository, as found in an index: relative, no "..".
bool IsSafeRelativeName(std::string_view name) {
  if (name.empty() || name.front() == '/') return false;
  for (const auto& part : fs::path(name)) {
    if (part == ".." || part == ".") return false;
  }
  return true;
}

bool Exists(const fs::path& path) {
  std::error_code ignored;
  return fs::exists(path, ignored);  // follows symlinks: a dangling link is missing
}

std::string Trim(std::string text) {
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.pop_back();
  size_t start = 0;
  while (start < text.size() && std::isspace(static_cast<unsigned char>(text[start]))) ++start;
  return text.substr(start);
}

// The Hub quotes its ETags and may mark them weak: W/"abc" -> abc.
std::string NormalizeEtag(std::string etag) {
  if (etag.rfind("W/", 0) == 0) etag = etag.substr(2);
  if (etag.size() >= 2 && etag.front() == '"' && etag.back() == '"') {
    etag = etag.substr(1, etag.size() - 2);
  }
  return etag;
}

std::string Bytes(uint64_t bytes) {
  if (bytes >= (uint64_t{1} << 30)) return fmt::format("{:.1f} GiB", bytes / double(1 << 30));
  if (bytes >= (uint64_t{1} << 20)) return fmt::format("{:.1f} MiB", bytes / double(1 << 20));
  if (bytes >= 1024) return fmt::format("{:.1f} KiB", bytes / 1024.0);
  return fmt::format("{} B", bytes);
}

// Shard file names named by an index's weight_map, sorted and unique.
std::vector<std::string> ShardNames(const fs::path& index_path) {
  nlohmann::json index;
  try {
    index = ParseJson(ReadTextFile(index_path), index_path.string());
  } catch (const nlohmann::json::exception& e) {
    ThrowInput("{}: not valid JSON: {}", index_path.string(), e.what());
  }
  if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object()) {
    ThrowInput("{}: no \"weight_map\" object", index_path.string());
  }
  std::set<std::string> names;
  for (const auto& [tensor, file] : index["weight_map"].items()) {
    if (!file.is_string() || !IsSafeRelativeName(file.get<std::string>())) {
      ThrowInput("{}: tensor {} maps to a bad file name {}", index_path.string(), tensor,
                 file.dump());
    }
    names.insert(file.get<std::string>());
  }
  return {names.begin(), names.end()};
}

// An exclusive flock on the lock file huggingface_hub uses for the same blob,
// so concurrent downloads by kvq and Python tools do not interleave.
class FileLock {
 public:
  explicit FileLock(const fs::path& path) {
    fs::create_directories(path.parent_path());
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) ThrowRuntime("{}: cannot open lock file: {}", path.string(), std::strerror(errno));
    while (::flock(fd_, LOCK_EX) != 0) {
      if (errno != EINTR) {
        const int saved = errno;
        ::close(fd_);
        ThrowRuntime("{}: cannot lock: {}", path.string(), std::strerror(saved));
      }
    }
  }
  ~FileLock() { ::close(fd_); }
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;

 private:
  int fd_ = -1;
};

// What a HEAD on a resolve URL says about one file.
struct FileMetadata {
  std::string commit;        // X-Repo-Commit
  std::string etag;          // X-Linked-Etag (LFS: the SHA-256) or ETag; unquoted
  uint64_t size = 0;         // X-Linked-Size or Content-Length; 0: unknown
  std::string download_url;  // the redirect target for LFS files, else the resolve URL
};

// One model repository in the cache, and the downloads into it.
class Repository {
 public:
  Repository(ModelId id, Settings settings, const HubOptions& options)
      : id_(std::move(id)),
        settings_(std::move(settings)),
        progress_(options.progress),
        dir_(settings_.cache_dir / ("models--" + FolderName(id_.repo))) {}

  // The snapshot folder when the cache holds the revision with its config and
  // all its weights. Strict also wants each optional file either present or
  // known to be absent, so that a strict hit needs no request at all.
  std::optional<fs::path> CachedSnapshot(bool strict) const {
    const std::optional<std::string> commit = CachedCommit();
    if (!commit) return std::nullopt;
    const fs::path snapshot = dir_ / "snapshots" / *commit;
    if (!Exists(snapshot / kConfig) || !WeightsPresent(snapshot)) return std::nullopt;
    if (strict) {
      for (const char* name : kOptionalFiles) {
        if (!Exists(snapshot / name) && !Exists(dir_ / ".no_exist" / *commit / name)) {
          return std::nullopt;
        }
      }
    }
    return snapshot;
  }

  fs::path Download() {
    const FileMetadata config = Head(id_.revision, kConfig, /*required=*/true).value();
    const std::string commit = config.commit;
    if (!IsCommitHash(commit)) {
      ThrowRuntime("{}: the server's X-Repo-Commit '{}' is not a commit hash",
                   ResolveUrl(id_.revision, kConfig), commit);
    }
    if (commit != id_.revision) {
      const fs::path ref = dir_ / "refs" / id_.revision;
      fs::create_directories(ref.parent_path());
      if (!Exists(ref) || Trim(ReadTextFile(ref)) != commit) WriteTextFileAtomic(ref, commit);
    }
    fs::path snapshot = dir_ / "snapshots" / commit;
    // Fetch config.json from the commit just resolved, not from a branch that may move.
    FileMetadata pinned = config;
    if (pinned.download_url == ResolveUrl(id_.revision, kConfig)) {
      pinned.download_url = ResolveUrl(commit, kConfig);
    }
    Fetch(commit, kConfig, &pinned);
    for (const char* name : kOptionalFiles) Fetch(commit, name, nullptr);
    if (!Fetch(commit, kWeights, nullptr)) {
      if (!Fetch(commit, kIndex, nullptr)) {
        ThrowInput("--model {}@{}: the model has neither {} nor {} at {}", id_.repo, id_.revision,
                   kWeights, kIndex, settings_.endpoint);
      }
      // A shard the index names but the Hub lacks is a 404 that Fetch reports.
      for (const std::string& shard : ShardNames(snapshot / kIndex)) {
        Fetch(commit, shard, nullptr, /*required=*/true);
      }
    }
    return snapshot;
  }

  std::string NotCachedHint() const {
    return fmt::format(
        "On a machine with network, run `huggingface-cli download {0}` (or `kvq download --model "
        "{0}`) and copy its folder {1} into {2}, or pass a local model folder with --model DIR",
        id_.repo, dir_.filename().string(), settings_.cache_dir.string());
  }

  const ModelId& id() const { return id_; }

 private:
  static std::string FolderName(const std::string& repo) {
    std::string name;
    for (char c : repo) name += c == '/' ? std::string("--") : std::string(1, c);
    return name;
  }

  std::optional<std::string> CachedCommit() const {
    if (IsCommitHash(id_.revision)) return id_.revision;
    const fs::path ref = dir_ / "refs" / id_.revision;
    if (!Exists(ref)) return std::nullopt;
    std::string commit = Trim(ReadTextFile(ref));
    if (!IsCommitHash(commit)) return std::nullopt;
    return commit;
  }

  static bool WeightsPresent(const fs::path& snapshot) {
    if (Exists(snapshot / kWeights)) return true;
    if (!Exists(snapshot / kIndex)) return false;
    const std::vector<std::string> shards = ShardNames(snapshot / kIndex);
    return std::all_of(shards.begin(), shards.end(),
                       [&](const std::string& shard) { return Exists(snapshot / shard); });
  }

  std::string ResolveUrl(const std::string& revision, const std::string& file) const {
    return fmt::format("{}/{}/resolve/{}/{}", settings_.endpoint, id_.repo,
                       hub::PercentEncode(revision, false), hub::PercentEncode(file, true));
  }

  // Makes snapshots/COMMIT/FILE present; false when the repository has no
  // such file (recorded under .no_exist unless required). `known` is the
  // metadata when the caller already asked.
  bool Fetch(const std::string& commit, const std::string& file, const FileMetadata* known,
             bool required = false) {
    const fs::path link = dir_ / "snapshots" / commit / file;
    if (Exists(link)) return true;
    const fs::path no_exist = dir_ / ".no_exist" / commit / file;
    if (!required && Exists(no_exist)) return false;
    std::optional<FileMetadata> metadata;
    if (known) {
      metadata = *known;
    } else {
      metadata = Head(commit, file, required);
    }
    if (!metadata) {
      fs::create_directories(no_exist.parent_path());
      WriteTextFileAtomic(no_exist, "");
      return false;
    }
    const fs::path blob = dir_ / "blobs" / metadata->etag;
    if (!Exists(blob)) DownloadBlob(file, *metadata, blob);
    Link(link, blob);
    return true;
  }

  // HEAD without following redirects (the LFS redirect carries the metadata),
  // except relative ones (a renamed repository), as huggingface_hub does.
  // nullopt: the file is not in the repository and `required` is false.
  std::optional<FileMetadata> Head(const std::string& revision, const std::string& file,
                                   bool required) const {
    std::string url = ResolveUrl(revision, file);
    HttpResult result;
    for (int hop = 0;; ++hop) {
      HttpRequest request;
      request.url = url;
      request.head = true;
      request.token = settings_.token;
      request.connect_timeout_seconds = settings_.connect_timeout_seconds;
      request.total_timeout_seconds = 60;
      result = hub::Perform(request, nullptr, nullptr);
      if (!result.transport_ok) {
        const std::string message = fmt::format("{}: {}", url, result.transport_error);
        if (result.unreachable) throw UnreachableError(message);
        ThrowRuntime("{}", message);
      }
      const std::string location = result.Header("location");
      const bool relative = location.rfind('/', 0) == 0 && location.rfind("//", 0) != 0;
      if (result.status < 300 || result.status >= 400 || !relative || hop == 10) break;
      url = hub::Origin(url);
      url += location;
    }
    if (result.status >= 400) {
      const std::string code = result.Header("x-error-code");
      if (result.status == 404 && code != "RepoNotFound" && code != "RevisionNotFound" &&
          !required) {
        return std::nullopt;
      }
      ThrowHttp(result, url, file);
    }
    FileMetadata metadata;
    metadata.commit = result.Header("x-repo-commit");
    std::string etag = result.Header("x-linked-etag");
    if (etag.empty()) etag = result.Header("etag");
    metadata.etag = NormalizeEtag(etag);
    std::string size = result.Header("x-linked-size");
    if (size.empty()) size = result.Header("content-length");
    metadata.size = size.empty() ? 0 : std::strtoull(size.c_str(), nullptr, 10);
    const std::string location = result.Header("location");
    metadata.download_url = result.status >= 300 && !location.empty() ? location : url;
    if (metadata.commit.empty() || metadata.etag.empty() || !IsSafeRelativeName(metadata.etag) ||
        metadata.etag.find('/') != std::string::npos) {
      ThrowRuntime(
          "{}: the answer has no usable X-Repo-Commit and ETag headers; is {} a Hugging Face Hub "
          "endpoint? (HF_ENDPOINT)",
          url, settings_.endpoint);
    }
    return metadata;
  }

  [[noreturn]] void ThrowHttp(const HttpResult& result, const std::string& url,
                              const std::string& file) const {
    const std::string code = result.Header("x-error-code");
    const std::string server = result.Header("x-error-message");
    const std::string detail = server.empty() ? "" : fmt::format(": {}", server);
    if (code == "RepoNotFound") {
      ThrowInput(
          "--model {}: no such model at {} (HTTP {}{}). Check the name; if the model is private, "
          "set HF_TOKEN to a token that can read it",
          id_.repo, settings_.endpoint, result.status, detail);
    }
    if (code == "RevisionNotFound") {
      ThrowInput("--model {}@{}: no such revision (branch, tag or commit) at {} (HTTP {}{})",
                 id_.repo, id_.revision, settings_.endpoint, result.status, detail);
    }
    if (result.status == 401 || result.status == 403) {
      ThrowInput(
          "--model {}: access denied (HTTP {}{}): the model is gated or private. Accept its "
          "conditions at {}/{} and set HF_TOKEN to an access token of that account{}",
          id_.repo, result.status, detail, settings_.endpoint, id_.repo,
          settings_.token.empty() ? ""
                                  : " (a token was sent, from HF_TOKEN or the huggingface-cli "
                                    "login file, and it has no access)");
    }
    if (result.status == 404) {
      ThrowInput("--model {}@{}: the model has no file {} (HTTP 404 for {}{})", id_.repo,
                 id_.revision, file, url, detail);
    }
    ThrowRuntime("{}: HTTP {}{} while fetching {} of {}; try again later", url, result.status,
                 detail, file, id_.repo);
  }

  void DownloadBlob(const std::string& file, const FileMetadata& metadata, const fs::path& blob) {
    fs::create_directories(blob.parent_path());
    const FileLock lock(settings_.cache_dir / ".locks" / dir_.filename() /
                        (metadata.etag + ".lock"));
    if (Exists(blob)) return;  // another process finished it while we waited
    fs::path incomplete = blob;
    incomplete += ".incomplete";

    for (int attempt = 0;; ++attempt) {
      std::error_code no_size;  // no partial file yet (or not a regular one): start at 0
      uint64_t offset = fs::file_size(incomplete, no_size);
      if (no_size) offset = 0;
      if (metadata.size > 0 && offset > metadata.size) {
        fs::resize_file(incomplete, 0);
        offset = 0;
      }
      if (metadata.size > 0 && offset == metadata.size) break;
      CheckFreeSpace(file, blob.parent_path(), metadata.size > 0 ? metadata.size - offset : 0);
      const Transfer transfer = Get(file, metadata, incomplete, offset);
      if (transfer.write_errno != 0) ThrowWriteError(file, incomplete, transfer.write_errno);
      if (transfer.result.transport_ok) {
        if (transfer.result.status == 416 && offset > 0) {
          fs::resize_file(incomplete, 0);  // our partial file does not fit the server's
          if (attempt < kMaxResumes) continue;
        }
        if (transfer.result.status >= 400) ThrowHttp(transfer.result, metadata.download_url, file);
        break;
      }
      const std::string message = fmt::format("downloading {} of {} failed: {}", file, id_.repo,
                                              transfer.result.transport_error);
      if (transfer.result.unreachable) throw UnreachableError(message);
      if (transfer.received == 0 || attempt >= kMaxResumes) {
        ThrowRuntime("{}; run again to resume from {}", message, incomplete.string());
      }
    }

    const uint64_t size = fs::file_size(incomplete);
    if (metadata.size > 0 && size != metadata.size) {
      fs::remove(incomplete);
      ThrowRuntime(
          "downloading {} of {}: got {} bytes, expected {}; the partial file was deleted, "
          "run again",
          file, id_.repo, size, metadata.size);
    }
    // LFS files are named by their SHA-256; other ETags (git SHA-1) are not checked.
    if (IsHex(metadata.etag, 64)) {
      const std::string actual = Sha256FileHex(incomplete);
      if (actual != metadata.etag) {
        fs::remove(incomplete);
        ThrowRuntime(
            "checksum mismatch for {} of {}: expected SHA-256 {}, got {}; the corrupt download "
            "was deleted, run again (if it persists, the server or a proxy alters the file)",
            file, id_.repo, metadata.etag, actual);
      }
    }
    if (::rename(incomplete.c_str(), blob.c_str()) != 0) {
      ThrowRuntime("{}: rename failed: {}", blob.string(), std::strerror(errno));
    }
  }

  struct Transfer {
    HttpResult result;
    uint64_t received = 0;  // body bytes written to the file in this attempt
    int write_errno = 0;
  };

  // One GET of the file from `offset` on, appended to `incomplete`.
  Transfer Get(const std::string& file, const FileMetadata& metadata, const fs::path& incomplete,
               uint64_t offset) {
    const int fd = ::open(incomplete.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) ThrowWriteError(file, incomplete, errno);
    Transfer transfer;
    uint64_t start = offset;  // where this response's body begins in the file
    bool first = true;
    const auto body = [&](std::string_view bytes, long status) {
      if (status >= 300) return true;  // an error page: the status is reported
      if (first) {
        first = false;
        // A 200 to a Range request is the whole file: start over.
        if (status == 200 && start > 0) {
          start = 0;
          if (::ftruncate(fd, 0) != 0) {
            transfer.write_errno = errno;
            return false;
          }
        }
        if (::lseek(fd, static_cast<off_t>(start), SEEK_SET) < 0) {
          transfer.write_errno = errno;
          return false;
        }
      }
      while (!bytes.empty()) {
        const ssize_t written = ::write(fd, bytes.data(), bytes.size());
        if (written < 0) {
          if (errno == EINTR) continue;
          transfer.write_errno = errno;
          return false;
        }
        bytes.remove_prefix(static_cast<size_t>(written));
        transfer.received += static_cast<uint64_t>(written);
      }
      return true;
    };

    DownloadProgress report;
    report.repo = id_.repo;
    report.file = file;
    report.resumed_from = offset;
    report.total = metadata.size;
    const auto started = std::chrono::steady_clock::now();
    auto last_report = started - std::chrono::seconds(1);
    const auto progress = [&](uint64_t received, uint64_t expected) {
      if (!progress_) return;
      const auto now = std::chrono::steady_clock::now();
      if (now - last_report < std::chrono::milliseconds(100)) return;
      last_report = now;
      report.resumed_from = start;
      report.downloaded = start + received;
      if (report.total == 0 && expected > 0) report.total = start + expected;
      report.seconds = std::chrono::duration<double>(now - started).count();
      progress_(report);
    };

    HttpRequest request;
    request.url = metadata.download_url;
    request.follow_redirects = true;
    // The token goes to the Hub only, never to the CDN it redirects to.
    if (hub::Origin(metadata.download_url) == hub::Origin(settings_.endpoint)) {
      request.token = settings_.token;
    }
    request.range_from = offset;
    request.connect_timeout_seconds = settings_.connect_timeout_seconds;
    transfer.result = hub::Perform(request, body, progress);
    if (transfer.write_errno == 0 && ::fsync(fd) != 0 && transfer.result.transport_ok) {
      transfer.write_errno = errno;
    }
    if (::close(fd) != 0 && transfer.write_errno == 0 && transfer.result.transport_ok) {
      transfer.write_errno = errno;
    }
    if (progress_ && transfer.result.transport_ok && transfer.write_errno == 0 &&
        transfer.result.status < 300) {
      report.resumed_from = start;
      report.downloaded = start + transfer.received;
      if (report.total == 0) report.total = report.downloaded;
      report.seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
      report.finished = true;
      progress_(report);
    }
    return transfer;
  }

  void CheckFreeSpace(const std::string& file, const fs::path& folder, uint64_t needed) const {
    struct statvfs stats {};
    if (needed == 0 || ::statvfs(folder.c_str(), &stats) != 0) return;
    const uint64_t available = uint64_t{stats.f_bavail} * stats.f_frsize;
    if (available < needed) {
      ThrowRuntime(
          "disk full: {} of {} needs {} more, and {} has {} free. Free some space or set "
          "HF_HUB_CACHE to a folder on a larger disk",
          file, id_.repo, Bytes(needed), folder.string(), Bytes(available));
    }
  }

  [[noreturn]] void ThrowWriteError(const std::string& file, const fs::path& path,
                                    int error) const {
    if (error == ENOSPC || error == EDQUOT) {
      ThrowRuntime(
          "disk full while downloading {} of {} into {}: {}. Free some space or set HF_HUB_CACHE "
          "to a folder on a larger disk; the next run resumes from the partial file",
          file, id_.repo, path.parent_path().string(), std::strerror(error));
    }
    ThrowRuntime("{}: cannot write: {}", path.string(), std::strerror(error));
  }

  // snapshots/COMMIT/FILE -> ../../blobs/ETAG, replaced atomically.
  static void Link(const fs::path& link, const fs::path& blob) {
    fs::create_directories(link.parent_path());
    const fs::path target = blob.lexically_relative(link.parent_path());
    fs::path temporary = link;
    temporary += fmt::format(".{}.link", ::getpid());
    std::error_code ignored;
    fs::remove(temporary, ignored);
    if (::symlink(target.c_str(), temporary.c_str()) != 0 ||
        ::rename(temporary.c_str(), link.c_str()) != 0) {
      const int saved = errno;
      fs::remove(temporary, ignored);
      ThrowRuntime("{}: cannot link to {}: {}", link.string(), target.string(),
                   std::strerror(saved));
    }
  }

  ModelId id_;
  Settings settings_;
  std::function<void(const DownloadProgress&)> progress_;
  fs::path dir_;
};

}  // namespace

double DownloadProgress::Rate() const {
  return seconds > 0 && downloaded > resumed_from ? (downloaded - resumed_from) / seconds : 0;
}

double DownloadProgress::SecondsLeft() const {
  const double rate = Rate();
  return rate > 0 && total > downloaded ? (total - downloaded) / rate : 0;
}

std::optional<ModelId> ParseModelId(std::string_view text) {
  ModelId id;
  const size_t at = text.find('@');
  std::string_view repo = text.substr(0, at);
  if (at != std::string_view::npos) {
    const std::string_view revision = text.substr(at + 1);
    if (revision.empty() || !IsSafeRelativeName(revision) ||
        std::any_of(revision.begin(), revision.end(), [](char c) {
          return std::iscntrl(static_cast<unsigned char>(c)) || c == ' ';
        })) {
      return std::nullopt;
    }
    id.revision = std::string(revision);
  }
  const size_t slash = repo.find('/');
  if (slash == std::string_view::npos || !IsRepoPart(repo.substr(0, slash)) ||
      !IsRepoPart(repo.substr(slash + 1))) {
    return std::nullopt;
  }
  id.repo = std::string(repo);
  return id;
}

std::filesystem::path ResolveModel(std::string_view model_arg, const HubOptions& options) {
  fs::path as_path(model_arg);
  std::error_code error;
  if (fs::exists(as_path, error)) {
    if (fs::is_directory(as_path, error)) return as_path;
    ThrowInput("--model {}: is a file; pass the model's folder or a Hugging Face id ORG/NAME",
               model_arg);
  }
  const std::optional<ModelId> id = ParseModelId(model_arg);
  if (!id) {
    ThrowInput("--model {}: no such folder, and not a Hugging Face model id (ORG/NAME[@REVISION])",
               model_arg);
  }
  const Settings settings = hub::ReadSettings(options);
  Repository repository(*id, settings, options);
  if (auto snapshot = repository.CachedSnapshot(/*strict=*/!settings.offline)) return *snapshot;
  if (settings.offline) {
    ThrowRuntime("--model {}@{}: not in the Hugging Face cache {}, and downloads are off ({}). {}",
                 id->repo, id->revision, settings.cache_dir.string(), settings.offline_reason,
                 repository.NotCachedHint());
  }
  try {
    return repository.Download();
  } catch (const UnreachableError& e) {
    if (auto snapshot = repository.CachedSnapshot(/*strict=*/false)) return *snapshot;
    ThrowRuntime(
        "--model {}: cannot reach {} ({}), and the Hugging Face cache {} has no complete copy. {}",
        id->repo, settings.endpoint, e.what(), settings.cache_dir.string(),
        repository.NotCachedHint());
  }
}

}  // namespace kvq
