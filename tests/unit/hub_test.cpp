// Hub resolution and downloads against tests/hub_server.py, a local stand-in
// for the Hub's resolve endpoints on 127.0.0.1. No other address is contacted:
// every test passes its endpoint and cache explicitly, and the server exits on
// its own after 60 s, which bounds every test in time.
#include "kvq/hub/hub.h"
#include "kvq/capture/dump.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "hub/settings.h"
#include "kvq/common/error.h"
#include "kvq/common/io.h"
#include "test_util.h"

namespace kvq {
namespace {

namespace fs = std::filesystem;

// Commits the server gives its repositories: SHA-1 of the repository name.
constexpr const char* kTinyCommit = "896307e91214d2e0474d3eb1c96e45284c30932e";
constexpr const char* kShardedCommit = "81f70b38af22a35d3f99fb11724a3f408b1ec2cf";
// sha256sum of the fixture files: the LFS ETags.
constexpr const char* kTinyWeightsSha =
    "8ef3028943b2b9c60b3dbcecdacf44b0fc1818fa5b98997d4065a1ced6d3dc6f";
constexpr const char* kShard1Sha =
    "b0bb5c49a8dd5734ac9b3034da8d08ec0f473d9f80e985df48e27addf0dc00ca";
constexpr const char* kShard2Sha =
    "dc54da5371fedd97e6dcd9d327ad0e0572a74fac539e0449cbb31f8fb566ba8e";
constexpr const char* kToken = "hf_kvq_test_token";

fs::path TinyFixture() { return test::DataDir() / "qwen2-tiny/tied-bf16"; }
fs::path ShardedFixture() { return test::DataDir() / "qwen2-tiny/sharded-f32"; }

std::string ReadBytes(const fs::path& path) { return ReadTextFile(path); }

// A pipe whose ends are closed on exec (pipe2 with O_CLOEXEC in one step is
// not in macOS).
void CloexecPipe(int fds[2]) {
  if (::pipe(fds) != 0) std::abort();
  if (::fcntl(fds[0], F_SETFD, FD_CLOEXEC) != 0 || ::fcntl(fds[1], F_SETFD, FD_CLOEXEC) != 0) {
    std::abort();
  }
}

// The server as a child process: started on a free port, killed on scope exit.
class HubServer {
 public:
  HubServer(const fs::path& log, std::vector<std::string> extra = {}) : log_(log) {
    int to_child[2], from_child[2];
    CloexecPipe(to_child);
    CloexecPipe(from_child);
    std::vector<std::string> args = {
        "python3",    (test::DataDir().parent_path() / "hub_server.py").string(),
        "--data",     test::DataDir().string(),
        "--log",      log.string(),
        "--token",    kToken,
        "--lifetime", "60"};
    args.insert(args.end(), extra.begin(), extra.end());
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(to_child[0], STDIN_FILENO);
      ::dup2(from_child[1], STDOUT_FILENO);
      std::vector<char*> argv;
      for (auto& arg : args) argv.push_back(arg.data());
      argv.push_back(nullptr);
      ::execvp("python3", argv.data());
      ::_exit(127);
    }
    ::close(to_child[0]);
    ::close(from_child[1]);
    stdin_ = to_child[1];
    // The first line is the port; give Python 10 s to start.
    std::string line;
    pollfd waiter{from_child[0], POLLIN, 0};
    char c;
    while (::poll(&waiter, 1, 10000) == 1 && ::read(from_child[0], &c, 1) == 1 && c != '\n') {
      line.push_back(c);
    }
    ::close(from_child[0]);
    port_ = std::atoi(line.c_str());
  }
  ~HubServer() {
    ::close(stdin_);  // the server exits when its stdin closes
    ::kill(pid_, SIGTERM);
    ::waitpid(pid_, nullptr, 0);
  }
  HubServer(const HubServer&) = delete;
  HubServer& operator=(const HubServer&) = delete;

  bool started() const { return port_ > 0; }
  std::string endpoint() const { return "http://127.0.0.1:" + std::to_string(port_); }

  // Requests served so far, in order: {"method", "path", "range", "auth"}.
  std::vector<nlohmann::json> Requests() const {
    std::vector<nlohmann::json> requests;
    std::ifstream in(log_);
    for (std::string line; std::getline(in, line);) requests.push_back(nlohmann::json::parse(line));
    return requests;
  }

 private:
  fs::path log_;
  pid_t pid_ = -1;
  int stdin_ = -1;
  int port_ = 0;
};

// A TCP port on 127.0.0.1 that nothing listens on: connections are refused.
int ClosedPort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(address);
  ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address));
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  ::close(fd);
  return ntohs(address.sin_port);
}

// Sets (or unsets, for nullopt) an environment variable for one scope.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, std::optional<std::string> value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value) {
      ::setenv(name, value->c_str(), 1);
    } else {
      ::unsetenv(name);
    }
  }
  ~ScopedEnv() {
    if (old_) {
      ::setenv(name_, old_->c_str(), 1);
    } else {
      ::unsetenv(name_);
    }
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* name_;
  std::optional<std::string> old_;
};

// The environment a kvq child process reads: this test's cache and server,
// no token, online.
class CliHubEnvironment {
 public:
  CliHubEnvironment(const fs::path& cache_dir, const std::string& endpoint,
                    const fs::path& no_token)
      : cache_("HF_HUB_CACHE", cache_dir.string()),
        endpoint_("HF_ENDPOINT", endpoint),
        token_("HF_TOKEN", std::nullopt),
        legacy_token_("HUGGING_FACE_HUB_TOKEN", std::nullopt),
        token_path_("HF_TOKEN_PATH", no_token.string()),
        offline_("HF_HUB_OFFLINE", std::nullopt) {}

 private:
  ScopedEnv cache_, endpoint_, token_, legacy_token_, token_path_, offline_;
};

template <typename Fn>
std::string ErrorOf(Fn&& fn) {
  try {
    fn();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(no error)";
}

class HubTest : public ::testing::Test {
 protected:
  fs::path cache() const { return scratch_ / "cache"; }
  fs::path log() const { return scratch_ / "requests.jsonl"; }
  fs::path TinyDir() const { return cache() / "models--kvq-test--tiny"; }

  HubOptions Options(const std::string& endpoint) const {
    HubOptions options;
    options.offline = false;
    options.endpoint = endpoint;
    options.token = "";
    options.cache_dir = cache();
    options.connect_timeout_seconds = 5;
    return options;
  }

  test::ScratchDir scratch_;
};

TEST(HubModelId, Parses) {
  const auto plain = ParseModelId("Qwen/Qwen2.5-0.5B");
  ASSERT_TRUE(plain);
  EXPECT_EQ(plain->repo, "Qwen/Qwen2.5-0.5B");
  EXPECT_EQ(plain->revision, "main");
  const auto pinned = ParseModelId("org/name@v1.0");
  ASSERT_TRUE(pinned);
  EXPECT_EQ(pinned->repo, "org/name");
  EXPECT_EQ(pinned->revision, "v1.0");
  EXPECT_EQ(ParseModelId("org/name@refs/pr/1")->revision, "refs/pr/1");
  for (const char* bad : {"name", "org/", "/name", "a/b/c", "org/na me", "org/name@", "org/a--b",
                          "org/a..b", "org/name@../x", "./dir", "org/-name"}) {
    EXPECT_FALSE(ParseModelId(bad)) << bad;
  }
}

TEST_F(HubTest, LocalFolderIsReturnedAsIs) {
  EXPECT_EQ(ResolveModel(TinyFixture().string(), Options("http://127.0.0.1:1")), TinyFixture());
  const std::string file = (TinyFixture() / "config.json").string();
  EXPECT_NE(ErrorOf([&] { ResolveModel(file, Options("http://127.0.0.1:1")); }).find("is a file"),
            std::string::npos);
  EXPECT_THROW(ResolveModel("no/such/folder", Options("http://127.0.0.1:1")), InputError);
}

TEST_F(HubTest, FreshDownloadBuildsTheHubLayout) {
  HubServer server(log());
  ASSERT_TRUE(server.started());
  std::vector<DownloadProgress> reports;
  HubOptions options = Options(server.endpoint());
  options.progress = [&](const DownloadProgress& p) { reports.push_back(p); };

  const fs::path folder = ResolveModel("kvq-test/tiny", options);

  EXPECT_EQ(folder, TinyDir() / "snapshots" / kTinyCommit);
  EXPECT_EQ(ReadBytes(TinyDir() / "refs/main"), kTinyCommit);
  EXPECT_EQ(ReadBytes(folder / "config.json"), ReadBytes(TinyFixture() / "config.json"));
  EXPECT_EQ(ReadBytes(folder / "model.safetensors"),
            ReadBytes(TinyFixture() / "model.safetensors"));
  EXPECT_TRUE(fs::exists(folder / "tokenizer.json"));
  // Relative links into blobs/, the LFS blob named by its SHA-256.
  EXPECT_TRUE(fs::is_symlink(folder / "model.safetensors"));
  EXPECT_EQ(fs::read_symlink(folder / "model.safetensors"),
            fs::path("../../blobs") / kTinyWeightsSha);
  EXPECT_EQ(fs::read_symlink(folder / "config.json").parent_path(), fs::path("../../blobs"));
  // Files the model lacks are recorded as huggingface_hub does.
  EXPECT_TRUE(fs::exists(TinyDir() / ".no_exist" / kTinyCommit / "tokenizer_config.json"));
  EXPECT_TRUE(fs::exists(TinyDir() / ".no_exist" / kTinyCommit / "generation_config.json"));
  for (const auto& entry : fs::recursive_directory_iterator(cache())) {
    EXPECT_NE(entry.path().extension(), ".incomplete") << entry.path();
  }

  // HEAD+GET config.json (at main), HEAD+GET tokenizer.json, HEAD x2 (404),
  // HEAD model.safetensors (302 to the CDN), GET from the CDN.
  const auto requests = server.Requests();
  ASSERT_EQ(requests.size(), 8u);
  EXPECT_EQ(requests[0]["method"], "HEAD");
  EXPECT_EQ(requests[0]["path"], "/kvq-test/tiny/resolve/main/config.json");
  EXPECT_EQ(requests[2]["path"],
            std::string("/kvq-test/tiny/resolve/") + kTinyCommit + "/tokenizer.json");
  EXPECT_EQ(requests[7]["method"], "GET");
  EXPECT_EQ(requests[7]["path"], std::string("/cdn-lfs/") + kTinyWeightsSha);
  for (const auto& request : requests) EXPECT_EQ(request["auth"], "");

  ASSERT_FALSE(reports.empty());
  EXPECT_TRUE(reports.back().finished);
  EXPECT_EQ(reports.back().file, "model.safetensors");
  EXPECT_EQ(reports.back().downloaded, fs::file_size(TinyFixture() / "model.safetensors"));
  EXPECT_EQ(reports.back().total, reports.back().downloaded);
}

TEST_F(HubTest, SecondRunUsesTheCacheWithoutARequest) {
  HubServer server(log());
  ASSERT_TRUE(server.started());
  const fs::path first = ResolveModel("kvq-test/tiny", Options(server.endpoint()));
  const size_t requests = server.Requests().size();
  ASSERT_GT(requests, 0u);
  EXPECT_EQ(ResolveModel("kvq-test/tiny", Options(server.endpoint())), first);
  EXPECT_EQ(ResolveModel(std::string("kvq-test/tiny@") + kTinyCommit, Options(server.endpoint())),
            first);
  EXPECT_EQ(server.Requests().size(), requests);
}

TEST_F(HubTest, ShardedModelDownloadsIndexAndShards) {
  HubServer server(log());
  ASSERT_TRUE(server.started());
  const fs::path folder = ResolveModel("kvq-test/sharded@v1.0", Options(server.endpoint()));
  const fs::path dir = cache() / "models--kvq-test--sharded";
  EXPECT_EQ(folder, dir / "snapshots" / kShardedCommit);
  EXPECT_EQ(ReadBytes(dir / "refs/v1.0"), kShardedCommit);
  for (const char* name :
       {"config.json", "model.safetensors.index.json", "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors"}) {
    EXPECT_EQ(ReadBytes(folder / name), ReadBytes(ShardedFixture() / name)) << name;
  }
  EXPECT_TRUE(fs::exists(dir / "blobs" / kShard1Sha));
  EXPECT_TRUE(fs::exists(dir / "blobs" / kShard2Sha));
  EXPECT_TRUE(fs::exists(dir / ".no_exist" / kShardedCommit / "model.safetensors"));
  EXPECT_FALSE(fs::exists(folder / "tokenizer.json"));
}

TEST_F(HubTest, InterruptedDownloadResumesWithRange) {
  HubServer server(log(), {"--drop-after", "100000"});
  ASSERT_TRUE(server.started());
  const fs::path folder = ResolveModel("kvq-test/tiny", Options(server.endpoint()));
  EXPECT_EQ(ReadBytes(folder / "model.safetensors"),
            ReadBytes(TinyFixture() / "model.safetensors"));
  std::vector<std::string> cdn_ranges;
  for (const auto& request : server.Requests()) {
    if (request["path"].get<std::string>().rfind("/cdn-lfs/", 0) == 0) {
      cdn_ranges.push_back(request["range"]);
    }
  }
  EXPECT_EQ(cdn_ranges, (std::vector<std::string>{"", "bytes=100000-"}));
}

TEST_F(HubTest, PartialFileOfAnEarlierRunIsResumed) {
  HubServer server(log());
  ASSERT_TRUE(server.started());
  const std::string weights = ReadBytes(TinyFixture() / "model.safetensors");
  fs::create_directories(TinyDir() / "blobs");
  std::ofstream(TinyDir() / "blobs" / (std::string(kTinyWeightsSha) + ".incomplete"),
                std::ios::binary)
      << weights.substr(0, 120000);
  const fs::path folder = ResolveModel("kvq-test/tiny", Options(server.endpoint()));
  EXPECT_EQ(ReadBytes(folder / "model.safetensors"), weights);
  const auto requests = server.Requests();
  ASSERT_FALSE(requests.empty());
  EXPECT_EQ(requests.back()["path"], std::string("/cdn-lfs/") + kTinyWeightsSha);
  EXPECT_EQ(requests.back()["range"], "bytes=120000-");
  EXPECT_FALSE(fs::exists(TinyDir() / "blobs" / (std::string(kTinyWeightsSha) + ".incomplete")));
}

TEST_F(HubTest, CorruptBlobIsRejectedAndDeleted) {
  {
    HubServer server(log(), {"--corrupt"});
    ASSERT_TRUE(server.started());
    try {
      ResolveModel("kvq-test/tiny", Options(server.endpoint()));
      FAIL() << "no error";
    } catch (const RuntimeError& e) {
      const std::string message = e.what();
      EXPECT_NE(message.find("checksum mismatch for model.safetensors"), std::string::npos)
          << message;
      EXPECT_NE(message.find(kTinyWeightsSha), std::string::npos) << message;
    }
    EXPECT_FALSE(fs::exists(TinyDir() / "blobs" / kTinyWeightsSha));
    EXPECT_FALSE(fs::exists(TinyDir() / "blobs" / (std::string(kTinyWeightsSha) + ".incomplete")));
    EXPECT_FALSE(fs::exists(TinyDir() / "snapshots" / kTinyCommit / "model.safetensors"));
  }
  // A good server later completes the same cache.
  HubServer server(scratch_ / "second.jsonl");
  ASSERT_TRUE(server.started());
  const fs::path folder = ResolveModel("kvq-test/tiny", Options(server.endpoint()));
  EXPECT_EQ(ReadBytes(folder / "model.safetensors"),
            ReadBytes(TinyFixture() / "model.safetensors"));
}

// A full disk: the partial file is a link to /dev/full, where every write
// fails with ENOSPC.
TEST_F(HubTest, DiskFullSaysSo) {
  if (!fs::exists("/dev/full")) GTEST_SKIP() << "no /dev/full";
  HubServer server(log());
  ASSERT_TRUE(server.started());
  fs::create_directories(TinyDir() / "blobs");
  fs::create_symlink("/dev/full",
                     TinyDir() / "blobs" / (std::string(kTinyWeightsSha) + ".incomplete"));
  try {
    ResolveModel("kvq-test/tiny", Options(server.endpoint()));
    FAIL() << "no error";
  } catch (const RuntimeError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("disk full while downloading model.safetensors of kvq-test/tiny"),
              std::string::npos)
        << message;
    EXPECT_NE(message.find("HF_HUB_CACHE"), std::string::npos) << message;
  }
  EXPECT_FALSE(fs::exists(TinyDir() / "blobs" / kTinyWeightsSha));
  EXPECT_FALSE(fs::exists(TinyDir() / "snapshots" / kTinyCommit / "model.safetensors"));
}

TEST_F(HubTest, GatedModelNeedsTheToken) {
  HubServer server(log());
  ASSERT_TRUE(server.started());
  HubOptions options = Options(server.endpoint());
  const std::string without = ErrorOf([&] { ResolveModel("kvq-test/gated", options); });
  EXPECT_NE(without.find("HTTP 401"), std::string::npos) << without;
  EXPECT_NE(without.find("gated or private"), std::string::npos) << without;
  EXPECT_NE(without.find("set HF_TOKEN"), std::string::npos) << without;
  options.token = "hf_wrong";
  const std::string wrong = ErrorOf([&] { ResolveModel("kvq-test/gated", options); });
  EXPECT_NE(wrong.find("HTTP 403"), std::string::npos) << wrong;
  EXPECT_NE(wrong.find("has no access"), std::string::npos) << wrong;
  EXPECT_THROW(ResolveModel("kvq-test/gated", options), InputError);

  options.token = kToken;
  const fs::path folder = ResolveModel("kvq-test/gated", options);
  EXPECT_EQ(ReadBytes(folder / "model.safetensors"),
            ReadBytes(TinyFixture() / "model.safetensors"));
  EXPECT_EQ(server.Requests().back()["auth"], std::string("Bearer ") + kToken);
}

TEST_F(HubTest, UnknownModelRevisionOrFileSaySo) {
  HubServer server(log());
  ASSERT_TRUE(server.started());
  const HubOptions options = Options(server.endpoint());
  const std::string model = ErrorOf([&] { ResolveModel("kvq-test/nope", options); });
  EXPECT_NE(model.find("--model kvq-test/nope: no such model"), std::string::npos) << model;
  EXPECT_NE(model.find("HTTP 404"), std::string::npos) << model;
  const std::string revision = ErrorOf([&] { ResolveModel("kvq-test/tiny@v9", options); });
  EXPECT_NE(revision.find("kvq-test/tiny@v9: no such revision"), std::string::npos) << revision;
  const std::string weights = ErrorOf([&] { ResolveModel("kvq-test/no-weights", options); });
  EXPECT_NE(weights.find("neither model.safetensors nor model.safetensors.index.json"),
            std::string::npos)
      << weights;
  EXPECT_THROW(ResolveModel("kvq-test/nope", options), InputError);
  EXPECT_FALSE(fs::exists(cache() / "models--kvq-test--nope" / "snapshots"));
}

TEST_F(HubTest, OfflineNeverTouchesTheNetwork) {
  HubServer server(log());
  ASSERT_TRUE(server.started());
  HubOptions offline = Options(server.endpoint());
  offline.offline = true;
  const std::string message = ErrorOf([&] { ResolveModel("kvq-test/tiny", offline); });
  EXPECT_NE(message.find("not in the Hugging Face cache"), std::string::npos) << message;
  EXPECT_NE(message.find("(--offline)"), std::string::npos) << message;
  EXPECT_NE(message.find("huggingface-cli download kvq-test/tiny"), std::string::npos) << message;
  EXPECT_NE(message.find("--model DIR"), std::string::npos) << message;
  EXPECT_TRUE(server.Requests().empty());

  const fs::path online = ResolveModel("kvq-test/tiny", Options(server.endpoint()));
  const size_t requests = server.Requests().size();
  // Offline accepts a snapshot whose optional files were never looked up.
  fs::remove_all(TinyDir() / ".no_exist");
  EXPECT_EQ(ResolveModel("kvq-test/tiny", offline), online);
  EXPECT_EQ(server.Requests().size(), requests);
}

TEST_F(HubTest, OfflineFromTheEnvironment) {
  HubServer server(log());
  ASSERT_TRUE(server.started());
  const ScopedEnv env("HF_HUB_OFFLINE", "1");
  HubOptions options = Options(server.endpoint());
  options.offline.reset();
  const std::string message = ErrorOf([&] { ResolveModel("kvq-test/tiny", options); });
  EXPECT_NE(message.find("HF_HUB_OFFLINE is set"), std::string::npos) << message;
  EXPECT_TRUE(server.Requests().empty());
}

TEST_F(HubTest, UnreachableHubFailsFastWithAHint) {
  const std::string endpoint = "http://127.0.0.1:" + std::to_string(ClosedPort());
  const auto start = std::chrono::steady_clock::now();
  const std::string message = ErrorOf([&] { ResolveModel("kvq-test/tiny", Options(endpoint)); });
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  EXPECT_NE(message.find("cannot reach " + endpoint), std::string::npos) << message;
  EXPECT_NE(message.find("huggingface-cli download kvq-test/tiny"), std::string::npos) << message;
  EXPECT_THROW(ResolveModel("kvq-test/tiny", Options(endpoint)), RuntimeError);
}

TEST_F(HubTest, UnreachableHubFallsBackToTheCache) {
  fs::path folder;
  {
    HubServer server(log());
    ASSERT_TRUE(server.started());
    folder = ResolveModel("kvq-test/tiny", Options(server.endpoint()));
  }
  // Without the .no_exist records a strict cache hit is impossible, so kvq
  // asks the Hub, finds it unreachable, and uses the cached snapshot.
  fs::remove_all(TinyDir() / ".no_exist");
  const std::string endpoint = "http://127.0.0.1:" + std::to_string(ClosedPort());
  EXPECT_EQ(ResolveModel("kvq-test/tiny", Options(endpoint)), folder);
}

// A cache laid out by hand as huggingface_hub writes it is used as is, with
// no request: the endpoint is unreachable, so any request would fail.
TEST_F(HubTest, HandMadeHubCacheIsUsedAsIs) {
  const fs::path dir = cache() / "models--Org--Model";
  const std::string commit = "0123456789abcdef0123456789abcdef01234567";
  fs::create_directories(dir / "refs");
  fs::create_directories(dir / "blobs");
  fs::create_directories(dir / "snapshots" / commit);
  std::ofstream(dir / "refs/main") << commit;
  const std::map<std::string, std::string> files = {
      {"config.json", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"},
      {"tokenizer.json", "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"},
      {"tokenizer_config.json", "cccccccccccccccccccccccccccccccccccccccc"},
      {"generation_config.json", "dddddddddddddddddddddddddddddddddddddddd"},
      {"model.safetensors", kTinyWeightsSha},
  };
  for (const auto& [name, etag] : files) {
    const fs::path source =
        fs::exists(TinyFixture() / name) ? TinyFixture() / name : TinyFixture() / "config.json";
    fs::copy_file(source, dir / "blobs" / etag);
    fs::create_symlink(fs::path("../../blobs") / etag, dir / "snapshots" / commit / name);
  }
  const std::string endpoint = "http://127.0.0.1:" + std::to_string(ClosedPort());
  HubOptions options = Options(endpoint);
  const fs::path expected = dir / "snapshots" / commit;
  EXPECT_EQ(ResolveModel("Org/Model", options), expected);
  EXPECT_EQ(ResolveModel("Org/Model@" + commit, options), expected);
  EXPECT_EQ(ReadBytes(expected / "model.safetensors"),
            ReadBytes(TinyFixture() / "model.safetensors"));
  // Not cached: another revision needs the network.
  EXPECT_NE(ErrorOf([&] { ResolveModel("Org/Model@dev", options); }).find("cannot reach"),
            std::string::npos);
}

TEST(HubEnvironment, CacheDirFollowsTheHuggingFaceVariables) {
  const ScopedEnv home("HOME", "/home/someone");
  const ScopedEnv xdg("XDG_CACHE_HOME", std::nullopt);
  {
    const ScopedEnv hub_cache("HF_HUB_CACHE", std::nullopt);
    const ScopedEnv hf_home("HF_HOME", std::nullopt);
    EXPECT_EQ(HubCacheDir({}), fs::path("/home/someone/.cache/huggingface/hub"));
    const ScopedEnv xdg_set("XDG_CACHE_HOME", "/xdg");
    EXPECT_EQ(HubCacheDir({}), fs::path("/xdg/huggingface/hub"));
  }
  {
    const ScopedEnv hub_cache("HF_HUB_CACHE", std::nullopt);
    const ScopedEnv hf_home("HF_HOME", "~/hf");
    EXPECT_EQ(HubCacheDir({}), fs::path("/home/someone/hf/hub"));
  }
  const ScopedEnv hf_home("HF_HOME", "/hf");
  const ScopedEnv hub_cache("HF_HUB_CACHE", "/elsewhere/hub");
  EXPECT_EQ(HubCacheDir({}), fs::path("/elsewhere/hub"));
  HubOptions options;
  options.cache_dir = "/explicit";
  EXPECT_EQ(HubCacheDir(options), fs::path("/explicit"));
}

// The token file is read as every other input: a regular file of bounded
// size, anything else refused by name at once (a FIFO would block an
// unbounded read forever); no file at all means no token.
TEST(HubEnvironment, TokenFileIsReadOnlyWhenRegularAndSmall) {
  const test::ScratchDir dir;
  const ScopedEnv hf_token("HF_TOKEN", std::nullopt);
  const ScopedEnv legacy_token("HUGGING_FACE_HUB_TOKEN", std::nullopt);
  HubOptions options;
  options.offline = true;
  options.cache_dir = dir / "cache";
  const auto token_from = [&](const fs::path& file) {
    const ScopedEnv token_path("HF_TOKEN_PATH", file.string());
    return hub::ReadSettings(options).token;
  };
  EXPECT_EQ(token_from(dir / "absent"), "");
  WriteTextFileAtomic(dir / "token", "  hf_abc\n");
  EXPECT_EQ(token_from(dir / "token"), "hf_abc");

  ASSERT_EQ(::mkfifo((dir / "fifo").c_str(), 0600), 0);
  const auto start = std::chrono::steady_clock::now();
  const std::string fifo = ErrorOf([&] { token_from(dir / "fifo"); });
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  EXPECT_NE(fifo.find("fifo: is a FIFO, not a regular file"), std::string::npos) << fifo;
  EXPECT_THROW(token_from(dir / "fifo"), InputError);

  fs::create_directory(dir / "folder");
  const std::string folder = ErrorOf([&] { token_from(dir / "folder"); });
  EXPECT_NE(folder.find("folder: is a folder, not a regular file"), std::string::npos) << folder;

  WriteTextFileAtomic(dir / "huge", std::string(1 << 20, 'x'));
  const std::string huge = ErrorOf([&] { token_from(dir / "huge"); });
  EXPECT_NE(huge.find("huge: 1048576 bytes, more than the 65536 bytes"), std::string::npos) << huge;
}

// `kvq download` end to end, configured through the environment only.
TEST_F(HubTest, KvqDownloadEndToEnd) {
  HubServer server(log());
  ASSERT_TRUE(server.started());
  const CliHubEnvironment env(cache(), server.endpoint(), scratch_ / "no-token");

  const auto not_cached = test::RunKvq("download --model kvq-test/sharded --offline");
  EXPECT_EQ(not_cached.exit_code, 1) << not_cached.output;
  EXPECT_NE(not_cached.output.find("huggingface-cli download kvq-test/sharded"), std::string::npos)
      << not_cached.output;
  EXPECT_TRUE(server.Requests().empty());

  const auto result = test::RunKvq("download --model kvq-test/sharded");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const fs::path folder = cache() / "models--kvq-test--sharded/snapshots" / kShardedCommit;
  EXPECT_EQ(result.output, folder.string() + "\n");
  EXPECT_EQ(ReadBytes(folder / "model-00002-of-00002.safetensors"),
            ReadBytes(ShardedFixture() / "model-00002-of-00002.safetensors"));

  const auto cached = test::RunKvq("download --model kvq-test/sharded --offline");
  EXPECT_EQ(cached.exit_code, 0) << cached.output;
  EXPECT_EQ(cached.output, folder.string() + "\n");

  const auto missing = test::RunKvq("download --model kvq-test/nope");
  EXPECT_EQ(missing.exit_code, 2) << missing.output;
  EXPECT_NE(missing.output.find("kvq: error: --model kvq-test/nope: no such model"),
            std::string::npos)
      << missing.output;
}

TEST_F(HubTest, CaptureByHubIdEndToEnd) {
  HubServer server(log());
  ASSERT_TRUE(server.started());
  const CliHubEnvironment env(cache(), server.endpoint(), scratch_ / "no-token");

  const fs::path out = scratch_ / "dump.safetensors";
  const std::string args = "capture --model kvq-test/sharded --dtype f32 --input-ids " +
                           (ShardedFixture() / "input_ids.json").string() + " --out " +
                           out.string();
  const auto result = test::RunKvq(args);
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const KvDump dump = KvDump::Open(out);
  EXPECT_EQ(dump.info().model, "kvq-test/sharded");
  EXPECT_EQ(dump.info().num_layers, 2);
  // The same dump as from the fixture folder itself.
  const fs::path local = scratch_ / "local.safetensors";
  ASSERT_EQ(
      test::RunKvq("capture --model " + ShardedFixture().string() + " --dtype f32 --input-ids " +
                   (ShardedFixture() / "input_ids.json").string() + " --out " + local.string())
          .exit_code,
      0);
  const KvDump reference = KvDump::Open(local);
  std::vector<float> a(2 * 3 * 600 * 16), b(a.size());
  dump.ReadQ(1, std::span<float>(a.data(), 6 * 600 * 16));
  reference.ReadQ(1, std::span<float>(b.data(), 6 * 600 * 16));
  EXPECT_EQ(a, b);
  // A second run is served from the cache, offline.
  const size_t requests = server.Requests().size();
  const auto again = test::RunKvq(args + " --offline");
  EXPECT_EQ(again.exit_code, 0) << again.output;
  EXPECT_EQ(server.Requests().size(), requests);
}

}  // namespace
}  // namespace kvq
