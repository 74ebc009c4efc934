// Parameter schemas and model loading (Kiln checkpoints and Hugging Face GPT-2 files).
#include <cstdlib>

#include "kiln/context.hpp"
#include "kiln/decoding.hpp"
#include "kiln/file_io.hpp"
#include "kiln/safetensors.hpp"
#include "tasks.hpp"

namespace kiln::gpt {

std::vector<ParamSpec> train_params() {
  return {
      ParamSpec::path("data", "Text corpus: a file, a folder of text files or a glob"),
      ParamSpec::path("tokenizer",
                      "Folder with vocab.json and merges.txt (GPT-2 format); when absent a BPE "
                      "tokenizer of vocab_size tokens is trained on the training text")
          .make_optional(),
      ParamSpec::integer("vocab_size", 4096, "Tokens of the BPE tokenizer trained on the data")
          .range(258, 200000),
      ParamSpec::integer("max_bytes", 0,
                         "Use only the first this many bytes of the corpus (0: all)")
          .at_least(0),
      ParamSpec::number("val_fraction", 0.05,
                        "Share of each document (its end) held out for validation")
          .range(0, 0.5),
      ParamSpec::integer("val_windows", 0,
                         "Validation windows evaluated (0: all); the first ones, always the same")
          .at_least(0),
      ParamSpec::integer("context", 128, "Tokens per training window (and the model's context)")
          .range(2, 8192),
      ParamSpec::integer("layers", 4, "Transformer blocks").range(1, 96),
      ParamSpec::integer("heads", 4, "Attention heads per block").range(1, 128),
      ParamSpec::integer("dim", 256, "Model width (a multiple of heads)").range(8, 8192),
      ParamSpec::number("dropout", 0.0, "Dropout on embeddings and residual branches")
          .range(0, 0.9),
      ParamSpec::number("lr", 6e-4, "Peak learning rate (AdamW)").range(0, 1),
      ParamSpec::number("min_lr", 6e-5, "Learning rate at the end of the cosine decay").range(0, 1),
      ParamSpec::integer("warmup", 100, "Linear warm-up steps").at_least(0),
      ParamSpec::integer("decay_steps", 2000,
                         "Steps of the cosine decay from lr to min_lr (warm-up included); set it "
                         "to the run's step count")
          .at_least(1),
      ParamSpec::number("weight_decay", 0.1,
                        "Decoupled weight decay of the matrices (not biases, norms or position "
                        "embeddings)")
          .range(0, 10),
      ParamSpec::number("beta1", 0.9, "AdamW beta1").range(0, 0.9999),
      ParamSpec::number("beta2", 0.95, "AdamW beta2").range(0, 0.99999),
      ParamSpec::number("clip", 1.0, "Gradient-norm clipping threshold (0: off)").range(0, 1e6),
  };
}

std::vector<ParamSpec> generate_params() {
  std::vector<ParamSpec> p = {
      ParamSpec::path("model",
                      "A model from transformer/train, or a Hugging Face GPT-2 .safetensors file")
          .make_required(),
      ParamSpec::path("tokenizer",
                      "Folder with vocab.json and merges.txt, for a Hugging Face model (default: "
                      "the model's folder)")
          .make_optional(),
      ParamSpec::integer("heads", 0,
                         "Attention heads of a Hugging Face model (0: n_head of config.json beside "
                         "it, else 12)")
          .range(0, 128),
      ParamSpec::string("prompt", "", "Text every sample continues (empty: start of a line)"),
      ParamSpec::strings("prompts", {},
                         "Prompts; sample i continues prompts[i mod n] (overrides prompt)"),
      ParamSpec::choice("precision", "auto", {"auto", "f32", "bf16"},
                        "Weights and KV cache: f32, bf16, or the pipeline's [compute] precision"),
  };
  for (ParamSpec& s : decoding::param_specs(128)) p.push_back(std::move(s));
  return p;
}

GptConfig config_from(const Params& p, std::int64_t vocab) {
  GptConfig c;
  c.vocab = vocab;
  c.context = p.integer("context");
  c.layers = p.integer("layers");
  c.heads = p.integer("heads");
  c.dim = p.integer("dim");
  c.dropout = static_cast<float>(p.number("dropout"));
  KILN_CHECK(c.dim % c.heads == 0, "transformer: dim = ", c.dim,
             " must be a multiple of heads = ", c.heads);
  return c;
}

namespace {

// The integer after "key": in a small JSON file (config.json), or -1.
std::int64_t json_int(const std::string& json, const std::string& key) {
  const std::size_t k = json.find("\"" + key + "\"");
  if (k == std::string::npos) return -1;
  std::size_t i = json.find(':', k);
  if (i == std::string::npos) return -1;
  ++i;
  while (i < json.size() && (json[i] == ' ' || json[i] == '\n' || json[i] == '\t')) ++i;
  if (i >= json.size() || json[i] < '0' || json[i] > '9') return -1;
  return std::atoll(json.c_str() + i);
}

}  // namespace

LoadedModel load_model(const std::filesystem::path& file, std::int64_t heads,
                       const std::filesystem::path& tokenizer_dir) {
  Safetensors st = load_safetensors(file);
  LoadedModel out;
  Generator gen(0);
  if (!is_hf_layout(st.metadata)) {
    const Params p = checkpoint_params(st.metadata, kPluginName, train_params(), file.string());
    auto v = st.metadata.find(kVocabKey);
    auto m = st.metadata.find(kMergesKey);
    KILN_CHECK(v != st.metadata.end() && m != st.metadata.end(), "'", file.string(),
               "' has no tokenizer (metadata ", kVocabKey, " / ", kMergesKey, ")");
    out.tokenizer = text::BpeTokenizer::from_strings(v->second, m->second, file.string());
    auto wte = st.tensors.find("transformer.wte.weight");
    KILN_CHECK(wte != st.tensors.end(), "'", file.string(), "' has no transformer.wte.weight");
    out.model = std::make_shared<Gpt>(config_from(p, wte->second.size(0)), gen);
    out.model->load_state_dict(st.tensors);
  } else {
    out.hugging_face = true;
    const std::filesystem::path dir = file.parent_path();
    if (heads == 0) {
      heads = 12;
      if (std::filesystem::exists(dir / "config.json")) {
        const std::int64_t h = json_int(read_file(dir / "config.json"), "n_head");
        KILN_CHECK(h > 0, "'", (dir / "config.json").string(), "' has no integer n_head");
        heads = h;
      }
    }
    GptConfig cfg;
    TensorMap w = import_hf(st.tensors, heads, file.string(), cfg);
    out.model = std::make_shared<Gpt>(cfg, gen);
    out.model->load_state_dict(w);
    const std::filesystem::path tdir = tokenizer_dir.empty() ? dir : tokenizer_dir;
    if (std::filesystem::exists(tdir / "vocab.json") &&
        std::filesystem::exists(tdir / "merges.txt")) {
      out.tokenizer = text::BpeTokenizer::load(tdir / "vocab.json", tdir / "merges.txt");
      KILN_CHECK(out.tokenizer->vocab_size() <= cfg.vocab, "the tokenizer in '", tdir.string(),
                 "' has ", out.tokenizer->vocab_size(), " tokens but the model only ", cfg.vocab);
    }
  }
  out.model->eval();
  return out;
}

}  // namespace kiln::gpt
