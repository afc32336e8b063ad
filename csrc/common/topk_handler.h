// Keep-best-k result handler of the exact top-k search (FAISS's "result handler" layer): it
// knows nothing of how scores are produced. One KeepBestK per (query, corpus range).
//
// Order: entry a is better than b when a.score > b.score, or the scores are equal and
// a.index < b.index (equal scores ordered by ascending index). Scores of -inf or NaN are never
// kept (they mark excluded ids and non-finite products).
//
// Algorithm: a buffer of cap >= k + 1 entries with threshold theta = score of the k-th best kept
// so far (-inf until the buffer first fills). Candidates must beat theta strictly; since a
// handler sees its corpus range in ascending index order, an equal score with a larger index
// can never displace the k-th best, so the strict test is exact under the tie rule. When the
// buffer is full, a selection keeps the best k and raises theta: O(cap) per compaction, which
// frees cap - k slots, so each insertion costs O(1) amortised (FAISS uses a heap: O(log k)).
#pragma once
#include <algorithm>
#include <functional>
#include <cstdint>
#include <limits>

namespace hybrid_fast {

template <typename T>
struct TopkEntry {
  T score;
  int64_t index;
};

// A functor (not a function pointer) so std::nth_element / std::sort inline the comparison.
struct TopkBetter {
  template <typename T>
  bool operator()(const TopkEntry<T>& a, const TopkEntry<T>& b) const {
    return a.score > b.score || (a.score == b.score && a.index < b.index);
  }
};

// Buffer capacity for k: room for k + max(k, 64) entries, the extra capped at 16384 so k = N
// does not double the memory.
inline int64_t topk_capacity(int64_t k) { return k + std::min<int64_t>(std::max<int64_t>(k, 64), 16384); }

// Storage of one KeepBestK: cap scores + cap indices (structure of arrays, so the selection
// runs on a plain float/double array), plus a scratch of cap scores shared by the handlers of
// one thread.
template <typename T>
class KeepBestK {
 public:
  KeepBestK(T* scores, int64_t* indices, T* scratch, int64_t k)
      : s_(scores), i_(indices), scratch_(scratch), k_(k), cap_(topk_capacity(k)) {}

  T threshold() const { return theta_; }
  int64_t size() const { return size_; }

  // Offer one candidate; indices must arrive in ascending order (see the header comment).
  void push(T score, int64_t index) {
    if (!(score > theta_)) return;
    s_[size_] = score;
    i_[size_] = index;
    if (++size_ == cap_) theta_ = keep_best(k_);
  }

  // Offer pos[0:m] (ascending positions into row, global index = base + pos) that passed a
  // filter against an earlier threshold; re-tests against the current one.
  void push_positions(const T* row, const int32_t* pos, int64_t m, int64_t base) {
    for (int64_t t = 0; t < m; ++t) push(row[pos[t]], base + pos[t]);
  }

  // Writes the best min(k, size) entries to out, best first; returns how many.
  int64_t finish(TopkEntry<T>* out) {
    if (size_ > k_) keep_best(k_);
    for (int64_t t = 0; t < size_; ++t) out[t] = {s_[t], i_[t]};
    std::sort(out, out + size_, TopkBetter{});
    return size_;
  }

 private:
  // Keeps exactly the best n < size_ entries (unordered) and returns the n-th best score.
  // Selection on the scores alone (nth_element on a scratch copy), then one stable pass that
  // keeps scores above it and, among scores equal to it, the smallest indices.
  T keep_best(int64_t n) {
    std::copy(s_, s_ + size_, scratch_);
    std::nth_element(scratch_, scratch_ + n - 1, scratch_ + size_, std::greater<T>());
    const T v = scratch_[n - 1];
    int64_t above = 0;
    for (int64_t t = 0; t < size_; ++t) above += s_[t] > v ? 1 : 0;
    int64_t ties_left = n - above, w = 0;
    // Ties at v: the smallest indices win. Entries arrived in ascending index order, and this
    // pass preserves relative order, so the buffer stays sorted by index and the first ties
    // met are the smallest.
    for (int64_t t = 0; t < size_; ++t) {
      const bool take = s_[t] > v || (s_[t] == v && ties_left-- > 0);
      s_[w] = s_[t];
      i_[w] = i_[t];
      w += take ? 1 : 0;
    }
    size_ = w;
    return v;
  }

  T* s_;
  int64_t* i_;
  T* scratch_;
  int64_t k_, cap_, size_ = 0;
  T theta_ = -std::numeric_limits<T>::infinity();
};

// Merges sorted partial results (each best first, disjoint indices) into the best k, best
// first; returns how many were written to out. scratch holds the sum of the part sizes.
template <typename T>
inline int64_t topk_merge(const TopkEntry<T>* const* parts, const int64_t* sizes, int64_t nparts, int64_t k,
                          TopkEntry<T>* scratch) {
  int64_t total = 0;
  for (int64_t p = 0; p < nparts; ++p) {
    std::copy(parts[p], parts[p] + sizes[p], scratch + total);
    total += sizes[p];
  }
  const int64_t keep = std::min(k, total);
  if (keep > 0 && total > keep) std::nth_element(scratch, scratch + keep - 1, scratch + total, TopkBetter{});
  std::sort(scratch, scratch + keep, TopkBetter{});
  return keep;
}

}  // namespace hybrid_fast
