#pragma once
// A thin libcurl wrapper: one request, its status and headers, the body
// streamed to a callback. Errors of the transport (no route, reset
// connection) are returned, not thrown, so the caller can resume or fall back
// to the cache.
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>

namespace kvq::hub {

struct HttpRequest {
  std::string url;
  bool head = false;  // HEAD instead of GET
  bool follow_redirects = false;
  std::string token;        // sent as "Authorization: Bearer TOKEN" when not empty
  uint64_t range_from = 0;  // > 0: "Range: bytes=N-"
  long connect_timeout_seconds = 10;
  long total_timeout_seconds = 0;  // 0: none (a large download); stalls still abort
};

struct HttpResult {
  bool transport_ok = false;  // a complete response was received
  // The failure was reaching the server at all (DNS, refused, connect
  // timeout): the network is missing, not the file.
  bool unreachable = false;
  std::string transport_error;                 // libcurl's message when !transport_ok
  long status = 0;                             // of the last response (after redirects)
  std::map<std::string, std::string> headers;  // of the last response; keys lower-case
  std::string Header(const std::string& lower_case_name) const;
};

// Receives body bytes of the final response with its status; returns false to
// abort the transfer (a write error).
using BodySink = std::function<bool(std::string_view bytes, long status)>;
// Bytes received so far in this transfer and its expected total (0: unknown).
using TransferProgress = std::function<void(uint64_t received, uint64_t expected)>;

HttpResult Perform(const HttpRequest& request, const BodySink& body,
                   const TransferProgress& progress);

// "scheme://host[:port]" of a URL, for comparing origins.
std::string Origin(std::string_view url);
// Percent-encodes all but unreserved characters; keeps '/' when asked.
std::string PercentEncode(std::string_view text, bool keep_slash);

}  // namespace kvq::hub
