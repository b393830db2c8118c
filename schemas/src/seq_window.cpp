#include "schemas/seq_window.h"

#include <algorithm>
#include <charconv>
#include <cinttypes>
#include <cstdio>
#include <string_view>

namespace courtyard::schemas {

Admission admit(SeqWindow& w, std::uint32_t boot, std::uint64_t seq) {
  if (!w.started || boot > w.boot) {
    // A new boot restarts the sequence; what the previous boot never delivered stays counted.
    w.started = true;
    w.boot = boot;
    w.high = seq;
    w.seen.reset();
    w.seen.set(0);
    return Admission::Fresh;
  }
  if (boot < w.boot) return Admission::Stale;
  if (seq > w.high) {
    const std::uint64_t shift = seq - w.high;
    w.gaps = shift - 1 > UINT64_MAX - w.gaps ? UINT64_MAX : w.gaps + (shift - 1);  // a seq near 2^64 saturates
    if (shift >= kSeqWindowWidth) w.seen.reset();
    else w.seen <<= shift;
    w.seen.set(0);
    w.high = seq;
    return Admission::Fresh;
  }
  const std::uint64_t age = w.high - seq;
  if (age >= kSeqWindowWidth) return Admission::Stale;
  if (w.seen.test(age)) return Admission::Duplicate;
  w.seen.set(age);  // a late arrival fills a gap counted earlier
  if (w.gaps > 0) --w.gaps;
  return Admission::Fresh;
}

SeqRanges unseen(const SeqWindow& w) {
  SeqRanges out;
  if (!w.started) return out;
  const std::uint64_t oldest_age = std::min<std::uint64_t>(w.high, kSeqWindowWidth - 1);
  for (std::uint64_t age = oldest_age + 1; age-- > 0;) {  // ascending seqs
    if (w.seen.test(age)) continue;
    const std::uint64_t seq = w.high - age;
    if (!out.empty() && out.back().second + 1 == seq) out.back().second = seq;
    else out.emplace_back(seq, seq);
  }
  return out;
}

void set_unseen(SeqWindow& w, const SeqRanges& ranges) {
  // Only ages that are seqs (not below 0) are ever set, as admit() leaves them.
  w.seen.reset();
  for (std::uint64_t age = 0; age <= std::min<std::uint64_t>(w.high, kSeqWindowWidth - 1); ++age) w.seen.set(age);
  const std::uint64_t oldest = w.high >= kSeqWindowWidth - 1 ? w.high - (kSeqWindowWidth - 1) : 0;
  for (const auto& [first, last] : ranges) {
    if (last < oldest || first > w.high) continue;
    for (std::uint64_t seq = std::max(first, oldest), end = std::min(last, w.high);; ++seq) {
      w.seen.reset(w.high - seq);
      if (seq == end) break;
    }
  }
}

void set_seen_from_64(SeqWindow& w, std::uint64_t bits) {
  for (std::size_t i = 0; i < 64; ++i) {
    if (bits >> i & 1) w.seen.set(i);
  }
}

// "v2 <started> <boot> <high> <gaps> <first>-<last>,..." ("-" for no range).
std::string to_text(const SeqWindow& w) {
  char head[96];
  std::snprintf(head, sizeof head, "v2 %d %" PRIu32 " %" PRIu64 " %" PRIu64 " ", w.started ? 1 : 0, w.boot, w.high, w.gaps);
  std::string out = head;
  const auto ranges = unseen(w);
  if (ranges.empty()) out += '-';
  for (std::size_t i = 0; i < ranges.size(); ++i) {
    if (i > 0) out += ',';
    out += std::to_string(ranges[i].first) + '-' + std::to_string(ranges[i].second);
  }
  return out;
}

namespace {

bool parse_u64(std::string_view text, std::uint64_t& out) {
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc() && end == text.data() + text.size() && !text.empty();
}

std::optional<SeqRanges> parse_ranges(std::string_view text) {
  SeqRanges ranges;
  if (text == "-") return ranges;
  while (!text.empty()) {
    const auto comma = text.find(',');
    const auto item = text.substr(0, comma);
    const auto dash = item.find('-');
    std::uint64_t first = 0, last = 0;
    if (dash == std::string_view::npos || !parse_u64(item.substr(0, dash), first) ||
        !parse_u64(item.substr(dash + 1), last) || last < first) {
      return std::nullopt;
    }
    ranges.emplace_back(first, last);
    if (comma == std::string_view::npos) break;
    text.remove_prefix(comma + 1);
  }
  return ranges;
}

}  // namespace

std::optional<SeqWindow> seq_window_from_text(const std::string& text) {
  SeqWindow w;
  int started = 0;
  if (text.starts_with("v2 ")) {
    int used = 0;
    if (std::sscanf(text.c_str(), "v2 %d %" SCNu32 " %" SCNu64 " %" SCNu64 " %n", &started, &w.boot, &w.high, &w.gaps, &used) != 4 ||
        used <= 0) {
      return std::nullopt;
    }
    const auto rest = std::string_view(text).substr(static_cast<std::size_t>(used));
    if (rest.empty() || rest.back() == ',') return std::nullopt;
    auto parsed = parse_ranges(rest);
    if (!parsed) return std::nullopt;
    w.started = started != 0;
    if (w.started) set_unseen(w, *parsed);
    return w;
  }
  // The 64-wide form: what lies beyond its 64 seqs was never known; it counts as unseen.
  std::uint64_t bits = 0;
  if (std::sscanf(text.c_str(), "%d %" SCNu32 " %" SCNu64 " %" SCNx64 " %" SCNu64, &started, &w.boot, &w.high, &bits, &w.gaps) != 5) {
    return std::nullopt;
  }
  w.started = started != 0;
  set_seen_from_64(w, bits);
  return w;
}

}  // namespace courtyard::schemas
