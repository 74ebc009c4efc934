// The decoding chain (see kiln/decoding.hpp for the definitions of every step).
#include "kiln/decoding.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <utility>

#include "kiln/error.hpp"

namespace kiln::decoding {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

struct StepName {
  Step step;
  const char* name;
};
constexpr StepName kSteps[] = {
    {Step::repetition_penalty, "repetition_penalty"},
    {Step::frequency_penalty, "frequency_penalty"},
    {Step::presence_penalty, "presence_penalty"},
    {Step::temperature, "temperature"},
    {Step::top_k, "top_k"},
    {Step::top_p, "top_p"},
    {Step::min_p, "min_p"},
};

// Is the step's setting something other than "off"?
bool active(const Config& c, Step s) {
  switch (s) {
    case Step::repetition_penalty:
      return c.repetition_penalty != 1.0;
    case Step::frequency_penalty:
      return c.frequency_penalty != 0.0;
    case Step::presence_penalty:
      return c.presence_penalty != 0.0;
    case Step::temperature:
      return c.temperature != 1.0 && c.temperature != 0.0;
    case Step::top_k:
      return c.top_k > 0;
    case Step::top_p:
      return c.top_p < 1.0;
    case Step::min_p:
      return c.min_p > 0.0;
  }
  return false;
}

bool is_penalty(Step s) {
  return s == Step::repetition_penalty || s == Step::frequency_penalty ||
         s == Step::presence_penalty;
}

// (token, count) for the distinct tokens of the penalty window, sorted by token.
std::vector<std::pair<std::int64_t, std::int64_t>> window_counts(
    std::span<const std::int64_t> context, std::int64_t window, std::size_t vocab) {
  if (window > 0 && static_cast<std::size_t>(window) < context.size()) {
    context = context.subspan(context.size() - static_cast<std::size_t>(window));
  }
  std::vector<std::int64_t> ids(context.begin(), context.end());
  for (std::int64_t id : ids) {
    KILN_CHECK(id >= 0 && static_cast<std::size_t>(id) < vocab, "decoding: context token id ", id,
               " is outside the vocabulary [0, ", vocab, ")");
  }
  std::sort(ids.begin(), ids.end());
  std::vector<std::pair<std::int64_t, std::int64_t>> counts;
  for (std::size_t i = 0; i < ids.size();) {
    std::size_t j = i;
    while (j < ids.size() && ids[j] == ids[i]) ++j;
    counts.emplace_back(ids[i], static_cast<std::int64_t>(j - i));
    i = j;
  }
  return counts;
}

// Orders token ids by logit, largest first, lower id first among equals.
struct ByLogitDesc {
  std::span<const float> l;
  bool operator()(std::int32_t a, std::int32_t b) const {
    return l[a] > l[b] || (l[a] == l[b] && a < b);
  }
};

void keep_top_k(std::span<float> l, std::int64_t k) {
  const std::size_t n = l.size();
  if (static_cast<std::size_t>(k) >= n) return;
  std::vector<std::int32_t> idx(n);
  std::iota(idx.begin(), idx.end(), 0);
  std::nth_element(idx.begin(), idx.begin() + k - 1, idx.end(), ByLogitDesc{l});
  // Everything after position k-1 is not in the top k.
  for (std::size_t i = static_cast<std::size_t>(k); i < n; ++i) l[idx[i]] = kNegInf;
}

float max_logit(std::span<const float> l) {
  float m = kNegInf;
  for (float v : l) m = std::max(m, v);
  return m;
}

void keep_top_p(std::span<float> l, double p) {
  const float m = max_logit(l);
  double total = 0;
  std::vector<std::int32_t> idx;
  idx.reserve(l.size());
  for (std::size_t i = 0; i < l.size(); ++i) {
    if (l[i] == kNegInf) continue;
    total += std::exp(static_cast<double>(l[i]) - m);
    idx.push_back(static_cast<std::int32_t>(i));
  }
  // Sort only as much of the candidates as the nucleus needs: usually a few dozen tokens.
  const double target = p * total;
  std::size_t sorted = 0, keep = idx.size();
  for (std::size_t m_sort = 64;; m_sort *= 4) {
    const std::size_t upto = std::min(m_sort, idx.size());
    std::partial_sort(idx.begin() + static_cast<std::ptrdiff_t>(sorted),
                      idx.begin() + static_cast<std::ptrdiff_t>(upto), idx.end(), ByLogitDesc{l});
    double cum = 0;
    bool found = false;
    for (std::size_t i = 0; i < upto; ++i) {
      cum += std::exp(static_cast<double>(l[idx[i]]) - m);
      if (cum >= target) {
        keep = i + 1;
        found = true;
        break;
      }
    }
    sorted = upto;
    if (found || upto == idx.size()) break;
  }
  for (std::size_t i = keep; i < idx.size(); ++i) l[idx[i]] = kNegInf;
}

void keep_min_p(std::span<float> l, double min_p) {
  const double m = max_logit(l);
  // p_t / p_max = exp(l_t - l_max) >= min_p
  const double cut = m + std::log(min_p);
  for (float& v : l) {
    if (static_cast<double>(v) < cut) v = kNegInf;
  }
}

std::int64_t argmax(std::span<const float> l) {
  std::size_t best = 0;
  for (std::size_t i = 1; i < l.size(); ++i) {
    if (l[i] > l[best]) best = i;
  }
  return static_cast<std::int64_t>(best);
}

// Uniform double in [0, 1) with 53 random bits.
double uniform53(Philox& rng) {
  return static_cast<double>(rng.next_u64() >> 11) * 0x1.0p-53;
}

}  // namespace

const char* step_name(Step s) {
  for (const StepName& n : kSteps) {
    if (n.step == s) return n.name;
  }
  return "?";
}

std::optional<Step> parse_step(std::string_view name) {
  for (const StepName& n : kSteps) {
    if (name == n.name) return n.step;
  }
  return std::nullopt;
}

std::vector<Step> default_order() {
  std::vector<Step> order;
  for (const StepName& n : kSteps) order.push_back(n.step);
  return order;
}

void Config::validate() const {
  KILN_CHECK(std::isfinite(temperature) && temperature >= 0 && temperature <= 100,
             "decoding: temperature must be between 0 and 100 (0 = greedy), got ", temperature);
  KILN_CHECK(top_k >= 0, "decoding: top_k must be >= 0 (0 = off), got ", top_k);
  KILN_CHECK(top_p > 0 && top_p <= 1, "decoding: top_p must be in (0, 1] (1 = off), got ", top_p);
  KILN_CHECK(min_p >= 0 && min_p <= 1, "decoding: min_p must be in [0, 1] (0 = off), got ", min_p);
  KILN_CHECK(std::isfinite(repetition_penalty) && repetition_penalty > 0,
             "decoding: repetition_penalty must be > 0 (1 = off), got ", repetition_penalty);
  KILN_CHECK(std::isfinite(frequency_penalty), "decoding: frequency_penalty must be finite");
  KILN_CHECK(std::isfinite(presence_penalty), "decoding: presence_penalty must be finite");
  KILN_CHECK(penalty_window >= 0, "decoding: penalty_window must be >= 0 (0 = whole context), got ",
             penalty_window);
  KILN_CHECK(max_tokens >= 1, "decoding: max_tokens must be >= 1, got ", max_tokens);
  for (const std::string& s : stop) {
    KILN_CHECK(!s.empty(), "decoding: stop strings must not be empty");
  }
  for (std::size_t i = 0; i < order.size(); ++i) {
    for (std::size_t j = 0; j < i; ++j) {
      KILN_CHECK(order[i] != order[j], "decoding: sampling_order lists '", step_name(order[i]),
                 "' twice");
    }
  }
  for (const StepName& n : kSteps) {
    if (active(*this, n.step) && std::find(order.begin(), order.end(), n.step) == order.end()) {
      KILN_CHECK(false, "decoding: ", n.name, " is set but '", n.name,
                 "' is not in sampling_order; add it to sampling_order or leave ", n.name,
                 " at its default");
    }
  }
}

std::vector<ParamSpec> param_specs(std::int64_t default_max_tokens) {
  std::vector<std::string> names;
  for (const StepName& n : kSteps) names.emplace_back(n.name);
  ParamSpec order = ParamSpec::strings("sampling_order", names,
                                       "the order in which the decoding steps apply to the logits");
  order.choices = names;
  return {
      ParamSpec::boolean("greedy", false,
                         "take the most likely token after the penalties (same as temperature 0)"),
      ParamSpec::number("temperature", 1.0, "divide the logits by this; 0 = greedy").range(0, 100),
      ParamSpec::integer("top_k", 0, "keep only the k most likely tokens; 0 = off").at_least(0),
      ParamSpec::number("top_p", 1.0,
                        "keep the most likely tokens up to this cumulative probability; 1 = off")
          .range(1e-9, 1),
      ParamSpec::number("min_p", 0.0,
                        "keep tokens at least this fraction as likely as the top one; 0 = off")
          .range(0, 1),
      ParamSpec::number("repetition_penalty", 1.0,
                        "divide positive (multiply negative) logits of tokens already in the "
                        "context by this; 1 = off")
          .range(1e-3, 1000),
      ParamSpec::number("frequency_penalty", 0.0,
                        "subtract this times a token's count in the context from its logit")
          .range(-100, 100),
      ParamSpec::number("presence_penalty", 0.0,
                        "subtract this from the logit of every token present in the context")
          .range(-100, 100),
      ParamSpec::integer("penalty_window", 0,
                         "the penalties look at the last this many tokens; 0 = the whole context")
          .at_least(0),
      order,
      ParamSpec::strings("stop", {},
                         "stop generating when the text contains one of these; "
                         "the text ends before it"),
      ParamSpec::integer("max_tokens", default_max_tokens, "tokens to generate at most per sample")
          .range(1, 1000000),
  };
}

Config config_from(const Params& p) {
  Config c;
  if (p.has("greedy")) c.greedy = p.boolean("greedy");
  if (p.has("temperature")) c.temperature = p.number("temperature");
  if (p.has("top_k")) c.top_k = p.integer("top_k");
  if (p.has("top_p")) c.top_p = p.number("top_p");
  if (p.has("min_p")) c.min_p = p.number("min_p");
  if (p.has("repetition_penalty")) c.repetition_penalty = p.number("repetition_penalty");
  if (p.has("frequency_penalty")) c.frequency_penalty = p.number("frequency_penalty");
  if (p.has("presence_penalty")) c.presence_penalty = p.number("presence_penalty");
  if (p.has("penalty_window")) c.penalty_window = p.integer("penalty_window");
  if (p.has("sampling_order")) {
    c.order.clear();
    for (const std::string& name : p.strings("sampling_order")) {
      const std::optional<Step> s = parse_step(name);
      KILN_CHECK(s.has_value(), "decoding: sampling_order: unknown step '", name,
                 "'; the steps are repetition_penalty, frequency_penalty, presence_penalty, "
                 "temperature, top_k, top_p, min_p");
      c.order.push_back(*s);
    }
  }
  if (p.has("stop")) c.stop = p.strings("stop");
  if (p.has("max_tokens")) c.max_tokens = p.integer("max_tokens");
  c.validate();
  return c;
}

Sampler::Sampler(Config cfg) : cfg_(std::move(cfg)) {
  cfg_.validate();
}

void Sampler::apply(std::span<float> l, std::span<const std::int64_t> context) const {
  KILN_CHECK(!l.empty(), "decoding: empty logits");
  for (std::size_t i = 0; i < l.size(); ++i) {
    KILN_CHECK(!std::isnan(l[i]) && l[i] != std::numeric_limits<float>::infinity(),
               "decoding: the model's logit for token ", i, " is ", l[i],
               "; the model produced non-finite values");
  }
  const bool greedy = cfg_.is_greedy();
  bool any_penalty = false;
  for (Step s : cfg_.order) any_penalty = any_penalty || (is_penalty(s) && active(cfg_, s));
  std::vector<std::pair<std::int64_t, std::int64_t>> counts;
  if (any_penalty) counts = window_counts(context, cfg_.penalty_window, l.size());
  for (Step s : cfg_.order) {
    if (!active(cfg_, s)) continue;
    if (greedy && !is_penalty(s)) continue;  // the rest cannot change the argmax
    switch (s) {
      case Step::repetition_penalty: {
        const float r = static_cast<float>(cfg_.repetition_penalty);
        for (const auto& [t, n] : counts) l[t] = l[t] > 0 ? l[t] / r : l[t] * r;
        break;
      }
      case Step::frequency_penalty: {
        for (const auto& [t, n] : counts) {
          l[t] -= static_cast<float>(cfg_.frequency_penalty * static_cast<double>(n));
        }
        break;
      }
      case Step::presence_penalty: {
        for (const auto& [t, n] : counts) l[t] -= static_cast<float>(cfg_.presence_penalty);
        break;
      }
      case Step::temperature: {
        const float inv = static_cast<float>(1.0 / cfg_.temperature);
        for (float& v : l) v *= inv;
        break;
      }
      case Step::top_k:
        keep_top_k(l, cfg_.top_k);
        break;
      case Step::top_p:
        keep_top_p(l, cfg_.top_p);
        break;
      case Step::min_p:
        keep_min_p(l, cfg_.min_p);
        break;
    }
  }
  KILN_CHECK(max_logit(l) != kNegInf, "decoding: every token was removed (all logits are -inf)");
}

std::int64_t Sampler::next(std::span<float> logits, std::span<const std::int64_t> context,
                           Philox& rng) const {
  apply(logits, context);
  if (cfg_.is_greedy()) return argmax(logits);
  const double m = max_logit(logits);
  double total = 0;
  for (float v : logits) total += std::exp(static_cast<double>(v) - m);
  const double target = uniform53(rng) * total;
  double cum = 0;
  std::int64_t last = -1;
  for (std::size_t i = 0; i < logits.size(); ++i) {
    if (logits[i] == kNegInf) continue;
    cum += std::exp(static_cast<double>(logits[i]) - m);
    last = static_cast<std::int64_t>(i);
    if (cum > target) return last;
  }
  return last;  // rounding left target at the very top: the last candidate
}

std::vector<double> Sampler::distribution(std::span<const float> logits,
                                          std::span<const std::int64_t> context) const {
  std::vector<float> l(logits.begin(), logits.end());
  apply(l, context);
  std::vector<double> p(l.size(), 0.0);
  if (cfg_.is_greedy()) {
    p[static_cast<std::size_t>(argmax(l))] = 1.0;
    return p;
  }
  const double m = max_logit(l);
  double total = 0;
  for (std::size_t i = 0; i < l.size(); ++i) {
    p[i] = l[i] == kNegInf ? 0.0 : std::exp(static_cast<double>(l[i]) - m);
    total += p[i];
  }
  for (double& v : p) v /= total;
  return p;
}

// ------------------------------------------------------------------------------ TextStream

TextStream::TextStream(std::vector<std::string> stop) : stop_(std::move(stop)) {
  for (const std::string& s : stop_) {
    KILN_CHECK(!s.empty(), "decoding: stop strings must not be empty");
    max_stop_ = std::max(max_stop_, s.size());
  }
}

namespace {

// Length of a UTF-8 sequence from its lead byte (1 for ASCII and for stray bytes).
std::size_t utf8_len(unsigned char c) {
  if (c >= 0xF0 && c <= 0xF7) return 4;
  if (c >= 0xE0) return c <= 0xEF ? 3 : 1;
  if (c >= 0xC0) return 2;
  return 1;
}

// The largest end <= `end` that does not cut a UTF-8 sequence begun before it.
std::size_t utf8_safe_end(const std::string& s, std::size_t end) {
  const std::size_t lo = end >= 3 ? end - 3 : 0;
  for (std::size_t q = end; q > lo;) {
    --q;
    const auto c = static_cast<unsigned char>(s[q]);
    if ((c & 0xC0) == 0x80) continue;  // continuation byte: look further back
    return q + utf8_len(c) > end ? q : end;
  }
  return end;
}

}  // namespace

std::string TextStream::push(std::string_view bytes) {
  if (stopped_) return {};
  text_.append(bytes);
  // A stop string cannot start before emitted_: every possible start was held back.
  std::size_t cut = std::string::npos;
  for (const std::string& s : stop_) cut = std::min(cut, text_.find(s, emitted_));
  if (cut != std::string::npos) {
    text_.resize(cut);
    stopped_ = true;
    return finish();
  }
  // Hold back the longest tail that is a proper prefix of a stop string.
  std::size_t hold = 0;
  for (const std::string& s : stop_) {
    for (std::size_t n = std::min(s.size() - 1, text_.size() - emitted_); n > hold; --n) {
      if (text_.compare(text_.size() - n, n, s, 0, n) == 0) {
        hold = n;
        break;
      }
    }
  }
  const std::size_t end = utf8_safe_end(text_, text_.size() - hold);
  if (end <= emitted_) return {};
  std::string out = text_.substr(emitted_, end - emitted_);
  emitted_ = end;
  return out;
}

std::string TextStream::finish() {
  std::string out = text_.substr(emitted_);
  emitted_ = text_.size();
  return out;
}

}  // namespace kiln::decoding
