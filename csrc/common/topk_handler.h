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
// buffer is full, nth_element keeps the best k and raises theta: O(cap) per compaction, which
// frees cap - k slots, so each insertion costs O(1) amortised (FAISS uses a heap: O(log k)).
#pragma once
#include <algorithm>
#include <cstdint>
#include <limits>

namespace hybrid_fast {

template <typename T>
struct TopkEntry {
  T score;
  int64_t index;
};

template <typename T>
inline bool topk_better(const TopkEntry<T>& a, const TopkEntry<T>& b) {
  return a.score > b.score || (a.score == b.score && a.index < b.index);
}

// Buffer capacity for k: room for k + max(k, 64) entries, the extra capped at 16384 so k = N
// does not double the memory.
inline int64_t topk_capacity(int64_t k) { return k + std::min<int64_t>(std::max<int64_t>(k, 64), 16384); }

template <typename T>
class KeepBestK {
 public:
  // buf: cap = topk_capacity(k) entries owned by the caller.
  KeepBestK(TopkEntry<T>* buf, int64_t k) : buf_(buf), k_(k), cap_(topk_capacity(k)) {}

  T threshold() const { return theta_; }
  int64_t size() const { return size_; }

  // Offer one candidate; indices must arrive in ascending order (see the header comment).
  void push(T score, int64_t index) {
    if (!(score > theta_)) return;
    buf_[size_++] = {score, index};
    if (size_ == cap_) compact();
  }

  // Offer pos[0:m] (ascending positions into row, global index = base + pos) that passed a
  // filter against an earlier threshold; re-tests against the current one.
  void push_positions(const T* row, const int32_t* pos, int64_t m, int64_t base) {
    for (int64_t t = 0; t < m; ++t) push(row[pos[t]], base + pos[t]);
  }

  // Keeps the best min(k, size) entries, sorted best first; returns how many.
  int64_t finish() {
    if (size_ > k_) {
      std::nth_element(buf_, buf_ + k_ - 1, buf_ + size_, topk_better<T>);
      size_ = k_;
    }
    std::sort(buf_, buf_ + size_, topk_better<T>);
    return size_;
  }

  const TopkEntry<T>* data() const { return buf_; }

 private:
  void compact() {
    std::nth_element(buf_, buf_ + k_ - 1, buf_ + size_, topk_better<T>);
    size_ = k_;
    theta_ = buf_[k_ - 1].score;
  }

  TopkEntry<T>* buf_;
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
  if (keep > 0 && total > keep) std::nth_element(scratch, scratch + keep - 1, scratch + total, topk_better<T>);
  std::sort(scratch, scratch + keep, topk_better<T>);
  return keep;
}

}  // namespace hybrid_fast
