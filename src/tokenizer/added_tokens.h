#pragma once
// Finds added tokens (<|im_start|>, ...) in raw text by Hugging Face's rule:
// the leftmost match, and among the tokens that start there the longest;
// the search goes on after its end. (Hugging Face builds an Aho-Corasick
// automaton with MatchKind::LeftmostLongest.)
//
// Time is linear in the text and in the added tokens' bytes, however many
// tokens there are and however they overlap: one Aho-Corasick pass over the
// reversed text with the reversed tokens gives, for every position, the
// longest token that starts there; a forward pass then takes the leftmost
// match, skips past its end, and so on.
#include <array>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "kvq/tokenizer/tokenizer.h"

namespace kvq {

class AddedTokenMatcher {
 public:
  struct Match {
    size_t begin = 0;  // byte offset in the text
    size_t token = 0;  // index into the tokens given to Build
  };

  // Tokens with empty content are never matched; among tokens with the same
  // content the first one wins. `tokens` must outlive the matcher.
  void Build(std::span<const AddedToken> tokens);

  // The matches in `text`, left to right, none overlapping.
  std::vector<Match> FindAll(std::string_view text) const;

 private:
  static constexpr uint32_t kRoot = 0;
  static constexpr int32_t kNone = -1;

  // The node reached from `node` by byte `c`, following failure links.
  uint32_t Step(uint32_t node, uint8_t c) const;
  // The child of `node` labelled `c`, or kNone.
  int64_t Child(uint32_t node, uint8_t c) const;

  std::span<const AddedToken> tokens_;
  // The trie of the reversed contents, nodes in breadth-first order so that
  // the children of a node are consecutive: [first_child, + child_count),
  // their labels in increasing byte order.
  std::vector<uint32_t> first_child_;
  std::vector<uint16_t> child_count_;
  std::vector<uint8_t> label_;
  std::vector<uint32_t> fail_;  // longest proper suffix that is a trie node
  // The longest reversed token that is a suffix of the node's string (the
  // node's own token first), as an index into tokens_, or kNone.
  std::vector<int32_t> out_token_;
  std::array<int64_t, 256> root_child_{};  // the root's children, direct
};

}  // namespace kvq
