// eval/classify and eval/evaluate.
#include "tasks.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>

#include "classifier.hpp"
#include "image_source.hpp"
#include "kiln/data.hpp"
#include "kiln/file_io.hpp"
#include "kiln/random.hpp"
#include "kiln/safetensors.hpp"
#include "metrics.hpp"

namespace kiln_eval {

namespace fs = std::filesystem;
using kiln::Artifact;
using kiln::Params;
using kiln::ParamSpec;
using kiln::Tensor;

namespace {

ParamSpec model_param() {
  return ParamSpec::path("model",
                         "Classifier trained by eval/train (e.g. "
                         "models/eval-fashion.safetensors or \"@train\")");
}
ParamSpec images_param(const std::string& what) {
  return ParamSpec::path("images", what +
                                       ": a generate stage (\"@samples\"), a folder of PNGs, a "
                                       "manifest.jsonl, a Fashion-MNIST folder or an IDX file");
}

std::string fmt(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

}  // namespace

std::vector<ParamSpec> classify_params() {
  return {
      model_param(), images_param("Images to classify"),
      ParamSpec::integer("max_images", 0, "Classify only the first this many (0: all)").at_least(0),
      ParamSpec::integer("batch", 500, "Images per forward pass").range(1, 100000)};
}

std::vector<ParamSpec> evaluate_params() {
  return {
      model_param(),
      images_param("Generated images"),
      ParamSpec::path("reference", "/usr/share/datasets/fashion-mnist",
                      "Fashion-MNIST folder whose split is the reference set"),
      ParamSpec::choice("reference_split", "test", {"test", "train"}, "Split used as reference"),
      ParamSpec::integer("reference_count", 10000,
                         "Reference images (a seeded random subset when fewer than the split)")
          .range(2, 60000),
      ParamSpec::integer("max_images", 0, "Use only the first this many generated (0: all)")
          .at_least(0),
      ParamSpec::integer("min_samples", 1000,
                         "Fewer generated images than this is an error (FID is biased upwards "
                         "for small sets)")
          .at_least(2),
      ParamSpec::integer("kid_subset_size", 1000, "Rows per KID subset").at_least(2),
      ParamSpec::integer("kid_subsets", 100, "KID subsets averaged").range(1, 10000),
      ParamSpec::integer("k", 3, "Neighbours of the k-NN precision/recall").range(1, 100),
      ParamSpec::integer("batch", 500, "Images per forward pass").range(1, 100000)};
}

namespace {

class ClassifyTask final : public kiln::RunTask {
 public:
  ClassifyTask(const Params& p, kiln::TaskContext& ctx) : p_(p), ctx_(ctx) {
    model_ = load_classifier(p.string("model"));
  }

  std::vector<Artifact> run() override {
    const ImageSet set = load_image_set(p_.string("images"), p_.integer("max_images"), "images");
    const Predictions pr = predict(*model_, set.images, p_.integer("batch"));
    const auto& names = kiln::data::fashion_mnist_classes();
    kiln::Table t;
    t.columns = {"index", "source", "label", "class", "probability", "expected"};
    for (const std::string& c : names) t.columns.push_back("p_" + c);
    std::int64_t right = 0, known = 0;
    double confidence = 0;
    for (std::int64_t i = 0; i < pr.n; ++i) {
      const std::int64_t l = pr.argmax(i);
      const float p = pr.probs[i * pr.classes + l];
      confidence += p;
      const std::int64_t want = set.labels[i];
      if (want >= 0) {
        ++known;
        right += want == l;
      }
      std::vector<std::string> row = {
          std::to_string(i), set.sources[i], std::to_string(l),
          names[l],          fmt(p),         want >= 0 ? std::to_string(want) : ""};
      for (std::int64_t c = 0; c < pr.classes; ++c)
        row.push_back(fmt(pr.probs[i * pr.classes + c]));
      t.rows.push_back(std::move(row));
    }
    std::vector<Artifact> out;
    out.push_back(Artifact::make_table("predictions", std::move(t)));
    kiln::Metrics m{{"count", static_cast<double>(pr.n)},
                    {"mean_confidence", confidence / static_cast<double>(pr.n)}};
    if (known > 0) m["accuracy"] = static_cast<double>(right) / static_cast<double>(known);
    out.push_back(Artifact::make_metrics(m));
    return out;
  }

 private:
  Params p_;
  kiln::TaskContext& ctx_;
  std::unique_ptr<Classifier> model_;
};

std::uint64_t fnv1a(std::uint64_t h, const std::string& s) {
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

class EvaluateTask final : public kiln::RunTask {
 public:
  EvaluateTask(const Params& p, kiln::TaskContext& ctx) : p_(p), ctx_(ctx) {
    model_ = load_classifier(p.string("model"));
  }

  std::vector<Artifact> run() override {
    const ImageSet gen = load_image_set(p_.string("images"), p_.integer("max_images"), "images");
    const std::int64_t n = gen.images.size(0);
    KILN_CHECK(n >= p_.integer("min_samples"), "eval/evaluate: '", p_.string("images"), "' holds ",
               n, " images, fewer than min_samples = ", p_.integer("min_samples"),
               "; generate more (the generate stage's count) or lower min_samples (FID and KID "
               "of few samples are biased and noisy)");
    KILN_CHECK(n > p_.integer("k"), "eval/evaluate: ", n,
               " images are too few for k = ", p_.integer("k"), " nearest neighbours");
    ctx_.progress(0, 3, "phase");
    const Reference ref = reference();
    ctx_.progress(1, 3, "phase");
    const Predictions pr = predict(*model_, gen.images, p_.integer("batch"));
    const std::int64_t d = pr.hidden;
    const FeatureStats sg = feature_stats(pr.features.data(), n, d);
    const FeatureStats sr = feature_stats(ref.features.data(), ref.n, d);
    kiln::Metrics m;
    m["count"] = static_cast<double>(n);
    m["reference_count"] = static_cast<double>(ref.n);
    m["fid"] = frechet_distance(sg, sr);
    const Kid kid = kernel_inception_distance(pr.features.data(), n, ref.features.data(), ref.n, d,
                                              p_.integer("kid_subset_size"),
                                              p_.integer("kid_subsets"), ctx_.seed());
    m["kid"] = kid.mean;
    m["kid_std"] = kid.std;
    m["kid_subset_size"] = static_cast<double>(kid.subset_size);
    const PrecisionRecall prr =
        knn_precision_recall(ref.features.data(), ref.n, pr.features.data(), n, d, p_.integer("k"));
    m["precision"] = prr.precision;
    m["recall"] = prr.recall;
    ctx_.progress(2, 3, "phase");
    m["classifier_score"] = classifier_score(pr.probs.data(), n, pr.classes);
    m["reference_classifier_score"] = classifier_score(ref.probs.data(), ref.n, pr.classes);

    // Class histogram of generated and reference images; agreement with requested labels.
    const auto& names = kiln::data::fashion_mnist_classes();
    std::vector<double> hist_g(pr.classes, 0), hist_r(pr.classes, 0), asked(pr.classes, 0),
        agreed(pr.classes, 0);
    for (std::int64_t i = 0; i < n; ++i) {
      const std::int64_t l = pr.argmax(i);
      hist_g[l] += 1;
      if (gen.labels[i] >= 0 && gen.labels[i] < pr.classes) {
        asked[gen.labels[i]] += 1;
        agreed[gen.labels[i]] += gen.labels[i] == l;
      }
    }
    for (std::int64_t i = 0; i < ref.n; ++i) {
      const float* p = ref.probs.data() + i * pr.classes;
      hist_r[std::max_element(p, p + pr.classes) - p] += 1;
    }
    const double total_asked = std::accumulate(asked.begin(), asked.end(), 0.0);
    if (total_asked > 0) {
      m["label_agreement"] = std::accumulate(agreed.begin(), agreed.end(), 0.0) / total_asked;
      m["labelled_count"] = total_asked;
    }
    kiln::Table t;
    t.columns = {"class", "name", "generated_share", "reference_share", "requested", "agreement"};
    for (std::int64_t c = 0; c < pr.classes; ++c) {
      t.rows.push_back({std::to_string(c), names[c], fmt(hist_g[c] / static_cast<double>(n)),
                        fmt(hist_r[c] / static_cast<double>(ref.n)),
                        std::to_string(static_cast<std::int64_t>(asked[c])),
                        asked[c] > 0 ? fmt(agreed[c] / asked[c]) : ""});
    }
    ctx_.progress(3, 3, "phase");
    std::vector<Artifact> out;
    out.push_back(Artifact::make_table("classes", std::move(t)));
    out.push_back(Artifact::make_metrics(m));
    return out;
  }

 private:
  struct Reference {
    std::int64_t n = 0;
    std::vector<float> features, probs;
  };

  // Features of the reference images: a seeded subset of the split, cached in the work folder
  // under a key of the classifier file, the data folder, split, count and seed.
  Reference reference() {
    const std::string split = p_.string("reference_split");
    const std::int64_t count = p_.integer("reference_count");
    std::uint64_t key = 0xcbf29ce484222325ull;
    key = fnv1a(key, kiln::read_file(p_.string("model")));
    key = fnv1a(key, p_.string("reference") + "|" + split + "|" + std::to_string(count) + "|" +
                         std::to_string(ctx_.seed()) + "|v1");
    char name[64];
    std::snprintf(name, sizeof name, "reference-%016llx.safetensors",
                  static_cast<unsigned long long>(key));
    const fs::path cache = ctx_.work_dir() / name;
    Reference r;
    if (fs::exists(cache)) {
      try {
        kiln::Safetensors st = kiln::load_safetensors(cache);
        const Tensor f = st.tensors.at("features"), p = st.tensors.at("probs");
        r.n = f.size(0);
        r.features = f.to_vector();
        r.probs = p.to_vector();
        if (r.n == p.size(0) && f.size(1) == model_->hidden()) return r;
      } catch (const std::exception&) {
        // An unreadable cache is recomputed and replaced.
      }
    }
    auto ds = kiln::data::load_fashion_mnist(p_.string("reference"), split);
    KILN_CHECK(count <= ds->size(), "eval/evaluate: reference_count = ", count, " but the ", split,
               " split of '", p_.string("reference"), "' has ", ds->size(), " images");
    std::vector<std::int64_t> idx(static_cast<std::size_t>(ds->size()));
    std::iota(idx.begin(), idx.end(), 0);
    kiln::Philox rng(ctx_.seed(), 0, 7);
    for (std::int64_t i = 0; i < count; ++i) {
      const auto j =
          i + static_cast<std::int64_t>(rng.below(static_cast<std::uint64_t>(ds->size() - i)));
      std::swap(idx[i], idx[j]);
    }
    idx.resize(static_cast<std::size_t>(count));
    std::sort(idx.begin(), idx.end());
    const Predictions pr = predict(*model_, ds->get_batch(idx).at("image"), p_.integer("batch"));
    r.n = pr.n;
    r.features = pr.features;
    r.probs = pr.probs;
    fs::create_directories(ctx_.work_dir());
    kiln::save_safetensors(
        cache,
        {{"features", Tensor::from_vector(r.features, {r.n, pr.hidden})},
         {"probs", Tensor::from_vector(r.probs, {r.n, pr.classes})},
         {"indices", Tensor::from_ints(idx, {r.n})}},
        {{"model", p_.string("model")}, {"reference", p_.string("reference")}, {"split", split}});
    return r;
  }

  Params p_;
  kiln::TaskContext& ctx_;
  std::unique_ptr<Classifier> model_;
};

}  // namespace

std::unique_ptr<kiln::Task> make_classify_task(const Params& p, kiln::TaskContext& ctx) {
  return std::make_unique<ClassifyTask>(p, ctx);
}
std::unique_ptr<kiln::Task> make_evaluate_task(const Params& p, kiln::TaskContext& ctx) {
  return std::make_unique<EvaluateTask>(p, ctx);
}

}  // namespace kiln_eval
