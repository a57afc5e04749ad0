// N-gram hasher tests for sanitizer builds: MurmurHash3 and whole rows
// against values scikit-learn computed (sklearn.utils.murmurhash3_32,
// HashingVectorizer(norm=None)), the L2 norm, invalid UTF-8, a text of 10 MB,
// batches split over threads against one thread, and many threads hashing
// with one hasher at once (TSan).
#include <cmath>
#include <cstdio>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "check.hpp"
#include "errors.hpp"
#include "ngrams.hpp"

using namespace fastroute;

namespace {

NgramOptions options(NgramUnit unit, int min_n, int max_n, NgramNorm norm) {
  NgramOptions o;
  o.unit = unit;
  o.min_n = min_n;
  o.max_n = max_n;
  o.n_features = 1 << 10;
  o.norm = norm;
  return o;
}

void murmurhash_matches_sklearn() {
  CHECK(NgramHasher::murmurhash3("") == 0);
  CHECK(NgramHasher::murmurhash3("a") == 1009084850);
  CHECK(NgramHasher::murmurhash3("ab") == -1681926305);
  CHECK(NgramHasher::murmurhash3("abc") == -1277324294);
  CHECK(NgramHasher::murmurhash3("abcd") == 1139631978);
  CHECK(NgramHasher::murmurhash3("hello world") == 1586663183);
  CHECK(NgramHasher::murmurhash3("\xcf\x82") == -237551212);  // final sigma
}

void word_bigrams_match_sklearn() {
  const NgramHasher hasher(options(NgramUnit::kWord, 1, 2, NgramNorm::kNone));
  SparseRows rows;
  hasher.hash_into("Hello, hello WORLD!", rows);
  CHECK((rows.indices == std::vector<std::int32_t>{583, 773, 783, 836}));
  CHECK((rows.values == std::vector<double>{2, -1, 1, -1}));
  CHECK((rows.indptr == std::vector<std::int64_t>{0, 4}));
}

void char_wb_with_final_sigma_and_dotted_i_matches_sklearn() {
  const NgramHasher hasher(options(NgramUnit::kCharWb, 2, 3, NgramNorm::kNone));
  SparseRows rows;
  hasher.hash_into("\xce\x9f\xce\x94\xce\x9f\xce\xa3 \xc4\xb0z", rows);  // "ΟΔΟΣ İz"
  CHECK((rows.indices == std::vector<std::int32_t>{72, 133, 139, 170, 243, 267, 314, 460, 512, 595, 643, 670, 671,
                                                   727, 793, 917}));
  CHECK((rows.values == std::vector<double>{-1, -1, 1, -1, 1, 1, 1, -1, -1, 1, 1, 1, 1, -1, 1, -1}));
}

void l2_rows_have_unit_norm_and_empty_texts_empty_rows() {
  const NgramHasher hasher(options(NgramUnit::kWord, 1, 3, NgramNorm::kL2));
  SparseRows rows;
  hasher.hash_into("the cat sat on the mat with the other cat", rows);
  hasher.hash_into("", rows);
  hasher.hash_into(" ! a ", rows);  // no token of two word characters
  double sum = 0;
  for (double v : rows.values) sum += v * v;
  CHECK(std::fabs(sum - 1.0) < 1e-12);
  CHECK(rows.rows() == 3);
  CHECK(rows.indptr[1] == rows.indptr[2] && rows.indptr[2] == rows.indptr[3]);
}

void invalid_utf8_throws_naming_the_byte_and_leaves_rows_alone() {
  const NgramHasher hasher(options(NgramUnit::kCharWb, 1, 4, NgramNorm::kL2));
  for (std::string_view bad : {std::string_view("ok \xff", 4), std::string_view("ab\xed\xa0\x80", 5),
                               std::string_view("\xc0\xaf", 2), std::string_view("x\xe2\x82", 3)}) {
    SparseRows rows;
    bool threw = false;
    try {
      hasher.hash_into(bad, rows);
    } catch (const InvalidInput& e) {
      threw = std::string(e.what()).find("invalid UTF-8 at byte") != std::string::npos;
    }
    CHECK(threw);
    CHECK(rows.rows() == 0 && rows.indices.empty());
  }
  const std::vector<std::string_view> batch{"fine", std::string_view("bad \xff", 5)};
  bool named_item = false;
  try {
    hasher.hash_batch(batch, 1);
  } catch (const InvalidInput& e) {
    named_item = std::string(e.what()).rfind("item 1: invalid UTF-8 at byte 4", 0) == 0;
  }
  CHECK(named_item);
}

void settings_out_of_range_throw() {
  for (auto change : {+[](NgramOptions& o) { o.min_n = 0; }, +[](NgramOptions& o) { o.max_n = 0; },
                      +[](NgramOptions& o) { o.max_n = kMaxNgramLength + 1; },
                      +[](NgramOptions& o) { o.n_features = 3000; }, +[](NgramOptions& o) { o.n_features = 1 << 23; }}) {
    NgramOptions o = options(NgramUnit::kWord, 1, 1, NgramNorm::kL2);
    change(o);
    bool threw = false;
    try {
      NgramHasher hasher(o);
    } catch (const InvalidInput&) {
      threw = true;
    }
    CHECK(threw);
  }
}

// Texts of every size, some Unicode, so batches split unevenly over threads.
std::vector<std::string> mixed_texts(std::size_t n) {
  const char* pieces[] = {"Solve for x: 3x + 5 = 20. ", "\xe4\xb8\xad\xe6\x96\x87\xe9\x97\xae\xe9\xa2\x98 ",
                          "\xce\xa3\xce\x9f\xce\xa6\xce\x99\xce\x91\xce\xa3 ", "def f(a, b): return a_b ", "\n\t "};
  std::vector<std::string> texts(n);
  for (std::size_t i = 0; i < n; ++i) {
    for (std::size_t j = 0; j < i % 37; ++j) texts[i] += pieces[(i * 7 + j) % 5];
  }
  return texts;
}

void batches_on_threads_equal_one_thread() {
  const NgramHasher hasher(options(NgramUnit::kCharWb, 2, 5, NgramNorm::kL2));
  const std::vector<std::string> texts = mixed_texts(3000);
  const std::vector<std::string_view> views(texts.begin(), texts.end());
  const SparseRows one = hasher.hash_batch(views, 1);
  const SparseRows many = hasher.hash_batch(views, 4);
  CHECK(one.rows() == texts.size());
  CHECK(one.indptr == many.indptr && one.indices == many.indices && one.values == many.values);
  SparseRows each;
  for (std::string_view text : views) hasher.hash_into(text, each);
  CHECK(each.indptr == one.indptr && each.indices == one.indices && each.values == one.values);
}

void many_threads_share_one_hasher() {
  const NgramHasher hasher(options(NgramUnit::kWord, 1, 2, NgramNorm::kL2));
  const std::vector<std::string> texts = mixed_texts(200);
  SparseRows expected;
  for (const std::string& text : texts) hasher.hash_into(text, expected);
  std::vector<SparseRows> results(8);
  {
    std::vector<std::jthread> threads;
    for (std::size_t t = 0; t < results.size(); ++t) {
      threads.emplace_back([&, t] {
        for (const std::string& text : texts) hasher.hash_into(text, results[t]);
      });
    }
  }
  for (const SparseRows& rows : results) CHECK(rows.indices == expected.indices && rows.values == expected.values);
}

void a_ten_megabyte_text_equals_its_repeated_paragraph() {
  const NgramHasher hasher(options(NgramUnit::kWord, 1, 1, NgramNorm::kL2));
  const std::string paragraph = "Routing sends every prompt to the model best suited for it. ";
  std::string huge;
  while (huge.size() < (10u << 20)) huge += paragraph;
  SparseRows rows;
  hasher.hash_into(paragraph, rows);
  hasher.hash_into(huge, rows);
  const std::size_t width = static_cast<std::size_t>(rows.indptr[1]);
  CHECK(static_cast<std::size_t>(rows.indptr[2]) == 2 * width);
  for (std::size_t i = 0; i < width; ++i) {
    CHECK(rows.indices[i] == rows.indices[width + i]);
    CHECK(std::fabs(rows.values[i] - rows.values[width + i]) < 1e-12);
  }
}

}  // namespace

int main() {
  RUN(murmurhash_matches_sklearn);
  RUN(word_bigrams_match_sklearn);
  RUN(char_wb_with_final_sigma_and_dotted_i_matches_sklearn);
  RUN(l2_rows_have_unit_norm_and_empty_texts_empty_rows);
  RUN(invalid_utf8_throws_naming_the_byte_and_leaves_rows_alone);
  RUN(settings_out_of_range_throw);
  RUN(batches_on_threads_equal_one_thread);
  RUN(many_threads_share_one_hasher);
  RUN(a_ten_megabyte_text_equals_its_repeated_paragraph);
  return TEST_MAIN_RESULT();
}
