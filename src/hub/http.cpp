#include "hub/http.h"

#include <curl/curl.h>

#include <algorithm>
#include <cctype>
#include <memory>
#include <mutex>

#include "kvq/common/error.h"
#include "kvq/version.h"

namespace kvq::hub {
namespace {

struct Context {
  const BodySink* body;
  const TransferProgress* progress;
  CURL* curl;
  HttpResult* result;
};

size_t OnHeader(char* data, size_t size, size_t count, void* user) {
  auto* context = static_cast<Context*>(user);
  const std::string_view line(data, size * count);
  // A new status line starts the headers of another response (a redirect
  // followed): keep only the last response's.
  if (line.rfind("HTTP/", 0) == 0) {
    context->result->headers.clear();
    return line.size();
  }
  const size_t colon = line.find(':');
  if (colon == std::string_view::npos) return line.size();
  std::string key(line.substr(0, colon));
  std::transform(key.begin(), key.end(), key.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  std::string_view value = line.substr(colon + 1);
  while (!value.empty() && std::isspace(static_cast<unsigned char>(value.front()))) {
    value.remove_prefix(1);
  }
  while (!value.empty() && std::isspace(static_cast<unsigned char>(value.back()))) {
    value.remove_suffix(1);
  }
  context->result->headers[key] = std::string(value);
  return line.size();
}

size_t OnBody(char* data, size_t size, size_t count, void* user) {
  auto* context = static_cast<Context*>(user);
  long status = 0;
  curl_easy_getinfo(context->curl, CURLINFO_RESPONSE_CODE, &status);
  const size_t bytes = size * count;
  if (*context->body && !(*context->body)(std::string_view(data, bytes), status)) return 0;
  return bytes;
}

int OnProgress(void* user, curl_off_t expected, curl_off_t received, curl_off_t, curl_off_t) {
  auto* context = static_cast<Context*>(user);
  if (*context->progress) {
    (*context->progress)(static_cast<uint64_t>(received), static_cast<uint64_t>(expected));
  }
  return 0;
}

bool IsUnreachable(CURLcode code) {
  return code == CURLE_COULDNT_RESOLVE_HOST || code == CURLE_COULDNT_RESOLVE_PROXY ||
         code == CURLE_COULDNT_CONNECT || code == CURLE_SSL_CONNECT_ERROR;
}

}  // namespace

std::string HttpResult::Header(const std::string& lower_case_name) const {
  const auto it = headers.find(lower_case_name);
  return it == headers.end() ? std::string() : it->second;
}

HttpResult Perform(const HttpRequest& request, const BodySink& body,
                   const TransferProgress& progress) {
  static std::once_flag initialized;
  std::call_once(initialized, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });

  std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> curl(curl_easy_init(), curl_easy_cleanup);
  if (!curl) ThrowRuntime("cannot initialise libcurl");
  CURL* handle = curl.get();

  HttpResult result;
  Context context{&body, &progress, handle, &result};
  char error[CURL_ERROR_SIZE] = {};
  const std::string user_agent = std::string("kvq/") + kVersion;
  curl_slist* headers = nullptr;
  const std::string authorization = "Authorization: Bearer " + request.token;
  if (!request.token.empty()) headers = curl_slist_append(headers, authorization.c_str());
  std::unique_ptr<curl_slist, decltype(&curl_slist_free_all)> header_list(headers,
                                                                          curl_slist_free_all);
  const std::string range = std::to_string(request.range_from) + "-";

  curl_easy_setopt(handle, CURLOPT_URL, request.url.c_str());
  curl_easy_setopt(handle, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(handle, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(handle, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(handle, CURLOPT_USERAGENT, user_agent.c_str());
  curl_easy_setopt(handle, CURLOPT_ERRORBUFFER, error);
  curl_easy_setopt(handle, CURLOPT_CONNECTTIMEOUT, request.connect_timeout_seconds);
  if (request.total_timeout_seconds > 0) {
    curl_easy_setopt(handle, CURLOPT_TIMEOUT, request.total_timeout_seconds);
  }
  // A stalled transfer (under 1 byte/s for a minute) is a failure, not a hang.
  curl_easy_setopt(handle, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(handle, CURLOPT_LOW_SPEED_TIME, 60L);
  if (headers) curl_easy_setopt(handle, CURLOPT_HTTPHEADER, headers);
  if (request.head) curl_easy_setopt(handle, CURLOPT_NOBODY, 1L);
  if (request.range_from > 0) curl_easy_setopt(handle, CURLOPT_RANGE, range.c_str());
  // libcurl drops the Authorization header when a redirect leaves the host
  // (CURLOPT_UNRESTRICTED_AUTH stays off), so the token never reaches the CDN.
  curl_easy_setopt(handle, CURLOPT_FOLLOWLOCATION, request.follow_redirects ? 1L : 0L);
  curl_easy_setopt(handle, CURLOPT_MAXREDIRS, 10L);
  curl_easy_setopt(handle, CURLOPT_HEADERFUNCTION, OnHeader);
  curl_easy_setopt(handle, CURLOPT_HEADERDATA, &context);
  curl_easy_setopt(handle, CURLOPT_WRITEFUNCTION, OnBody);
  curl_easy_setopt(handle, CURLOPT_WRITEDATA, &context);
  curl_easy_setopt(handle, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(handle, CURLOPT_XFERINFOFUNCTION, OnProgress);
  curl_easy_setopt(handle, CURLOPT_XFERINFODATA, &context);

  const CURLcode code = curl_easy_perform(handle);
  curl_easy_getinfo(handle, CURLINFO_RESPONSE_CODE, &result.status);
  result.transport_ok = code == CURLE_OK;
  if (!result.transport_ok) {
    result.unreachable = IsUnreachable(code);
    if (code == CURLE_OPERATION_TIMEDOUT && result.status == 0) result.unreachable = true;
    result.transport_error = error[0] ? std::string(error) : curl_easy_strerror(code);
  }
  return result;
}

std::string Origin(std::string_view url) {
  const size_t scheme_end = url.find("://");
  if (scheme_end == std::string_view::npos) return {};
  const size_t host_end = url.find('/', scheme_end + 3);
  return std::string(url.substr(0, host_end));
}

std::string PercentEncode(std::string_view text, bool keep_slash) {
  static constexpr char kDigits[] = "0123456789ABCDEF";
  std::string encoded;
  for (const unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' ||
        (keep_slash && c == '/')) {
      encoded.push_back(static_cast<char>(c));
    } else {
      encoded.push_back('%');
      encoded.push_back(kDigits[c >> 4]);
      encoded.push_back(kDigits[c & 15]);
    }
  }
  return encoded;
}

}  // namespace kvq::hub
