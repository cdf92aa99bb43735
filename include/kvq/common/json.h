#pragma once
// The one JSON entry point every reader uses (config.json, tokenizer.json,
// plan files, safetensors headers, shard indexes, run folders, dump
// metadata): nesting is bounded before the parser sees the text, so a
// 200,000-level document cannot exhaust the stack in parsing, in walking or
// in formatting a message, and a key given twice in one object is an error
// rather than "last one wins".
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace kvq {

// Deepest nesting of arrays and objects any kvq input may have. Hugging
// Face files use at most 6 or so; plan files 4.
inline constexpr int kMaxJsonDepth = 64;

// Throws InputError "<what>: JSON nested deeper than 64 levels (...)" when
// the brackets outside strings nest deeper than `max_depth`. Linear, no
// recursion; says nothing about whether the text is otherwise valid.
void CheckJsonNesting(std::string_view text, const std::string& what,
                      int max_depth = kMaxJsonDepth);

// Parses `text` after CheckJsonNesting. A key repeated within one object
// throws InputError "<what>: key 'k' appears twice in one object".
// Syntax errors propagate as nlohmann::json::parse_error, for the caller to
// word (each reader names its file its own way).
template <class Json = nlohmann::json>
Json ParseJson(std::string_view text, const std::string& what);

// The message part of a nlohmann exception, without its "[json.exception.
// parse_error.101] " prefix.
std::string JsonErrorText(const std::exception& e);

}  // namespace kvq
