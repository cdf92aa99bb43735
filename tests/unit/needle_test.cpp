// kvq needle (docs/generate.md): the passkey prompt's construction (exact
// length, the key at the requested depth within one sentence, the same
// prompt for every strategy, reproducible keys), the scoring, and the CLI's
// CSV/JSON recomputed from its trials and from the library.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "kvq/common/error.h"
#include "kvq/common/io.h"
#include "kvq/generate/generate.h"
#include "kvq/generate/needle.h"
#include "kvq/tokenizer/tokenizer.h"
#include "svg_check.h"
#include "test_util.h"

namespace kvq {
namespace {

const Tokenizer& Qwen() {
  static const Tokenizer tokenizer =
      Tokenizer::Load(test::RepoDataDir() / "tokenizer/qwen2.5/tokenizer.json");
  return tokenizer;
}

bool StartsWith(const std::vector<int32_t>& ids, size_t at, const std::vector<int32_t>& part) {
  return at + part.size() <= ids.size() &&
         std::equal(part.begin(), part.end(), ids.begin() + static_cast<int64_t>(at));
}

TEST(NeedleTest, PromptHasTheExactLengthAndTheKeyAtItsDepth) {
  const Tokenizer& tok = Qwen();
  const std::vector<int32_t> task = tok.Encode(kNeedleTask);
  const std::vector<int32_t> question = tok.Encode(kNeedleQuestion);
  std::vector<int64_t> sentence_tokens;
  for (std::string_view s : kNeedleFiller) {
    sentence_tokens.push_back(static_cast<int64_t>(tok.Encode(s).size()));
  }
  const int64_t longest = *std::max_element(sentence_tokens.begin(), sentence_tokens.end());
  const int key = 48213;
  const std::vector<int32_t> needle = tok.Encode(NeedleSentence(key));
  const int64_t minimum = NeedleMinLength(tok, key);
  EXPECT_EQ(minimum, static_cast<int64_t>(task.size() + needle.size() + question.size()));
  for (int64_t length :
       {minimum, minimum + 1, minimum + 3, int64_t{200}, int64_t{1024}, int64_t{1537}}) {
    for (double depth : {0.0, 10.0, 25.0, 50.0, 75.0, 100.0}) {
      SCOPED_TRACE(::testing::Message() << "length " << length << " depth " << depth);
      const NeedlePrompt p = BuildNeedlePrompt(tok, length, depth, key);
      ASSERT_EQ(static_cast<int64_t>(p.ids.size()), length);
      EXPECT_TRUE(StartsWith(p.ids, 0, task));
      EXPECT_TRUE(StartsWith(p.ids, p.ids.size() - question.size(), question));
      EXPECT_EQ(p.filler_begin, static_cast<int64_t>(task.size()));
      ASSERT_EQ(p.needle_end - p.needle_begin, static_cast<int64_t>(needle.size()));
      EXPECT_TRUE(StartsWith(p.ids, static_cast<size_t>(p.needle_begin), needle));

      // Whole sentences fill the budget as far as they go; the cut sentence
      // is shorter than the next whole one would be.
      const int64_t budget = length - minimum;
      int64_t whole_tokens = 0;
      for (int64_t i = 0; i < p.whole_sentences; ++i) whole_tokens += sentence_tokens[i % 5];
      EXPECT_LE(whole_tokens, budget);
      EXPECT_GT(whole_tokens + sentence_tokens[p.whole_sentences % 5], budget);

      // The needle sits after round(depth * whole / 100) whole sentences:
      // its token offset in the filler is depth% of the whole sentences'
      // tokens, within one sentence.
      EXPECT_EQ(p.sentences_before,
                std::llround(depth / 100 * static_cast<double>(p.whole_sentences)));
      const double offset = static_cast<double>(p.needle_begin - p.filler_begin);
      EXPECT_LE(std::abs(offset - depth / 100 * static_cast<double>(whole_tokens)),
                static_cast<double>(longest));

      // As text: the task, the filler's sentences in order, the needle once,
      // and the question; the Qwen tokenizer encodes that text back to the
      // same ids (the pieces are cut where its pre-tokenizer splits).
      const std::string text = tok.Decode(p.ids);
      EXPECT_EQ(text.rfind(std::string(kNeedleTask), 0), 0u);
      EXPECT_TRUE(text.ends_with(kNeedleQuestion));
      const std::string sentence = NeedleSentence(key);
      ASSERT_NE(text.find(sentence), std::string::npos);
      EXPECT_EQ(text.find(sentence, text.find(sentence) + 1), std::string::npos);
      EXPECT_EQ(tok.Encode(text), p.ids);
    }
  }
}

TEST(NeedleTest, KeysAreReproducibleFiveDigitsPerSeedAndCell) {
  std::set<int> keys;
  for (uint64_t seed = 0; seed < 20; ++seed) {
    for (int64_t length : {1024, 2048}) {
      for (double depth : {0.0, 50.0}) {
        const int key = NeedleKey(seed, length, depth);
        EXPECT_EQ(key, NeedleKey(seed, length, depth));
        EXPECT_GE(key, 10000);
        EXPECT_LE(key, 99999);
        keys.insert(key);
      }
    }
  }
  EXPECT_GE(keys.size(), 75u);  // 80 cells; a collision or two at most.
}

TEST(NeedleTest, AnswerScoring) {
  EXPECT_TRUE(NeedleAnswerCorrect("48213", 48213));
  EXPECT_TRUE(NeedleAnswerCorrect(" 48213. Remember", 48213));
  EXPECT_TRUE(NeedleAnswerCorrect("\n 48213 is the", 48213));
  EXPECT_FALSE(NeedleAnswerCorrect(" 482139", 48213));  // A longer number.
  EXPECT_FALSE(NeedleAnswerCorrect(" 4821", 48213));
  EXPECT_FALSE(NeedleAnswerCorrect(" 48214", 48213));
  EXPECT_FALSE(NeedleAnswerCorrect(" is 48213", 48213));
  EXPECT_FALSE(NeedleAnswerCorrect("", 48213));
}

TEST(NeedleTest, RefusesBadLengthsAndDepths) {
  const Tokenizer& tok = Qwen();
  const int64_t minimum = NeedleMinLength(tok, 12345);
  EXPECT_THROW(BuildNeedlePrompt(tok, minimum - 1, 50, 12345), InputError);
  for (double depth : {-1.0, 100.5, std::nan("")}) {
    EXPECT_THROW(BuildNeedlePrompt(tok, 500, depth, 12345), InputError) << depth;
  }
}

// The answer's tokens but the last go through the model after the prompt:
// with max_position_embeddings 103 and 8 answer tokens the longest prompt is
// 96, which runs to the last position; 97 is refused before any trial.
TEST(NeedleTest, LongestLengthLeavesRoomForTheAnswer) {
  test::ScratchDir scratch;
  const auto model_dir = scratch / "model";
  const auto made = test::RunKvq("make-model --preset tiny --out " + model_dir.string());
  ASSERT_EQ(made.exit_code, 0) << made.output;
  nlohmann::json config = nlohmann::json::parse(ReadTextFile(model_dir / "config.json"));
  config["max_position_embeddings"] = 103;
  WriteTextFileAtomic(model_dir / "config.json", config.dump());
  Model model = Model::Load(model_dir);
  EXPECT_EQ(NeedleMaxLength(model.config(), 8), 96);
  EXPECT_EQ(NeedleMaxLength(model.config(), 1), 103);
  NeedleOptions options;
  options.answer_tokens = 8;
  options.depths = {50};
  options.seeds = 1;
  options.lengths = {96};
  int64_t trials = 0;
  RunNeedle(model, Qwen(), {}, options, [&](int64_t done, int64_t) { trials = done; });
  EXPECT_EQ(trials, 1);
  options.lengths = {97};
  try {
    RunNeedle(model, Qwen(), {}, options, [&](int64_t, int64_t) { ADD_FAILURE() << "ran"; });
    ADD_FAILURE() << "no error";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("--lengths: 97 is above 96, the longest prompt whose 8 "
                                         "answer tokens fit the model's max_position_embeddings "
                                         "(103)"),
              std::string::npos)
        << e.what();
  }
}

// One CLI run on a random-weight model with the Qwen tokenizer: every
// number in the JSON and CSV is recomputed from the library or the trials.
TEST(NeedleCliTest, JsonCsvAndSvgAgainstIndependentComputations) {
  test::ScratchDir scratch;
  const auto model_dir = scratch / "model";
  const auto made = test::RunKvq("make-model --preset tiny --out " + model_dir.string());
  ASSERT_EQ(made.exit_code, 0) << made.output;
  const std::string base = "needle --model " + model_dir.string() +
                           " --strategy int2:token --lengths 96,160 --depths 0,50,100 --seeds 2 ";
  const auto run =
      test::RunKvq(base + "--json " + (scratch / "n.json").string() + " --csv " +
                   (scratch / "n.csv").string() + " --svg " + (scratch / "n.svg").string());
  ASSERT_EQ(run.exit_code, 0) << run.output;
  const auto j = nlohmann::json::parse(ReadTextFile(scratch / "n.json"));
  const std::vector<std::string> strategies = {"fp16", "int2:token"};
  EXPECT_EQ(j.at("strategies").get<std::vector<std::string>>(), strategies);
  ASSERT_EQ(j.at("trials").size(), 2u * 3 * 2 * 2);

  Model model = Model::Load(model_dir);
  const Tokenizer& tok = Qwen();
  // Per (strategy, length, depth): [trials, correct], from the trials.
  std::map<std::tuple<std::string, int64_t, double>, std::pair<int, int>> counts;
  // The key and needle position of each prompt, which every strategy shares.
  std::map<std::tuple<int64_t, double, int>, std::pair<int, int64_t>> prompts;
  int checked = 0;
  for (const auto& t : j.at("trials")) {
    const std::string strategy = t.at("strategy");
    const int64_t length = t.at("length");
    const double depth = t.at("depth");
    const int seed = t.at("seed");
    const int key = t.at("key");
    const std::string answer = t.at("answer");
    EXPECT_EQ(key, NeedleKey(static_cast<uint64_t>(seed), length, depth));
    EXPECT_EQ(t.at("correct").get<bool>(), NeedleAnswerCorrect(answer, key));
    const NeedlePrompt prompt = BuildNeedlePrompt(tok, length, depth, key);
    EXPECT_EQ(t.at("needle_position"), prompt.needle_begin);
    const auto [it, inserted] =
        prompts.try_emplace({length, depth, seed}, key, prompt.needle_begin);
    if (!inserted) {
      EXPECT_EQ(it->second.first, key);
      EXPECT_EQ(it->second.second, prompt.needle_begin);
    }
    auto& c = counts[{strategy, length, depth}];
    ++c.first;
    c.second += t.at("correct").get<bool>();
    // The answer is the greedy continuation of the prompt with that cache:
    // re-run a few trials through the library.
    if (seed == 1 && depth == 50.0) {
      const Strategy s = Strategy::Parse(strategy);
      const DecodeRun again = Generate(model, prompt.ids, &s, 8, {}, false);
      EXPECT_EQ(answer, tok.Decode(again.tokens)) << strategy << " " << length;
      ++checked;
    }
  }
  EXPECT_EQ(checked, 4);
  EXPECT_EQ(prompts.size(), 2u * 3 * 2);

  // Cells: JSON and CSV against the counts.
  const std::string csv = ReadTextFile(scratch / "n.csv");
  std::string expected_csv = "strategy,length,depth,trials,correct,accuracy\n";
  size_t i = 0;
  ASSERT_EQ(j.at("cells").size(), 2u * 2 * 3);
  for (const std::string& s : strategies) {
    for (int64_t length : {96, 160}) {
      for (double depth : {0.0, 50.0, 100.0}) {
        const auto [trials, correct] = counts.at({s, length, depth});
        EXPECT_EQ(trials, 2);
        const auto& cell = j.at("cells")[i++];
        EXPECT_EQ(cell.at("strategy"), s);
        EXPECT_EQ(cell.at("length"), length);
        EXPECT_EQ(cell.at("depth"), depth);
        EXPECT_EQ(cell.at("trials"), trials);
        EXPECT_EQ(cell.at("correct"), correct);
        EXPECT_DOUBLE_EQ(cell.at("accuracy").get<double>(), correct / 2.0);
        expected_csv += s + "," + std::to_string(length) + "," +
                        std::to_string(static_cast<int>(depth)) + ",2," + std::to_string(correct) +
                        "," +
                        (correct == 0   ? "0"
                         : correct == 1 ? "0.5"
                                        : "1") +
                        "\n";
      }
    }
  }
  EXPECT_EQ(csv, expected_csv);

  const std::string svg = ReadTextFile(scratch / "n.svg");
  EXPECT_EQ(test::XmlError(svg), "");
  for (const std::string& s : strategies) EXPECT_NE(svg.find(">" + s), std::string::npos) << s;
  EXPECT_NE(svg.find("int2:token: 160 tokens, depth 50%"), std::string::npos);

  // Reproducible: a second run over part of the grid gives the same trials.
  const auto again = test::RunKvq("needle --model " + model_dir.string() +
                                  " --strategy int2:token --lengths 160 --depths 100 --seeds 2"
                                  " --json " +
                                  (scratch / "m.json").string());
  ASSERT_EQ(again.exit_code, 0) << again.output;
  const auto m_json = nlohmann::json::parse(ReadTextFile(scratch / "m.json"));
  ASSERT_EQ(m_json.at("trials").size(), 4u);
  for (const auto& t : m_json.at("trials")) {
    const auto same =
        std::find_if(j.at("trials").begin(), j.at("trials").end(), [&](const auto& u) {
          return u.at("strategy") == t.at("strategy") && u.at("length") == t.at("length") &&
                 u.at("depth") == t.at("depth") && u.at("seed") == t.at("seed");
        });
    ASSERT_NE(same, j.at("trials").end());
    EXPECT_EQ(*same, t);
  }

  // Refusals: a clear one-line message naming the flag, exit 2, no output.
  auto refused = [&](const std::string& args, const std::string& says) {
    const auto r = test::RunKvq(args + " --csv " + (scratch / "x.csv").string());
    EXPECT_EQ(r.exit_code, 2) << args << "\n" << r.output;
    EXPECT_NE(r.output.find(says), std::string::npos) << r.output;
    EXPECT_FALSE(std::filesystem::exists(scratch / "x.csv"));
  };
  const std::string m = "needle --model " + model_dir.string() + " --strategy int8:token";
  refused(m + " --lengths 40000 --depths 50 --seeds 1",
          "--lengths: 40000 is above 32761, the longest prompt whose 8 answer tokens fit the "
          "model's max_position_embeddings (32768)");
  // The longest prompt whose answer fits is the limit itself: one more token
  // would need position 32768 for the answer's last fed-back token.
  refused(m + " --lengths 32762 --depths 50 --seeds 1", "--lengths: 32762 is above 32761");
  refused(m + " --lengths 96 --depths 120", "--depths: 120 is not a percentage in [0, 100]");
  refused(m + " --lengths 10 --depths 50", "--lengths: 10 tokens is shorter");
  const auto fixture = test::DataDir() / "qwen2-tiny/tied-bf16";
  refused("needle --model " + fixture.string() + " --strategy int8:token --lengths 96",
          "no tokenizer.json; kvq needle builds its prompts from text");
}

}  // namespace
}  // namespace kvq
