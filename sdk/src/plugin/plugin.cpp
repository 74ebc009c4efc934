#include "kiln/plugin.hpp"

#include <cmath>
#include <sstream>

#include <nlohmann/json.hpp>

namespace kiln {
using json = nlohmann::json;

const char* param_type_name(ParamType t) {
  switch (t) {
    case ParamType::boolean:
      return "boolean";
    case ParamType::integer:
      return "integer";
    case ParamType::number:
      return "number";
    case ParamType::string:
      return "string";
    case ParamType::path:
      return "path";
    case ParamType::choice:
      return "choice";
    case ParamType::integer_list:
      return "list of integers";
    case ParamType::number_list:
      return "list of numbers";
    case ParamType::string_list:
      return "list of strings";
  }
  return "unknown";
}

const char* task_kind_name(TaskKind k) {
  switch (k) {
    case TaskKind::train:
      return "train";
    case TaskKind::generate:
      return "generate";
    case TaskKind::run:
      return "run";
  }
  return "unknown";
}

namespace {
std::string fmt_number(double d) {
  if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 1e15) {
    std::ostringstream os;
    os << static_cast<long long>(d) << ".0";
    return os.str();
  }
  std::ostringstream os;
  os.precision(10);
  os << d;
  return os.str();
}

std::string fmt_bound(double d) {
  if (d == std::floor(d) && std::fabs(d) < 1e15) return std::to_string(static_cast<long long>(d));
  std::ostringstream os;
  os << d;
  return os.str();
}
}  // namespace

std::string param_value_str(const ParamValue& v) {
  struct Visitor {
    std::string operator()(std::monostate) const { return "(none)"; }
    std::string operator()(bool b) const { return b ? "true" : "false"; }
    std::string operator()(std::int64_t i) const { return std::to_string(i); }
    std::string operator()(double d) const { return fmt_number(d); }
    std::string operator()(const std::string& s) const { return json(s).dump(); }
    std::string operator()(const std::vector<std::int64_t>& l) const {
      std::string s = "[";
      for (std::size_t i = 0; i < l.size(); ++i) s += (i ? ", " : "") + std::to_string(l[i]);
      return s + "]";
    }
    std::string operator()(const std::vector<double>& l) const {
      std::string s = "[";
      for (std::size_t i = 0; i < l.size(); ++i) s += (i ? ", " : "") + fmt_number(l[i]);
      return s + "]";
    }
    std::string operator()(const std::vector<std::string>& l) const {
      std::string s = "[";
      for (std::size_t i = 0; i < l.size(); ++i) s += (i ? ", " : "") + json(l[i]).dump();
      return s + "]";
    }
  };
  return std::visit(Visitor{}, v);
}

// ------------------------------------------------------------------------------ ParamSpec

namespace {
ParamSpec make(std::string name, ParamType t, ParamValue def, std::string help) {
  ParamSpec p;
  p.name = std::move(name);
  p.type = t;
  p.default_value = std::move(def);
  p.help = std::move(help);
  return p;
}
}  // namespace

ParamSpec ParamSpec::boolean(std::string name, bool def, std::string help) {
  return make(std::move(name), ParamType::boolean, def, std::move(help));
}
ParamSpec ParamSpec::integer(std::string name, std::int64_t def, std::string help) {
  return make(std::move(name), ParamType::integer, def, std::move(help));
}
ParamSpec ParamSpec::number(std::string name, double def, std::string help) {
  return make(std::move(name), ParamType::number, def, std::move(help));
}
ParamSpec ParamSpec::string(std::string name, std::string def, std::string help) {
  return make(std::move(name), ParamType::string, std::move(def), std::move(help));
}
ParamSpec ParamSpec::path(std::string name, std::string help) {
  return make(std::move(name), ParamType::path, std::monostate{}, std::move(help));
}
ParamSpec ParamSpec::path(std::string name, std::string def, std::string help) {
  return make(std::move(name), ParamType::path, std::move(def), std::move(help));
}
ParamSpec ParamSpec::choice(std::string name, std::string def, std::vector<std::string> choices,
                            std::string help) {
  ParamSpec p = make(std::move(name), ParamType::choice, std::move(def), std::move(help));
  p.choices = std::move(choices);
  return p;
}
ParamSpec ParamSpec::integers(std::string name, std::vector<std::int64_t> def, std::string help) {
  return make(std::move(name), ParamType::integer_list, std::move(def), std::move(help));
}
ParamSpec ParamSpec::numbers(std::string name, std::vector<double> def, std::string help) {
  return make(std::move(name), ParamType::number_list, std::move(def), std::move(help));
}
ParamSpec ParamSpec::strings(std::string name, std::vector<std::string> def, std::string help) {
  return make(std::move(name), ParamType::string_list, std::move(def), std::move(help));
}

ParamSpec& ParamSpec::range(double lo, double hi) {
  min = lo;
  max = hi;
  return *this;
}
ParamSpec& ParamSpec::at_least(double lo) {
  min = lo;
  return *this;
}
ParamSpec& ParamSpec::make_optional() {
  default_value = std::monostate{};
  optional = true;
  return *this;
}
ParamSpec& ParamSpec::make_required() {
  default_value = std::monostate{};
  optional = false;
  return *this;
}

namespace {
std::string range_reason(const ParamSpec& p, double v) {
  const bool lo_bad = p.min && v < *p.min;
  const bool hi_bad = p.max && v > *p.max;
  if (!lo_bad && !hi_bad) return "";
  std::ostringstream os;
  if (p.min && p.max) {
    os << "must be between " << fmt_bound(*p.min) << " and " << fmt_bound(*p.max);
  } else if (p.min) {
    os << "must be at least " << fmt_bound(*p.min);
  } else {
    os << "must be at most " << fmt_bound(*p.max);
  }
  os << ", got " << fmt_bound(v);
  return os.str();
}

std::string choices_str(const std::vector<std::string>& c) {
  std::string s;
  for (std::size_t i = 0; i < c.size(); ++i) s += (i ? ", " : "") + json(c[i]).dump();
  return s;
}
}  // namespace

std::string ParamSpec::check(const ParamValue& v) const {
  const std::string type_name = param_type_name(type);
  const std::string want =
      std::string(type_name[0] == 'i' ? "must be an " : "must be a ") + type_name;
  switch (type) {
    case ParamType::boolean:
      return std::holds_alternative<bool>(v) ? "" : want + ", got " + param_value_str(v);
    case ParamType::integer:
      if (!std::holds_alternative<std::int64_t>(v)) return want + ", got " + param_value_str(v);
      return range_reason(*this, static_cast<double>(std::get<std::int64_t>(v)));
    case ParamType::number: {
      double d;
      if (std::holds_alternative<double>(v)) {
        d = std::get<double>(v);
      } else if (std::holds_alternative<std::int64_t>(v)) {
        d = static_cast<double>(std::get<std::int64_t>(v));
      } else {
        return want + ", got " + param_value_str(v);
      }
      if (!std::isfinite(d)) return "must be a finite number, got " + param_value_str(v);
      return range_reason(*this, d);
    }
    case ParamType::string:
    case ParamType::path:
      if (!std::holds_alternative<std::string>(v)) return want + ", got " + param_value_str(v);
      if (type == ParamType::path && std::get<std::string>(v).empty()) return "must not be empty";
      return "";
    case ParamType::choice: {
      if (!std::holds_alternative<std::string>(v)) {
        return "must be one of " + choices_str(choices) + ", got " + param_value_str(v);
      }
      const std::string& s = std::get<std::string>(v);
      for (const auto& c : choices) {
        if (c == s) return "";
      }
      return "must be one of " + choices_str(choices) + ", got " + json(s).dump();
    }
    case ParamType::integer_list:
      if (!std::holds_alternative<std::vector<std::int64_t>>(v)) {
        return want + ", got " + param_value_str(v);
      }
      for (std::int64_t x : std::get<std::vector<std::int64_t>>(v)) {
        std::string r = range_reason(*this, static_cast<double>(x));
        if (!r.empty()) return "every element " + r;
      }
      return "";
    case ParamType::number_list: {
      std::vector<double> vals;
      if (std::holds_alternative<std::vector<double>>(v)) {
        vals = std::get<std::vector<double>>(v);
      } else if (std::holds_alternative<std::vector<std::int64_t>>(v)) {
        for (auto x : std::get<std::vector<std::int64_t>>(v))
          vals.push_back(static_cast<double>(x));
      } else {
        return want + ", got " + param_value_str(v);
      }
      for (double x : vals) {
        std::string r = range_reason(*this, x);
        if (!r.empty()) return "every element " + r;
      }
      return "";
    }
    case ParamType::string_list:
      if (!std::holds_alternative<std::vector<std::string>>(v)) {
        return want + ", got " + param_value_str(v);
      }
      if (!choices.empty()) {
        for (const auto& s : std::get<std::vector<std::string>>(v)) {
          bool ok = false;
          for (const auto& c : choices) ok = ok || c == s;
          if (!ok)
            return "every element must be one of " + choices_str(choices) + ", got " +
                   json(s).dump();
        }
      }
      return "";
  }
  return "has an unknown type";
}

std::string ParamSpec::describe() const {
  std::ostringstream os;
  os << param_type_name(type);
  if (type == ParamType::choice) os << " of " << choices_str(choices);
  if (min && max) {
    os << " in [" << fmt_bound(*min) << ", " << fmt_bound(*max) << "]";
  } else if (min) {
    os << " >= " << fmt_bound(*min);
  } else if (max) {
    os << " <= " << fmt_bound(*max);
  }
  if (required()) {
    os << ", required";
  } else if (optional && std::holds_alternative<std::monostate>(default_value)) {
    os << ", optional";
  } else {
    os << ", default " << param_value_str(default_value);
  }
  return os.str();
}

// ------------------------------------------------------------------------------ Params

bool Params::has(const std::string& name) const {
  return values_.count(name) > 0;
}

const ParamValue& Params::get(const std::string& name) const {
  auto it = values_.find(name);
  KILN_CHECK(it != values_.end(), "parameter '", name, "' is not set");
  return it->second;
}

namespace {
template <typename T>
const T& typed(const Params& p, const std::string& name, const char* type) {
  const ParamValue& v = p.get(name);
  const T* t = std::get_if<T>(&v);
  KILN_CHECK(t != nullptr, "parameter '", name, "' is ", param_value_str(v), ", not a ", type);
  return *t;
}
}  // namespace

bool Params::boolean(const std::string& name) const {
  return typed<bool>(*this, name, "boolean");
}
std::int64_t Params::integer(const std::string& name) const {
  return typed<std::int64_t>(*this, name, "integer");
}
double Params::number(const std::string& name) const {
  const ParamValue& v = get(name);
  if (const auto* i = std::get_if<std::int64_t>(&v)) return static_cast<double>(*i);
  return typed<double>(*this, name, "number");
}
const std::string& Params::string(const std::string& name) const {
  return typed<std::string>(*this, name, "string");
}
std::vector<std::int64_t> Params::integers(const std::string& name) const {
  return typed<std::vector<std::int64_t>>(*this, name, "list of integers");
}
std::vector<double> Params::numbers(const std::string& name) const {
  const ParamValue& v = get(name);
  if (const auto* l = std::get_if<std::vector<std::int64_t>>(&v)) {
    return std::vector<double>(l->begin(), l->end());
  }
  return typed<std::vector<double>>(*this, name, "list of numbers");
}
std::vector<std::string> Params::strings(const std::string& name) const {
  return typed<std::vector<std::string>>(*this, name, "list of strings");
}

std::string Params::to_json() const {
  json j = json::object();
  for (const auto& [k, v] : values_) {
    std::visit(
        [&](const auto& x) {
          using T = std::decay_t<decltype(x)>;
          if constexpr (std::is_same_v<T, std::monostate>) {
            j[k] = nullptr;
          } else {
            j[k] = x;
          }
        },
        v);
  }
  return j.dump();
}

Params Params::from_json(const std::string& text) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    throw Error(std::string("parameters are not valid JSON: ") + e.what());
  }
  KILN_CHECK(j.is_object(), "parameters must be a JSON object");
  Params p;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const json& v = it.value();
    ParamValue pv;
    if (v.is_boolean()) {
      pv = v.get<bool>();
    } else if (v.is_number_integer()) {
      pv = v.get<std::int64_t>();
    } else if (v.is_number()) {
      pv = v.get<double>();
    } else if (v.is_string()) {
      pv = v.get<std::string>();
    } else if (v.is_array()) {
      bool all_int = true, all_num = true, all_str = true;
      for (const json& e : v) {
        all_int = all_int && e.is_number_integer();
        all_num = all_num && e.is_number();
        all_str = all_str && e.is_string();
      }
      if (v.empty() || all_int) {
        pv = v.get<std::vector<std::int64_t>>();
      } else if (all_num) {
        pv = v.get<std::vector<double>>();
      } else if (all_str) {
        pv = v.get<std::vector<std::string>>();
      } else {
        throw Error("parameter '" + it.key() + "' is a list of mixed types");
      }
    } else if (v.is_null()) {
      continue;
    } else {
      throw Error("parameter '" + it.key() + "' has an unsupported JSON type");
    }
    p.set(it.key(), pv);
  }
  return p;
}

Params Params::resolve(const std::vector<ParamSpec>& spec, const Params& given) {
  Params out;
  for (const auto& [k, v] : given.values()) {
    bool known = false;
    for (const ParamSpec& s : spec) known = known || s.name == k;
    KILN_CHECK(known, "unknown parameter '", k, "'");
  }
  for (const ParamSpec& s : spec) {
    if (given.has(s.name)) {
      ParamValue v = given.get(s.name);
      // Integers are acceptable where numbers are expected; store them as numbers.
      if (s.type == ParamType::number && std::holds_alternative<std::int64_t>(v)) {
        v = static_cast<double>(std::get<std::int64_t>(v));
      }
      if (s.type == ParamType::number_list &&
          std::holds_alternative<std::vector<std::int64_t>>(v)) {
        const auto& l = std::get<std::vector<std::int64_t>>(v);
        v = std::vector<double>(l.begin(), l.end());
      }
      // An empty JSON list reads back as integers; accept it for any list type.
      if (const auto* l = std::get_if<std::vector<std::int64_t>>(&v); l && l->empty()) {
        if (s.type == ParamType::string_list) v = std::vector<std::string>{};
        if (s.type == ParamType::number_list) v = std::vector<double>{};
      }
      const std::string reason = s.check(v);
      KILN_CHECK(reason.empty(), "parameter '", s.name, "' ", reason);
      out.set(s.name, v);
    } else if (!std::holds_alternative<std::monostate>(s.default_value)) {
      out.set(s.name, s.default_value);
    } else {
      KILN_CHECK(s.optional, "parameter '", s.name, "' is required (", s.help, ")");
    }
  }
  return out;
}

// ------------------------------------------------------------------------------ artifacts

Artifact Artifact::make_image(std::int64_t index, Image img, std::string name) {
  Artifact a;
  a.kind = ArtifactKind::image;
  a.index = index;
  a.image = std::move(img);
  a.name = std::move(name);
  return a;
}
Artifact Artifact::make_text(std::int64_t index, std::string text, std::string name) {
  Artifact a;
  a.kind = ArtifactKind::text;
  a.index = index;
  a.text = std::move(text);
  a.name = std::move(name);
  return a;
}
Artifact Artifact::make_tensors(std::string name, TensorMap tensors,
                                std::map<std::string, std::string> metadata) {
  Artifact a;
  a.kind = ArtifactKind::tensors;
  a.name = std::move(name);
  a.tensors = std::move(tensors);
  a.metadata = std::move(metadata);
  return a;
}
Artifact Artifact::make_table(std::string name, Table table) {
  Artifact a;
  a.kind = ArtifactKind::table;
  a.name = std::move(name);
  a.table = std::move(table);
  return a;
}
Artifact Artifact::make_metrics(std::map<std::string, double> metrics) {
  Artifact a;
  a.kind = ArtifactKind::metrics;
  a.name = "metrics";
  a.metrics = std::move(metrics);
  return a;
}

// ------------------------------------------------------------------------------ description

TaskSpec TaskSpec::train(std::string name, std::string help) {
  TaskSpec t;
  t.name = std::move(name);
  t.kind = TaskKind::train;
  t.help = std::move(help);
  return t;
}
TaskSpec TaskSpec::generate(std::string name, std::string help) {
  TaskSpec t = train(std::move(name), std::move(help));
  t.kind = TaskKind::generate;
  return t;
}
TaskSpec TaskSpec::run(std::string name, std::string help) {
  TaskSpec t = train(std::move(name), std::move(help));
  t.kind = TaskKind::run;
  return t;
}
TaskSpec& TaskSpec::param(ParamSpec p) {
  KILN_CHECK(find(p.name) == nullptr, "task '", name, "' declares parameter '", p.name, "' twice");
  params.push_back(std::move(p));
  return *this;
}
TaskSpec& TaskSpec::batch(std::int64_t b) {
  default_batch = b;
  return *this;
}
TaskSpec& TaskSpec::epochs(std::int64_t e) {
  default_epochs = e;
  return *this;
}
const ParamSpec* TaskSpec::find(const std::string& p) const {
  for (const ParamSpec& s : params) {
    if (s.name == p) return &s;
  }
  return nullptr;
}

const TaskSpec* PluginInfo::find(const std::string& task) const {
  for (const TaskSpec& t : tasks) {
    if (t.name == task) return &t;
  }
  return nullptr;
}

std::map<std::string, std::string> checkpoint_metadata(const std::string& plugin,
                                                       const std::string& version,
                                                       const std::string& task,
                                                       const Params& params) {
  return {{"kiln.plugin", plugin},
          {"kiln.plugin_version", version},
          {"kiln.task", task},
          {"kiln.params", params.to_json()},
          {"kiln.sdk_version", KILN_VERSION_STRING}};
}

Params checkpoint_params(const std::map<std::string, std::string>& metadata,
                         const std::string& plugin, const std::vector<ParamSpec>& spec,
                         const std::string& file) {
  auto it = metadata.find("kiln.plugin");
  KILN_CHECK(it != metadata.end(), "'", file,
             "' is not a Kiln model checkpoint (no kiln.plugin "
             "metadata); train one with the '",
             plugin, "' plugin first");
  KILN_CHECK(it->second == plugin, "'", file, "' was made by the '", it->second, "' plugin, not '",
             plugin, "'");
  auto p = metadata.find("kiln.params");
  KILN_CHECK(p != metadata.end(), "'", file, "' lacks kiln.params metadata");
  Params stored = Params::from_json(p->second);
  // Keep only the keys this spec knows (a checkpoint from a train task holds training keys too).
  Params relevant;
  for (const ParamSpec& s : spec) {
    if (stored.has(s.name)) relevant.set(s.name, stored.get(s.name));
  }
  try {
    return Params::resolve(spec, relevant);
  } catch (const Error& e) {
    throw Error("'" + file + "': " + e.what());
  }
}

}  // namespace kiln
