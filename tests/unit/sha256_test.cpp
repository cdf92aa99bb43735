// SHA-256 against the FIPS 180-4 / NIST example vectors and sha256sum.
#include "kvq/common/sha256.h"

#include <gtest/gtest.h>

#include <string>

#include "kvq/common/error.h"
#include "test_util.h"

namespace kvq {
namespace {

TEST(Sha256, NistVectors) {
  EXPECT_EQ(Sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(Sha256Hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(
      Sha256Hex("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnop"
                "qklmnopqrlmnopqrsmnopqrstnopqrstu"),
      "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
}

// One million 'a', fed in uneven pieces so that every buffering path runs.
TEST(Sha256, MillionAInPieces) {
  const std::string block(1000, 'a');
  Sha256 hasher;
  size_t fed = 0;
  uint64_t state = 0x9e3779b97f4a7c15ull;
  while (fed < 1000000) {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    const size_t piece = std::min<size_t>({state % 200, block.size(), 1000000 - fed});
    hasher.Update(block.data(), piece);
    fed += piece;
  }
  EXPECT_EQ(Sha256::Hex(hasher.Finish()),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

// Lengths around the 55/56/64-byte padding boundaries agree between one-shot
// and byte-at-a-time hashing (reference values from Python's hashlib).
TEST(Sha256, PaddingBoundaries) {
  const std::pair<size_t, const char*> cases[] = {
      {55, "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318"},
      {56, "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a"},
      {63, "7d3e74a05d7db15bce4ad9ec0658ea98e3f06eeecf16b4c6fff2da457ddc2f34"},
      {64, "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb"},
      {65, "635361c48bb9eab14198e76ea8ab7f1a41685d6ad62aa9146d301d4f17eb0ae0"},
  };
  for (const auto& [length, expected] : cases) {
    const std::string text(length, 'a');
    EXPECT_EQ(Sha256Hex(text), expected) << length;
    Sha256 hasher;
    for (char c : text) hasher.Update(&c, 1);
    EXPECT_EQ(Sha256::Hex(hasher.Finish()), expected) << length;
  }
}

TEST(Sha256, FileMatchesSha256sum) {
  EXPECT_EQ(Sha256FileHex(test::DataDir() / "qwen2-tiny/tied-bf16/model.safetensors"),
            "8ef3028943b2b9c60b3dbcecdacf44b0fc1818fa5b98997d4065a1ced6d3dc6f");
  EXPECT_THROW(Sha256FileHex(test::DataDir() / "no-such-file"), InputError);
}

}  // namespace
}  // namespace kvq
