#include "tokenizer/added_tokens.h"

#include <algorithm>
#include <string>

namespace kvq {

void AddedTokenMatcher::Build(std::span<const AddedToken> tokens) {
  tokens_ = tokens;
  // The reversed contents side by side in one buffer (the sort and the trie
  // walk below touch them in sorted order, not in file order).
  size_t total = 0;
  for (const AddedToken& token : tokens) total += token.content.size();
  std::string buffer;
  buffer.reserve(total);  // the views below stay valid: no reallocation
  struct Entry {
    std::string_view reversed;
    uint32_t token;
  };
  std::vector<Entry> entries;
  for (size_t i = 0; i < tokens.size(); ++i) {
    const std::string& content = tokens[i].content;
    if (content.empty()) continue;
    const size_t at = buffer.size();
    buffer.append(content.rbegin(), content.rend());
    entries.push_back(
        {std::string_view(buffer).substr(at, content.size()), static_cast<uint32_t>(i)});
  }
  // Equal contents end up side by side, the first token in file order first.
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    const int c = a.reversed.compare(b.reversed);
    return c != 0 ? c < 0 : a.token < b.token;
  });

  first_child_.assign(1, 0);
  child_count_.assign(1, 0);
  label_.assign(1, 0);
  out_token_.assign(1, kNone);
  // Breadth first: node n holds the sorted tokens [lo, hi), which share
  // their first `depth` reversed bytes. Nodes are numbered in the order
  // they are queued, so pending[n] is node n and siblings are consecutive.
  struct Pending {
    uint32_t lo, hi, depth;
  };
  std::vector<Pending> pending{{0, static_cast<uint32_t>(entries.size()), 0}};
  for (size_t n = 0; n < pending.size(); ++n) {
    const Pending p = pending[n];
    uint32_t i = p.lo;
    // Tokens that end here sort before the longer ones sharing the prefix.
    for (; i < p.hi && entries[i].reversed.size() == p.depth; ++i) {
      if (out_token_[n] == kNone) out_token_[n] = static_cast<int32_t>(entries[i].token);
    }
    first_child_[n] = static_cast<uint32_t>(pending.size());
    while (i < p.hi) {
      const auto c = static_cast<uint8_t>(entries[i].reversed[p.depth]);
      uint32_t j = i + 1;
      while (j < p.hi && static_cast<uint8_t>(entries[j].reversed[p.depth]) == c) ++j;
      pending.push_back({i, j, p.depth + 1});
      first_child_.push_back(0);
      child_count_.push_back(0);
      label_.push_back(c);
      out_token_.push_back(kNone);
      i = j;
    }
    child_count_[n] = static_cast<uint16_t>(pending.size() - first_child_[n]);
  }
  root_child_.fill(kNone);
  for (uint32_t v = first_child_[kRoot]; v < first_child_[kRoot] + child_count_[kRoot]; ++v) {
    root_child_[label_[v]] = v;
  }

  // Failure links in breadth-first order: a node's link is shorter than the
  // node, so it and every link Step follows from it are set before it.
  fail_.assign(first_child_.size(), kRoot);
  for (uint32_t u = 0; u < first_child_.size(); ++u) {
    for (uint32_t v = first_child_[u]; v < first_child_[u] + child_count_[u]; ++v) {
      fail_[v] = u == kRoot ? kRoot : Step(fail_[u], label_[v]);
      if (out_token_[v] == kNone) out_token_[v] = out_token_[fail_[v]];
    }
  }
}

int64_t AddedTokenMatcher::Child(uint32_t node, uint8_t c) const {
  if (node == kRoot) return root_child_[c];
  const uint8_t* first = label_.data() + first_child_[node];
  const uint8_t* last = first + child_count_[node];
  const uint8_t* it = std::lower_bound(first, last, c);
  if (it == last || *it != c) return kNone;
  return first_child_[node] + (it - first);
}

uint32_t AddedTokenMatcher::Step(uint32_t node, uint8_t c) const {
  while (true) {
    const int64_t child = Child(node, c);
    if (child != kNone) return static_cast<uint32_t>(child);
    if (node == kRoot) return kRoot;
    node = fail_[node];
  }
}

std::vector<AddedTokenMatcher::Match> AddedTokenMatcher::FindAll(std::string_view text) const {
  std::vector<Match> matches;
  if (child_count_.empty() || child_count_[kRoot] == 0) return matches;
  // Right to left over the reversed tokens: after byte i the automaton is
  // at the longest reversed token prefix ending there, i.e. the longest
  // token prefix starting at i, and out_token_ is the longest whole token
  // starting at i. Collected in decreasing order of position.
  std::vector<Match> longest_at;
  uint32_t node = kRoot;
  for (size_t i = text.size(); i-- > 0;) {
    node = Step(node, static_cast<uint8_t>(text[i]));
    if (out_token_[node] != kNone) {
      longest_at.push_back({i, static_cast<size_t>(out_token_[node])});
    }
  }
  // Left to right: the leftmost match wins, the search resumes after it.
  size_t resume = 0;
  for (auto it = longest_at.rbegin(); it != longest_at.rend(); ++it) {
    if (it->begin < resume) continue;
    matches.push_back(*it);
    resume = it->begin + tokens_[it->token].content.size();
  }
  return matches;
}

}  // namespace kvq
